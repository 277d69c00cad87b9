"""Checks for assignment 04-explain: attribution maps for both cameras, the pointing game, a deletion
curve and its area, the cascading randomisation check, and a verdict on which method passes it.

Each ``check_*`` runs the learner's function on freshly generated cases: small random classifiers
(``tiny_classifier``, BatchNorm statistics that are not the defaults, in-place ReLUs as fastai has
them) on the course photos, generated maps and lesion masks, and generated similarity tables. Where the
answer is unique (captum's maps, the pointing game, the deletion curve, the cascade with the check's own
re-initialisation, the verdict) it is compared with ``rice_lab``'s reference or a reference built from
``rice_lab``'s parts; Integrated Gradients, whose 32-step integral any quadrature approximates a little
differently, is compared within a tolerance every such approximation meets. Known slips are used only to
name the mistake. ``check_*_hidden`` adds the cases used only when grading.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import types
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from autograder import _kit
from autograder.checks.a03_finetune import course_photos
from rice_lab.data.zindi import CAMERAS
from rice_lab.evaluate.encode import photo_stats
from rice_lab.finetune.model import Classifier

# The modules whose functions are the references (the package re-exports the functions under the same names).
attribution_module = importlib.import_module("rice_lab.explain.attribution")
metrics_module = importlib.import_module("rice_lab.explain.metrics")
sanity_module = importlib.import_module("rice_lab.explain.sanity")

Q1, Q2, Q3, Q4, Q5 = "camera_maps", "pointing_game", "deletion_curve", "cascading_randomisation", "sanity_verdict"
METHODS = ("saliency", "integrated-gradients", "grad-cam")
IG_STEPS = 32
# Integrated Gradients is an integral that any rule approximates. Against captum's 32-step Gauss-Legendre rule,
# on 400 cases of the checks (100 seeds, both models, both cameras; relative L2 error, largest): 50 steps
# 0.084, 256 steps 0.063, a 32-step Riemann sum (left, right, middle, trapezoid) 0.091, 16 steps 0.149. The
# slips differ far more (smallest: channels averaged 0.667, a black baseline 0.717, the other camera's
# statistics 0.730, absolute values 0.765). The tolerance sits between, with room on both sides.
IG_TOLERANCE = 0.25


def _forbidden(*names: str) -> dict[str, Callable]:
    """Reference functions an answer must not call, as seen here and as imported by the notebook.

    Names are ``module:function`` with module one of attribution, metrics, sanity.
    """
    modules = {"attribution": attribution_module, "metrics": metrics_module, "sanity": sanity_module}
    return _kit.references(*((modules[key], name) for key, name in (item.split(":") for item in names)))


def _numpy(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array, or None when it is not array-like."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return None if array.dtype == object else array


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: Any) -> list[str]:
    """Names of the weights and buffers that differ between ``before`` and the module that came back."""
    if not isinstance(after, nn.Module):
        return []
    return [k for k, v in after.state_dict().items() if k in before and not torch.equal(v, before[k])]


# --- the small classifiers and the photos every case is built from ------------------------------------------

def _block(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


def tiny_classifier(seed: int, width: int = 8, blocks: int = 3, classes: int = 3) -> Classifier:
    """A random rice-lab ``Classifier`` (``body``: convolution blocks ending in in-place ReLUs, as fastai's
    do, and max pooling; ``head``: BatchNorm, dropout, linear), its BatchNorm statistics moved away from
    the defaults so that train mode visibly differs, its logits scaled so that probabilities vary."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        widths = [3] + [width * min(2 ** k, 2) for k in range(blocks)]
        body = nn.Sequential(*[_block(a, b) for a, b in zip(widths, widths[1:])])
        model = Classifier(body, widths[-1], classes, head="bn-linear", pool="concat")
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    module.running_mean.uniform_(-0.3, 0.3)
                    module.running_var.uniform_(0.5, 2.0)
            model.head[-1].weight.mul_(4.0)
    return model.eval()


def photos_case(seed: int, n: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, tuple]]:
    """Both cameras' uint8 photos of ``n`` course plants (3 to 6), and each camera's statistics."""
    gen = _kit.rng(seed)
    photos = course_photos()
    n = int(gen.integers(3, 7)) if n is None else n
    rows = torch.from_numpy(gen.choice(len(photos.rgb), size=n, replace=False))
    images = {camera: getattr(photos, camera)[rows].clone() for camera in CAMERAS}
    return images, {camera: tuple(photo_stats(getattr(photos, camera))) for camera in CAMERAS}


def normalise(images: torch.Tensor, stats_of_camera: tuple) -> torch.Tensor:
    """uint8 photos of one camera -> the normalised input the classifier sees."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in stats_of_camera)
    return (images.float() / 255 - mean) / std


def _classes(target: Any) -> str:
    if target is None:
        return "target=None (each photo's predicted class)"
    return f"target={target!r}"


# --- question 1: maps for both cameras ---------------------------------------------------------------------

def reference_maps(model: nn.Module, photos: dict[str, torch.Tensor], normalization: dict, method: str,
                   target: Any = None, reduce: str = "sum", **options: Any) -> dict[str, torch.Tensor]:
    """rice_lab's maps of each camera's photos, normalised with that camera's statistics."""
    defaults = {"integrated-gradients": {"n_steps": IG_STEPS}, "grad-cam": {"relu": True}}.get(method, {})
    return {camera: attribution_module.attribute(model, normalise(images, normalization[camera]), method, target,
                                                 reduce=reduce, **{**defaults, **options})
            for camera, images in photos.items()}


