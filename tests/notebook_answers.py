"""Run a solution notebook's answer cells in a namespace that looks like a notebook's, for check tests."""

from __future__ import annotations

from types import SimpleNamespace

import nbformat

from autograder.notebooks import REPO, grade_id


def solution_answers(assignment: str, header: str, extra: str = "") -> SimpleNamespace:
    """Execute ``header``, then the answer cells of ``solutions/<assignment>``, then ``extra``."""
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    namespace = {"__name__": "__main__"}
    exec(header, namespace)
    for cell in nb.cells:
        if (grade_id(cell) or "").endswith("_answer"):
            exec(cell.source, namespace)
    exec(extra, namespace)
    return SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")}, ns=namespace)
