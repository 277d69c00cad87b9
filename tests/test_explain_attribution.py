"""attribute() on a real fine-tuned classifier: every method, the captum traps, targets, layers, cameras."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam, LayerDeepLift
from torch import nn

from rice_lab.errors import ConfigError, DataError
from rice_lab.explain.attribution import METHODS, attribute, explain_plants
from rice_lab.explain.models import captum_safe, functional_relu_owners
from rice_lab.explain.photos import camera_photos, lesion_masks, model_inputs
from tests.explain_classifier import classifier, diseased_plants, train_tiny_classifier

NONNEGATIVE = ("saliency", "smoothgrad", "smoothgrad-sq", "vargrad", "grad-cam")
CAMS = ("grad-cam", "guided-grad-cam")  # ReLU'd Grad-CAM: a photo's map may be all zero


@pytest.fixture(scope="module")
def run_dir(synth_root, tmp_path_factory):
    return train_tiny_classifier(synth_root, tmp_path_factory.mktemp("explain"))


@pytest.fixture(scope="module")
def plants(synth_root):
    return diseased_plants(synth_root, 6)


@pytest.fixture(scope="module")
def images(run_dir, plants):
    model, meta = classifier(run_dir)
    return model_inputs(camera_photos(plants, meta)["rgb"], "rgb", meta)


def assert_maps_vary(model: nn.Module, inputs, method: str, maps, target=None, **options) -> None:
    """Each photo's map varies over the photo and differs between photos (and, for a model of two
    inputs, between the inputs), for any trained model.

    A ReLU'd Grad-CAM map is all zero on a photo whose weighted channel sum is negative everywhere,
    which a model's weights may or may not make happen: the signed map (``relu=False``) must vary on
    every photo, the ReLU'd one keep all of its positive part (bilinear upsampling after the ReLU can
    only add), and guided Grad-CAM be nothing exactly where Grad-CAM is nothing.
    """
    as_tuple = lambda m: m if isinstance(m, tuple) else (m,)  # noqa: E731
    varies = lambda m: m.flatten(1).std(1) > 0  # noqa: E731
    if method not in CAMS:
        for m in as_tuple(maps):
            assert varies(m).sum() >= len(m) - 1, method
            assert not torch.allclose(m[0], m[1]), method
        if len(as_tuple(maps)) > 1:
            assert not torch.allclose(*as_tuple(maps)[:2]), method
        return
    signed = attribute(model, inputs, "grad-cam", target, relu=False, **options)
    if len(as_tuple(signed)) > 1:  # the ReLU'd maps may both be all zero, the signed ones differ
        assert not torch.allclose(*as_tuple(signed)[:2]), method
    relu = maps if method == "grad-cam" else attribute(model, inputs, "grad-cam", target, **options)
    for m, cam, positive in zip(as_tuple(maps), as_tuple(signed), as_tuple(relu)):
        assert varies(cam).all() and not torch.allclose(cam[0], cam[1]), method
        if method == "grad-cam":
            assert (m >= 0).all() and (m >= cam.clamp(min=0) - 1e-6).all()
        else:
            assert torch.equal(m.flatten(1).ne(0).any(1), positive.flatten(1).gt(0).any(1)), method


def snapshot(model: nn.Module) -> dict:
    """Everything about a model that explaining it must leave alone."""
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "modules": [(name, type(m), getattr(m, "inplace", None), m.training) for name, m in model.named_modules()],
            "grad": [p.requires_grad for p in model.parameters()]}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"] and after["grad"] == before["grad"]
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in before["state"])


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_maps_each_photo_and_leaves_the_model_alone(run_dir, images, method):
    model, _ = classifier(run_dir)
    before = snapshot(model)
    maps = attribute(model, images, method)
    assert maps.shape == (len(images), *images.shape[-2:]) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert_maps_vary(model, images, method, maps)  # a map varies over its photo and depends on which it is
    if method in NONNEGATIVE:
        assert (maps >= 0).all()
    assert_unchanged(model, before)
    assert any(getattr(m, "inplace", False) for m in model.modules())  # fastai's in-place ReLUs are still there


def test_the_safe_copy_has_no_in_place_module_and_computes_the_same(run_dir, images):
    model, _ = classifier(run_dir)
    safe = captum_safe(model, images[:1])
    assert safe is not model and captum_safe(safe, images[:1]) is safe
    assert not any(getattr(m, "inplace", False) for m in safe.modules())
    assert not safe.training
    with torch.no_grad():
        assert torch.allclose(safe(images), model(images), atol=1e-6)
    # still usable by captum's other methods: layer DeepLift hooks activations that need a gradient
    # only because the weights have one (a copy with frozen weights failed here)
    target = torch.zeros(len(images), dtype=torch.long)
    layer = LayerDeepLift(safe, safe.get_submodule("body.4")).attribute(images, target=target)
    assert torch.allclose(layer, LayerDeepLift(model, model.get_submodule("body.4")).attribute(images, target=target),
                          atol=1e-5)


def test_a_map_follows_a_change_of_the_photo(run_dir, images):
    model, _ = classifier(run_dir)
    changed = images.clone()
    changed[:, :, :8, :8] = 3.0  # a bright patch in a corner
    for method, options in (("saliency", {}), ("integrated-gradients", {}), ("grad-cam", {"relu": False})):
        a, b = attribute(model, images, method, 0, **options), attribute(model, changed, method, 0, **options)
        assert not torch.allclose(a, b), method


def test_target_none_means_the_predicted_class(run_dir, images):
    model, _ = classifier(run_dir)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    for method in ("saliency", "grad-cam"):
        assert torch.equal(attribute(model, images, method), attribute(model, images, method, target=predicted))
    other = (predicted + 1) % 3
    assert not torch.allclose(attribute(model, images, "saliency"), attribute(model, images, "saliency", target=other))
    with pytest.raises(ConfigError, match="target of shape"):
        attribute(model, images, "saliency", target=[0, 1])
    with pytest.raises(ConfigError, match="target 3: the model has 3 classes"):
        attribute(model, images, "saliency", target=3)


def test_batches_give_the_same_maps_and_seeds_fix_the_noise(run_dir, images):
    model, _ = classifier(run_dir)
    for method in ("saliency", "integrated-gradients", "occlusion", "grad-cam"):
        whole, batched = attribute(model, images, method), attribute(model, images, method, batch_size=4)
        assert torch.allclose(whole, batched, atol=1e-5), method
    for method in ("smoothgrad", "gradient-shap"):  # captum draws from torch's and numpy's generators
        state = np.random.get_state()
        first = attribute(model, images, method, seed=1)
        assert torch.equal(first, attribute(model, images, method, seed=1))
        assert torch.equal(first[2:4], attribute(model, images[2:4], method, seed=1))  # whatever the batch
        assert not torch.equal(first, attribute(model, images, method, seed=2))
        assert np.array_equal(np.random.get_state()[1], state[1])  # the caller's numpy generator untouched


def test_integrated_gradients_maps_add_up_to_the_logit_change(run_dir, images):
    """Completeness: the signed channel sum keeps it (a sum of absolute values would not)."""
    model, _ = classifier(run_dir)
    target = torch.zeros(len(images), dtype=torch.long)
    maps = attribute(model, images, "integrated-gradients", target=target, n_steps=256)
    with torch.no_grad():
        change = model(images)[:, 0] - model(torch.zeros_like(images))[:, 0]
    assert torch.allclose(maps.sum((1, 2)), change, atol=0.02 * change.abs().max().item())
    magnitudes = attribute(model, images, "integrated-gradients", target=target, n_steps=256, reduce="abs")
    assert (magnitudes.sum((1, 2)) > maps.sum((1, 2)).abs()).all()


def test_grad_cam_layers_are_chosen_by_name(run_dir, images):
    model, _ = classifier(run_dir)
    # signed maps: a ReLU'd one may be all zero at both layers
    deep = attribute(model, images, "grad-cam", relu=False)
    earlier = attribute(model, images, "grad-cam", relu=False, layer="body.6")
    assert deep.shape == earlier.shape and not torch.allclose(deep, earlier)
    # nearest upsampling commutes with the ReLU: the ReLU'd map is exactly the signed one's positive part
    signed = attribute(model, images, "grad-cam", relu=False, target=1, interpolate="nearest")
    assert torch.allclose(attribute(model, images, "grad-cam", target=1, interpolate="nearest"),
                          signed.clamp(min=0), atol=1e-6)
    with pytest.raises(ConfigError, match=r"layer='body\.99'.*available.*body\.7") as caught:
        attribute(model, images, "guided-grad-cam", layer="body.99")
    assert "\n" not in str(caught.value)


def test_unknown_methods_options_and_shapes_are_one_line_errors(run_dir, images):
    model, _ = classifier(run_dir)
    with pytest.raises(ConfigError, match="method='lime'.*saliency"):
        attribute(model, images, "lime")
    with pytest.raises(ConfigError, match="n_steps do not apply to saliency"):
        attribute(model, images, "saliency", n_steps=10)
    with pytest.raises(ConfigError, match="reduce='max'"):
        attribute(model, images, "saliency", reduce="max")
    with pytest.raises(ConfigError, match="images of shape"):
        attribute(model, images[0], "saliency")


class FunctionalRelu(nn.Module):
    """A ReLU that guided methods cannot see: the functional call, in one of its spellings."""

    def __init__(self, spelling: str) -> None:
        super().__init__()
        self.spelling = spelling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spelling == "F.relu":
            return F.relu(x)
        if self.spelling == "torch.relu_":
            return torch.relu_(x)
        return x.relu()


def with_functional_relus(model: nn.Module, spelling: str) -> nn.Module:
    """The same network with every nn.ReLU module replaced by a functional one."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.ReLU):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, FunctionalRelu(spelling))
    return model