def _captum_maps(model: nn.Module, x: torch.Tensor, method: str, target: Any, **options: Any) -> torch.Tensor:
    """Slips that rice_lab's options cannot express, computed with captum directly."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    safe = copy.deepcopy(model).eval()
    for module in safe.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    with torch.no_grad():
        classes = safe(x).argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
    x = x.clone().requires_grad_()
    if method == "saliency":
        return Saliency(safe).attribute(x, target=classes, abs=options.get("abs", True)).sum(1).detach()
    cam = LayerGradCam(safe, options.get("layer") or safe.body).attribute(x, target=classes, relu_attributions=True)
    mode = options.get("mode", "bilinear")
    if mode == "align_corners":
        return F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=True).sum(1).detach()
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode=mode).sum(1).detach()


def _maps_close(got: np.ndarray, want: np.ndarray, method: str) -> bool:
    if got.shape != want.shape or not np.isfinite(got).all():
        return False
    scale = max(float(np.abs(want).max()), 1e-12)
    if method == "integrated-gradients":
        return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)) <= IG_TOLERANCE
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-5 * scale))


def _maps_hint(model: nn.Module, photos: dict, normalization: dict, method: str, target: Any, camera: str,
               got: np.ndarray) -> str:
    """Name the slip that gives ``got`` for ``camera``'s photos, or say how the map is made."""
    images = photos[camera]
    other = [c for c in photos if c != camera] or [camera]
    want = reference_maps(model, photos, normalization, method, target)[camera].double().numpy()
    close = lambda maps: _maps_close(got, np.asarray(maps, dtype=np.float64), method)  # noqa: E731

    def ours(x: torch.Tensor, **options: Any) -> np.ndarray:
        defaults = {"integrated-gradients": {"n_steps": IG_STEPS}}.get(method, {})
        return attribution_module.attribute(model, x, method, target, **{**defaults, **options}).double().numpy()

    if np.allclose(got * 3, want, rtol=1e-3, atol=1e-6 * max(float(np.abs(want).max()), 1e-12)):
        return "sum the attributions over the three channels (found.sum(dim=1)), not their mean"
    if close(ours(normalise(images, normalization[other[0]]))):
        return (f"normalise each camera's photos with its own statistics: these {camera} maps come from photos "
                f"normalised with the {other[0]} statistics")
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in normalization[camera])
    if close(ours((images.float() - mean) / std)):
        return "divide the uint8 photos by 255 before normalising: (photos / 255 - mean) / std"
    if close(ours(images.float() / 255)) or close(ours(images.float())):
        return "normalise the photos as the model was trained: (photos / 255 - mean) / std, per camera"
    x = normalise(images, normalization[camera])
    if target is not None and close(attribution_module.attribute(
            model, x, method, None, **({"n_steps": IG_STEPS} if method == "integrated-gradients" else {}))):
        return "explain the class given in `target` (an int, or one class per photo); None means the predicted class"
    if method != "saliency" and close(ours(x, reduce="abs")):
        return "sum the signed attributions over the channels; do not take absolute values"
    if method == "saliency" and close(_captum_maps(model, x, "saliency", target, abs=False)):
        return "saliency is the absolute gradient: Saliency(model).attribute(x, target=..., abs=True) (its default)"
    if method == "grad-cam":
        if close(ours(x, relu=False)):
            return "keep the positive part of Grad-CAM: relu_attributions=True"
        if close(_captum_maps(model, x, "grad-cam", target, mode="nearest")) or \
                close(_captum_maps(model, x, "grad-cam", target, mode="align_corners")):
            return ("upsample bilinearly as LayerAttribution.interpolate(cam, (H, W), interpolate_mode='bilinear') "
                    "does (align_corners=False), not by nearest neighbour nor with align_corners=True")
        return ("Grad-CAM reads the layer model.body (its output, the last feature maps): LayerGradCam(model, "
                "model.body).attribute(x, target=..., relu_attributions=True), then LayerAttribution.interpolate to "
                "the photo's (H, W)")
    if method == "integrated-gradients":
        black = -mean / std
        if close(_ig_black(model, x, target, black)):
            return "the baseline is 0.0 in normalised units (the camera's mean colour), not a black photo"
        return (f"IntegratedGradients(model).attribute(x, baselines=0.0, target=..., n_steps={IG_STEPS}) on the "
                "normalised photos, summed over channels (yours differs by more than the "
                f"{IG_TOLERANCE:.0%} any {IG_STEPS}-step approximation of the integral stays within)")
    return "Saliency(model).attribute(x, target=..., abs=True) on the normalised photos, summed over channels"


def _ig_black(model: nn.Module, x: torch.Tensor, target: Any, black: torch.Tensor) -> np.ndarray:
    from captum.attr import IntegratedGradients

    safe = copy.deepcopy(model).eval()
    with torch.no_grad():
        classes = safe(x).argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
    found = IntegratedGradients(safe).attribute(x.clone().requires_grad_(), baselines=black.expand_as(x).contiguous(),
                                                target=classes, n_steps=IG_STEPS)
    return found.sum(1).detach().double().numpy()


def _compare_maps(func: Callable, model: nn.Module, photos: dict[str, torch.Tensor], normalization: dict,
                  method: str, target: Any, seed: int, case: str) -> dict[str, np.ndarray]:
    before = _state(model)
    sent = model.train()  # as it leaves a training loop: the answer must put it in eval mode itself
    originals = {camera: images.clone() for camera, images in photos.items()}
    with _kit.named_errors(Q1, "photos is {camera: uint8 (N, 3, H, W)}, normalization {camera: (mean, std)}; "
                           "the model takes normalised photos; target is None, an int or a list of one class per "
                           "photo (torch.as_tensor(target).expand(N) covers both); Grad-CAM's layer is model.body"
                           + case, seed):
        outcome = _kit.call(func, sent, {c: v.clone() for c, v in photos.items()}, normalization, method,
                            target=target)
    model.eval()
    changed = _changed(before, outcome.args[0])
    if changed:
        _kit.fail(Q1, "the model's weights and BatchNorm statistics unchanged", f"{len(changed)} tensor(s) changed, "
                  f"e.g. {changed[0]}", "put the model in evaluation mode first (model.eval()): it may come in train "
                  "mode, where BatchNorm normalises with each batch's statistics and updates its running ones, and "
                  "dropout drops features at random" + case, seed)
    if isinstance(outcome.args[1], dict) and any(
            not isinstance(outcome.args[1].get(c), torch.Tensor) or not torch.equal(outcome.args[1][c], originals[c])
            for c in originals):
        _kit.fail(Q1, "the photos left unchanged", "they were modified",
                  "normalise into a new tensor (photos.float() / 255 makes one); do not change the photos in place"
                  + case, seed)
    got = outcome.result
    if not isinstance(got, dict) or set(got) != set(photos):
        keys = sorted(map(str, got)) if isinstance(got, dict) else type(got).__name__
        _kit.fail(Q1, f"a dict with one entry per camera: {sorted(photos)}", keys,
                  "return {camera: maps} for each camera in `photos`" + case, seed)
    want = reference_maps(model, photos, normalization, method, target)
    found = {}
    for camera in photos:
        n, _, height, width = photos[camera].shape
        maps = _numpy(got[camera])
        if maps is None:
            _kit.fail(Q1, f"{camera}: a tensor of shape {(n, height, width)}", type(got[camera]).__name__,
                      "return each camera's maps as a tensor (N, H, W)" + case, seed)
        if maps.shape != (n, height, width):
            hint = f"one map per photo, of the photo's size: shape (N, H, W) = {(n, height, width)}"
            if maps.shape == (n, 3, height, width):
                hint = "sum the attributions over the channels (dim=1): one map per photo, (N, H, W)"
            elif maps.ndim == 4 and maps.shape[:2] == (n, 1) and maps.shape[2:] == (height, width):
                hint = "drop the channel axis of size 1 (sum over dim=1, or squeeze(1))"
            elif method == "grad-cam" and maps.ndim >= 3 and maps.shape[-2:] != (height, width):
                hint = ("upsample Grad-CAM's map to the photo's size: LayerAttribution.interpolate(cam, (H, W), "
                        "interpolate_mode='bilinear'), then sum over dim=1")
            _kit.fail(Q1, f"{camera}: shape {(n, height, width)}", f"shape {maps.shape}", hint + case, seed)
        if not np.isfinite(maps).all():
            _kit.fail(Q1, f"{camera}: finite maps", "inf or nan", "check the normalisation (std > 0)" + case, seed)
        reference = want[camera].double().numpy()
        if not _maps_close(maps, reference, method):
            worst, row, col = np.unravel_index(int(np.abs(maps - reference).argmax()), maps.shape)
            _kit.fail(Q1, f"{camera} photo {worst}, pixel (row {row}, column {col}): {reference[worst, row, col]:.5g}",
                      f"{maps[worst, row, col]:.5g}",
                      _maps_hint(model, photos, normalization, method, target, camera, maps) + case, seed)
        found[camera] = maps
    return found


def negative_cam_case(seed: int, photos: dict[str, torch.Tensor], normalization: dict,
                      ) -> tuple[Classifier, list[int]]:
    """A classifier and, for each photo, the class whose Grad-CAM before its ReLU is most negative somewhere
    in either camera's photo: a case where keeping only the positive part matters. (Some random models give
    every class a positive Grad-CAM everywhere: the next seed is tried then.)"""
    for attempt in range(10):
        model = tiny_classifier(seed + 1000 * attempt)
        lowest = torch.stack([torch.stack([
            attribution_module.attribute(model, normalise(images, normalization[camera]), "grad-cam", k, relu=False)
            .flatten(1).min(1).values for camera, images in photos.items()]).min(0).values for k in range(3)])
        if (lowest.min(0).values < 0).float().mean() >= 0.5:
            break
    return model, [int(k) for k in lowest.argmin(0)]


