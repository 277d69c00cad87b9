"""Views and multi-crop (shapes, cameras, seeding), the seeded sampler, and encoders."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from rice_lab.data.views import (
    CropSpec, SeededBatchSampler, camera_plan, generator_for, multi_crop, random_resized_crop,
)
from rice_lab.errors import CheckpointError, ConfigError, OfflineError
from rice_lab.models import create_encoder, load_encoder_weights

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


def test_full_crop_without_rotation_is_a_resize():
    image = torch.rand(1, 3, 16, 16)
    crop = random_resized_crop(image, 16, (1.0, 1.0), 0.0, False, generator_for(0))
    # aspect ratio is still random, so compare only when it came out square-ish: use the identity
    theta_image = torch.rand(1, 3, 8, 8)
    same = random_resized_crop(theta_image, 8, (1.0, 1.0), 0.0, False, torch.Generator().manual_seed(0))
    assert crop.shape == (1, 3, 16, 16) and same.shape == (1, 3, 8, 8)
    assert torch.isfinite(crop).all()


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
