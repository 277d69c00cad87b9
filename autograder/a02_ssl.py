"""Checks for assignment 02-ssl: sinkhorn, the swapped-prediction loss, paired views, a training step,
a short pre-training.

Each ``check_*`` runs the learner's function on freshly generated cases (random batch sizes, prototype
counts, crops and scores) and compares it with ``rice_lab``'s reference; ``check_*_hidden`` adds the
cases used only when the notebook is graded (and, where it is installed, lightly's SwAV loss as a
second, independent reference).
"""

from __future__ import annotations

import copy
import importlib
import math
import sys
import types
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autograder import _kit
from rice_lab.data import views
from rice_lab.ssl import loss as loss_module
from rice_lab.ssl import model as model_module

# `rice_lab.ssl.sinkhorn` the attribute is the function (re-exported by the package); we need the module.
sinkhorn_module = importlib.import_module("rice_lab.ssl.sinkhorn")

CHECKS = ["check_sinkhorn", "check_sinkhorn_hidden", "check_swav_loss", "check_swav_loss_hidden",
          "check_paired_views", "check_paired_views_hidden", "check_train_step", "check_train_step_hidden",
          "check_pretrain", "check_pretrain_hidden"]
MODULE = "autograder.a02_ssl"
Q1, Q2, Q3, Q4, Q5 = "sinkhorn", "swav_loss", "paired_views", "train_step", "pretrain"


def verify_untouched(loaded: types.ModuleType | None, namespace: dict | None = None) -> None:
    """Fail if the imported copy of this module, or the notebook, holds modified check functions."""
    _kit.verify_untouched(types.SimpleNamespace(**globals()), loaded, CHECKS, namespace)


def _forbidden(*names: str) -> dict[str, Callable]:
    """Reference functions the answers must not call, as seen here and as imported by the notebook.

    Names are ``module:function`` with module one of sinkhorn, loss, views; lightly's SwAV pieces are
    added when the notebook has imported lightly.
    """
    modules = {"sinkhorn": (sinkhorn_module, "rice_lab.ssl.sinkhorn"), "loss": (loss_module, "rice_lab.ssl.loss"),
               "views": (views, "rice_lab.data.views")}
    found: dict[str, Callable] = {}
    for item in names:
        key, name = item.split(":")
        module, dotted = modules[key]
        label = f"rice_lab's {name}"
        found[label] = getattr(module, name)
        loaded = sys.modules.get(dotted) or importlib.import_module(dotted)
        if getattr(loaded, name, None) is not None and getattr(loaded, name) is not found[label]:
            found[f"{label} (imported)"] = getattr(loaded, name)
    lightly_swav = sys.modules.get("lightly.loss.swav_loss")
    if lightly_swav is not None:
        found["lightly's sinkhorn"] = lightly_swav.sinkhorn
        found["lightly's SwaVLoss"] = lightly_swav.SwaVLoss
    return found


