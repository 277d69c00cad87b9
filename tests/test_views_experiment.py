"""The views experiment: arms, paired differences, and a whole (tiny) experiment from the CLI, resumed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rice_lab.errors import ConfigError
from rice_lab.ssl import views_experiment as views

TINY = dict(batch_size=8, photo_height=32, crops={"size": 32}, checkpoint_every=0, resume_every=0)


def test_arms_name_their_recipe_in_full_and_overrides_apply_to_every_arm(tmp_path):
    today = views.arm_config("data", tmp_path, "today", 0, overrides=TINY)
    swap = views.arm_config("data", tmp_path, "rgb+swap", 1, overrides=TINY)
    assert (today.views, today.crops.background, today.crops.leaf_centred) == ("paired", "keep", False)
    assert (swap.views, swap.crops.background, swap.crops.leaf_centred) == ("rgb", "swap", False)
    assert today.crops.size == swap.crops.size == 32 and today.photo_height == 32
    assert swap.seed == 1 and swap.out.endswith("runs/rgb+swap-s1")
    with pytest.raises(ConfigError, match="unknown views arm 'grass'"):
        views.arm_config("data", tmp_path, "grass", 0)


def test_paired_differences_pair_by_seed():
    table = pd.DataFrame({"arm": ["today", "today", "today", "swap", "swap"], "seed": [0, 1, 2, 1, 0],
                          "probe_1": [0.4, 0.5, 0.6, 0.9, 0.6]})
    paired = views.paired_differences(table).set_index("metric")
    assert paired.loc["probe_1", "seeds"] == 2  # seed 2 has no swap run: left out, not compared unpaired
    assert paired.loc["probe_1", "difference"] == pytest.approx(0.3)  # (0.6 - 0.4 + 0.9 - 0.5) / 2
    assert paired.loc["probe_1", "low"] < 0.3 < paired.loc["probe_1", "high"]


def test_the_experiment_runs_from_the_cli_and_reuses_its_runs(synth_root, tmp_path):
    out = tmp_path / "views"
    result = views.views_experiment(synth_root, out, arms=("today", "noise"), seeds=(0,), epochs=1,
                                    label_seeds=(0,), overrides=TINY)
    table = result["views"]
    assert list(table["arm"]) == ["today", "noise"]
    for column in ("probe_0.1", "probe_1", "probe_1_rgb", "step0_probe_1", "knn_rgnir", "background_rgb",
                   "step0_background_rgb", "pretrain_seconds", "loss_end"):
        assert table[column].between(0, np.inf).all(), column
    assert table.filter(like="probe").le(1).all().all()
    assert np.allclose(table["loss_end"] - table["loss_end_over_log_k"], np.log(64))  # cpu-tiny's K
    paired = result["views_paired"]
    assert set(paired["arm"]) == {"noise"} and "probe_1" in set(paired["metric"])
    for name in ("views.csv", "views_summary.csv", "views_paired.csv", "views.png", "views.json"):
        assert (out / name).is_file()
    encoders = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/encoder.pt")}
    readouts = {p: p.stat().st_mtime_ns for p in (out / "readouts").glob("*.json")}
    assert len(encoders) == 2 and len(readouts) == 2

    # From the command line, on the same folder: the runs are reused (not trained again), the table agrees.
    # The CLI has no flag for the tiny overrides, so it asks for arms whose runs exist and must match.
    command = [sys.executable, "-m", "rice_lab.cli", "experiment", "views", str(synth_root), "--out", str(out),
               "--arms", "bogus"]
    failed = subprocess.run(command, capture_output=True, text=True)
    assert failed.returncode != 0 and "unknown views arm(s) bogus" in failed.stderr
    assert "Traceback" not in failed.stderr
    again = views.views_experiment(synth_root, out, arms=("today", "noise"), seeds=(0,), epochs=1,
                                   label_seeds=(0,), overrides=TINY)
    assert {p: p.stat().st_mtime_ns for p in encoders} == encoders
    assert {p: p.stat().st_mtime_ns for p in readouts} == readouts  # read-outs kept, not computed again
    pd.testing.assert_frame_equal(again["views"].drop(columns="pretrain_seconds"),
                                  table.drop(columns="pretrain_seconds"))
