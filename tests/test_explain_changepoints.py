"""Sudden drops in loss curves with heavy-tailed noise: found where they are and as large as they are;
never on a noisy plateau, a steady decline, a spike that comes back or a rise; PELT's pruned
segmentation equal to the exhaustive optimal partition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rice_lab.errors import ConfigError
from rice_lab.explain.changepoints import (drops_table, find_drops, robust_noise, rolling_median, segment_linear)


def noise(n: int, rng: np.random.Generator, scale: float = 0.08) -> np.ndarray:
    """Heavy-tailed step noise: Student t with 2 degrees of freedom (infinite variance), plus a spike
    of +-1 (many times the drop's noise) at 0.5 % of the steps."""
    spikes = (rng.random(n) < 0.005) * rng.choice([-1.0, 1.0], n)
    return scale * rng.standard_t(2, n) + spikes


def sigmoid(t: np.ndarray, at: float, width: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(t - at) / width))


def bump(n: int, seed: int, at: float = 0.6, size: float = 0.65, width: float = 0.004) -> np.ndarray:
    """The original run's shape: a slowly sinking plateau near 7.1, a fall of ``size`` at ``at`` of the run."""
    t = np.arange(n) / n
    return 7.1 - 0.15 * t - size * sigmoid(t, at, width) + noise(n, np.random.default_rng(seed))


STEPS = {n: np.arange(1, n + 1) for n in (400, 3000, 20000)}


@pytest.mark.parametrize("n", [400, 3000, 20000])
@pytest.mark.parametrize("seed", range(4))
def test_the_drop_is_found_at_its_step_and_with_its_size(n, seed):
    drops = find_drops(STEPS[n], bump(n, seed))
    assert len(drops) == 1
    drop = drops[0]
    assert abs(drop.step - 0.6 * n) <= 0.01 * n  # within 1 % of the run
    assert drop.start < 0.6 * n < drop.end
    assert drop.size == pytest.approx(0.65, rel=0.15)
    assert drop.sigmas > 6


def test_a_drop_after_a_fast_start_and_two_drops_in_a_row():
    n, rng = 3000, np.random.default_rng(7)
    t = np.arange(n) / n
    start_then_drop = 5 + 2 * np.exp(-t / 0.05) - 0.8 * sigmoid(t, 0.7, 0.003) + noise(n, rng)
    (drop,) = find_drops(STEPS[n], start_then_drop)  # the fast start is not a drop: nothing comes before it
    assert abs(drop.step - 0.7 * n) <= 0.01 * n
    stairs = 6 - 0.5 * sigmoid(t, 0.3, 0.002) - 0.7 * sigmoid(t, 0.65, 0.002) + noise(n, rng)
    drops = find_drops(STEPS[n], stairs)
    assert [round(d.step / n, 2) for d in drops] == [0.3, 0.65]
    assert [d.size for d in drops] == pytest.approx([0.5, 0.7], rel=0.15)
    table = drops_table(drops)
    assert list(table["step"]) == [d.step for d in drops] and (table["sigmas"] > 6).all()


# Many seeds: a false drop is a rare event, and each of the detector's rules was needed by some seed
# here (a noise excursion read as a drop, a short lull inside a fast start read as the stretch before one).
@pytest.mark.parametrize("n", [400, 1600])
def test_no_drop_on_a_noisy_plateau(n):
    found = [find_drops(STEPS.get(n, np.arange(1, n + 1)), math.log(64) + noise(n, np.random.default_rng(seed)))
             for seed in range(50)]
    assert sum(map(len, found)) == 0


@pytest.mark.parametrize("n", [400, 1600])
def test_a_slow_steady_decline_is_not_a_drop(n):
    t = np.arange(n) / n
    for seed in range(50):
        rng = np.random.default_rng(seed)
        assert find_drops(np.arange(n), 7 - 1.5 * t + noise(n, rng)) == []  # straight, falling 1.5 in all
        assert find_drops(np.arange(n), 4.2 + 2 * np.exp(-t / 0.15) + noise(n, rng)) == []  # curving, fast at first
        # a pace that doubles for the middle third and slows again: a change of pace, not a sudden drop
        assert find_drops(np.arange(n), 7 - t - np.clip(t - 1 / 3, 0, 1 / 3) + noise(n, rng)) == []


