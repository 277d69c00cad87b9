"""The two difficulty baselines: they run on a Zindi table, score the test split, and are seeded."""

from __future__ import annotations

import numpy as np
import pytest

from rice_lab.data import read_zindi
from rice_lab.data.baselines import (
    colour_histogram_baseline,
    colour_histograms,
    load_stack,
    train_small_cnn,
    train_test_tables,
)
from rice_lab.errors import DataError


@pytest.fixture(scope="module")
def plants(synth_root):
    return read_zindi(synth_root)


def test_histograms_are_fractions_per_channel():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 6, 10, 12), dtype=np.uint8)
    features = colour_histograms(images, bins=8)
    assert features.shape == (3, 6 * 8)
    assert np.allclose(features.reshape(3, 6, 8).sum(axis=2), 1.0)
    black = np.zeros((1, 3, 4, 4), dtype=np.uint8)
    assert colour_histograms(black, bins=4)[0].tolist() == [1, 0, 0, 0] * 3


def test_stack_has_both_cameras_as_channels(plants):
    stack = load_stack(plants.head(3))
    assert stack.shape == (3, 6, 51, 64) and stack.dtype == np.uint8


def test_train_test_tables_use_the_labelled_test_split_or_hold_out(plants):
    train, test = train_test_tables(plants)
    assert set(train["split"]) == {"train"} and set(test["split"]) == {"test"}
    unlabelled = plants.assign(label=plants["label"].where(plants["split"] == "train"))
    train, valid = train_test_tables(unlabelled)
    assert set(train["split"]) == set(valid["split"]) == {"train"}
    assert not set(train["plant_id"]) & set(valid["plant_id"])
    with pytest.raises(DataError):
        train_test_tables(plants.assign(label=None))


def test_histogram_baseline_returns_an_accuracy(plants):
    accuracy = colour_histogram_baseline(plants)
    assert 0.0 <= accuracy <= 1.0


def test_small_cnn_is_seeded_and_reports_its_budget(plants):
    first = train_small_cnn(plants, epochs=2, seed=1)
    second = train_small_cnn(plants, epochs=2, seed=1)
    assert first.epochs == 2 and 0.0 <= first.accuracy <= 1.0
    assert (first.accuracy, first.train_accuracy) == (second.accuracy, second.train_accuracy)
    timed = train_small_cnn(plants, seconds=2, seed=1)
    assert timed.seconds < 10
