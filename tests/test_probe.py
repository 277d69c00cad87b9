"""Probes answer "what do these features carry?" for the disease label or any other column."""

import numpy as np
import pandas as pd
import pytest
import torch

from rice_lab.data.zindi import read_zindi
from rice_lab.errors import ConfigError
from rice_lab.models import create_encoder
from rice_lab.ssl.probe import knn_accuracy, labelled_split, linear_probe_accuracy


@pytest.fixture(scope="module")
def plants_with_background(synth_root):
    """The fixture plants with the synthetic ``background`` (soil, paddy or canopy) and a shuffled copy."""
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
    plants = plants_with_background
    assert knn_accuracy(random_encoder, plants, target="background", size=64) >= 0.6
    assert linear_probe_accuracy(random_encoder, plants, camera="rgnir", target="background", size=64) >= 0.6
    assert knn_accuracy(random_encoder, plants, target="shuffled", size=64) <= 0.45
    assert linear_probe_accuracy(random_encoder, plants, camera="rgnir", target="shuffled", size=64) <= 0.45


def test_probe_split_is_by_plant_and_stratified_on_the_target(plants_with_background):
    split = labelled_split(plants_with_background, 0.3, seed=0, target="background")
    assert len(split) == len(plants_with_background) and split["plant_id"].is_unique
    for _, group in split.groupby("background"):
        assert group["is_valid"].any() and (~group["is_valid"]).any()
    # the default target keeps the disease label's split (the one the book's figures use)
    by_label = labelled_split(plants_with_background, 0.3, seed=0)
    assert by_label.groupby("label")["is_valid"].sum().tolist() == [5, 5, 5]


def test_probe_for_a_missing_column_names_it(plants_with_background, random_encoder):
    with pytest.raises(ConfigError, match="'soil_type' is not a column"):
        knn_accuracy(random_encoder, plants_with_background, target="soil_type")
