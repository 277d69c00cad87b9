"""Attribution maps through captum, one call shape for every method: ``attribute(model, images, method)``.

``images`` are what the model sees: photos normalised by their camera's statistics
(:func:`rice_lab.explain.photos.model_inputs`), (N, 3, H, W). The answer is one map per image,
(N, H, W), float32, on the images' device; attributions explain the target class's logit.

One map per image: captum gives one value per input channel, and the map is their **signed sum**
(``reduce="sum"``, the default; ``reduce="abs"`` sums absolute values instead). The sum is what
completeness holds for (Integrated Gradients' and GradientSHAP's maps add up to the change in logit),
and it keeps the sign for the metrics that read it; a metric that wants magnitude takes ``abs`` itself.
Methods whose values are never negative: ``saliency`` (captum's absolute gradient), ``smoothgrad``
(mean absolute gradient under noise), ``smoothgrad-sq``, ``vargrad`` and ``grad-cam`` with ``relu``.

The methods and their options (defaults in brackets; noise and baselines in normalised units, where
0 is the camera's mean colour and 1 its standard deviation):

* ``saliency``: absolute input gradient;
* ``integrated-gradients``: from ``baseline`` [0.0] in ``n_steps`` [32] steps
  (``internal_batch_size`` [None] against running out of memory);
* ``gradient-shap``: expected gradients from ``baseline`` [0.0] (a value, or a tensor of baseline
  images), ``n_samples`` [16] draws, input noise ``stdevs`` [0.1];
* ``smoothgrad`` / ``smoothgrad-sq`` / ``vargrad``: captum's NoiseTunnel over the gradient with
  ``n_samples`` [16] noisy copies of standard deviation ``stdevs`` [1.0]; smoothgrad averages the
  absolute gradient, smoothgrad-sq its square, vargrad takes the variance of the signed gradient;
* ``occlusion``: the drop in logit when a ``window`` x ``window`` patch [H // 8] moved by ``stride``
  [window // 2] is set to ``baseline`` [0.0] (a patch covers all channels, so each channel carries
  the same value and the summed map is that drop times the channel count);
* ``grad-cam``: captum's LayerGradCam at ``layer`` ["body", the last feature maps], upsampled
  (``interpolate`` ["bilinear"]) to the image; ``relu`` [True] keeps the positive part only;
* ``guided-grad-cam``: Grad-CAM (with ReLU) times Guided Backprop, at ``layer`` ["body"].

Stochastic methods draw from ``seed`` [0], one photo at a time, every photo from the same draws
(so its map does not depend on the batch); every method works on a copy of the model made by
:func:`rice_lab.explain.models.captum_safe`, so the caller's model is never touched. ``batch_size``
[None: all at once] splits the images.

Models of several inputs (the fused prediction of a plant's two photos, :mod:`rice_lab.explain.fused`;
the SSL encoder's agreement between them, :mod:`rice_lab.explain.encoder`) take ``images`` as a tuple
of batches and get a tuple of maps back, one per input, from one captum call. Every method takes a
tuple: ``baseline``, ``window`` and ``stride`` apply to each input. Grad-CAM and Guided Grad-CAM
need a layer that one input alone reaches (a layer shared by both photos holds two activations, and
captum's Guided Grad-CAM would multiply both photos' guided gradients by one Grad-CAM): ``layer`` is
then one name per input, or one name that a :class:`rice_lab.explain.models.TwoCameras` model
resolves in each camera's own copy of the network (``body`` -> ``rgb.body``, ``rgnir.body``).

:func:`explain_plants` explains each camera's photo through the model on its own.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

import pandas as pd
import torch
from captum.attr import (
    GradientShap,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from rice_lab.errors import ConfigError
from rice_lab.explain.models import Inputs, batch_length, captum_safe, find_layer, model_device, resolve_targets, take
from rice_lab.seeding import stream_seed

REDUCTIONS = ("sum", "abs")
DEFAULT_LAYER = "body"  # a rice_lab Classifier's last feature maps, before pooling


def _saliency(model, x, target, opts):
    return Saliency(model).attribute(x, target=target, abs=True)


def _each(value, x):
    """An option given once, repeated for each input of a tuple (captum wants one per input)."""
    return tuple(value for _ in x) if isinstance(x, tuple) and not isinstance(value, tuple) else value


def _integrated_gradients(model, x, target, opts):
    return IntegratedGradients(model).attribute(x, baselines=_each(opts["baseline"], x), target=target,
                                                n_steps=opts["n_steps"],
                                                internal_batch_size=opts["internal_batch_size"])


def _shap_baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(baseline):  # a distribution of one image: the constant colour
        baseline = torch.full((1, *x.shape[1:]), float(baseline), device=x.device, dtype=x.dtype)
    return baseline.to(x.device, x.dtype)


def _gradient_shap(model, x, target, opts):
    baselines = _each(opts["baseline"], x)
    baselines = (tuple(_shap_baseline(b, xi) for b, xi in zip(baselines, x)) if isinstance(x, tuple)
                 else _shap_baseline(baselines, x))
    return GradientShap(model).attribute(x, baselines=baselines, target=target,
                                         n_samples=opts["n_samples"], stdevs=opts["stdevs"])


def _noise_tunnel(kind: str) -> Callable:
    def attribute(model, x, target, opts):
        gradient_abs = kind != "vargrad"  # vargrad: the variance of the signed gradient
        return NoiseTunnel(Saliency(model)).attribute(x, nt_type=kind, nt_samples=opts["n_samples"],
                                                      stdevs=opts["stdevs"], target=target, abs=gradient_abs)
    return attribute


def _occlusion(model, x, target, opts):
    def shapes(xi: torch.Tensor) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        window = opts["window"] or max(1, xi.shape[-2] // 8)
        stride = opts["stride"] or max(1, window // 2)
        return (xi.shape[1], window, window), (xi.shape[1], stride, stride)

    if isinstance(x, tuple):  # each input occluded in turn, the others left whole
        windows, strides = zip(*(shapes(xi) for xi in x))
    else:
        windows, strides = shapes(x)
    return Occlusion(model).attribute(x, sliding_window_shapes=windows, strides=strides,
                                      baselines=_each(opts["baseline"], x), target=target,
                                      perturbations_per_eval=opts["perturbations_per_eval"])


def input_layers(model: nn.Module, layer: str | Sequence[str], inputs: int) -> tuple[str, ...]:
    """The layer Grad-CAM reads for each of a model's ``inputs`` inputs (module docstring)."""
    if inputs == 1:
        if not isinstance(layer, str):
            raise ConfigError(f"layer={layer!r}: a model of one input takes one layer name")
        return (layer,)
    if isinstance(layer, str):
        if not hasattr(model, "branch_layers"):
            raise ConfigError(f"layer={layer!r} for a model of {inputs} inputs: name one layer per input, each "
                              "reached by that input only (a layer shared by the inputs mixes them)")
        return tuple(model.branch_layers(layer))
    if len(layer) != inputs:
        raise ConfigError(f"layer={tuple(layer)!r}: name one layer per input ({inputs})")
    return tuple(layer)


