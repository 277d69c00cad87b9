"""Checks for assignment 02-ssl: sinkhorn, the swapped-prediction loss, paired views, a training step,
a short pre-training.

Each ``check_*`` runs the learner's function on freshly generated cases (random batch sizes, prototype
counts, crops and scores). Where the answer is unique (sinkhorn, the loss, one step on fixed crops) it
is compared with ``rice_lab``'s reference; where it depends on random numbers (the crops, a training
run) the check tests properties every right answer has, whatever order it draws its random numbers
in, and uses the reference's known slips only to name the mistake. ``check_*_hidden`` adds the cases
used only when grading (and, where it is installed, lightly's SwAV loss as a second reference).
"""

from __future__ import annotations

import copy
import importlib
import math
import sys
import types
from typing import Any, Callable

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

Q1, Q2, Q3, Q4, Q5 = "sinkhorn", "swav_loss", "paired_views", "train_step", "pretrain"


def _forbidden(*names: str) -> dict[str, Callable]:
    """Reference functions the answers must not call, as seen here and as imported by the notebook.

    Names are ``module:function`` with module one of sinkhorn, loss, views; lightly's SwAV pieces are
    added when the notebook has imported lightly.
    """
    modules = {"sinkhorn": sinkhorn_module, "loss": loss_module, "views": views}
    found = _kit.references(*((modules[key], name) for key, name in (item.split(":") for item in names)))
    lightly_swav = sys.modules.get("lightly.loss.swav_loss")
    if lightly_swav is not None:
        found["lightly's sinkhorn"] = lightly_swav.sinkhorn
        found["lightly's SwaVLoss"] = lightly_swav.SwaVLoss
    return found


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
    batch = len(scores)
    if _close(got.sum(dim=1), torch.full((batch,), 1.0 / batch), atol=1e-4):
        return "multiply by B (the batch size) at the end: each row (one sample) must sum to 1, yours sum to 1/B"
    if _close(got, torch.softmax(scores / epsilon, dim=0), atol=1e-4):
        return ("that is a softmax over the batch (dim=0): each sample's code is a distribution over the "
                "prototypes, so rows must sum to 1; and Sinkhorn alternates both normalisations n_iters times")
    if not _close(got.sum(dim=1), torch.ones(batch), atol=1e-4):
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
    outcome = _kit.call(func, scores.clone(), n_iters=n_iters, epsilon=epsilon)
    got = outcome.result
    if not torch.equal(outcome.args[0].detach(), scores):
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
    hint="do not call rice_lab's (or lightly's) sinkhorn, the reference answer: write the loop yourself",
    module=__name__)


@_kit.check(SINKHORN)
def check_sinkhorn(sinkhorn: Callable, seed: int) -> None:
    """Visible check for question 1 on fresh random scores."""
    scores, n_iters, epsilon = sinkhorn_case(seed)
    _compare_sinkhorn(sinkhorn, scores, n_iters, epsilon, seed)
    _compare_sinkhorn(sinkhorn, scores, 1, 0.05, seed)  # one round is far from converged: counts must be exact
    _check_no_grad(sinkhorn, seed)
    _kit.passed(Q1, [f"batch {scores.shape[0]}, {scores.shape[1]} prototypes, n_iters={n_iters}, "
                     f"epsilon={epsilon}: same codes as rice_lab", "n_iters=1, epsilon=0.05: same codes",
                     "rows sum to 1, scores left unchanged",
                     "no gradient flows through the codes"])


