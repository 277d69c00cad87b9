"""Sudden drops in a loss curve: where they happen and by how much, robust to the noise of single steps.

    rolling_median(values, window)              -> the curve under a centred running median
    segment_linear(x, y, penalty, min_size)     -> PELT: the best split into straight pieces
    find_drops(steps, losses)                   -> [Drop(step, start, end, size, before, after, noise)]
    drops_table(drops)                          -> one row per drop

How a drop is told from noise and from a steady decline:

1. **Robust smoothing.** The curve is cut into about ``n / window`` runs of consecutive steps and
   each run is replaced by its median (a running median sampled once per window): a single step's
   spike, however large, moves a median little. The noise left, ``noise``, is estimated from the
   medians' successive differences by their median absolute deviation (a drop is one large
   difference among many and barely moves it).
2. **Segmentation.** PELT (Killick, Fearnhead & Eckley 2012) splits the medians into straight
   pieces, minimising the pieces' squared residuals plus ``penalty * noise^2 * ln(number of medians)``
   per piece (each piece may start at its own level, so a drop within one window is a jump
   between two pieces). A steady decline, straight or gently curving, needs one or a few pieces.
3. **Drops.** A drop is a fall between two pieces (a jump, or steep pieces in between) that is
   (a) at least ``min_sigmas`` times the noise; (b) at least ``ratio`` times as fast as the pieces on
   both sides of it, each of which lasts at least as long as the drop itself; and (c) a fall that
   stays: the curve ends the piece after it at least ``min_sigmas`` noise below where it was before,
   and had started the piece before it at least as far above where it lands (a spike up and back,
   or down and back, is no drop). So a drop needs a slower stretch before and after it: the fast
   start of every loss curve, with nothing before it, is not a drop, and neither is any stretch of
   a curve that falls at an even pace.

Each drop's ``step`` is where the curve under a running median of one window first crosses halfway
between its level before and after; ``start`` and ``end`` are the last step of the piece before and
the first of the piece after, and ``size`` the fitted fall between them. Only falls are reported
(a loss rising suddenly, as SwAV's can when its queue starts, is not a drop).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rice_lab.errors import ConfigError

MAD_TO_SIGMA = 1.4826  # the median absolute deviation of a normal sample times this is its sigma


@dataclass(frozen=True)
class Drop:
    """A sudden fall of a curve: where (``step``; between ``start`` and ``end``) and by how much."""

    step: float      # where the smoothed curve crosses halfway between before and after
    start: float     # last step of the slower stretch before the drop
    end: float       # first step of the slower stretch after it
    size: float      # before - after (the fitted fall)
    before: float    # fitted level at start
    after: float     # fitted level at end
    noise: float     # the noise of the window medians the drop is measured against

    @property
    def sigmas(self) -> float:
        """The fall in units of the noise."""
        return self.size / self.noise if self.noise > 0 else math.inf


@dataclass(frozen=True)
class Piece:
    """A straight piece of a segmented curve: rows ``first`` to ``last`` (inclusive) of x and y."""

    first: int
    last: int
    slope: float
    intercept: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def rolling_median(values, window: int) -> np.ndarray:
    """A centred running median over ``window`` points (fewer at the ends)."""
    if window < 1:
        raise ConfigError(f"window={window}: must be 1 or more")
    return pd.Series(np.asarray(values, dtype=float)).rolling(window, center=True, min_periods=1).median().to_numpy()


def robust_noise(values: np.ndarray) -> float:
    """The noise sigma of a sequence from its successive differences' median absolute deviation
    (a trend shifts every difference alike and drops out; a few jumps barely count)."""
    d = np.diff(np.asarray(values, dtype=float))
    if len(d) < 2:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


class _Sums:
    """Cumulative sums that give any run's least-squares line and residual in O(1)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        def cumulative(v: np.ndarray) -> np.ndarray:
            return np.concatenate([[0.0], np.cumsum(v)])

        self.x, self.y = cumulative(x), cumulative(y)
        self.xx, self.yy, self.xy = cumulative(x * x), cumulative(y * y), cumulative(x * y)

    def cost(self, starts: np.ndarray, end: int) -> np.ndarray:
        """Squared residual of the best line through rows [s, end) for every s of ``starts``."""
        n = end - starts
        sx, sy = self.x[end] - self.x[starts], self.y[end] - self.y[starts]
        vxx = self.xx[end] - self.xx[starts] - sx * sx / n
        vyy = self.yy[end] - self.yy[starts] - sy * sy / n
        vxy = self.xy[end] - self.xy[starts] - sx * sy / n
        explained = np.divide(vxy * vxy, vxx, out=np.zeros_like(vxx), where=vxx > 1e-12)
        return np.maximum(vyy - explained, 0.0)


