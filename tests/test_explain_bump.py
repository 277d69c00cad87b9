"""The bump experiment: each loss curve's plateau, second descent and sudden drops read where they are;
arms that move only the queue; runs reused, never retrained or deleted; the CLI's flags and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rice_lab.cli import main
from rice_lab.errors import ConfigError
from rice_lab.explain.bump import (ARMS, arm_config, bump_experiment, curve_summary, queue_start_step,
                                  smoothed_curve)

STEPS = np.arange(1, 2401)


def curve(seed: int, descent: float = 0.25, at: float = 0.55, width: float = 0.04) -> np.ndarray:
    """Our lead run's shape: a fast first descent to a slowly sinking plateau, then (``descent`` > 0)
    a second fall of ``descent`` centred at ``at`` of the run and lasting about ``4 * width`` of it."""
    t = STEPS / STEPS[-1]
    rng = np.random.default_rng(seed)
    first = 1.1 * np.exp(-t / 0.06)
    second = descent / (1 + np.exp(-(t - at) / width))
    return 6.45 + first - 0.1 * t - second + 0.05 * rng.standard_normal(len(t))


@pytest.mark.parametrize("seed", range(3))
def test_a_second_descent_is_found_where_it_is(seed):
    row = curve_summary(STEPS, curve(seed))
    assert row["descent_start"] < 0.55 * 2400 < row["descent_end"]
    assert 0.15 < row["descent_size"] < 0.35
    assert row["plateau_fall_before"] < row["descent_size"] / 2
    assert row["loss_start"] > row["loss_plateau"] > row["loss_end"]


@pytest.mark.parametrize("seed", range(3))
def test_a_curve_without_one_has_none(seed):
    row = curve_summary(STEPS, curve(seed, descent=0.0))
    assert np.isnan(row["descent_step"]) and row["sudden_drops"] == 0


def test_a_smoothed_curve_is_the_median_of_each_window():
    curve = pd.DataFrame({"step": np.arange(1, 21), "loss": np.r_[np.full(8, 2.0), np.full(8, 1.0), [9, 0, 0, 0]]})
    curve.loc[3, "loss"] = 50.0  # one spike moves no median
    smooth = smoothed_curve(curve, window=8)
    assert smooth["loss"].tolist() == [2.0, 1.0, 0.0] and smooth["step"].tolist() == [4.5, 12.5, 18.5]


def test_a_sudden_drop_is_counted_as_one():
    row = curve_summary(STEPS, curve(0, descent=0.5, width=0.002))
    assert row["sudden_drops"] == 1 and abs(row["descent_step"] - 0.55 * 2400) < 40


def test_arms_differ_only_in_the_queue(tmp_path):
    configs = {arm: arm_config("data", tmp_path, arm, seed=3) for arm in ARMS}
    half = configs["queue-half"].to_dict()
    for arm, config in configs.items():
        other = config.to_dict()
        changed = {k for k in half["swav"] if half["swav"][k] != other["swav"][k]}
        assert changed <= {"queue_start", "queue_factor"} and {k for k in half if half[k] != other[k]} <= {"swav", "out"}
        assert config.seed == 3 and config.swav.n_prototypes == 1024 and Path(config.out).name == f"{arm}-s3"
    assert queue_start_step(configs["queue-half"], 2400) == 1200
    assert queue_start_step(configs["queue-quarter"], 2400) == 600
    assert queue_start_step(configs["queue-never"], 2400) is None
    with pytest.raises(ConfigError, match="queue-sometimes"):
        arm_config("data", tmp_path, "queue-sometimes", 0)


def test_the_experiment_writes_its_tables_and_reuses_its_runs(synth_root, tmp_path):
    out = tmp_path / "bump"
    found = bump_experiment(synth_root, out, seeds=[0], arms=("queue-half", "queue-never"), epochs=2)
    table = pd.read_csv(out / "bump.csv")
    assert list(table["arm"]) == ["queue-half", "queue-never"] and (out / "bump.png").stat().st_size > 0
    assert table["queue_start_step"].isna().tolist() == [False, True]
    summary = pd.read_csv(out / "bump_summary.csv")
    assert summary["runs"].tolist() == [1, 1]
    curves = pd.read_csv(out / "bump_curves.csv")
    for arm in ("queue-half", "queue-never"):
        run = out / "runs" / f"{arm}-s0"
        logged = pd.read_csv(run / "metrics.csv").query("kind == 'train'")
        assert curves.query("arm == @arm")["loss"].tolist() == pytest.approx(
            smoothed_curve(logged[["step", "loss"]])["loss"].tolist())
    manifest = json.loads((out / "runs" / "queue-never-s0" / "manifest.json").read_text())
    assert manifest["config"]["swav"]["queue_factor"] == 0 and manifest["config"]["epochs"] == 2
    weights = out / "runs" / "queue-half-s0" / "encoder.pt"
    before = weights.stat().st_mtime_ns
    again = bump_experiment(synth_root, out, seeds=[0], arms=("queue-half",), epochs=2)
    assert weights.stat().st_mtime_ns == before  # reused, not trained again
    assert again["bump"].iloc[0].to_dict() == pytest.approx(found["bump"].iloc[0].to_dict(), nan_ok=True)


def test_pretrain_flags_set_the_prototypes_and_the_queue(synth_root, tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", str(synth_root), "--out", str(out), "--epochs", "1", "--batch-size", "8",
                 "--crop-size", "32", "--threads", "1", "--no-progress", "--prototypes", "16",
                 "--queue-factor", "0", "--queue-start", "0.25"]) == 0
    swav = json.loads((out / "manifest.json").read_text())["config"]["swav"]
    assert (swav["n_prototypes"], swav["queue_factor"], swav["queue_start"]) == (16, 0, 0.25)


def test_experiment_errors_are_one_line(synth_root, tmp_path, capsys):
    assert main(["experiment", "sensors", str(synth_root), "--out", str(tmp_path / "x")]) == 1
    assert "needs at least one --encoder" in capsys.readouterr().err
    assert main(["experiment", "bump", str(synth_root), "--out", str(tmp_path / "y"), "--arms", "queue-always"]) == 1
    assert "queue-always" in capsys.readouterr().err and not (tmp_path / "y").exists()