def test_spikes_that_come_back_and_rises_are_not_drops():
    n, rng = 3000, np.random.default_rng(3)
    t = np.arange(n) / n
    # the loss explodes when a queue starts and recovers; dips and comes straight back; rises suddenly
    explosion = 4.1 + 1.0 * np.exp(-np.clip(t - 0.5, 0, None) / 0.01) * (t >= 0.5)
    dip = 4.1 - 0.8 * np.exp(-(((t - 0.4) / 0.006) ** 2))
    rise = 4.1 + 0.8 * sigmoid(t, 0.6, 0.002)
    for curve in (explosion, dip, rise):
        assert find_drops(STEPS[n], curve + noise(n, rng)) == []


def test_a_noise_free_step_is_located_exactly():
    steps = np.arange(0, 2000, 10)  # logged every 10 steps, as a run's validation might be
    losses = np.where(steps < 1230, 5.0, 4.0)
    (drop,) = find_drops(steps, losses)
    assert drop.step == 1230 and drop.size == pytest.approx(1.0)
    # unsorted steps and missing values change nothing
    order = np.random.default_rng(0).permutation(len(steps))
    shuffled = losses[order].copy()
    shuffled[::17] = np.nan
    (again,) = find_drops(steps[order], shuffled)
    assert again.step == 1230


def optimal_partition(y: np.ndarray, penalty: float, min_size: int) -> float:
    """The exhaustive optimal-partition cost (no pruning), O(n^2) line fits."""
    n = len(y)
    x = np.arange(n, dtype=float)

    def cost(s: int, t: int) -> float:
        slope, intercept = np.polyfit(x[s:t], y[s:t], 1)
        return float(((y[s:t] - slope * x[s:t] - intercept) ** 2).sum())

    best = [0.0] + [math.inf] * n
    best[0] = -penalty
    for t in range(min_size, n + 1):
        best[t] = min(best[s] + cost(s, t) + penalty for s in range(0, t - min_size + 1) if math.isfinite(best[s]))
    return best[n]


def partition_cost(y: np.ndarray, pieces, penalty: float) -> float:
    x = np.arange(len(y), dtype=float)
    residual = sum(((y[p.first:p.last + 1] - p.at(x[p.first:p.last + 1])) ** 2).sum() for p in pieces)
    return float(residual) + penalty * (len(pieces) - 1)


@pytest.mark.parametrize("seed", range(5))
def test_pelt_finds_the_optimal_partition(seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.normal(0, 1, 15), 4 + rng.normal(0, 1, 12), np.linspace(4, -2, 18) + rng.normal(0, 1, 18)])
    for penalty in (2.0, 8.0, 30.0):
        pieces = segment_linear(np.arange(len(y)), y, penalty, min_size=3)
        assert all(p.last - p.first + 1 >= 3 for p in pieces)
        assert pieces[0].first == 0 and pieces[-1].last == len(y) - 1
        assert all(a.last + 1 == b.first for a, b in zip(pieces, pieces[1:]))
        assert partition_cost(y, pieces, penalty) == pytest.approx(optimal_partition(y, penalty, 3), abs=1e-6)


def test_segmentation_recovers_noise_free_pieces():
    x = np.arange(60, dtype=float)
    y = np.where(x < 20, 3.0, np.where(x < 41, 10 - 0.2 * x, 1.0))
    pieces = segment_linear(x, y, penalty=1.0)
    assert [(p.first, p.last) for p in pieces] == [(0, 19), (20, 40), (41, 59)]
    assert pieces[1].slope == pytest.approx(-0.2)


def test_the_smoother_and_the_noise_ignore_single_spikes():
    y = np.full(50, 2.0)
    y[[10, 30]] = 100.0
    assert np.allclose(rolling_median(y, 5), 2.0)
    assert robust_noise(np.random.default_rng(0).normal(0, 0.5, 5000) + np.linspace(0, 40, 5000)) == \
        pytest.approx(0.5, rel=0.05)  # a trend does not count as noise


def test_bad_and_short_input():
    with pytest.raises(ConfigError, match="one length"):
        find_drops([1, 2, 3], [1.0, 2.0])
    with pytest.raises(ConfigError, match="window=0"):
        rolling_median([1.0, 2.0], 0)
    assert find_drops(np.arange(11), np.where(np.arange(11) < 5, 5.0, 1.0)) == []  # too short to judge
    assert len(find_drops(np.arange(24), np.where(np.arange(24) < 12, 5.0, 1.0))) == 1