def segment_linear(x, y, penalty: float, min_size: int = 3) -> list[Piece]:
    """PELT: split (x, y) into straight pieces of at least ``min_size`` points, minimising the pieces'
    squared residuals plus ``penalty`` per piece; exact (the optimal partition), pruned as in Killick
    et al. 2012. Pieces are fitted separately (each at its own level)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(y)
    if len(x) != n:
        raise ConfigError(f"{len(x)} x values for {n} y values")
    if min_size < 2:
        raise ConfigError(f"min_size={min_size}: a line needs at least 2 points")
    # Centred and scaled copies keep the cumulative sums accurate; the fits below use the real x, y.
    scale_x = max(float(np.ptp(x)), 1e-12) if n else 1.0
    scale_y = max(float(y.std()), 1e-12) if n else 1.0
    sums = _Sums((x - x.mean()) / scale_x, (y - y.mean()) / scale_y) if n else None
    beta = penalty / scale_y ** 2
    bounds = [0, n]
    if n >= 2 * min_size:
        best = np.full(n + 1, np.inf)
        best[0] = -beta
        previous = np.zeros(n + 1, dtype=int)
        candidates = np.array([0])
        for end in range(min_size, n + 1):
            fits = best[candidates] + sums.cost(candidates, end)
            i = int(np.argmin(fits))
            best[end], previous[end] = fits[i] + beta, candidates[i]
            candidates = candidates[fits <= best[end]]  # PELT's pruning: never optimal again
            new = end - min_size + 1  # becomes a possible start once a whole piece fits after it
            if np.isfinite(best[new]) and new > 0:
                candidates = np.append(candidates, new)
        bounds, end = [n], n
        while end > 0:
            end = int(previous[end])
            bounds.append(end)
        bounds = bounds[::-1]
    pieces = []
    for first, stop in zip(bounds[:-1], bounds[1:]):
        px, py = x[first:stop], y[first:stop]
        slope, intercept = np.polyfit(px, py, 1) if np.ptp(px) > 0 else (0.0, float(py.mean()))
        pieces.append(Piece(first, stop - 1, float(slope), float(intercept)))
    return pieces


def _window_medians(steps: np.ndarray, losses: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    groups = np.array_split(np.arange(len(losses)), max(1, round(len(losses) / window)))
    return (np.array([np.median(steps[g]) for g in groups]), np.array([np.median(losses[g]) for g in groups]))


def default_window(points: int) -> int:
    """Steps per median: about 200 medians for a long curve, at least 5 steps each (and 12 medians)."""
    return max(1, min(max(5, math.ceil(points / 200)), points // 12))


def find_drops(steps, losses, window: int | None = None, ratio: float = 4.0, min_sigmas: float = 6.0,
               penalty: float = 4.0) -> list[Drop]:
    """The sudden falls of a loss curve (see the module docstring), in step order.

    ``window``: steps per median (default :func:`default_window`); ``ratio``: how many times faster
    than the stretches on both sides a drop must fall; ``min_sigmas``: its least size in noise units;
    ``penalty``: PELT's cost of one more piece, in noise^2 x ln(medians).
    """
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1:
        raise ConfigError(f"steps {steps.shape} and losses {losses.shape}: two 1-d sequences of one length")
    keep = np.isfinite(steps) & np.isfinite(losses)
    order = np.argsort(steps[keep], kind="stable")
    steps, losses = steps[keep][order], losses[keep][order]
    window = window or default_window(len(losses))
    x, y = _window_medians(steps, losses, window)
    if len(y) < 12:
        return []  # too short a curve to tell a drop from its neighbourhood
    noise = robust_noise(y)
    noise = max(noise, 1e-9 * max(float(np.ptp(y)), 1e-12))  # a noise-free curve: any real fall is a drop
    pieces = segment_linear(x, y, penalty * noise ** 2 * math.log(len(y)))
    accepted = []
    for a in range(len(pieces) - 1):
        for b in range(a + 1, len(pieces)):
            drop = _drop_between(pieces, a, b, x, noise, ratio, min_sigmas)
            if drop is not None:
                accepted.append((a, b, drop))
    chosen: list[tuple[int, int, Drop]] = []
    for a, b, drop in sorted(accepted, key=lambda found: -found[2].size):
        if all(b <= a2 or b2 <= a for a2, b2, _ in chosen):  # their steep parts do not overlap
            chosen.append((a, b, drop))
    smooth = rolling_median(losses, window)
    return sorted((_locate(drop, steps, smooth) for _, _, drop in chosen), key=lambda d: d.step)


def _drop_between(pieces: list[Piece], a: int, b: int, x: np.ndarray, noise: float, ratio: float,
                  min_sigmas: float) -> Drop | None:
    """The drop from the end of piece ``a`` to the start of piece ``b`` (the pieces between them steep),
    or None if it is not one."""
    left, right = pieces[a], pieces[b]
    start, end = x[left.last], x[right.first]
    before, after = left.at(start), right.at(end)
    size = before - after
    if size < min_sigmas * noise or end <= start:
        return None
    if min(x[left.last] - x[left.first], x[right.last] - x[right.first]) < end - start:
        return None  # a sudden drop is short beside the stretches around it
    neighbours = max(0.0, -left.slope, -right.slope)  # how fast the curve falls around it
    if size / (end - start) < ratio * neighbours:
        return None
    if any(-piece.slope < ratio * neighbours or -piece.slope <= 0 for piece in pieces[a + 1:b]):
        return None  # a slow stretch between: two drops, or none
    if left.at(x[left.first]) - after < min_sigmas * noise or before - right.at(x[right.last]) < min_sigmas * noise:
        return None  # the curve comes back: a spike, not a drop
    return Drop(float((start + end) / 2), float(start), float(end), float(size), float(before), float(after), noise)


def _locate(drop: Drop, steps: np.ndarray, smooth: np.ndarray) -> Drop:
    """``drop`` with ``step`` where the smoothed curve first falls below halfway within the drop."""
    halfway = (drop.before + drop.after) / 2
    inside = np.flatnonzero((steps >= drop.start) & (steps <= drop.end) & (smooth <= halfway))
    if len(inside) == 0:
        return drop
    return Drop(float(steps[inside[0]]), drop.start, drop.end, drop.size, drop.before, drop.after, drop.noise)


def drops_table(drops: list[Drop]) -> pd.DataFrame:
    """One row per drop: step, start, end, size, before, after, noise, sigmas."""
    columns = [*Drop.__dataclass_fields__, "sigmas"]
    return pd.DataFrame([{**asdict(d), "sigmas": d.sigmas} for d in drops], columns=columns)


__all__ = ["Drop", "Piece", "default_window", "drops_table", "find_drops", "robust_noise", "rolling_median",
           "segment_linear"]
