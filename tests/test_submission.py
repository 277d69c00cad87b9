"""Submissions are written in the sample's exact shape, and a malformed one is named line by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rice_lab.errors import DataError
from rice_lab.finetune.submission import check_submission, write_submission


@pytest.fixture()
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "SampleSubmission.csv"
    ids = [f"id_{k:03d}.jpg" for k in (7, 2, 9, 4)]  # not sorted: the order must be the sample's
    pd.DataFrame({"Image_id": ids, "blast": 1 / 3, "brown": 1 / 3, "healthy": 1 / 3}).to_csv(path, index=False)
    return path


def _probs(plant_ids, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.dirichlet([1, 1, 1], len(plant_ids))
    return pd.DataFrame(values, index=plant_ids, columns=["blast", "brown", "healthy"])


def test_written_submission_has_the_samples_shape_and_passes_the_check(sample: Path, tmp_path: Path) -> None:
    plant_ids = [f"id_{k:03d}" for k in (2, 4, 7, 9, 11)]  # an extra plant is ignored
    probs = _probs(plant_ids)
    out = write_submission(probs, sample, tmp_path / "sub.csv")
    written = pd.read_csv(out)
    assert list(written.columns) == ["Image_id", "blast", "brown", "healthy"]
    assert list(written["Image_id"]) == list(pd.read_csv(sample)["Image_id"])
    np.testing.assert_allclose(written[["blast", "brown", "healthy"]].sum(axis=1), 1.0, atol=1e-9)
    row = written.set_index("Image_id").loc["id_009.jpg"].to_numpy()
    np.testing.assert_allclose(row, probs.loc["id_009"].to_numpy(), rtol=1e-8)
    assert check_submission(out, sample) == []


def test_a_missing_prediction_is_an_error_not_a_uniform_row(sample: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no prediction"):
        write_submission(_probs(["id_002", "id_004"]), sample, tmp_path / "sub.csv")


def _good(sample: Path) -> pd.DataFrame:
    frame = pd.read_csv(sample)
    frame[["blast", "brown", "healthy"]] = _probs(range(len(frame))).to_numpy()
    return frame


@pytest.mark.parametrize("name, damage, expected", [
    ("missing row", lambda f: f.drop(index=1), "missing"),
    ("duplicate row", lambda f: pd.concat([f, f.iloc[[0]]]), "duplicate row for id_007.jpg"),
    ("rgnir id", lambda f: f.assign(Image_id=f.Image_id.replace("id_002.jpg", "id_002_rgn.jpg")), "RG-NIR photo"),
    ("wrong columns", lambda f: f.rename(columns={"brown": "brown_spot"}), "expected Image_id, blast, brown, healthy"),
    ("column order", lambda f: f[["Image_id", "brown", "blast", "healthy"]], "in this order"),
    ("nan", lambda f: f.assign(blast=[np.nan, *f.blast[1:]]), "missing or non-numeric"),
    ("negative", lambda f: f.assign(blast=[-0.1, *f.blast[1:]], brown=[0.6, *f.brown[1:]]), "outside [0, 1]"),
    ("not summing to 1", lambda f: f.assign(healthy=f.healthy + 0.1), "sum to"),
    ("row order", lambda f: f.iloc[::-1], "order"),
])
def test_each_malformed_submission_gets_its_own_line(sample: Path, tmp_path: Path, name, damage, expected) -> None:
    path = tmp_path / "bad.csv"
    damage(_good(sample)).to_csv(path, index=False)
    problems = check_submission(path, sample)
    assert problems and any(expected in p for p in problems), problems
    assert all(str(path) in p for p in problems)


def test_a_good_file_has_no_problems(sample: Path, tmp_path: Path) -> None:
    path = tmp_path / "good.csv"
    _good(sample).to_csv(path, index=False)
    assert check_submission(path, sample) == []
