"""Which views make SwAV learn the leaf: pre-training arms that change what two views share, read out.

    arm_config(data, out, arm, seed)          -> the PretrainConfig of one run (``out/runs/<arm>-s<seed>``)
    loss_levels(run_dir, n_prototypes)        -> where its training loss ended, beside ln K
    read_out(run_dir, data)                   -> one run's probes: disease (frozen linear, per camera and
                                                 fused, at each label share; kNN) and background (kNN),
                                                 each beside the same network at step 0
    views_experiment(data, out, arms, seeds)  -> views.csv (a row per run), views_summary.csv (per arm:
                                                 mean and 95 % interval over seeds), views_paired.csv
                                                 (each arm minus today's recipe, paired by seed), views.png,
                                                 views.json (what was run)

The arms name their views and crop settings in full, so "today" stays the recipe the course started from
whatever the preset's default becomes. Runs are reused or resumed from ``out/runs`` (never deleted).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from rice_lab.errors import ConfigError
from rice_lab.presets import PretrainConfig, get_preset

KEEP = {"background": "keep", "leaf_centred": False}
# arm name -> which camera each crop comes from, and crop settings (rice_lab.data.views.CropSpec)
ARMS: dict[str, dict] = {
    "today": {"views": "paired", "crops": KEEP},
    "swap": {"views": "paired", "crops": {**KEEP, "background": "swap"}},
    "noise": {"views": "paired", "crops": {**KEEP, "background": "noise"}},
    "leaf-centred": {"views": "paired", "crops": {**KEEP, "leaf_centred": True}},
    # Views from one camera: the pairs share the leaf's colours as well as its shape.
    "rgb": {"views": "rgb", "crops": KEEP},
    "rgb+swap": {"views": "rgb", "crops": {**KEEP, "background": "swap"}},
}
FRACTIONS = (0.1, 1.0)
LABEL_SEEDS = range(5)  # label subsets per share (rice_lab.finetune.data.assign_roles)
BASELINE = "today"


def arm_config(data: str | Path, out: str | Path, arm: str, seed: int, preset: str = "cpu-tiny",
               epochs: int | None = None, threads: int | None = 1, overrides: dict | None = None) -> PretrainConfig:
    """The pre-training config of one arm and seed: ``preset`` (with ``overrides``, the same for
    every arm) and the arm's views and crop settings."""
    if arm not in ARMS:
        raise ConfigError(f"unknown views arm {arm!r}; choose from {', '.join(ARMS)}")
    overrides = dict(overrides or {})
    crops = {**overrides.pop("crops", {}), **ARMS[arm]["crops"]}
    return get_preset(preset, **{"progress": False, **overrides}, data=str(data),
                      out=str(Path(out) / "runs" / f"{arm}-s{seed}"), seed=seed, epochs=epochs, crops=crops,
                      views=ARMS[arm]["views"], threads=threads)


