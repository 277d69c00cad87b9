"""How good an attribution map is: one number per image, computed for a whole batch at once.

Maps are (N, H, W) (numpy or torch), masks (N, H, W) booleans (True on a lesion), images the model's
normalised inputs (N, C, H, W). Localisation metrics work in numpy (float64) and return numpy arrays
of shape (N,); metrics that run the model work in torch on the model's device and return numpy too.
An image whose mask is empty (a healthy leaf) scores NaN in the localisation metrics: there is
nothing to point at. :func:`interval` drops NaNs before its bootstrap.

Signs: "relevant" means a high signed value everywhere (the pointing game's maximum, the ranking
of rank accuracy, AUC, deletion and ROAD); relevance mass counts positive attribution only. Take
``abs`` of a map first to rank by magnitude instead.

Faithfulness runs the model on perturbed photos and follows the target class's softmax probability
(the model's predicted class when ``target`` is None):

* deletion / insertion (RISE, Petsiuk et al. 2018): after step i of ``steps``, the floor(i HW / steps)
  most relevant pixels are set to ``baseline`` (deletion) or are the only ones kept from the photo,
  the rest at ``baseline`` (insertion), all channels at once. ``baseline`` [0.0] is in normalised
  units: 0 is the camera's mean colour. Curves have steps + 1 points (the photo itself first for
  deletion, last for insertion); :func:`curve_auc` is their trapezoidal area over [0, 1]: lower is
  better for deletion, higher for insertion;
* ROAD (Rong, Leemann et al. 2022): at each percentage p the pixels whose map value is at least the
  map's (100 - p)th percentile (numpy's linear interpolation) are removed, most relevant first
  (``morf``) or least relevant first (``lerf``, the same on the negated map), and filled by noisy
  linear imputation (:mod:`rice_lab.explain.imputation`). This is pytorch-grad-cam's rule, whose
  ``percentile`` q removes the top (100 - q) %. Lower MoRF and higher LeRF are better;
* infidelity (captum, Yeh et al. 2019): expected squared error between the map's prediction of a
  logit change and the change itself, under Gaussian pixel noise (the same on every channel, so a
  pixel's value in the map is what a change of that pixel is dotted with), with the optimal scaling
  of the map (``normalize``), so maps of any scale compare; lower is better.

Tables: :func:`localisation_scores` runs every localisation metric on each camera's maps (one row
per camera and plant); :func:`score_table` gives any such rows' mean and bootstrap interval per group.

Robustness: :func:`max_sensitivity` (captum's ``sensitivity_max``): the largest relative change of a
method's map under uniform input noise of ``radius``. A constant map is perfectly robust: show it
beside a faithfulness number, never alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max
from scipy.stats import rankdata
from torch import nn

from rice_lab.errors import ConfigError, DataError
from rice_lab.evaluate.bootstrap import Interval, bootstrap_ci
from rice_lab.explain.imputation import noisy_linear_imputation
from rice_lab.explain.models import captum_safe, evaluating, model_device, resolve_targets
from rice_lab.seeding import stream_generator, stream_seed

ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_ORDERS = ("morf", "lerf")
Target = int | Sequence[int] | torch.Tensor | None


def _numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)


def _flat(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    maps, masks = _numpy(maps).astype(np.float64), _numpy(masks).astype(bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise DataError(f"masks of shape {masks.shape} for maps of shape {maps.shape}: both must be (N, H, W)")
    return maps.reshape(len(maps), -1), masks.reshape(len(masks), -1)


def pointing_game(maps, masks) -> np.ndarray:
    """1 where a pixel holding the map's maximum lies on a lesion (any of them, if tied), else 0."""
    maps, masks = _flat(maps, masks)
    hit = (masks & (maps == maps.max(axis=1, keepdims=True))).any(axis=1).astype(float)
    return np.where(masks.any(axis=1), hit, np.nan)


