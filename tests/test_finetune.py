"""finetune() end to end on tiny synthetic data: what each mode trains, the kept epoch, resume,
--if-needed, predictions and their fusion arithmetic, TTA and temperature on validation plants only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback

from rice_lab.data.zindi import CAMERAS, CLASSES, read_zindi
from rice_lab.errors import CheckpointError, ConfigError, DataError
from rice_lab.evaluate.calibration import as_logits, fit_temperature, log_loss, softmax
from rice_lab.finetune.config import get_preset
from rice_lab.finetune.predictions import FUSED, FUSED_LOGITS, check_plants, predict
from rice_lab.finetune.train import cached_finetune, finetune
from rice_lab.runs import read_metrics

# 2 epochs of 3 steps (24 photos of 12 training plants... at batch 8), 32 px photos.
TINY = dict(epochs=2, batch_size=8, photo_height=32, progress=False, threads=1)


def tiny(data, out, encoder, **overrides):
    return get_preset("cpu-tiny", data=str(data), out=str(out), encoder=str(encoder), **{**TINY, **overrides})


@pytest.fixture(scope="module")
def full_run(synth_root, encoder_run, tmp_path_factory) -> Path:
    return finetune(tiny(synth_root, tmp_path_factory.mktemp("ft") / "full", encoder_run))


class Watch(Callback):
    """Records, per fit, each group's largest lr, which body parameters train and the body's BN modes."""

    order = 100

    def __init__(self):
        self.fits = []

    def before_fit(self):
        self.fits.append({"max_lr": [0.0, 0.0], "body_grad": {p.requires_grad for p in self.model.body.parameters()},
                          "body_bn_training": set()})

    def before_step(self):
        fit = self.fits[-1]
        fit["max_lr"] = [max(m, h["lr"]) for m, h in zip(fit["max_lr"], self.opt.hypers)]
        fit["body_bn_training"] |= {m.training for m in self.model.body.modules()
                                    if isinstance(m, torch.nn.BatchNorm2d)}


class StopAfter(Callback):
    """Interrupts training once epoch ``epoch`` (of the current fit) has been saved."""

    order = 100

    def __init__(self, fit_index: int, epoch: int):
        self.fit_index, self.stop_epoch, self.fits = fit_index, epoch, -1

    def before_fit(self):
        self.fits += 1

    def after_epoch(self):
        if self.fits == self.fit_index and self.learn.epoch == self.stop_epoch:
            raise KeyboardInterrupt


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "classifier.pt", weights_only=True)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_records_plants_encoder_and_kept_epoch(full_run, encoder_run, synth_root):
    manifest = json.loads((full_run / "manifest.json").read_text())
    assert manifest["kind"] == "finetune" and manifest["seed"] == 0 and manifest["format"] == 2
    assert manifest["encoder_start"]["run"] == str(encoder_run.resolve())
    plants = read_zindi(synth_root)
    roles = manifest["plants"]
    train, valid, test = set(roles["train"]), set(roles["valid"]), set(roles["test"])
    assert not (train & valid or train & test or valid & test)
    assert train | valid | test == set(plants["plant_id"])
    assert test == set(plants.loc[plants["split"] == "test", "plant_id"])
    # the SwAV run pre-trained on the test plants' photos (use_test): recorded, not hidden
    assert set(manifest["encoder_start"]["pretrained_on"]["test_plants"]) == test
    metrics = read_metrics(full_run)
    fused = metrics[metrics["kind"] == "valid-fused-log-loss"]
    assert list(fused["epoch"]) == [0, 1]
    kept = torch.load(full_run / "classifier.pt", weights_only=True)
    assert kept["kept_epoch"] == int(fused["epoch"].iloc[fused["loss"].argmin()]) + 1
    assert kept["valid_fused_log_loss"] == pytest.approx(fused["loss"].min(), abs=1e-6)
    assert kept["cameras"] == list(CAMERAS) and kept["classes"] == list(CLASSES)
    readable = json.loads((full_run / "calibration.json").read_text())
    assert readable["temperatures"] == kept["temperatures"] and readable["tta"] == kept["tta"]


def test_probe_freezes_the_body_and_its_batch_norm_statistics(synth_root, encoder_run, tmp_path):
    watch = Watch()
    run = finetune(tiny(synth_root, tmp_path / "probe", encoder_run, mode="probe", epochs=1), callbacks=[watch])
    encoder = torch.load(encoder_run / "encoder.pt", weights_only=True)["encoder"]
    body = {k[len("body."):]: v for k, v in weights(run).items() if k.startswith("body.")}
    assert body.keys() <= encoder.keys() and body
    for name, value in body.items():  # weights, BN affine parameters and running statistics alike
        assert torch.equal(value, encoder[name]), name
    assert watch.fits[0]["body_grad"] == {False} and watch.fits[0]["body_bn_training"] == {False}


def test_full_trains_everything_at_one_rate(synth_root, encoder_run, tmp_path):
    watch = Watch()
    run = finetune(tiny(synth_root, tmp_path / "full", encoder_run, epochs=1), callbacks=[watch])
    (fit,) = watch.fits
    assert fit["body_grad"] == {True} and fit["body_bn_training"] == {True}
    assert fit["max_lr"][0] == pytest.approx(fit["max_lr"][1])
    encoder = torch.load(encoder_run / "encoder.pt", weights_only=True)["encoder"]
    assert not torch.equal(weights(run)["body.0.0.weight"], encoder["0.0.weight"])


def test_discriminative_trains_the_head_first_then_all_with_lower_body_rates(synth_root, encoder_run, tmp_path):
    watch = Watch()
    finetune(tiny(synth_root, tmp_path / "disc", encoder_run, mode="discriminative", head_epochs=1, epochs=1,
                  body_lr_mult=0.1), callbacks=[watch])
    head_only, everything = watch.fits
    assert head_only["body_grad"] == {False} and head_only["body_bn_training"] == {False}
    assert everything["body_grad"] == {True} and everything["body_bn_training"] == {True}
    body_lr, head_lr = everything["max_lr"]
    assert body_lr == pytest.approx(0.1 * head_lr, rel=0.05)


# full: cut after its first epoch; discriminative: at the end of the head-only phase, and mid-way
# through the unfrozen phase (whose optimiser state must come back).
@pytest.mark.parametrize("mode, stop_fit, stop_epoch", [("full", 0, 0), ("discriminative", 0, 0),
                                                        ("discriminative", 1, 0)])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(synth_root, encoder_run, tmp_path, mode,
                                                                 stop_fit, stop_epoch):
    extra = dict(mode=mode, head_epochs=1, epochs=2) if mode == "discriminative" else {}
    straight = finetune(tiny(synth_root, tmp_path / "straight", encoder_run, **extra))
    config = tiny(synth_root, tmp_path / "cut", encoder_run, **extra)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, callbacks=[StopAfter(stop_fit, stop_epoch)])
    assert not (tmp_path / "cut" / "classifier.pt").exists()
    with pytest.raises(CheckpointError, match="--resume"):
        finetune(config)  # never over an existing run without being asked
    resumed = cached_finetune(config)  # --if-needed: a matching unfinished run is resumed
    assert same_weights(weights(straight), weights(resumed))  # the kept epoch
    last = lambda run: torch.load(run / "last.pt", weights_only=True)["model"]  # noqa: E731
    assert same_weights(last(straight), last(resumed))  # and the final one
    rows = lambda run: read_metrics(run).to_csv(index=False)  # noqa: E731
    assert rows(straight) == rows(resumed)


def test_a_random_start_is_drawn_from_the_run_seed_not_from_the_process(synth_root, tmp_path):
    """torch seeds its global generator differently in every fresh process; the same config and seed
    must still give the same weights (a random-init body once drew from whatever state it found)."""
    runs = []
    for process_seed, name in ((1, "a"), (2, "b")):
        torch.manual_seed(process_seed)  # what a fresh process might start from
        runs.append(finetune(tiny(synth_root, tmp_path / name, "random", epochs=1)))
    assert same_weights(weights(runs[0]), weights(runs[1]))
    other = finetune(tiny(synth_root, tmp_path / "seed-1", "random", epochs=1, seed=1))
    assert not same_weights(weights(runs[0]), weights(other))


def test_if_needed_reuses_a_finished_run_and_sets_a_changed_one_aside(full_run, synth_root, encoder_run, tmp_path):
    out = tmp_path / "cached"
    shutil.copytree(full_run, out)
    before = (out / "classifier.pt").stat().st_mtime_ns
    assert cached_finetune(tiny(synth_root, out, encoder_run, threads=2)) == out.resolve()  # threads: result-free
    assert (out / "classifier.pt").stat().st_mtime_ns == before
    cached_finetune(tiny(synth_root, out, encoder_run, epochs=1))
    stale = [p for p in tmp_path.iterdir() if p.name.startswith("cached.stale-")]
    assert len(stale) == 1 and (stale[0] / "classifier.pt").stat().st_mtime_ns == before
    assert json.loads((out / "manifest.json").read_text())["config"]["epochs"] == 1


def test_predictions_fuse_the_two_cameras_as_documented(full_run, synth_root):
    plants = read_zindi(synth_root)
    test = plants[plants["split"] == "test"]
    found = predict(full_run, test)
    assert len(found.photos) == 2 * len(test) and list(found.photos["camera"][:2]) == list(CAMERAS)
    per_photo = found.photos[list(CLASSES)].to_numpy().reshape(len(test), 2, 3)
    assert np.allclose(found.raw[FUSED].to_numpy(), per_photo.mean(1))
    assert np.allclose(found.raw["rgb"].to_numpy(), per_photo[:, 0])
    assert np.allclose(found.raw[FUSED_LOGITS].to_numpy(), softmax(np.log(per_photo).mean(1)))
    for view, raw in found.raw.items():
        expected = softmax(as_logits(raw.to_numpy()), found.temperatures[view])
        assert np.allclose(found.plants[view].to_numpy(), expected)
        assert np.allclose(found.plants[view].sum(axis=1), 1.0)
        assert list(found.plants[view].index) == list(test["plant_id"])


def test_tta_and_temperature_are_decided_on_validation_plants(full_run, synth_root, encoder_run, tmp_path):
    kept = torch.load(full_run / "classifier.pt", weights_only=True)
    losses = kept["tta_valid_fused_log_loss"]
    assert kept["tta"] == (losses["flips"] < losses["plain"])
    plants = read_zindi(synth_root)
    valid = plants[plants["plant_id"].isin(json.loads((full_run / "manifest.json").read_text())["plants"]["valid"])]
    labels = np.array([CLASSES.index(c) for c in valid["label"]])
    fused = predict(full_run, valid, calibrated=False).raw[FUSED].to_numpy()
    assert log_loss(labels, fused) == pytest.approx(losses["flips" if kept["tta"] else "plain"])
    assert kept["temperatures"][FUSED] == pytest.approx(fit_temperature(labels, as_logits(fused)), rel=1e-4)
    # Without the test labels on disk, the same run comes out: nothing in training saw them.
    blind = tmp_path / "blind"
    shutil.copytree(synth_root, blind)
    (blind / "TestLabels.csv").unlink()
    again = finetune(tiny(blind, tmp_path / "again", encoder_run))
    again_kept = torch.load(again / "classifier.pt", weights_only=True)
    assert same_weights(weights(full_run), weights(again))
    assert again_kept["temperatures"] == kept["temperatures"] and again_kept["tta"] == kept["tta"]


def test_predict_checks_the_cameras_the_model_was_trained_on(full_run, synth_root):
    plants = read_zindi(synth_root)
    meta = {"classes": list(CLASSES), "cameras": ["rgb", "rgnir"]}
    with pytest.raises(DataError, match="rgnir"):
        check_plants(plants.drop(columns="rgnir"), meta)
    with pytest.raises(DataError, match="classes"):
        check_plants(plants, {**meta, "classes": ["a", "b", "c"]})


def test_configs_are_checked():
    with pytest.raises(ConfigError, match="mode"):
        get_preset("cpu-tiny", mode="linear").validate()
    with pytest.raises(ConfigError, match="preset"):
        get_preset("gpu-nonsense")
    with pytest.raises(ConfigError, match="pretrained"):
        get_preset("cpu-tiny", encoder="runs/x", pretrained=True).validate()
    assert get_preset("gpu-paper").arch == "xresnet34" and get_preset("gpu-paper").head == "original"


def test_label_smoothing_and_mixup_change_the_training_loss(synth_root, encoder_run, tmp_path):
    def first_losses(name, **options):
        run = finetune(tiny(synth_root, tmp_path / name, encoder_run, epochs=1, **options))
        metrics = read_metrics(run)
        return metrics[metrics["kind"] == "train"]["loss"].to_numpy()

    plain = first_losses("plain", mixup=0.0, label_smoothing=0.0)
    smoothed = first_losses("smoothed", mixup=0.0, label_smoothing=0.3)
    mixed = first_losses("mixed", mixup=0.4, label_smoothing=0.0)
    # Same seed, same first batch and weights: only the loss differs at step 1.
    assert smoothed[0] != pytest.approx(plain[0], abs=1e-4)
    assert mixed[0] != pytest.approx(plain[0], abs=1e-4)
    # Smoothing the targets of an untrained (near-uniform) model changes its loss only a little.
    assert abs(smoothed[0] - plain[0]) < 0.5


def test_a_one_camera_model_trains_and_predicts_that_camera_only(synth_root, encoder_run, tmp_path):
    run = finetune(tiny(synth_root, tmp_path / "rgb", encoder_run, epochs=1, cameras="rgb"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["cameras"] == ["rgb"]
    plants = read_zindi(synth_root)
    test = plants[plants["split"] == "test"]
    found = predict(run, test)
    assert list(found.photos["camera"].unique()) == ["rgb"] and len(found.photos) == len(test)
    assert set(found.raw) == {"rgb", FUSED, FUSED_LOGITS}
    assert np.allclose(found.raw[FUSED].to_numpy(), found.raw["rgb"].to_numpy())
    with pytest.raises(DataError, match="rgb"):
        predict(run, test.drop(columns="rgb"))
