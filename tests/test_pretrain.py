"""pretrain() end to end on tiny synthetic data: run directory, resume after SIGKILL, NaN, errors, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rice_lab.cli import main
from rice_lab.errors import ConfigError, DataError, TrainingError
from rice_lab.presets import get_preset

# 2 epochs x 5 steps of 8 plants at 32 px; the queue (32 embeddings) fills and is used in epoch 2.
TINY = dict(epochs=2, batch_size=8, size=32, progress=False, checkpoint_every=2, resume_every=1,
            threads=1)
CLI_TINY = ["--preset", "cpu-tiny", "--epochs", "2", "--batch-size", "8", "--threads", "1", "--no-progress",
            "--checkpoint-every", "2", "--resume-every", "1"]


def tiny(data: Path, out: Path, **overrides):
    return get_preset("cpu-tiny", data=str(data), out=str(out), **{**TINY, **overrides})


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rice_lab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def encoder_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "encoder.pt", weights_only=False)["encoder"]


@pytest.fixture(scope="module")
def finished_run(synth_root, tmp_path_factory) -> Path:
    """One uninterrupted CLI run, shared by the tests below."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY)
    assert result.returncode == 0, result.stderr
    return out


def test_run_directory_contents(finished_run):
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["config"]["encoder"] == "xresnet-tiny" and manifest["seed"] == 0
    assert len(manifest["data_fingerprint"]) == 16 and "torch" in manifest["versions"]
    assert "git_commit" in manifest
    import pandas as pd

    metrics = pd.read_csv(finished_run / "metrics.csv")
    train, valid = metrics[metrics.kind == "train"], metrics[metrics.kind == "valid"]
    assert train.step.tolist() == list(range(1, 11)) and len(valid) == 2
    assert train.loss.notna().all() and train.lr.gt(0).all()
    steps = [int(p.stem.split("-")[1]) for p in sorted((finished_run / "checkpoints").glob("step-*.pt"))]
    assert steps == [0, 2, 4, 6, 8, 10]
    from rice_lab.models import load_encoder

    encoder = load_encoder(finished_run)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, encoder.num_features)
    assert set(encoder.normalization) == {"rgb", "rgnir"}


def test_kill_9_then_resume_gives_the_same_weights(finished_run, synth_root, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "rice_lab.cli", "pretrain", str(synth_root), "--out", str(out), *CLI_TINY]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
    metrics = out / "metrics.csv"
    deadline = time.time() + 120
    # kill -9 in the middle of epoch 2, after the queue has started (step 6 of 10)
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and metrics.read_text().count(",train,") >= 6:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "encoder.pt").exists()
    state = torch.load(out / "last.pt", weights_only=False)
    assert 0 < state["step"] < 10

    resumed = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    straight, again = encoder_weights(finished_run), encoder_weights(out)
    for name, value in straight.items():
        assert torch.equal(value, again[name]), f"{name} differs after resume"
    import pandas as pd

    a, b = pd.read_csv(finished_run / "metrics.csv"), pd.read_csv(out / "metrics.csv")
    assert b.step.tolist() == a.step.tolist()  # no step logged twice, none missing
    assert (a.loss - b.loss).abs().max() < 1e-6


def test_resume_with_another_config_is_refused(finished_run, synth_root):
    result = cli("pretrain", str(synth_root), "--out", str(finished_run), *CLI_TINY, "--seed", "1",
                 "--resume")
    assert result.returncode != 0 and "seed" in result.stderr and "Traceback" not in result.stderr
    again = cli("pretrain", str(synth_root), "--out", str(finished_run), *CLI_TINY)
    assert again.returncode != 0 and "--resume" in again.stderr


def test_if_needed_reuses_a_matching_finished_run_and_retrains_a_changed_one(synth_root, tmp_path):
    out = tmp_path / "cached"
    first = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed")
    assert first.returncode == 0, first.stderr
    made = (out / "encoder.pt").stat().st_mtime_ns
    # Only progress/threads-like settings differ: the finished run is the answer, untouched.
    again = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed", "--threads", "2")
    assert again.returncode == 0, again.stderr
    assert (out / "encoder.pt").stat().st_mtime_ns == made
    # Another seed is another run: the stale one is replaced, not resumed or refused.
    changed = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed", "--seed", "1")
    assert changed.returncode == 0, changed.stderr
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 1
    assert (out / "encoder.pt").stat().st_mtime_ns != made
    both = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed", "--resume")
    assert both.returncode != 0 and "not allowed with" in both.stderr


def test_cached_pretrain_resumes_an_unfinished_matching_run(synth_root, tmp_path):
    from rice_lab.ssl.pretrain import cached_pretrain

    config = tiny(synth_root, tmp_path / "unfinished")
    run_dir = cached_pretrain(config)
    (run_dir / "encoder.pt").unlink()  # as if killed after its last resume state
    assert cached_pretrain(config) == run_dir and (run_dir / "encoder.pt").is_file()
    assert json.loads((run_dir / "manifest.json").read_text())["config"]["seed"] == 0


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state(synth_root, tmp_path,
                                                                              monkeypatch):
    import rice_lab.ssl.callback as callback
    from rice_lab.ssl.pretrain import pretrain

    calls = {"n": 0}
    real_loss = callback.swav_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(callback, "swav_loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at step 3.*last good checkpoint"):
        pretrain(tiny(synth_root, tmp_path / "nan"))
    state = torch.load(tmp_path / "nan" / "last.pt", weights_only=False)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_data_error_stops_with_the_validators_message(tmp_path):
    from rice_lab.ssl.pretrain import pretrain

    (tmp_path / "rice" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="images folder holds no"):
        pretrain(tiny(tmp_path / "rice", tmp_path / "out"))
    assert main(["pretrain", str(tmp_path / "rice"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2


def test_cli_rejects_bad_presets_and_configs(tmp_path, capsys):
    assert main(["pretrain", str(tmp_path), "--preset", "gpu-huge", "--out", str(tmp_path / "o")]) == 2
    assert "unknown preset 'gpu-huge'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="epochs"):
        tiny(tmp_path, tmp_path / "o", epochs=0).validate()


def test_presets_follow_the_original_recipe():
    paper = get_preset("gpu-paper")
    assert (paper.encoder, paper.size, paper.batch_size, paper.lr, paper.wd) == ("xresnet34", 128, 32, 1e-4, 1e-6)
    assert paper.moms == (0.95, 0.85, 0.95) and paper.queue_size == 32 * 64 and paper.queue_start == 0.5
    assert (paper.n_large, paper.n_small, paper.small_scale, paper.large_scale) == (2, 6, (0.05, 0.3), (0.25, 1.0))
    assert paper.optimizer == "lamb" and paper.precision == "fp16" and paper.max_rotation == 10
    assert get_preset("gpu-res2next50").encoder == "res2next50"
    assert get_preset("cpu-tiny", seed=3, epochs=None).seed == 3


def test_probes_score_the_run_and_its_random_start(finished_run, synth_root):
    from rice_lab.data.zindi import read_zindi
    from rice_lab.models import load_encoder
    from rice_lab.evaluate import knn_accuracy, linear_probe_accuracy

    plants = read_zindi(synth_root)
    for encoder in (load_encoder(finished_run), load_encoder(finished_run / "checkpoints" / "step-000000.pt")):
        assert 0.0 <= knn_accuracy(encoder, plants, k=5).accuracy <= 1.0
        assert 0.0 <= linear_probe_accuracy(encoder, plants, camera="rgnir").accuracy <= 1.0
