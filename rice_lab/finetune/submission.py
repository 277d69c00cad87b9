"""The challenge's submission file: written in the shape of ``SampleSubmission.csv``, and checked.

A submission has one row per test plant, named by its RGB photo (``id_x.jpg``), in the sample's
row order, and one probability column per class in the sample's column order; each row sums to 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rice_lab.data.zindi import CLASSES, plant_id_of
from rice_lab.errors import DataError

ID_COLUMN = "Image_id"
SUM_TOLERANCE = 1e-6


def read_sample(path: str | Path) -> pd.DataFrame:
    """The sample submission (``Image_id`` + one column per class); DataError naming what is wrong."""
    path = Path(path)
    try:
        sample = pd.read_csv(path, dtype={ID_COLUMN: str})
    except FileNotFoundError as err:
        raise DataError(f"{path}: sample submission not found") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot parse csv ({str(err).strip()})") from err
    classes = [c for c in sample.columns if c != ID_COLUMN]
    if ID_COLUMN not in sample.columns or sorted(classes) != sorted(CLASSES):
        raise DataError(f"{path}: expected columns {ID_COLUMN}, {', '.join(CLASSES)}; found "
                        f"{', '.join(map(str, sample.columns))}")
    return sample


def write_submission(plant_probs: pd.DataFrame, sample_path: str | Path, out: str | Path) -> Path:
    """Write ``plant_probs`` (index ``plant_id``, one column per class) in the sample's shape.

    Rows are renormalised to sum to exactly 1 in float64; a test plant without a prediction is an
    error, never a silent uniform row.
    """
    sample = read_sample(sample_path)
    classes = [c for c in sample.columns if c != ID_COLUMN]
    plant_ids = [plant_id_of(i)[0] for i in sample[ID_COLUMN]]
    missing = [p for p in plant_ids if p not in plant_probs.index]
    if missing:
        raise DataError(f"{sample_path}: {len(missing)} test plant(s) have no prediction "
                        f"(first: {', '.join(missing[:3])})")
    values = plant_probs.loc[plant_ids, classes].to_numpy(dtype=np.float64)
    values = values / values.sum(axis=1, keepdims=True)
    frame = pd.DataFrame(values, columns=classes)
    frame.insert(0, ID_COLUMN, sample[ID_COLUMN].to_numpy())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, float_format="%.10g")
    return out


def check_submission(path: str | Path, sample_path: str | Path) -> list[str]:
    """Every problem with submission ``path`` against the sample, one line each (empty: valid)."""
    path = Path(path)
    sample = read_sample(sample_path)
    try:
        frame = pd.read_csv(path, dtype={ID_COLUMN: str})
    except FileNotFoundError:
        return [f"{path}: file not found"]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        return [f"{path}: cannot parse csv ({str(err).strip()})"]
    expected = list(sample.columns)
    if list(frame.columns) != expected:
        return [f"{path}: columns are {', '.join(map(str, frame.columns))}; expected "
                f"{', '.join(expected)} in this order"]
    problems: list[str] = []
    ids = frame[ID_COLUMN].astype(str).str.strip()
    for image_id in sorted(ids[ids.duplicated()].unique()):
        problems.append(f"{path}: duplicate row for {image_id}")
    for image_id in ids:
        if plant_id_of(image_id)[1] == "rgnir":
            problems.append(f"{path}: {image_id} is an RG-NIR photo; a submission names each plant by "
                            "its RGB photo")
    wanted = list(sample[ID_COLUMN])
    missing = sorted(set(wanted) - set(ids))
    extra = sorted(set(ids) - set(wanted) - {i for i in ids if plant_id_of(i)[1] == "rgnir"})
    if missing:
        problems.append(f"{path}: {len(missing)} plant(s) of the sample missing (first: {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{path}: {len(extra)} id(s) not in the sample (first: {', '.join(extra[:3])})")
    if not missing and not extra and not problems and list(ids) != wanted:
        problems.append(f"{path}: rows are not in the sample's order")
    classes = expected[1:]
    values = frame[classes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for row, image_id in enumerate(ids):
        cells = values[row]
        if np.isnan(cells).any():
            problems.append(f"{path}: row {row + 2} ({image_id}): missing or non-numeric probability")
        elif (cells < 0).any() or (cells > 1).any():
            problems.append(f"{path}: row {row + 2} ({image_id}): probability outside [0, 1]")
        elif not math.isclose(cells.sum(), 1.0, abs_tol=SUM_TOLERANCE):
            problems.append(f"{path}: row {row + 2} ({image_id}): probabilities sum to {cells.sum():.6g}, not 1")
    return problems


__all__ = ["ID_COLUMN", "check_submission", "read_sample", "write_submission"]
