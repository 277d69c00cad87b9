"""Three reference models that measure how hard a dataset is, and what kind of signal it carries.

- colour histograms + logistic regression: *how much* of each colour a plant shows, nothing else;
- a per-pixel MLP (1x1 convolutions, then global mean and max pooling): *which colours appear
  locally*, even in a few pixels, but no shape, since it never looks at two pixels together;
- a small CNN (3x3 convolutions): colours *and* the shapes they form.

If the histograms do nearly as well as the CNN, a learner can "solve" the task without looking at
lesions; the gap between the per-pixel MLP and the CNN is what shapes add. All take the plant table
of :func:`rice_lab.data.read_zindi`, fit on labelled training plants and score held-out plants:
a seeded, stratified 20 % of the training plants by default (``on="holdout"``), or the test split
when asked for explicitly (``on="test"``, which needs the test labels that
``read_zindi(root, test_labels=True)`` adds). Every result says what it was fitted and scored on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from rice_lab.data.zindi import CAMERAS, CLASSES, load_image, split_plants
from rice_lab.errors import ConfigError, DataError

EVALUATIONS = ("holdout", "test")


@dataclass(frozen=True)
class BaselineResult:
    """What one baseline reached, on which plants, and with how much training."""

    model: str
    accuracy: float          # on the scored plants
    train_accuracy: float    # on the plants it was fitted on
    on: str                  # "holdout" (20 % of the training plants) or "test" (the test split)
    fitted: int              # plants fitted on
    scored: int              # plants scored
    epochs: int = 0          # 0 for the histogram model, which is not trained by epochs
    seconds: float = 0.0     # wall time, for information only (the result does not depend on it)


def evaluation_tables(plants: pd.DataFrame, on: str = "holdout", seed: int = 0,
                      holdout_pct: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(plants to fit on, plants to score), both with a ``label`` column to fit or score against.

    ``on="holdout"``: the labelled training plants, split by plant, stratified and seeded; the test
    split is not touched. ``on="test"``: every labelled training plant to fit on, and the test plants,
    scored against their ``test_label``.
    """
    if on not in EVALUATIONS:
        raise ConfigError(f"on={on!r}: choose 'holdout' (part of the training plants) or 'test' (the test split)")
    train = plants[(plants["split"] == "train") & plants["label"].notna()]
    if on == "holdout":
        marked = split_plants(train, valid_pct=holdout_pct, seed=seed)
        fit, score = marked[~marked["is_valid"]], marked[marked["is_valid"]]
    else:
        if "test_label" not in plants:
            raise DataError("on='test' scores the test split, whose labels are read only on request: "
                            "plants = read_zindi(root, test_labels=True)")
        test = plants[(plants["split"] == "test") & plants["test_label"].notna()]
        fit, score = train, test.assign(label=test["test_label"])
    if len(fit) == 0 or len(score) == 0:
        raise DataError(f"need labelled plants to fit on and to score ({on}); got {len(fit)} and {len(score)}")
    return fit.reset_index(drop=True), score.reset_index(drop=True)


def load_stack(plants: pd.DataFrame, cameras: tuple[str, ...] = CAMERAS) -> np.ndarray:
    """All images of the plants as one uint8 array (plants, 3 * len(cameras), height, width)."""
    stacks = []
    for row in plants.itertuples(index=False):
        images = [np.asarray(load_image(getattr(row, camera))) for camera in cameras]
        if len({image.shape for image in images}) != 1:  # the reader reports these; never resize silently
            sizes = " and ".join(f"{i.shape[1]}x{i.shape[0]}" for i in images)
            raise DataError(f"plant {row.plant_id}: its photos differ in size ({sizes})")
        stacks.append(np.concatenate(images, axis=2).transpose(2, 0, 1))
    if len({s.shape for s in stacks}) != 1:
        raise DataError("images differ in size between plants; resize them before using the baselines")
    return np.stack(stacks)


def label_codes(plants: pd.DataFrame) -> np.ndarray:
    """Class indices (order of CLASSES) of the plants' labels."""
    return np.array(plants["label"].map({c: i for i, c in enumerate(CLASSES)}), dtype=np.int64)


def colour_histograms(images: np.ndarray, bins: int = 16) -> np.ndarray:
    """Per-channel colour histograms (fractions of pixels), concatenated: (plants, channels * bins)."""
    n, channels = images.shape[:2]
    scaled = (images.reshape(n, channels, -1).astype(np.int64) * bins) // 256
    offsets = (np.arange(n)[:, None] * channels + np.arange(channels)[None, :])[:, :, None] * bins
    counts = np.bincount((scaled + offsets).ravel(), minlength=n * channels * bins)
    return counts.reshape(n, channels * bins) / scaled.shape[-1]


