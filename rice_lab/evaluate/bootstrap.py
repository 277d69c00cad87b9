"""Bootstrap confidence intervals over items (plants, photos): how far a measured number may move."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rice_lab.errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A statistic on the items, with a percentile-bootstrap interval around it."""

    estimate: float
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.level:.0%} CI)"


def bootstrap_ci(values, statistic: Callable[[np.ndarray], float] = np.mean, level: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> Interval:
    """The ``statistic`` of ``values`` and its percentile-bootstrap interval at ``level``.

    ``values`` holds one row per item (a plant's correctness, loss, or a row of several numbers
    about it); resampling draws whole rows, so numbers measured on the same plant stay paired: for a
    gain, pass the per-plant differences, or both columns and a statistic that subtracts them.
    """
    values = np.asarray(values)
    if values.ndim == 0 or len(values) < 2:
        raise ConfigError(f"bootstrap_ci needs at least two items, got {values.size}")
    if not 0 < level < 1:
        raise ConfigError(f"level={level}: must be strictly between 0 and 1")
    if resamples < 100:
        raise ConfigError(f"resamples={resamples}: use at least 100 (a few thousand for a 95 % interval)")
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(resamples)])
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(float(statistic(values)), float(low), float(high), level)