@pytest.mark.parametrize("spelling", ["F.relu", "torch.relu_", "x.relu()"])
def test_guided_grad_cam_is_not_fooled_by_functional_relus(run_dir, images, spelling):
    model, _ = classifier(run_dir)
    functional = with_functional_relus(model, spelling)
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    assert relus > 0 and len(functional_relu_owners(functional, images[:1])) == relus
    safe = captum_safe(functional, images[:1])
    assert sum(isinstance(m, nn.ReLU) for m in safe.modules()) == relus  # one module per former call
    # each photo's class with the most positive Grad-CAM: where Grad-CAM is nothing, guided or not is nothing
    signed = torch.stack([attribute(model, images, "grad-cam", c, relu=False, layer="body") for c in range(3)])
    target = signed.flatten(2).amax(2).argmax(0)
    guided = attribute(model, images, "guided-grad-cam", target=target)
    assert torch.allclose(attribute(functional, images, "guided-grad-cam", target=target), guided, atol=1e-6)
    # The trap is real: captum alone on the functional model gives Grad-CAM times the plain gradient.
    trapped = GuidedGradCam(functional, functional.body).attribute(images.clone().requires_grad_(), target=target,
                                                                   interpolate_mode="bilinear").sum(1)
    seen = guided.flatten(1).abs().amax(1) > 0
    assert seen.any() and not torch.allclose(trapped[seen], guided[seen], atol=1e-4)


