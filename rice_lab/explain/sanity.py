"""Randomisation sanity checks (Adebayo et al. 2018): do a method's maps depend on what the model learned?

A map that survives the destruction of what the model learned explains the photo, not the model.
Two ways to destroy it, each compared with the maps of the trained model on the same photos, for
the same target class (the trained model's prediction unless ``target`` is given) and, for a
stochastic method, from the same seeded noise:

* model-parameter randomisation, cascading from the logits down (:func:`cascading_randomisation`):
  on a copy, re-initialise the head, then the body's blocks one by one from the top (the order read
  from the model by name: :func:`cascade_order`), and take the maps after each step. ``order=
  "independent"`` re-initialises one layer at a time instead, the rest left trained;
* data randomisation (:func:`data_randomisation`): the same classifier trained on shuffled labels
  (fine-tuning's ``shuffled_labels``), whose maps should differ from the real model's.

A layer is re-initialised by calling ``reset_parameters()`` of each of its modules that has one
(convolutions and linear layers draw new weights; batch norms go back to weight 1, bias 0, running
mean 0, variance 1), from torch's generator seeded by the ``explain-randomise`` stream.

Similarity of two maps of the same photo, one number per image (:func:`map_similarity`):

* ``spearman``: rank correlation of the signed maps;
* ``spearman_abs``: rank correlation of their absolute values;
* ``ssim``: structural similarity (Wang et al. 2004) of the absolute maps, each divided by its own
  maximum so both lie in [0, 1] (data range 1): a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample
  covariance, the mean over windows that fit inside the map (scikit-image's defaults).

Rank correlation and the scaled SSIM ignore a map's overall scale, which randomisation changes
wildly. A constant map has no ranking: its rank correlations are NaN (left out of the table's
means, and counted in its ``images`` column). Caveat (Binder et al. 2022): top-down randomisation
keeps activation scales in the layers below, so an uninformative map can still look stable; read
several measures, beside the edge baseline (which ignores the model and stays at 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from rice_lab.errors import CheckpointError, ConfigError
from rice_lab.explain.baselines import edge_map, random_map
from rice_lab.explain.metrics import score_table
from rice_lab.explain.models import model_device, resolve_targets
from rice_lab.seeding import stream_seed

MEASURES = ("spearman", "spearman_abs", "ssim")
ORDERS = ("cascading", "independent")
ORIGINAL = "original"  # the trained model's maps, what every step is compared with
SHUFFLED = "shuffled-labels"  # data randomisation's one step
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, images, targets) -> maps


# ---------------------------------------------------------------------------------------------
# How alike two maps of the same photos are
# ---------------------------------------------------------------------------------------------

def _as_numpy(maps) -> np.ndarray:
    maps = maps.detach().cpu().numpy() if torch.is_tensor(maps) else np.asarray(maps)
    return maps.astype(np.float64)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_numpy(a), _as_numpy(b)
    if a.ndim != 3 or a.shape != b.shape:
        raise ConfigError(f"maps of shapes {a.shape} and {b.shape}: expected two (N, H, W) arrays of one shape")
    return a, b


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (N,) (ties share ranks; NaN for a constant map)."""
    a, b = _pair(a, b)
    ranks_a = rankdata(a.reshape(len(a), -1), axis=1)
    ranks_b = rankdata(b.reshape(len(b), -1), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ranks_a * ranks_b).sum(1) / np.sqrt((ranks_a ** 2).sum(1) * (ranks_b ** 2).sum(1))


def ssim(a, b, data_range: float = 1.0, win_size: int = 7) -> np.ndarray:
    """Mean structural similarity of each pair of maps (N,), scikit-image's ``structural_similarity``
    with its defaults (uniform ``win_size`` window, sample covariance) and ``data_range``."""
    a, b = _pair(a, b)
    if win_size < 3 or win_size % 2 == 0 or min(a.shape[1:]) < win_size:
        raise ConfigError(f"win_size={win_size} for maps of {a.shape[1]} x {a.shape[2]}: an odd window of at "
                          "least 3 that fits in the map")
    x, y = torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None]
    # A window average over the positions where it fits: scikit-image's filter then crop of the border.
    mean = lambda t: F.avg_pool2d(t, win_size, stride=1)  # noqa: E731
    ux, uy = mean(x), mean(y)
    cov_norm = win_size ** 2 / (win_size ** 2 - 1)
    vx, vy = cov_norm * (mean(x * x) - ux * ux), cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).numpy()


