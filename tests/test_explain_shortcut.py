"""The shortcut capstone on real tiny models: the stamped data is the clean data plus stamps, a model
trained on it leans on the stamp (its test log loss rises, attributions land on the stamp, painting
the stamp on and off moves its blast probability) while a model trained on the clean twin does not;
repainting changes the stamp's pixels and nothing else; bad input gets one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rice_lab.data.synthetic import MATERIALS
from rice_lab.data.zindi import CLASSES, load_image, read_mask, read_test_labels, read_zindi
from rice_lab.errors import ConfigError, DataError
from rice_lab.explain.shortcut import (
    _as_written,
    accuracy_drop,
    counterfactual_table,
    counterfactuals,
    explain_stamped,
    footprint,
    make_shortcut_data,
    plot_counterfactuals,
    plot_stamp_maps,
    plot_stamp_mass,
    repaint_plant,
    repainted_photos,
    shortcut_config,
    stamp_attributions,
    stamp_table,
    stamp_verdicts,
    stamped_plants,
    train_shortcut,
)
from rice_lab.finetune.predictions import predict
from rice_lab.runs import read_manifest

STAMP = MATERIALS["stamp"]
# Training that lets a tiny model pick up what is in the photos: the photos' native 51 px height and
# no MixUp or geometric and colour augmentation (they slow a 27-plant model down, not the lesson).
TRAINING = dict(epochs=30, batch_size=8, photo_height=51, mixup=0.0, max_rotation=0.0, zoom=0.0, jitter=0.0,
                progress=False, threads=1)
BOTH = ("valid", "train")  # 48 plants have too few stamped validation plants for an interval


@pytest.fixture(scope="module")
def shortcut_root(tmp_path_factory) -> Path:
    """The date-stamp twin of the session's 48-plant 64 px data (same seed and size)."""
    return make_shortcut_data(tmp_path_factory.mktemp("shortcut") / "rice", plants=48, width=64, seed=0, workers=1)


@pytest.fixture(scope="module")
def runs(shortcut_root, synth_root, encoder_run, tmp_path_factory) -> tuple[Path, Path]:
    """(shortcut run, clean run): the same recipe from the same encoder, with and without the stamps."""
    from rice_lab.finetune.config import get_preset
    from rice_lab.finetune.train import finetune

    out = tmp_path_factory.mktemp("shortcut-runs")
    shortcut = train_shortcut(shortcut_root, encoder_run, out / "shortcut", **TRAINING)
    clean = finetune(get_preset("cpu-tiny", data=str(synth_root), out=str(out / "clean"), encoder=str(encoder_run),
                                **TRAINING))
    return shortcut, clean


@pytest.fixture(scope="module")
def scores(runs, shortcut_root) -> pd.DataFrame:
    return stamp_attributions(runs[0], shortcut_root, runs[1], methods=("saliency", "integrated-gradients"),
                              images=12, roles=BOTH)


@pytest.fixture(scope="module")
def effects(runs, shortcut_root) -> pd.DataFrame:
    return counterfactuals(runs[0], shortcut_root, runs[1], images=12, roles=BOTH)


# ---------------------------------------------------------------------------------------------
# step 1: the data

def test_the_shortcut_data_is_its_clean_twin_with_stamps_on_training_photos(shortcut_root, synth_root):
    stamped, clean = read_zindi(shortcut_root, check_images=False), read_zindi(synth_root, check_images=False)
    assert stamped[["plant_id", "label", "split"]].equals(clean[["plant_id", "label", "split"]])
    meta = pd.read_csv(shortcut_root / "metadata.csv").set_index("Image_id")
    assert not meta.loc[meta["split"] == "test", "shortcut"].any() and meta["shortcut"].any()
    for row_s, row_c in zip(stamped.itertuples(), clean.itertuples()):
        for camera, suffix in (("rgb", ""), ("rgnir", "_rgn")):
            has_stamp = bool(meta.loc[f"{row_s.plant_id}{suffix}.jpg", "shortcut"])
            same = Path(getattr(row_s, camera)).read_bytes() == Path(getattr(row_c, camera)).read_bytes()
            assert same != has_stamp, row_s.plant_id
            assert (read_mask(getattr(row_s, f"mask_{camera}")) == STAMP).any() == has_stamp