@_kit.check(SINKHORN)
def check_sinkhorn_hidden(sinkhorn: Callable, seed: int) -> None:
    """Hidden check for question 1: more cases, large scores, the default arguments."""
    for k in range(3):
        _compare_sinkhorn(sinkhorn, *sinkhorn_case(seed + k), seed + k)
    # Adding a constant to every score changes no code, but exp(6 / 0.05) overflows unless the maximum
    # is subtracted first.
    _compare_sinkhorn(sinkhorn, sinkhorn_case(seed + 3, shift=5.0)[0], 3, 0.05, seed + 3)
    scores = sinkhorn_case(seed + 4)[0]
    codes = sinkhorn(scores.clone())
    if not isinstance(codes, torch.Tensor) or not _close(codes.detach().float(), _reference_sinkhorn(scores, 3, 0.05)):
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
                  with_self: bool = False, batch_sum: bool = False, by_n_large: bool = False, dim: int = 1,
                  same_crop: bool = False) -> float:
    """The SwAV loss with one slip (codes from more crops, a crop predicting itself, a batch sum, the
    softmax over the batch, each crop predicting its own code)."""
    log_probs = [F.log_softmax(s / temperature, dim=dim) for s in scores]
    terms = []
    for i in range(code_crops or n_large):
        codes = _reference_sinkhorn(scores[i], 3, 0.05)
        others = [i] if same_crop else [v for v in range(len(scores)) if with_self or v != i]
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
    if near(_loss_variant(scores, n_large, temperature, with_self=True)) or \
            near(_loss_variant(scores, n_large, temperature, same_crop=True)):
        return "a crop never predicts its own code (the prediction is *swapped*): for large crop i, skip v == i"
    if near(_loss_variant(scores, n_large, temperature, dim=0)):
        return ("the softmax runs over the batch (dim=0): each crop predicts a distribution over the prototypes, "
                "so use log_softmax(scores[v] / temperature, dim=1)")
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
    outcome = _kit.call(func, list(leaves), n_large=n_large, temperature=temperature, backward=True)
    got = outcome.result
    case = f" (case: {len(scores)} crops, n_large={n_large}, batch={len(scores[0])}, " \
           f"prototypes={scores[0].shape[1]}, temperature={temperature})"
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        what = type(got).__name__ if not isinstance(got, torch.Tensor) else f"a tensor of shape {tuple(got.shape)}"
        hint = "average down to one number and return the tensor itself, not .item()"
        if isinstance(got, torch.Tensor) and got.ndim == 1 and len(got) == len(scores[0]):
            hint = "one loss per sample came back: average the cross-entropy over the batch (.mean())"
        _kit.fail(Q2, "a 0-dim tensor (one number that can backpropagate)", what, hint + case, seed)
    if not got.requires_grad:
        _kit.fail(Q2, "a loss that requires grad", "a loss without gradient",
                  "do not detach the predictions or wrap the loss in torch.no_grad(): only the codes are "
                  "targets" + case, seed)
    if not math.isclose(got.item(), expected, rel_tol=1e-4, abs_tol=1e-4):
        _kit.fail(Q2, round(expected, 5), round(got.item(), 5),
                  _loss_hint(got.item(), scores, n_large, temperature) + case, seed)
    if outcome.backward_error is not None:
        _kit.fail(Q2, "a loss that backpropagates", f"backward() failed: {outcome.backward_error[:120]}",
                  "compute the codes under torch.no_grad() in your sinkhorn: they are targets, and its in-place "
                  "divisions break the graph otherwise" + case, seed)
    got_grads = list(outcome.grads or [])
    if len(got_grads) != len(grads) or any(
            not _close(torch.zeros_like(ref) if g is None else g, ref, atol=1e-5, rtol=1e-3)
            for g, ref in zip(got_grads, grads)):
        _kit.fail(Q2, "the reference gradient for every crop", "a different gradient",
                  "the value is right but the gradient is not: the codes must be constants (detach them, or "
                  "run your sinkhorn under torch.no_grad()), so that only log_softmax carries gradient" + case,
                  seed)


SWAV_LOSS = _kit.Answer(
    Q2, "swav_loss", lambda: _forbidden("loss:swav_loss", "loss:swav_codes", "sinkhorn:sinkhorn"),
    hint="do not call rice_lab's swav_loss or sinkhorn (or lightly's): use your own sinkhorn from question 1",
    module=__name__)


@_kit.check(SWAV_LOSS)
def check_swav_loss(swav_loss: Callable, seed: int) -> None:
    """Visible check for question 2 on fresh random crops' scores."""
    with _kit.one_thread():
        scores, n_large, temperature = loss_case(seed)
        _compare_loss(swav_loss, scores, n_large, temperature, seed)
    _kit.passed(Q2, [f"{len(scores)} crops ({n_large} large), batch {len(scores[0])}, {scores[0].shape[1]} "
                     f"prototypes, temperature {temperature}: same loss as rice_lab",
                     "same gradient: the codes are treated as constants"])


@_kit.check(SWAV_LOSS)
def check_swav_loss_hidden(swav_loss: Callable, seed: int) -> None:
    """Hidden check for question 2: more cases, two large crops only, lightly's loss where installed."""
    with _kit.one_thread():
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
#
# Which random numbers a right answer draws, and in which order, is its own business: the checks only
# test what every right answer does. Constant-colour photos make each crop's colour independent of where
# the crop falls, so it says which camera and which plant a crop came from; a horizontal ramp makes a
# crop's range of values say how much of the photo it covers.

def _as_photos(array: np.ndarray, floats: bool) -> torch.Tensor:
    return torch.from_numpy(array).float() / 255 if floats else torch.from_numpy(array).to(torch.uint8)