@contextmanager
def _one_thread() -> Iterator[None]:
    """Small tensors: one thread is fastest and does not fight other kernels for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).float()


def _unit(gen: np.random.Generator, rows: int, dim: int) -> torch.Tensor:
    return F.normalize(_tensor(gen.normal(size=(rows, dim))), dim=1)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


# --- question 1: sinkhorn ------------------------------------------------------------------------------

SINKHORN_RECIPE = ("q = exp(scores / epsilon).T (B columns, K rows), q /= q.sum(); then n_iters times: "
                   "q /= q.sum(dim=1, keepdim=True); q /= K; q /= q.sum(dim=0, keepdim=True); q /= B; "
                   "finally return (q * B).T")


def sinkhorn_case(seed: int, shift: float = 0.0) -> tuple[torch.Tensor, int, float]:
    """Cosine scores (batch 4-64, prototypes 3-40) plus ``shift``, a number of rounds and an epsilon."""
    gen = _kit.rng(seed)
    batch, n_prototypes, dim = int(gen.integers(4, 65)), int(gen.integers(3, 41)), int(gen.integers(4, 17))
    scores = _unit(gen, batch, dim) @ _unit(gen, n_prototypes, dim).t() + shift
    return scores, int(gen.choice([1, 3, 5])), float(gen.choice([0.05, 0.1, 0.3]))


def _reference_sinkhorn(scores: torch.Tensor, n_iters: int, epsilon: float) -> torch.Tensor:
    return sinkhorn_module.sinkhorn(scores, n_iters=n_iters, epsilon=epsilon).float()


def _sinkhorn_hint(got: torch.Tensor, scores: torch.Tensor, n_iters: int, epsilon: float) -> str:
    """Name the likely mistake by comparing with what common slips would have produced."""
    if not _close(got.sum(dim=1), torch.ones(len(scores)), atol=1e-4):
        return ("each row (one sample) must sum to 1: end every round with the per-sample normalisation "
                "(q /= q.sum(dim=0); q /= B in the transposed layout) and multiply by B at the end")
    if _close(got, torch.softmax(scores / epsilon, dim=1), atol=1e-4):
        return ("that is a plain softmax: Sinkhorn must also balance the prototypes, alternating the "
                "per-prototype and per-sample normalisations n_iters times")
    if epsilon != 1.0 and _close(got, _reference_sinkhorn(scores, n_iters, 1.0), atol=1e-4):
        return "divide the scores by epsilon before the exponential"
    for other in (n_iters - 1, n_iters + 1):
        if other >= 0 and _close(got, _reference_sinkhorn(scores, other, epsilon), atol=1e-4):
            return f"run exactly n_iters={n_iters} rounds (yours looks like {other})"
    return SINKHORN_RECIPE


def _compare_sinkhorn(func: Callable, scores: torch.Tensor, n_iters: int, epsilon: float, seed: int) -> None:
    expected = _reference_sinkhorn(scores, n_iters, epsilon)
    given = scores.clone()
    got = func(given, n_iters=n_iters, epsilon=epsilon)
    if not torch.equal(given, scores):
        _kit.fail(Q1, "the scores left unchanged", "they were modified in place",
                  "work on a new tensor (torch.exp(...) makes one); do not divide `scores` in place", seed)
    if not isinstance(got, torch.Tensor):
        _kit.fail(Q1, "a torch.Tensor of shape (batch, prototypes)", type(got).__name__,
                  "return the codes as a tensor", seed)
    if tuple(got.shape) == tuple(expected.shape[::-1]) and got.shape != expected.shape:
        _kit.fail(Q1, f"shape {tuple(expected.shape)} (batch, prototypes)", f"shape {tuple(got.shape)}",
                  "transpose back at the end: the algorithm works on (prototypes, batch), the codes are "
                  "(batch, prototypes)", seed)
    if got.shape != expected.shape:
        _kit.fail(Q1, f"shape {tuple(expected.shape)}", f"shape {tuple(got.shape)}",
                  "one row per sample, one column per prototype", seed)
    got = got.detach().float()
    if not torch.isfinite(got).all():
        _kit.fail(Q1, "finite codes", "inf or nan values",
                  "exp(score / epsilon) overflows for large scores: subtract the largest value before the "
                  "exponential (it changes nothing after normalising)", seed)
    if not _close(got, expected):
        _kit.fail(Q1, np.round(expected[:2].numpy(), 4), np.round(got[:2].numpy(), 4),
                  _sinkhorn_hint(got, scores, n_iters, epsilon) +
                  f" (case: batch={len(scores)}, prototypes={scores.shape[1]}, n_iters={n_iters}, "
                  f"epsilon={epsilon}; first two rows shown)", seed)


def _check_no_grad(func: Callable, seed: int) -> None:
    scores = sinkhorn_case(seed)[0].requires_grad_()
    got = func(scores)
    if isinstance(got, torch.Tensor) and got.requires_grad:
        _kit.fail(Q1, "codes without gradient (requires_grad=False)", "codes that require grad",
                  "codes are targets, not predictions: compute them under `with torch.no_grad():` "
                  "(or decorate the function with @torch.no_grad())", seed)


SINKHORN = _kit.Answer(
    Q1, "sinkhorn", lambda: _forbidden("sinkhorn:sinkhorn", "loss:swav_codes"),
    hint="do not call rice_lab's (or lightly's) sinkhorn, the reference answer: write the loop yourself")


def check_sinkhorn(sinkhorn: Callable, seed: int | None = None) -> None:
    """Visible check for question 1 on fresh random scores."""
    sinkhorn, seed = SINKHORN.prepare(sinkhorn, seed)
    scores, n_iters, epsilon = sinkhorn_case(seed)
    _compare_sinkhorn(sinkhorn, scores, n_iters, epsilon, seed)
    _compare_sinkhorn(sinkhorn, scores, 1, 0.05, seed)  # one round is far from converged: counts must be exact
    _check_no_grad(sinkhorn, seed)
    _kit.passed(Q1, [f"batch {scores.shape[0]}, {scores.shape[1]} prototypes, n_iters={n_iters}, "
                     f"epsilon={epsilon}: same codes as rice_lab", "n_iters=1, epsilon=0.05: same codes",
                     "rows sum to 1, scores left unchanged",
                     "no gradient flows through the codes"])


def check_sinkhorn_hidden(sinkhorn: Callable, seed: int | None = None) -> None:
    """Hidden check for question 1: more cases, large scores, the default arguments."""
    sinkhorn, seed = SINKHORN.prepare(sinkhorn, seed)
    for k in range(3):
        _compare_sinkhorn(sinkhorn, *sinkhorn_case(seed + k), seed + k)
    # Adding a constant to every score changes no code, but exp(6 / 0.05) overflows unless the maximum
    # is subtracted first.
    _compare_sinkhorn(sinkhorn, sinkhorn_case(seed + 3, shift=5.0)[0], 3, 0.05, seed + 3)
    scores = sinkhorn_case(seed + 4)[0]
    if not _close(sinkhorn(scores.clone()).detach().float(), _reference_sinkhorn(scores, 3, 0.05)):
        _kit.fail(Q1, "defaults n_iters=3, epsilon=0.05", "other codes with the defaults",
                  "keep the signature sinkhorn(scores, n_iters=3, epsilon=0.05)", seed + 4)
    _kit.passed(Q1 + " (hidden)", ["three more shapes", "scores near 5 (no overflow)", "default arguments"])


# --- question 2: the swapped-prediction loss -------------------------------------------------------------

def loss_case(seed: int) -> tuple[list[torch.Tensor], int, float]:
    """Scores of 2-8 crops of the same plants (1-3 large), batch 4-32, prototypes 3-30; a temperature."""
    gen = _kit.rng(seed)
    n_large = int(gen.choice([1, 2, 2, 3]))
    n_small = int(gen.integers(max(0, 2 - n_large), 6))
    batch, n_prototypes, dim = int(gen.integers(4, 33)), int(gen.integers(3, 31)), int(gen.integers(4, 17))
    prototypes, plants = _unit(gen, n_prototypes, dim), _unit(gen, batch, dim)
    scores = []
    for v in range(n_large + n_small):
        noise = 0.3 if v < n_large else 0.6
        crop = F.normalize(plants + noise * _tensor(gen.normal(size=(batch, dim))), dim=1)
        scores.append(crop @ prototypes.t())
    return scores, n_large, float(gen.choice([0.1, 0.1, 0.2, 0.5]))


def _loss_variant(scores: list[torch.Tensor], n_large: int, temperature: float, code_crops: int | None = None,
                  with_self: bool = False, batch_sum: bool = False, by_n_large: bool = False) -> float:
    """The SwAV loss with one slip (codes from more crops, a crop predicting itself, a batch sum)."""
    log_probs = [F.log_softmax(s / temperature, dim=1) for s in scores]
    terms = []
    for i in range(code_crops or n_large):
        codes = _reference_sinkhorn(scores[i], 3, 0.05)
        others = [v for v in range(len(scores)) if with_self or v != i]
        per_crop = [-(codes * log_probs[v]).sum(dim=1) for v in others]
        terms.append(sum(p.sum() if batch_sum else p.mean() for p in per_crop) / len(others))
    return float(sum(terms) / (n_large if by_n_large else len(terms)))


def _loss_hint(value: float, scores: list[torch.Tensor], n_large: int, temperature: float) -> str:
    near = lambda other: math.isclose(value, other, rel_tol=1e-4, abs_tol=1e-4)  # noqa: E731
    if near(-_loss_variant(scores, n_large, temperature)):
        return "the cross-entropy is minus the sum of q * log p: check the sign"
    if len(scores) > n_large and any(near(_loss_variant(scores, n_large, temperature, code_crops=len(scores),
                                                        by_n_large=by)) for by in (False, True)):
        return f"codes come only from the first n_large={n_large} crops; small crops only predict"
    if near(_loss_variant(scores, n_large, temperature, with_self=True)):
        return "a crop never predicts its own code: for large crop i, skip v == i"
    if temperature != 1 and near(_loss_variant(scores, n_large, 1.0)):
        return f"divide the scores by the temperature ({temperature}) before log_softmax"
    if near(_loss_variant(scores, n_large, temperature, batch_sum=True)):
        return "average the cross-entropy over the batch (mean over samples), not sum it"
    return ("for each large crop i: q = sinkhorn(scores[i]); for every other crop v: "
            "-(q * log_softmax(scores[v] / temperature, dim=1)).sum(dim=1).mean(); average over those "
            "crops, then over the large crops (and make sure your sinkhorn passes its check first)")


def _reference_loss_and_grads(scores: list[torch.Tensor], n_large: int,
                              temperature: float) -> tuple[float, list[torch.Tensor]]:
    leaves = [s.clone().requires_grad_() for s in scores]
    value = loss_module.swav_loss(leaves, n_large=n_large, temperature=temperature)
    value.backward()
    return value.item(), [_grad(leaf) for leaf in leaves]


def _grad(leaf: torch.Tensor) -> torch.Tensor:
    """A leaf's gradient, zeros when none reached it (a crop that predicts nothing, e.g. with n_large=1)."""
    return torch.zeros_like(leaf) if leaf.grad is None else leaf.grad


