"""Self-distillation, the photo-level split of the leakage lesson, and the experiments' tables, on tiny
synthetic data: what each trains on, what each table holds, and that a rerun reuses its runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rice_lab.data.zindi import CAMERAS, CLASSES, read_zindi
from rice_lab.errors import ConfigError
from rice_lab.evaluate.calibration import as_logits, softmax
from rice_lab.finetune import experiments
from rice_lab.finetune.config import get_preset
from rice_lab.finetune.data import PhotoSamples, photo_level_split
from rice_lab.finetune.distill import teacher_targets
from rice_lab.finetune.predictions import predict
from rice_lab.finetune.train import classifier_plants, finetune
from rice_lab.runs import read_manifest, read_metrics

TINY = dict(epochs=2, batch_size=8, photo_height=32, progress=False, threads=1)


def tiny(data, out, encoder, **overrides):
    return get_preset("cpu-tiny", data=str(data), out=str(out), encoder=str(encoder), **{**TINY, **overrides})


@pytest.fixture(scope="module")
def teacher(synth_root, encoder_run, tmp_path_factory) -> Path:
    return finetune(tiny(synth_root, tmp_path_factory.mktemp("teacher") / "t", encoder_run, label_smoothing=0.1))


def _steps_per_epoch(run_dir: Path) -> int:
    train = read_metrics(run_dir).query("kind == 'train'")
    return int(train.groupby("epoch")["step"].count().iloc[0])


def test_a_student_learns_its_teachers_calibrated_photo_probabilities_for_unlabelled_and_test_photos(
        synth_root, encoder_run, teacher):
    config = tiny(synth_root, "unused", encoder_run, teacher=str(teacher), labels_fraction=0.5).resolved()
    plants = classifier_plants(config)
    from rice_lab.data.zindi import data_fingerprint

    students, soft, note = teacher_targets(teacher, plants, CAMERAS, data_fingerprint(plants))
    assert set(students["role"]) == {"train", "unlabelled", "test"}
    assert "valid" not in set(students["role"]) and "test_label" not in students.columns
    found = predict(teacher, students)
    for i, camera in enumerate(CAMERAS):
        raw = found.photos[found.photos["camera"] == camera][list(CLASSES)].to_numpy()
        expected = softmax(as_logits(raw), found.temperatures[camera])
        assert np.allclose(soft[:, i], expected)
    assert np.allclose(soft.sum(-1), 1.0)
    assert note["photos_by_role"]["test"] == 2 * int((students["role"] == "test").sum())


def test_a_student_trains_on_every_photo_its_teacher_labelled_and_records_the_teacher(
        synth_root, encoder_run, teacher, tmp_path):
    student = finetune(tiny(synth_root, tmp_path / "student", encoder_run, teacher=str(teacher)))
    manifest = read_manifest(student)
    assert manifest["teacher"]["run"] == str(teacher.resolve())
    photos = 2 * sum(len(manifest["plants"][role]) for role in ("train", "unlabelled", "test"))
    assert _steps_per_epoch(student) == photos // 8
    assert (student / "classifier.pt").is_file()


def test_a_teacher_validated_on_other_plants_is_refused(synth_root, encoder_run, teacher, tmp_path):
    with pytest.raises(ConfigError, match="validated on other plants"):
        finetune(tiny(synth_root, tmp_path / "s", encoder_run, teacher=str(teacher), split_seed=1))


def test_the_photo_level_split_puts_each_validation_plants_other_photo_in_training(synth_root):
    plants = classifier_plants(tiny(synth_root, "x", "random"))
    valid = plants[plants["role"] == "valid"]
    train = PhotoSamples(plants[plants["role"] == "train"], CAMERAS, 16)
    leaked, held = photo_level_split(train, valid, CAMERAS, 16, seed=0)
    assert len(held) == len(valid) and len(leaked) == len(train) + len(valid)
    cameras_held = [held[i][1].item() for i in range(len(held))]
    assert set(cameras_held) == {0, 1}  # both cameras validate somewhere (seeded draw)
    # every validation plant's two photos: one on each side (matched by pixels)
    held_pixels = {bytes(held[i][0].numpy()) for i in range(len(held))}
    leaked_pixels = {bytes(leaked[i][0].numpy()) for i in range(len(train), len(leaked))}
    both = PhotoSamples(valid, CAMERAS, 16)
    for p in range(len(valid)):
        pair = [bytes(both[2 * p + c][0].numpy()) for c in range(2)]
        assert sorted([pair[0] in held_pixels, pair[1] in held_pixels]) == [False, True]
        assert sorted([pair[0] in leaked_pixels, pair[1] in leaked_pixels]) == [False, True]


def test_mean_ci_is_the_student_t_interval():
    values = np.array([0.61, 0.70, 0.66, 0.58, 0.73])
    mean, low, high = experiments.mean_ci(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(expected)
    assert np.isnan(experiments.mean_ci([0.5])[1])


def test_a_data_folder_without_test_labels_gets_labelled_plants_held_out(synth_root, tmp_path):
    real_like = tmp_path / "real"
    shutil.copytree(synth_root, real_like, ignore=shutil.ignore_patterns("TestLabels.csv", "masks"))
    held = experiments.scoring_data(real_like, tmp_path / "exp")
    plants = read_zindi(held, check_images=False, test_labels=True)
    source = read_zindi(real_like, check_images=False)
    train_ids = set(source.loc[source["split"] == "train", "plant_id"])
    assert set(plants["plant_id"]) == train_ids  # the unlabelled challenge test plants are left out
    test = plants[plants["split"] == "test"]
    assert set(test["test_label"]) == set(CLASSES)
    truth = source.set_index("plant_id")["label"]
    assert (test.set_index("plant_id")["test_label"] == truth.loc[test["plant_id"]]).all()
    assert experiments.held_out_folder(real_like, tmp_path / "exp" / "data") == tmp_path / "exp" / "data"
    experiments.held_out_folder(real_like, tmp_path / "exp" / "data", pct=0.3)  # another split: old one set aside
    assert len(list((tmp_path / "exp").glob("data.stale-*"))) == 1


def test_label_efficiency_writes_its_tables_and_reuses_its_runs(synth_root, encoder_run, tmp_path):
    out = tmp_path / "le"
    base = get_preset("cpu-tiny", **{**TINY, "epochs": 1})
    table = experiments.label_efficiency(synth_root, out, {"swav": str(encoder_run), "random": "random"},
                                         fractions=(0.25, 1.0), seeds=range(2), modes=("probe",), preset=base,
                                         min_steps=4)
    assert len(table) == 2 * 2 * 2
    assert set(table.columns) >= {"encoder", "mode", "fraction", "seed", "labelled_plants", "steps", "accuracy",
                                  "log_loss"}
    small, full = (table[table["fraction"] == f]["labelled_plants"] for f in (0.25, 1.0))
    assert (small < full.to_numpy()).all() and (small >= 2 * len(CLASSES)).all()
    assert (table[table["fraction"] == 0.25]["steps"] >= 4).all()  # min_steps for the small label set
    summary = pd.read_csv(out / "label_efficiency_summary.csv")
    assert len(summary) == 4 and (summary["seeds"] == 2).all()
    assert ((summary["accuracy_low"] <= summary["accuracy"]) & (summary["accuracy"] <= summary["accuracy_high"])).all()
    assert (out / "label_efficiency.png").stat().st_size > 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/classifier.pt")}
    again = experiments.label_efficiency(synth_root, out, {"swav": str(encoder_run), "random": "random"},
                                         fractions=(0.25, 1.0), seeds=range(2), modes=("probe",), preset=base,
                                         min_steps=4)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert np.allclose(again["accuracy"], table["accuracy"])


def test_sensors_leakage_and_self_distillation_tables(synth_root, encoder_run, tmp_path):
    base = get_preset("cpu-tiny", **{**TINY, "epochs": 1})
    sensors = experiments.sensors(synth_root, tmp_path / "s", {"paired": str(encoder_run), "random": "random"},
                                  seeds=range(2), preset=base, resamples=200)
    assert set(sensors["view"]) == {"rgb", "rgnir", "fused"} and len(sensors) == 2 * 2 * 3
    differences = pd.read_csv(tmp_path / "s" / "sensors_differences.csv")
    assert len(differences) == 3 * 2 and (differences["low"] <= differences["high"]).all()
    leak = experiments.leakage(synth_root, tmp_path / "l", str(encoder_run), seeds=range(1), preset=base)
    assert list(leak["split"]) == ["plant", "photo"]
    assert np.allclose(leak["optimism"], leak["test_log_loss"] - leak["valid_log_loss"])
    photo_run = tmp_path / "l" / "runs" / "photo-split-s0"
    assert read_manifest(photo_run)["config"]["photo_split"] is True
    distil = experiments.self_distillation(synth_root, tmp_path / "d", str(encoder_run), seeds=range(1),
                                           smoothing=(0.1,), preset=base)
    assert np.allclose(distil["change"], distil["student_log_loss"] - distil["teacher_log_loss"])
    assert (tmp_path / "d" / "self_distillation_summary.csv").is_file()


@pytest.mark.parametrize("photos, batch, epochs, min_steps", [(34, 32, 40, 200), (672, 32, 40, 200), (5, 8, 2, 0),
                                                              (100, 32, 43, 500), (17, 4, 3, 1)])
def test_an_epoch_repeats_its_photos_just_enough_for_min_steps_and_one_batch(photos, batch, epochs, min_steps):
    from rice_lab.finetune.train import epoch_repeats

    r = epoch_repeats(photos, batch, epochs, min_steps)
    steps = lambda repeats: (photos * repeats // batch) * epochs  # noqa: E731 - drop_last, as in training
    assert steps(r) >= max(min_steps, epochs) and (r == 1 or steps(r - 1) < max(min_steps, epochs))


def test_the_frozen_probe_fits_each_label_subset_the_runs_train_on_and_fuses_both_cameras(synth_root, encoder_run):
    from rice_lab.evaluate.encode import encode, plant_photos
    from rice_lab.evaluate.probes import linear_probabilities, probe_size
    from rice_lab.finetune.data import assign_roles
    from rice_lab.models.encoders import load_encoder

    encoder = load_encoder(encoder_run)
    table = experiments.frozen_probe(synth_root, {"swav": encoder}, fractions=(0.25, 1.0), seeds=(0, 1))
    assert len(table) == 4 and set(table["mode"]) == {"frozen linear probe"}
    plants = read_zindi(synth_root)
    for _, row in table.iterrows():
        roles = assign_roles(plants, 0.2, 0, row["fraction"], int(row["seed"]))
        assert row["labelled_plants"] == (roles["role"] == "train").sum()
    full = table.set_index(["fraction", "seed"])
    assert full.loc[(0.25, 0), "labelled_plants"] < full.loc[(1.0, 0), "labelled_plants"]
    # the same numbers by hand for one subset: each camera's probe, probabilities averaged, test plants scored
    test, labels = experiments.test_truth(synth_root)
    roles = assign_roles(plants, 0.2, 0, 0.25, 1)
    train = (roles["role"] == "train").to_numpy()
    at_test = plants["plant_id"].isin(test["plant_id"]).to_numpy()
    order = pd.Index(plants.loc[at_test, "plant_id"]).get_indexer(test["plant_id"])
    codes = np.array([CLASSES.index(c) for c in roles.loc[train, "label"]])
    size = probe_size(encoder)
    probs = []
    for camera in CAMERAS:
        features = encode(encoder, plant_photos(plants, camera, size), camera, height=size)
        probs.append(linear_probabilities(features[train], codes, features[at_test][order], len(CLASSES)))
    fused = np.mean(probs, axis=0)
    assert full.loc[(0.25, 1), "accuracy"] == pytest.approx((fused.argmax(1) == labels).mean())
    assert full.loc[(0.25, 1), "log_loss"] == pytest.approx(-np.log(fused[np.arange(len(labels)), labels]).mean())
