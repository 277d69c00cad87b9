"""The SSL issue's promise, end to end: a default ``cpu-tiny`` paired run from the CLI, on the book's
synthetic data, gives an encoder that reads the disease better than its own random start.

This is the slowest test (about 8 minutes on 2 idle cores): it trains the real preset, 1,600 steps,
because the disease only shows in the features after 600-900 of them. It is marked ``slow``:
``make test-slow`` (and plain ``pytest``) runs it, ``make test`` leaves it out; CI runs both.

What it asserts, and how often that held: the linear probe of at least one camera gains by more than
two standard errors. Measured with this version of the code (RICE_LAB_TEST_SEED=S), the margin of
the better camera's linear gain in standard errors: seed 0 3.2 (RGB; RG-NIR -0.8), seed 1 2.6
(RG-NIR; RGB 1.9), seed 2 4.6 (RGB; RG-NIR 1.9), seed 3 2.5 (RGB; RG-NIR -1.5), seed 4 5.4 (RGB;
RG-NIR 1.8), seed 5 2.6 (RGB; RG-NIR 2.3). Six of six pass; seeds 0 and 1 were the ones the
threshold was chosen on, 2-5 were run afterwards to measure it. A normal fit to the six margins
(mean 3.5, s.d. 1.2) puts the chance that a seed falls under 2 near 11 %; six passes alone bound it
only loosely (below 40 % at 95 % confidence). CI always runs seed 0 (margin 3.2), so a failure there
means the code changed, not the luck of the draw.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The run's seed; 0 unless set, so the false-failure rate can be measured over other seeds.
SEED = int(os.environ.get("RICE_LAB_TEST_SEED", "0"))


@pytest.fixture(scope="module")
def book_data(tmp_path_factory) -> Path:
    """The default synthetic dataset, as `make data` builds it (600 plants, 128 px, seed 0)."""
    from rice_lab.data.synthetic import SynthConfig, ensure_synthetic

    root = tmp_path_factory.mktemp("book") / "synthetic"
    ensure_synthetic(root, SynthConfig())
    return root


@pytest.mark.slow
def test_default_cpu_tiny_run_beats_its_random_start_on_the_disease(book_data, tmp_path):
    from rice_lab.data.zindi import read_zindi
    from rice_lab.models import load_encoder
    from rice_lab.runs import list_checkpoints
    from rice_lab.evaluate import compare_encoders

    out = tmp_path / "cpu-tiny-paired"
    command = [sys.executable, "-m", "rice_lab.cli", "pretrain", str(book_data), "--preset", "cpu-tiny",
               "--views", "paired", "--seed", str(SEED), "--out", str(out), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-2000:]
    encoders = {"random": load_encoder(list_checkpoints(out)[0]), "pre-trained": load_encoder(out / "encoder.pt")}
    table = compare_encoders(encoders, read_zindi(book_data), baseline="random")
    gains = table[table.encoder == "pre-trained"].assign(margin=lambda t: t.gain / t.gain_se)
    print(f"\nseed {SEED}\n" + gains[["camera", "probe", "gain", "gain_se", "margin"]].round(3).to_string())
    linear = gains[gains.probe == "linear"]
    assert len(linear) == 2, table
    # The linear probe of at least one camera gains by more than two standard errors. (Not both: with
    # seed 0 the RG-NIR probe's gain was -0.026 +- 0.032 while the RGB one's was +0.107 +- 0.033.)
    assert (linear.gain > 2 * linear.gain_se).any(), table.round(3).to_string()
