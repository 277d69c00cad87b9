"""Shared fixtures: one small synthetic dataset per test session, made by the real generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-plant, 64 px synthetic Zindi folder (train + test, masks, metadata); do not modify it."""
    from rice_lab.data.synthetic import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("synth") / "rice"
    synthesize(root, SynthConfig(plants=48, width=64, seed=0, workers=1))
    return root