def _random_spec(gen: np.random.Generator, **fixed: Any) -> Any:
    values = dict(size=int(gen.choice([12, 16, 20])), n_large=int(gen.choice([1, 2, 2, 3])),
                  n_small=int(gen.integers(1, 5)), small_ratio=float(gen.choice([0.5, 0.75])),
                  max_rotation=float(gen.choice([0.0, 10.0])), flip=bool(gen.integers(0, 2)),
                  jitter=float(gen.choice([0.0, 0.3])))
    values.update(fixed)
    if values["n_large"] + values["n_small"] < 2:
        values["n_small"] = 2
    return views.CropSpec(**values)


def views_case(seed: int, floats: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Two cameras' photos of 2-5 plants (textured; the RGNIR ones brighter) and a random crop recipe."""
    gen = _kit.rng(seed)
    batch, height = int(gen.integers(2, 6)), int(gen.integers(20, 40))
    width = int(gen.integers(height, height + 20))
    rgb = gen.integers(0, 120, size=(batch, 3, height, width))
    rgnir = gen.integers(130, 256, size=(batch, 3, height, width))
    return _as_photos(rgb, floats), _as_photos(rgnir, floats), _random_spec(gen)


def colour_case(seed: int, floats: bool = False, jitter: float = 0.0,
                **fixed: Any) -> tuple[torch.Tensor, torch.Tensor, Any, np.ndarray]:
    """Photos of one colour each: every plant and camera its own colour; (rgb, rgnir, spec, colours).

    ``colours[camera, plant]`` is the colour in [0, 1]; RGB colours are dark and reddish, RGNIR ones
    bright and bluish, so no colour of one camera is close to one of the other.
    """
    gen = _kit.rng(seed)
    batch, height = int(gen.integers(3, 7)), int(gen.integers(20, 40))
    width = int(gen.integers(height, height + 20))
    levels = np.stack([gen.integers(low, high, size=(batch, 3)) for low, high in ((20, 110), (140, 230))])
    levels[0, :, 0] = np.maximum(levels[0, :, 0], levels[0, :, 2] + 10)   # RGB: more red than blue
    levels[1, :, 2] = np.maximum(levels[1, :, 2], levels[1, :, 0] + 10)   # RGNIR: more "blue" (NIR)
    levels = np.minimum(levels, 255)
    photos = [np.broadcast_to(levels[k][:, :, None, None], (batch, 3, height, width)).copy() for k in (0, 1)]
    spec = _random_spec(gen, jitter=jitter, **fixed)
    return _as_photos(photos[0], floats), _as_photos(photos[1], floats), spec, levels / 255.0


def ramp_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """16 plants photographed as a left-to-right ramp (0 to 1), both cameras; no rotation, no jitter."""
    gen = _kit.rng(seed)
    height = int(gen.integers(24, 40))
    width = int(height * 5 / 4)
    ramp = np.linspace(0, 1, width, dtype=np.float32)
    photos = torch.from_numpy(np.broadcast_to(ramp, (16, 3, height, width)).copy())
    spec = _random_spec(gen, max_rotation=0.0, flip=False, jitter=0.0, n_large=2, n_small=int(gen.integers(2, 5)))
    return photos, photos.clone(), spec


def _paired_plan(spec: Any) -> list[int]:
    """The camera of each crop in paired views: 0 (RGB) or 1 (RGNIR), alternating within each group."""
    return [i % 2 for i in range(spec.n_large)] + [i % 2 for i in range(spec.n_small)]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and
                                    _close(x.float(), y.float(), atol=1e-5) for x, y in zip(a, b))


def _crops_of(func: Callable, rgb: torch.Tensor, rgnir: torch.Tensor, spec: Any, seed: int) -> Any:
    return _kit.call(func, rgb.clone(), rgnir.clone(), spec, torch.Generator().manual_seed(seed))