def _compare_loss(func: Callable, scores: list[torch.Tensor], n_large: int, temperature: float, seed: int,
                  expected: float | None = None) -> None:
    reference, grads = _reference_loss_and_grads(scores, n_large, temperature)
    expected = reference if expected is None else expected
    leaves = [s.clone().requires_grad_() for s in scores]
    got = func(list(leaves), n_large=n_large, temperature=temperature)
    case = f" (case: {len(scores)} crops, n_large={n_large}, batch={len(scores[0])}, " \
           f"prototypes={scores[0].shape[1]}, temperature={temperature})"
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        what = type(got).__name__ if not isinstance(got, torch.Tensor) else f"a tensor of shape {tuple(got.shape)}"
        _kit.fail(Q2, "a 0-dim tensor (one number that can backpropagate)", what,
                  "average down to one number and return the tensor itself, not .item()" + case, seed)
    if not got.requires_grad:
        _kit.fail(Q2, "a loss that requires grad", "a loss without gradient",
                  "do not detach the predictions or wrap the loss in torch.no_grad(): only the codes are "
                  "targets" + case, seed)
    if not math.isclose(got.item(), expected, rel_tol=1e-4, abs_tol=1e-4):
        _kit.fail(Q2, round(expected, 5), round(got.item(), 5),
                  _loss_hint(got.item(), scores, n_large, temperature) + case, seed)
    try:
        got.backward()
    except RuntimeError as err:
        _kit.fail(Q2, "a loss that backpropagates", f"backward() failed: {str(err).splitlines()[0][:120]}",
                  "compute the codes under torch.no_grad() in your sinkhorn: they are targets, and its in-place "
                  "divisions break the graph otherwise" + case, seed)
    for v, (leaf, grad) in enumerate(zip(leaves, grads)):
        if not _close(_grad(leaf), grad, atol=1e-5, rtol=1e-3):
            _kit.fail(Q2, f"the reference gradient for crop {v}", "a different gradient",
                      "the value is right but the gradient is not: the codes must be constants (your "
                      "sinkhorn should run under torch.no_grad()), so that only log_softmax carries "
                      "gradient" + case, seed)


