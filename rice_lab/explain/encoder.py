"""The SSL encoder explained: what makes it call a plant's two photos the same plant.

SwAV pre-trains the encoder to give a plant's RGB and RG-NIR photos the same codes. What is explained
here is how alike their embeddings are: the cosine similarity cos(f(rgb), f(rgnir)) of one plant, a
model of one output (:class:`PairSimilarity`, target 0) attributed to both photos at once (a tuple
input to :func:`rice_lab.explain.attribution.attribute`). A positive attribution raises the
similarity: it marks what the encoder matches between the two photos.

``f``, the embedding (``embedding=``):

* ``features`` [default]: the encoder's pooled features, what ``rice_lab.evaluate.encode``, the probes
  and fine-tuning start from (the mean over the last feature maps);
* ``projection``: SwAV's projection head on those features, the space its loss compares (a run's
  ``encoder.pt`` holds the head).

Photos go in as the encoder was trained on them (:func:`encoder_inputs`): decoded at the run's photo
height and normalised by the run's statistics for their camera. Each photo goes through its own copy
of the network (:class:`rice_lab.explain.models.TwoCameras`), so Grad-CAM's default layer ``body``
(the encoder's last feature maps) is read in each camera's copy.

:func:`similarity_localisation` scores the maps against the lesion masks with the localisation
metrics, beside the random and edge baselines computed on the same photos.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from rice_lab.data.views import normalize
from rice_lab.data.zindi import CAMERAS
from rice_lab.errors import CheckpointError, ConfigError
from rice_lab.explain.models import TwoCameras

EMBEDDINGS = ("features", "projection")
BASELINES = ("random", "edge")


class Embedder(nn.Module):
    """Photo (N, 3, H, W) -> embedding (N, D): the encoder's feature maps (``body``), averaged over
    space, then SwAV's projection ``head`` if one is given."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None) -> None:
        from rice_lab.finetune.model import encoder_body

        super().__init__()
        self.body, _ = encoder_body(copy.deepcopy(encoder))
        self.head = copy.deepcopy(head) if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


class PairSimilarity(TwoCameras):
    """(rgb, rgnir) normalised photos of plants -> the cosine similarity of their embeddings, (N, 1)."""

    def __init__(self, embedder: nn.Module) -> None:
        super().__init__(embedder)

    def combine(self, rgb: torch.Tensor, rgnir: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(rgb, rgnir, dim=1)[:, None]


def load_similarity(run_dir: str | Path, embedding: str = "features") -> tuple[PairSimilarity, dict]:
    """A pre-training run's :class:`PairSimilarity` (eval mode) and what its photos need
    (``normalization``, ``photo_height``); CheckpointError for any other kind of run."""
    from rice_lab.runs import read_manifest

    if embedding not in EMBEDDINGS:
        raise ConfigError(f"embedding={embedding!r}: choose one of {', '.join(EMBEDDINGS)}")
    kind = read_manifest(run_dir).get("kind")
    if kind != "pretrain":
        raise CheckpointError(f"{run_dir}: a {kind!r} run, not a pre-training run; the encoder's similarity is "
                              "explained from the run directory `rice-lab pretrain` wrote")
    if embedding == "features":
        from rice_lab.models.encoders import load_encoder

        encoder = load_encoder(run_dir)
        head, stats, height = None, encoder.normalization, encoder.photo_height
    else:
        from rice_lab.ssl.model import load_swav_model

        swav = load_swav_model(run_dir)
        encoder, head, stats, height = swav.encoder, swav.head, swav.normalization, swav.photo_height
    meta = {"normalization": stats, "photo_height": height, "embedding": embedding}
    return PairSimilarity(Embedder(encoder, head)).eval(), meta


def encoder_inputs(plants: pd.DataFrame, meta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The plants' (rgb, rgnir) photos as the encoder saw them in pre-training: decoded at its photo
    height, normalised by its statistics for each camera (by the photos' own when the run stored none,
    as ``rice_lab.evaluate.encode`` does)."""
    from rice_lab.evaluate.encode import photo_stats, plant_photos

    out = []
    for camera in CAMERAS:
        photos = plant_photos(plants, camera, meta["photo_height"])
        stats = (meta.get("normalization") or {}).get(camera) or photo_stats(photos)
        out.append(normalize(photos.float() / 255, *stats))
    return tuple(out)


def explain_similarity(model: PairSimilarity, meta: dict, plants: pd.DataFrame, method: str,
                       **options: Any) -> dict[str, torch.Tensor]:
    """Maps of both photos of ``plants`` for their embeddings' cosine similarity: {camera: (plants, H, W)}
    (``options`` as for ``attribute``)."""
    from rice_lab.explain.attribution import attribute

    return dict(zip(CAMERAS, attribute(model, encoder_inputs(plants, meta), method, 0, **options)))


@torch.no_grad()
def pair_similarity(model: PairSimilarity, meta: dict, plants: pd.DataFrame) -> torch.Tensor:
    """Each plant's cosine similarity between its two photos' embeddings, (plants,)."""
    from rice_lab.explain.models import predict_logits

    return predict_logits(model, encoder_inputs(plants, meta))[:, 0].cpu()


def similarity_localisation(model: PairSimilarity, meta: dict, plants: pd.DataFrame,
                            methods: Sequence[str] = ("saliency", "integrated-gradients", "grad-cam"), seed: int = 0,
                            options: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Localisation scores of each method's similarity maps against the lesion masks, and of the
    random and edge baselines on the same photos: one row per method, camera and plant (metrics as
    columns; ``score_table(scores, ["method", "camera"], LOCALISATION)`` tables them).
    ``options``: {method: its options for ``attribute``}."""
    from rice_lab.explain.baselines import edge_map, random_map
    from rice_lab.explain.metrics import localisation_scores
    from rice_lab.explain.photos import lesion_masks

    masks = {camera: lesion_masks(plants, camera, meta["photo_height"]) for camera in CAMERAS}
    inputs = dict(zip(CAMERAS, encoder_inputs(plants, meta)))
    frames = []
    for method in (*methods, *BASELINES):
        if method == "random":
            maps = {camera: random_map(x, seed) for camera, x in inputs.items()}
        elif method == "edge":
            maps = {camera: edge_map(x) for camera, x in inputs.items()}
        else:
            maps = explain_similarity(model, meta, plants, method, seed=seed, **(options or {}).get(method, {}))
        frames.append(localisation_scores(maps, masks, plants["plant_id"]).assign(method=method))
    scores = pd.concat(frames, ignore_index=True)
    return scores[["method", *[c for c in scores.columns if c != "method"]]]


__all__ = ["BASELINES", "EMBEDDINGS", "Embedder", "PairSimilarity", "encoder_inputs", "explain_similarity",
           "load_similarity", "pair_similarity", "similarity_localisation"]