def _check_structure(func: Callable, rgb: torch.Tensor, rgnir: torch.Tensor, spec: Any, seed: int) -> list:
    """Count, shapes, dtype and range of the crops; the photos untouched; the generator drives them."""
    outcome = _crops_of(func, rgb, rgnir, spec, seed)
    got = outcome.result
    case = f" (case: {len(rgb)} plants, {tuple(rgb.shape[-2:])} px {rgb.dtype}, n_large={spec.n_large}, " \
           f"n_small={spec.n_small}, size={spec.size}, small_size={spec.small_size})"
    if not (torch.equal(outcome.args[0], rgb) and torch.equal(outcome.args[1], rgnir)):
        _kit.fail(Q3, "the photos left unchanged", "they were modified in place",
                  "convert to float into a new tensor (rgb.float() / 255) instead of editing the input" + case, seed)
    if not isinstance(got, (list, tuple)) or len(got) != spec.n_crops:
        _kit.fail(Q3, f"a list of {spec.n_crops} crops", f"{type(got).__name__} of length "
                  f"{len(got) if hasattr(got, '__len__') else '?'}",
                  "one tensor per crop: the n_large large crops first, then the n_small small ones" + case, seed)
    shapes = [tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__ for c in got]
    wanted = [(len(rgb), 3, spec.size, spec.size)] * spec.n_large + \
        [(len(rgb), 3, spec.small_size, spec.small_size)] * spec.n_small
    if shapes != wanted:
        hint = "large crops are spec.size px square, small ones spec.small_size; large ones come first"
        if spec.n_small and all(s == wanted[0] for s in shapes):
            hint = "small crops are spec.small_size px square (and cover spec.small_scale of the photo), not spec.size"
        _kit.fail(Q3, wanted, shapes, hint + case, seed)
    if any(c.dtype != torch.float32 for c in got):
        _kit.fail(Q3, "float32 crops", [str(c.dtype) for c in got],
                  "work in float32: uint8 photos become floats in [0, 1] (divide by 255)" + case, seed)
    top = max(float(c.max()) for c in got)
    if top > 1.0 + 1e-4:
        _kit.fail(Q3, "values in [0, 1]", f"values up to {top:.1f}",
                  "uint8 photos hold 0-255: divide by 255 first (float photos are already in [0, 1])" + case, seed)
    again = _crops_of(func, rgb, rgnir, spec, seed).result
    if not _same(list(again), list(got)):
        _kit.fail(Q3, "the same crops for the same generator seed", "different crops",
                  "draw all randomness from the `generator` argument (pass it to random_resized_crop and "
                  "brightness_contrast), never from the global random state" + case, seed)
    other = _crops_of(func, rgb, rgnir, spec, seed + 1).result
    if _same(list(other), list(got)):
        _kit.fail(Q3, "other crops for another generator seed", "the same crops",
                  "use the `generator` you are given (do not make your own with a fixed seed)" + case, seed)
    return list(got)