SWAV_LOSS = _kit.Answer(
    Q2, "swav_loss", lambda: _forbidden("loss:swav_loss", "loss:swav_codes", "sinkhorn:sinkhorn"),
    hint="do not call rice_lab's swav_loss or sinkhorn (or lightly's): use your own sinkhorn from question 1")


def check_swav_loss(swav_loss: Callable, seed: int | None = None) -> None:
    """Visible check for question 2 on fresh random crops' scores."""
    swav_loss, seed = SWAV_LOSS.prepare(swav_loss, seed)
    with _one_thread():
        scores, n_large, temperature = loss_case(seed)
        _compare_loss(swav_loss, scores, n_large, temperature, seed)
    _kit.passed(Q2, [f"{len(scores)} crops ({n_large} large), batch {len(scores[0])}, {scores[0].shape[1]} "
                     f"prototypes, temperature {temperature}: same loss as rice_lab",
                     "same gradient: the codes are treated as constants"])


def check_swav_loss_hidden(swav_loss: Callable, seed: int | None = None) -> None:
    """Hidden check for question 2: more cases, two large crops only, lightly's loss where installed."""
    swav_loss, seed = SWAV_LOSS.prepare(swav_loss, seed)
    with _one_thread():
        for k in range(3):
            _compare_loss(swav_loss, *loss_case(seed + k), seed + k)
        scores = loss_case(seed + 3)[0]
        _compare_loss(swav_loss, scores[:2], 2, 0.1, seed + 3)
        lightly = _lightly_loss(scores, min(2, len(scores) - 1))
        if lightly is not None:  # an independent implementation, when the course has it installed
            _compare_loss(swav_loss, scores, min(2, len(scores) - 1), 0.1, seed + 3, expected=lightly)
    _kit.passed(Q2 + " (hidden)", ["three more cases", "two large crops and no small ones",
                                   "agrees with lightly's SwaVLoss" if lightly is not None else
                                   "lightly not installed: skipped that comparison"])


def _lightly_loss(scores: list[torch.Tensor], n_large: int) -> float | None:
    try:
        from lightly.loss import SwaVLoss
    except ImportError:
        return None
    return float(SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(
        scores[:n_large], scores[n_large:]))


# --- question 3: paired multi-crop views -----------------------------------------------------------------

