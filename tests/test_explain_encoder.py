"""The SSL encoder explained on a real (tiny) SwAV run: the similarity the maps explain is the cosine
of the features ``encode`` gives (or of SwAV's projections), every method maps both photos,
Integrated Gradients adds up to the change in similarity, and the maps are scored against the lesion
masks beside the random and edge baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rice_lab.data.zindi import CAMERAS
from rice_lab.errors import CheckpointError, ConfigError
from rice_lab.evaluate.encode import encode, plant_photos
from rice_lab.explain.attribution import METHODS, attribute
from rice_lab.explain.baselines import edge_map
from rice_lab.explain.encoder import (
    encoder_inputs,
    explain_similarity,
    load_similarity,
    pair_similarity,
    similarity_localisation,
)
from rice_lab.explain.metrics import LOCALISATION, score_table
from rice_lab.explain.photos import lesion_masks
from rice_lab.models.encoders import load_encoder
from rice_lab.ssl.model import load_swav_model
from tests.explain_classifier import diseased_plants, train_tiny_swav
from tests.test_explain_attribution import assert_maps_vary


@pytest.fixture(scope="module")
def swav_run(synth_root, tmp_path_factory):
    return train_tiny_swav(synth_root, tmp_path_factory.mktemp("ssl-explain") / "swav")


@pytest.fixture(scope="module")
def plants(synth_root):
    return diseased_plants(synth_root, 6)


def test_the_similarity_is_the_cosine_of_the_features_encode_gives(swav_run, plants):
    model, meta = load_similarity(swav_run)
    encoder = load_encoder(swav_run)
    assert meta["photo_height"] == encoder.photo_height == 32
    features = {c: encode(encoder, plant_photos(plants, c, 32), c) for c in CAMERAS}
    expected = F.cosine_similarity(features["rgb"], features["rgnir"])
    assert torch.allclose(pair_similarity(model, meta, plants), expected, atol=1e-5)
    # SwAV's projection: the head on those features
    projected, _ = load_similarity(swav_run, "projection")
    head = load_swav_model(swav_run).head
    with torch.no_grad():
        expected = F.cosine_similarity(head(features["rgb"]), head(features["rgnir"]))
    assert torch.allclose(pair_similarity(projected, meta, plants), expected, atol=1e-5)
    assert not torch.allclose(pair_similarity(projected, meta, plants), pair_similarity(model, meta, plants),
                              atol=1e-3)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_maps_both_photos_for_the_similarity(swav_run, plants, method):
    model, meta = load_similarity(swav_run)
    maps = explain_similarity(model, meta, plants, method)
    assert list(maps) == list(CAMERAS)
    inputs = encoder_inputs(plants, meta)
    for camera, x in zip(CAMERAS, inputs):
        assert maps[camera].shape == (len(plants), *x.shape[-2:]) and torch.isfinite(maps[camera]).all()
    assert_maps_vary(model, inputs, method, (maps["rgb"], maps["rgnir"]), target=0)


def test_integrated_gradients_add_up_to_the_change_in_similarity(swav_run, plants):
    model, meta = load_similarity(swav_run)
    rgb, rgnir = encoder_inputs(plants.head(3), meta)
    maps = attribute(model, (rgb, rgnir), "integrated-gradients", 0, n_steps=1024, internal_batch_size=512)
    with torch.no_grad():
        change = (model(rgb, rgnir) - model(torch.zeros_like(rgb), torch.zeros_like(rgnir)))[:, 0]
    total = maps[0].sum((1, 2)) + maps[1].sum((1, 2))
    assert torch.allclose(total, change, atol=0.01 * change.abs().max().item())


def test_the_maps_are_scored_against_the_lesions_beside_both_baselines(swav_run, plants):
    model, meta = load_similarity(swav_run)
    scores = similarity_localisation(model, meta, plants, methods=("saliency", "grad-cam"))
    assert list(scores.columns) == ["method", "camera", "plant_id", *LOCALISATION]
    assert len(scores) == 4 * len(CAMERAS) * len(plants)
    assert set(scores["method"]) == {"saliency", "grad-cam", "random", "edge"}
    masks = {c: lesion_masks(plants, c, meta["photo_height"]) for c in CAMERAS}
    saliency = explain_similarity(model, meta, plants, "saliency")
    inputs = dict(zip(CAMERAS, encoder_inputs(plants, meta)))
    for camera in CAMERAS:
        for method, maps in (("saliency", saliency[camera]), ("edge", edge_map(inputs[camera]))):
            rows = scores[(scores["method"] == method) & (scores["camera"] == camera)]
            assert list(rows["plant_id"]) == list(plants["plant_id"])
            for name, metric in LOCALISATION.items():
                assert np.allclose(rows[name], metric(maps, masks[camera]), equal_nan=True), (method, camera, name)
    table = score_table(scores, ["method", "camera"], list(LOCALISATION), resamples=300)
    assert len(table) == 4 * len(CAMERAS) * len(LOCALISATION)
    defined = table[table["images"] >= 2]
    assert len(defined) and ((defined["low"] <= defined["mean"]) & (defined["mean"] <= defined["high"])).all()
    ig = similarity_localisation(model, meta, plants.head(2), methods=("integrated-gradients",),
                                 options={"integrated-gradients": {"n_steps": 8}})
    assert set(ig["method"]) == {"integrated-gradients", "random", "edge"}


def test_a_classifier_run_or_an_unknown_embedding_is_one_line_error(swav_run, tmp_path):
    run = tmp_path / "classifier"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"kind": "finetune", "config": {}}))
    with pytest.raises(CheckpointError, match="a 'finetune' run, not a pre-training run") as caught:
        load_similarity(run)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="embedding='logits'"):
        load_similarity(swav_run, "logits")
