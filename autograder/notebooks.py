"""Notebook helpers shared by the commands: reading safely, grade cells, scores, a kernel that is ours."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parent.parent


class NotebookUnreadable(Exception):
    """The file is not a notebook nbformat can read (not JSON, not a notebook, unreadable)."""


def read_notebook(path: Path) -> NotebookNode:
    """Read a notebook as nbformat v4; NotebookUnreadable with a one-line reason otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NotebookUnreadable(f"cannot read the file ({err})") from err
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookUnreadable(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises several kinds for structurally wrong files
        raise NotebookUnreadable(f"not a Jupyter notebook ({str(err).splitlines()[0]})") from err


def nbgrader_meta(cell: NotebookNode) -> dict[str, Any]:
    """A cell's nbgrader metadata ({} when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell: NotebookNode) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_grade_cell(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("grade"))


def is_locked(cell: NotebookNode) -> bool:
    meta = nbgrader_meta(cell)
    return bool(meta.get("locked")) or (bool(meta.get("grade")) and not meta.get("solution"))


def strip_outputs(nb: NotebookNode) -> NotebookNode:
    """Remove outputs and execution counts in place (the form notebooks are committed in)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def has_outputs(nb: NotebookNode) -> bool:
    return any(cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
               for cell in nb.cells)


@dataclass
class CellScore:
    """The outcome of one grade cell after execution."""

    grade_id: str
    points: float
    max_points: float
    error: str | None
    judged: bool = True  # False: the cell had nothing to run here (its hidden tests were not found)

    @property
    def passed(self) -> bool:
        return self.judged and self.error is None


def has_code(source: str) -> bool:
    """Whether a cell's source has a line that runs (not only comments and blank lines)."""
    return any(line.strip() and not line.strip().startswith("#") for line in source.splitlines())


def first_error_line(cell: NotebookNode) -> str | None:
    """`Name: first line of the message` of the cell's first error output, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            message = (output.get("evalue") or "").strip().splitlines()
            return f"{output.get('ename', 'Error')}: {message[0] if message else ''}".rstrip(": ")
    return None


def score_cells(nb: NotebookNode) -> list[CellScore]:
    """Score every grade cell with nbgrader's own rule (``determine_grade``): zero for an error or any
    stderr output, partial credit for a number the cell evaluates to, else full points."""
    from nbgrader.utils import determine_grade

    scores = []
    for cell in nb.cells:
        if is_grade_cell(cell) and cell.cell_type == "code":
            points, max_points = determine_grade(cell)
            error = first_error_line(cell)
            if error is None and points is not None and points < max_points:
                error = "output on stderr" if any(o.get("name") == "stderr" for o in cell.get("outputs", [])) \
                    else "partial credit"
            scores.append(CellScore(grade_id(cell), float(points or 0.0), float(max_points), error))
    return scores


def kernel_env(workdir: Path) -> dict[str, str]:
    """Environment for child processes whose `python3` kernel must be this interpreter (the venv's).

    A kernelspec written under ``workdir`` comes first on JUPYTER_PATH, so neither a user-wide
    `python3` kernelspec nor a PATH without the venv can swap the interpreter.
    """
    spec_dir = workdir / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join([str(workdir / "jupyter"), env.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # nbgrader runs `alembic`
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def source_notebook(notebook: Path, solutions: Path | None = None) -> Path | None:
    """The nbgrader source of a learner's notebook (``<solutions>/<assignment>/<name>``), if present;
    ``solutions`` defaults to this repository's ``solutions/`` (``--source`` points elsewhere)."""
    solutions = Path(solutions) if solutions else REPO / "solutions"
    candidate = solutions / notebook.resolve().parent.name / notebook.name
    if candidate.is_file():
        return candidate
    matches = sorted(solutions.glob(f"*/{notebook.name}"))
    return matches[0] if len(matches) == 1 else None
