"""Embeddings of every photo for a real tiny pre-training run and classifier; t-SNE numbers that
tell separated clusters from noise; the photo map's artists; cross-sensor alignment."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox  # noqa: E402

from rice_lab.data.zindi import CLASSES, read_zindi  # noqa: E402
from rice_lab.errors import ConfigError, DataError  # noqa: E402
from rice_lab.evaluate.encode import encode, plant_photos  # noqa: E402
from rice_lab.explain.embeddings import (Embeddings, classifier_embeddings, cross_sensor_alignment,  # noqa: E402
                                         encoder_embeddings, map_scores, plot_map, plot_sweep, tsne, tsne_map,
                                         tsne_sweep, with_metadata)
from rice_lab.explain.photos import model_inputs  # noqa: E402
from rice_lab.finetune.predictions import load_classifier, photo_probs  # noqa: E402
from rice_lab.models.encoders import load_encoder  # noqa: E402
from tests.explain_classifier import train_tiny_classifier  # noqa: E402


def clusters(per_class: int = 60, width: int = 30, separation: float = 8.0, seed: int = 0):
    """Three Gaussian clusters far apart in ``width`` dimensions, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    centres = rng.normal(size=(3, width))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[labels] + rng.normal(size=(len(labels), width)), labels


def one_camera_table(labels: np.ndarray, **extra) -> pd.DataFrame:
    return pd.DataFrame({"plant_id": [f"p{i}" for i in range(len(labels))], "camera": "rgb",
                         "label": [CLASSES[c] for c in labels], **extra})


def test_map_scores_are_high_on_separated_clusters():
    x, labels = clusters()
    points = tsne(x, perplexity=20, seed=0)
    scores = map_scores(points, x, one_camera_table(labels)).set_index("target")
    assert scores.loc["label", "knn_map"] > 0.95 and scores.loc["label", "knn_full"] > 0.95
    assert scores.loc["label", "silhouette_map"] > 0.5 and scores.loc["label", "silhouette_full"] > 0.5
    assert scores.loc["label", "majority"] == pytest.approx(1 / 3)
    assert "background" not in scores.index  # no such column: no row


def test_map_scores_sit_at_chance_on_noise_whatever_the_picture():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(240, 30))
    labels = np.repeat(np.arange(3), 80)
    rng.shuffle(labels)
    # a second target that the features do carry, on the same photos: the numbers tell them apart
    signal, background = clusters(per_class=80, seed=2)
    features = np.hstack([noise, signal])
    table = one_camera_table(labels, background=[f"b{c}" for c in background])
    scores = map_scores(tsne(features, perplexity=30, seed=0), features, table).set_index("target")
    assert abs(scores.loc["label", "knn_map"] - 1 / 3) < 0.12 and abs(scores.loc["label", "knn_full"] - 1 / 3) < 0.12
    assert abs(scores.loc["label", "silhouette_map"]) < 0.05 and abs(scores.loc["label", "silhouette_full"]) < 0.05
    assert scores.loc["background", "knn_map"] > 0.9 and scores.loc["background", "knn_full"] > 0.9


def test_tsne_seed_and_perplexity():
    x, labels = clusters(per_class=20)
    np.testing.assert_allclose(tsne(x, 10, seed=3), tsne(x, 10, seed=3), atol=1e-6)
    assert not np.allclose(tsne(x, 10, seed=3), tsne(x, 10, seed=4), atol=1.0)
    # a PCA start draws nothing: the seed is then irrelevant
    np.testing.assert_allclose(tsne(x, 10, seed=3, init="pca"), tsne(x, 10, seed=4, init="pca"), atol=1e-6)
    with pytest.raises(ConfigError, match="perplexity=60"):
        tsne(x, perplexity=60)


def test_sweep_has_a_row_per_perplexity_seed_camera_and_target():
    x, labels = clusters(per_class=10)
    table = one_camera_table(labels)
    both = pd.concat([table, table.assign(camera="rgnir")], ignore_index=True)
    features = torch.tensor(np.vstack([x, x + 0.1]), dtype=torch.float32)
    embeddings = Embeddings(features, both, torch.zeros(len(both), 3, 8, 10, dtype=torch.uint8))
    scores, maps = tsne_sweep(embeddings, perplexities=(5, 15), seeds=(0, 1))
    assert len(maps) == 4 and len(scores) == 4 * 2  # 2 cameras x 1 target per map
    assert set(zip(scores.perplexity, scores.seed)) == {(5, 0), (5, 1), (15, 0), (15, 1)}
    assert not np.allclose(maps[0].points, maps[1].points)  # same perplexity, another seed
    # the full embedding's numbers are the same in every map; the map's are its own
    assert scores.groupby("camera").knn_full.nunique().eq(1).all()
    fig = plot_sweep(maps, embeddings)
    assert len(fig.axes) == 4 and "perplexity 15, seed 1" in fig.axes[3].get_title()
    plt.close(fig)


