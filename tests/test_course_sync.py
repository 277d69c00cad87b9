"""Course consistency: exercises/ is what nbgrader makes from solutions/, notebooks carry no outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.course import ASSIGNMENTS
from autograder.generate import generate
from autograder.notebooks import REPO, has_outputs

NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb")) + sorted((REPO / "exercises").glob("*/*.ipynb")) + \
    sorted((REPO / "tests" / "fixtures").rglob("*.ipynb"))


def _comparable(path: Path) -> list[tuple]:
    """Cell type, id, source and metadata of each cell: what matters, nothing volatile."""
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.get("id"), c.source, dict(c.metadata)) for c in nb.cells] + \
        [("kernelspec", dict(nb.metadata.get("kernelspec", {})))]


def test_every_assignment_has_source_and_release() -> None:
    for assignment in ASSIGNMENTS:
        assert list((REPO / "solutions" / assignment).glob("*.ipynb")), f"solutions/{assignment} has no notebook"
        assert list((REPO / "exercises" / assignment).glob("*.ipynb")), \
            f"exercises/{assignment} missing: run `make exercises`"
    assert {p.name for p in (REPO / "solutions").iterdir() if p.is_dir()} == set(ASSIGNMENTS), \
        "every folder in solutions/ must be registered in autograder/course.py (and vice versa)"


def test_exercises_in_sync_with_solutions(tmp_path: Path) -> None:
    generate(into=tmp_path)
    for assignment in ASSIGNMENTS:
        fresh = sorted(p.name for p in (tmp_path / assignment).iterdir())
        committed = sorted(p.name for p in (REPO / "exercises" / assignment).iterdir())
        assert fresh == committed, f"exercises/{assignment} files differ from a fresh release: run `make exercises`"
        for name in fresh:
            if name.endswith(".ipynb"):
                assert _comparable(tmp_path / assignment / name) == _comparable(REPO / "exercises" / assignment / name), \
                    f"exercises/{assignment}/{name} is out of date with solutions/: run `make exercises`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_notebooks_have_no_outputs(path: Path) -> None:
    assert not has_outputs(nbformat.read(path, as_version=4)), f"{path}: strip outputs before committing"


def test_exercises_hide_solutions_and_hidden_tests() -> None:
    for path in (REPO / "exercises").glob("*/*.ipynb"):
        text = path.read_text()
        for marker in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "_hidden("):
            assert marker not in text, f"{path} leaks {marker!r}"
