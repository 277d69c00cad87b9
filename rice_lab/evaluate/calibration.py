"""How trustworthy a classifier's probabilities are: log loss, calibration error, temperature scaling.

Everything works in float64 on NumPy arrays: ``probs`` is (n, classes) with rows summing to 1 and
``labels`` holds class indices. The challenge is scored on the mean log loss per plant, so every
function here is meant to be applied to exactly what is submitted (after TTA and camera fusion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rice_lab.errors import ConfigError

EPSILON = 1e-15  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the log (recorded in runs)
ECE_BINS = 15


def _as_arrays(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ConfigError(f"probabilities must be (n, classes) with one label per row; got shape "
                          f"{probs.shape} for {len(labels)} label(s)")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ConfigError(f"labels must be class indices in [0, {probs.shape[1]}); got {labels[:5]}...")
    return labels.astype(np.int64), probs


def log_loss(labels, probs, eps: float = EPSILON) -> float:
    """Mean multi-class log loss, probabilities clipped to ``[eps, 1 - eps]`` (no renormalisation).

    With ``eps`` = float64's machine epsilon this equals ``sklearn.metrics.log_loss``.
    """
    labels, probs = _as_arrays(labels, probs)
    true = np.clip(probs[np.arange(len(labels)), labels], eps, 1 - eps)
    return float(-np.log(true).mean())


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def expected_calibration_error(labels, probs, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over equal-width confidence bins, weighted by count.

    Bins are ``[k/n, (k+1)/n)`` (a confidence of exactly 1 is a bin of its own), as in torchmetrics'
    ``MulticlassCalibrationError(norm="l1")``.
    """
    labels, probs = _as_arrays(labels, probs)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    bins = _bin_of(confidence, n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins + 1) - np.bincount(bins, confidence, n_bins + 1))
    return float(gap.sum() / len(labels))


def _bin_of(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Index of each confidence's bin ``[k/n, (k+1)/n)``; index ``n_bins`` holds confidences of 1."""
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1), confidence, side="right") - 1


@dataclass(frozen=True)
class Reliability:
    """Per-bin mean confidence, accuracy and count: the points of a reliability diagram."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def reliability(labels, probs, n_bins: int = ECE_BINS) -> Reliability:
    """The reliability diagram's data (empty bins hold NaN; a confidence of 1 joins the last bin)."""
    labels, probs = _as_arrays(labels, probs)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    bins = np.minimum(_bin_of(confidence, n_bins), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, confidence, n_bins) / count
        accuracy = np.bincount(bins, (predicted == labels).astype(np.float64), n_bins) / count
    return Reliability(np.linspace(0, 1, n_bins + 1), mean_conf, accuracy, count)


def plot_reliability(labels, probs, ax=None, title: str = "", n_bins: int = ECE_BINS):
    """A reliability diagram: accuracy per confidence bin against the diagonal, with the ECE."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(4, 4))[1]
    data = reliability(labels, probs, n_bins)
    centres = (data.edges[:-1] + data.edges[1:]) / 2
    filled = data.count > 0
    ax.bar(centres[filled], data.accuracy[filled], width=1 / n_bins, edgecolor="black",
           color="#4477aa", label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "--", color="#555555", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top label)", ylabel="accuracy",
           title=f"{title} ECE {expected_calibration_error(labels, probs, n_bins):.3f}".strip())
    ax.legend(loc="upper left", fontsize=8)
    return ax


def fit_temperature(labels, logits, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T > 0 minimising the log loss of ``softmax(logits / T)`` (Guo et al. 2017).

    ``logits`` may be log-probabilities (e.g. the log of fused, TTA-averaged probabilities): scaling
    them by 1/T and renormalising is the same family. One scalar, so accuracy never changes.
    """
    from scipy.optimize import minimize_scalar

    labels, logits = _as_arrays(labels, logits)

    def loss(log_t: float) -> float:
        return log_loss(labels, softmax(logits, float(np.exp(log_t))))

    found = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def as_logits(probs, eps: float = EPSILON) -> np.ndarray:
    """Log-probabilities (clipped at ``eps``): the logits that temperature scaling rescales."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0))


__all__ = ["ECE_BINS", "EPSILON", "Reliability", "as_logits", "expected_calibration_error",
           "fit_temperature", "log_loss", "plot_reliability", "reliability", "softmax"]