@pytest.fixture(scope="module")
def runs(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("embeddings")
    classifier = train_tiny_classifier(synth_root, out)
    return out / "swav", classifier


@pytest.fixture(scope="module")
def plants(synth_root):
    return with_metadata(read_zindi(synth_root, test_labels=True), synth_root)


def test_with_metadata_adds_the_background_of_every_plant(plants, synth_root, tmp_path):
    assert plants["background"].notna().all() and plants["background"].nunique() >= 2
    with pytest.raises(DataError, match="metadata.csv: not found"):
        with_metadata(plants, tmp_path)
    with pytest.raises(DataError, match="no column colour_of_sky"):
        with_metadata(plants, synth_root, ["colour_of_sky"])


def test_encoder_embeddings_of_a_real_run(runs, plants):
    swav, _ = runs
    embeddings = encoder_embeddings(swav, plants)
    encoder = load_encoder(swav)
    n = len(plants)
    assert embeddings.features.shape == (2 * n, encoder.num_features) and embeddings.logits is None
    assert list(embeddings.table.camera) == ["rgb"] * n + ["rgnir"] * n
    assert list(embeddings.table.plant_id[:n]) == list(plants.plant_id)
    # test plants carry their test label as the truth; the background comes along
    assert embeddings.table.label.notna().all() and "background" in embeddings.table
    # each camera's photos went through the encoder as the probes send them
    rgnir = encode(encoder, plant_photos(plants, "rgnir", encoder.photo_height), "rgnir")
    torch.testing.assert_close(embeddings.features[n:], rgnir)
    assert embeddings.photos.shape[1:] == (3, 32, 40)
    with pytest.raises(ConfigError, match="no logits"):
        embeddings.space("logits")
    result = tsne_map(embeddings, perplexity=15)
    assert set(result.scores.target) == {"label", "background"} and set(result.scores.camera) == {"rgb", "rgnir"}
    assert result.scores[["knn_map", "knn_full"]].stack().between(0, 1).all()
    alignment = cross_sensor_alignment(embeddings)
    assert alignment.plants == n and alignment.chance == pytest.approx(1 / n)
    assert alignment.gap.estimate == pytest.approx(alignment.same_plant.estimate - alignment.other_plants.estimate)
    assert alignment.gap.low <= alignment.gap.estimate <= alignment.gap.high


def test_classifier_embeddings_of_a_real_run(runs, plants):
    _, run_dir = runs
    embeddings = classifier_embeddings(run_dir, plants)
    model, meta = load_classifier(run_dir)
    n = len(plants)
    assert embeddings.logits.shape == (2 * n, 3)
    # logits are the head of the features, and the classifier's own (untransformed) probabilities
    with torch.no_grad():
        torch.testing.assert_close(model.head(embeddings.features[:8]), embeddings.logits[:8])
        photos = embeddings.photos[:n]
        torch.testing.assert_close(model(model_inputs(photos, "rgb", meta)), embeddings.logits[:n])
    probs = photo_probs(model, meta, embeddings.photos, torch.tensor([0] * n + [1] * n))
    np.testing.assert_allclose(embeddings.logits.double().softmax(1).numpy(), probs, atol=1e-5)
    table = embeddings.table
    assert list(table.prediction) == [CLASSES[i] for i in probs.argmax(1)]
    assert (table.correct == (table.prediction == table.label)).all()
    result = tsne_map(embeddings, space="logits", perplexity=10)
    assert len(result.points) == 2 * n


def test_plot_map_draws_photos_lines_and_errors(runs, plants):
    _, run_dir = runs
    embeddings = classifier_embeddings(run_dir, plants)
    result = tsne_map(embeddings, perplexity=15)
    ax = plot_map(result, embeddings, colour_by="prediction", thumbnails=30)
    boxes = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    assert len(boxes) == 30
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) == len(plants)
    errors = int((embeddings.table.correct == False).sum())  # noqa: E712
    crosses = [c for c in ax.collections if c.get_offsets().shape[0] == errors and errors]
    assert errors == 0 or crosses
    dashed = [b for b in boxes if b.patch.get_linestyle() == "--"]
    assert all(embeddings.table.correct[b.rice_lab_row] == False for b in dashed)  # noqa: E712
    assert "kNN map" in ax.get_xlabel() and "perplexity 15" in ax.get_title()
    plt.close(ax.figure)
    ax = plot_map(result, embeddings, colour_by="camera", thumbnails=10_000, join_cameras=False)
    assert len([a for a in ax.artists if isinstance(a, AnnotationBbox)]) == len(embeddings)
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]
    plt.close(ax.figure)
    with pytest.raises(ConfigError, match="colour_by='weather'"):
        plot_map(result, embeddings, colour_by="weather")


def test_cross_sensor_alignment_finds_the_pairs_it_should_and_not_others():
    rng = np.random.default_rng(0)
    plants = 60
    shared = rng.normal(size=(plants, 16))
    table = pd.DataFrame({"plant_id": [f"p{i}" for i in range(plants)] * 2,
                          "camera": ["rgb"] * plants + ["rgnir"] * plants})
    paired = torch.tensor(np.vstack([shared + 0.3 * rng.normal(size=shared.shape),
                                     shared + 0.3 * rng.normal(size=shared.shape)]))
    photos = torch.zeros(2 * plants, 3, 4, 5, dtype=torch.uint8)
    aligned = cross_sensor_alignment(Embeddings(paired, table, photos))
    assert aligned.gap.low > 0.5 and aligned.retrieval > 0.9
    unpaired = torch.tensor(rng.normal(size=(2 * plants, 16)))
    apart = cross_sensor_alignment(Embeddings(unpaired, table, photos))
    assert apart.gap.low < 0 < apart.gap.high and apart.retrieval < 0.15
