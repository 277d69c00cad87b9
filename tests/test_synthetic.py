"""The synthetic multi-sensor generator: layout, determinism, masks that match images, class physics."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import binary_dilation

from rice_lab.data import load_image, read_mask, read_zindi, scan_zindi
from rice_lab.data.synthetic import (
    CONFIG_FILE,
    LESION_CODES,
    MATERIALS,
    SYMPTOM_CODES,
    SynthConfig,
    difficulty_knobs,
    draw_scene,
    ensure_synthetic,
    is_complete,
    lesion_mask,
    plan_plants,
    synthesize,
)
from rice_lab.errors import ConfigError, DataError


def folder_digest(root: Path) -> str:
    """One hash over every file's name and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def metadata(synth_root: Path) -> pd.DataFrame:
    return pd.read_csv(synth_root / "metadata.csv")


# --- layout and reader ---------------------------------------------------------------------------

def test_reader_reads_the_folder_without_problems(synth_root):
    report = scan_zindi(synth_root)
    assert report.problems == [] and report.notes == [] and report.warnings == []
    assert len(report.plants) == 48
    assert set(report.image_sizes) == {(64, 51)}
    plants = read_zindi(synth_root)
    # training labels only: the test labels (TestLabels.csv) come on request, in their own column
    assert plants["label"].notna().tolist() == (plants["split"] == "train").tolist()
    assert "test_label" not in plants
    assert {"mask_rgb", "mask_rgnir"} <= set(plants.columns)
    labelled = read_zindi(synth_root, test_labels=True)
    assert labelled["test_label"].notna().tolist() == (labelled["split"] == "test").tolist()
    truth = pd.read_csv(synth_root / "metadata.csv").drop_duplicates("plant_id").set_index("plant_id")
    test = labelled[labelled["split"] == "test"].set_index("plant_id")
    assert (test["test_label"] == truth.loc[test.index, "true_label"]).all()


def test_zindi_csv_layout(synth_root):
    train, test = pd.read_csv(synth_root / "Train.csv"), pd.read_csv(synth_root / "Test.csv")
    submission = pd.read_csv(synth_root / "SampleSubmission.csv")
    labels = pd.read_csv(synth_root / "TestLabels.csv")
    assert list(train.columns) == ["Image_id", "Label"] and list(test.columns) == ["Image_id"]
    assert list(submission.columns) == ["Image_id", "blast", "brown", "healthy"]
    assert len(train) % 2 == 0 and len(test) == len(labels) == 2 * len(submission)
    assert (len(train) + len(test)) // 2 == 48 and len(test) // 2 == round(48 * 0.3)
    assert set(submission["Image_id"]) == {i for i in test["Image_id"] if not i.endswith("_rgn.jpg")}
    assert np.allclose(submission[["blast", "brown", "healthy"]].sum(axis=1), 1.0)
    ids = {i.removesuffix("_rgn.jpg").removesuffix(".jpg") for i in pd.concat([train, test])["Image_id"]}
    assert len(ids) == 48 and all(re.fullmatch(r"id_[a-z0-9]{10}", i) for i in ids)
    for image_id in pd.concat([train, test])["Image_id"]:
        assert (synth_root / "images" / image_id).is_file()
        assert (synth_root / "masks" / f"{Path(image_id).stem}.png").is_file()


def test_metadata_has_one_row_per_image(synth_root, metadata):
    assert len(metadata) == 96 and metadata["Image_id"].is_unique
    assert set(metadata["camera"]) == {"rgb", "rgnir"}
    expected = {"plant_id", "split", "label", "true_label", "lesion_count", "lesion_area_fraction",
                "camera_offset_dx", "camera_offset_dy", "nuisances", "shortcut"}
    assert expected <= set(metadata.columns)


# --- determinism ---------------------------------------------------------------------------------

def test_same_seed_same_bytes_whatever_the_workers_and_other_seed_differs(tmp_path):
    config = SynthConfig(plants=10, width=40, seed=3, workers=1)
    one = folder_digest(synthesize(tmp_path / "one", config))
    two = folder_digest(synthesize(tmp_path / "two", SynthConfig(plants=10, width=40, seed=3, workers=2)))
    again = folder_digest(synthesize(tmp_path / "again", config))
    other = folder_digest(synthesize(tmp_path / "other", SynthConfig(plants=10, width=40, seed=4, workers=1)))
    assert one == two == again
    assert other != one


# --- masks against images ------------------------------------------------------------------------

