"""Linear CKA checked against its definition, Kornblith et al.'s reference code and torch-cka; the
invariances it must have and the one it must not; its permutation baseline; effective rank; and CKA
between checkpoints, layers and cameras of a real tiny SwAV run."""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rice_lab.data.zindi import read_zindi
from rice_lab.errors import ConfigError
from rice_lab.evaluate.encode import plant_photos
from rice_lab.explain.similarity import (MinibatchCKA, batch_slices, camera_cka, checkpoint_cka, cka, compare,
                                         effective_rank, layer_cka, linear_cka, minibatch_cka, probe_accuracy)
from rice_lab.models.encoders import create_encoder, load_encoder
from rice_lab.presets import get_preset as pretrain_preset
from rice_lab.ssl.pretrain import pretrain


def features(rows: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, width))


def related(rows: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two feature sets of the same rows: y a noisy linear read-out of x, of another width."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 40)) * np.linspace(3, 0.2, 40)  # an uneven spectrum, as real features have
    return x, x @ rng.normal(size=(40, 24)) + 0.5 * rng.normal(size=(rows, 24))


# --- Kornblith et al. 2019, re-typed from the authors' published colab (representation_similarity/Demo.ipynb)

def gram_linear(x):
    return x.dot(x.T)


def center_gram(gram, unbiased=False):
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def colab_cka(gram_x, gram_y, debiased=False):
    gram_x = center_gram(gram_x, unbiased=debiased)
    gram_y = center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y))


def feature_space_linear_cka(features_x, features_y):
    features_x = features_x - np.mean(features_x, 0, keepdims=True)
    features_y = features_y - np.mean(features_y, 0, keepdims=True)
    dot_product_similarity = np.linalg.norm(features_x.T.dot(features_y)) ** 2
    normalization_x = np.linalg.norm(features_x.T.dot(features_x))
    normalization_y = np.linalg.norm(features_y.T.dot(features_y))
    return dot_product_similarity / (normalization_x * normalization_y)


# --- Nguyen, Raghu & Kornblith 2021, eq. (3) and the mini-batch CKA above it, written out literally

def hsic1_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones((n, 1))
    return float((np.trace(k @ l) + (one.T @ k @ one).item() * (one.T @ l @ one).item() / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (one.T @ k @ l @ one).item()) / (n * (n - 3)))


