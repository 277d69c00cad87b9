"""Views and multi-crop (shapes, cameras, seeding), the seeded sampler, and encoders."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from rice_lab.data.views import (
    CropSpec, SeededBatchSampler, camera_plan, color_jitter, gaussian_blur, multi_crop, random_grayscale,
    random_resized_crop,
)
from rice_lab.errors import CheckpointError, ConfigError, OfflineError
from rice_lab.models import create_encoder, load_encoder_weights
from rice_lab.seeding import stream_generator


def generator_for(*keys: int) -> torch.Generator:
    return stream_generator(0, "augment", *keys)

RECIPE = CropSpec(size=32)  # the original recipe at 32 px: 2 x 32 px + 6 x 24 px


def plants(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (batch, 3, 40, 50), generator=g, dtype=torch.uint8)
    return rgb, 255 - rgb


def test_multi_crop_shapes_follow_the_recipe():
    crops = multi_crop(*plants(), RECIPE, "paired", generator_for(0, 1))
    assert len(crops) == 8
    assert [tuple(c.shape) for c in crops] == [(4, 3, 32, 32)] * 2 + [(4, 3, 24, 24)] * 6
    assert all(c.dtype == torch.float32 and 0 <= c.min() and c.max() <= 1 for c in crops)


def test_same_seed_same_crops_other_seed_other_crops():
    a = multi_crop(*plants(), RECIPE, "mixed", generator_for(0, 5))
    b = multi_crop(*plants(), RECIPE, "mixed", generator_for(0, 5))
    c = multi_crop(*plants(), RECIPE, "mixed", generator_for(0, 6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_camera_plans():
    g = generator_for(0)
    assert camera_plan("paired", 2, 6, 3, g)[:, 0].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert camera_plan("rgb", 2, 2, 3, g).eq(0).all()
    assert camera_plan("rgnir", 2, 2, 3, g).eq(1).all()
    mixed = camera_plan("mixed", 2, 6, 100, g)
    assert 0.3 < mixed.float().mean() < 0.7
    with pytest.raises(ConfigError, match="views"):
        camera_plan("nir", 2, 2, 3, g)


def test_paired_views_take_the_right_camera():
    """With whole-image crops and no jitter, crop 0 is the RGB photo and crop 1 the RGNIR one."""
    spec = CropSpec(size=16, n_small=0, large_scale=(1.0, 1.0), max_rotation=0, flip=False, jitter=0)
    rgb, rgnir = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)
    big = CropSpec(**{**spec.__dict__})
    crops = multi_crop(rgb, rgnir, big, "paired", generator_for(0))
    assert crops[0].max() < 0.01 and crops[1].min() > 0.99


def test_full_square_crop_without_rotation_is_a_resize():
    images = torch.rand(3, 3, 16, 16)
    whole = dict(scale=(1.0, 1.0), max_rotation=0.0, flip=False, generator=generator_for(0), ratio=(1.0, 1.0))
    torch.testing.assert_close(random_resized_crop(images, 16, **whole), images, atol=1e-5, rtol=0)
    half = F.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(random_resized_crop(images, 8, **whole), half, atol=1e-5, rtol=0)
    # the flip mirrors the photo; a rotation by max_rotation changes it
    mirrored = random_resized_crop(images, 16, **{**whole, "flip": True, "generator": generator_for(1)})
    assert all(torch.allclose(m, x, atol=1e-5) or torch.allclose(m, x.flip(-1), atol=1e-5)
               for m, x in zip(mirrored, images))
    assert not torch.allclose(random_resized_crop(images, 16, **{**whole, "max_rotation": 30.0}), images, atol=1e-3)


def test_rotation_p_rotates_only_that_share_of_the_crops():
    images = torch.rand(400, 1, 8, 8)
    whole = dict(scale=(1.0, 1.0), max_rotation=20.0, flip=False, ratio=(1.0, 1.0))
    rotated = random_resized_crop(images, 8, generator=generator_for(0), rotation_p=0.3, **whole)
    unchanged = ((rotated - images).abs().flatten(1).max(1).values < 1e-5).float().mean()
    assert 0.6 < unchanged < 0.8  # about 70 % keep angle 0
    always = random_resized_crop(images, 8, generator=generator_for(0), rotation_p=1.0, **whole)
    assert ((always - images).abs().flatten(1).max(1).values < 1e-5).float().mean() < 0.05


def test_color_jitter_changes_the_chosen_share_and_keeps_grey_grey():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(300, 3, 6, 6, generator=g) * 0.5 + 0.25
    out = color_jitter(images, 0.6, 0.3, generator_for(0))
    changed = ((out - images).abs().flatten(1).max(1).values > 1e-6).float().mean()
    assert 0.2 < changed < 0.4 and out.min() >= 0 and out.max() <= 1
    assert torch.equal(color_jitter(images, 0.6, 0.3, generator_for(0)), out)  # seeded
    assert torch.equal(color_jitter(images, 0.6, 0.0, generator_for(0)), images)
    grey = images[:, :1].expand(-1, 3, -1, -1)  # no colour: hue and saturation change nothing
    jittered = color_jitter(grey, 0.6, 1.0, generator_for(0))
    torch.testing.assert_close(jittered[:, 0], jittered[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(jittered[:, 1], jittered[:, 2], atol=1e-5, rtol=0)
    # a pure hue turn keeps the brightest channel's value and the saturation
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 0.8
    from rice_lab.data.views import _hsv_to_rgb, _rgb_to_hsv

    hue, sat, val = _rgb_to_hsv(red)
    torch.testing.assert_close(_hsv_to_rgb((hue + 1 / 3) % 1, sat, val).flatten(), torch.tensor([0.0, 0.8, 0.0]))


def test_random_grayscale_turns_the_chosen_share_grey():
    images = torch.rand(500, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    out = random_grayscale(images, 0.3, generator_for(0))
    grey = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 0.25 < grey.float().mean() < 0.35
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    torch.testing.assert_close(out[grey, 0], luma[grey])
    torch.testing.assert_close(out[~grey], images[~grey])


def test_gaussian_blur_smooths_the_chosen_share_and_keeps_the_mean():
    images = torch.rand(400, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    out = gaussian_blur(images, 0.3, generator_for(0))
    blurred = (out - images).abs().flatten(1).max(1).values > 1e-6
    assert 0.22 < blurred.float().mean() < 0.38
    # blurring lowers pixel-to-pixel variation and (reflected borders aside) keeps the mean
    assert (out[blurred].diff(dim=-1).abs().mean() < 0.9 * images[blurred].diff(dim=-1).abs().mean())
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)
    flat = torch.full((2, 3, 10, 10), 0.4)
    torch.testing.assert_close(gaussian_blur(flat, 1.0, generator_for(0)), flat)


def test_default_recipe_draws_nothing_for_the_augmentations_it_leaves_off():
    """The published augmentations, when off, must not shift the crops of the default recipe."""
    rgb, rgnir = plants()
    a = multi_crop(rgb, rgnir, RECIPE, "paired", generator_for(3))
    b = multi_crop(rgb, rgnir, CropSpec(**{**RECIPE.__dict__, "color_jitter": 0.6}), "paired", generator_for(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    published = CropSpec(size=32, rotation_p=0.3, jitter=0.0, color_jitter=0.6, color_jitter_p=0.3,
                         grayscale_p=0.3, blur_p=0.3)
    c = multi_crop(rgb, rgnir, published, "rgb", generator_for(3))
    assert [tuple(x.shape) for x in c] == [(4, 3, 32, 32)] * 2 + [(4, 3, 24, 24)] * 6


def test_random_streams_are_distinct_for_distinct_keys():
    from rice_lab.seeding import stream_seed

    # numpy's SeedSequence([s, 2, 7]) equals SeedSequence([s, 2, 7, 0]); named streams must not
    assert stream_seed(0, "augment", 2, 7) != stream_seed(0, "augment", 2, 7, 0)
    assert stream_seed(0, "augment", 2) != stream_seed(0, "valid-augment", 2)
    assert stream_seed(0, "augment", 2) != stream_seed(1, "augment", 2)
    assert stream_seed(5, "sampler", 1) == stream_seed(5, "sampler", 1) < 2**63
    with pytest.raises(ValueError, match="unknown random stream"):
        stream_seed(0, "augmnet", 1)


def test_seeded_batch_sampler_order_resume_and_shards():
    a = list(SeededBatchSampler(20, 4, seed=3))
    b = SeededBatchSampler(20, 4, seed=3)
    assert list(b) == a
    b.set_epoch(0, start=2)
    assert list(b) == a[2:]
    b.set_epoch(1)
    assert list(b) != a
    ranks = [list(SeededBatchSampler(20, 2, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    merged = [sorted(x + y) for x, y in zip(*ranks)]
    assert merged == [sorted(batch) for batch in a]


def test_encoders_map_images_to_features():
    for name in ("xresnet-tiny", "xresnet18"):
        encoder = create_encoder(name)
        features = encoder(torch.randn(2, 3, 32, 32))
        assert features.shape == (2, encoder.num_features)
    assert create_encoder("res2next50").num_features == 2048
    assert create_encoder("xresnet-tiny", n_in=1)(torch.randn(2, 1, 32, 32)).shape[0] == 2


def test_unknown_encoder_and_xresnet_pretrained_are_config_errors():
    with pytest.raises(ConfigError, match="unknown encoder"):
        create_encoder("resnet-9000")
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        create_encoder("xresnet34", pretrained=True)


def test_pretrained_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(OfflineError, match="offline"):
        create_encoder("resnet10t", pretrained=True)
    assert time.time() - start < 10


def test_init_from_a_local_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = create_encoder("xresnet-tiny")
    torch.save({"encoder": source.state_dict(), "encoder_name": "xresnet-tiny"}, tmp_path / "enc.pt")
    copy = create_encoder("xresnet-tiny", init=tmp_path / "enc.pt")
    for (name, p), q in zip(source.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(p, q), name
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder_weights(copy, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        create_encoder("xresnet18", init=tmp_path / "enc.pt")