CAMERA_MAPS = _kit.Answer(
    Q1, "camera_maps", lambda: _forbidden("attribution:attribute", "attribution:explain_plants"),
    hint="compute the maps with captum yourself; do not call rice_lab's attribute or explain_plants (the references)",
    module=__name__)


@_kit.check(CAMERA_MAPS)
def check_camera_maps(camera_maps: Callable, seed: int) -> None:
    """Visible check for question 1: a small random classifier in train mode, a few course plants, each method."""
    photos, normalization = photos_case(seed)
    n = len(photos["rgb"])
    target = int(_kit.rng(seed).integers(3))
    with _kit.one_thread():
        model, per_photo = negative_cam_case(seed, photos, normalization)
        for method, method_target in (("saliency", None), ("integrated-gradients", target), ("grad-cam", per_photo)):
            _compare_maps(camera_maps, model, photos, normalization, method, method_target, seed,
                          f" (case: method={method!r}, {_classes(method_target)}, {n} plants, both cameras)")
    _kit.passed(Q1, [f"saliency, integrated gradients and Grad-CAM for {n} plants (predicted classes, one class, one "
                     "class per photo): as rice_lab's attribute, each camera normalised with its own statistics, "
                     "channels summed",
                     "the model left unchanged (evaluation mode: BatchNorm statistics untouched)"])


@_kit.check(CAMERA_MAPS)
def check_camera_maps_hidden(camera_maps: Callable, seed: int) -> None:
    """Hidden check for question 1: another model (two blocks), the cameras in the other order."""
    photos, normalization = photos_case(seed + 1)
    photos = {camera: photos[camera] for camera in reversed(CAMERAS)}
    model = tiny_classifier(seed + 1, width=6, blocks=2)
    gen = _kit.rng(seed + 1)
    per_photo = [int(v) for v in gen.integers(3, size=len(photos["rgb"]))]
    with _kit.one_thread():
        for method, target in (("grad-cam", None), ("saliency", per_photo), ("integrated-gradients", None)):
            _compare_maps(camera_maps, model, photos, normalization, method, target, seed,
                          f" (case: method={method!r}, {_classes(target)}, a two-block model)")
    _kit.passed(Q1 + " (hidden)", ["another model", "the cameras in the other order"])


# --- question 2: the pointing game -------------------------------------------------------------------------