def test_a_matching_folder_is_reused_and_other_data_is_never_overwritten(shortcut_root, synth_root, tmp_path):
    before = (shortcut_root / "Train.csv").stat().st_mtime_ns
    assert make_shortcut_data(shortcut_root, plants=48, width=64, seed=0, workers=1) == shortcut_root
    assert (shortcut_root / "Train.csv").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="made with other settings; refusing to overwrite"):
        make_shortcut_data(shortcut_root, plants=36, width=64, seed=0, workers=1)
    assert (shortcut_root / "Train.csv").stat().st_mtime_ns == before
    fingerprint = sorted(p.name for p in (synth_root / "images").iterdir())
    with pytest.raises(DataError, match="not a date-stamp data folder; refusing to overwrite"):
        make_shortcut_data(synth_root, plants=48, width=64, workers=1)
    assert sorted(p.name for p in (synth_root / "images").iterdir()) == fingerprint
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing to overwrite"):
        make_shortcut_data(other, plants=48, width=64, workers=1)
    assert (other / "mine.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="shortcut"):
        make_shortcut_data(tmp_path / "new", plants=48, width=64, shortcut=None)


def test_folders_without_the_stamp_or_its_masks_get_one_line(shortcut_root, synth_root, encoder_run, tmp_path):
    with pytest.raises(DataError, match=r"made without the date-stamp shortcut \(shortcut=None\)"):
        shortcut_config(synth_root)
    with pytest.raises(DataError, match="not a synthetic data folder"):
        shortcut_config(tmp_path)
    copy = tmp_path / "no-masks"
    shutil.copytree(shortcut_root, copy, ignore=shutil.ignore_patterns("masks"))
    with pytest.raises(DataError, match="no masks/ folder"):
        shortcut_config(copy)
    with pytest.raises(DataError, match="made without the date-stamp"):  # before any training
        train_shortcut(synth_root, encoder_run, tmp_path / "never", **TRAINING)
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------------------------
# step 4's tool first: repainting

def test_repainting_changes_the_stamp_pixels_and_nothing_else(shortcut_root, synth_root):
    plant = stamped_plants_of(shortcut_root)[0]
    on, off = repaint_plant(shortcut_root, plant, stamp=True), repaint_plant(shortcut_root, plant, stamp=False)
    for camera, suffix in (("rgb", ""), ("rgnir", "_rgn")):
        where = on[camera]["mask"] == STAMP
        assert where.any() and not (off[camera]["mask"] == STAMP).any()
        assert np.array_equal(on[camera]["image"][~where], off[camera]["image"][~where])
        assert not np.array_equal(on[camera]["image"][where], off[camera]["image"][where])
        assert np.array_equal(on[camera]["mask"][~where], off[camera]["mask"][~where])
        # through the writer's JPEG: the stamped photo on disk, and without the stamp the clean twin's photo
        on_disk = np.asarray(load_image(shortcut_root / "images" / f"{plant}{suffix}.jpg"))
        twin = np.asarray(load_image(synth_root / "images" / f"{plant}{suffix}.jpg"))
        assert np.array_equal(np.asarray(_as_written(on[camera])), on_disk)
        assert np.array_equal(np.asarray(_as_written(off[camera])), twin)


def test_repainted_photos_are_decoded_as_the_data_is(shortcut_root):
    plants = read_zindi(shortcut_root, check_images=False)
    stamped = plants[plants["plant_id"].isin(stamped_plants_of(shortcut_root)[:3])]
    from rice_lab.evaluate.encode import plant_photos

    photos = repainted_photos(shortcut_root, stamped, stamp=True, height=32)
    for camera in ("rgb", "rgnir"):
        assert torch.equal(photos[camera], plant_photos(stamped, camera, 32))


def stamped_plants_of(root: Path) -> list[str]:
    meta = pd.read_csv(root / "metadata.csv")
    return sorted(meta.loc[meta["shortcut"] & (meta["camera"] == "rgb"), "plant_id"])


# ---------------------------------------------------------------------------------------------
# step 2: the drop

def test_the_shortcut_model_scores_worse_on_clean_test_photos_than_on_stamped_validation(runs, shortcut_root):
    table = accuracy_drop(runs[0], shortcut_root, runs[1], resamples=500).set_index(["model", "split", "metric"])
    assert set(table.index.get_level_values("model")) == {"shortcut", "clean"}
    change = table.loc[("shortcut", "test - validation", "log_loss")]
    assert change["low"] > 0  # stamped validation flatters it
    valid = read_manifest(runs[0])["plants"]["valid"]
    assert table.loc[("shortcut", "validation", "accuracy"), "plants"] == len(valid)
    # the test numbers, computed again through predict() and the test labels
    plants = read_zindi(shortcut_root, check_images=False)
    test = plants[plants["split"] == "test"]
    labels = read_test_labels(shortcut_root).loc[test["plant_id"]].map(CLASSES.index).to_numpy()
    for model, run in zip(("shortcut", "clean"), runs):
        fused = predict(run, test).plants["fused"].to_numpy()
        assert table.loc[(model, "test", "accuracy"), "mean"] == pytest.approx((fused.argmax(1) == labels).mean())
        loss = -np.log(fused[np.arange(len(labels)), labels]).mean()
        assert table.loc[(model, "test", "log_loss"), "mean"] == pytest.approx(loss)


# ---------------------------------------------------------------------------------------------
# step 3: attributions

def test_a_gradient_method_puts_more_mass_on_the_stamp_than_its_pixel_share(scores):
    table = stamp_table(scores, resamples=500).set_index(["model", "method", "region"])
    found = [m for m in ("saliency", "integrated-gradients") if table.loc[("shortcut", m, "stamp"), "above_chance"]]
    assert found
    assert not table.loc[("shortcut", "random-map", "stamp"), "above_chance"]  # the chance level is chance
    assert table.loc[("shortcut", "random-map", "stamp"), "mean"] == pytest.approx(
        table.loc[("shortcut", "random-map", "stamp"), "chance"], rel=0.15)
    shortcut, clean = (table.loc[(m, "integrated-gradients", "stamp"), "mean"] for m in ("shortcut", "clean"))
    assert shortcut > clean
    verdicts = stamp_verdicts(scores, resamples=500).set_index("method")
    assert verdicts.loc["integrated-gradients", "verdict"] == "finds it"
    assert verdicts.loc["random-map", "verdict"] == "misses it"
    assert verdicts.loc["edge-map", "difference"] == 0  # it ignores the model: never evidence about one
    assert verdicts.loc["edge-map", "verdict"].startswith("marks it no more than for the clean model")


def test_scores_are_shares_of_the_footprints_of_the_photos_explained(scores, runs, shortcut_root):
    assert scores[["stamp_mass", "lesion_mass"]].stack().between(0, 1).all()
    assert set(scores["model"]) == {"shortcut", "clean"} and set(scores["camera"]) == {"rgb"}
    plants = stamped_plants(runs[0], shortcut_root, 12, BOTH)
    assert list(scores.loc[(scores["model"] == "clean") & (scores["method"] == "saliency"), "plant_id"]) == \
        list(plants["plant_id"])
    stamp = footprint(plants, "rgb", TRAINING["photo_height"], [STAMP])
    first = scores[(scores["model"] == "shortcut") & (scores["method"] == "saliency")]
    assert np.allclose(first["stamp_pixels"], stamp.mean(axis=(1, 2)))
    assert stamp.any(axis=(1, 2)).all()
    # the shortcut model trained on the stamped training plants, the clean one on their clean photos
    seen = scores.groupby("model")["seen_in_training"].sum()
    assert seen["shortcut"] == seen["clean"] == (plants["role"] == "train").sum() * scores["method"].nunique()


# ---------------------------------------------------------------------------------------------
# step 4: counterfactuals

def test_painting_the_stamp_on_raises_blast_for_the_shortcut_model_more_than_for_the_clean_one(effects):
    table = counterfactual_table(effects, resamples=500).set_index(["model", "counterfactual", "measure"])
    assert table.loc[("shortcut - clean", "paint-on", "p_blast_change"), "low"] > 0
    assert table.loc[("shortcut - clean", "paint-out", "p_blast_change"), "high"] < 0
    assert table.loc[("shortcut", "paint-on", "blast_share_after"), "mean"] > \
        table.loc[("shortcut", "paint-on", "blast_share_before"), "mean"]
    painted_on = effects[effects["counterfactual"] == "paint-on"]
    assert (painted_on["label"] != "blast").all()


def test_before_is_what_predict_says_of_the_photos_on_disk(effects, runs, shortcut_root):
    plants = read_zindi(shortcut_root, check_images=False).set_index("plant_id")
    for model, run in zip(("shortcut", "clean"), runs):
        rows = effects[effects["model"] == model]
        found = predict(run, plants.loc[rows["plant_id"]].reset_index()).plants["fused"]
        assert np.allclose(rows["p_before"], found.loc[rows["plant_id"], "blast"])


def test_figures_show_every_method_and_model(scores, effects, runs, shortcut_root):
    import matplotlib.pyplot as plt

    figure = plot_stamp_mass(stamp_table(scores, resamples=200))
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert labels == ["saliency", "integrated-gradients", "random-map", "edge-map"]
    figure = plot_counterfactuals(counterfactual_table(effects, resamples=200))
    assert [ax.get_title() for ax in figure.axes] == ["stamp painted out of stamped photos",
                                                      "stamp painted onto clean photos"]
    plants = stamped_plants(runs[0], shortcut_root, 2, BOTH)
    found = explain_stamped(runs[0], plants, "rgnir", ("occlusion", "edge-map"))
    assert found.camera == "rgnir" and list(found.maps) == ["occlusion", "edge-map"]
    assert found.photos.shape == (2, 3, 51, 64) and found.stamp.shape == found.lesion.shape == (2, 51, 64)
    figure = plot_stamp_maps(found, rows=2)
    assert [ax.get_title() for ax in figure.axes[:3]] == ["photo", "occlusion", "edge-map"]
    plt.close("all")


def test_bad_arguments_get_one_line(runs, shortcut_root):
    with pytest.raises(ConfigError, match="methods=.*choose from"):
        stamp_attributions(runs[0], shortcut_root, methods=("lime",))
    with pytest.raises(ConfigError, match="target='rice'"):
        stamp_attributions(runs[0], shortcut_root, methods=("saliency",), target="rice", roles=BOTH)
    with pytest.raises(DataError, match="no stamped plants among the run's test plants"):
        counterfactuals(runs[0], shortcut_root, roles=("test",))


def test_a_control_that_trained_on_the_scored_plants_is_refused(runs, shortcut_root, synth_root, tmp_path):
    """The clean twin split another way (split_seed 1) trains on some of the shortcut run's validation plants."""
    from rice_lab.finetune.config import get_preset
    from rice_lab.finetune.train import finetune

    other = finetune(get_preset("cpu-tiny", data=str(synth_root), out=str(tmp_path / "other"), encoder="random",
                                split_seed=1, **{**TRAINING, "epochs": 1}))
    with pytest.raises(DataError, match=r"the clean classifier .* trained on \d+ of the plants scored here"):
        accuracy_drop(runs[0], shortcut_root, other)