def _check_cameras(func: Callable, rgb: torch.Tensor, rgnir: torch.Tensor, spec: Any, colours: np.ndarray,
                   seed: int) -> None:
    """Each crop of each plant has the colour of that plant's photo from the right camera."""
    got = _crops_of(func, rgb, rgnir, spec, seed).result
    plan = _paired_plan(spec)
    batch = len(rgb)
    case = f" (case: {batch} one-colour plants, n_large={spec.n_large}, n_small={spec.n_small}, " \
           f"jitter={spec.jitter})"
    top = max(float(c.max()) for c in got)
    saturated = np.mean([float((c >= 1.0 - 1e-6).float().mean()) for c in got])
    if top > 1.0 + 1e-4 or (saturated > 0.5 and colours.max() < 0.95):
        _kit.fail(Q3, "values in [0, 1], each crop the colour of its photo", f"values up to {top:.1f}, "
                  f"{saturated:.0%} of them at 1.0", "uint8 photos hold 0-255: divide them by 255 before cropping "
                  "(brightness_contrast clamps at 1, which hides the mistake)" + case, seed)
    found: list[list[tuple[int, int] | None]] = []
    for crop in got:
        per_plant = []
        for b in range(batch):
            mean = crop[b].float().mean(dim=(1, 2)).numpy()
            distances = np.abs(colours.reshape(-1, 3) - mean).max(axis=1)  # (2 * batch,): camera-major
            k = int(distances.argmin())
            per_plant.append((k // batch, k % batch) if distances[k] < 0.02 else None)
        found.append(per_plant)
    if spec.jitter == 0:
        exact = all(_close(crop[b].float(), torch.as_tensor(colours[plan[v], b], dtype=torch.float32)
                           .view(3, 1, 1).expand_as(crop[b]), atol=2e-3)
                    for v, crop in enumerate(got) for b in range(batch))
        if exact:
            return
    else:
        if _jitter_ok(got, plan, colours, spec.jitter):
            return
    seen = [[f"{'RGB' if x[0] == 0 else 'RGNIR'}" if x else "?" for x in per_plant] for per_plant in found]
    expected = [("RGB" if c == 0 else "RGNIR") for c in plan]
    _kit.fail(Q3, f"cameras per crop {expected}", f"cameras per crop {[s[0] for s in seen]}",
              _camera_hint(found, plan, spec, colours, got) + case, seed)


def _jitter_ok(got: list, plan: list[int], colours: np.ndarray, strength: float) -> bool:
    """Every crop is its colour changed by brightness/contrast of at most ``strength``, some visibly."""
    changed = False
    for v, crop in enumerate(got):
        for b in range(len(crop)):
            colour = colours[plan[v], b]
            mean = colour.mean()
            pixels = crop[b].float().mean(dim=(1, 2)).numpy()
            bound = strength * (colour + 2 * mean) + 2e-3
            if (np.abs(pixels - colour) > bound).any():
                return False
            changed |= bool(np.abs(pixels - colour).max() > 1e-3)
    return changed


def _camera_hint(found: list, plan: list[int], spec: Any, colours: np.ndarray, got: list) -> str:
    cameras = [[x[0] if x else None for x in per_plant] for per_plant in found]
    plants = [[x[1] if x else None for x in per_plant] for per_plant in found]
    if any(p is None for row in plants for p in row):
        if spec.jitter == 0:
            return ("some crops have a colour that is in neither photo of their plant: crop the photos "
                    "as they are (random_resized_crop), with no other change when spec.jitter is 0")
        return ("with spec.jitter > 0, apply brightness_contrast(crop, spec.jitter, generator) to each crop "
                "once, with the jitter from the spec")
    if any(row != list(range(len(row))) for row in plants):
        return "crop k of plant b must come from plant b's photos: keep the batch in its order"
    learner_plan = [row[0] for row in cameras]
    if learner_plan == plan and spec.jitter > 0:
        return "after each crop, apply brightness_contrast(crop, spec.jitter, generator)"
    if learner_plan == [v % 2 for v in range(spec.n_crops)]:
        return "small crops alternate too, counted from 0 again: small crop 0 is RGB, small crop 1 RGNIR, ..."
    if len(set(learner_plan)) == 1:
        return "paired views alternate cameras: large crop 0 from RGB, large crop 1 from RGNIR, ..."
    if learner_plan == [1 - c for c in plan]:
        return "crop 0 comes from the RGB camera (the first photo), crop 1 from RGNIR, and so on"
    return ("cameras alternate within each group: large crops RGB, RGNIR, RGB...; then small crops RGB, RGNIR, "
            "RGB...")


def _check_scales(func: Callable, seed: int) -> None:
    """Large crops cover much of the photo, small crops little (ramp photos: a crop's range of values)."""
    rgb, rgnir, spec = ramp_case(seed)
    outcome = _crops_of(func, rgb, rgnir, spec, seed)
    got = outcome.result
    if not (torch.equal(outcome.args[0], rgb) and torch.equal(outcome.args[1], rgnir)):
        _kit.fail(Q3, "the float photos left unchanged", "they were modified in place",
                  "float photos are already in [0, 1]: use them as they are, and never divide the input in place "
                  "(x.float() is x itself when x is already float)", seed)
    if max(float(c.max()) for c in got) < 0.1:
        _kit.fail(Q3, "crops of float photos with values up to about 1", f"values up to {max(float(c.max()) for c in got):.3f}",
                  "float photos are already in [0, 1]: divide only uint8 photos by 255", seed)
    extents = [float((c[:, 0].amax(dim=(1, 2)) - c[:, 0].amin(dim=(1, 2))).mean()) for c in got]
    large, small = extents[:spec.n_large], extents[spec.n_large:]
    # Right answers, 1,500 seeds: large >= 0.54, small <= 0.42; scales swapped: small >= 0.58, large <= 0.40.
    if min(large) < 0.47 or max(small) > 0.5:
        _kit.fail(Q3, "large crops covering spec.large_scale of the photo, small ones spec.small_scale",
                  f"share of the width covered: large {np.round(large, 2).tolist()}, small {np.round(small, 2).tolist()}",
                  "pass spec.large_scale to the large crops and spec.small_scale to the small ones "
                  "(random_resized_crop(source, size, scale, ...))", seed)


PAIRED_VIEWS = _kit.Answer(
    Q3, "paired_views", lambda: _forbidden("views:multi_crop", "views:camera_plan"),
    hint="do not call rice_lab's multi_crop or camera_plan (the reference): build the crops yourself",
    module=__name__)


@_kit.check(PAIRED_VIEWS)
def check_paired_views(paired_views: Callable, seed: int) -> None:
    """Visible check for question 3: structure, cameras, jitter and scales, whatever your random order."""
    rgb, rgnir, spec = views_case(seed)
    _check_structure(paired_views, rgb, rgnir, spec, seed)
    # 3 large + 3 small crops: every slip in the cameras' order shows (with 2 + 2 some do not).
    for jitter in (0.0, 0.3):
        rgb, rgnir, spec, colours = colour_case(seed, jitter=jitter, n_large=3, n_small=3)
        _check_cameras(paired_views, rgb, rgnir, spec, colours, seed)
    _check_scales(paired_views, seed)
    _kit.passed(Q3, [f"{spec.n_large} large + {spec.n_small} small crops of {len(rgb)} plants: shapes, float32 "
                     "in [0, 1], photos unchanged", "each crop from its plant and the right camera (RGB, RGNIR, "
                     "alternating in each group)", "brightness/contrast jitter applied within spec.jitter",
                     "large crops cover more of the photo than small ones",
                     "same generator seed, same crops; another seed, other crops"])


@_kit.check(PAIRED_VIEWS)
def check_paired_views_hidden(paired_views: Callable, seed: int) -> None:
    """Hidden check for question 3: float photos, more recipes."""
    for k in range(1, 3):
        floats = k % 2 == 1
        _check_structure(paired_views, *views_case(seed + k, floats=floats), seed + k)
        rgb, rgnir, spec, colours = colour_case(seed + k, floats=floats, jitter=0.3 * (k - 1))
        _check_cameras(paired_views, rgb, rgnir, spec, colours, seed + k)
    _kit.passed(Q3 + " (hidden)", ["float photos in [0, 1] as well as uint8", "two more recipes"])


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


def step_case(seed: int, n_large: int | None = None) -> tuple[nn.Module, torch.Tensor, torch.Tensor, Any]:
    """A small network and one-colour photos: every right paired_views gives the same crops of them."""
    gen = _kit.rng(seed)
    rgb, rgnir, _, _ = colour_case(seed)
    n_large = int(gen.choice([1, 2, 3])) if n_large is None else n_large
    spec = views.CropSpec(size=16, n_large=n_large, n_small=int(gen.integers(max(0, 2 - n_large), 3)), jitter=0.0,
                          max_rotation=10.0, flip=True)
    return tiny_model(seed, n_prototypes=int(gen.integers(4, 12))), rgb, rgnir, spec


def _reference_step(model: nn.Module, optimizer: torch.optim.Optimizer, rgb: torch.Tensor, rgnir: torch.Tensor,
                    spec: Any, generator: torch.Generator, normalize: bool = True, zero_grad: bool = True,
                    n_large: int | None = None) -> float:
    crops = views.multi_crop(rgb, rgnir, spec, "paired", generator)
    if normalize:
        with torch.no_grad():
            model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, dim=1))
    _, scores = model(crops)
    value = loss_module.swav_loss(list(scores.chunk(len(crops))), n_large=n_large or spec.n_large)
    if zero_grad:
        optimizer.zero_grad()
    value.backward()
    optimizer.step()
    return value.item()