def pointing_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps (N, H, W), non-square, and boolean lesion masks, with rows built to separate the slips: a hit, a
    miss, a strong negative value off and on the lesion, a maximum shared by two pixels (the first off the
    lesion), an empty mask, a hit whose maximum is not the batch's, a hit on the border. Also the designed
    answers, which the reference must give."""
    gen = _kit.rng(seed)
    height, width = int(gen.integers(9, 15)), int(gen.integers(16, 24))
    kinds = ["hit", "miss", "negative-off", "negative-on", "tie", "empty", "small-max", "border", "hit"]
    designed = {"hit": 1.0, "miss": 0.0, "negative-off": 1.0, "negative-on": 0.0, "tie": 1.0, "empty": np.nan,
                "small-max": 1.0, "border": 1.0}
    for _ in range(100):
        maps = 0.5 * gen.normal(size=(len(kinds), height, width))
        masks = np.zeros(maps.shape, dtype=bool)
        for k, kind in enumerate(kinds):
            peak = 6.0 if k == 0 else 4.0 + gen.uniform(0, 1)
            if kind == "small-max":
                peak = 3.0
            r, c = int(gen.integers(height)), int(gen.integers(width))
            if kind == "border":
                c = width - 1
            maps[k, r, c] = peak
            if kind != "empty":
                _add_lesion(gen, masks[k], (r, c) if kind != "miss" and kind != "negative-on" else None)
            if kind in ("negative-off", "negative-on"):
                if kind == "negative-on":
                    masks[k, r, c] = False
                spots = np.argwhere(~masks[k]) if kind == "negative-off" else np.argwhere(masks[k])
                spots = spots[(spots[:, 0] != r) | (spots[:, 1] != c)]
                if len(spots) == 0:
                    break
                r2, c2 = spots[int(gen.integers(len(spots)))]
                maps[k, r2, c2] = -(peak + 2.0)
            if kind == "tie":
                off = np.argwhere(~masks[k])
                first = off[off[:, 0] * width + off[:, 1] < r * width + c]
                if len(first) == 0:
                    break
                r0, c0 = first[int(gen.integers(len(first)))]
                maps[k, r0, c0] = peak
            if kind == "miss":
                masks[k, r, c] = False
        else:
            answers = np.array([designed[kind] for kind in kinds])
            reference = metrics_module.pointing_game(maps, masks)
            if np.array_equal(reference, answers, equal_nan=True):
                order = gen.permutation(len(kinds))
                return maps[order], masks[order], answers[order]
    raise RuntimeError(f"no pointing-game case for seed {seed}")


def _add_lesion(gen: np.random.Generator, mask: np.ndarray, around: tuple[int, int] | None) -> None:
    """A rectangular lesion (covering ``around`` if given) and sometimes a second one elsewhere."""
    height, width = mask.shape
    for k in range(1 + int(gen.random() < 0.5)):
        r, c = around if (around is not None and k == 0) else (int(gen.integers(height)), int(gen.integers(width)))
        h, w = int(gen.integers(1, 4)), int(gen.integers(1, 5))
        top, left = max(0, r - int(gen.integers(h))), max(0, c - int(gen.integers(w)))
        mask[top:top + h, left:left + w] = True
        if around is not None and k == 0:
            mask[r, c] = True


def _pointing_slips(maps: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """What typical slips return on this case."""
    n, height, width = maps.shape
    flat, flat_masks = maps.reshape(n, -1), masks.reshape(n, -1)
    empty = ~flat_masks.any(axis=1)
    first = flat.argmax(axis=1)

    def with_nan(values: np.ndarray) -> np.ndarray:
        return np.where(empty, np.nan, values.astype(float))

    swapped = np.zeros(n)
    for k, index in enumerate(first):
        row, col = divmod(int(index), height)  # np.unravel_index(index, (W, H))
        swapped[k] = float(row < height and col < width and masks[k, row, col])
    global_max = (flat == flat.max()) & flat_masks
    over_images = (flat == flat.max(axis=0, keepdims=True)) & flat_masks
    return {
        "abs": metrics_module.pointing_game(np.abs(maps), masks),
        "argmin": metrics_module.pointing_game(-maps, masks),
        "first": with_nan(flat_masks[np.arange(n), first]),
        "swapped": with_nan(swapped),
        "empty-zero": np.nan_to_num(metrics_module.pointing_game(maps, masks), nan=0.0),
        "empty-one": np.nan_to_num(metrics_module.pointing_game(maps, masks), nan=1.0),
        "global": with_nan(global_max.any(axis=1)),
        "axis0": with_nan(over_images.any(axis=1)),
    }


POINTING_HINTS = {
    "abs": "play the game on the signed map as given: its largest value, not the largest absolute value (a "
           "strong negative value is evidence *against* the class)",
    "argmin": "the map's *largest* value is the point (argmax, or maps == maps.max()), not the smallest",
    "first": "when several pixels share the maximum, count a hit if any of them lies on a lesion: np.argmax keeps "
             "only the first (compare maps == max instead)",
    "swapped": "unravel the flat index with the map's shape (H, W): np.unravel_index(i, (H, W)), row first; "
               "(W, H) points at the wrong pixel of a non-square map",
    "empty-zero": "an image without a lesion (a healthy leaf) has nothing to point at: give it NaN, not 0",
    "empty-one": "an image without a lesion (a healthy leaf) has nothing to point at: give it NaN, not 1",
    "global": "take each image's own maximum (over its pixels: axis=1 of maps.reshape(N, -1)), not the batch's",
    "axis0": "take each image's maximum over its own pixels (axis=1 of maps.reshape(N, -1)), not each pixel's "
             "maximum over the images (axis=0)",
}


def _compare_pointing(func: Callable, maps: Any, masks: Any, answers: np.ndarray, seed: int, case: str) -> None:
    maps_copy = maps.clone() if isinstance(maps, torch.Tensor) else np.array(maps, copy=True)
    masks_copy = masks.clone() if isinstance(masks, torch.Tensor) else np.array(masks, copy=True)
    with _kit.named_errors(Q2, "maps (N, H, W) and masks (N, H, W) may be numpy arrays or torch tensors: "
                           "np.asarray both first (maps as float, masks as bool); an IndexError usually means a "
                           "flat index unravelled with (W, H): np.unravel_index(i, (H, W)), row first" + case, seed):
        outcome = _kit.call(func, maps_copy, masks_copy)
    maps_np, masks_np = _numpy(maps), np.asarray(_numpy(masks), dtype=bool)
    if not np.array_equal(_numpy(outcome.args[0]), maps_np) or not np.array_equal(_numpy(outcome.args[1]), masks_np):
        _kit.fail(Q2, "the maps and masks left unchanged", "they were modified",
                  "work on copies; do not write into the maps or masks you are given" + case, seed)
    got = _numpy(outcome.result)
    n = len(answers)
    if got is None or got.shape != (n,):
        shape = "no array" if got is None else f"shape {got.shape}"
        hint = f"return one value per image: an array of shape ({n},) with 1.0 (hit), 0.0 (miss) or NaN (no lesion)"
        if got is not None and got.ndim == 0:
            hint = "return one value per image, not their mean or a single number (the mean comes later, NaN left out)"
        elif got is not None and got.ndim >= 1 and got.shape[0] != n:
            hint = ("take the maximum of each image over its own pixels (maps.reshape(N, -1) then axis=1), not over "
                    "the images (axis=0)")
        _kit.fail(Q2, f"shape ({n},)", shape, hint + case, seed)
    if not np.array_equal(got, answers, equal_nan=True):
        slips = _pointing_slips(maps_np, masks_np)
        hint = next((POINTING_HINTS[name] for name, value in slips.items()
                     if np.array_equal(got, value, equal_nan=True)), None)
        if hint is None:
            wrong = [int(k) for k in np.flatnonzero(~((got == answers) | (np.isnan(got) & np.isnan(answers))))]
            hint = (f"image {wrong[0]}: its maximum is at "
                    f"{np.unravel_index(int(maps_np[wrong[0]].argmax()), maps_np.shape[1:])} (row, column), "
                    f"{'on' if answers[wrong[0]] == 1 else 'off'} its lesion: a hit (1.0) when a pixel holding the "
                    "image's largest value lies on a lesion, a miss (0.0) otherwise, NaN without lesion")
        _kit.fail(Q2, answers.tolist(), got.tolist(), hint + case, seed)


POINTING_GAME = _kit.Answer(
    Q2, "pointing_game", lambda: _forbidden("metrics:pointing_game"),
    hint="play the game yourself; do not call rice_lab's pointing_game (the reference answer)", module=__name__)


@_kit.check(POINTING_GAME)
def check_pointing_game(pointing_game: Callable, seed: int) -> None:
    """Visible check for question 2: non-square maps with ties, negative peaks and an empty mask."""
    maps, masks, answers = pointing_case(seed)
    n, height, width = maps.shape
    _compare_pointing(pointing_game, maps, masks, answers, seed,
                      f" (case: {n} numpy maps of {height} x {width}, boolean masks)")
    maps32, masks32, answers32 = pointing_case(seed + 1)
    _compare_pointing(pointing_game, torch.from_numpy(maps32).float(), torch.from_numpy(masks32), answers32, seed,
                      " (case: float32 torch tensors)")
    _kit.passed(Q2, [f"{n} maps of {height} x {width}: hits, misses, NaN for the healthy leaf, as rice_lab's "
                     "pointing_game", "a maximum shared by two pixels counts a hit if either is on a lesion",
                     "strong negative values are not the maximum", "numpy arrays and torch tensors"])


@_kit.check(POINTING_GAME)
def check_pointing_game_hidden(pointing_game: Callable, seed: int) -> None:
    """Hidden check for question 2: several more cases, a single image, a flat map."""
    for k in range(2, 4):
        maps, masks, answers = pointing_case(seed + k)
        _compare_pointing(pointing_game, maps, masks, answers, seed, f" (case: seed {seed + k})")
    maps, masks, answers = pointing_case(seed + 4)
    _compare_pointing(pointing_game, maps[:1], masks[:1], answers[:1], seed, " (case: a single image)")
    flat = np.zeros((2, 6, 9))
    flat_masks = np.zeros((2, 6, 9), dtype=bool)
    flat_masks[0, 5, 8] = True
    flat_masks[1, 2, 3] = True
    flat[1, 2, 3] = -1.0  # the only pixel below the flat maximum lies on the lesion
    _compare_pointing(pointing_game, flat, flat_masks, np.array([1.0, 0.0]), seed,
                      " (case: flat maps: every pixel of the first holds its maximum)")
    _kit.passed(Q2 + " (hidden)", ["more cases", "a single image", "flat maps"])


# --- question 3: the deletion curve and its area -------------------------------------------------------------

def deletion_case(seed: int, steps: int | None = None, target: Any = "draw") -> types.SimpleNamespace:
    """A small classifier, a few course photos of one camera (normalised), tie-free maps, a number of steps
    dividing the photo's pixel count (so every rounding of i * H * W / steps agrees), and a target."""
    gen = _kit.rng(seed)
    photos, normalization = photos_case(seed)
    camera = str(gen.choice(CAMERAS))
    images = normalise(photos[camera], normalization[camera])
    n, _, height, width = images.shape
    for _ in range(100):  # float32 values without ties: every ranking, in any precision, is the same
        coarse = torch.from_numpy(gen.normal(size=(n, 1, 4, 5))).float()
        smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        maps = (smooth + 0.05 * torch.from_numpy(gen.normal(size=(n, height, width))).float()).numpy()
        if all(len(np.unique(row)) == row.size for row in maps):
            break
    maps = maps.astype(np.float64)
    pixels = height * width
    if steps is None:
        steps = int(gen.choice([s for s in (8, 10, 16, 20, 32) if pixels % s == 0]))
    if isinstance(target, str):
        target = None if gen.random() < 0.5 else int(gen.integers(3))
    return types.SimpleNamespace(model=tiny_classifier(seed + 7), images=images, maps=maps, steps=steps,
                                 target=target, camera=camera, normalization=normalization[camera])


def reference_deletion(model: nn.Module, images: torch.Tensor, maps: Any, target: Any, steps: int,
                       ) -> tuple[np.ndarray, np.ndarray]:
    curves = metrics_module.deletion_curve(model, images, maps, target, steps=steps)
    return curves, metrics_module.curve_auc(curves)


