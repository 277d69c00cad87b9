"""Probes answer "what do these features carry?" for the disease label or any other column, compare
two encoders plant by plant, and use the training plants only unless told otherwise."""

import numpy as np
import pandas as pd
import pytest
import torch

from rice_lab.data.zindi import read_zindi
from rice_lab.errors import ConfigError
from rice_lab.evaluate import (compare_encoders, cross_val_correct, knn_accuracy, labelled_split,
                               linear_probe_accuracy)
from rice_lab.models import create_encoder


@pytest.fixture(scope="module")
def plants_with_background(synth_root):
    """The fixture plants with the synthetic ``background`` (soil, paddy or canopy) and a shuffled copy.

    The background is known for every plant, test plants included, so these probes ask for every
    plant explicitly (``split=None``).
    """
    meta = pd.read_csv(synth_root / "metadata.csv").query("camera == 'rgb'")[["plant_id", "background"]]
    plants = read_zindi(synth_root).merge(meta, on="plant_id")
    plants["shuffled"] = np.random.default_rng(0).permutation(plants["background"].to_numpy())
    return plants


@pytest.fixture(scope="module")
def random_encoder():
    torch.manual_seed(0)
    return create_encoder("xresnet-tiny")


def test_probes_find_what_the_photos_show_and_not_what_they_do_not(plants_with_background, random_encoder):
    # Even random convolutional features tell bare soil from water from other leaves; they cannot
    # predict the same values dealt to the wrong plants. Majority class: 23 of 48 plants (0.48).
    plants, every = plants_with_background, {"size": 64, "split": None}
    assert knn_accuracy(random_encoder, plants, target="background", **every).accuracy >= 0.6
    assert linear_probe_accuracy(random_encoder, plants, camera="rgnir", target="background", **every).accuracy >= 0.6
    assert knn_accuracy(random_encoder, plants, target="shuffled", **every).accuracy <= 0.45
    assert linear_probe_accuracy(random_encoder, plants, camera="rgnir", target="shuffled", **every).accuracy <= 0.45


def test_probe_split_is_by_plant_and_stratified_on_the_target(plants_with_background):
    split = labelled_split(plants_with_background, 0.3, seed=0, target="background", split=None)
    assert len(split) == len(plants_with_background) and split["plant_id"].is_unique
    for _, group in split.groupby("background"):
        assert group["is_valid"].any() and (~group["is_valid"]).any()
    # the default target is the disease label, known for training plants only (34 of them here)
    by_label = labelled_split(plants_with_background, 0.3, seed=0)
    assert set(by_label["split"]) == {"train"} and len(by_label) == 34
    assert by_label.groupby("label")["is_valid"].sum().tolist() == [3, 3, 4]  # 30 % of 11, 11 and 12


def test_probe_for_a_missing_column_names_it(plants_with_background, random_encoder):
    with pytest.raises(ConfigError, match="'soil_type' is not a column"):
        knn_accuracy(random_encoder, plants_with_background, target="soil_type")


def test_cross_validation_never_scores_a_plant_it_was_fitted_on():
    # Random features, random labels: a 1-nearest-neighbour would be always right on plants it had
    # seen (each is its own neighbour), and is at chance on plants it has not.
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 16, generator=generator)
    labels = np.random.default_rng(0).integers(0, 3, 300)
    for probe in ("knn", "linear"):
        correct = cross_val_correct(features, labels, probe, folds=5, k=1)
        assert correct.shape == (300,) and 0.2 < correct.mean() < 0.47
    # features that carry the label are read by both probes
    informative = features + 4 * torch.nn.functional.one_hot(torch.from_numpy(labels), 16).float()
    assert cross_val_correct(informative, labels, "knn").mean() > 0.9
    assert cross_val_correct(informative, labels, "linear").mean() > 0.9


class Blind(torch.nn.Module):
    """An "encoder" whose features do not depend on the photo."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.ones(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1)


def test_compare_encoders_gives_paired_gains_with_their_standard_error(plants_with_background, random_encoder):
    table = compare_encoders({"blind": Blind(), "random": random_encoder, "random again": random_encoder},
                             plants_with_background, baseline="blind", size=64, target="background", split=None)
    assert len(table) == 3 * 2 * 2 and set(table.probe) == {"knn", "linear"}
    n = len(plants_with_background)
    assert (table.plants == n).all() and (table.split == "all").all() and len(table.attrs["plant_ids"]) == n
    assert np.allclose(table.accuracy * n, (table.accuracy * n).round())  # every plant scored once
    same = table[table.encoder == "blind"]
    assert (same.gain == 0).all() and (same.gain_se == 0).all()
    # the same network twice: identical predictions, so identical rows
    a = table[table.encoder == "random"].reset_index(drop=True)
    b = table[table.encoder == "random again"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="encoder"), b.drop(columns="encoder"))
    # random convolutional features read the background; blind ones cannot, and the gain is clear
    assert (a.gain > 2 * a.gain_se).all() and (a.gain_se > 0).all()
    with pytest.raises(ConfigError, match="baseline 'init'"):
        compare_encoders({"random": random_encoder}, plants_with_background, baseline="init")


# --- which plants a probe may use ---------------------------------------------------------------

@pytest.fixture(scope="module")
def leaky_plants(synth_root):
    """Plants whose ``label`` also holds the test plants' labels, as the reader once delivered them."""
    plants = read_zindi(synth_root, test_labels=True)
    return plants.assign(label=plants["label"].fillna(plants["test_label"]))


def test_probes_fit_and_score_training_plants_only_and_say_so(leaky_plants, random_encoder):
    train_ids = set(leaky_plants.loc[leaky_plants["split"] == "train", "plant_id"])
    for probe in (knn_accuracy, linear_probe_accuracy):
        result = probe(random_encoder, leaky_plants, size=64)
        assert (result.split, result.target) == ("train", "label")
        assert set(result.plant_ids) == train_ids and result.fitted + result.scored == len(train_ids)
    table = compare_encoders({"random": random_encoder, "again": random_encoder}, leaky_plants, baseline="random",
                             size=64, cameras=("rgb",))
    assert set(table.attrs["plant_ids"]) == train_ids and (table.plants == len(train_ids)).all()
    assert (table.split == "train").all()


def test_probing_the_test_split_is_an_explicit_choice(synth_root, random_encoder):
    plants = read_zindi(synth_root, test_labels=True)
    with pytest.raises(ConfigError, match="test_labels=True"):
        knn_accuracy(random_encoder, plants, size=64, split="test")  # test plants have no `label`
    result = knn_accuracy(random_encoder, plants, size=64, split="test", target="test_label", k=3)
    test_ids = set(plants.loc[plants["split"] == "test", "plant_id"])
    assert set(result.plant_ids) == test_ids and result.split == "test"
    with pytest.raises(ConfigError, match="split='everything'"):
        knn_accuracy(random_encoder, plants, split="everything")
