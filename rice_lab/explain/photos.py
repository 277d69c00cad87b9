"""The photos a classifier is explained on, as it sees them, and their lesion masks at the same size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from rice_lab.data.views import load_size
from rice_lab.data.zindi import CAMERAS, read_mask
from rice_lab.errors import DataError
from rice_lab.evaluate.encode import plant_photos


def camera_photos(plants: pd.DataFrame, meta: dict) -> dict[str, torch.Tensor]:
    """Each camera's photos (of the cameras the classifier knows), uint8 (plants, 3, H, W), decoded at
    the classifier's photo height."""
    return {camera: plant_photos(plants, camera, meta["photo_height"]) for camera in meta["cameras"]}


def model_inputs(images: torch.Tensor, camera: str, meta: dict) -> torch.Tensor:
    """uint8 photos of one camera -> the normalised input the classifier sees (fine-tuning's ``prepare``)."""
    from rice_lab.finetune.data import prepare

    cameras = torch.full((len(images),), CAMERAS.index(camera), dtype=torch.long, device=images.device)
    return prepare(images, cameras, meta["normalization"], meta.get("channels_last", False))


def lesion_masks(plants: pd.DataFrame, camera: str, height: int) -> np.ndarray:
    """Boolean lesion masks (plants, H, W) of each plant's ``camera`` photo, at the photos' decoded size
    (nearest-neighbour resizing of the material codes, then lesion margin or centre)."""
    from rice_lab.data.synthetic.materials import lesion_mask

    column = f"mask_{camera}"
    if column not in plants.columns:
        raise DataError(f"these plants have no {column} column: the data folder has no masks/ (the synthetic "
                        "generator writes them; real photos have none)")
    size_hw = load_size(height)
    out = np.zeros((len(plants), *size_hw), dtype=bool)
    for i, path in enumerate(plants[column]):
        codes = Image.fromarray(read_mask(path)).resize(size_hw[::-1], Image.NEAREST)
        out[i] = lesion_mask(np.asarray(codes))
    return out


__all__ = ["camera_photos", "lesion_masks", "model_inputs"]
