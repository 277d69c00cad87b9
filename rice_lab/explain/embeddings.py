"""What a model makes of every photo: embeddings, t-SNE maps drawn with the photos, and the numbers
that keep a map honest.

    encoder_embeddings(run_or_encoder, plants)      -> Embeddings of every photo (both cameras)
    classifier_embeddings(run_dir, plants)          -> the same, with logits, predictions and errors
    tsne(features, perplexity, seed)                -> (N, 2) points
    map_scores(points, features, table)             -> kNN accuracy and silhouette, map and full space
    tsne_map / tsne_sweep                           -> a map with its scores / a perplexity x seed sweep
    plot_map / plot_sweep                           -> photos at their points / a grid of small maps
    cross_sensor_alignment(embeddings)              -> a plant's two photos against other plants'

A t-SNE map can show clusters that are not there and hide distances that are (Wattenberg et al.
2016): cluster sizes and the gaps between clusters mean little, and the picture changes with the
perplexity and the seed. So every map here comes with numbers, per camera and per target (the
disease label, and the synthetic data's ``background``, which has nothing to do with the disease):

* kNN accuracy in the map (Euclidean, the distance t-SNE keeps) and in the full embedding (the
  probes module's cosine kNN), cross-validated on the same stratified folds, beside the commonest
  class's share: a cluster the full embedding does not support is the map's invention;
* silhouette score (scikit-learn) by target in the map (Euclidean) and in the full embedding
  (cosine): near 0 means the classes overlap, whatever the picture suggests.

The map is fitted on every photo at once (both cameras, held-out photos included): its kNN accuracy
describes the picture's neighbourhoods, it is not a test score. Scores are per camera, so a plant's
other photo is never its own neighbour's vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from rice_lab.data.zindi import CAMERAS, CLASSES
from rice_lab.errors import ConfigError, DataError
from rice_lab.evaluate.bootstrap import Interval, bootstrap_ci

SPACES = ("features", "logits")
CLASS_COLOURS = {"blast": "#CC79A7", "brown": "#E69F00", "healthy": "#009E73"}  # Okabe-Ito
CAMERA_COLOURS = {"rgb": "#0072B2", "rgnir": "#D55E00"}
OTHER_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
CAMERA_MARKERS = {"rgb": "o", "rgnir": "s"}
CLASS_MARKERS = {"blast": "o", "brown": "s", "healthy": "^"}
PATH_COLUMNS = ("rgb", "rgnir")


@dataclass
class Embeddings:
    """One row per photo: ``features`` (photos, F), the photo as the model saw it (uint8 (photos, 3,
    H, W), for thumbnails), ``table`` (plant_id, camera, split, label: the true class where known,
    and the plants' other columns; a classifier adds prediction, confidence and correct) and, for a
    classifier, ``logits`` (photos, classes). Rows are camera by camera, plants in table order."""

    features: torch.Tensor
    table: pd.DataFrame
    photos: torch.Tensor
    logits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        sizes = {len(self.features), len(self.table), len(self.photos)} | ({len(self.logits)} if self.logits is not None
                                                                           else set())
        if len(sizes) != 1:
            raise DataError(f"embeddings of unequal lengths: features {len(self.features)}, table {len(self.table)}, "
                            f"photos {len(self.photos)}")
        self.table = self.table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.table)

    def space(self, name: str = "features") -> torch.Tensor:
        """The embedding ``name``: ``features`` (pooled, before any head) or ``logits`` (classifiers)."""
        if name not in SPACES:
            raise ConfigError(f"space={name!r}: choose {' or '.join(SPACES)}")
        if name == "logits" and self.logits is None:
            raise ConfigError("space='logits': these embeddings come from an encoder, which has no logits; "
                              "use classifier_embeddings(run_dir, plants)")
        return self.features if name == "features" else self.logits

    def select(self, rows) -> Embeddings:
        """The rows where ``rows`` (a boolean mask or indices) says so."""
        index = torch.as_tensor(np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows))
        return Embeddings(self.features[index], self.table.iloc[index.numpy()], self.photos[index],
                          None if self.logits is None else self.logits[index])


def with_metadata(plants: pd.DataFrame, root: str | Path, columns: Sequence[str] = ("background",)) -> pd.DataFrame:
    """``plants`` with per-plant ``columns`` of the synthetic data's ``metadata.csv`` (its RGB rows)."""
    file = Path(root) / "metadata.csv"
    if not file.is_file():
        raise DataError(f"{file}: not found (only the synthetic generator writes metadata.csv)")
    metadata = pd.read_csv(file)
    missing = [c for c in columns if c not in metadata.columns]
    if missing:
        raise DataError(f"{file}: no column {', '.join(missing)} (it has {', '.join(metadata.columns)})")
    per_plant = metadata[metadata["camera"] == "rgb"][["plant_id", *columns]]
    return plants.drop(columns=[c for c in columns if c in plants.columns]).merge(per_plant, on="plant_id", how="left")


def photo_table(plants: pd.DataFrame, cameras: Sequence[str]) -> pd.DataFrame:
    """One row per photo, camera by camera: plant_id, camera, the true ``label`` where known (a
    training label, else a ``test_label`` column's value) and the plants' other non-file columns."""
    kept = [c for c in plants.columns if c not in PATH_COLUMNS and not str(c).startswith("mask_")]
    table = plants[kept].reset_index(drop=True)
    if "label" not in table:
        table["label"] = None
    if "test_label" in table:
        table["label"] = table["label"].where(table["label"].notna(), table["test_label"])
    parts = [table.assign(camera=camera) for camera in cameras]
    out = pd.concat(parts, ignore_index=True)
    first = ["plant_id", "camera", "label"]
    return out[first + [c for c in out.columns if c not in first]]


def as_encoder(encoder: nn.Module | str | Path) -> nn.Module:
    """A module as it is; a pre-training run directory or snapshot file loaded with its normalisation."""
    if isinstance(encoder, nn.Module):
        return encoder
    from rice_lab.models.encoders import load_encoder

    return load_encoder(encoder)


def encoder_embeddings(encoder: nn.Module | str | Path, plants: pd.DataFrame, cameras: Sequence[str] = CAMERAS,
                       height: int | None = None) -> Embeddings:
    """Embeddings of every plant's photos from ``cameras`` by a pre-training run's encoder (a run
    directory, a ``checkpoints/step-*.pt`` snapshot, or a module), each camera normalised as the
    encoder was trained, the photos ``height`` px high (default: the height it was trained on)."""
    from rice_lab.evaluate.encode import encode, plant_photos
    from rice_lab.evaluate.probes import probe_size

    encoder = as_encoder(encoder)
    height = probe_size(encoder, height)
    photos = [plant_photos(plants, camera, height) for camera in cameras]
    features = [encode(encoder, images, camera, height=height) for camera, images in zip(cameras, photos)]
    return Embeddings(torch.cat(features), photo_table(plants, cameras), torch.cat(photos))


@torch.no_grad()
def classifier_embeddings(run_dir: str | Path, plants: pd.DataFrame, batch_size: int = 128) -> Embeddings:
    """Embeddings of every plant's photos by a fine-tuning run's classifier: ``features`` are the pooled
    body features the head reads, ``logits`` the head's output (no flips, no temperature); the table
    gains ``prediction``, ``confidence`` (softmax maximum) and ``correct`` (missing where the label is)."""
    from rice_lab.explain.models import model_device
    from rice_lab.explain.photos import camera_photos, model_inputs
    from rice_lab.finetune.predictions import check_plants, load_classifier

    model, meta = load_classifier(run_dir)
    check_plants(plants, meta)
    cameras = list(meta["cameras"])
    photos = camera_photos(plants, meta)
    device = model_device(model)
    features, logits = [], []
    for camera in cameras:
        inputs = model_inputs(photos[camera], camera, meta)
        for start in range(0, len(inputs), batch_size):
            pooled = model.features(inputs[start:start + batch_size].to(device))
            features.append(pooled.float().cpu())
            logits.append(model.head(pooled).float().cpu())
    logits_all = torch.cat(logits)
    table = photo_table(plants, cameras)
    probs = logits_all.double().softmax(1)
    table["prediction"] = [meta["classes"][i] for i in probs.argmax(1).tolist()]
    table["confidence"] = probs.max(1).values.numpy()
    known = table["label"].notna()
    table["correct"] = pd.array([p == t if k else pd.NA for p, t, k in zip(table["prediction"], table["label"], known)],
                                dtype="boolean")
    return Embeddings(torch.cat(features), table, torch.cat([photos[c] for c in cameras]), logits_all)


def tsne(features, perplexity: float = 30.0, seed: int = 0, metric: str = "euclidean", init: str = "random",
         ) -> np.ndarray:
    """A 2-D t-SNE (scikit-learn, automatic learning rate) of ``features`` (rows, ...).

    ``init="random"`` starts from points drawn with ``seed``, so the seed changes the map; ``"pca"``
    starts from the first two principal components (often a more faithful global layout, Kobak &
    Linderman 2021), and then the seed changes nothing.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    x = x.reshape(len(x), -1)
    if not 0 < perplexity < len(x):
        raise ConfigError(f"perplexity={perplexity}: must be above 0 and below the number of points ({len(x)}); "
                          "about 5 to 50 is usual")
    return TSNE(2, perplexity=perplexity, random_state=seed, init=init, learning_rate="auto",
                metric=metric).fit_transform(x)


def _codes(values: pd.Series) -> np.ndarray:
    return pd.factorize(values, sort=True)[0]


def _map_knn_correct(points: np.ndarray, codes: np.ndarray, folds: int, seed: int, k: int) -> np.ndarray:
    """Whether each point's Euclidean kNN vote (the other folds' points) is right: the probes
    module's folds (stratified, shuffled by ``seed``), on the map's own distance."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    correct = np.zeros(len(codes), dtype=bool)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(codes, codes):
        vote = KNeighborsClassifier(min(k, len(train))).fit(points[train], codes[train])
        correct[test] = vote.predict(points[test]) == codes[test]
    return correct


