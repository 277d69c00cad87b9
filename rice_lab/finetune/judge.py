"""``evaluate_run``: how good a fine-tuned classifier is on labelled plants, per camera and fused,
before and after its temperature, each number with a bootstrap interval over plants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rice_lab.data.zindi import CLASSES, read_test_labels, read_zindi
from rice_lab.evaluate.bootstrap import bootstrap_ci
from rice_lab.evaluate.calibration import EPSILON, expected_calibration_error, plot_reliability
from rice_lab.finetune.predictions import FUSED, predict
from rice_lab.runs import atomic_write_text, read_manifest


def labelled_plants(run_dir: str | Path, data: str | Path) -> tuple[pd.DataFrame, np.ndarray, str]:
    """(plants, class indices, which split): the test plants when the data has their labels, else the
    run's validation plants (which chose its epoch, TTA and temperature, so they flatter it)."""
    plants = read_zindi(data, check_images=False)
    if (Path(data) / "TestLabels.csv").is_file():
        test = plants[plants["split"] == "test"]
        labels = read_test_labels(data).loc[test["plant_id"]]
        return test, np.array([CLASSES.index(c) for c in labels]), "test"
    valid_ids = set(read_manifest(run_dir).get("plants", {}).get("valid", []))
    valid = plants[plants["plant_id"].isin(valid_ids)]
    return valid, np.array([CLASSES.index(c) for c in valid["label"]]), "valid (no test labels; optimistic)"


def f1_per_class(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class (0 where a class is neither predicted nor present)."""
    out = np.zeros(n_classes)
    for c in range(n_classes):
        tp = np.sum((predicted == c) & (labels == c))
        denominator = np.sum(predicted == c) + np.sum(labels == c)
        out[c] = 2 * tp / denominator if denominator else 0.0
    return out


def _scores(labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, resamples: int, seed: int) -> dict:
    n_classes = raw.shape[1]
    rows = np.column_stack([labels, raw, calibrated])  # one row per plant: resampled together
    lab = lambda r: r[:, 0].astype(int)  # noqa: E731
    before = lambda r: r[:, 1:1 + n_classes]  # noqa: E731
    after = lambda r: r[:, 1 + n_classes:]  # noqa: E731

    def loss(probs: np.ndarray, y: np.ndarray) -> float:
        return float(-np.log(np.clip(probs[np.arange(len(y)), y], EPSILON, 1 - EPSILON)).mean())

    statistics = {
        "accuracy": lambda r: float((before(r).argmax(1) == lab(r)).mean()),
        "log_loss": lambda r: loss(before(r), lab(r)),
        "log_loss_calibrated": lambda r: loss(after(r), lab(r)),
        "ece": lambda r: expected_calibration_error(lab(r), before(r)),
        "ece_calibrated": lambda r: expected_calibration_error(lab(r), after(r)),
    }
    for c, name in enumerate(CLASSES):
        statistics[f"f1_{name}"] = lambda r, c=c: float(f1_per_class(lab(r), before(r).argmax(1), n_classes)[c])
    out = {}
    for name, statistic in statistics.items():
        ci = bootstrap_ci(rows, statistic, resamples=resamples, seed=seed)
        out[name] = {"estimate": ci.estimate, "low": ci.low, "high": ci.high}
    predicted = raw.argmax(1)
    out["confusion"] = [[int(np.sum((labels == t) & (predicted == p))) for p in range(n_classes)]
                        for t in range(n_classes)]
    return out


def evaluate_run(run_dir: str | Path, data: str | Path, resamples: int = 1000, seed: int = 0) -> dict:
    """Score a fine-tuning run on labelled plants; writes ``evaluation.json`` and ``evaluation.png``.

    Per view (each camera, fused probabilities, fused logits): accuracy, per-class F1, log loss and
    top-label ECE before and after the run's temperature, each with a 95 % bootstrap interval over
    plants, and the confusion matrix (rows: true class, columns: predicted, in ``classes`` order).
    """
    run_dir = Path(run_dir)
    plants, labels, split = labelled_plants(run_dir, data)
    found = predict(run_dir, plants)
    report = {"split": split, "plants": len(labels), "classes": list(CLASSES), "tta": found.tta,
              "temperatures": found.temperatures, "epsilon": EPSILON, "resamples": resamples, "views": {}}
    for view, raw in found.raw.items():
        report["views"][view] = _scores(labels, raw.to_numpy(), found.plants[view].to_numpy(), resamples, seed)
    atomic_write_text(json.dumps(report, indent=2) + "\n", run_dir / "evaluation.json")
    _figure(labels, found, report, run_dir / "evaluation.png")
    return report


def _figure(labels: np.ndarray, found, report: dict, path: Path) -> None:
    # A Figure of its own, drawn without pyplot: works headless and leaves the caller's backend alone
    # (switching it to Agg here once silenced every later inline figure of a notebook).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4))
    axes = fig.subplots(1, 3)
    plot_reliability(labels, found.raw[FUSED].to_numpy(), ax=axes[0], title="fused, raw")
    plot_reliability(labels, found.plants[FUSED].to_numpy(), ax=axes[1],
                     title=f"fused, T = {found.temperatures[FUSED]:.2f}")
    confusion = np.array(report["views"][FUSED]["confusion"])
    axes[2].imshow(confusion, cmap="Blues")
    for (t, p), count in np.ndenumerate(confusion):
        axes[2].text(p, t, str(count), ha="center", va="center")
    axes[2].set(xticks=range(len(CLASSES)), xticklabels=CLASSES, yticks=range(len(CLASSES)), yticklabels=CLASSES,
                xlabel="predicted", ylabel="true", title=f"fused, {report['split']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


__all__ = ["evaluate_run", "f1_per_class", "labelled_plants"]