def views_case(seed: int, floats: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Two cameras' photos of 2-5 plants (the RGNIR ones distinctly brighter) and a crop recipe."""
    gen = _kit.rng(seed)
    batch, height = int(gen.integers(2, 6)), int(gen.integers(20, 40))
    width = int(gen.integers(height, height + 20))
    rgb = gen.integers(0, 120, size=(batch, 3, height, width))
    rgnir = gen.integers(130, 256, size=(batch, 3, height, width))
    spec = views.CropSpec(size=int(gen.choice([12, 16, 20])), n_large=int(gen.choice([1, 2, 2, 3])),
                          n_small=int(gen.integers(0, 5)), small_ratio=float(gen.choice([0.5, 0.75])),
                          max_rotation=float(gen.choice([0.0, 10.0])), jitter=float(gen.choice([0.0, 0.3])))
    if spec.n_crops < 2:
        spec = views.CropSpec(**{**spec.__dict__, "n_small": 2})
    to = (lambda a: torch.from_numpy(a).float() / 255) if floats else (lambda a: torch.from_numpy(a).to(torch.uint8))
    return to(rgb), to(rgnir), spec


def _plan(spec: Any, small_first_camera: int = 0, large_first_camera: int = 0) -> list[int]:
    return [(i + large_first_camera) % 2 for i in range(spec.n_large)] + \
        [(i + small_first_camera) % 2 for i in range(spec.n_small)]


def _crops_with(rgb: torch.Tensor, rgnir: torch.Tensor, spec: Any, plan: list[int], generator: torch.Generator,
                jitter: bool = True) -> list[torch.Tensor]:
    """Crops with a given camera plan (for naming a learner's slip)."""
    cameras = [views._as_float(rgb), views._as_float(rgnir)]
    crops = []
    for v, camera in enumerate(plan):
        large = v < spec.n_large
        crop = views.random_resized_crop(cameras[camera], spec.size if large else spec.small_size,
                                         spec.large_scale if large else spec.small_scale, spec.max_rotation,
                                         spec.flip, generator)
        crops.append(views.brightness_contrast(crop, spec.jitter, generator) if jitter else crop)
    return crops


def _same(a: list, b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(isinstance(x, torch.Tensor) and _close(x.float(), y, atol=1e-5) for x, y in zip(a, b))


def _views_hint(got: list, rgb: torch.Tensor, rgnir: torch.Tensor, spec: Any, seed: int) -> str:
    g = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    if rgb.dtype == torch.uint8 and _same(got, _crops_with(rgb.float(), rgnir.float(), spec, _plan(spec), g())):
        return "uint8 photos hold 0-255: divide them by 255 before cropping (float photos are already in [0, 1])"
    if spec.jitter > 0 and _same(got, _crops_with(rgb, rgnir, spec, _plan(spec), g(), jitter=False)):
        return "after each crop, apply brightness_contrast(crop, spec.jitter, generator)"
    for plan, hint in ((_plan(spec, small_first_camera=1), "small crops alternate too, starting with RGB "
                        "(small crop 0 is RGB, 1 is RGNIR, ...)"),
                       (_plan(spec, 1, 1), "crop 0 comes from the RGB camera, crop 1 from RGNIR, and so on"),
                       ([0] * spec.n_crops, "paired views alternate cameras: crop 0 RGB, crop 1 RGNIR, ..."),
                       ([v % 2 for v in range(spec.n_crops)],
                        "count the small crops' cameras from 0 again: small crop j uses camera j % 2")):
        if plan != _plan(spec) and _same(got, _crops_with(rgb, rgnir, spec, plan, g())):
            return hint
    return ("in order, for each crop: pick its camera, crop it with random_resized_crop(source, size, scale, "
            "spec.max_rotation, spec.flip, generator), then brightness_contrast(crop, spec.jitter, "
            "generator); draw every random number from `generator` and nothing else")


def _compare_views(func: Callable, rgb: torch.Tensor, rgnir: torch.Tensor, spec: Any, seed: int) -> None:
    expected = views.multi_crop(rgb, rgnir, spec, "paired", torch.Generator().manual_seed(seed))
    given = (rgb.clone(), rgnir.clone())
    got = func(given[0], given[1], spec, torch.Generator().manual_seed(seed))
    case = f" (case: {len(rgb)} plants, {tuple(rgb.shape[-2:])} px {rgb.dtype}, n_large={spec.n_large}, " \
           f"n_small={spec.n_small}, size={spec.size}, small_size={spec.small_size})"
    if not (torch.equal(given[0], rgb) and torch.equal(given[1], rgnir)):
        _kit.fail(Q3, "the photos left unchanged", "they were modified in place",
                  "convert to float into a new tensor (rgb.float() / 255) instead of editing the input" + case,
                  seed)
    if not isinstance(got, (list, tuple)) or len(got) != spec.n_crops:
        _kit.fail(Q3, f"a list of {spec.n_crops} crops", f"{type(got).__name__} of length "
                  f"{len(got) if hasattr(got, '__len__') else '?'}",
                  "one tensor per crop: the n_large large crops first, then the n_small small ones" + case, seed)
    shapes = [tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__ for c in got]
    wanted = [tuple(c.shape) for c in expected]
    if shapes != wanted:
        _kit.fail(Q3, wanted, shapes, "large crops are spec.size px square, small ones spec.small_size; "
                  "large ones come first" + case, seed)
    if any(c.dtype != torch.float32 for c in got):
        _kit.fail(Q3, "float32 crops", [str(c.dtype) for c in got],
                  "work in float32: uint8 photos become floats in [0, 1] (divide by 255)" + case, seed)
    if max(float(c.max()) for c in got) > 1.0 + 1e-4:
        _kit.fail(Q3, "values in [0, 1]", f"values up to {max(float(c.max()) for c in got):.1f}",
                  "uint8 photos hold 0-255: divide by 255 first (float photos are already in [0, 1])" + case, seed)
    again = func(rgb.clone(), rgnir.clone(), spec, torch.Generator().manual_seed(seed))
    if not _same(list(again), [c.float() for c in got]):
        _kit.fail(Q3, "the same crops for the same generator seed", "different crops",
                  "draw all randomness from the `generator` argument (pass it to random_resized_crop and "
                  "brightness_contrast), never from the global random state" + case, seed)
    if not _same(list(got), expected):
        means = [round(float(c.mean()), 2) for c in got]
        _kit.fail(Q3, f"crop means {[round(float(c.mean()), 2) for c in expected]}", f"crop means {means}",
                  _views_hint(list(got), rgb, rgnir, spec, seed) + " (RGB photos are dark here, RGNIR bright)"
                  + case, seed)


PAIRED_VIEWS = _kit.Answer(
    Q3, "paired_views", lambda: _forbidden("views:multi_crop", "views:camera_plan"),
    hint="do not call rice_lab's multi_crop or camera_plan (the reference): build the crops yourself")


def check_paired_views(paired_views: Callable, seed: int | None = None) -> None:
    """Visible check for question 3 on fresh random photos and a random crop recipe."""
    paired_views, seed = PAIRED_VIEWS.prepare(paired_views, seed)
    rgb, rgnir, spec = views_case(seed)
    _compare_views(paired_views, rgb, rgnir, spec, seed)
    _kit.passed(Q3, [f"{spec.n_large} large + {spec.n_small} small crops of {len(rgb)} plants: the same "
                     "crops as rice_lab's paired multi_crop", "cameras alternate, large crops first",
                     "same generator seed, same crops"])


def check_paired_views_hidden(paired_views: Callable, seed: int | None = None) -> None:
    """Hidden check for question 3: float photos, more recipes."""
    paired_views, seed = PAIRED_VIEWS.prepare(paired_views, seed)
    for k in range(3):
        _compare_views(paired_views, *views_case(seed + k, floats=k % 2 == 0), seed + k)
    _kit.passed(Q3 + " (hidden)", ["float photos in [0, 1] as well as uint8", "three more recipes"])


# --- question 4: one training step ---------------------------------------------------------------------

def tiny_model(seed: int, n_prototypes: int = 8, dim: int = 16) -> nn.Module:
    """A small SwAV network (two conv layers) the checks train; prototypes deliberately not unit length."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())
        encoder.num_features = 16
        model = model_module.SwAVModel(encoder, hidden=32, dim=dim, n_prototypes=n_prototypes)
        with torch.no_grad():
            model.prototypes.weight.mul_(torch.rand(n_prototypes, 1) + 0.5)
    return model


def step_case(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, Any]:
    gen = _kit.rng(seed)
    rgb, rgnir, _ = views_case(seed)
    spec = views.CropSpec(size=16, n_large=2, n_small=int(gen.integers(0, 3)), jitter=0.3)
    return tiny_model(seed, n_prototypes=int(gen.integers(4, 12))), rgb, rgnir, spec


def _reference_step(model: nn.Module, optimizer: torch.optim.Optimizer, rgb: torch.Tensor, rgnir: torch.Tensor,
                    spec: Any, generator: torch.Generator, normalize: bool = True, zero_grad: bool = True) -> float:
    crops = views.multi_crop(rgb, rgnir, spec, "paired", generator)
    if normalize:
        with torch.no_grad():
            model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, dim=1))
    _, scores = model(crops)
    value = loss_module.swav_loss(list(scores.chunk(len(crops))), n_large=spec.n_large)
    if zero_grad:
        optimizer.zero_grad()
    value.backward()
    optimizer.step()
    return value.item()


def _stale_grads(model: nn.Module) -> None:
    """Gradients left over from an earlier step: a step that forgets zero_grad adds to them."""
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)


def _run_step(step: Callable, model: nn.Module, rgb, rgnir, spec, seed: int, **variant) -> tuple[Any, nn.Module]:
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _stale_grads(model)
    fn = step if not variant else (lambda *a: _reference_step(*a, **variant))
    out = fn(model, optimizer, rgb.clone(), rgnir.clone(), spec, torch.Generator().manual_seed(seed))
    return out, model


def _params_close(a: nn.Module, b: nn.Module) -> bool:
    return all(_close(x.detach(), y.detach(), atol=1e-5, rtol=1e-4) for x, y in zip(a.parameters(), b.parameters()))


def _compare_step(func: Callable, model: nn.Module, rgb, rgnir, spec, seed: int) -> None:
    case = f" (case: {len(rgb)} plants, {spec.n_large} large + {spec.n_small} small crops, " \
           f"{model.prototypes.weight.shape[0]} prototypes)"
    expected, after = _run_step(None, model, rgb, rgnir, spec, seed, normalize=True, zero_grad=True)
    got, trained = _run_step(func, model, rgb, rgnir, spec, seed)
    if isinstance(got, torch.Tensor) and got.ndim == 0:
        _kit.fail(Q4, "a Python float", "a tensor", "return loss.item() (a plain number, no graph kept)" + case,
                  seed)
    if not isinstance(got, float):
        _kit.fail(Q4, "a Python float (the batch's loss)", type(got).__name__, "return loss.item()" + case, seed)
    if not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-4):
        unnormalised, _ = _run_step(None, model, rgb, rgnir, spec, seed, normalize=False)
        hint = ("put the prototypes back on the unit sphere before the forward pass: under torch.no_grad(), "
                "model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, dim=1))"
                if math.isclose(got, unnormalised, rel_tol=1e-4, abs_tol=1e-4) else
                "crops = paired_views(rgb, rgnir, spec, generator); embeddings, scores = model(crops); "
                "loss = swav_loss(list(scores.chunk(len(crops))), n_large=spec.n_large) — and make sure "
                "paired_views and swav_loss pass their checks first")
        _kit.fail(Q4, round(expected, 5), round(got, 5), hint + case, seed)
    if _params_close(trained, model):
        _kit.fail(Q4, "the weights updated by one optimiser step", "unchanged weights",
                  "after loss.backward(), call optimizer.step()" + case, seed)
    if not _params_close(trained, after):
        _, stale = _run_step(None, model, rgb, rgnir, spec, seed, zero_grad=False)
        hint = ("clear the old gradients first: optimizer.zero_grad() before loss.backward()"
                if _params_close(trained, stale) else
                "one step: optimizer.zero_grad(); loss.backward(); optimizer.step() — once, on this loss")
        _kit.fail(Q4, "the weights after one reference step", "other weights", hint + case, seed)


TRAIN_STEP = _kit.Answer(
    Q4, "train_step", lambda: _forbidden("views:multi_crop", "loss:swav_loss", "loss:swav_codes", "sinkhorn:sinkhorn"),
    hint="use your own paired_views and swav_loss, not rice_lab's")


def check_train_step(train_step: Callable, seed: int | None = None) -> None:
    """Visible check for question 4: one step on a small network, compared with the reference step."""
    train_step, seed = TRAIN_STEP.prepare(train_step, seed)
    with _one_thread():
        model, rgb, rgnir, spec = step_case(seed)
        _compare_step(train_step, model, rgb, rgnir, spec, seed)
    _kit.passed(Q4, ["same loss as the reference step (prototypes normalised first)",
                     "same weights after the step (old gradients cleared, one optimiser step)"])


def check_train_step_hidden(train_step: Callable, seed: int | None = None) -> None:
    """Hidden check for question 4: more networks and recipes."""
    train_step, seed = TRAIN_STEP.prepare(train_step, seed)
    with _one_thread():
        for k in range(1, 3):
            _compare_step(train_step, *step_case(seed + k), seed + k)
    _kit.passed(Q4 + " (hidden)", ["two more networks and recipes"])


# --- question 5: a short pre-training --------------------------------------------------------------------

def _course_photos(height: int = 32) -> types.SimpleNamespace:
    """The course's synthetic plants, both cameras, decoded small."""
    from autograder.datasets import course_dataset
    from rice_lab.data.zindi import read_zindi

    plants = read_zindi(course_dataset(plants=40, size=64, seed=0))
    images = views.PlantImages(plants, *views.load_size(height))
    return types.SimpleNamespace(rgb=images.rgb, rgnir=images.rgnir)


def _held_out_loss(model: nn.Module, photos: types.SimpleNamespace, spec: Any, seed: int) -> float:
    """The reference SwAV loss of ``model`` on fixed crops of every plant (a copy, so BN stats stay put)."""
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, dim=1))
        crops = views.multi_crop(photos.rgb, photos.rgnir, spec, "paired", torch.Generator().manual_seed(seed))
        return float(loss_module.swav_loss(list(model(crops)[1].chunk(len(crops))), n_large=spec.n_large))