def test_explain_plants_explains_each_camera_with_its_own_normalisation(run_dir, plants):
    model, meta = classifier(run_dir)
    maps = explain_plants(model, meta, plants, "saliency")
    assert list(maps) == ["rgb", "rgnir"]
    photos = camera_photos(plants, meta)
    for camera, images in photos.items():
        assert maps[camera].shape == (len(plants), *images.shape[-2:])
        assert torch.equal(maps[camera], attribute(model, model_inputs(images, camera, meta), "saliency"))
    wrong = attribute(model, model_inputs(photos["rgnir"], "rgb", meta), "saliency")
    assert not torch.allclose(wrong, maps["rgnir"])


def test_lesion_masks_match_the_photos_the_model_sees(run_dir, plants):
    _, meta = classifier(run_dir)
    masks = lesion_masks(plants, "rgb", meta["photo_height"])
    assert masks.shape == (len(plants), *camera_photos(plants, meta)["rgb"].shape[-2:]) and masks.dtype == bool
    assert masks.any(axis=(1, 2)).mean() > 0.5  # diseased plants: most photos show a lesion at this size
    with pytest.raises(DataError, match="mask_rgb"):
        lesion_masks(plants.drop(columns=["mask_rgb"]), "rgb", 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_maps_on_the_gpu_match_the_cpu(run_dir, images, monkeypatch):
    # TF32 convolutions (on by default on Ampere and later cards) round far past the tolerance below
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model, _ = classifier(run_dir)
    gpu_model = copy.deepcopy(model).cuda()
    for method in ("saliency", "integrated-gradients", "grad-cam", "guided-grad-cam", "occlusion"):
        on_gpu = attribute(gpu_model, images.cuda(), method)
        assert on_gpu.is_cuda
        assert torch.allclose(on_gpu.cpu(), attribute(model, images, method), atol=1e-4, rtol=1e-3), method