def _grad_cam(model, x, target, opts):
    inputs = x if isinstance(x, tuple) else (x,)
    maps = []
    for xi, name in zip(inputs, input_layers(model, opts["layer"], len(inputs))):
        cam = LayerGradCam(model, find_layer(model, name)).attribute(x, target=target, relu_attributions=opts["relu"])
        maps.append(LayerAttribution.interpolate(cam, tuple(xi.shape[-2:]), interpolate_mode=opts["interpolate"]))
    return tuple(maps) if isinstance(x, tuple) else maps[0]


def _guided_grad_cam(model, x, target, opts):
    if not isinstance(x, tuple):
        method = GuidedGradCam(model, find_layer(model, opts["layer"]))
        return method.attribute(x, target=target, interpolate_mode=opts["interpolate"])
    # captum multiplies every input's guided gradient by one Grad-CAM: each input takes its own layer's.
    return tuple(GuidedGradCam(model, find_layer(model, name)).attribute(x, target=target,
                                                                        interpolate_mode=opts["interpolate"])[i]
                 for i, name in enumerate(input_layers(model, opts["layer"], len(x))))


# method -> (captum call, its options with their defaults)
METHODS: dict[str, tuple[Callable, dict[str, Any]]] = {
    "saliency": (_saliency, {}),
    "integrated-gradients": (_integrated_gradients, {"baseline": 0.0, "n_steps": 32, "internal_batch_size": None}),
    "gradient-shap": (_gradient_shap, {"baseline": 0.0, "n_samples": 16, "stdevs": 0.1}),
    "smoothgrad": (_noise_tunnel("smoothgrad"), {"n_samples": 16, "stdevs": 1.0}),
    "smoothgrad-sq": (_noise_tunnel("smoothgrad_sq"), {"n_samples": 16, "stdevs": 1.0}),
    "vargrad": (_noise_tunnel("vargrad"), {"n_samples": 16, "stdevs": 1.0}),
    "occlusion": (_occlusion, {"window": None, "stride": None, "baseline": 0.0, "perturbations_per_eval": 16}),
    "grad-cam": (_grad_cam, {"layer": DEFAULT_LAYER, "relu": True, "interpolate": "bilinear"}),
    "guided-grad-cam": (_guided_grad_cam, {"layer": DEFAULT_LAYER, "interpolate": "bilinear"}),
}
STOCHASTIC = ("gradient-shap", "smoothgrad", "smoothgrad-sq", "vargrad")