def _stale_grads(model: nn.Module) -> None:
    """Gradients left over from an earlier step: a step that forgets zero_grad adds to them."""
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)


def _run_step(step: Callable | None, model: nn.Module, rgb, rgnir, spec, seed: int, **variant) -> tuple[Any, nn.Module]:
    """One step of ``step`` (or of the reference with a slip) on a copy of ``model``: (result, model after)."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _stale_grads(model)
    generator = torch.Generator().manual_seed(seed)
    if step is None:
        return _reference_step(model, optimizer, rgb.clone(), rgnir.clone(), spec, generator, **variant), model
    outcome = _kit.call(step, model, optimizer, rgb.clone(), rgnir.clone(), spec, generator)
    return outcome.result, outcome.args[0]


def _params_close(a: nn.Module, b: nn.Module) -> bool:
    if not isinstance(a, nn.Module) or not isinstance(b, nn.Module):
        return False
    return all(_close(x.detach(), y.detach(), atol=1e-5, rtol=1e-4) for x, y in zip(a.parameters(), b.parameters()))


def _compare_step(func: Callable, model: nn.Module, rgb, rgnir, spec, seed: int) -> None:
    case = f" (case: {len(rgb)} plants, {spec.n_large} large + {spec.n_small} small crops, " \
           f"{model.prototypes.weight.shape[0]} prototypes)"
    expected, after = _run_step(None, model, rgb, rgnir, spec, seed)
    got, trained = _run_step(func, model, rgb, rgnir, spec, seed)
    normalised = copy.deepcopy(model)
    with torch.no_grad():
        normalised.prototypes.weight.copy_(F.normalize(normalised.prototypes.weight, dim=1))
    if isinstance(got, torch.Tensor) and got.ndim == 0:
        _kit.fail(Q4, "a Python float", "a tensor", "return loss.item() (a plain number, no graph kept)" + case,
                  seed)
    if not isinstance(got, float):
        _kit.fail(Q4, "a Python float (the batch's loss)", type(got).__name__, "return loss.item()" + case, seed)
    if not isinstance(trained, nn.Module):
        _kit.fail(Q4, "the model you were given, trained in place", repr(trained),
                  "update the model's own weights (do not replace its layers)" + case, seed)
    if not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-4):
        _kit.fail(Q4, round(expected, 5), round(got, 5), _step_hint(got, model, rgb, rgnir, spec, seed) + case, seed)
    if _params_close(trained, model) or _params_close(trained, normalised):
        _kit.fail(Q4, "the weights updated by one optimiser step", "unchanged weights",
                  "call optimizer.step() after loss.backward(), and optimizer.zero_grad() before backward, "
                  "not between them (it would clear the gradients step needs)" + case, seed)
    if not _params_close(trained, after):
        _, stale = _run_step(None, model, rgb, rgnir, spec, seed, zero_grad=False)
        hint = ("clear the old gradients first: optimizer.zero_grad() before loss.backward()"
                if _params_close(trained, stale) else
                "one step: optimizer.zero_grad(); loss.backward(); optimizer.step(), once, on this loss")
        _kit.fail(Q4, "the weights after one reference step", "other weights", hint + case, seed)


def _step_hint(got: float, model: nn.Module, rgb, rgnir, spec, seed: int) -> str:
    near = lambda value: math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-4)  # noqa: E731
    if near(_run_step(None, model, rgb, rgnir, spec, seed, normalize=False)[0]):
        return ("put the prototypes back on the unit sphere before the forward pass: under torch.no_grad(), "
                "model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, dim=1))")
    for n_large in {2, spec.n_large + 1, spec.n_large - 1} - {spec.n_large, 0}:
        if n_large <= spec.n_crops and near(_run_step(None, model, rgb, rgnir, spec, seed, n_large=n_large)[0]):
            return f"pass n_large=spec.n_large ({spec.n_large}) to swav_loss, not {n_large}"
    return ("crops = paired_views(rgb, rgnir, spec, generator); embeddings, scores = model(crops); "
            "loss = swav_loss(list(scores.chunk(len(crops))), n_large=spec.n_large); and make sure "
            "paired_views and swav_loss pass their checks first")


TRAIN_STEP = _kit.Answer(
    Q4, "train_step", lambda: _forbidden("views:multi_crop", "loss:swav_loss", "loss:swav_codes", "sinkhorn:sinkhorn"),
    hint="use your own paired_views and swav_loss, not rice_lab's", module=__name__)


@_kit.check(TRAIN_STEP)
def check_train_step(train_step: Callable, seed: int) -> None:
    """Visible check for question 4: steps on a small network, compared with the reference step."""
    with _kit.one_thread():
        for n_large in (2, 3):
            _compare_step(train_step, *step_case(seed + n_large, n_large=n_large), seed + n_large)
    _kit.passed(Q4, ["same loss as the reference step (prototypes normalised first), with 2 and 3 large crops",
                     "same weights after the step (old gradients cleared, one optimiser step)"])


@_kit.check(TRAIN_STEP)
def check_train_step_hidden(train_step: Callable, seed: int) -> None:
    """Hidden check for question 4: more networks and recipes (one large crop among them)."""
    with _kit.one_thread():
        _compare_step(train_step, *step_case(seed + 1, n_large=1), seed + 1)
        _compare_step(train_step, *step_case(seed + 4), seed + 4)
    _kit.passed(Q4 + " (hidden)", ["two more networks and recipes, one with a single large crop"])


# --- question 5: a short pre-training --------------------------------------------------------------------

PRETRAIN_STEPS, PRETRAIN_LR = 40, 3e-3
LOSS_DROP = 0.1  # the held-out SwAV loss must fall by at least this much (measured: see the instructors' page)


def _course_photos(height: int = 32) -> types.SimpleNamespace:
    """The course's synthetic plants, both cameras, decoded small."""
    from autograder.datasets import course_dataset
    from rice_lab.data.zindi import read_zindi

    plants = read_zindi(course_dataset(plants=40, size=64, seed=0))
    images = views.PlantImages(plants, *views.load_size(height))
    return types.SimpleNamespace(rgb=images.rgb, rgnir=images.rgnir)