def relevance_mass_accuracy(maps, masks) -> np.ndarray:
    """Share of the map's positive attribution that falls on lesions (NaN without any)."""
    maps, masks = _flat(maps, masks)
    positive = np.clip(maps, 0, None)
    total = positive.sum(axis=1)
    inside = (positive * masks).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(masks.any(axis=1) & (total > 0), inside / total, np.nan)


def relevance_rank_accuracy(maps, masks) -> np.ndarray:
    """Share of the K highest-ranked pixels that lie on lesions, K = the lesion's pixel count.

    Pixels tied with the K-th value share the places left among the top K evenly (the expected score
    over random tie-breaking), so a flat region of a map is not ranked by its position in the photo.
    """
    maps, masks = _flat(maps, masks)
    k = masks.sum(axis=1)
    kth = -np.sort(-maps, axis=1)[np.arange(len(k)), np.maximum(k - 1, 0)][:, None]
    above, tied = maps > kth, maps == kth
    places_left = k - above.sum(axis=1)
    found = (above & masks).sum(axis=1) + places_left * (tied & masks).sum(axis=1) / tied.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, found / k, np.nan)


def mask_auc(maps, masks) -> np.ndarray:
    """ROC-AUC of the map as a lesion detector: the chance that a random lesion pixel outranks a
    random other pixel (ties count half). NaN when the mask is empty or full."""
    maps, masks = _flat(maps, masks)
    ranks = rankdata(maps, axis=1)  # average ranks for ties
    positives = masks.sum(axis=1).astype(float)
    negatives = masks.shape[1] - positives
    rank_sum = (ranks * masks).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _check_maps(images: torch.Tensor, maps) -> torch.Tensor:
    maps = torch.as_tensor(_numpy(maps)) if not torch.is_tensor(maps) else maps.detach()
    if images.ndim != 4 or tuple(maps.shape) != (images.shape[0], *images.shape[2:]):
        raise ConfigError(f"maps of shape {tuple(maps.shape)} for images of shape {tuple(images.shape)}: "
                          "expected one (H, W) map per image")
    return maps


@torch.no_grad()
def _target_probability(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int) -> np.ndarray:
    device = model_device(model)
    out = []
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size].to(device)).float()
        out.append(logits.softmax(1).gather(1, targets[start:start + batch_size, None]).squeeze(1))
    return torch.cat(out).double().cpu().numpy()


def _perturbation_curve(model, images, maps, target, steps, baseline, insert, batch_size) -> np.ndarray:
    if steps < 1:
        raise ConfigError(f"steps={steps}: must be at least 1")
    maps = _check_maps(images, maps)
    n, hw = len(images), images.shape[-2] * images.shape[-1]
    device = model_device(model)
    x = images.detach().to(device).float()
    fill = torch.as_tensor(baseline, dtype=x.dtype, device=device).expand_as(x)
    order = torch.argsort(-maps.reshape(n, -1).to(device).float(), dim=1, stable=True)  # most relevant first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(hw, device=device).expand(n, -1))
    rank = rank.reshape(n, 1, *images.shape[2:])
    curve = np.empty((n, steps + 1))
    with evaluating(model):
        targets = resolve_targets(model, x, target)
        for step in range(steps + 1):
            chosen = rank < (step * hw) // steps
            perturbed = torch.where(chosen, x, fill) if insert else torch.where(chosen, fill, x)
            curve[:, step] = _target_probability(model, perturbed, targets, batch_size)
    return curve


def deletion_curve(model: nn.Module, images: torch.Tensor, maps, target: Target = None, steps: int = 16,
                   baseline: float | torch.Tensor = 0.0, batch_size: int = 256) -> np.ndarray:
    """Target probability as the most relevant pixels are deleted, (N, steps + 1) (module docstring)."""
    return _perturbation_curve(model, images, maps, target, steps, baseline, False, batch_size)