def method_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with the method's defaults; ConfigError for an unknown method or option."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: choose one of {', '.join(METHODS)}")
    defaults = METHODS[method][1]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ConfigError(f"option(s) {', '.join(unknown)} do not apply to {method} (its options: {allowed})")
    return {**defaults, **options}


def _reduce(attributions: torch.Tensor, reduce: str) -> torch.Tensor:
    return (attributions.abs() if reduce == "abs" else attributions).sum(dim=1)


def _check_images(images: Inputs) -> tuple[torch.Tensor, ...]:
    """``images`` as a tuple of 4-D batches of one length; ConfigError otherwise."""
    batches = images if isinstance(images, tuple) else (images,)
    if not batches or not all(torch.is_tensor(x) and x.ndim == 4 for x in batches):
        shapes = [tuple(x.shape) if torch.is_tensor(x) else type(x).__name__ for x in batches]
        raise ConfigError(f"images of shape {shapes[0] if len(shapes) == 1 else shapes}: expected (N, channels, "
                          "height, width), or a tuple of such batches for a model of several inputs")
    if len({len(x) for x in batches}) > 1:
        raise ConfigError(f"inputs of {[len(x) for x in batches]} items: each input needs one batch of the same "
                          "length")
    return batches


def attribute(model: nn.Module, images: Inputs, method: str, target: int | Sequence[int] | torch.Tensor | None = None,
              *, reduce: str = "sum", batch_size: int | None = None, seed: int = 0,
              **options: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One attribution map per image, (N, H, W) float32 on ``images``' device (see the module docstring).

    ``images`` may be a tuple of batches, the inputs of a model of several (the fused prediction):
    the answer is then a tuple of maps, one per input, from one captum call. ``target``: a class
    index, one per image, or None for each image's predicted class.
    """
    options = method_options(method, options)
    if reduce not in REDUCTIONS:
        raise ConfigError(f"reduce={reduce!r}: choose one of {', '.join(REDUCTIONS)}")
    batches = _check_images(images)
    device = model_device(model)
    safe = captum_safe(model, take(images, 0, 1, device))
    if method in ("grad-cam", "guided-grad-cam"):  # a wrong name fails before any work
        for name in input_layers(safe, options["layer"], len(batches)):
            find_layer(safe, name)
    targets = resolve_targets(safe, images, target)
    explain = METHODS[method][0]
    # A stochastic method explains one photo at a time, each from the same seeded draws, so a photo's
    # map does not depend on the batch it came in (nor does max-sensitivity see the method's own noise).
    length = batch_length(images)
    step = 1 if method in STOCHASTIC else batch_size or max(1, length)
    maps: list[list[torch.Tensor]] = [[] for _ in batches]
    with torch.enable_grad():
        for start in range(0, length, step):
            x = tuple(b[start:start + step].to(device).float().detach().requires_grad_() for b in batches)
            with _seeded(stream_seed(seed, "explain-noise"), device), warnings.catch_warnings():
                # captum announces the hooks it sets on every call
                warnings.filterwarnings("ignore", message="Setting backward hooks", category=UserWarning)
                attributions = explain(safe, x if isinstance(images, tuple) else x[0], targets[start:start + step],
                                       options)
            attributions = attributions if isinstance(attributions, tuple) else (attributions,)
            for per_input, found in zip(maps, attributions):
                per_input.append(_reduce(found.detach().float(), reduce))
    out = tuple(torch.cat(m).to(b.device) if m else b.new_zeros((0, *b.shape[-2:])) for m, b in zip(maps, batches))
    return out if isinstance(images, tuple) else out[0]


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's and numpy's global generators seeded (captum draws from both), restored afterwards."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def explain_plants(model: nn.Module, meta: dict, plants: pd.DataFrame, method: str, target: int | None = None,
                   **options: Any) -> dict[str, torch.Tensor]:
    """Maps for each camera's photo of ``plants`` (rows of ``read_zindi``), each photo through the model
    with its own camera's normalisation, as ``rice_lab.finetune`` trained it: {camera: (plants, H, W)}.

    ``meta`` is what ``rice_lab.finetune.predictions.load_classifier`` returns beside the model.
    """
    from rice_lab.explain.photos import camera_photos, model_inputs

    photos = camera_photos(plants, meta)
    return {camera: attribute(model, model_inputs(images, camera, meta), method, target, **options)
            for camera, images in photos.items()}


__all__ = ["DEFAULT_LAYER", "METHODS", "REDUCTIONS", "STOCHASTIC", "attribute", "explain_plants", "input_layers",
           "method_options"]
