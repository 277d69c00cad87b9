"""Experiments over many fine-tuning runs, each written as a table (CSV) and a figure with 95 % intervals.

- :func:`label_efficiency`: test accuracy and log loss against the share of labelled training plants,
  per encoder start and mode;
- :func:`sensors`: encoders pre-trained on paired, RGB-only and RG-NIR-only views, each fine-tuned and
  scored per camera and fused on the same test plants, with paired bootstrap intervals of differences;
- :func:`self_distillation`: a student on its teacher's soft predictions against that teacher, for a
  teacher trained with and without label smoothing;
- :func:`leakage`: validation log loss on a photo-level split and on a plant-level split, each beside
  the test log loss of the same run.

Every run is an ordinary fine-tuning run directory under ``OUT/runs/``, made by ``cached_finetune``: an
interrupted experiment continues where it stopped, a finished one is re-read. Runs go seed by seed,
so an experiment stopped part-way has its first seeds whole. Intervals over seeds
are Student-t intervals of the mean (each seed repeats the experiment); intervals of a difference on
the same plants are paired bootstraps over plants. Test labels are read here, for scoring only, and
never reach a run; a data folder without them (the real challenge) gets labelled plants held out of
its training plants (:func:`held_out_folder`).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from rice_lab.data.zindi import CAMERAS, CLASSES, data_fingerprint, read_zindi, split_plants
from rice_lab.errors import ConfigError
from rice_lab.evaluate.bootstrap import bootstrap_ci
from rice_lab.evaluate.calibration import EPSILON
from rice_lab.finetune.config import FinetuneConfig, get_preset
from rice_lab.finetune.data import PhotoSamples
from rice_lab.finetune.predictions import FUSED, load_classifier, photo_probs, predict
from rice_lab.finetune.train import cached_finetune
from rice_lab.runs import atomic_write_text, read_manifest, read_metrics, set_aside

FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
VIEWS = ("rgb", "rgnir", FUSED)
STYLES = [("#0072B2", "o", "-"), ("#D55E00", "s", "--"), ("#009E73", "^", ":"), ("#CC79A7", "D", "-."),
          ("#E69F00", "v", "-"), ("#56B4E9", "P", "--")]  # Okabe-Ito colour + marker + line style


# ---------------------------------------------------------------------------------------------
# Labelled test plants, and scoring a run on them
# ---------------------------------------------------------------------------------------------

def held_out_folder(data: str | Path, out: str | Path, pct: float = 0.2, seed: int = 0) -> Path:
    """A Zindi folder at ``out`` whose test plants are ``pct`` of ``data``'s labelled training plants
    (split by plant, stratified by class) with their labels in ``TestLabels.csv``; photos are linked,
    not copied. Reused when it already holds this split; a folder made otherwise is set aside."""
    out = Path(out)
    plants = read_zindi(data, check_images=False)
    train = plants[plants["split"] == "train"]
    stamp = {"source": str(Path(data).resolve()), "fingerprint": data_fingerprint(train), "pct": pct, "seed": seed}
    if (out / "held_out.json").is_file() and json.loads((out / "held_out.json").read_text()) == stamp:
        return out
    if out.exists():
        print(f"rice-lab: {out} holds another held-out split; moved it to {set_aside(out)}", file=sys.stderr)
    marked = split_plants(train, pct, seed)
    (out / "images").mkdir(parents=True)
    rows = {"Train": [], "Test": []}
    for plant in marked.itertuples():
        for camera in CAMERAS:
            source = Path(getattr(plant, camera))
            (out / "images" / source.name).symlink_to(source.resolve())
            rows["Test" if plant.is_valid else "Train"].append((source.name, plant.label))
    pd.DataFrame(rows["Train"], columns=["Image_id", "Label"]).to_csv(out / "Train.csv", index=False)
    test = pd.DataFrame(rows["Test"], columns=["Image_id", "Label"])
    test[["Image_id"]].to_csv(out / "Test.csv", index=False)
    test.to_csv(out / "TestLabels.csv", index=False)
    sample = test[["Image_id"]].assign(**{c: 1 / len(CLASSES) for c in CLASSES})
    sample[~sample["Image_id"].str.contains("_rgn")].to_csv(out / "SampleSubmission.csv", index=False)
    atomic_write_text(json.dumps(stamp, indent=2) + "\n", out / "held_out.json")
    return out


def scoring_data(data: str | Path, out: Path) -> Path:
    """``data`` if it has test labels, else a held-out folder under ``out`` (said on stderr)."""
    if (Path(data) / "TestLabels.csv").is_file():
        return Path(data)
    print(f"rice-lab: {data} has no TestLabels.csv; holding out 20 % of its labelled training plants as the "
          f"test plants ({out / 'data'})", file=sys.stderr)
    return held_out_folder(data, out / "data")


def test_truth(data: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(test plants, their class indices): the explicit, scoring-only read of the test labels."""
    plants = read_zindi(data, check_images=False, test_labels=True)
    test = plants[plants["split"] == "test"]
    return test, np.array([CLASSES.index(c) for c in test["test_label"]])


