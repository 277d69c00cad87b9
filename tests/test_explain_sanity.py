"""Randomisation sanity checks on a real fine-tuned classifier: the cascade's order and copies, maps
of gradient methods falling apart as the model is randomised while the edge baseline (which ignores
the model) stays at 1, data randomisation against a shuffled-label twin, and the similarity
measures against scipy and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from rice_lab.errors import CheckpointError, ConfigError
from rice_lab.explain.attribution import attribute
from rice_lab.explain.photos import camera_photos, model_inputs
from rice_lab.explain.sanity import (
    MEASURES,
    cascade_order,
    cascading_randomisation,
    data_randomisation,
    map_similarity,
    randomised_models,
    scaled_magnitude,
    shuffled_label_pair,
    spearman,
    ssim,
)
from tests.explain_classifier import classifier, diseased_plants, train_tiny_classifier
from tests.test_explain_attribution import assert_unchanged, snapshot

CASCADE = ["head", "body.7", "body.6", "body.5", "body.4", "body.2", "body.1", "body.0"]  # body.3: a max-pool


@pytest.fixture(scope="module")
def runs(synth_root, tmp_path_factory):
    """A classifier and its twin trained on shuffled labels, from the same SwAV run."""
    out = tmp_path_factory.mktemp("sanity")
    real = train_tiny_classifier(synth_root, out)
    return real, train_tiny_classifier(synth_root, out, encoder=out / "swav", name="shuffled", shuffled_labels=True)


@pytest.fixture(scope="module")
def images(runs, synth_root):
    model, meta = classifier(runs[0])
    return model_inputs(camera_photos(diseased_plants(synth_root, 8), meta)["rgb"], "rgb", meta)


def parameters(model: nn.Module, layer: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.get_submodule(layer).parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# what is randomised, in which order, on what

def test_the_cascade_runs_from_the_head_down_through_the_body_blocks_that_hold_weights(runs):
    model, _ = classifier(runs[0])
    assert cascade_order(model) == CASCADE
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    assert cascade_order(plain) == ["4", "2", "0"]


def test_each_step_randomises_its_layer_and_those_above_it_on_a_copy(runs):
    model, _ = classifier(runs[0])
    before = snapshot(model)
    trained = {layer: parameters(model, layer) for layer in CASCADE}
    cascading = {}
    for step, (layer, changed) in enumerate(randomised_models(model)):
        assert layer == CASCADE[step] and changed is not model and not changed.training
        for k, other in enumerate(CASCADE):
            assert same(parameters(changed, other), trained[other]) == (k > step), (layer, other)
        cascading[layer] = parameters(changed, layer)
    for layer, alone in randomised_models(model, order="independent"):
        assert [other for other in CASCADE if not same(parameters(alone, other), trained[other])] == [layer]
        assert same(parameters(alone, layer), cascading[layer])  # seeded by the step, whatever the order
    head_again = next(randomised_models(model, seed=1))[1]
    assert not same(parameters(head_again, "head"), cascading["head"])
    assert_unchanged(model, before)
    with pytest.raises(ConfigError, match="layer 'body.99'.*cascade order: head, body.7"):
        next(randomised_models(model, ["head", "body.99"]))
    with pytest.raises(ConfigError, match="order='bottom-up'"):
        next(randomised_models(model, order="bottom-up"))


# ---------------------------------------------------------------------------------------------
# the check itself

@pytest.mark.parametrize("method", ["saliency", "integrated-gradients"])
def test_randomising_every_layer_breaks_a_gradient_method_s_maps(runs, images, method):
    model, _ = classifier(runs[0])
    before = snapshot(model)
    found = cascading_randomisation(model, images, method)
    assert found.layers == CASCADE and list(found.maps) == ["original", *CASCADE]
    assert torch.equal(found.maps["original"], attribute(model, images, method))  # the trained model's maps
    assert len(found.scores) == len(CASCADE) * len(images)
    table = found.table(resamples=500).set_index(["layer", "measure"])
    assert len(table) == len(CASCADE) * len(MEASURES) and (table["images"] == len(images)).all()
    assert ((table["low"] <= table["mean"]) & (table["mean"] <= table["high"])).all()
    everything = table.loc["body.0"]
    assert everything.loc["spearman_abs", "mean"] < 0.6 and everything.loc["ssim", "mean"] < 0.6
    assert everything.loc["spearman_abs", "high"] < 0.9  # the whole interval, not only the mean, is far from 1
    assert_unchanged(model, before)


@pytest.mark.parametrize("baseline", ["edge", "random"])
def test_a_map_that_ignores_the_model_survives_every_step(runs, images, baseline):
    """The control that shows the check can tell: nothing the cascade does reaches these maps."""
    model, _ = classifier(runs[0])
    table = cascading_randomisation(model, images, baseline).table(resamples=200)
    assert np.allclose(table["mean"], 1.0) and np.allclose(table["low"], 1.0)


def test_a_constant_map_has_no_rank_correlation_and_the_table_says_so(runs, images):
    model, _ = classifier(runs[0])
    flat = lambda model, x, targets: torch.zeros(x.shape[0], *x.shape[2:])  # noqa: E731
    table = cascading_randomisation(model, images, flat, layers=["head"]).table(resamples=200).set_index("measure")
    assert table.loc["spearman", "images"] == 0 and np.isnan(table.loc["spearman", "mean"])
    assert table.loc["ssim", "mean"] == pytest.approx(1.0)  # two all-zero maps are structurally alike


def test_options_reach_the_method_and_unknown_ones_fail_before_any_work(runs, images):
    model, _ = classifier(runs[0])
    # signed maps: a ReLU'd one may be all zero at both layers
    deep = cascading_randomisation(model, images[:2], "grad-cam", layers=["head"], relu=False)
    earlier = cascading_randomisation(model, images[:2], "grad-cam", layers=["head"], layer="body.6", relu=False)
    assert not torch.allclose(deep.maps["original"], earlier.maps["original"])
    with pytest.raises(ConfigError, match="n_steps do not apply to saliency"):
        cascading_randomisation(model, images, "saliency", n_steps=4)


def test_data_randomisation_compares_the_real_model_with_its_shuffled_label_twin(runs, images):
    model, shuffled, meta = shuffled_label_pair(*runs)
    found = data_randomisation(model, shuffled, images, "saliency")
    assert found.layers == ["shuffled-labels"]
    with torch.no_grad():
        predicted = model(images).argmax(1)  # the real model's class, explained by the twin too
    assert torch.equal(found.maps["shuffled-labels"], attribute(shuffled, images, "saliency", predicted))
    table = found.table(resamples=200).set_index("measure")
    assert (table["mean"] < 1 - 1e-3).all()  # another model, other maps...
    itself = data_randomisation(model, model, images, "saliency").table(resamples=200)
    assert np.allclose(itself["mean"], 1.0)  # ...which the same model would not give
    assert np.allclose(data_randomisation(model, shuffled, images, "edge").table(resamples=200)["mean"], 1.0)
    with pytest.raises(CheckpointError, match="a run with shuffled labels; give the real run first"):
        shuffled_label_pair(runs[1], runs[0])


# ---------------------------------------------------------------------------------------------
# the measures

def test_spearman_is_scipy_s_rank_correlation_per_image():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 9, 11))
    b = a + rng.normal(size=a.shape) * np.arange(5)[:, None, None]  # less alike image by image
    b[4] = np.round(b[4])  # ties share their ranks
    expected = [spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    assert np.allclose(spearman(a, b), expected)
    assert np.allclose(spearman(a, a), 1.0) and np.allclose(spearman(a, -a), -1.0)
    assert np.isnan(spearman(np.zeros((1, 4, 4)), a[:1, :4, :4])).all()
    with pytest.raises(ConfigError, match="one shape"):
        spearman(a, b[:, :3])


def test_ssim_is_scikit_image_s_structural_similarity(runs, images):
    rng = np.random.default_rng(1)
    a = rng.random((4, 20, 24))
    b = np.clip(a + 0.3 * rng.normal(size=a.shape), 0, 1)
    for win_size, data_range in ((7, 1.0), (5, 1.0), (7, 2.0)):
        expected = [structural_similarity(x, y, win_size=win_size, data_range=data_range) for x, y in zip(a, b)]
        assert np.allclose(ssim(a, b, data_range, win_size), expected, atol=1e-10)
    # on real maps, scaled as the checks compare them
    model, _ = classifier(runs[0])
    x = scaled_magnitude(attribute(model, images, "saliency"))
    y = scaled_magnitude(attribute(model, images, "integrated-gradients"))
    assert x.max() == pytest.approx(1.0) and x.min() >= 0
    expected = [structural_similarity(p, q, data_range=1.0) for p, q in zip(x, y)]
    assert np.allclose(map_similarity(attribute(model, images, "saliency"),
                                      attribute(model, images, "integrated-gradients"))["ssim"], expected, atol=1e-10)
    with pytest.raises(ConfigError, match="win_size=8"):
        ssim(a, b, win_size=8)
