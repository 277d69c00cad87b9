"""The fine-tuning commands from the shell: finetune, predict, submission check, evaluate, and the
one-line errors (exit code 1) for a run of the wrong kind or a malformed submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rice_lab.presets import get_preset as pretrain_preset
from rice_lab.ssl.pretrain import pretrain

CLI_TINY = ["--preset", "cpu-tiny", "--epochs", "1", "--batch-size", "8", "--photo-height", "32", "--threads", "1",
            "--no-progress"]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rice_lab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def runs(synth_root, tmp_path_factory) -> dict[str, Path]:
    """A tiny SwAV run and a classifier fine-tuned from it on the command line."""
    base = tmp_path_factory.mktemp("cli")
    swav = pretrain(pretrain_preset("cpu-tiny", data=str(synth_root), out=str(base / "swav"), epochs=1,
                                    batch_size=8, photo_height=32, crops={"size": 32}, progress=False,
                                    threads=1, checkpoint_every=0, resume_every=0))
    result = cli("finetune", synth_root, "--encoder", swav, "--out", base / "clf", *CLI_TINY)
    assert result.returncode == 0, result.stderr
    return {"swav": swav, "clf": base / "clf"}


def test_predict_writes_a_submission_that_the_checker_accepts(runs, synth_root, tmp_path):
    out = tmp_path / "submission.csv"
    result = cli("predict", runs["clf"], synth_root, "--out", out)
    assert result.returncode == 0, result.stderr
    sample = pd.read_csv(synth_root / "SampleSubmission.csv")
    written = pd.read_csv(out)
    assert list(written.columns) == list(sample.columns) and list(written["Image_id"]) == list(sample["Image_id"])
    checked = cli("submission", "check", out, "--sample", synth_root / "SampleSubmission.csv")
    assert checked.returncode == 0 and "valid" in checked.stdout


def test_submission_check_lists_each_problem_and_exits_1(synth_root, tmp_path):
    sample = pd.read_csv(synth_root / "SampleSubmission.csv")
    bad = sample.copy()
    bad.loc[0, "blast"] = float("nan")
    bad.loc[1, ["blast", "brown", "healthy"]] = [0.5, 0.5, 0.5]
    bad = bad.drop(index=2)
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    result = cli("submission", "check", path, "--sample", synth_root / "SampleSubmission.csv")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and any("missing" in line for line in lines) and any("sum" in line for line in lines)


def test_evaluate_writes_json_and_figure(runs, synth_root):
    result = cli("evaluate", runs["clf"], synth_root, "--resamples", "200")
    assert result.returncode == 0, result.stderr
    report = json.loads((runs["clf"] / "evaluation.json").read_text())
    assert report["split"] == "test" and set(report["views"]) == {"rgb", "rgnir", "fused", "fused-logits"}
    fused = report["views"]["fused"]
    assert fused["accuracy"]["low"] <= fused["accuracy"]["estimate"] <= fused["accuracy"]["high"]
    assert sum(map(sum, fused["confusion"])) == report["plants"]
    assert (runs["clf"] / "evaluation.png").stat().st_size > 0


def test_evaluate_from_python_leaves_the_plotting_backend_alone(runs, synth_root, tmp_path, monkeypatch):
    """A notebook's inline figures must keep showing after evaluate_run (it once switched pyplot to Agg,
    and every later figure of the fine-tuning chapter silently vanished from the book)."""
    import shutil

    import matplotlib

    from rice_lab.finetune import evaluate_run

    run = tmp_path / "clf"
    shutil.copytree(runs["clf"], run)
    switched = []
    monkeypatch.setattr(matplotlib, "use", lambda *args, **kwargs: switched.append(args))
    monkeypatch.setattr("matplotlib.pyplot.switch_backend", lambda *args, **kwargs: switched.append(args))
    evaluate_run(run, synth_root, resamples=100)
    assert switched == [] and (run / "evaluation.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", ["predict", "evaluate", "finetune"])
def test_a_run_of_the_wrong_kind_gets_one_line_and_exit_1(runs, synth_root, tmp_path, command):
    if command == "finetune":  # a classifier run is no encoder to start from
        args = ["finetune", synth_root, "--encoder", runs["clf"], "--out", tmp_path / "x", *CLI_TINY]
    elif command == "predict":  # a SwAV run has no classifier
        args = ["predict", runs["swav"], synth_root, "--out", tmp_path / "s.csv"]
    else:
        args = ["evaluate", runs["swav"], synth_root]
    result = cli(*args)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("rice-lab: error")]
    assert len(lines) == 1 and ("pretrain" in lines[0] or "finetune" in lines[0]), result.stderr
    assert "Traceback" not in result.stderr


def test_a_sample_with_other_classes_is_refused(runs, synth_root, tmp_path):
    sample = pd.read_csv(synth_root / "SampleSubmission.csv").rename(columns={"healthy": "sound"})
    sample.to_csv(tmp_path / "sample.csv", index=False)
    result = cli("predict", runs["clf"], synth_root, "--out", tmp_path / "s.csv", "--sample", tmp_path / "sample.csv")
    assert result.returncode == 1 and "expected columns" in result.stderr
    assert not (tmp_path / "s.csv").exists()


def test_a_teacher_of_the_wrong_kind_gets_one_line_and_exit_1(runs, synth_root, tmp_path):
    result = cli("finetune", synth_root, "--encoder", runs["swav"], "--teacher", runs["swav"], "--out",
                 tmp_path / "student", *CLI_TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "teacher" in result.stderr and "not a fine-tuning run" in result.stderr


@pytest.mark.parametrize("args, words", [
    (["sensors", "--encoder", "paired"], "NAME=RUN"),
    (["leakage", "--encoder", "a=random", "--encoder", "b=random"], "one --encoder"),
    (["label-efficiency", "--encoder", "a=random", "--preset", "gpu-huge"], "unknown fine-tuning preset"),
])
def test_experiment_bad_input_gets_one_line_and_exit_1(synth_root, tmp_path, args, words):
    result = cli("experiment", args[0], synth_root, "--out", tmp_path / "exp", *args[1:])
    assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "exp").exists()  # refused before anything was made


def test_experiment_from_the_shell_writes_its_tables(runs, synth_root, tmp_path):
    out = tmp_path / "leak"
    result = cli("experiment", "leakage", synth_root, "--out", out, "--encoder", f"swav={runs['swav']}",
                 "--seeds", "1", "--epochs", "1", "--threads", "1", timeout=400)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "leakage.csv")
    assert list(table["split"]) == ["plant", "photo"] and (out / "leakage.png").is_file()
    assert "[leakage 2/2]" in result.stderr