def scaled_magnitude(maps) -> np.ndarray:
    """|map| / max |map| per map, in [0, 1] (an all-zero map stays zero): what SSIM compares."""
    magnitude = np.abs(_as_numpy(maps))
    peak = magnitude.reshape(len(magnitude), -1).max(axis=1)
    return magnitude / np.where(peak > 0, peak, 1.0)[:, None, None]


def map_similarity(reference, other) -> pd.DataFrame:
    """The three measures (module docstring) for each pair of maps: one row per image."""
    a, b = _pair(reference, other)
    return pd.DataFrame({"image": np.arange(len(a)), "spearman": spearman(a, b),
                         "spearman_abs": spearman(np.abs(a), np.abs(b)),
                         "ssim": ssim(scaled_magnitude(a), scaled_magnitude(b), data_range=1.0)})


# ---------------------------------------------------------------------------------------------
# Randomising a model, layer by layer
# ---------------------------------------------------------------------------------------------

def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def cascade_order(model: nn.Module) -> list[str]:
    """The layers cascading randomisation re-initialises, in order, named as in the model.

    A model with a ``head`` and a ``body`` (a rice-lab classifier): the head, then each block of the
    body holding weights, last first. Any other model: its top-level children holding weights, last
    first.
    """
    children = dict(model.named_children())
    if "head" in children and "body" in children:
        blocks = [f"body.{name}" for name, child in children["body"].named_children() if _has_parameters(child)]
        return ["head", *reversed(blocks)]
    return [name for name, child in reversed(list(children.items())) if _has_parameters(child)]


def reinitialise(module: nn.Module, seed: int) -> nn.Module:
    """``module``'s own layers reset in place (``reset_parameters``), drawing from ``seed``; returned."""
    device = model_device(module)  # a GPU layer draws from that GPU's generator: fork it too
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        for part in module.modules():
            if hasattr(part, "reset_parameters"):
                part.reset_parameters()
    return module


def randomised_models(model: nn.Module, layers: Sequence[str] | None = None, order: str = "cascading",
                      seed: int = 0):
    """Yield (layer, randomised model) for each step: in ``cascading`` order one copy with this layer
    and every one before it re-initialised (the same copy, changed further at each step: use it
    before asking for the next); ``independent``: a fresh copy with this layer alone re-initialised.
    The caller's model is never changed; a layer's new weights are the same in either order (seeded
    by its step)."""
    if order not in ORDERS:
        raise ConfigError(f"order={order!r}: choose one of {', '.join(ORDERS)}")
    layers = list(cascade_order(model) if layers is None else layers)
    for name in layers:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"layer {name!r}: no such layer in {type(model).__name__} (cascade order: "
                              f"{', '.join(cascade_order(model))})") from None
    cascade = copy.deepcopy(model).eval()
    for step, name in enumerate(layers):
        layer_seed = stream_seed(seed, "explain-randomise", step)
        if order == "cascading":
            reinitialise(cascade.get_submodule(name), layer_seed)
            yield name, cascade
        else:
            alone = copy.deepcopy(model).eval()
            reinitialise(alone.get_submodule(name), layer_seed)
            yield name, alone


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------