def read_out(run_dir: str | Path, data: str | Path, fractions=FRACTIONS, label_seeds=LABEL_SEEDS) -> dict:
    """One pre-training run's read-outs, for its final encoder and its step-0 network.

    ``probe_<share>`` / ``probe_<share>_<camera>``: fused / per-camera test accuracy of a logistic
    regression on frozen features fitted on the label subsets of that share (mean over
    ``label_seeds``; see :func:`rice_lab.finetune.experiments.frozen_probe`); ``knn_<camera>``:
    cosine kNN accuracy for the disease and ``background_<camera>`` for the synthetic data's ground
    type (held-out training plants); the same with ``step0_`` in front for the untrained network.
    """
    from rice_lab.data.zindi import CAMERAS, read_zindi
    from rice_lab.evaluate.probes import knn_accuracy
    from rice_lab.explain.embeddings import with_metadata
    from rice_lab.finetune.experiments import frozen_probe
    from rice_lab.models.encoders import load_encoder, load_encoder_weights
    from rice_lab.runs import list_checkpoints

    run_dir, data = Path(run_dir), Path(data)
    final = load_encoder(run_dir)
    step0 = load_encoder_weights(load_encoder(run_dir), list_checkpoints(run_dir)[0])
    plants = read_zindi(data)
    has_background = (data / "metadata.csv").is_file()
    if has_background:
        plants = with_metadata(plants, data)
    row: dict = {}
    for prefix, encoder in (("", final), ("step0_", step0)):
        table = frozen_probe(data, {"encoder": encoder}, fractions=fractions, seeds=label_seeds)
        for fraction, group in table.groupby("fraction"):
            share = f"{prefix}probe_{fraction:g}"
            row[share] = float(group["accuracy"].mean())
            row.update({f"{share}_{c}": float(group[f"accuracy_{c}"].mean()) for c in CAMERAS})
        for camera in CAMERAS:
            row[f"{prefix}knn_{camera}"] = knn_accuracy(encoder, plants, camera).accuracy
            if has_background:
                row[f"{prefix}background_{camera}"] = knn_accuracy(encoder, plants, camera,
                                                                   target="background").accuracy
    return row


def views_experiment(data: str | Path, out: str | Path, arms=tuple(ARMS), seeds=range(3), preset: str = "cpu-tiny",
                     epochs: int | None = None, threads: int | None = 1, fractions=FRACTIONS,
                     label_seeds=LABEL_SEEDS, overrides: dict | None = None) -> dict[str, pd.DataFrame]:
    """Pre-train every arm x seed (same steps and schedule), read each run out and write the tables
    and figure under ``out`` (see the module's docstring). An experiment stopped part-way resumes.

    ``overrides``: pre-training settings changed from the preset for every arm (e.g. smaller photos)."""
    from rice_lab.finetune.experiments import _finish, _Log
    from rice_lab.ssl.pretrain import cached_pretrain

    out = Path(out)
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise ConfigError(f"unknown views arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    rows, cells = [], [(arm, seed) for seed in seeds for arm in arms]
    log = _Log("views", len(cells))
    for arm, seed in cells:
        config = arm_config(data, out, arm, seed, preset, epochs, threads, overrides)
        start = time.monotonic()
        run_dir = cached_pretrain(config)
        row = {"arm": arm, "seed": seed, "pretrain_seconds": _run_seconds(run_dir),
               **loss_levels(run_dir, config.swav.n_prototypes),
               **_cached_read_out(out / "readouts" / f"{arm}-s{seed}.json", run_dir, data, fractions, label_seeds)}
        rows.append(row)
        log.cell(f"{arm} seed {seed}", time.monotonic() - start,
                 f"fused probe {row[f'probe_{max(fractions):g}']:.3f} with {max(fractions):.0%} of the labels")
    table = pd.DataFrame(rows)
    summary, paired = summarise_views(table), paired_differences(table)
    out.mkdir(parents=True, exist_ok=True)
    _finish(out, "views", {"views": table, "views_summary": summary, "views_paired": paired},
            plot_views(summary, fractions),
            {"data": str(data), "arms": {arm: ARMS[arm] for arm in arms}, "seeds": list(seeds), "preset": preset,
             "epochs": epochs, "overrides": overrides or {}, "fractions": list(fractions),
             "label_seeds": list(label_seeds), "seconds": log.seconds})
    return {"views": table, "views_summary": summary, "views_paired": paired}


def _cached_read_out(path: Path, run_dir: Path, data, fractions, label_seeds) -> dict:
    """:func:`read_out`, kept in ``path`` with what it was computed from (the encoder file's checksum,
    the data's fingerprint, the shares and label seeds) and reused while those match."""
    import hashlib
    import json

    from rice_lab.data.zindi import data_fingerprint, read_zindi
    from rice_lab.runs import atomic_write_text

    key = {"encoder_sha256": hashlib.sha256((run_dir / "encoder.pt").read_bytes()).hexdigest(),
           "data": data_fingerprint(read_zindi(data)), "fractions": [float(f) for f in fractions],
           "label_seeds": [int(s) for s in label_seeds]}
    if path.is_file():
        try:
            kept = json.loads(path.read_text())
            if kept.get("key") == key:
                return kept["read_out"]
        except (ValueError, KeyError):
            pass  # unreadable: computed again, and written over (it is only a cache of this experiment's)
    row = read_out(run_dir, data, fractions, label_seeds)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps({"key": key, "read_out": row}, indent=1) + "\n", path)
    return row