def minibatch_cka_by_definition(batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    xy = np.mean([hsic1_by_definition(x, y) for x, y in batches])
    xx = np.mean([hsic1_by_definition(x, x) for x, _ in batches])
    yy = np.mean([hsic1_by_definition(y, y) for _, y in batches])
    return float(xy / np.sqrt(xx * yy))


def test_full_form_equals_the_published_reference_code():
    x, y = related()
    expected = colab_cka(gram_linear(x), gram_linear(y))
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(feature_space_linear_cka(x, y), abs=1e-12)
    # more features than rows: computed through the Gram matrices instead, still the same number
    wide = features(30, 100, 1)
    narrow = wide[:, :7] + 0.1 * features(30, 7, 2)
    assert linear_cka(wide, narrow) == pytest.approx(colab_cka(gram_linear(wide), gram_linear(narrow)), abs=1e-12)
    assert cka(wide, narrow, "full", permutations=3).cka == linear_cka(wide, narrow)


def test_minibatch_form_equals_the_papers_definition_and_the_debiased_reference():
    x, y = related(rows=240)
    batches = batch_slices(240, 64, seed=3)
    assert [len(b) for b in batches] == [60, 60, 60, 60]  # equal batches, no short last one
    expected = minibatch_cka_by_definition([(x[b.numpy()], y[b.numpy()]) for b in batches])
    assert minibatch_cka(x, y, batch_size=64, seed=3) == pytest.approx(expected, abs=1e-12)
    # one batch of every row is the unbiased full-batch CKA: the colab's debiased form
    debiased = colab_cka(gram_linear(x), gram_linear(y), debiased=True)
    assert minibatch_cka(x, y, batch_size=240) == pytest.approx(debiased, abs=1e-12)
    assert minibatch_cka(x, y, batch_size=240) != pytest.approx(linear_cka(x, y), abs=1e-3)  # not the biased one


@contextmanager
def float64_default():
    """torch-cka makes its ones-vectors in the default dtype: float64 lets it run in double precision."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def torch_cka_value(x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """torch-cka 0.21 (PyPI, test-only) on the same features, read out through identity layers."""
    torch_cka = pytest.importorskip("torch_cka")
    side_a, side_b = nn.Sequential(nn.Identity()), nn.Sequential(nn.Identity())
    meter = torch_cka.CKA(side_a, side_b, "a", "b", model1_layers=["0"], model2_layers=["0"])
    loader_x = DataLoader(TensorDataset(torch.tensor(x)), batch_size=batch_size)
    loader_y = DataLoader(TensorDataset(torch.tensor(y)), batch_size=batch_size)
    with float64_default():
        meter.compare(loader_x, loader_y)
    return float(meter.export()["CKA"][0, 0])


def test_minibatch_form_equals_torch_cka_on_the_same_batches():
    x, y = related(rows=256)
    ours = minibatch_cka(x, y, batch_size=64, seed=None)  # rows in order, as the DataLoaders give them
    assert ours == pytest.approx(torch_cka_value(x, y, 64), abs=1e-10)
    unrelated = features(256, 24, 5)
    assert minibatch_cka(x, unrelated, batch_size=64, seed=None) == pytest.approx(
        torch_cka_value(x, unrelated, 64), abs=1e-10)


def test_layer_cka_equals_torch_cka_through_forward_hooks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[2].weight.mul_(torch.rand_like(other[2].weight))
    inputs = torch.randn(96, 3, 10, 10)
    layers = ["0", "2", "4"]
    ours = layer_cka(net, inputs, layers, model_b=other, batch_size=32, seed=None, permutations=0)
    torch_cka = pytest.importorskip("torch_cka")
    theirs = torch_cka.CKA(copy.deepcopy(net).double(), copy.deepcopy(other).double(), "a", "b",
                           model1_layers=layers, model2_layers=layers)
    loader = DataLoader(TensorDataset(inputs.double()), batch_size=32)
    with float64_default():
        theirs.compare(loader, loader)
    matrix = ours.pivot(index="layer_a", columns="layer_b", values="cka").loc[layers, layers].to_numpy()
    # ours runs the models in float32 and the CKA in float64; torch-cka everything in float64
    np.testing.assert_allclose(matrix, theirs.export()["CKA"].numpy(), atol=1e-5)
    # our hooks are gone, the models untouched
    assert all(not m._forward_hooks for m in net.modules()) and all(not m._forward_hooks for m in other.modules())


@pytest.mark.parametrize("form", ["full", "minibatch"])
def test_cka_ignores_rotations_scale_and_shifts_but_not_other_linear_maps(form):
    x, y = related()
    value = cka(x, y, form, batch_size=80, permutations=0).cka
    rotation, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(24, 24)))
    assert cka(x, 3.5 * y @ rotation, form, batch_size=80, permutations=0).cka == pytest.approx(value, abs=1e-10)
    if form == "full":  # centring removes a shift exactly; the unbiased estimator only in expectation
        assert cka(x + 10.0, y, form, permutations=0).cka == pytest.approx(value, abs=1e-10)
    assert cka(x, x, form, batch_size=80, permutations=0).cka == pytest.approx(1.0, abs=1e-12)
    assert cka(x, 2 * x @ np.linalg.qr(np.random.default_rng(8).normal(size=(40, 40)))[0], form, batch_size=80,
               permutations=0).cka == pytest.approx(1.0, abs=1e-10)
    # an invertible but anisotropic map changes it: one direction stretched 30 times
    stretch = np.eye(40)
    stretch[0, 0] = 30.0
    isotropic = features(400, 40, 9)
    assert cka(isotropic, isotropic @ stretch, form, batch_size=100, permutations=0).cka < 0.5


def test_permutation_baseline_sits_near_zero_for_unrelated_features_and_far_below_related_ones():
    x = features(512, 64, 0)
    unrelated = features(512, 32, 1)
    result = cka(x, unrelated, "minibatch", batch_size=128, permutations=30)
    assert abs(result.cka) < 0.05 and abs(result.baseline) < 0.02
    assert result.baseline_low < result.cka < result.baseline_high or abs(result.cka - result.baseline) < 0.03
    assert result.permutations == 30 and result.rows == 512
    x, y = related(rows=512)
    strong = cka(x, y, "minibatch", batch_size=128, permutations=30)
    assert strong.cka > 0.5 and strong.baseline_high < 0.05


def test_full_form_needs_its_baseline_when_features_outnumber_rows():
    # 48 rows (a plant table's size), 256 unrelated features: the biased CKA is far from 0, and the
    # shuffled rows give the same value, which is what says "unrelated".
    x, unrelated = features(48, 256, 0), features(48, 256, 1)
    result = cka(x, unrelated, "full", permutations=40)
    assert result.cka > 0.4 and result.baseline > 0.4
    assert abs(result.cka - result.baseline) < 0.05  # within a few baseline widths: nothing beyond chance
    assert abs(cka(x, unrelated, "minibatch", batch_size=48, permutations=0).cka) < 0.1


def test_minibatch_accumulates_batch_by_batch():
    x, y = related(rows=200)
    meter = MinibatchCKA(permutations=5, seed=1)
    for rows in batch_slices(200, 50, seed=None):
        meter.update(torch.tensor(x[rows.numpy()]), torch.tensor(y[rows.numpy()]))
    result = meter.result()
    assert result.rows == 200 and result.permutations == 5
    assert result.cka == pytest.approx(minibatch_cka(x, y, batch_size=50, seed=None), abs=1e-12)
    # a baseline draw is the CKA of the rows of y shuffled: the same shuffle, done by hand
    single = MinibatchCKA(permutations=1, seed=4)
    single.update(x, y)
    shuffle = torch.randperm(200, generator=torch.Generator().manual_seed(4)).numpy()
    assert single.result().baseline == pytest.approx(minibatch_cka(x, y[shuffle], batch_size=200, seed=None),
                                                     abs=1e-12)


def test_cka_refuses_what_it_cannot_compute():
    x = features(20, 5, 0)
    with pytest.raises(ConfigError, match="20 rows against 19"):
        cka(x, x[:19])
    with pytest.raises(ConfigError, match="at least 4"):
        cka(x, x, batch_size=3)
    with pytest.raises(ConfigError, match="form='cca'"):
        cka(x, x, form="cca")
    with pytest.raises(ConfigError, match="no batch"):
        MinibatchCKA().result()
    constant = np.ones((20, 5))
    assert math.isnan(linear_cka(x, constant)) and math.isnan(minibatch_cka(x, constant))


def test_effective_rank_of_known_matrices():
    assert effective_rank(np.eye(6)) == pytest.approx(6.0)
    assert effective_rank(np.outer(np.arange(1, 9), np.arange(1, 5))) == pytest.approx(1.0)
    # singular values 3 and 1: probabilities 3/4 and 1/4
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(np.diag([3.0, 1.0, 0.0])) == pytest.approx(expected)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    assert effective_rank(5 * rotation @ np.diag([3.0, 1.0, 0.0])) == pytest.approx(expected)
    assert effective_rank(np.zeros((4, 3))) == 0.0
    # a constant offset on every row adds a direction, which centring takes away again
    shifted = np.vstack([np.eye(4)] * 3) + 5.0
    assert effective_rank(shifted) != pytest.approx(effective_rank(shifted, center=True))
    assert effective_rank(np.vstack([np.eye(4)] * 3), center=True) == pytest.approx(3.0)


def test_probe_accuracy_and_compare_report_the_functional_side():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 30)
    separated = rng.normal(size=(90, 8)) + 6 * np.eye(8)[np.repeat([0, 1, 2], 30)]
    noise = rng.normal(size=(90, 8))
    assert probe_accuracy(separated, labels) > 0.95
    assert probe_accuracy(noise, labels) < 0.6
    result = compare(separated, noise, labels, permutations=5, batch_size=45)
    assert result.accuracy[0] > 0.95 > 0.6 > result.accuracy[1]
    assert result.row()["accuracy_a"] == result.accuracy[0] and result.row()["cka"] == result.similarity.cka
    with pytest.raises(ConfigError, match="two rows each"):
        probe_accuracy(noise[:4], ["a", "a", "a", "b"])


# --- on a real tiny SwAV run

@pytest.fixture(scope="module")
def swav_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("similarity") / "swav"
    return pretrain(pretrain_preset("cpu-tiny", data=str(synth_root), out=str(out), epochs=1, batch_size=8,
                                    photo_height=32, crops={"size": 32}, progress=False, threads=1,
                                    checkpoint_every=0, resume_every=0))


@pytest.fixture(scope="module")
def plants(synth_root):
    return read_zindi(synth_root)


def test_checkpoint_cka_of_a_real_run(swav_run, plants):
    photos = plant_photos(plants, "rgb", 32)
    known = plants["label"].notna()
    labelled = torch.tensor(known.to_numpy())
    same = checkpoint_cka(swav_run, swav_run, photos, "rgb", permutations=5, batch_size=48)
    assert same.similarity.cka == pytest.approx(1.0, abs=1e-9)
    torch.manual_seed(0)
    start = create_encoder("xresnet-tiny")
    start.normalization, start.photo_height = load_encoder(swav_run).normalization, 32
    moved = checkpoint_cka(start, swav_run, photos[labelled], "rgb", labels=plants["label"][known].tolist(),
                           permutations=10, batch_size=24)
    assert -0.2 < moved.similarity.cka < 1.0 and moved.similarity.rows == int(labelled.sum())
    assert moved.similarity.baseline_low <= moved.similarity.baseline <= moved.similarity.baseline_high
    assert all(0.0 <= a <= 1.0 for a in moved.accuracy) and all(r >= 1.0 for r in moved.effective_rank)


def test_camera_and_layer_cka_of_a_real_run(swav_run, plants):
    train = plants[plants["split"] == "train"].reset_index(drop=True)
    cameras = camera_cka(swav_run, train, permutations=10, batch_size=len(train))
    assert cameras.similarity.rows == len(train) and cameras.probe == "knn"
    assert math.isfinite(cameras.similarity.cka) and all(0.0 <= a <= 1.0 for a in cameras.accuracy)
    encoder = load_encoder(swav_run)
    layers = ["0", "4", "7"]  # stem, first stage, last stage
    table = layer_cka(encoder, plant_photos(train, "rgb", 32), layers, camera="rgb", labels=train["label"].tolist(),
                      batch_size=12, permutations=5)
    assert len(table) == 9 and set(table.columns) >= {"layer_a", "layer_b", "cka", "baseline", "accuracy_a"}
    diagonal = table[table.layer_a == table.layer_b]
    np.testing.assert_allclose(diagonal.cka, 1.0, atol=1e-9)
    assert np.allclose(table.pivot(index="layer_a", columns="layer_b", values="cka"),
                       table.pivot(index="layer_b", columns="layer_a", values="cka"))
    assert not any(m._forward_hooks for m in encoder.modules())
    with pytest.raises(ConfigError, match="no such layer"):
        layer_cka(encoder, plant_photos(train, "rgb", 32), ["nope"], camera="rgb")
