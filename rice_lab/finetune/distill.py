"""Self-distillation: a student learns a teacher classifier's soft predictions instead of the labels.

The teacher predicts every photo the student trains on: the labelled training plants, those a label
fraction left out, and the test plants' photos (their labels are never read). Its targets are its own
calibrated per-photo probabilities: each camera's photos at that camera's fitted temperature, after
the TTA it kept. The student is validated (and its epoch chosen) on the same labelled validation
plants as the teacher, which the teacher never trained on: anything else is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rice_lab.errors import ConfigError
from rice_lab.evaluate.calibration import as_logits, softmax
from rice_lab.finetune.predictions import predict
from rice_lab.runs import read_manifest

STUDENT_ROLES = ("train", "unlabelled", "test")  # whose photos a student learns from


def teacher_targets(teacher: str | Path, plants: pd.DataFrame, cameras: tuple[str, ...],
                    fingerprint: str) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """(the student's training plants, their soft targets (plants, cameras, classes), a manifest note).

    ``plants`` carry the student's roles; the teacher must have been made on the same data with the
    same validation plants, and predict every camera the student trains on.
    """
    teacher = Path(teacher)
    manifest = read_manifest(teacher)
    if manifest.get("kind") != "finetune":
        raise ConfigError(f"teacher {teacher}: a {manifest.get('kind')!r} run, not a fine-tuning run")
    if manifest.get("data_fingerprint") != fingerprint:
        raise ConfigError(f"teacher {teacher} was trained on other data (fingerprint "
                          f"{manifest.get('data_fingerprint')}, the student's is {fingerprint})")
    valid = sorted(plants.loc[plants["role"] == "valid", "plant_id"])
    if sorted(manifest["plants"]["valid"]) != valid:
        raise ConfigError(f"teacher {teacher} was validated on other plants than the student (give both the "
                          "same valid_pct and split_seed): the teacher trained on plants the student validates on")
    missing = sorted(set(cameras) - set(manifest.get("cameras", [])))
    if missing:
        raise ConfigError(f"teacher {teacher} predicts no {', '.join(missing)} photos; the student trains on them")
    students = plants[plants["role"].isin(STUDENT_ROLES)]
    found = predict(teacher, students)  # .photos: raw (after TTA); .temperatures: the teacher's
    soft = np.stack([_photos_of(found, camera, students["plant_id"]) for camera in cameras], axis=1)
    note = {"run": str(teacher.resolve()), "targets": "calibrated per-photo probabilities",
            "temperatures": {c: found.temperatures[c] for c in cameras}, "tta": found.tta,
            "photos_by_role": {role: int((students["role"] == role).sum()) * len(cameras) for role in STUDENT_ROLES}}
    return students, soft, note


def _photos_of(found, camera: str, plant_ids: pd.Series) -> np.ndarray:
    """One camera's photo probabilities in ``plant_ids`` order, at the teacher's temperature for it."""
    rows = found.photos[found.photos["camera"] == camera].set_index("plant_id").loc[list(plant_ids)]
    raw = rows.drop(columns="camera").to_numpy(dtype=np.float64)
    return softmax(as_logits(raw), float(found.temperatures[camera]))


__all__ = ["STUDENT_ROLES", "teacher_targets"]
