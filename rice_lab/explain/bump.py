"""The bump experiment: SwAV runs in which a plateau may give way to a second descent, repeated over
seeds and with the suspected cause (the queue) moved, every loss curve summarised in numbers.

    arm_config(data, out, arm, seed)       -> the PretrainConfig of one run
    curve_summary(steps, losses, ...)      -> the numbers of one loss curve: plateau, descent, drops
    bump_experiment(data, out, seeds, arms)-> bump.csv (one row per run), bump_summary.csv (per arm),
                                              bump_curves.csv (each curve, smoothed), bump.png

The lead configuration is ``cpu-tiny`` with far more prototypes than a batch of 32 can balance
(1,024) and a queue of 32 batches, trained 150 epochs (2,400 steps), three times the book's run.
Arms move the queue: from half-way (the original's 0.5), from a quarter, never.

Two readings of "a drop", both from :func:`rice_lab.explain.changepoints.find_drops`: a **sudden
drop** (its defaults: at least 4 times as fast as the stretches either side), and a **second
descent** (the same detector asking only twice as fast): the largest such fall after the first
fifth of the run, where the fast start of every curve is over.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rice_lab.errors import ConfigError
from rice_lab.presets import PretrainConfig, get_preset

# arm name -> SwAV settings changed from the lead configuration
ARMS: dict[str, dict] = {
    "queue-half": {"queue_start": 0.5},
    "queue-quarter": {"queue_start": 0.25},
    "queue-never": {"queue_factor": 0},
}
LEAD = {"n_prototypes": 1024, "queue_factor": 32, "queue_start": 0.5}
EPOCHS = 150
CHECKPOINT_EVERY = 50
SUDDEN_RATIO, DESCENT_RATIO = 4.0, 2.0
CURVE_WINDOW = 8  # steps per point of bump_curves.csv (their median)
AFTER_START = 0.2  # a second descent begins after this share of the run


def arm_config(data: str | Path, out: str | Path, arm: str, seed: int, epochs: int = EPOCHS,
               threads: int | None = 1) -> PretrainConfig:
    """The pre-training config of one arm and seed; its run lives in ``out/runs/<arm>-s<seed>``."""
    if arm not in ARMS:
        raise ConfigError(f"unknown bump arm {arm!r}; choose one of {', '.join(ARMS)}")
    return get_preset("cpu-tiny", data=str(data), out=str(Path(out) / "runs" / f"{arm}-s{seed}"), seed=seed,
                      epochs=epochs, swav={**LEAD, **ARMS[arm]}, checkpoint_every=CHECKPOINT_EVERY,
                      threads=threads, progress=False)


def queue_start_step(config: PretrainConfig, total_steps: int) -> int | None:
    """The step from which the queue fills (it is used once full), or None without a queue."""
    swav = config.swav
    if not swav.queue_factor or swav.queue_start >= 1:
        return None
    return int(swav.queue_start * total_steps)


def curve_summary(steps, losses) -> dict:
    """One loss curve in numbers: its start (first 1 % of the steps), plateau (30-45 % of the way) and
    end (last 5 %) levels, each a median; the count of sudden drops; the largest second descent after the first fifth of
    the run (step, start, end, size; NaN when none) and the plateau's fall over the same number of
    steps just before that descent began."""
    from rice_lab.explain.changepoints import find_drops

    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(steps, kind="stable")
    steps, losses, total = steps[order], losses[order], steps.max()

    def level(a: float, b: float) -> float:  # the median of that share of the steps (one step at least)
        first = min(int(a * len(losses)), len(losses) - 1)
        return float(np.median(losses[first:max(int(b * len(losses)), first + 1)]))

    row = {"steps": int(total), "loss_start": level(0, 0.01), "loss_plateau": level(0.3, 0.45),
           "loss_end": level(0.95, 1.0), "sudden_drops": len(find_drops(steps, losses, ratio=SUDDEN_RATIO))}
    later = [d for d in find_drops(steps, losses, ratio=DESCENT_RATIO) if d.start >= AFTER_START * total]
    descent = max(later, key=lambda d: d.size, default=None)
    row.update(descent_step=np.nan, descent_start=np.nan, descent_end=np.nan, descent_size=np.nan,
               plateau_fall_before=np.nan)
    if descent is not None:
        span = descent.end - descent.start
        row.update(descent_step=descent.step, descent_start=descent.start, descent_end=descent.end,
                   descent_size=descent.size,
                   plateau_fall_before=_median_at(steps, losses, descent.start - span) - descent.before)
    return row


def _median_at(steps: np.ndarray, losses: np.ndarray, at: float, half: int = 24) -> float:
    """The loss's median over ``half`` steps either side of step ``at``."""
    near = np.abs(steps - at) <= half
    return float(np.median(losses[near])) if near.any() else float("nan")