@torch.no_grad()
def _deletion_slip(model: nn.Module, images: torch.Tensor, maps: np.ndarray, target: Any, steps: int,
                   kind: str, normalization: tuple) -> np.ndarray:
    """Deletion curves as a slip computes them (only to name the mistake)."""
    model = copy.deepcopy(model).eval()
    n, _, height, width = images.shape
    order = torch.from_numpy(-maps.reshape(n, -1)).argsort(dim=1, stable=True)
    probs = model(images).softmax(1)
    classes = probs.argmax(1) if target is None else torch.as_tensor(target).expand(n)
    curves = np.empty((n, steps + 1))
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in normalization)
    for step in range(steps + 1):
        chosen = torch.zeros(n, height * width, dtype=torch.bool)
        chosen.scatter_(1, order[:, :step * height * width // steps], True)
        chosen = chosen.reshape(n, 1, height, width)
        if kind == "first-channel":
            fill = images.clone()
            fill[:, :1] = torch.where(chosen, 0.0, images[:, :1])
        elif kind == "black":
            fill = torch.where(chosen, (-mean / std).expand_as(images), images)
        else:
            fill = torch.where(chosen, 0.0, images)
        out = model(fill).softmax(1)
        if kind == "repredicted":
            curves[:, step] = out.max(1).values.numpy()
        else:
            curves[:, step] = out[torch.arange(n), classes].numpy()
    return curves


def _deletion_hint(case: types.SimpleNamespace, got: np.ndarray) -> str:
    close = lambda curves: np.allclose(got, curves, atol=2e-5)  # noqa: E731
    model, images, maps, target, steps = case.model, case.images, case.maps, case.target, case.steps
    if close(metrics_module.deletion_curve(model, images, -maps, target, steps=steps)):
        return ("delete the *most* relevant pixels first (sort the map's values in descending order): these are "
                "the least relevant ones first")
    if close(metrics_module.deletion_curve(model, images, np.abs(maps), target, steps=steps)):
        return "rank the pixels by the signed map as given (its largest values first), not by absolute value"
    if target is not None and close(metrics_module.deletion_curve(model, images, maps, None, steps=steps)):
        return "follow the class given in `target`; only target=None means the class predicted on the intact photo"
    if close(_deletion_slip(model, images, maps, target, steps, "repredicted", case.normalization)):
        return ("follow one class all along: the one predicted on the intact photo (or given), not the class each "
                "damaged photo is predicted as")
    if close(_deletion_slip(model, images, maps, target, steps, "first-channel", case.normalization)):
        return "delete a pixel in every channel (images[:, :, row, col] for all three channels), not just the first"
    if close(_deletion_slip(model, images, maps, target, steps, "black", case.normalization)):
        return "set deleted pixels to 0.0 in normalised units (the camera's mean colour), not to a black photo"
    return (f"after step i of {steps}, set the i * H * W // steps pixels with the largest map values to 0.0 in all "
            "channels, and record the softmax probability of the target class; the first point is the intact photo")


def _area_hint(got: np.ndarray, curves: np.ndarray, steps: int) -> str:
    near = lambda values: np.allclose(got, values, rtol=1e-6, atol=1e-9)  # noqa: E731
    trapezoid = (curves[:, 1:] + curves[:, :-1]).sum(axis=1) / 2
    if near(trapezoid):
        return (f"divide by the number of steps ({steps}): the curve runs over the fraction deleted, from 0 to 1 "
                "(np.trapezoid(curve, dx=1 / steps)), so a curve that stays at p has area p")
    if near(curves.mean(axis=1)):
        return "use the trapezoid rule: the mean of the points counts the two ends in full, the trapezoid by half"
    if near(curves[:, :-1].sum(axis=1) / steps) or near(curves[:, 1:].sum(axis=1) / steps):
        return "use the trapezoid rule (each step's two ends averaged), not a left or right Riemann sum"
    if near(1 - trapezoid / steps):
        return "the area under the curve itself, not above it"
    return "the area under each curve by the trapezoid rule over [0, 1]: ((c[1:] + c[:-1]) / 2).sum() / steps"


def _compare_deletion(func: Callable, case: types.SimpleNamespace, seed: int, text: str,
                      maps_as: Callable = np.array, train_mode: bool = True) -> tuple[np.ndarray, np.ndarray]:
    model, images, steps, target = case.model, case.images, case.steps, case.target
    n = len(images)
    before = _state(model)
    with _kit.named_errors(Q3, "images are normalised photos (N, 3, H, W), maps (N, H, W) (numpy or torch); the "
                           "model returns logits" + text, seed):
        outcome = _kit.call(func, model.train() if train_mode else model, images.clone(), maps_as(case.maps),
                            target=target, steps=steps)
    model.eval()
    changed = _changed(before, outcome.args[0])
    if changed:
        _kit.fail(Q3, "the model's weights and BatchNorm statistics unchanged", f"{len(changed)} tensor(s) changed, "
                  f"e.g. {changed[0]}", "put the model in evaluation mode first (model.eval()): it may come in train "
                  "mode, where every forward pass updates BatchNorm's running statistics and dropout is random" + text,
                  seed)
    if not isinstance(outcome.args[1], torch.Tensor) or not torch.equal(outcome.args[1], images):
        _kit.fail(Q3, "the images left unchanged", "they were modified",
                  "delete pixels in a copy (images.clone(), or torch.where(...), which makes a new tensor)" + text,
                  seed)
    got = outcome.result
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        _kit.fail(Q3, "a tuple (curves, areas)", type(got).__name__, "return both: `return curves, areas`" + text, seed)
    curves, areas = _numpy(got[0]), _numpy(got[1])
    want_curves, want_areas = reference_deletion(model, images, case.maps, target, steps)
    if curves is None or curves.shape != (n, steps + 1):
        shape = "no array" if curves is None else f"shape {curves.shape}"
        hint = f"one curve per image with steps + 1 = {steps + 1} points: the intact photo, then one per step"
        if curves is not None and curves.shape == (n, steps):
            hint = f"{steps + 1} points per curve: start with the intact photo (nothing deleted), end with all deleted"
        elif curves is not None and curves.shape == (steps + 1, n):
            hint = "one row per image, one column per step: transpose"
        _kit.fail(Q3, f"curves of shape {(n, steps + 1)}", shape, hint + text, seed)
    if not np.isfinite(curves).all() or curves.min() < -1e-6 or curves.max() > 1 + 1e-6:
        _kit.fail(Q3, "probabilities in [0, 1]", f"values from {np.nanmin(curves):.3f} to {np.nanmax(curves):.3f}",
                  "record the softmax probability of the target class (model(x).softmax(dim=1)), not the logit" + text,
                  seed)
    if not np.allclose(curves, want_curves, atol=2e-5):
        row = int(np.abs(curves - want_curves).max(axis=1).argmax())
        _kit.fail(Q3, f"image {row}: {np.round(want_curves[row], 3).tolist()}", np.round(curves[row], 3).tolist(),
                  _deletion_hint(case, curves) + text, seed)
    if areas is None or areas.shape != (n,):
        hint = "one area per image, shape (N,)"
        if areas is not None and areas.ndim == 0:
            hint = "one area per image (each curve's own), not one number for the batch"
        _kit.fail(Q3, f"areas of shape ({n},)", "no array" if areas is None else f"shape {areas.shape}", hint + text,
                  seed)
    if not np.allclose(areas, want_areas, rtol=1e-5, atol=1e-6):
        _kit.fail(Q3, np.round(want_areas, 4).tolist(), np.round(areas, 4).tolist(),
                  _area_hint(areas, curves, steps) + text, seed)
    return curves, areas


DELETION_CURVE = _kit.Answer(
    Q3, "deletion_curve", lambda: _forbidden("metrics:deletion_curve", "metrics:curve_auc"),
    hint="delete the pixels yourself; do not call rice_lab's deletion_curve or curve_auc (the references)",
    module=__name__)


@_kit.check(DELETION_CURVE)
def check_deletion_curve(deletion_curve: Callable, seed: int) -> None:
    """Visible check for question 3: a small classifier in train mode, course photos, smooth tie-free maps."""
    case = deletion_case(seed)
    text = f" (case: {len(case.images)} {case.camera} photos, steps={case.steps}, {_classes(case.target)})"
    with _kit.one_thread():
        curves, areas = _compare_deletion(deletion_curve, case, seed, text)
        other = deletion_case(seed + 1, steps=5 if case.steps != 5 else 10, target=1)
        _compare_deletion(deletion_curve, other, seed, f" (case: steps={other.steps}, target=1)")
    _kit.passed(Q3, [f"{len(case.images)} photos, {case.steps} steps: curves as rice_lab's deletion_curve (most "
                     f"relevant pixels first, the class followed all along), first point {curves[0, 0]:.3f}, last "
                     f"{curves[0, -1]:.3f} for the first photo",
                     f"areas by the trapezoid rule over [0, 1], e.g. {areas[0]:.3f}",
                     "the model and the photos left unchanged"])


@_kit.check(DELETION_CURVE)
def check_deletion_curve_hidden(deletion_curve: Callable, seed: int) -> None:
    """Hidden check for question 3: maps as torch tensors, one class per photo, one step, many steps."""
    gen = _kit.rng(seed + 2)
    with _kit.one_thread():
        case = deletion_case(seed + 2, steps=1)
        case.target = [int(v) for v in gen.integers(3, size=len(case.images))]
        _compare_deletion(deletion_curve, case, seed, " (case: steps=1, one class per photo, maps as a torch tensor)",
                          maps_as=lambda maps: torch.from_numpy(maps).float())
        case = deletion_case(seed + 3, steps=40, target=None)
        _compare_deletion(deletion_curve, case, seed, " (case: steps=40, model in eval mode)", train_mode=False)
    _kit.passed(Q3 + " (hidden)", ["one step", "40 steps", "one class per photo", "maps as a torch tensor"])


# --- question 4: cascading randomisation -------------------------------------------------------------------

def input_x_gradient(model: nn.Module, images: torch.Tensor, target: Any = None) -> torch.Tensor:
    """The checks' explanation method: gradient times input, summed over channels (signed), (N, H, W);
    ``target`` None explains the class this model predicts."""
    x = images.detach().clone().requires_grad_()
    with torch.enable_grad():
        logits = model(x)
        classes = logits.argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
        (gradient,) = torch.autograd.grad(logits.gather(1, classes.view(-1, 1)).sum(), x)
    return (gradient * x).sum(1).detach()


def randomise_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module`` in place (rice_lab's reinitialise), from a seed of this case and the layer's
    size: the same layer always gets the same new weights, whatever order a cascade takes."""
    size = sum(p.numel() for p in module.parameters())
    sanity_module.reinitialise(module, seed * 7919 + size)


def cascade_case(seed: int, blocks: int = 3, n: int | None = None) -> types.SimpleNamespace:
    gen = _kit.rng(seed)
    photos, normalization = photos_case(seed, n=n)
    camera = str(gen.choice(CAMERAS))
    model = tiny_classifier(seed + 11, blocks=blocks)
    layers = [f"body.{k}" for k in range(blocks)] + ["head"]
    return types.SimpleNamespace(model=model, images=normalise(photos[camera], normalization[camera]), layers=layers,
                                 explain=input_x_gradient, randomise=functools.partial(randomise_layer, seed=seed),
                                 camera=camera)


def _spearman(a: Any, b: Any) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sanity_module.spearman(np.asarray(a), np.asarray(b))


def reference_cascade(case: types.SimpleNamespace, target: Any = None, kind: str = "right") -> dict[str, np.ndarray]:
    """The cascade (``kind`` "right"), or what a slip computes (only to name the mistake)."""
    model, images = case.model.eval(), case.images
    with torch.no_grad():
        trained_classes = model(images).argmax(1) if target is None else torch.as_tensor(target).expand(len(images))
    original = case.explain(model, images, trained_classes).numpy()
    randomised = copy.deepcopy(model).eval()
    previous = original
    layers = list(case.layers) if kind == "bottom-up" else list(reversed(case.layers))
    found = {}
    for layer in layers:
        if kind == "independent":
            randomised = copy.deepcopy(model).eval()
        case.randomise(randomised.get_submodule(layer))
        classes = None if kind == "own-class" else trained_classes
        maps = case.explain(randomised, images, classes).numpy()
        if kind == "signed":
            found[layer] = _spearman(original, maps)
        elif kind == "pearson":
            a, b = np.abs(original).reshape(len(maps), -1), np.abs(maps).reshape(len(maps), -1)
            found[layer] = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])
        elif kind == "previous":
            found[layer] = _spearman(np.abs(previous), np.abs(maps))
        else:
            found[layer] = _spearman(np.abs(original), np.abs(maps))
        previous = maps
    return found


CASCADE_HINTS = {
    "independent": "cascading: keep every earlier randomisation (one copy, changed further at each step); a fresh "
                   "copy per step randomises one layer at a time",
    "previous": "compare every step's maps with the *trained* model's maps (computed once, before any "
                "randomisation), not with the previous step's",
    "signed": "compare absolute maps: Spearman of |original| and |randomised| (a map that flips sign still "
              "points at the same pixels)",
    "pearson": "use Spearman's *rank* correlation (scipy.stats.spearmanr), not Pearson's: randomisation changes a "
               "map's scale wildly, ranks only what is more important than what",
    "own-class": "explain the class the *trained* model predicts (computed once) at every step: target=None asks "
                 "the randomised model for its own prediction, which changes as layers are randomised",
}


def _compare_cascade(func: Callable, case: types.SimpleNamespace, seed: int, text: str, target: Any = None,
                     layers_as: Callable = list) -> dict[str, np.ndarray]:
    model, images = case.model, case.images
    n = len(images)
    before = _state(model)
    with _kit.named_errors(Q4, "layers is a sequence of names for model.get_submodule (a list or a tuple: "
                           "reversed(layers) works for both, layers.reverse() only on lists and changes the "
                           "caller's); explain(model, images, classes) returns (N, H, W) maps; randomise(module) "
                           "re-initialises a layer in place" + text, seed):
        outcome = _kit.call(func, model, images.clone(), layers_as(case.layers), case.explain, case.randomise,
                            target=target)
    changed = _changed(before, outcome.args[0])
    if changed:
        _kit.fail(Q4, "the trained model unchanged", f"{len(changed)} tensor(s) re-initialised, e.g. {changed[0]}",
                  "randomise a copy (randomised = copy.deepcopy(model)), never the model you are given: the "
                  "trained model's maps are what every step is compared with" + text, seed)
    got = outcome.result
    expected_order = list(reversed(case.layers))
    if not isinstance(got, dict):
        _kit.fail(Q4, f"a dict {{layer: similarities}} for the layers {expected_order}", type(got).__name__,
                  "return a dict: one entry per layer, in the order the cascade randomises them" + text, seed)
    keys = list(got)
    if keys != expected_order:
        hint = "one entry per name in `layers`, keyed by that name"
        if keys == list(case.layers):
            hint = ("randomise from the logits down: the *last* layer of `layers` (the head) first, then the ones "
                    "before it (for layer in reversed(layers))")
        _kit.fail(Q4, f"keys {expected_order}", f"keys {keys}", hint + text, seed)
    want = reference_cascade(case, target)
    for layer in expected_order:
        values = _numpy(got[layer])
        if values is None or values.shape != (n,):
            hint = f"one similarity per image, an array of shape ({n},)"
            if values is not None and values.ndim == 0:
                hint = ("one Spearman correlation per image (each image's two maps flattened), not one over the whole "
                        "batch or their mean")
            _kit.fail(Q4, f"{layer}: shape ({n},)", "no array" if values is None else f"shape {values.shape}",
                      hint + text, seed)
        if not np.allclose(values, want[layer], atol=1e-6, equal_nan=True):
            hint = ("Spearman rank correlation of each image's |original map| and |map after this step|, flattened "
                    "(scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic)")
            if np.allclose(values, 1.0, atol=1e-6):
                hint = ("every similarity is 1: the 'original' maps were computed from the randomised model; compute "
                        "them once from the trained model before randomising a copy")
            else:
                for kind, slip_hint in CASCADE_HINTS.items():
                    slip = reference_cascade(case, target, kind)
                    if all(np.allclose(_numpy(got[k]), slip[k], atol=1e-6, equal_nan=True) for k in expected_order
                           if _numpy(got[k]) is not None and _numpy(got[k]).shape == (n,)):
                        hint = slip_hint
                        break
            _kit.fail(Q4, f"{layer}: {np.round(want[layer], 4).tolist()}", np.round(values, 4).tolist(), hint + text,
                      seed)
    return want


CASCADING_RANDOMISATION = _kit.Answer(
    Q4, "cascading_randomisation",
    lambda: _forbidden("sanity:cascading_randomisation", "sanity:randomised_models", "sanity:map_similarity",
                       "sanity:spearman"),
    hint="run the cascade yourself; do not call rice_lab's cascading_randomisation, randomised_models, map_similarity "
         "or spearman (the references; scipy.stats.spearmanr is fine)", module=__name__)


@_kit.check(CASCADING_RANDOMISATION)
def check_cascading_randomisation(cascading_randomisation: Callable, seed: int) -> None:
    """Visible check for question 4: a three-block classifier, gradient x input maps, the check's re-initialiser."""
    case = cascade_case(seed)
    text = f" (case: {len(case.images)} {case.camera} photos, layers={case.layers}, target=None)"
    with _kit.one_thread():
        want = _compare_cascade(cascading_randomisation, case, seed, text)
    means = ", ".join(f"{layer} {np.nanmean(values):.2f}" for layer, values in want.items())
    _kit.passed(Q4, ["the trained model left unchanged; layers randomised from the logits down, cumulatively",
                     f"per-image Spearman of |maps| against the trained model's, for the trained model's class; "
                     f"means: {means}"])


@_kit.check(CASCADING_RANDOMISATION)
def check_cascading_randomisation_hidden(cascading_randomisation: Callable, seed: int) -> None:
    """Hidden check for question 4: a given target, two blocks, layers as a tuple, only some layers."""
    gen = _kit.rng(seed + 5)
    with _kit.one_thread():
        case = cascade_case(seed + 5, blocks=2)
        target = [int(v) for v in gen.integers(3, size=len(case.images))]
        _compare_cascade(cascading_randomisation, case, seed, " (case: one class per photo, a two-block model, layers "
                         "as a tuple)", target=target, layers_as=tuple)
        case = cascade_case(seed + 6, blocks=3)
        case.layers = ["body.1", "head"]
        _compare_cascade(cascading_randomisation, case, seed, " (case: layers=['body.1', 'head'] only)")
    _kit.passed(Q4 + " (hidden)", ["a class given per photo", "layers as a tuple", "only some layers"])


# --- question 5: the verdict ---------------------------------------------------------------------------------

def _values(gen: np.random.Generator, n: int, mean: float, sd: float) -> np.ndarray:
    """``n`` values with exactly this sample mean and sample standard deviation (ddof=1)."""
    z = gen.normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def verdict_case(seed: int, level: float = 0.95) -> tuple[dict[str, dict[str, np.ndarray]], float, dict[str, bool]]:
    """Similarity tables of several methods (per layer, per image), each built so that one typical slip
    changes its verdict; the threshold; the verdicts by construction (which the reference must give)."""
    gen = _kit.rng(seed)
    n = int(gen.integers(6, 10))
    threshold = float(gen.uniform(0.3, 0.6))
    layers = ["head", "body.2", "body.1", "body.0"][:int(gen.integers(3, 5))]
    t = stats.t.ppf((1 + level) / 2, n - 1) / math.sqrt(n)
    t0 = t * math.sqrt((n - 1) / n)  # what ddof=0 gives for the same values
    z = stats.norm.ppf((1 + level) / 2) / math.sqrt(n)
    low = lambda: _values(gen, n, threshold - 0.25, 0.05)  # noqa: E731  (clearly below the threshold)
    sd = 0.08
    profiles: dict[str, tuple[dict[str, np.ndarray], bool]] = {}
    profiles["clear-pass"] = ({layer: low() for layer in layers}, True)
    profiles["edge"] = ({layer: np.ones(n) for layer in layers}, False)
    fails_first = {layer: low() for layer in layers}
    fails_first[layers[0]] = _values(gen, n, threshold + 0.2, 0.05)
    profiles["fails-first"] = (fails_first, False)
    fails_last = {layer: low() for layer in layers}
    fails_last[layers[-1]] = _values(gen, n, threshold + 0.2, 0.05)
    profiles["fails-last"] = (fails_last, False)
    middle = layers[1]
    wide = {layer: low() for layer in layers}
    wide[middle] = _values(gen, n, threshold - 0.4 * t * sd, sd)  # mean below, interval's top above
    profiles["wide"] = (wide, False)
    student = {layer: low() for layer in layers}
    student[middle] = _values(gen, n, threshold - (t + z) / 2 * sd, sd)  # above with t, below with z
    profiles["student"] = (student, False)
    sample = {layer: low() for layer in layers}
    sample[middle] = _values(gen, n, threshold - (t + t0) / 2 * sd, sd)  # above with ddof=1, below with ddof=0
    profiles["sample-sd"] = (sample, False)
    above = {layer: low() for layer in layers}
    above[middle] = _values(gen, n, threshold + 0.4 * t * 0.2, 0.2)  # mean above, interval's bottom below
    profiles["wide-above"] = (above, False)
    close = {layer: low() for layer in layers}
    close[middle] = _values(gen, n, threshold - 1.1 * t * sd, sd)  # passes, but not with a wider interval
    profiles["just-passes"] = (close, True)
    missing = {layer: low() for layer in layers}
    for layer in layers[:2]:
        missing[layer][gen.choice(n, size=2, replace=False)] = np.nan
    profiles["nan"] = (missing, True)
    few = {layer: low() for layer in layers}
    few[layers[-1]][1:] = np.nan
    profiles["too-few"] = (few, False)
    names = ["saliency", "integrated-gradients", "grad-cam", "guided-backprop", "smoothgrad", "occlusion", "vargrad",
             "gradient-shap", "input-x-gradient", "deconvolution", "lime", "edge"]
    order = list(gen.permutation(len(names) - 1))
    cascades, answers = {}, {}
    for profile, (table, verdict) in profiles.items():
        name = "edge" if profile == "edge" else names[order.pop()]
        cascades[name], answers[name] = table, verdict
    keys = list(cascades)
    shuffled = [keys[k] for k in gen.permutation(len(keys))]
    return {k: cascades[k] for k in shuffled}, threshold, {k: answers[k] for k in shuffled}


def reference_verdict(cascades: dict, threshold: float = 0.5, level: float = 0.95, kind: str = "right",
                      ) -> dict[str, bool]:
    """A method passes when, at every step, the top of the two-sided Student-t interval of its mean
    similarity (NaN left out) lies below ``threshold``; a step with fewer than two values fails. ``kind``
    names a slip (only to name the mistake)."""
    verdict = {}
    for method, steps in cascades.items():
        tops = []
        items = list(steps.values())
        if kind == "last":
            items = items[-1:]
        elif kind == "first":
            items = items[:1]
        for values in items:
            values = np.asarray(values, dtype=np.float64)
            if kind != "nan-kept":
                values = values[~np.isnan(values)]
            n = len(values)
            if n < 2:
                tops.append(np.inf if kind != "few-skipped" else -np.inf)
                continue
            quantile = {"z": stats.norm.ppf((1 + level) / 2), "one-sided": stats.t.ppf(level, n - 1),
                        "level-ignored": stats.t.ppf(0.975, n - 1)}.get(kind, stats.t.ppf((1 + level) / 2, n - 1))
            sd = values.std(ddof=0 if kind == "ddof0" else 1)
            half = quantile * sd / math.sqrt(n)
            if kind == "mean":
                half = 0.0
            elif kind == "lower":
                half = -half
            tops.append(values.mean() + half)
        verdict[method] = bool(all(top < threshold for top in tops)) if kind != "inverted" else \
            bool(all(top > threshold for top in tops))
    return verdict


STUDENT_HINT = ("use the two-sided Student t quantile with n - 1 degrees of freedom, stats.t.ppf((1 + level) / 2, "
                "n - 1): not the normal's 1.96 (with a handful of images the interval is wider), nor the one-sided "
                "stats.t.ppf(level, n - 1)")
VERDICT_HINTS = {
    "last": "every step counts: a method whose maps survive randomising the head (the first step) fails even if they "
            "change once the whole network is random; you looked at the last step only",
    "first": "every step counts, not only the first: look at each layer's similarities",
    "mean": "decide on the top of the 95 % interval of the mean, not on the mean alone: a mean just below the "
            "threshold with a wide spread over images has not shown that the maps changed",
    "lower": "use the *upper* end of the interval (mean + half-width): the method must show that even the largest "
             "plausible mean similarity is below the threshold",
    "z": STUDENT_HINT,
    "one-sided": STUDENT_HINT,
    "ddof0": "the sample standard deviation (ddof=1: np.std(values, ddof=1)); np.std's default divides by n",
    "nan-kept": "leave out the NaN values (constant maps have no ranking) before taking the mean and the interval: "
                "one NaN makes np.mean NaN, and every comparison with NaN is False",
    "few-skipped": "a step with fewer than two similarities (the others NaN) cannot show a change: the method fails",
    "level-ignored": "use the `level` you are given: stats.t.ppf((1 + level) / 2, n - 1)",
    "inverted": "a method *passes* when its maps are *unlike* the trained model's: similarity below the threshold",
}


def _compare_verdict(func: Callable, cascades: dict, threshold: float, level: float, answers: dict[str, bool],
                     seed: int, case: str, convert: Callable = lambda v: v) -> None:
    sent = {method: {layer: convert(np.array(values)) for layer, values in steps.items()}
            for method, steps in cascades.items()}
    with _kit.named_errors(Q5, "cascades is {method: {layer: per-image similarities}}: arrays, lists or tensors "
                           "that may hold NaN (np.asarray(values, dtype=float) first)" + case, seed):
        outcome = _kit.call(func, sent, threshold=threshold, level=level)
    got = outcome.result
    if not isinstance(got, dict) or set(got) != set(cascades):
        shown = sorted(map(str, got)) if isinstance(got, dict) else type(got).__name__
        _kit.fail(Q5, f"a dict {{method: True or False}} for {sorted(cascades)}", shown,
                  "return every method's verdict: {method: passes}, not only the methods that pass" + case, seed)
    if not all(isinstance(v, (bool, np.bool_)) for v in got.values()):
        _kit.fail(Q5, "True or False for each method", {k: type(v).__name__ for k, v in got.items()},
                  "each verdict is a bool (the comparison itself: top < threshold)" + case, seed)
    got = {k: bool(v) for k, v in got.items()}
    if got != answers:
        wrong = sorted(k for k in answers if got[k] != answers[k])
        hint = None
        for kind, slip_hint in VERDICT_HINTS.items():
            if kind == "level-ignored" and level == 0.95:
                continue
            if reference_verdict(cascades, threshold, level, kind) == got:
                hint = slip_hint
                break
        if hint is None:
            method = wrong[0]
            tops = []
            for layer, values in cascades[method].items():
                values = np.asarray(values, dtype=np.float64)
                values = values[~np.isnan(values)]
                top = (values.mean() + stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1)
                       / math.sqrt(len(values))) if len(values) >= 2 else float("nan")
                tops.append(f"{layer}: {top:.3f}")
            hint = (f"{method}: the interval tops per step are {', '.join(tops)} against threshold {threshold:.3f}; "
                    "a method passes when every step's top lies below the threshold")
        _kit.fail(Q5, {k: answers[k] for k in wrong}, {k: got[k] for k in wrong}, hint + case, seed)


SANITY_VERDICT = _kit.Answer(
    Q5, "sanity_verdict", lambda: {"the autograder's reference verdict": reference_verdict},
    hint="decide yourself; do not call the autograder's reference", module=__name__)


@_kit.check(SANITY_VERDICT)
def check_sanity_verdict(sanity_verdict: Callable, seed: int) -> None:
    """Visible check for question 5: methods built so that each slip changes one verdict, two levels."""
    cascades, threshold, answers = verdict_case(seed)
    n = len(next(iter(next(iter(cascades.values())).values())))
    _compare_verdict(sanity_verdict, cascades, threshold, 0.95, answers, seed,
                     f" (case: {len(cascades)} methods, {n} images, threshold={threshold:.3f}, level=0.95)")
    cascades90, threshold90, answers90 = verdict_case(seed + 1, level=0.9)
    _compare_verdict(sanity_verdict, cascades90, threshold90, 0.9, answers90, seed,
                     f" (case: level=0.9, threshold={threshold90:.3f})")
    passing = sorted(k for k, v in answers.items() if v)
    _kit.passed(Q5, [f"{len(cascades)} methods at threshold {threshold:.3f}: {', '.join(passing)} pass, the others "
                     "fail (the edge map, a method that survives the head's randomisation or the last layer's, "
                     "means below the threshold whose intervals are not)",
                     "Student's t interval from the sample standard deviation, NaN left out, at levels 0.95 and 0.9"])


@_kit.check(SANITY_VERDICT)
def check_sanity_verdict_hidden(sanity_verdict: Callable, seed: int) -> None:
    """Hidden check for question 5: lists and tensors instead of arrays, another level."""
    cascades, threshold, answers = verdict_case(seed + 2, level=0.99)
    _compare_verdict(sanity_verdict, cascades, threshold, 0.99, answers, seed, " (case: level=0.99, Python lists)",
                     convert=lambda v: v.tolist())
    cascades, threshold, answers = verdict_case(seed + 3)
    _compare_verdict(sanity_verdict, cascades, threshold, 0.95, answers, seed, " (case: torch tensors)",
                     convert=lambda v: torch.from_numpy(v))
    _kit.passed(Q5 + " (hidden)", ["level 0.99", "Python lists", "torch tensors"])