def colour_histogram_baseline(plants: pd.DataFrame, on: str = "holdout", bins: int = 16,
                              cameras: tuple[str, ...] = CAMERAS, seed: int = 0, C: float = 1.0) -> BaselineResult:
    """A logistic regression on per-channel colour histograms of the plants' images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    fit, score = evaluation_tables(plants, on, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, random_state=seed))
    x_fit = colour_histograms(load_stack(fit, cameras), bins)
    model.fit(x_fit, label_codes(fit))
    accuracy = (model.predict(colour_histograms(load_stack(score, cameras), bins)) == label_codes(score)).mean()
    train_accuracy = (model.predict(x_fit) == label_codes(fit)).mean()
    return BaselineResult("colour histograms", float(accuracy), float(train_accuracy), on, len(fit), len(score),
                          seconds=time.perf_counter() - start)


class PooledClassifier(nn.Module):
    """``features`` -> global max and mean pooling -> dropout -> one linear layer.

    Max pooling lets a few lesion pixels decide; the mean says how much of the photo looks so.
    """

    def __init__(self, features: nn.Module, channels: int, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Linear(2 * channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
        return self.head(nn.functional.dropout(pooled, 0.2, self.training))


def small_cnn(n_in: int, n_classes: int = len(CLASSES), width: int = 16) -> PooledClassifier:
    """A five-layer CNN of 3x3 convolutions: it sees colours and the shapes they form."""

    def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    features = nn.Sequential(*block(n_in, width, 2), *block(width, width), nn.MaxPool2d(2),
                             *block(width, 2 * width), nn.MaxPool2d(2),
                             *block(2 * width, 4 * width), nn.MaxPool2d(2), *block(4 * width, 4 * width))
    return PooledClassifier(features, 4 * width, n_classes)


def pixel_mlp(n_in: int, n_classes: int = len(CLASSES), width: int = 32) -> PooledClassifier:
    """A shape-blind model: a two-layer MLP applied to every pixel alone (1x1 convolutions), then pooled.

    It sees which colours appear, even in a handful of pixels; it cannot relate a pixel to its
    neighbours, so spots, spindles and rings are invisible to it. No batch norm: at full resolution
    it about doubled the cost of a step and did not help on the default data.
    """
    features = nn.Sequential(nn.Conv2d(n_in, width, 1), nn.ReLU(inplace=True),
                             nn.Conv2d(width, width, 1), nn.ReLU(inplace=True))
    return PooledClassifier(features, width, n_classes)


NETWORKS = {"small CNN": small_cnn, "per-pixel MLP": pixel_mlp}


def train_small_cnn(plants: pd.DataFrame, on: str = "holdout", epochs: int = 30, seed: int = 0,
                    cameras: tuple[str, ...] = CAMERAS, **kwargs) -> BaselineResult:
    """Train :func:`small_cnn` from scratch on CPU for exactly ``epochs`` epochs and score it."""
    return train_network("small CNN", plants, on, epochs, seed, cameras, **kwargs)


def train_pixel_mlp(plants: pd.DataFrame, on: str = "holdout", epochs: int = 30, seed: int = 0,
                    cameras: tuple[str, ...] = CAMERAS, **kwargs) -> BaselineResult:
    """Train the shape-blind :func:`pixel_mlp` exactly as :func:`train_small_cnn` trains the CNN."""
    return train_network("per-pixel MLP", plants, on, epochs, seed, cameras, **kwargs)


def train_network(model: str, plants: pd.DataFrame, on: str = "holdout", epochs: int = 30, seed: int = 0,
                  cameras: tuple[str, ...] = CAMERAS, batch_size: int = 16, lr: float = 4e-3,
                  width: int | None = None, threads: int = 1) -> BaselineResult:
    """Train one of :data:`NETWORKS` (AdamW, warm-up then cosine, random flips) and score it.

    The schedule follows the step count, so the same seed gives the same result on every machine.
    One thread by default: on a shared machine, several threads fighting for busy cores run many
    times slower than one.
    """
    if model not in NETWORKS:
        raise ConfigError(f"model={model!r}: choose one of {', '.join(NETWORKS)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs={epochs!r}: expected a whole number of epochs, at least 1")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(model, plants, on, epochs, seed, cameras, batch_size, lr, width)
    finally:
        torch.set_num_threads(previous_threads)


def _train(model_name: str, plants: pd.DataFrame, on: str, epochs: int, seed: int, cameras: tuple[str, ...],
           batch_size: int, lr: float, width: int | None) -> BaselineResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    fit, score = evaluation_tables(plants, on, seed)
    x_fit = torch.from_numpy(load_stack(fit, cameras)).float().div_(255)
    x_score = torch.from_numpy(load_stack(score, cameras)).float().div_(255)
    mean, std = x_fit.mean(dim=(0, 2, 3), keepdim=True), x_fit.std(dim=(0, 2, 3), keepdim=True) + 1e-3
    x_fit, x_score = (x_fit - mean) / std, (x_score - mean) / std
    y_fit, y_score = torch.as_tensor(label_codes(fit)), torch.as_tensor(label_codes(score))

    build = NETWORKS[model_name]
    model = build(x_fit.shape[1]) if width is None else build(x_fit.shape[1], width=width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    total = epochs * -(-len(x_fit) // batch_size)
    step = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_fit), generator=generator)
        for first in range(0, len(x_fit), batch_size):
            for group in optimiser.param_groups:
                group["lr"] = lr * _schedule(step / total)
            batch = order[first:first + batch_size]
            _train_step(model, optimiser, x_fit[batch], y_fit[batch], generator)
            step += 1
    return BaselineResult(model_name, _accuracy(model, x_score, y_score), _accuracy(model, x_fit, y_fit), on,
                          len(fit), len(score), epochs, time.perf_counter() - start)


def _schedule(progress: float, warmup: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up, then cosine down to zero at progress 1."""
    if progress < warmup:
        return (progress + 0.01) / warmup
    return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


def _train_step(model, optimiser, xb, yb, generator) -> None:
    """One optimiser step with random flips (a lesion has no preferred side)."""
    flips = torch.rand(2, generator=generator)
    if flips[0] < 0.5:
        xb = xb.flip(-1)
    if flips[1] < 0.5:
        xb = xb.flip(-2)
    loss = torch.nn.functional.cross_entropy(model(xb), yb, label_smoothing=0.05)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


def _accuracy(model, x, y, batch_size: int = 128) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((predicted == y).float().mean())