@dataclass
class Randomisation:
    """A sanity check's maps and scores.

    ``maps``: ``original`` (the trained model's), then one entry per step, keyed by the layer last
    randomised (or ``shuffled-labels``), each (N, H, W). ``scores``: one row per step and image
    (``step`` from 1, ``layer``, ``image`` and the three measures) against the original maps.
    """

    method: str
    order: str
    maps: dict[str, torch.Tensor]
    scores: pd.DataFrame

    @property
    def layers(self) -> list[str]:
        return [name for name in self.maps if name != ORIGINAL]

    def table(self, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Mean over images and its bootstrap interval, per step and measure: columns step, layer,
        measure, mean, low, high, images (how many images had a defined value)."""
        table = score_table(self.scores, ["step", "layer"], MEASURES, level, resamples, seed)
        return table.rename(columns={"metric": "measure"}).assign(method=self.method)[
            ["method", "step", "layer", "measure", "mean", "low", "high", "images"]]


def explainer(method: str | Explainer, seed: int = 0, **options: Any) -> Explainer:
    """(model, images, targets) -> maps for ``method``: a name of ``attribute``'s methods (with its
    options), ``edge`` or ``random`` (the baselines, which ignore the model), or such a callable."""
    if callable(method):
        return method
    if method == "edge":
        return lambda model, images, targets: edge_map(images)
    if method == "random":
        return lambda model, images, targets: random_map(images, seed)
    from rice_lab.explain.attribution import attribute, method_options

    method_options(method, options)  # an unknown method or option fails before any work
    return lambda model, images, targets: attribute(model, images, method, targets, seed=seed, **options)


def _name(method) -> str:
    return method if isinstance(method, str) else getattr(method, "__name__", "custom")


def _scored(method, order: str, maps: dict[str, torch.Tensor]) -> Randomisation:
    original = maps[ORIGINAL]
    frames = [map_similarity(original, step_maps).assign(step=step, layer=layer)
              for step, (layer, step_maps) in enumerate(((k, v) for k, v in maps.items() if k != ORIGINAL), 1)]
    scores = pd.concat(frames, ignore_index=True)[["step", "layer", "image", *MEASURES]]
    return Randomisation(_name(method), order, maps, scores)


def cascading_randomisation(model: nn.Module, images: torch.Tensor, method: str | Explainer = "saliency",
                            target: int | Sequence[int] | torch.Tensor | None = None,
                            layers: Sequence[str] | None = None, order: str = "cascading", seed: int = 0,
                            **options: Any) -> Randomisation:
    """Maps of ``method`` after each step of model-parameter randomisation, scored against the
    trained model's (module docstring). ``layers`` [:func:`cascade_order`] and ``order`` say what is
    randomised; ``seed`` drives the new weights and a stochastic method's noise."""
    explain = explainer(method, seed, **options)
    targets = resolve_targets(model, images, target)
    maps = {ORIGINAL: explain(model, images, targets).detach().cpu()}
    for layer, changed in randomised_models(model, layers, order, seed):
        maps[layer] = explain(changed, images, targets).detach().cpu()
    return _scored(method, order, maps)


def data_randomisation(model: nn.Module, shuffled_model: nn.Module, images: torch.Tensor,
                       method: str | Explainer = "saliency", target: int | Sequence[int] | torch.Tensor | None = None,
                       seed: int = 0, **options: Any) -> Randomisation:
    """Maps of ``method`` from a classifier trained on shuffled labels, scored against the real
    model's on the same photos and target (the real model's prediction unless given). Both models
    must see the photos alike: trained from the same encoder run (:func:`shuffled_label_pair`)."""
    explain = explainer(method, seed, **options)
    targets = resolve_targets(model, images, target)
    device = model_device(shuffled_model)
    maps = {ORIGINAL: explain(model, images, targets).detach().cpu(),
            SHUFFLED: explain(shuffled_model, images.to(device), targets.to(device)).detach().cpu()}
    return _scored(method, "data", maps)


def shuffled_label_pair(run_dir: str | Path, shuffled_run_dir: str | Path) -> tuple[nn.Module, nn.Module, dict]:
    """(real classifier, shuffled-label classifier, meta) of two fine-tuning runs; CheckpointError
    unless the second trained on shuffled labels, the first did not, and both see photos alike
    (architecture, cameras, photo height, normalisation)."""
    from rice_lab.finetune.predictions import load_classifier
    from rice_lab.runs import read_manifest

    for run, wanted in ((run_dir, False), (shuffled_run_dir, True)):
        if bool(read_manifest(run)["config"].get("shuffled_labels", False)) != wanted:
            raise CheckpointError(f"{run}: a run {'without' if wanted else 'with'} shuffled labels; give the real "
                                  "run first, then one fine-tuned with shuffled_labels=True")
    model, meta = load_classifier(run_dir)
    shuffled, shuffled_meta = load_classifier(shuffled_run_dir)
    for key in ("arch", "cameras", "photo_height", "normalization"):
        if meta[key] != shuffled_meta[key]:
            raise CheckpointError(f"{shuffled_run_dir}: its {key} ({shuffled_meta[key]}) differs from {run_dir}'s "
                                  f"({meta[key]}); fine-tune both from the same encoder run and photo height")
    return model, shuffled, meta


__all__ = ["MEASURES", "ORDERS", "ORIGINAL", "SHUFFLED", "Randomisation", "cascade_order", "cascading_randomisation",
           "data_randomisation", "explainer", "map_similarity", "randomised_models", "reinitialise", "scaled_magnitude",
           "shuffled_label_pair", "spearman", "ssim"]