def loss_levels(run_dir: Path, n_prototypes: int) -> dict:
    """The training loss's median over the last 5 % of the steps, and that minus ln K: near 0 means
    the run ended at uniform predictions (the collapse that ground-free cross-camera views meet)."""
    from rice_lab.explain.dynamics import training_curve

    curve = training_curve(run_dir)
    end = float(curve["loss"].iloc[-max(1, len(curve) // 20):].median())
    return {"loss_end": end, "loss_end_over_log_k": end - float(np.log(n_prototypes))}


def _run_seconds(run_dir: Path) -> float:
    """Wall time of a run: from its manifest's creation to its encoder's writing (a resumed run's
    pause counts too, so compare runs made in one go)."""
    from datetime import datetime

    from rice_lab.runs import read_manifest

    created = datetime.fromisoformat(read_manifest(run_dir)["created"]).timestamp()
    return float((run_dir / "encoder.pt").stat().st_mtime - created)


def _metrics(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("arm", "seed")]


def summarise_views(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm (in the table's order): seeds, and each metric's mean with its 95 % interval over seeds."""
    from rice_lab.finetune.experiments import summarise

    return summarise(table, ["arm"], _metrics(table))


def paired_differences(table: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each arm minus ``baseline`` on the same pre-training seeds: per metric, mean and 95 % interval."""
    from rice_lab.finetune.experiments import mean_ci

    if baseline not in set(table["arm"]):
        return pd.DataFrame(columns=["arm", "metric", "seeds", "difference", "low", "high"])
    base = table[table["arm"] == baseline].set_index("seed")
    rows = []
    for arm, group in table[table["arm"] != baseline].groupby("arm", sort=False):
        group = group.set_index("seed")
        common = group.index.intersection(base.index)
        for metric in _metrics(table):
            diff = (group.loc[common, metric] - base.loc[common, metric]).dropna()
            if len(diff):
                mean, low, high = mean_ci(diff)
                rows.append({"arm": arm, "metric": metric, "seeds": len(diff), "difference": mean,
                             "low": low, "high": high})
    return pd.DataFrame(rows)


def plot_views(summary: pd.DataFrame, fractions=FRACTIONS):
    """Per arm: fused disease probe at each label share and the background probe, 95 % intervals."""
    import matplotlib.pyplot as plt

    panels = [(f"probe_{f:g}", f"disease, linear probe, {f:.0%} of labels") for f in fractions]
    panels.append(("background_rgb", "ground type, kNN (RGB)"))
    panels = [(metric, title) for metric, title in panels if metric in summary]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    y = np.arange(len(summary))
    for axis, (metric, title) in zip(axes[0], panels):
        low = summary[metric] - summary[f"{metric}_low"]
        high = summary[f"{metric}_high"] - summary[metric]
        axis.errorbar(summary[metric], y, xerr=np.nan_to_num([low, high]), fmt="o", color="#0072B2", capsize=3)
        step0 = f"step0_{metric}"
        if step0 in summary:
            axis.plot(summary[step0], y, "x", color="#D55E00", label="same network, step 0")
        axis.set_yticks(y, summary["arm"])
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("test accuracy" if metric.startswith("probe") else "held-out accuracy")
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


__all__ = ["ARMS", "arm_config", "loss_levels", "paired_differences", "plot_views", "read_out", "summarise_views",
           "views_experiment"]
