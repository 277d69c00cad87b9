"""Two reference models that measure how hard a dataset is: colour histograms versus a small CNN.

If a logistic regression on colour histograms does nearly as well as a CNN, the classes differ in
*how much* of some colour there is, not in *shapes*, and a learner could "solve" the task without
looking at lesions. Both functions take the plant table of :func:`rice_lab.data.read_zindi`, train
on the ``train`` split and score accuracy on the labelled ``test`` split (synthetic data ships its
test labels); without test labels they hold out a stratified 20 % of the training plants instead.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rice_lab.data.zindi import CAMERAS, CLASSES, load_image, split_plants
from rice_lab.errors import DataError


def train_test_tables(plants: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled training plants and labelled evaluation plants (the test split, else a held-out 20 %)."""
    train = plants[(plants["split"] == "train") & plants["label"].notna()]
    test = plants[(plants["split"] == "test") & plants["label"].notna()]
    if len(test) == 0:
        marked = split_plants(train, valid_pct=0.2, seed=seed)
        train, test = marked[~marked["is_valid"]], marked[marked["is_valid"]]
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"need labelled training and evaluation plants; got {len(train)} and {len(test)}")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def load_stack(plants: pd.DataFrame, cameras: tuple[str, ...] = CAMERAS) -> np.ndarray:
    """All images of the plants as one uint8 array (plants, 3 * len(cameras), height, width)."""
    stacks = []
    for row in plants.itertuples(index=False):
        images = [np.asarray(load_image(getattr(row, camera))) for camera in cameras]
        if len({image.shape for image in images}) != 1:  # the cameras of one plant may differ in size
            size = images[0].shape[1::-1]
            images = [np.asarray(load_image(getattr(row, c)).resize(size)) for c in cameras]
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


def colour_histogram_baseline(plants_df: pd.DataFrame, bins: int = 16, cameras: tuple[str, ...] = CAMERAS,
                              seed: int = 0, C: float = 1.0) -> float:
    """Test accuracy of a logistic regression on per-channel colour histograms of the plants' images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = train_test_tables(plants_df, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, random_state=seed))
    model.fit(colour_histograms(load_stack(train, cameras), bins), label_codes(train))
    predicted = model.predict(colour_histograms(load_stack(test, cameras), bins))
    return float((predicted == label_codes(test)).mean())


@dataclass(frozen=True)
class CNNResult:
    """What one small-CNN run reached, and with how much training."""

    accuracy: float
    train_accuracy: float
    epochs: int
    seconds: float


def small_cnn(n_in: int, n_classes: int = len(CLASSES), width: int = 16):
    """A five-layer CNN; max- and mean-pooled features, since a few lesion pixels must be able to win."""
    import torch
    from torch import nn

    def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(n_in, width, 2), *block(width, width), nn.MaxPool2d(2),
                *block(width, 2 * width), nn.MaxPool2d(2),
                *block(2 * width, 4 * width), nn.MaxPool2d(2), *block(4 * width, 4 * width))
            self.head = nn.Linear(8 * width, n_classes)

        def forward(self, x):
            f = self.features(x)
            pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
            return self.head(nn.functional.dropout(pooled, 0.2, self.training))

    return SmallCNN()


def train_small_cnn(plants_df: pd.DataFrame, seconds: float = 60.0, seed: int = 0,
                    cameras: tuple[str, ...] = CAMERAS, epochs: int | None = None, batch_size: int = 16,
                    lr: float = 4e-3, width: int = 16, threads: int = 1) -> CNNResult:
    """Train :func:`small_cnn` on CPU for ``seconds`` of wall time (or exactly ``epochs``) and score it.

    With a time budget the learning rate follows the clock (warm-up, then cosine to zero at the
    deadline), so a slower machine trains fewer steps but still finishes its schedule; with
    ``epochs`` the schedule follows the step count and the result is the same on every machine.
    One thread by default: on a shared machine, several threads fighting for busy cores run many
    times slower than one.
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_small_cnn(plants_df, seconds, seed, cameras, epochs, batch_size, lr, width)
    finally:
        torch.set_num_threads(previous_threads)


def _train_small_cnn(plants_df: pd.DataFrame, seconds: float, seed: int, cameras: tuple[str, ...],
                     epochs: int | None, batch_size: int, lr: float, width: int) -> CNNResult:
    import torch

    torch.manual_seed(seed)
    train, test = train_test_tables(plants_df, seed)
    x_train = torch.from_numpy(load_stack(train, cameras)).float().div_(255)
    x_test = torch.from_numpy(load_stack(test, cameras)).float().div_(255)
    mean, std = x_train.mean(dim=(0, 2, 3), keepdim=True), x_train.std(dim=(0, 2, 3), keepdim=True) + 1e-3
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train, y_test = torch.as_tensor(label_codes(train)), torch.as_tensor(label_codes(test))

    model = small_cnn(x_train.shape[1], width=width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(x_train) // batch_size)
    start, step, done = time.perf_counter(), 0, 0
    while True:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for first in range(0, len(x_train), batch_size):
            if epochs is not None:
                progress = step / (epochs * steps_per_epoch)
            else:
                progress = (time.perf_counter() - start) / seconds
            if progress >= 1:
                break
            for group in optimiser.param_groups:
                group["lr"] = lr * _schedule(progress)
            _train_step(model, optimiser, x_train[order[first:first + batch_size]],
                        y_train[order[first:first + batch_size]], generator)
            step += 1
        else:
            done += 1
            continue
        break
    return CNNResult(accuracy=_accuracy(model, x_test, y_test), train_accuracy=_accuracy(model, x_train, y_train),
                     epochs=done, seconds=time.perf_counter() - start)


def _schedule(progress: float, warmup: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up, then cosine down to zero at progress 1."""
    if progress < warmup:
        return (progress + 0.01) / warmup
    return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


def _train_step(model, optimiser, xb, yb, generator) -> None:
    """One optimiser step with random flips (a lesion has no preferred side)."""
    import torch

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
    import torch

    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((predicted == y).float().mean())


def small_cnn_baseline(plants_df: pd.DataFrame, seconds: float = 60.0, seed: int = 0, **kwargs) -> float:
    """Test accuracy of a small CNN trained from scratch on CPU for about ``seconds``."""
    return train_small_cnn(plants_df, seconds=seconds, seed=seed, **kwargs).accuracy
