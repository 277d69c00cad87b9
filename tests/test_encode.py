"""``encode``: photos reach an encoder the way it was trained on them (size, statistics, eval mode)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rice_lab.data.zindi import read_zindi
from rice_lab.errors import ConfigError, DataError
from rice_lab.evaluate import encode, plant_photos
from zindi_folder import make_zindi, write_image


class ChannelMeans(nn.Module):
    """Features: each channel's mean, then the input's height and width; dropout to reveal train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = torch.tensor([x.shape[-2], x.shape[-1]], dtype=x.dtype).expand(len(x), 2)
        return torch.cat([self.dropout(x.mean(dim=(2, 3)) * self.scale), size], dim=1)


def grey_photos(values: list[int], height: int = 8, width: int = 10) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, height, width).clone()


def test_photos_are_normalised_by_the_encoders_stored_statistics_for_that_camera():
    encoder = ChannelMeans()
    encoder.normalization = {"rgb": ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]), "rgnir": ([0.0] * 3, [1.0] * 3)}
    features = encode(encoder, grey_photos([0, 255, 51]), "rgb")
    assert torch.allclose(features[:, 0], torch.tensor([-2.0, 2.0, -1.2]))
    assert torch.allclose(encode(encoder, grey_photos([51]), "rgnir")[:, 0], torch.tensor([0.2]))
    # floats in [0, 1] are the same photos
    assert torch.allclose(encode(encoder, grey_photos([51]).float() / 255, "rgb"), features[2:])
    # explicit statistics win; without any, the photos' own give mean 0
    assert torch.allclose(encode(encoder, grey_photos([51]), "rgb", stats=([0.2] * 3, [1.0] * 3))[:, 0],
                          torch.tensor([0.0]), atol=1e-6)
    del encoder.normalization
    assert abs(float(encode(encoder, grey_photos([0, 255]), "rgb")[:, 0].mean())) < 1e-6


def test_photos_are_resized_to_the_encoders_photo_height_keeping_their_shape():
    encoder = ChannelMeans()
    assert encode(encoder, grey_photos([9], 8, 10), "rgb")[0, 3:].tolist() == [8, 10]  # as they are
    encoder.photo_height = 16
    assert encode(encoder, grey_photos([9], 8, 10), "rgb")[0, 3:].tolist() == [16, 20]
    assert encode(encoder, grey_photos([9], 8, 10), "rgb", height=4)[0, 3:].tolist() == [4, 5]


def test_encoding_is_batched_without_gradients_in_eval_mode_and_restores_the_mode():
    encoder = ChannelMeans().train()
    photos = torch.randint(0, 256, (7, 3, 8, 10), dtype=torch.uint8)
    one_batch = encode(encoder, photos, "rgb")
    assert torch.equal(one_batch, encode(encoder, photos, "rgb", batch_size=3))  # dropout off: eval mode
    assert encoder.training and not one_batch.requires_grad
    with pytest.raises(ConfigError, match="camera='nir'"):
        encode(encoder, photos, "nir")
    with pytest.raises(ConfigError, match="expected \\(photos, 3, height, width\\)"):
        encode(encoder, photos[:, :1], "rgb")


def test_plant_photos_decode_one_camera_at_its_size_or_a_given_height(synth_root):
    plants = read_zindi(synth_root).head(5)
    rgnir = plant_photos(plants, "rgnir")
    assert rgnir.shape == (5, 3, 51, 64) and rgnir.dtype == torch.uint8
    assert plant_photos(plants, "rgb", height=40).shape == (5, 3, 40, 50)
    assert not torch.equal(plant_photos(plants, "rgb"), rgnir)
    with pytest.raises(ConfigError, match="camera='blue'"):
        plant_photos(plants, "blue")


def test_plant_photos_of_several_sizes_need_a_height(tmp_path):
    root = make_zindi(tmp_path / "rice")
    for seed, name in enumerate(("id_te00000.jpg", "id_te00000_rgn.jpg")):
        write_image(root / "images" / name, np.random.default_rng(seed), size=(50, 40))
    plants = read_zindi(root)
    with pytest.raises(DataError, match="2 sizes \\(40x32, 50x40\\); pass height="):
        plant_photos(plants, "rgb")
    assert plant_photos(plants, "rgb", height=32).shape[-2:] == (32, 40)