def insertion_curve(model: nn.Module, images: torch.Tensor, maps, target: Target = None, steps: int = 16,
                    baseline: float | torch.Tensor = 0.0, batch_size: int = 256) -> np.ndarray:
    """Target probability as the most relevant pixels are inserted into the baseline, (N, steps + 1)."""
    return _perturbation_curve(model, images, maps, target, steps, baseline, True, batch_size)


def curve_auc(curve) -> np.ndarray:
    """Area under each curve (rows of (N, points), equally spaced over [0, 1]), by the trapezoid rule."""
    curve = _numpy(curve).astype(np.float64)
    if curve.ndim != 2 or curve.shape[1] < 2:
        raise ConfigError(f"curve of shape {curve.shape}: expected (N, points) with at least two points")
    return (curve[:, 1:] + curve[:, :-1]).sum(axis=1) / (2 * (curve.shape[1] - 1))


def road_curve(model: nn.Module, images: torch.Tensor, maps, target: Target = None, order: str = "morf",
               percentages: Sequence[float] = ROAD_PERCENTAGES, noise: float = 0.01, seed: int = 0,
               batch_size: int = 256) -> np.ndarray:
    """Target probability after removing ``percentages`` % of the pixels and imputing them,
    (N, len(percentages)); its mean over percentages is the image's ROAD score (module docstring)."""
    if order not in ROAD_ORDERS:
        raise ConfigError(f"order={order!r}: choose morf (most relevant first) or lerf (least relevant first)")
    if not all(0 < p < 100 for p in percentages):
        raise ConfigError(f"percentages={list(percentages)}: each must lie strictly between 0 and 100")
    maps = _check_maps(images, maps)
    n = len(images)
    ranking = maps.reshape(n, -1).cpu().double().numpy()
    ranking = ranking if order == "morf" else -ranking
    device = model_device(model)
    curve = np.empty((n, len(percentages)))
    with evaluating(model):
        targets = resolve_targets(model, images.to(device), target)
        for k, percentage in enumerate(percentages):
            threshold = np.percentile(ranking, 100 - percentage, axis=1, keepdims=True)
            remove = torch.from_numpy(ranking >= threshold).reshape(n, *images.shape[2:])
            generator = np.random.default_rng(stream_seed(seed, "explain-road", k))
            imputed = noisy_linear_imputation(images.detach().float(), remove, noise, generator)
            curve[:, k] = _target_probability(model, imputed, targets, batch_size)
    return curve


def road(model: nn.Module, images: torch.Tensor, maps, target: Target = None, order: str = "morf",
         **options: Any) -> np.ndarray:
    """Each image's ROAD score: the mean of :func:`road_curve` over its percentages."""
    return road_curve(model, images, maps, target, order, **options).mean(axis=1)