def map_scores(points: np.ndarray, features, table: pd.DataFrame, targets: Sequence[str] = ("label", "background"),
               k: int = 10, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """kNN accuracy and silhouette of each target, in the map and in the full embedding, per camera.

    One row per (camera, target) with ``photos``, ``classes``, ``majority`` (the commonest class's
    share: what kNN must beat), ``knn_map`` / ``knn_full`` and ``silhouette_map`` / ``silhouette_full``.
    Photos without a target value are left out; a target with one class, or missing, gives no row.
    """
    from sklearn.metrics import silhouette_score

    from rice_lab.evaluate.probes import cross_val_correct

    points = np.asarray(points, dtype=np.float64)
    full = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    full = full.detach().float().cpu().flatten(1)
    if not len(points) == len(full) == len(table):
        raise ConfigError(f"{len(points)} points, {len(full)} feature rows and {len(table)} table rows: "
                          "one each per photo")
    cameras = table["camera"].unique() if "camera" in table else [None]
    rows = []
    for camera in cameras:
        on_camera = (table["camera"] == camera).to_numpy() if camera is not None else np.ones(len(table), bool)
        for target in targets:
            if target not in table:
                continue
            keep = on_camera & table[target].notna().to_numpy()
            codes = _codes(table.loc[keep, target].astype(str))
            counts = np.bincount(codes) if len(codes) else np.zeros(0, int)
            if len(counts) < 2 or len(codes) <= len(counts):
                continue
            row = {"camera": camera, "target": target, "photos": int(keep.sum()), "classes": len(counts),
                   "majority": counts.max() / counts.sum()}
            n_folds = min(folds, int(counts.min()))
            if n_folds >= 2:
                row["knn_map"] = _map_knn_correct(points[keep], codes, n_folds, seed, k).mean()
                row["knn_full"] = cross_val_correct(full[torch.from_numpy(keep)], codes, "knn", n_folds, seed, k).mean()
            else:  # a class with a single photo cannot be held out and voted for
                row["knn_map"] = row["knn_full"] = np.nan
            row["silhouette_map"] = silhouette_score(points[keep], codes)
            row["silhouette_full"] = silhouette_score(full[torch.from_numpy(keep)].numpy(), codes, metric="cosine")
            rows.append(row)
    columns = ["camera", "target", "photos", "classes", "majority", "knn_map", "knn_full", "silhouette_map",
               "silhouette_full"]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class TSNEMap:
    """A t-SNE of one embedding space and the numbers behind it (:func:`map_scores`)."""

    points: np.ndarray
    perplexity: float
    seed: int
    space: str
    scores: pd.DataFrame = field(repr=False)


def tsne_map(embeddings: Embeddings, space: str = "features", perplexity: float = 30.0, seed: int = 0,
             **score_options) -> TSNEMap:
    """t-SNE of every photo's ``space`` embedding (both cameras in one map), with its scores."""
    x = embeddings.space(space)
    points = tsne(x, perplexity, seed)
    return TSNEMap(points, perplexity, seed, space, map_scores(points, x, embeddings.table, **score_options))


def tsne_sweep(embeddings: Embeddings, perplexities: Sequence[float] = (5, 15, 30, 50),
               seeds: Sequence[int] = (0, 1, 2), space: str = "features",
               **score_options) -> tuple[pd.DataFrame, list[TSNEMap]]:
    """One map per (perplexity, seed): their scores in one table (perplexity and seed columns) and the maps.

    The full-embedding numbers do not change across the sweep; the map's do, and how much they move
    is what a single picture hides.
    """
    maps = [tsne_map(embeddings, space, p, s, **score_options) for p in perplexities for s in seeds]
    table = pd.concat([m.scores.assign(perplexity=m.perplexity, seed=m.seed) for m in maps], ignore_index=True)
    return table, maps


def colours_for(values: pd.Series, column: str) -> dict:
    """A colour per value: the course's class and camera colours, else Okabe-Ito in sorted order."""
    if column in ("label", "prediction", "test_label"):
        return dict(CLASS_COLOURS)
    if column == "camera":
        return dict(CAMERA_COLOURS)
    found = sorted(values.dropna().astype(str).unique())
    return {value: OTHER_COLOURS[i % len(OTHER_COLOURS)] for i, value in enumerate(found)}


def _camera_lines(points: np.ndarray, table: pd.DataFrame) -> list[np.ndarray]:
    """A segment from each plant's RGB point to its RG-NIR point (plants with both photos)."""
    if "camera" not in table:
        return []
    where = pd.DataFrame({"plant_id": table["plant_id"], "camera": table["camera"], "row": np.arange(len(table))})
    pairs = where.pivot_table(index="plant_id", columns="camera", values="row", aggfunc="first")
    if not set(CAMERAS) <= set(pairs.columns):
        return []
    pairs = pairs.dropna(subset=list(CAMERAS)).astype(int)
    return [points[[a, b]] for a, b in zip(pairs["rgb"], pairs["rgnir"])]


def _score_text(scores: pd.DataFrame) -> str:
    lines = []
    for row in scores.itertuples(index=False):
        lines.append(f"{row.camera} {row.target}: kNN map {row.knn_map:.2f} / full {row.knn_full:.2f} "
                     f"(majority {row.majority:.2f}); silhouette map {row.silhouette_map:.2f} / "
                     f"full {row.silhouette_full:.2f}")
    return "\n".join(lines)


def plot_map(tsne_result: TSNEMap, embeddings: Embeddings, colour_by: str = "label", thumbnails: int = 150,
             thumbnail_px: int = 26, join_cameras: bool = True, mark_errors: bool = True, ax=None, seed: int = 0):
    """The map with photos at their points: framed in the colour of ``colour_by`` (label, prediction,
    camera or any table column), a plant's two photos joined by a grey line, misclassified photos
    (a classifier's ``correct`` is False) crossed and framed with a dashed line; the scores below.

    ``thumbnails`` photos (a seeded draw; 0 for none, at least the number of photos for all) are
    drawn ``thumbnail_px`` px high; every photo also has a dot, so none is hidden. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    table, points = embeddings.table, tsne_result.points
    if colour_by not in table:
        raise ConfigError(f"colour_by={colour_by!r}: not a column of the embeddings' table "
                          f"({', '.join(map(str, table.columns))})")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 9))
    palette = colours_for(table[colour_by], colour_by)
    colour = [palette.get(str(v), "#999999") if pd.notna(v) else "#999999" for v in table[colour_by]]
    shape_column = "camera" if colour_by != "camera" and "camera" in table else "label"
    shapes = CAMERA_MARKERS if shape_column == "camera" else CLASS_MARKERS
    if join_cameras:
        ax.add_collection(LineCollection(_camera_lines(points, table), colors="#888888", linewidths=0.6, alpha=0.6,
                                         zorder=1))
    for value, marker in shapes.items():
        rows = (table[shape_column] == value).to_numpy()
        if rows.any():
            ax.scatter(points[rows, 0], points[rows, 1], c=np.array(colour, dtype=object)[rows].tolist(), marker=marker,
                       s=18, edgecolors="none", zorder=2)
    errors = np.zeros(len(table), dtype=bool)
    if mark_errors and "correct" in table:
        errors = (table["correct"] == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712 - a nullable column
    drawn = np.random.default_rng(seed).permutation(len(table))[:max(0, thumbnails)]
    for i in sorted(drawn):
        photo = embeddings.photos[i].permute(1, 2, 0).numpy()
        box = AnnotationBbox(OffsetImage(photo, zoom=thumbnail_px / photo.shape[0]), points[i], pad=0.15,
                             bboxprops={"edgecolor": colour[i], "linewidth": 2.5 if errors[i] else 1.5,
                                        "linestyle": "--" if errors[i] else "-"}, zorder=3)
        box.rice_lab_row = int(i)  # which photo this is, for whoever reads the figure back
        ax.add_artist(box)
    if errors.any():
        ax.scatter(points[errors, 0], points[errors, 1], marker="x", c="black", s=70, linewidths=2, zorder=4)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=str(v)) for v, c in palette.items()
               if (table[colour_by].astype(str) == v).any()]
    handles += [Line2D([], [], marker=m, linestyle="", color="#555555", label=f"{shape_column} {v}")
                for v, m in shapes.items() if (table[shape_column] == v).any()]
    if join_cameras and _camera_lines(points, table):
        handles.append(Line2D([], [], color="#888888", label="one plant's two photos"))
    if errors.any():
        handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="misclassified"))
    ax.legend(handles=handles, loc="upper right", fontsize=8, title=colour_by)
    ax.update_datalim(points)
    ax.autoscale_view()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of the {tsne_result.space} (perplexity {tsne_result.perplexity:g}, seed {tsne_result.seed})")
    ax.set_xlabel(_score_text(tsne_result.scores), fontsize=8, loc="left")
    return ax


def plot_sweep(maps: Sequence[TSNEMap], embeddings: Embeddings, colour_by: str = "label", target: str = "label"):
    """A grid of maps (rows: perplexities, columns: seeds) as dots, each titled with its ``target``'s
    kNN accuracy and silhouette in the map (mean over cameras). Returns the figure."""
    import matplotlib.pyplot as plt

    perplexities = sorted({m.perplexity for m in maps})
    seeds = sorted({m.seed for m in maps})
    fig, axes = plt.subplots(len(perplexities), len(seeds), figsize=(3 * len(seeds), 3 * len(perplexities)),
                             squeeze=False)
    palette = colours_for(embeddings.table[colour_by], colour_by)
    colour = [palette.get(str(v), "#999999") for v in embeddings.table[colour_by]]
    for m in maps:
        ax = axes[perplexities.index(m.perplexity), seeds.index(m.seed)]
        ax.scatter(m.points[:, 0], m.points[:, 1], c=colour, s=6, edgecolors="none")
        scores = m.scores[m.scores["target"] == target]
        ax.set_title(f"perplexity {m.perplexity:g}, seed {m.seed}\nkNN {scores.knn_map.mean():.2f}, "
                     f"silhouette {scores.silhouette_map.mean():.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Alignment:
    """How close a plant's two photos sit in an embedding, against photos of different plants.

    ``same_plant``: mean cosine similarity of each plant's RGB and RG-NIR embeddings; ``other_plants``:
    of its RGB embedding and the RG-NIR embeddings of every other plant (the expectation of a random
    pair); ``gap``: the per-plant difference (bootstrap over plants, paired). ``retrieval``: share of
    plants whose own RG-NIR embedding is the nearest to their RGB one; ``chance`` = 1 / plants.
    """

    same_plant: Interval
    other_plants: Interval
    gap: Interval
    retrieval: float
    chance: float
    plants: int

    def __str__(self) -> str:
        return (f"same plant {self.same_plant}; other plants {self.other_plants}; gap {self.gap}; "
                f"retrieval {self.retrieval:.2f} (chance {self.chance:.3f}, {self.plants} plants)")


def cross_sensor_alignment(embeddings: Embeddings, space: str = "features", resamples: int = 2000,
                           seed: int = 0) -> Alignment:
    """Cosine similarity of each plant's two cameras' embeddings, against pairs of different plants."""
    table = embeddings.table
    x = embeddings.space(space).detach().double().cpu().flatten(1)
    rows = {camera: table.index[table["camera"] == camera] for camera in CAMERAS}
    rgb = pd.Series(rows["rgb"], index=table.loc[rows["rgb"], "plant_id"])
    rgnir = pd.Series(rows["rgnir"], index=table.loc[rows["rgnir"], "plant_id"])
    plants = [p for p in rgb.index if p in rgnir.index]
    if len(plants) < 3:
        raise ConfigError(f"cross-sensor alignment needs plants with both photos: {len(plants)} found (at least 3)")
    a = torch.nn.functional.normalize(x[torch.tensor(rgb[plants].to_numpy())], dim=1)
    b = torch.nn.functional.normalize(x[torch.tensor(rgnir[plants].to_numpy())], dim=1)
    cosine = (a @ b.T).numpy()
    n = len(plants)
    same = np.diag(cosine).copy()
    other = (cosine.sum(1) - same) / (n - 1)
    options = {"resamples": resamples, "seed": seed}
    return Alignment(bootstrap_ci(same, **options), bootstrap_ci(other, **options),
                     bootstrap_ci(same - other, **options), float((cosine.argmax(1) == np.arange(n)).mean()), 1 / n, n)


__all__ = ["Alignment", "CLASS_COLOURS", "Embeddings", "TSNEMap", "as_encoder", "classifier_embeddings",
           "cross_sensor_alignment", "encoder_embeddings", "map_scores", "photo_table", "plot_map", "plot_sweep",
           "tsne", "tsne_map", "tsne_sweep", "with_metadata"]
