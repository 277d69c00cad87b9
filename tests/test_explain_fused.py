"""The fused prediction explained on a real classifier: the wrapper computes fine-tuning's fused views,
tuple inputs reach every method, Integrated Gradients stays complete over the two photos, and a
camera the model ignores gets no share of the credit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from rice_lab.data.zindi import CAMERAS
from rice_lab.errors import ConfigError
from rice_lab.evaluate.calibration import as_logits, softmax
from rice_lab.explain.attribution import METHODS, attribute
from rice_lab.explain.fused import FusedClassifier, camera_shares, explain_fused, fused_inputs
from rice_lab.explain.photos import camera_photos
from rice_lab.finetune.predictions import FUSED, FUSED_LOGITS, photo_probs, plant_views
from tests.explain_classifier import classifier, diseased_plants, train_tiny_classifier
from tests.test_explain_attribution import assert_maps_vary, assert_unchanged, snapshot


@pytest.fixture(scope="module")
def run_dir(synth_root, tmp_path_factory):
    return train_tiny_classifier(synth_root, tmp_path_factory.mktemp("fused"))


@pytest.fixture(scope="module")
def plants(synth_root):
    return diseased_plants(synth_root, 6)


class IgnoresRgnir(FusedClassifier):
    """The same fused classifier made blind to the RG-NIR photo (its input times zero)."""

    def forward(self, rgb, rgnir):
        return super().forward(rgb, rgnir * 0)


class SharedNetwork(torch.nn.Module):
    """Both photos through one network: its layers are shared by the two inputs."""

    def __init__(self, model):
        super().__init__()
        self.net = model

    def forward(self, rgb, rgnir):
        return (self.net(rgb) + self.net(rgnir)) / 2


def test_the_wrapper_computes_fine_tuning_s_fused_views(run_dir, plants):
    model, meta = classifier(run_dir)
    photos = camera_photos(plants, meta)
    images = torch.stack([photos[c] for c in CAMERAS], 1).flatten(0, 1)  # plant-major, as fine-tuning's samples
    cameras = torch.arange(len(CAMERAS)).repeat(len(plants))
    views = plant_views(photo_probs(model, meta, images, cameras).reshape(len(plants), len(CAMERAS), -1),
                        list(CAMERAS))
    rgb, rgnir = fused_inputs(plants, meta)
    with torch.no_grad():
        fused = FusedClassifier(model, FUSED)(rgb, rgnir).double().numpy()
        mean_logits = FusedClassifier(model, FUSED_LOGITS)(rgb, rgnir).double().numpy()
    assert np.allclose(fused, views[FUSED], atol=1e-5)
    assert np.allclose(softmax(mean_logits), views[FUSED_LOGITS], atol=1e-5)
    assert not np.allclose(views[FUSED], views["rgb"], atol=1e-3)  # the two cameras do disagree here
    with pytest.raises(ConfigError, match="view='mean'"):
        FusedClassifier(model, "mean")
    with pytest.raises(ConfigError, match="trained on rgb photos only"):
        fused_inputs(plants, {**meta, "cameras": ["rgb"]})


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_maps_both_photos_for_the_fused_prediction(run_dir, plants, method):
    model, meta = classifier(run_dir)
    before = snapshot(model)
    maps = explain_fused(model, meta, plants, method)
    rgb, rgnir = fused_inputs(plants, meta)
    assert list(maps) == list(CAMERAS)
    for camera, images in zip(CAMERAS, (rgb, rgnir)):
        assert maps[camera].shape == (len(plants), *images.shape[-2:]) and torch.isfinite(maps[camera]).all()
    assert_maps_vary(FusedClassifier(model), (rgb, rgnir), method, (maps["rgb"], maps["rgnir"]))
    assert_unchanged(model, before)


def test_a_photo_s_gradient_is_half_its_own_for_the_mean_of_logits(run_dir, plants):
    """Tuple plumbing checked against the single-photo path: d mean(a, b) / d rgb = (d a / d rgb) / 2."""
    model, meta = classifier(run_dir)
    rgb, rgnir = fused_inputs(plants, meta)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    fused = attribute(FusedClassifier(model, FUSED_LOGITS), (rgb, rgnir), "saliency", target)
    assert torch.allclose(fused[0], attribute(model, rgb, "saliency", target) / 2, atol=1e-6)
    assert torch.allclose(fused[1], attribute(model, rgnir, "saliency", target) / 2, atol=1e-6)


def test_grad_cam_reads_each_camera_s_own_copy_of_the_layer(run_dir, plants):
    model, meta = classifier(run_dir)
    wrapper = FusedClassifier(model)
    rgb, rgnir = fused_inputs(plants, meta)
    target = torch.zeros(len(plants), dtype=torch.long)
    maps = attribute(wrapper, (rgb, rgnir), "grad-cam", target, layer="body.6")
    for i, (camera, images) in enumerate(zip(CAMERAS, (rgb, rgnir))):
        cam = LayerGradCam(wrapper, wrapper.get_submodule(f"{camera}.body.6")).attribute(
            (rgb, rgnir), target=target, relu_attributions=True)
        expected = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")[:, 0]
        assert torch.allclose(maps[i], expected, atol=1e-6)
    with pytest.raises(ConfigError, match="name one layer per input"):
        attribute(wrapper, (rgb, rgnir), "grad-cam", target, layer=("rgb.body",))
    # a model of two inputs without per-camera copies: one layer name cannot say which input it reads
    with pytest.raises(ConfigError, match="layer='body' for a model of 2 inputs: name one layer per input"):
        attribute(SharedNetwork(model), (rgb, rgnir), "grad-cam", target)


@pytest.mark.parametrize("view", [FUSED, FUSED_LOGITS])
def test_integrated_gradients_add_up_over_both_photos(run_dir, plants, view):
    model, meta = classifier(run_dir)
    wrapper = FusedClassifier(model, view)
    rgb, rgnir = fused_inputs(plants.head(3), meta)
    target = torch.tensor([0, 1, 2])
    # ReLU and max-pool kinks slow the quadrature down: the error is about 3 % of the largest change
    # at 256 steps and 0.3 % at 1024 on this model
    maps = attribute(wrapper, (rgb, rgnir), "integrated-gradients", target, n_steps=1024, internal_batch_size=512)
    with torch.no_grad():
        change = (wrapper(rgb, rgnir) - wrapper(torch.zeros_like(rgb), torch.zeros_like(rgnir)))
    change = change.gather(1, target[:, None])[:, 0]
    total = maps[0].sum((1, 2)) + maps[1].sum((1, 2))
    assert torch.allclose(total, change, atol=0.01 * change.abs().max().item())
    assert not torch.allclose(maps[0].sum((1, 2)), change, atol=0.1 * change.abs().max().item())  # both count


def test_a_camera_the_model_ignores_gets_no_share(run_dir, plants, monkeypatch):
    model, meta = classifier(run_dir)
    before = snapshot(model)
    both = camera_shares(model, meta, plants, resamples=500)
    assert list(both.plants.columns) == ["plant_id", "rgb", "rgnir", "rgb_share"]
    assert list(both.plants["plant_id"]) == list(plants["plant_id"])
    shares = both.plants["rgb_share"]
    assert ((shares > 0.02) & (shares < 0.98)).all()  # a real model uses both photos
    assert both.rgb_share.estimate == pytest.approx(shares.mean())
    assert both.rgb_share.low <= both.rgb_share.estimate <= both.rgb_share.high
    monkeypatch.setattr("rice_lab.explain.fused.FusedClassifier", IgnoresRgnir)
    for method in ("integrated-gradients", "saliency", "occlusion"):
        blind = camera_shares(model, meta, plants, method, resamples=500)
        # zero up to float rounding (occlusion's batches of occluded copies round a little differently)
        assert (blind.plants["rgnir"] <= 1e-3 * blind.plants["rgb"]).all() and (blind.plants["rgb"] > 0).all(), method
        assert blind.rgb_share.low == pytest.approx(1.0, abs=1e-3)
    assert_unchanged(model, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_fused_maps_on_the_gpu_match_the_cpu(run_dir, plants, monkeypatch):
    # TF32 convolutions (on by default on Ampere and later cards) round far past the tolerance below
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model, meta = classifier(run_dir)
    rgb, rgnir = fused_inputs(plants, meta)
    wrapper = FusedClassifier(model)
    on_gpu = FusedClassifier(model).cuda()
    for method in ("saliency", "integrated-gradients", "grad-cam", "guided-grad-cam", "occlusion"):
        expected = attribute(wrapper, (rgb, rgnir), method)
        for found, cpu in zip(attribute(on_gpu, (rgb.cuda(), rgnir.cuda()), method), expected):
            assert found.is_cuda
            assert torch.allclose(found.cpu(), cpu, atol=1e-4, rtol=1e-3), method