def test_masks_have_the_shape_of_their_images(synth_root):
    plants = read_zindi(synth_root)
    for row in plants.itertuples():
        for image, mask in ((row.rgb, row.mask_rgb), (row.rgnir, row.mask_rgnir)):
            assert read_mask(mask).shape == np.asarray(load_image(image)).shape[:2]


def test_lesions_are_dark_in_the_nir_channel_where_the_mask_says(synth_root):
    plants = read_zindi(synth_root)
    darker, compared = 0, 0
    for row in plants[plants["label"] != "healthy"].itertuples():
        nir = np.asarray(load_image(row.rgnir))[..., 2].astype(float)
        mask = read_mask(row.mask_rgnir)
        lesion = lesion_mask(mask)
        # Compare with the healthy leaf just around the lesions: shadows and exposure vary across an image.
        ring = binary_dilation(lesion, iterations=4) & ~binary_dilation(lesion, iterations=1) \
            & (mask == MATERIALS["leaf"])
        if lesion.sum() >= 3 and ring.sum() >= 10:
            compared += 1
            darker += nir[lesion].mean() < nir[ring].mean()
    assert compared >= 10
    assert darker / compared >= 0.9


def _warp_rgb_mask(mask: np.ndarray, meta: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Where each R-G-NIR pixel looks in the RGB frame (using the recorded offset): codes and validity."""
    height, width = mask.shape
    qy, qx = np.mgrid[0:height, 0:width] + 0.5
    theta = math.radians(meta.camera_rotation_deg)
    rx, ry = qx - width / 2 - meta.camera_offset_dx, qy - height / 2 - meta.camera_offset_dy
    px = width / 2 + (math.cos(theta) * rx + math.sin(theta) * ry) / meta.camera_scale
    py = height / 2 + (-math.sin(theta) * rx + math.cos(theta) * ry) / meta.camera_scale
    col, row = np.floor(px).astype(int), np.floor(py).astype(int)
    valid = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return mask[row.clip(0, height - 1), col.clip(0, width - 1)], valid


def test_recorded_camera_offset_maps_the_rgb_mask_onto_the_rgnir_mask(synth_root, metadata):
    agreements, improved, moved = [], 0, 0
    for plant_id, rows in metadata.groupby("plant_id"):
        rgb, rgnir = (rows[rows["camera"] == c].iloc[0] for c in ("rgb", "rgnir"))
        assert (rgb.camera_offset_dx, rgb.camera_offset_dy, rgb.camera_scale) == (0, 0, 1)
        mask_rgb = read_mask(synth_root / "masks" / f"{plant_id}.png") == MATERIALS["leaf"]
        mask_rgnir = read_mask(synth_root / "masks" / f"{plant_id}_rgn.png") == MATERIALS["leaf"]
        warped, valid = _warp_rgb_mask(mask_rgb, rgnir)
        agree = (warped == mask_rgnir)[valid].mean()
        # Edges disagree by up to a pixel (nearest-neighbour sampling), so allow a few percent.
        assert agree > 0.9, f"{plant_id}: warped RGB mask agrees with the RGNIR mask on only {agree:.1%}"
        agreements.append(agree)
        if math.hypot(rgnir.camera_offset_dx, rgnir.camera_offset_dy) >= 2:
            moved += 1
            improved += agree > (mask_rgb == mask_rgnir).mean()  # the offset explains the difference
    assert np.mean(agreements) > 0.97
    assert moved >= 30 and improved == moved


# --- classes ---------------------------------------------------------------------------------------

def test_healthy_plants_have_no_symptoms_and_diseased_ones_do(synth_root, metadata):
    for row in metadata.itertuples():
        codes = set(np.unique(read_mask(synth_root / "masks" / f"{Path(row.Image_id).stem}.png")).tolist())
        if row.true_label == "healthy":
            assert not codes & set(SYMPTOM_CODES), row.Image_id
    diseased = metadata[(metadata["true_label"] != "healthy") & (metadata["camera"] == "rgb")]
    assert (diseased["lesion_count"] > 0).mean() >= 0.9


def test_brown_spot_has_more_and_smaller_lesions_than_blast(metadata):
    visible = metadata[metadata["lesion_count"] > 0]
    per_class = visible.groupby("true_label")
    count = per_class["lesion_count"].mean()
    area_per_lesion = (visible["lesion_area_fraction"] / visible["lesion_count"]).groupby(visible["true_label"]).mean()
    assert count["brown"] > 2 * count["blast"]
    assert area_per_lesion["brown"] < area_per_lesion["blast"] / 2


def test_label_noise_flips_the_requested_fraction_of_train_labels_only():
    tasks = plan_plants(SynthConfig(plants=500, label_noise=0.2, seed=5))
    train = [t for t in tasks if t.split == "train"]
    flipped = [t for t in train if t.label != t.true_label]
    assert len(flipped) == round(0.2 * len(train))
    assert all(t.label == t.true_label for t in tasks if t.split == "test")
    assert all(t.label in ("blast", "brown", "healthy") for t in tasks)


def test_class_balance_and_stratified_split():
    tasks = plan_plants(SynthConfig(plants=400, class_balance=(2, 1, 1), test_fraction=0.25))
    labels = pd.Series([t.true_label for t in tasks])
    assert labels.value_counts().to_dict() == {"blast": 200, "brown": 100, "healthy": 100}
    test = pd.Series([t.true_label for t in tasks if t.split == "test"])
    assert test.value_counts().to_dict() == {"blast": 50, "brown": 25, "healthy": 25}


def test_noise_and_shortcut_written_to_files(tmp_path):
    root = synthesize(tmp_path / "rice", SynthConfig(plants=40, width=40, seed=2, label_noise=0.25,
                                                     shortcut="date-stamp", workers=1))
    meta = pd.read_csv(root / "metadata.csv")
    train_csv = pd.read_csv(root / "Train.csv").set_index("Image_id")["Label"]
    train_meta = meta[meta["split"] == "train"].set_index("Image_id")
    assert (train_csv.loc[train_meta.index] == train_meta["label"]).all()
    assert train_meta["label_flipped"].sum() == 2 * round(0.25 * len(train_meta) / 2)
    assert (train_meta["label_flipped"] == (train_meta["label"] != train_meta["true_label"])).all()
    test_labels = pd.read_csv(root / "TestLabels.csv").set_index("Image_id")["Label"]
    test_meta = meta[meta["split"] == "test"].set_index("Image_id")
    assert (test_labels.loc[test_meta.index] == test_meta["true_label"]).all()
    stamped = set()
    for row in meta.itertuples():
        has_stamp = (read_mask(root / "masks" / f"{Path(row.Image_id).stem}.png") == MATERIALS["stamp"]).any()
        assert has_stamp == row.shortcut, row.Image_id
        if has_stamp:
            stamped.add(row.plant_id)
    assert stamped and not stamped & set(meta.loc[meta["split"] == "test", "plant_id"])
    assert read_zindi(root)["plant_id"].nunique() == 40


def test_shortcut_follows_the_class_in_training_only():
    tasks = plan_plants(SynthConfig(plants=900, shortcut="date-stamp"))
    rate = pd.DataFrame([(t.true_label, t.stamp) for t in tasks if t.split == "train"]).groupby(0)[1].mean()
    assert rate["blast"] > 0.6 and rate["brown"] < 0.2 and rate["healthy"] < 0.2
    assert not any(t.stamp for t in tasks if t.split == "test")
    assert not any(t.stamp for t in plan_plants(SynthConfig(plants=900)))


def test_lesion_mask_selects_necrotic_codes():
    mask = np.array([[c for c in MATERIALS.values()]], dtype=np.uint8)
    assert mask[lesion_mask(mask)].tolist() == sorted(LESION_CODES)


# --- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("plants", 1), ("plants", 2.5), ("width", 8), ("width", True), ("seed", -1), ("test_fraction", 1.0),
    ("test_fraction", -0.1), ("difficulty", 1.5), ("difficulty", float("nan")), ("label_noise", 2),
    ("class_balance", (1, 1)), ("class_balance", (0, 0, 0)), ("class_balance", (1, -1, 1)),
    ("shortcut", "watermark"), ("workers", 0),
])
def test_bad_config_values_raise_config_error_naming_them(field, value):
    with pytest.raises(ConfigError, match=f"SynthConfig.{field}="):
        SynthConfig(**{field: value})


def test_ensure_synthetic_reuses_then_regenerates(tmp_path):
    config = SynthConfig(plants=6, width=32, workers=1)
    root = ensure_synthetic(tmp_path / "rice", config)
    marker = (root / "metadata.csv").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path / "rice", SynthConfig(plants=6, width=32, workers=2)) == root
    assert (root / "metadata.csv").stat().st_mtime_ns == marker  # workers do not change the bytes
    ensure_synthetic(root, SynthConfig(plants=8, width=32, workers=1))
    assert len(read_zindi(root)) == 8
    (root / ".complete").unlink()  # an unfinished folder is regenerated
    ensure_synthetic(root, SynthConfig(plants=8, width=32, workers=1))
    assert (root / ".complete").is_file()


def test_synthesize_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic dataset folder"):
        synthesize(tmp_path / "mine", SynthConfig(plants=4, width=32, workers=1))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_width_names_the_image_width_and_the_height_keeps_the_photos_5_to_4(tmp_path):
    config = SynthConfig(plants=4, width=60, workers=1)
    assert (config.width, config.height) == (60, 48)
    plants = read_zindi(synthesize(tmp_path / "rice", config))
    assert load_image(plants.loc[0, "rgb"]).size == (60, 48)
    assert "width" in config.output_settings() and "size" not in config.output_settings()


def test_a_folder_written_before_the_rename_is_still_complete(tmp_path):
    # Its settings file says "size" and knows nothing of same_lesion_colours; its bytes are today's.
    config = SynthConfig(plants=4, width=32, workers=1)
    root = ensure_synthetic(tmp_path / "rice", config)
    settings = json.loads((root / CONFIG_FILE).read_text())
    settings["size"] = settings.pop("width")
    del settings["same_lesion_colours"]
    (root / CONFIG_FILE).write_text(json.dumps(settings))
    assert is_complete(root, config)
    assert not is_complete(root, SynthConfig(plants=4, width=40, workers=1))
    assert not is_complete(root, SynthConfig(plants=4, width=32, same_lesion_colours=True, workers=1))


# --- the same-lesion-colours variant -------------------------------------------------------------

def lesions_by_kind(same_lesion_colours: bool, plants: int = 120) -> pd.DataFrame:
    """Every lesion of ``plants`` drawn scenes (no pixels), with its kind and colour settings."""
    knobs, rows = difficulty_knobs(0.5), []
    for i in range(plants):
        rng = np.random.default_rng(i)
        shared = np.random.default_rng(10_000 + i) if same_lesion_colours else None
        scene = draw_scene(rng, ("blast", "brown")[i % 2], 0.8, knobs, shared)
        rows += [{"kind": l.kind, "grey": l.centre_material == "necrotic_grey", "centre": l.centre > 0,
                  "halo": l.halo, "strength": l.halo_strength, "length": l.a} for l in scene.lesions]
    return pd.DataFrame(rows)


def test_shared_colours_give_both_diseases_one_colour_recipe_and_keep_their_shapes():
    default, shared = lesions_by_kind(False).groupby("kind"), lesions_by_kind(True).groupby("kind")
    # by default the colours tell the diseases apart: grey blast centres, strong wide brown-spot halos
    assert default["grey"].mean().to_dict() == {"blast": 1.0, "brown": 0.0}
    assert default["strength"].mean()["brown"] > default["strength"].mean()["blast"] + 0.3
    assert default["halo"].min()["brown"] > default["halo"].max()["blast"]
    # with one recipe they do not (each mean within a few of its standard errors of the other's) ...
    for column in ("grey", "centre", "halo", "strength"):
        means, errors = shared[column].mean(), shared[column].std() / np.sqrt(shared.size())
        assert abs(means["blast"] - means["brown"]) < 4 * np.hypot(*errors), column
    # ... while sizes still do: blast spots are several times longer
    assert shared["length"].mean()["blast"] > 2.5 * shared["length"].mean()["brown"]


def test_shared_colours_change_the_lesions_and_nothing_else(tmp_path):
    default = synthesize(tmp_path / "default", SynthConfig(plants=9, width=48, seed=4, workers=1))
    variant = synthesize(tmp_path / "variant", SynthConfig(plants=9, width=48, seed=4, workers=1,
                                                           same_lesion_colours=True))
    meta, other = pd.read_csv(default / "metadata.csv"), pd.read_csv(variant / "metadata.csv")
    # the same plants, cameras, nuisances and lesions (count and area); only the halos, which cover
    # leaf, have another extent
    changed = [c for c in meta.columns if not meta[c].equals(other[c])]
    assert changed == ["halo_area_fraction", "leaf_area_fraction"]
    for row in meta.itertuples():
        same = (default / "images" / row.Image_id).read_bytes() == (variant / "images" / row.Image_id).read_bytes()
        assert same == (row.true_label == "healthy"), row.Image_id
