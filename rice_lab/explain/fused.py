"""The fused prediction explained: both photos of a plant at once, and how the credit splits between
the two cameras.

Fine-tuning fuses a plant's two photos in two ways (:mod:`rice_lab.finetune.predictions`): ``fused``,
the mean of the cameras' softmax probabilities (what a submission holds), and ``fused-logits``, the
softmax of the mean of their logits. :class:`FusedClassifier` computes either from the two
normalised photos, ``forward(rgb, rgnir)``: the mean probabilities for ``fused``, the mean logits for
``fused-logits`` (whose softmax is that view, up to the clipping of probabilities at ``EPSILON``), so
``attribute(FusedClassifier(model), (rgb, rgnir), method)`` gives each photo its share of one
prediction in one captum call. Each camera's photo goes through its own copy of the classifier
(:class:`rice_lab.explain.models.TwoCameras`), so Grad-CAM and Guided Grad-CAM work too: the map of
each photo is read at that camera's copy of ``layer``.

What is explained is the prediction of the photos as they are: without the flip TTA and the
temperature the run may have chosen (the temperature never changes which class wins).

:func:`camera_shares`: each plant's total absolute attribution (over pixels and channels) of each
photo, and the RGB photo's share of the two; the mean share over plants comes with a bootstrap
interval. Both photos are in the same units (each normalised by its camera's statistics), which is
what makes their totals comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rice_lab.data.zindi import CAMERAS
from rice_lab.errors import ConfigError
from rice_lab.evaluate.bootstrap import Interval
from rice_lab.explain.metrics import interval
from rice_lab.explain.models import TwoCameras
from rice_lab.finetune.predictions import FUSED, FUSED_LOGITS

VIEWS = (FUSED, FUSED_LOGITS)


class FusedClassifier(TwoCameras):
    """(rgb, rgnir) normalised photos -> the plant's fused output: mean probabilities (``fused``) or
    mean logits (``fused-logits``), (N, classes)."""

    def __init__(self, model: nn.Module, view: str = FUSED) -> None:
        if view not in VIEWS:
            raise ConfigError(f"view={view!r}: choose one of {', '.join(VIEWS)}")
        super().__init__(model)
        self.view = view

    def combine(self, rgb: torch.Tensor, rgnir: torch.Tensor) -> torch.Tensor:
        if self.view == FUSED:
            return (rgb.softmax(1) + rgnir.softmax(1)) / 2
        return (rgb + rgnir) / 2


def fused_inputs(plants: pd.DataFrame, meta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The plants' (rgb, rgnir) photos as the classifier sees them (each camera normalised by its own
    statistics); ConfigError for a classifier trained on one camera (it has no fused prediction)."""
    from rice_lab.explain.photos import camera_photos, model_inputs

    if tuple(meta["cameras"]) != CAMERAS:
        raise ConfigError(f"this classifier was trained on {', '.join(meta['cameras'])} photos only: it has no fused "
                          "prediction to explain (explain each camera's photo instead)")
    photos = camera_photos(plants, meta)
    return tuple(model_inputs(photos[camera], camera, meta) for camera in CAMERAS)


def explain_fused(model: nn.Module, meta: dict, plants: pd.DataFrame, method: str, view: str = FUSED,
                  target: int | None = None, **options: Any) -> dict[str, torch.Tensor]:
    """Maps of both photos of ``plants`` for their fused prediction: {camera: (plants, H, W)}.

    ``target`` None explains each plant's fused prediction; ``options`` as for ``attribute`` (for
    Grad-CAM, ``layer`` names a layer of the classifier, read in each camera's copy).
    """
    from rice_lab.explain.attribution import attribute

    maps = attribute(FusedClassifier(model, view), fused_inputs(plants, meta), method, target, **options)
    return dict(zip(CAMERAS, maps))


@dataclass
class CameraShares:
    """``plants``: one row per plant (``plant_id``; ``rgb`` and ``rgnir``, each photo's total absolute
    attribution; ``rgb_share`` = rgb / (rgb + rgnir), NaN when both are 0). ``rgb_share``: its mean
    over plants with a bootstrap interval (the RG-NIR photo's share is one minus it)."""

    method: str
    view: str
    plants: pd.DataFrame
    rgb_share: Interval


def camera_shares(model: nn.Module, meta: dict, plants: pd.DataFrame, method: str = "integrated-gradients",
                  view: str = FUSED, target: int | None = None, level: float = 0.95, resamples: int = 2000,
                  seed: int = 0, **options: Any) -> CameraShares:
    """How the fused prediction's attribution splits between each plant's RGB and RG-NIR photos."""
    maps = explain_fused(model, meta, plants, method, view, target, reduce="abs", seed=seed, **options)
    totals = {camera: maps[camera].flatten(1).sum(1).double().cpu().numpy() for camera in CAMERAS}
    both = totals["rgb"] + totals["rgnir"]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(both > 0, totals["rgb"] / both, np.nan)
    table = pd.DataFrame({"plant_id": list(plants["plant_id"]), **totals, "rgb_share": share})
    return CameraShares(method, view, table, interval(share, level, resamples, seed))


__all__ = ["VIEWS", "CameraShares", "FusedClassifier", "camera_shares", "explain_fused", "fused_inputs"]