def bump_experiment(data: str | Path, out: str | Path, seeds=range(5), arms=tuple(ARMS), epochs: int = EPOCHS,
                    threads: int | None = 1) -> dict[str, pd.DataFrame]:
    """Pre-train every arm x seed (reused or resumed from ``out/runs``, never deleted) and write
    ``bump.csv`` (:func:`curve_summary` of each run's training loss, with its queue start),
    ``bump_summary.csv`` (per arm: runs, runs with a sudden drop, runs with a second descent, and the
    median and range of the descent's step and size) and ``bump.png`` (every curve, smoothed, by arm)."""
    from rice_lab.explain.dynamics import training_curve
    from rice_lab.ssl.pretrain import cached_pretrain

    out = Path(out)
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise ConfigError(f"unknown bump arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    rows, curves, cells = [], [], [(arm, seed) for seed in seeds for arm in arms]
    for done, (arm, seed) in enumerate(cells, 1):
        config = arm_config(data, out, arm, seed, epochs, threads)
        start = time.monotonic()
        run_dir = cached_pretrain(config)
        curve = training_curve(run_dir)
        row = {"arm": arm, "seed": seed, **curve_summary(curve["step"], curve["loss"])}
        row["queue_start_step"] = queue_start_step(config, row["steps"])
        rows.append(row)
        curves.append(smoothed_curve(curve).assign(arm=arm, seed=seed))
        shown = "no second descent" if np.isnan(row["descent_step"]) else (
            f"second descent at step {row['descent_step']:.0f} (-{row['descent_size']:.3f})")
        print(f"[bump {done}/{len(cells)}] {arm} seed {seed}: {shown}, {row['sudden_drops']} sudden "
              f"({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)
    table, curves = pd.DataFrame(rows), pd.concat(curves, ignore_index=True)[["arm", "seed", "step", "loss"]]
    summary = summarise_arms(table)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bump.csv", index=False)
    summary.to_csv(out / "bump_summary.csv", index=False)
    curves.to_csv(out / "bump_curves.csv", index=False)
    figure = plot_bump(table, curves)
    figure.savefig(out / "bump.png", dpi=120, bbox_inches="tight")
    return {"bump": table, "bump_summary": summary, "bump_curves": curves}


def smoothed_curve(curve: pd.DataFrame, window: int = CURVE_WINDOW) -> pd.DataFrame:
    """A per-step loss curve as the medians of consecutive runs of ``window`` steps (step: their middle)."""
    groups = np.arange(len(curve)) // window
    return curve.groupby(groups).agg(step=("step", "median"), loss=("loss", "median")).reset_index(drop=True)


def summarise_arms(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm: runs, runs with a sudden drop, runs with a second descent, and the median, least and
    greatest descent step (as a share of the run too) and size."""
    rows = []
    for arm, group in table.groupby("arm", sort=False):
        found = group.dropna(subset=["descent_step"])
        share = found["descent_start"] / found["steps"]
        row = {"arm": arm, "runs": len(group), "with_sudden_drop": int((group["sudden_drops"] > 0).sum()),
               "with_second_descent": len(found)}
        for name, values in (("descent_start", found["descent_start"]), ("descent_start_share", share),
                             ("descent_size", found["descent_size"]), ("loss_end", group["loss_end"])):
            row[f"{name}_median"] = float(values.median()) if len(values) else np.nan
            row[f"{name}_min"] = float(values.min()) if len(values) else np.nan
            row[f"{name}_max"] = float(values.max()) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def plot_bump(table: pd.DataFrame, curves: pd.DataFrame, window: int = 6):
    """One panel per arm: each seed's training loss (``curves``: arm, seed, step, loss, as
    bump_curves.csv holds it) under a running median of ``window`` points, its second descent's start
    and end marked, the queue's start as a dotted line."""
    from matplotlib.figure import Figure

    from rice_lab.explain.changepoints import rolling_median

    arms = list(dict.fromkeys(table["arm"]))
    figure = Figure(figsize=(4.2 * len(arms), 3.4), layout="constrained")
    axes = figure.subplots(1, len(arms), sharey=True, squeeze=False)[0]
    for ax, arm in zip(axes, arms):
        for colour, (_, row) in zip(("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"),
                                    table[table["arm"] == arm].iterrows()):
            curve = curves[(curves["arm"] == arm) & (curves["seed"] == row["seed"])]
            smooth = rolling_median(curve["loss"].to_numpy(), window)
            ax.plot(curve["step"], smooth, color=colour, lw=1.2, label=f"seed {row['seed']}")
            if not np.isnan(row["descent_step"]):
                for at in (row["descent_start"], row["descent_end"]):
                    ax.plot(at, np.interp(at, curve["step"], smooth), "o", color=colour, ms=4)
        start = table.loc[table["arm"] == arm, "queue_start_step"].dropna()
        if len(start):
            ax.axvline(float(start.iloc[0]), color="0.4", ls=":", lw=1, label="queue starts")
        ax.set_title(arm)
        ax.set_xlabel("step")
    axes[0].set_ylabel("SwAV training loss (running median)")
    axes[-1].legend(fontsize=7)
    return figure


__all__ = ["ARMS", "arm_config", "bump_experiment", "curve_summary", "plot_bump", "queue_start_step",
           "smoothed_curve", "summarise_arms"]
