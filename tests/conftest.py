"""Shared fixtures: one small synthetic dataset per test session, made by the real generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each (and in every process they start), or
    # each worker's torch threads wait on the other's, several times slower (bench_cka.py measured 20x at times)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

# Files that take minutes: collected first, so that with two processes (`make test`) they start at once
# instead of leaving one process to finish them alone at the end.
# The first two hold make test-slow's statistical end-to-end runs (minutes each, in one process).
LONG_FILES = ("test_ssl_gain.py", "test_baselines.py", "test_grading.py", "test_course_notebooks.py",
              "test_course_mutants.py")


def pytest_collection_modifyitems(items: list) -> None:
    """Order the long files first (the rest keep their order)."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(LONG_FILES)))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-plant, 64 px synthetic Zindi folder (train + test, masks, metadata); do not modify it."""
    from rice_lab.data.synthetic import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("synth") / "rice"
    synthesize(root, SynthConfig(plants=48, width=64, seed=0, workers=1))
    return root


@pytest.fixture(scope="session")
def encoder_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SwAV run on ``synth_root`` (one epoch, 32 px crops of 32 px photos), shared read-only by
    the fine-tuning tests: one pre-training per session instead of one per test module."""
    from explain_classifier import train_tiny_swav

    return train_tiny_swav(synth_root, tmp_path_factory.mktemp("pretrain") / "swav")
