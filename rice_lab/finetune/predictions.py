"""A fine-tuned classifier's predictions: per photo, then one row per plant (each camera and fused),
with flip test-time augmentation and a temperature, both decided on the validation plants only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rice_lab.data.zindi import CAMERAS, CLASSES
from rice_lab.errors import CheckpointError, DataError
from rice_lab.evaluate.calibration import EPSILON, as_logits, fit_temperature, log_loss, softmax
from rice_lab.finetune.data import PhotoSamples, flip, prepare
from rice_lab.finetune.model import Classifier, encoder_body
from rice_lab.models.encoders import create_encoder
from rice_lab.runs import load_checkpoint, read_manifest

FUSED, FUSED_LOGITS = "fused", "fused-logits"  # mean of the cameras' probabilities / of their logits
FLIPS = ((False, False), (True, False), (False, True), (True, True))  # the training flips, as TTA


@dataclass
class Predictions:
    """What a classifier says about some plants.

    ``photos``: one row per photo (``plant_id``, ``camera`` and one probability column per class,
    after TTA, before temperature). ``plants``: per view (each camera, ``fused`` = mean of the
    cameras' probabilities, ``fused-logits`` = softmax of the mean of their logits), a table indexed
    by ``plant_id`` with one column per class, temperature-scaled when ``calibrated``. ``raw``: the
    same before temperature scaling. ``fused`` is what a submission holds.
    """

    photos: pd.DataFrame
    plants: dict[str, pd.DataFrame]
    raw: dict[str, pd.DataFrame]
    temperatures: dict[str, float]
    tta: bool


def load_classifier(run_dir: str | Path) -> tuple[Classifier, dict]:
    """The kept classifier of a fine-tuning run (eval mode) and what it was trained with."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest.get("kind") != "finetune":
        raise CheckpointError(f"{run_dir}: a {manifest.get('kind')!r} run, not a fine-tuning run; give the "
                              "run directory `rice-lab finetune` wrote")
    file = run_dir / "classifier.pt"
    if not file.is_file():
        raise CheckpointError(f"{file}: not found; the run did not finish (continue it with --resume)")
    meta = load_checkpoint(file)
    body, n_features = encoder_body(create_encoder(meta["arch"]))
    model = Classifier(body, n_features, len(meta["classes"]), meta["head"], meta["pool"])
    model.load_state_dict(meta.pop("model"))
    if meta.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), meta


@torch.no_grad()
def photo_probs(model: Classifier, meta: dict, images: torch.Tensor, cameras: torch.Tensor, tta: bool = False,
                batch_size: int = 128) -> np.ndarray:
    """Class probabilities (photos, classes) in float64 of uint8 photos from ``cameras`` (indices).

    With ``tta`` each photo is also seen flipped left-right, top-bottom and both (the training
    augmentation), and the four probabilities are averaged.
    """
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x, cams = images[start:start + batch_size].to(device), cameras[start:start + batch_size].to(device)
        x = prepare(x, cams, meta["normalization"], meta.get("channels_last", False))
        views = FLIPS if tta else FLIPS[:1]
        probs = [model(flip(x, torch.full((len(x),), h, device=device), torch.full((len(x),), v, device=device)))
                 .double().softmax(1) for h, v in views]
        out.append(torch.stack(probs).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(meta["classes"])))


def plant_views(per_photo: np.ndarray, cameras: list[str]) -> dict[str, np.ndarray]:
    """(plants, cameras, classes) probabilities -> each camera's, and the two fusions, per plant."""
    views = {camera: per_photo[:, i] for i, camera in enumerate(cameras)}
    views[FUSED] = per_photo.mean(axis=1)
    views[FUSED_LOGITS] = softmax(as_logits(per_photo).mean(axis=1))
    return views


def _samples_probs(model, meta, samples: PhotoSamples, tta: bool) -> np.ndarray:
    probs = photo_probs(model, meta, samples.images, samples.camera, tta)
    return probs.reshape(len(samples.plant_ids), len(samples.cameras), -1)


def calibrate(model: Classifier, meta: dict, valid_plants: pd.DataFrame, valid: PhotoSamples) -> dict:
    """Decide TTA and fit temperatures on the validation plants (their training labels only).

    TTA is kept only if it lowers the validation fused log loss. Temperatures are fitted afterwards,
    on exactly what is submitted: the (TTA-averaged) fused probabilities, and each other view.
    """
    labels = np.array([CLASSES.index(c) for c in valid_plants["label"]])
    plain = plant_views(_samples_probs(model, meta, valid, False), meta["cameras"])
    flipped = plant_views(_samples_probs(model, meta, valid, True), meta["cameras"])
    losses = {"plain": log_loss(labels, plain[FUSED]), "flips": log_loss(labels, flipped[FUSED])}
    tta = losses["flips"] < losses["plain"]
    chosen = flipped if tta else plain
    temperatures = {view: fit_temperature(labels, as_logits(probs)) for view, probs in chosen.items()}
    after = {view: log_loss(labels, softmax(as_logits(probs), temperatures[view])) for view, probs in chosen.items()}
    return {"tta": bool(tta), "tta_valid_fused_log_loss": losses, "temperatures": temperatures,
            "valid_log_loss_calibrated": after, "valid_plants": len(labels)}


def check_plants(plants: pd.DataFrame, meta: dict) -> None:
    """DataError if the plants lack a camera the model was trained on, or the classes differ."""
    if list(meta["classes"]) != list(CLASSES):
        raise DataError(f"the model was trained on classes {', '.join(meta['classes'])}; this rice-lab "
                        f"knows {', '.join(CLASSES)}")
    for camera in meta["cameras"]:
        if camera not in CAMERAS or camera not in plants.columns or plants[camera].isna().any():
            raise DataError(f"the model was trained on {camera} photos, which these plants lack")


def predict(run_dir: str | Path, plants: pd.DataFrame, calibrated: bool = True) -> Predictions:
    """Predictions of a fine-tuning run's classifier for ``plants`` (a table from ``read_zindi``)."""
    model, meta = load_classifier(run_dir)
    check_plants(plants, meta)
    if torch.cuda.is_available():
        model = model.cuda()
    samples = PhotoSamples(plants, tuple(meta["cameras"]), meta["photo_height"], labels=False)
    per_photo = _samples_probs(model, meta, samples, meta["tta"])
    ids = pd.Index(list(plants["plant_id"]), name="plant_id")
    photos = pd.DataFrame(per_photo.reshape(-1, per_photo.shape[-1]), columns=meta["classes"])
    photos.insert(0, "camera", list(meta["cameras"]) * len(ids))
    photos.insert(0, "plant_id", np.repeat(ids.to_numpy(), len(meta["cameras"])))
    raw = {view: pd.DataFrame(p, index=ids, columns=meta["classes"])
           for view, p in plant_views(per_photo, meta["cameras"]).items()}
    temperatures = meta["temperatures"] if calibrated else {view: 1.0 for view in raw}
    scaled = {view: pd.DataFrame(softmax(as_logits(frame.to_numpy()), temperatures[view]), index=ids,
                                 columns=meta["classes"]) for view, frame in raw.items()}
    return Predictions(photos, scaled, raw, dict(temperatures), bool(meta["tta"]))


__all__ = ["EPSILON", "FLIPS", "FUSED", "FUSED_LOGITS", "Predictions", "calibrate", "check_plants", "load_classifier",
           "photo_probs", "plant_views", "predict"]
