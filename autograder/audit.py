"""Reject answer cells that tamper with grading, before any learner code runs (outside the kernel).

Checks in the kernel can be patched by code that runs earlier in the same kernel; this audit cannot,
because nbgrader (or ``python -m autograder check``) applies it to the notebook file first. A rejected
cell is replaced by a ``raise`` that explains why, with the original code kept as comments.
"""

from __future__ import annotations

import ast
from typing import Any

from nbformat import NotebookNode

from nbgrader.preprocessors import NbGraderPreprocessor

FORBIDDEN_MODULES = ("autograder", "importlib", "builtins")
FORBIDDEN_NAMES = {"autograder", "__builtins__", "builtins", "importlib", "__import__", "exec", "eval",
                   "compile", "CheckFailed"}
REJECTED = "rice-lab autograder: this cell was not run"


def audit_source(source: str) -> str | None:
    """Why ``source`` may not run in a graded notebook (first offending line), or None if it may."""
    lines = [("" if line.lstrip().startswith(("%", "!")) else line) for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None  # it fails on its own when run; nothing to hide
    for node in ast.walk(tree):
        reason = _offence(node)
        if reason:
            return f"line {getattr(node, 'lineno', '?')}: {reason}"
    return None


def _offence(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                return f"imports {alias.name}"
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
        return f"imports from {node.module}"
    if isinstance(node, ast.Name):
        if node.id in FORBIDDEN_NAMES:
            return f"uses {node.id}"
        if node.id.startswith("check_") and isinstance(node.ctx, (ast.Store, ast.Del)):
            return f"redefines the check {node.id}"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name.startswith("check_"):
        return f"redefines the check {node.name}"
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("check_") and isinstance(node.ctx, (ast.Store, ast.Del)):
            return f"replaces the check {node.attr}"
        if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
            return "uses sys.modules"
    return None


def rejected_source(source: str, reason: str) -> str:
    """The replacement for a rejected cell: a raise naming the reason, then the original as comments."""
    kept = "\n".join("# " + line for line in source.splitlines())
    message = f"{REJECTED}: it {reason} (answers may not touch the autograder or the import system)"
    return f"raise RuntimeError({message!r})\n{kept}"


def is_learner_cell(cell: NotebookNode) -> bool:
    """A code cell whose source the learner controls (anything but a locked nbgrader cell)."""
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and not nbgrader.get("locked")


def audit_notebook(nb: NotebookNode) -> list[str]:
    """Replace every tampering learner cell in ``nb`` (in place); return the reasons found."""
    reasons = []
    for index, cell in enumerate(nb.cells):
        if not is_learner_cell(cell):
            continue
        reason = audit_source(cell.source)
        if reason:
            cell.source = rejected_source(cell.source, reason)
            reasons.append(f"cell {index + 1} rejected ({reason})")
    return reasons


class RejectTampering(NbGraderPreprocessor):
    """nbgrader sanitize step: run :func:`audit_notebook` after locked cells have been restored."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        for reason in audit_notebook(nb):
            self.log.warning("Tampering: %s", reason)
        return nb, resources


class ForgetUnknownCells(NbGraderPreprocessor):
    """nbgrader sanitize step, before OverwriteCells: a cell claiming a grade id the assignment does not
    have (a renamed test cell, say) loses its nbgrader metadata and runs as a plain cell.

    nbgrader alone would drop the id but keep the cell a test cell, then fail on the whole notebook.
    """

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        from nbgrader.api import Gradebook, MissingEntry

        info = resources.get("nbgrader", {})
        try:
            with Gradebook(info["db_url"]) as gb:
                source = gb.find_notebook(info["notebook"], info["assignment"])
                known = {c.name for c in source.source_cells}
        except (KeyError, MissingEntry):
            return nb, resources
        for cell in nb.cells:
            gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
            if "nbgrader" in cell.get("metadata", {}) and gid not in known:
                self.log.warning("Unknown grade id %r: the cell runs as a plain cell", gid)
                del cell.metadata["nbgrader"]
        return nb, resources


def forget_unknown_cells(nb: NotebookNode, known: set[str]) -> list[str]:
    """The same for the self-check: strip nbgrader metadata of cells whose grade id the source lacks."""
    notes = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is not None and meta.get("grade_id") not in known:
            notes.append(f"cell {meta.get('grade_id')!r} is not a cell of this assignment: it runs as a plain cell")
            del cell.metadata["nbgrader"]
    return notes