def _pretrain_spec() -> Any:
    return views.CropSpec(size=16, n_large=2, n_small=2, jitter=0.3)


def _held_out_loss(model: nn.Module, photos: types.SimpleNamespace, spec: Any, seed: int) -> float:
    """The reference SwAV loss of ``model`` on fixed crops of every plant (a copy, so BN stats stay put)."""
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, dim=1))
        crops = views.multi_crop(photos.rgb, photos.rgnir, spec, "paired", torch.Generator().manual_seed(seed))
        return float(loss_module.swav_loss(list(model(crops)[1].chunk(len(crops))), n_large=spec.n_large))


def _losses_of(outcome: Any, steps: int, seed: int, case: str) -> list[float]:
    losses = outcome.result
    if not isinstance(losses, (list, tuple)) or len(losses) != steps:
        hint = "append train_step(...)'s return value to a list at every step and return it"
        if isinstance(losses, (list, tuple)) and len(losses) in (steps - 1, steps + 1):
            hint = f"run exactly `steps` ({steps}) steps: for _ in range(steps)"
        _kit.fail(Q5, f"a list of {steps} losses, one per step", f"{type(losses).__name__} of length "
                  f"{len(losses) if hasattr(losses, '__len__') else '?'}", hint + case, seed)
    if not all(isinstance(v, (float, int)) and not isinstance(v, bool) and math.isfinite(v) for v in losses):
        _kit.fail(Q5, "finite numbers", [v if isinstance(v, (float, int)) else type(v).__name__ for v in losses[:4]],
                  "each entry is the float train_step returned (loss.item())" + case, seed)
    return [float(v) for v in losses]


