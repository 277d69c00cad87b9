"""Run-directory I/O on its own: configs compared as stored, stale runs set aside (never deleted),
files that load with weights_only, random states that round-trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rice_lab.errors import CheckpointError
from rice_lab.runs import (atomic_save, cache_decision, config_difference, load_checkpoint, read_manifest,
                           rng_state, set_aside, set_rng_state, write_manifest)


def test_configs_are_compared_in_their_stored_form():
    stored = {"data": "/d", "crops": {"size": 64, "scale": [0.25, 1.0]}, "epochs": 2, "threads": 1}
    same = {"data": Path("/d"), "crops": {"size": 64, "scale": (0.25, 1.0)}, "epochs": 2, "threads": 1}
    assert config_difference(stored, same) == []
    changed = {**same, "crops": {"size": 32, "scale": (0.25, 1.0)}, "epochs": 3, "threads": 2, "new": 1}
    assert config_difference(stored, changed, result_free=["threads"]) == [
        "crops.size: 64 -> 32", "epochs: 2 -> 3", "new: '<unset>' -> 1"]
    assert config_difference(stored, changed, result_free=["threads", "crops", "epochs", "new"]) == []


def test_a_setting_added_since_a_run_was_made_counts_only_when_it_is_on():
    stored = {"epochs": 2}
    assert config_difference(stored, {"epochs": 2, "teacher": None, "photo_split": False}) == []
    assert config_difference(stored, {"epochs": 2, "photo_split": True}) == ["photo_split: '<unset>' -> True"]
    assert config_difference(stored, {"epochs": 2, "teacher": "/runs/t"}) == ["teacher: '<unset>' -> '/runs/t'"]
    assert config_difference({"epochs": 2, "teacher": "/runs/t"}, {"epochs": 2, "teacher": None}) == [
        "teacher: '/runs/t' -> None"]


def test_set_aside_moves_a_run_whole_and_never_over_another(tmp_path):
    moved = []
    for n in range(3):  # three in the same second get three names
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "step-000001.pt").write_text(f"run {n}")
        moved.append(set_aside(run))
        assert not run.exists()
    assert len(set(moved)) == 3 and all(p.name.startswith("run.stale-") and p.parent == tmp_path for p in moved)
    assert sorted((p / "checkpoints" / "step-000001.pt").read_text() for p in moved) == ["run 0", "run 1", "run 2"]


def test_cache_decision(tmp_path):
    config = {"seed": 0, "out": str(tmp_path / "run")}
    run = tmp_path / "run"
    assert cache_decision(run, "pretrain", config, "abc") == ("new", None)
    run.mkdir()
    assert cache_decision(run, "pretrain", config, "abc") == ("new", None)  # empty: nothing to keep
    write_manifest(run, "pretrain", config, "abc")
    assert cache_decision(run, "pretrain", config, "abc") == ("resume", None)
    (run / "encoder.pt").write_bytes(b"")
    assert cache_decision(run, "pretrain", {**config, "out": "elsewhere"}, "abc", ["out"]) == ("reuse", None)
    for other, reason in (({**config, "seed": 1}, "seed: 0 -> 1"), (config, "the data changed")):
        decision, note = cache_decision(run, "pretrain", other, "abc" if other is not config else "xyz")
        assert decision == "new" and reason in note and not run.exists()
        [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.stale-") and str(p) in note]
        assert (aside / "encoder.pt").exists()
        aside.rename(run)  # put it back for the next case
    decision, note = cache_decision(run, "finetune", config, "abc")
    assert decision == "new" and "a 'pretrain' run, not a 'finetune' one" in note


def test_unreadable_manifest_is_a_checkpoint_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="unreadable manifest"):
        read_manifest(tmp_path)


def test_saved_files_hold_plain_values_that_load_with_weights_only(tmp_path):
    from fastcore.foundation import L

    state = {"hypers": L({"lr": np.float64(0.1)}), "array": np.arange(3), "n": np.int64(4), "rng": rng_state()}
    atomic_save(state, tmp_path / "state.pt")
    loaded = load_checkpoint(tmp_path / "state.pt")
    assert loaded["hypers"] == [{"lr": 0.1}] and type(loaded["hypers"][0]["lr"]) is float
    assert torch.equal(loaded["array"], torch.arange(3)) and loaded["n"] == 4
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "broken.pt")


def test_random_states_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # a cached Gaussian is part of NumPy's state too
    atomic_save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(1))
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.normal(), torch.rand(1)) == expected