def per_plant(run_dir: Path, plants: pd.DataFrame, labels: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Each view's per-plant correctness and log loss (calibrated, as submitted) on labelled plants."""
    found = predict(run_dir, plants)
    out = {}
    for view in VIEWS:
        if view not in found.plants:
            continue
        probs = found.plants[view].to_numpy()
        out[view] = {"correct": (probs.argmax(1) == labels).astype(float),
                     "loss": -np.log(np.clip(probs[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON))}
    return out


def _run_facts(run_dir: Path) -> dict:
    """Labelled plants and optimiser steps of a finished run."""
    manifest = read_manifest(run_dir)
    metrics = read_metrics(run_dir)
    return {"labelled_plants": len(manifest["plants"]["train"]),
            "steps": int(metrics.loc[metrics["kind"] == "train", "step"].max())}


# ---------------------------------------------------------------------------------------------
# Summaries, tables and figures
# ---------------------------------------------------------------------------------------------

def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of repeated runs (NaN bounds for one run)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarise(table: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean and 95 % interval over seeds of each metric, one row per group of ``by``."""
    rows = []
    for key, group in table.groupby(by, sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)), seeds=len(group))
        for metric in metrics:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = mean_ci(group[metric])
        rows.append(row)
    return pd.DataFrame(rows)


class _Log:
    """One line per finished cell on stderr, and the experiment's wall time."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total, self.done, self.start = name, total, 0, time.monotonic()

    def cell(self, what: str, seconds: float, result: str) -> None:
        self.done += 1
        print(f"[{self.name} {self.done}/{self.total}] {what}: {result} ({seconds:.0f} s)", file=sys.stderr, flush=True)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.start


def _finish(out: Path, name: str, tables: dict[str, pd.DataFrame], figure, facts: dict) -> None:
    for stem, table in tables.items():
        table.to_csv(out / f"{stem}.csv", index=False)
    figure.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    atomic_write_text(json.dumps(facts, indent=2, default=str) + "\n", out / f"{name}.json")


def _base(data: Path, preset: str | FinetuneConfig, overrides: dict) -> FinetuneConfig:
    config = preset if isinstance(preset, FinetuneConfig) else get_preset(preset)
    return replace(config, data=str(data), progress=False, **overrides)


def _train(config: FinetuneConfig, out: Path, name: str) -> tuple[Path, float]:
    start = time.monotonic()
    run_dir = cached_finetune(replace(config, out=str(out / "runs" / name)))
    return run_dir, time.monotonic() - start


def _encoder_config(base: FinetuneConfig, spec: str) -> FinetuneConfig:
    """An encoder spec: a pre-training run directory, ``random``, or ``imagenet`` (timm weights, cached)."""
    if spec == "imagenet":
        return replace(base, encoder="random", pretrained=True)
    return replace(base, encoder=spec, pretrained=False)


# ---------------------------------------------------------------------------------------------
# The experiments
# ---------------------------------------------------------------------------------------------

def label_efficiency(data: str | Path, out: str | Path, encoders: dict[str, str],
                     fractions=FRACTIONS, seeds=range(5), modes=("probe", "discriminative"),
                     preset: str | FinetuneConfig = "cpu-tiny", min_steps: int = 200, **overrides) -> pd.DataFrame:
    """Fused test accuracy and log loss for every (encoder, mode, label fraction, seed); writes
    ``label_efficiency.csv``, ``label_efficiency_summary.csv``, ``.png`` and ``.json`` under ``out``.

    ``encoders``: a name for each start (a pre-training run, ``random`` or ``imagenet``). Small label
    sets train for at least ``min_steps`` optimiser steps; the kept epoch is chosen on validation.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = scoring_data(data, out)
    test, labels = test_truth(data)
    base = _base(data, preset, {"min_steps": min_steps, **overrides})
    # Seed by seed: an experiment stopped part-way has whole seeds done (rerun with fewer to see them).
    cells = list(itertools.product(seeds, encoders.items(), modes, fractions))
    log, rows = _Log("label-efficiency", len(cells)), []
    for seed, (name, spec), mode, fraction in cells:
        config = replace(_encoder_config(base, spec), mode=mode, labels_fraction=fraction, seed=seed)
        run_dir, seconds = _train(config, out, f"{name}-{mode}-f{fraction:g}-s{seed}")
        fused = per_plant(run_dir, test, labels)[FUSED]
        row = {"encoder": name, "mode": mode, "fraction": fraction, "seed": seed, **_run_facts(run_dir),
               "accuracy": fused["correct"].mean(), "log_loss": fused["loss"].mean(), "seconds": seconds}
        rows.append(row)
        log.cell(f"{name} {mode} {fraction:.0%} seed {seed}", seconds,
                 f"accuracy {row['accuracy']:.3f}, log loss {row['log_loss']:.3f}")
    table = pd.DataFrame(rows)
    summary = summarise(table, ["encoder", "mode", "fraction"], ["accuracy", "log_loss", "labelled_plants", "steps"])
    figure = plot_label_efficiency(summary)
    _finish(out, "label_efficiency", {"label_efficiency": table, "label_efficiency_summary": summary}, figure,
            {"data": str(data), "test_plants": len(labels), "encoders": encoders, "config": base.to_dict(),
             "seconds": log.seconds})
    return table


def frozen_probe(data: str | Path, encoders: dict, fractions=FRACTIONS, seeds=range(5), valid_pct: float = 0.2,
                 split_seed: int = 0) -> pd.DataFrame:
    """The label-efficiency question asked of frozen features alone, in seconds rather than hours.

    ``encoders``: {name: encoder module} (e.g. a pre-training run's ``load_encoder`` and its step-0
    checkpoint). Each camera's whole photo is embedded once (``rice_lab.evaluate.encode``, at the
    encoder's photo height); for every (fraction, seed) a logistic regression per camera
    (``linear_probabilities``) is fitted on the label subset the fine-tuning runs of that fraction and
    seed train on (:func:`rice_lab.finetune.data.assign_roles`), the two cameras' probabilities are
    averaged, and the test plants are scored: one row per (encoder, fraction, seed) with accuracy and
    log loss (fused) and each camera's own accuracy (``accuracy_rgb``, ``accuracy_rgnir``)."""
    from rice_lab.evaluate.encode import encode, plant_photos
    from rice_lab.evaluate.probes import linear_probabilities, probe_size
    from rice_lab.finetune.data import assign_roles

    data = Path(data)
    plants = read_zindi(data)
    test, labels = test_truth(data)
    test_rows = pd.Index(plants["plant_id"]).get_indexer(test["plant_id"])
    rows = []
    for name, encoder in encoders.items():
        size = probe_size(encoder)
        features = {camera: encode(encoder, plant_photos(plants, camera, size), camera, height=size)
                    for camera in CAMERAS}
        for fraction, seed in itertools.product(fractions, seeds):
            roles = assign_roles(plants, valid_pct, split_seed, fraction, seed)
            train = np.flatnonzero(roles["role"].to_numpy() == "train")  # row positions, as in plants
            codes = np.array([CLASSES.index(c) for c in roles["label"].to_numpy()[train]])
            per_camera = {c: linear_probabilities(features[c][train], codes, features[c][test_rows], len(CLASSES))
                          for c in CAMERAS}
            probs = np.mean(list(per_camera.values()), axis=0)
            chosen = np.clip(probs[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
            rows.append({"encoder": name, "mode": "frozen linear probe", "fraction": fraction, "seed": seed,
                         "labelled_plants": len(train),
                         "accuracy": float((probs.argmax(1) == labels).mean()), "log_loss": float(-np.log(chosen).mean()),
                         **{f"accuracy_{c}": float((p.argmax(1) == labels).mean()) for c, p in per_camera.items()}})
    return pd.DataFrame(rows)


def plot_label_efficiency(summary: pd.DataFrame):
    """Accuracy and log loss against the labelled share, one line per (encoder, mode), 95 % intervals."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (key, part), style in zip(summary.groupby(["encoder", "mode"], sort=False), itertools.cycle(STYLES)):
        for ax, metric in zip(axes, ("accuracy", "log_loss")):
            error = np.vstack([part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]])
            ax.errorbar(part["fraction"], part[metric], yerr=np.nan_to_num(error), color=style[0], marker=style[1],
                        ls=style[2], capsize=3, label=f"{key[0]}, {key[1]}")
    for ax, label in zip(axes, ("fused test accuracy", "fused test log loss (calibrated)")):
        ax.set_xscale("log")
        ax.set_xticks(sorted(summary["fraction"].unique()))
        ax.set_xticklabels([f"{f:.0%}" for f in sorted(summary["fraction"].unique())])
        ax.set_xlabel("labelled training plants")
        ax.set_ylabel(label)
    axes[0].axhline(1 / len(CLASSES), color="grey", lw=0.8, ls=":")
    axes[0].legend(fontsize=8)
    figure.suptitle("Label efficiency (mean and 95 % interval over label-subset seeds)")
    return figure


def sensors(data: str | Path, out: str | Path, encoders: dict[str, str], seeds=range(3),
            preset: str | FinetuneConfig = "cpu-tiny", resamples: int = 2000, **overrides) -> pd.DataFrame:
    """Each encoder (named by its pre-training views) fine-tuned on both cameras, scored RGB-only,
    RG-NIR-only and fused on the same test plants; writes ``sensors.csv``, ``sensors_summary.csv``,
    ``sensors_differences.csv`` (paired bootstrap over plants of each pair's difference, per-plant
    values averaged over seeds), ``sensors.png`` and ``sensors.json`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = scoring_data(data, out)
    test, labels = test_truth(data)
    base = _base(data, preset, overrides)
    cells = list(itertools.product(seeds, encoders.items()))
    log, rows, plants = _Log("sensors", len(cells)), [], {}
    for seed, (name, spec) in cells:
        run_dir, seconds = _train(replace(_encoder_config(base, spec), seed=seed), out, f"{name}-s{seed}")
        views = per_plant(run_dir, test, labels)
        for view, values in views.items():
            rows.append({"encoder": name, "seed": seed, "view": view, "accuracy": values["correct"].mean(),
                         "log_loss": values["loss"].mean(), "seconds": seconds})
            plants.setdefault((name, view), []).append(values)
        log.cell(f"{name} seed {seed}", seconds, ", ".join(f"{v} {views[v]['correct'].mean():.3f}" for v in views))
    table = pd.DataFrame(rows)
    summary = summarise(table, ["encoder", "view"], ["accuracy", "log_loss"])
    differences = []
    for (a, b), view in itertools.product(itertools.combinations(encoders, 2), VIEWS):
        if (a, view) not in plants or (b, view) not in plants:
            continue
        for metric, column in (("accuracy", "correct"), ("log_loss", "loss")):
            pa = np.mean([v[column] for v in plants[(a, view)]], axis=0)
            pb = np.mean([v[column] for v in plants[(b, view)]], axis=0)
            ci = bootstrap_ci(pa - pb, resamples=resamples, seed=0)
            differences.append({"a": a, "b": b, "view": view, "metric": metric, "a_minus_b": ci.estimate,
                                "low": ci.low, "high": ci.high})
    differences = pd.DataFrame(differences)
    _finish(out, "sensors", {"sensors": table, "sensors_summary": summary, "sensors_differences": differences},
            plot_sensors(summary), {"data": str(data), "test_plants": len(labels), "encoders": encoders,
                                    "config": base.to_dict(), "seconds": log.seconds})
    return table


def plot_sensors(summary: pd.DataFrame):
    """Accuracy and log loss per view, one group of bars per encoder, 95 % intervals over seeds."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    encoders = list(dict.fromkeys(summary["encoder"]))
    width = 0.8 / len(encoders)
    hatches = ["", "//", ".."]
    for i, (name, style) in enumerate(zip(encoders, itertools.cycle(STYLES))):
        part = summary[summary["encoder"] == name].set_index("view").reindex(list(VIEWS))
        x = np.arange(len(VIEWS)) + (i - (len(encoders) - 1) / 2) * width
        for ax, metric in zip(axes, ("accuracy", "log_loss")):
            error = np.vstack([part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]])
            ax.bar(x, part[metric], width, yerr=np.nan_to_num(error), color=style[0], hatch=hatches[i % 3],
                   edgecolor="black", capsize=3, label=f"pre-trained on {name} views")
    for ax, label in zip(axes, ("test accuracy", "test log loss (calibrated)")):
        ax.set_xticks(np.arange(len(VIEWS)), ["RGB photo", "RG-NIR photo", "fused"])
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    figure.suptitle("Which camera, which pre-training (mean and 95 % interval over seeds)")
    return figure


def self_distillation(data: str | Path, out: str | Path, encoder: str, seeds=range(3),
                      smoothing=(0.1, 0.0), preset: str | FinetuneConfig = "cpu-tiny", **overrides) -> pd.DataFrame:
    """For each teacher label smoothing (the control: 0) and seed: a teacher, then a student on its
    soft predictions (training, unlabelled and test photos), both scored on the test plants (fused,
    calibrated). Writes ``self_distillation.csv``, ``_summary.csv`` (the change in log loss, student
    minus teacher, with its 95 % interval over seeds), ``.png`` and ``.json`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = scoring_data(data, out)
    test, labels = test_truth(data)
    base = _encoder_config(_base(data, preset, overrides), encoder)
    cells = list(itertools.product(seeds, smoothing))
    log, rows = _Log("self-distillation", len(cells)), []
    for seed, ls in cells:
        teacher, t_seconds = _train(replace(base, label_smoothing=ls, seed=seed), out, f"teacher-ls{ls:g}-s{seed}")
        student, s_seconds = _train(replace(base, label_smoothing=0.0, teacher=str(teacher), seed=seed), out,
                                    f"student-of-ls{ls:g}-s{seed}")
        t, s = per_plant(teacher, test, labels)[FUSED], per_plant(student, test, labels)[FUSED]
        rows.append({"teacher_smoothing": ls, "seed": seed, "teacher_log_loss": t["loss"].mean(),
                     "student_log_loss": s["loss"].mean(), "change": s["loss"].mean() - t["loss"].mean(),
                     "teacher_accuracy": t["correct"].mean(), "student_accuracy": s["correct"].mean(),
                     "seconds": t_seconds + s_seconds})
        log.cell(f"teacher smoothing {ls:g} seed {seed}", t_seconds + s_seconds,
                 f"log loss {rows[-1]['teacher_log_loss']:.3f} -> {rows[-1]['student_log_loss']:.3f}")
    table = pd.DataFrame(rows)
    summary = summarise(table, ["teacher_smoothing"], ["change", "teacher_log_loss", "student_log_loss",
                                                       "teacher_accuracy", "student_accuracy"])
    _finish(out, "self_distillation", {"self_distillation": table, "self_distillation_summary": summary},
            plot_change(summary, "teacher_smoothing", "teacher label smoothing",
                         "change in test log loss (student - teacher)"),
            {"data": str(data), "test_plants": len(labels), "encoder": encoder, "config": base.to_dict(),
             "seconds": log.seconds})
    return table


def leakage(data: str | Path, out: str | Path, encoder: str, seeds=range(3),
            preset: str | FinetuneConfig = "cpu-tiny", **overrides) -> pd.DataFrame:
    """The same recipe validated on a plant-level and on a photo-level split (a validation plant's other
    photo in training): each run's per-photo validation log loss at its kept epoch beside its per-photo
    test log loss (no TTA, no temperature: what the validation pass measured). Writes ``leakage.csv``,
    ``leakage_summary.csv`` (``optimism`` = test - validation, 95 % interval over seeds), ``.png``, ``.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = scoring_data(data, out)
    test, labels = test_truth(data)
    base = _encoder_config(_base(data, preset, overrides), encoder)
    cells = list(itertools.product(seeds, ("plant", "photo")))
    log, rows = _Log("leakage", len(cells)), []
    for seed, split in cells:
        run_dir, seconds = _train(replace(base, photo_split=split == "photo", seed=seed), out, f"{split}-split-s{seed}")
        valid_loss = kept_validation_loss(run_dir)
        test_loss = photo_log_loss(run_dir, test, labels)
        rows.append({"split": split, "seed": seed, "valid_log_loss": valid_loss, "test_log_loss": test_loss,
                     "optimism": test_loss - valid_loss, "seconds": seconds})
        log.cell(f"{split} split seed {seed}", seconds, f"validation {valid_loss:.3f}, test {test_loss:.3f}")
    table = pd.DataFrame(rows)
    summary = summarise(table, ["split"], ["valid_log_loss", "test_log_loss", "optimism"])
    _finish(out, "leakage", {"leakage": table, "leakage_summary": summary},
            plot_change(summary, "split", "validation split", "test minus validation log loss (per photo)"),
            {"data": str(data), "test_plants": len(labels), "encoder": encoder, "config": base.to_dict(),
             "seconds": log.seconds})
    return table


def kept_validation_loss(run_dir: Path) -> float:
    """The per-photo validation log loss the run logged at the epoch it kept."""
    metrics = read_metrics(run_dir)
    kept = int(json.loads((Path(run_dir) / "calibration.json").read_text())["kept_epoch"])
    valid = metrics[(metrics["kind"] == "valid") & (metrics["epoch"] == kept - 1)]
    return float(valid["loss"].iloc[-1])


def photo_log_loss(run_dir: Path, plants: pd.DataFrame, labels: np.ndarray) -> float:
    """Per-photo log loss of a run's kept classifier on labelled plants (no TTA, no temperature)."""
    model, meta = load_classifier(run_dir)
    samples = PhotoSamples(plants, tuple(meta["cameras"]), meta["photo_height"], labels=False)
    probs = photo_probs(model, meta, samples.images, samples.camera)
    y = np.repeat(labels, len(meta["cameras"]))
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], EPSILON, 1 - EPSILON)).mean())


def plot_change(summary: pd.DataFrame, by: str, xlabel: str, ylabel: str):
    """The change (self-distillation) or optimism (leakage) of each group, 95 % interval over seeds."""
    import matplotlib.pyplot as plt

    metric = "change" if "change" in summary else "optimism"
    figure, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(summary))
    error = np.vstack([summary[metric] - summary[f"{metric}_low"], summary[f"{metric}_high"] - summary[metric]])
    ax.errorbar(x, summary[metric], yerr=np.nan_to_num(error), fmt="o", color=STYLES[0][0], capsize=4)
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, [str(v) for v in summary[by]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("mean and 95 % interval over seeds")
    return figure


__all__ = ["FRACTIONS", "held_out_folder", "label_efficiency", "leakage", "mean_ci", "per_plant", "plot_change",
           "frozen_probe", "plot_label_efficiency", "plot_sensors", "scoring_data",
           "self_distillation", "sensors", "summarise", "test_truth"]