def infidelity(model: nn.Module, images: torch.Tensor, maps, target: Target = None, noise: float = 0.1,
               samples: int = 16, normalize: bool = True, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """captum's infidelity of each map under Gaussian pixel noise of std ``noise`` (normalised units)."""
    maps = _check_maps(images, maps)
    device = model_device(model)
    x = images.detach().to(device).float()
    # A pixel's map value, spread evenly over its channels, dotted with noise that is the same on
    # every channel, is the map value times the pixel's noise: the map is judged at the pixel level.
    attributions = (maps.to(device).float()[:, None] / x.shape[1]).expand_as(x).contiguous()
    generator = stream_generator(seed, "explain-perturb")

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (inputs.shape[0], 1, *inputs.shape[2:])
        change = (noise * torch.randn(shape, generator=generator)).to(inputs).expand_as(inputs).contiguous()
        return change, inputs - change

    with evaluating(model):
        targets = resolve_targets(model, x, target)
        per_batch = min(max(batch_size, len(x)), len(x) * samples)  # the range captum accepts
        values = captum_infidelity(model, perturb, x, attributions, target=targets, n_perturb_samples=samples,
                                   max_examples_per_batch=per_batch, normalize=normalize)
    return values.double().cpu().numpy()


def max_sensitivity(model: nn.Module, images: torch.Tensor, method: str, target: Target = None, radius: float = 0.02,
                    samples: int = 8, seed: int = 0, **options: Any) -> np.ndarray:
    """captum's max-sensitivity of ``method``'s maps (options as for ``attribute``) under uniform
    input noise in [-radius, radius] (normalised units); lower is more robust."""
    from rice_lab.explain.attribution import attribute

    device = model_device(model)
    x = images.detach().to(device).float()
    safe = captum_safe(model, x[:1])
    targets = resolve_targets(safe, x, target)
    generator = stream_generator(seed, "explain-perturb")

    def perturb(inputs: torch.Tensor, perturb_radius: float) -> torch.Tensor:
        noise = (torch.rand(inputs.shape, generator=generator) * 2 - 1) * perturb_radius
        return inputs + noise.to(inputs)

    def explain(inputs, target: torch.Tensor) -> tuple[torch.Tensor]:
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        # a tuple: sensitivity_max iterates over what the first call returns
        return (attribute(safe, inputs, method, target, seed=seed, **options),)

    values = sensitivity_max(explain, x, perturb_func=perturb, perturb_radius=radius, n_perturb_samples=samples,
                             target=targets)
    return values.double().cpu().numpy()


def interval(values, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Mean over images and its percentile-bootstrap interval (``rice_lab.evaluate.bootstrap_ci``),
    images scoring NaN (an empty mask) left out."""
    values = _numpy(values).astype(np.float64)
    return bootstrap_ci(values[~np.isnan(values)], np.mean, level, resamples, seed)


LOCALISATION = {"pointing_game": pointing_game, "relevance_mass_accuracy": relevance_mass_accuracy,
                "relevance_rank_accuracy": relevance_rank_accuracy, "mask_auc": mask_auc}


def localisation_scores(maps: dict[str, Any], masks: dict[str, Any], plant_ids: Sequence[str]) -> pd.DataFrame:
    """Every localisation metric of each camera's maps against that camera's masks (both
    {camera: (plants, H, W)}): one row per camera and plant, one column per metric."""
    frames = []
    for camera, camera_maps in maps.items():
        if camera not in masks:
            raise DataError(f"maps of the {camera} photos but no {camera} masks")
        scores = {name: metric(camera_maps, masks[camera]) for name, metric in LOCALISATION.items()}
        frames.append(pd.DataFrame({"camera": camera, "plant_id": list(plant_ids), **scores}))
    return pd.concat(frames, ignore_index=True)


def score_table(scores: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], level: float = 0.95,
                resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean over images and its bootstrap interval (:func:`interval`, NaN left out) of each of the
    ``metrics`` columns of ``scores`` within each group of ``by``: columns ``by``, metric, mean, low,
    high, images (how many had a value; no interval below two)."""
    rows = []
    for keys, group in scores.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for metric in metrics:
            values = group[metric].to_numpy(dtype=np.float64)
            defined = int(np.isfinite(values).sum())
            found = interval(values, level, resamples, seed) if defined >= 2 else None
            rows.append({**dict(zip(by, keys)), "metric": metric,
                         "mean": found.estimate if found else float(np.nanmean(values)) if defined else float("nan"),
                         "low": found.low if found else float("nan"), "high": found.high if found else float("nan"),
                         "images": defined})
    return pd.DataFrame(rows)


__all__ = ["LOCALISATION", "ROAD_ORDERS", "ROAD_PERCENTAGES", "curve_auc", "deletion_curve", "infidelity",
           "insertion_curve", "interval", "localisation_scores", "mask_auc", "max_sensitivity", "pointing_game",
           "relevance_mass_accuracy", "relevance_rank_accuracy", "road", "road_curve", "score_table"]