def _compare_pretrain(func: Callable, steps: int, batch_size: int, seed: int) -> tuple[float, float, list[float]]:
    photos = _course_photos()
    spec = _pretrain_spec()
    model = tiny_model(seed, n_prototypes=8)
    untouched = copy.deepcopy(model)
    before = _held_out_loss(model, photos, spec, seed + 1)
    case = f" (case: {steps} steps, batch {batch_size}, seed {seed})"
    outcome = _kit.call(func, model, photos, steps=steps, batch_size=batch_size, spec=spec, lr=PRETRAIN_LR, seed=seed)
    losses = _losses_of(outcome, steps, seed, case)
    trained = outcome.args[0]
    if not isinstance(trained, nn.Module) or _params_close(trained, untouched):
        _kit.fail(Q5, "a trained model (its weights changed)", "the same weights as before",
                  "train the model you are given, in place: build the optimiser on model.parameters()" + case,
                  seed)
    after = _held_out_loss(trained, photos, spec, seed + 1)
    quarter = max(1, steps // 4)
    first, last = float(np.mean(losses[:quarter])), float(np.mean(losses[-quarter:]))
    if not after < before - LOSS_DROP:
        _kit.fail(Q5, f"the SwAV loss on fixed crops of every plant to fall from {before:.3f} by {LOSS_DROP} or more",
                  f"{after:.3f} after training",
                  "each step: a new random batch of plants, train_step on it with one Adam optimiser built "
                  "once before the loop (lr as given)" + case, seed)
    if not last < first:
        _kit.fail(Q5, "the recorded losses to fall (last quarter below the first)",
                  f"first quarter {first:.3f}, last quarter {last:.3f}",
                  "return the losses in the order of the steps" + case, seed)
    return before, after, losses


def _check_seeded(func: Callable, seed: int) -> None:
    """The same seed gives the same run; another seed another run (whatever order the numbers are drawn in)."""
    photos, spec = _course_photos(), _pretrain_spec()
    case = f" (case: 5 steps, batch 8, seed {seed})"

    def run(run_seed: int) -> list[float]:
        outcome = _kit.call(func, tiny_model(seed, n_prototypes=8), photos, steps=5, batch_size=8, spec=spec,
                            lr=PRETRAIN_LR, seed=run_seed)
        return _losses_of(outcome, 5, seed, case)

    first, again = run(seed), run(seed)
    if not np.allclose(first, again, rtol=1e-5, atol=1e-6):
        _kit.fail(Q5, f"the same losses for the same seed {np.round(first, 4).tolist()}", np.round(again, 4).tolist(),
                  "make the run reproducible: one torch.Generator().manual_seed(seed) for choosing the batches "
                  "and for the crops, no global randomness" + case, seed)
    if np.allclose(first, run(seed + 1), rtol=1e-5, atol=1e-6):
        _kit.fail(Q5, "other losses for another seed", "the same losses",
                  "the seed argument must drive the run: torch.Generator().manual_seed(seed)" + case, seed)


PRETRAIN = _kit.Answer(
    Q5, "pretrain", lambda: _forbidden("views:multi_crop", "loss:swav_loss", "loss:swav_codes", "sinkhorn:sinkhorn"),
    hint="use your own train_step (with your paired_views and swav_loss), not rice_lab's pieces", module=__name__)


@_kit.check(PRETRAIN)
def check_pretrain(pretrain: Callable, seed: int) -> None:
    """Visible check for question 5: a 40-step pre-training of a small network on the course plants."""
    with _kit.one_thread():
        before, after, _ = _compare_pretrain(pretrain, PRETRAIN_STEPS, 16, seed)
    _kit.passed(Q5, [f"{PRETRAIN_STEPS} finite losses, one per step, falling", f"the network itself improved: SwAV "
                     f"loss on fixed crops of all 40 plants {before:.3f} -> {after:.3f}"])


@_kit.check(PRETRAIN)
def check_pretrain_hidden(pretrain: Callable, seed: int) -> None:
    """Hidden check for question 5: another batch size; the same seed gives the same run, another seed another."""
    with _kit.one_thread():
        _compare_pretrain(pretrain, PRETRAIN_STEPS, 8, seed)
        _check_seeded(pretrain, seed)
    _kit.passed(Q5 + " (hidden)", ["batch size 8: the loss falls too", "the same seed gives the same run, "
                                   "another seed another"])
