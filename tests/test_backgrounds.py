"""Views that share the leaf, not the ground: background replacement, leaf-centred crops, no label leak."""

from __future__ import annotations

import shutil

import pytest
import torch

from rice_lab.data.backgrounds import donor_order, leaf_centres, noise_texture, replace_background
from rice_lab.data.views import CropSpec, PlantImages, crop_matrices, load_size, multi_crop
from rice_lab.data.zindi import read_zindi
from rice_lab.errors import ConfigError
from rice_lab.presets import get_preset
from rice_lab.seeding import stream_generator


def generator(*keys: int) -> torch.Generator:
    return stream_generator(0, "augment", *keys)


def two_tone_plants(batch: int = 6, height: int = 40, width: int = 50):
    """Photos whose left half is leaf (one colour for every plant) and right half ground (a colour per
    plant), with the matching leaf masks: a pixel's colour says whose ground it is."""
    leaf_colour = torch.tensor([30, 200, 40], dtype=torch.uint8)
    grounds = torch.stack([torch.tensor([100 + 20 * i, 60, 10 * i], dtype=torch.uint8) for i in range(batch)])
    photos = grounds.view(batch, 3, 1, 1).expand(batch, 3, height, width).clone()
    photos[:, :, :, : width // 2] = leaf_colour.view(1, 3, 1, 1)
    masks = torch.zeros(batch, 1, height, width, dtype=torch.uint8)
    masks[:, :, :, : width // 2] = 1
    return photos, grounds, masks


def test_keep_returns_the_crops_unchanged():
    crops, alpha = torch.rand(3, 3, 8, 8), (torch.rand(3, 1, 8, 8) > 0.5).float()
    assert replace_background(crops, alpha, "keep", generator(0)) is crops


def test_swap_keeps_the_leaf_and_takes_the_ground_of_a_donor_with_its_leaves_painted_over():
    crops = torch.full((2, 3, 4, 4), 0.9)
    alpha = torch.zeros(2, 1, 4, 4)
    alpha[:, :, :2] = 1  # top half leaf
    donors = torch.full((2, 3, 4, 4), 0.2)
    donor_alpha = torch.zeros(2, 1, 4, 4)
    donor_alpha[:, :, :, :1] = 1  # the donor's own leaf, left column, a colour of its own
    donors[:, :, :, :1] = 0.7
    out = replace_background(crops, alpha, "swap", generator(0), donors, donor_alpha)
    assert torch.equal(out[:, :, :2], crops[:, :, :2])
    # The ground is the donor's ground everywhere, its leaf column too (its mean ground colour, 0.2).
    assert torch.allclose(out[:, :, 2:], torch.full_like(out[:, :, 2:], 0.2))


def test_swap_without_donors_and_an_unknown_mode_are_clear_errors():
    crops, alpha = torch.rand(2, 3, 4, 4), torch.ones(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="donor"):
        replace_background(crops, alpha, "swap", generator(0))
    with pytest.raises(ConfigError, match="background='grey'"):
        replace_background(crops, alpha, "grey", generator(0))


def test_noise_ground_differs_between_crops_and_draws():
    a = noise_texture(4, 3, 16, generator(1))
    b = noise_texture(4, 3, 16, generator(2))
    assert a.shape == (4, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a, b)
    assert (a.flatten(1).std(0) > 0).all()  # not one texture for every crop


@pytest.mark.parametrize("batch", [2, 3, 8, 31])
def test_donors_are_a_permutation_that_never_picks_the_plant_itself(batch):
    for key in range(20):
        order = donor_order(batch, generator(key))
        assert sorted(order.tolist()) == list(range(batch))
        assert (order != torch.arange(batch)).all()


def test_leaf_centres_land_on_the_leaf_or_anywhere_without_one():
    alpha = torch.zeros(3, 1, 10, 12)
    alpha[0, 0, 7, 2] = 1                    # one leaf pixel
    alpha[1, 0, :, 6:] = 1                   # the right half
    centres = torch.stack([leaf_centres(alpha, generator(k)) for k in range(200)])  # (draws, 3, 2)
    assert torch.equal(centres[:, 0], torch.tensor([2.5, 7.5], dtype=torch.float64).expand(200, 2))
    assert (centres[:, 1, 0] > 6).all()
    assert centres[:, 2, 0].min() < 3 and centres[:, 2, 0].max() > 9  # no leaf: spread over the photo
    assert centres[:, 2, 1].min() < 3 and centres[:, 2, 1].max() > 7


def test_crops_go_where_they_are_sent_and_stay_inside_the_photo():
    centres = torch.tensor([[25.0, 20.0], [0.0, 0.0]], dtype=torch.float64)
    theta = crop_matrices(2, 40, 50, (0.1, 0.1), 0.0, False, generator(0), centres=centres).double()
    # Normalised centre t = 2 c / size - 1; the crop's half extent is theta[:, i, i].
    assert theta[0, 0, 2].item() == pytest.approx(0.0, abs=1e-6) and theta[0, 1, 2].item() == pytest.approx(0.0, abs=1e-6)
    assert theta[1, 0, 2].item() == pytest.approx(-1 + theta[1, 0, 0].item(), abs=1e-6)  # pushed in to the edge
    assert theta[1, 1, 2].item() == pytest.approx(-1 + theta[1, 1, 1].item(), abs=1e-6)


def test_swapped_views_share_the_leaf_and_never_the_plants_own_ground():
    photos, grounds, masks = two_tone_plants()
    spec = CropSpec(size=16, n_small=2, max_rotation=0.0, jitter=0.0, background="swap")
    crops = multi_crop(photos, photos, spec, "paired", generator(3), None, (masks, masks))
    leaf = torch.tensor([30, 200, 40]) / 255
    for crop in crops:
        pixels = crop.permute(0, 2, 3, 1)  # (B, S, S, 3)
        for plant in range(len(photos)):
            own = grounds[plant].float() / 255
            # Only pure ground pixels (away from the leaf edge, where the blend mixes colours).
            far = (pixels[plant] - leaf).abs().sum(-1) > 0.3
            near_own = (pixels[plant][far] - own).abs().sum(-1) < 0.02
            assert not near_own.any(), f"plant {plant} kept its own ground"


def test_keep_recipe_ignores_the_masks_and_draws_as_before():
    photos, _, masks = two_tone_plants()
    spec = CropSpec(size=16, n_small=2)
    a = multi_crop(photos, photos, spec, "paired", generator(4))
    b = multi_crop(photos, photos, spec, "paired", generator(4), None, (masks, masks))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("changes", [{"background": "noise"}, {"leaf_centred": True}])
def test_a_recipe_that_reads_leaves_without_them_is_a_clear_error(changes):
    photos, _, _ = two_tone_plants()
    with pytest.raises(ConfigError, match="leaf masks"):
        multi_crop(photos, photos, CropSpec(size=16, **changes), "paired", generator(0))


def test_an_unknown_background_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="crops.background='grass'"):
        get_preset("cpu-tiny", data="x", out="y", crops={"background": "grass"}).validate()


def test_leaf_masks_come_from_the_photos_alone(synth_root, tmp_path):
    """A folder without masks/ (the real data's layout) gives the same leaf masks as with them."""
    bare = tmp_path / "bare"
    shutil.copytree(synth_root, bare, ignore=shutil.ignore_patterns("masks", "metadata.csv"))
    size = load_size(32)
    with_masks = PlantImages(read_zindi(synth_root).head(8), *size, leaves=True)
    without = PlantImages(read_zindi(bare).head(8), *size, leaves=True)
    assert all(torch.equal(a, b) for a, b in zip(with_masks.leaves, without.leaves))
    assert 0 < with_masks.leaves[0].float().mean() < 1 and 0 < with_masks.leaves[1].float().mean() < 1


def test_pretraining_with_the_leaf_recipe_cannot_read_a_mask(synth_root, tmp_path, monkeypatch):
    """By construction: with every reader of material or lesion masks broken, the recipe still trains."""
    import rice_lab.data.foreground as foreground
    import rice_lab.data.synthetic.materials as materials
    import rice_lab.data.zindi as zindi
    from rice_lab.ssl.pretrain import pretrain

    def forbidden(*_, **__):
        raise AssertionError("pre-training read a mask")

    for module, name in [(zindi, "read_mask"), (foreground, "read_mask"), (materials, "lesion_mask"),
                         (foreground, "lesion_mask"), (foreground, "blade_mask")]:
        monkeypatch.setattr(module, name, forbidden)
    bare = tmp_path / "bare"
    shutil.copytree(synth_root, bare, ignore=shutil.ignore_patterns("masks"))
    run = pretrain(get_preset("cpu-tiny", data=str(bare), out=str(tmp_path / "run"), epochs=1, batch_size=8,
                              photo_height=32, crops={"size": 32, "background": "swap", "leaf_centred": True},
                              progress=False, threads=1, checkpoint_every=0, resume_every=0))
    assert (run / "encoder.pt").is_file()


def test_a_setting_missing_from_an_older_config_takes_its_default():
    from rice_lab.runs import config_difference

    defaults = {"crops": {"background": "keep", "background_p": 1.0}, "lr": 1.0}
    older = {"crops": {"size": 64}, "lr": 0.5}
    assert config_difference(older, {"crops": {"size": 64, "background": "keep", "background_p": 1.0}, "lr": 0.5},
                             defaults=defaults) == []
    assert config_difference(older, {"crops": {"size": 64, "background": "swap", "background_p": 1.0}, "lr": 0.5},
                             defaults=defaults) == ["crops.background: 'keep' -> 'swap'"]
    # Without defaults a missing string setting still counts as a change (the older rule: None/False only).
    assert config_difference(older, {"crops": {"size": 64, "background": "keep"}, "lr": 0.5}) != []


def test_a_run_made_before_the_leaf_options_is_reused_not_set_aside(synth_root, tmp_path):
    """Upgrading rice-lab must not retrain every cached encoder: a manifest without the new crop
    settings is the recipe as photographed, and a new run is made only when a setting really differs."""
    import json

    from rice_lab.ssl.pretrain import cached_pretrain

    config = get_preset("cpu-tiny", data=str(synth_root), out=str(tmp_path / "run"), epochs=1, batch_size=8,
                        photo_height=32, crops={"size": 32}, progress=False, threads=1, checkpoint_every=0,
                        resume_every=0)
    run = cached_pretrain(config)
    manifest = json.loads((run / "manifest.json").read_text())
    for name in ("background", "background_p", "leaf_centred"):
        del manifest["config"]["crops"][name]
    (run / "manifest.json").write_text(json.dumps(manifest))
    encoder = (run / "encoder.pt").stat().st_mtime_ns
    assert cached_pretrain(config) == run and (run / "encoder.pt").stat().st_mtime_ns == encoder
    assert not list(tmp_path.glob("run.stale-*"))
    cached_pretrain(get_preset("cpu-tiny", **{**config.__dict__, "crops": {"size": 32, "background": "swap"}}))
    assert len(list(tmp_path.glob("run.stale-*"))) == 1  # the old run set aside, never deleted
