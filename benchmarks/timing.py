"""What the benchmark scripts share: best-of-rounds timing, a training clock, and the default data.

Run as scripts (``python benchmarks/bench_x.py``), they import this module from their own folder.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable


def best_time(run: Callable[[], object], rounds: int) -> float:
    """The fastest of ``rounds`` calls, in seconds: on a shared machine noise only slows a call down."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def training_clock(times: list[float], steps: int, stop: Callable[[], Exception]):
    """A fastai callback appending a timestamp per training step to ``times`` (the clock paused during
    validation, which a hand-written loop does not run) and raising ``stop()`` after ``steps`` steps."""
    from fastai.callback.core import Callback

    class Clock(Callback):
        order = 100
        paused = 0.0

        def before_fit(self):
            times.append(time.perf_counter())

        def before_validate(self):
            self.validation_start = time.perf_counter()

        def after_validate(self):
            self.paused += time.perf_counter() - self.validation_start

        def after_batch(self):
            if self.training:
                times.append(time.perf_counter() - self.paused)
                if len(times) > steps:
                    raise stop()

    return Clock()


def default_data(data: str | None) -> Path:
    """``data``, else $RICE_LAB_DATA, else the 600-plant synthetic dataset (made once in the temp folder)."""
    if data:
        return Path(data)
    if os.environ.get("RICE_LAB_DATA") and Path(os.environ["RICE_LAB_DATA"]).is_dir():
        return Path(os.environ["RICE_LAB_DATA"])
    from rice_lab.data.synthetic import SynthConfig, ensure_synthetic

    root = Path(tempfile.gettempdir()) / "rice-lab-bench" / "synthetic-600-128"
    return ensure_synthetic(root, SynthConfig(plants=600, width=128, seed=0))