def _compare_pretrain(func: Callable, steps: int, batch_size: int, seed: int) -> tuple[float, float, list[float]]:
    photos = _course_photos()
    spec = views.CropSpec(size=16, n_large=2, n_small=2, jitter=0.3)
    model = tiny_model(seed, n_prototypes=8)
    before_weights = copy.deepcopy(model)
    before = _held_out_loss(model, photos, spec, seed + 1)
    case = f" (case: {steps} steps, batch {batch_size}, seed {seed})"
    losses = func(model, photos, steps=steps, batch_size=batch_size, spec=spec, lr=3e-3, seed=seed)
    if not isinstance(losses, (list, tuple)) or len(losses) != steps:
        _kit.fail(Q5, f"a list of {steps} losses, one per step", f"{type(losses).__name__} of length "
                  f"{len(losses) if hasattr(losses, '__len__') else '?'}",
                  "append train_step(...)'s return value to a list at every step and return it" + case, seed)
    if not all(isinstance(v, (float, int)) and math.isfinite(v) for v in losses):
        _kit.fail(Q5, "finite numbers", [v if isinstance(v, (float, int)) else type(v).__name__ for v in losses[:4]],
                  "each entry is the float train_step returned" + case, seed)
    if _params_close(model, before_weights):
        _kit.fail(Q5, "a trained model (its weights changed)", "the same weights as before",
                  "train the model you are given, in place: build the optimiser on model.parameters()" + case,
                  seed)
    after = _held_out_loss(model, photos, spec, seed + 1)
    quarter = max(1, steps // 4)
    first, last = float(np.mean(losses[:quarter])), float(np.mean(losses[-quarter:]))
    if not after < before - 0.1:
        _kit.fail(Q5, f"the SwAV loss on fixed crops of every plant to fall from {before:.3f}",
                  f"{after:.3f} after training",
                  "each step: a new random batch of plants, train_step on it with one Adam optimiser built "
                  "once before the loop (lr as given)" + case, seed)
    if not last < first:
        _kit.fail(Q5, "the recorded losses to fall (last quarter below the first)",
                  f"first quarter {first:.3f}, last quarter {last:.3f}",
                  "return the losses in the order of the steps" + case, seed)
    return before, after, list(losses)


PRETRAIN = _kit.Answer(
    Q5, "pretrain", lambda: _forbidden("views:multi_crop", "loss:swav_loss", "loss:swav_codes", "sinkhorn:sinkhorn"),
    hint="use your own train_step (with your paired_views and swav_loss), not rice_lab's pieces")


def check_pretrain(pretrain: Callable, seed: int | None = None) -> None:
    """Visible check for question 5: a 40-step pre-training of a small network on the course plants."""
    pretrain, seed = PRETRAIN.prepare(pretrain, seed)
    with _one_thread():
        before, after, _ = _compare_pretrain(pretrain, 40, 16, seed)
    _kit.passed(Q5, ["40 finite losses, one per step, falling", f"the network itself improved: SwAV loss on "
                     f"fixed crops of all 40 plants {before:.3f} -> {after:.3f}"])


def check_pretrain_hidden(pretrain: Callable, seed: int | None = None) -> None:
    """Hidden check for question 5: another batch size, and the same seed gives the same run."""
    pretrain, seed = PRETRAIN.prepare(pretrain, seed)
    with _one_thread():
        _, _, losses = _compare_pretrain(pretrain, 40, 8, seed)
        photos = _course_photos()
        spec = views.CropSpec(size=16, n_large=2, n_small=2, jitter=0.3)
        again = pretrain(tiny_model(seed, n_prototypes=8), photos, steps=5, batch_size=8, spec=spec, lr=3e-3,
                         seed=seed)
        if not np.allclose(list(again), losses[:5], rtol=1e-4, atol=1e-4):
            _kit.fail(Q5, f"the same first losses for the same seed {np.round(losses[:5], 4).tolist()}",
                      np.round(list(again), 4).tolist(),
                      "make the run reproducible: one torch.Generator().manual_seed(seed), used for choosing "
                      "the batches and for the crops", seed)
    _kit.passed(Q5 + " (hidden)", ["batch size 8: the loss falls too", "the same seed gives the same run"])
