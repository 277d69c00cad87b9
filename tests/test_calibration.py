"""Log loss, ECE and temperature scaling agree with scikit-learn and torchmetrics on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sklearn_log_loss
from torchmetrics.classification import MulticlassCalibrationError

from rice_lab.errors import ConfigError
from rice_lab.evaluate.calibration import (
    as_logits,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability,
    softmax,
)


def _case(seed: int, n: int = 500, classes: int = 3, sharpness: float = 3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + sharpness * np.eye(classes)[labels] * rng.random((n, 1))
    return labels, softmax(logits)


@pytest.mark.parametrize("seed", range(5))
def test_log_loss_equals_sklearn(seed: int) -> None:
    labels, probs = _case(seed)
    ours = log_loss(labels, probs, eps=np.finfo(np.float64).eps)
    assert ours == pytest.approx(sklearn_log_loss(labels, probs, labels=[0, 1, 2]), rel=1e-12)


def test_log_loss_clipping_is_explicit() -> None:
    labels = np.array([0, 1])
    probs = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # one confident miss
    assert log_loss(labels, probs, eps=1e-15) == pytest.approx(-np.log(1e-15) / 2)
    assert log_loss(labels, probs, eps=1e-3) == pytest.approx((-np.log(1 - 1e-3) - np.log(1e-3)) / 2)
    assert log_loss(labels, probs, eps=np.finfo(float).eps) == pytest.approx(
        sklearn_log_loss(labels, probs, labels=[0, 1, 2]), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ece_equals_torchmetrics(seed: int) -> None:
    labels, probs = _case(seed)
    metric = MulticlassCalibrationError(num_classes=3, n_bins=15, norm="l1")
    expected = float(metric(torch.from_numpy(probs), torch.from_numpy(labels)))
    # torchmetrics bins float32 confidences; ours are float64: equal to float32 precision
    assert expected_calibration_error(labels, probs) == pytest.approx(expected, abs=1e-6)


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model() -> None:
    labels = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.1, 0.1], (10, 1))  # 80 % confident, 80 % right
    assert expected_calibration_error(labels, calibrated) == pytest.approx(0.0, abs=1e-12)
    overconfident = np.tile([0.99, 0.005, 0.005], (10, 1))
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.19)
    data = reliability(labels, calibrated)
    assert data.count.sum() == 10 and np.nanmax(data.accuracy) == pytest.approx(0.8)


def test_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 2
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    # A model that reports the right logits, over-confident by a factor of 2.5
    temperature = fit_temperature(labels, true_logits * 2.5)
    assert temperature == pytest.approx(2.5, rel=0.08)
    before = log_loss(labels, softmax(true_logits * 2.5))
    after = log_loss(labels, softmax(true_logits * 2.5, temperature))
    assert after < before


def test_temperature_never_changes_the_predicted_class() -> None:
    labels, probs = _case(3)
    logits = as_logits(probs)
    temperature = fit_temperature(labels, logits)
    assert (softmax(logits, temperature).argmax(1) == probs.argmax(1)).all()
    assert log_loss(labels, softmax(logits, temperature)) <= log_loss(labels, probs) + 1e-12


def test_bad_shapes_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="one label per row"):
        log_loss([0, 1], np.ones((3, 3)) / 3)
    with pytest.raises(ConfigError, match="class indices"):
        log_loss([0, 5], np.ones((2, 3)) / 3)
