"""`python -m autograder check NOTEBOOK`: run a learner's notebook in a fresh kernel and score it.

The notebook runs as ``nbgrader autograde`` runs it with this repository's configuration: locked and
test cells put back (hidden tests included, from ``solutions/`` or ``--source DIR``), tampering cells
rejected, then every test cell's checks run outside the kernel against the notebook's code re-run in
a separate process (:mod:`autograder.grading`), and the cells scored with nbgrader's own rule.
``--contained`` adds the graders' sandbox (memory, CPU, processes, file size, network, read-only files).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from nbformat import NotebookNode

from autograder.audit import audit_notebook
from autograder.notebooks import (CellScore, grade_id, has_code, is_grade_cell, is_locked, nbgrader_meta,
                                  read_notebook, score_cells, source_notebook, strip_outputs)


@dataclass
class CheckReport:
    """What a self-check found: one score per grade cell and notes on how the notebook was treated."""

    notebook: Path
    scores: list[CellScore]
    notes: list[str] = field(default_factory=list)
    zeroed: str | None = None  # why the whole notebook scores zero, if it does
    seconds: float = 0.0

    @property
    def points(self) -> float:
        return 0.0 if self.zeroed else sum(s.points for s in self.scores)

    @property
    def max_points(self) -> float:
        return sum(s.max_points for s in self.scores)

    @property
    def judged_points(self) -> float:
        """The points this check could judge (a test cell whose hidden tests were not found is not run)."""
        return sum(s.max_points for s in self.scores if s.judged)

    def render(self) -> str:
        """The report as printable lines."""
        judged = "" if self.judged_points == self.max_points else \
            f", {self.judged_points:g} of them judged here (hidden tests not found)"
        lines = [f"{self.notebook.name}: {self.points:g} / {self.max_points:g} points{judged} ({self.seconds:.0f} s)"]
        width = max((len(s.grade_id) for s in self.scores), default=10)
        for s in self.scores:
            status = "FAIL" if s.judged and s.error else "pass" if s.judged else "not run"
            detail = f"  {s.error}" if s.error and s.judged else ""
            lines.append(f"  {s.grade_id:<{width}}  {s.points:g}/{s.max_points:g}  {status}{detail}")
        if self.zeroed:
            lines.append(f"  total 0: {self.zeroed}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def restore_from_source(nb: NotebookNode, source: NotebookNode) -> list[str]:
    """Put the source versions of locked and test cells back (hidden tests included), as nbgrader does."""
    from autograder.audit import forget_unknown_cells

    notes = forget_unknown_cells(nb, {grade_id(c) for c in source.cells if grade_id(c)})
    by_id = {grade_id(c): c for c in source.cells if grade_id(c)}
    for cell in nb.cells:  # the released metadata (points, checksums, flags) counts, not the learner's
        if grade_id(cell) in by_id and cell.metadata.get("nbgrader") != by_id[grade_id(cell)].metadata["nbgrader"]:
            cell.metadata["nbgrader"] = copy.deepcopy(by_id[grade_id(cell)].metadata["nbgrader"])
    # An answer graded by hand (a grade cell that is also a solution cell) keeps the learner's text, as in nbgrader.
    originals = {grade_id(c): c for c in source.cells
                 if grade_id(c) and (is_locked(c) or is_grade_cell(c)) and not nbgrader_meta(c).get("solution")}
    present = {grade_id(c) for c in nb.cells if grade_id(c)}
    for cell in nb.cells:
        original = originals.get(grade_id(cell))
        if original is None:
            continue
        if cell.source != original.source and cell.source.strip() != _released(original.source):
            notes.append(f"locked cell {grade_id(cell)} was edited; its original was put back")
        cell.source = original.source
        cell.cell_type = original.cell_type
    order = [gid for gid in (grade_id(c) for c in source.cells) if gid in present]
    if [gid for gid in (grade_id(c) for c in nb.cells) if gid in originals] != [g for g in order if g in originals]:
        notes.append("cells were reordered; they run in the order of your notebook")
    for index, cell in enumerate(source.cells):
        gid = grade_id(cell)
        if gid in originals and gid not in present and is_grade_cell(cell):
            notes.append(f"test cell {gid} was deleted; it was put back")
            nb.cells.insert(_insert_at(nb, source, index), copy.deepcopy(cell))
    return notes


def _released(source: str) -> str:
    """What a test cell looks like in the exercise: the hidden-test region removed."""
    kept, hidden = [], False
    for line in source.splitlines():
        if line.strip() == "### BEGIN HIDDEN TESTS":
            hidden = True
        elif line.strip() == "### END HIDDEN TESTS":
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept).strip()


def _insert_at(nb: NotebookNode, source: NotebookNode, index: int) -> int:
    """Where a deleted source cell goes back: right after the cell that preceded it in the source."""
    for previous in reversed(source.cells[:index]):
        ids = [grade_id(c) for c in nb.cells]
        if grade_id(previous) in ids:
            return ids.index(grade_id(previous)) + 1
    return 0


def check_notebook(path: Path, timeout: int = 60, source: Path | None = None, contained: bool = False,
                   memory: str | None = None) -> CheckReport:
    """Run ``path`` as the graders do (each cell limited to ``timeout`` s) and score its grade cells.

    ``source`` is the folder of nbgrader source notebooks (default: this repository's ``solutions/``);
    ``contained`` runs the notebook's code in the graders' sandbox (``memory`` caps each process).
    """
    from autograder import sandbox
    from autograder.course import prepare_course
    from autograder.datasets import course_dataset
    from autograder.grading import GradingSandbox, execute_notebook

    start = time.monotonic()
    nb = read_notebook(path)
    notes: list[str] = []
    source_path = source_notebook(path, source)
    if source_path is not None:
        notes += restore_from_source(nb, read_notebook(source_path))
        notes.append(f"hidden tests included (from {source_path.parent.name}/{source_path.name})")
    else:
        notes.append("hidden tests not found (no source notebook): their cells were not run and count nothing; "
                     "your instructor's grade includes them")
    notes += audit_notebook(nb)
    strip_outputs(nb)  # saved outputs and counts say nothing about this run
    course_dataset()  # made here, writable, before any contained process reads it
    prepare_course([source_path.parent.name if source_path is not None else path.stem])
    workdir = path.resolve().parent
    settings = GradingSandbox(memory=memory or "4GiB")
    limits = settings.limits(workdir).with_paths(writable=[workdir]) if contained else None
    notes += execute_notebook(nb, workdir, limits, timeout, sandbox.parse_size(settings.max_output)).notes
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and output.get("ename") == "CellTimeoutError":
                notes.append(f"a cell ran past {timeout} s and was stopped")
            if output.get("output_type") == "error" and output.get("ename") == "DeadKernelError":
                notes.append("the notebook's process stopped (os._exit, a crash, or a memory or process limit)")
    if contained:
        notes += [f"contained: {line}" for line in sandbox.describe(limits)]
    notes += [f"{grade_id(cell)} ({nbgrader_meta(cell).get('points', 0):g} points) is graded by hand, not in this score"
              for cell in nb.cells if is_grade_cell(cell) and cell.cell_type != "code"]
    scores = score_cells(nb)
    if source_path is None:  # a test cell left with nothing to run (its hidden tests stripped) judges nothing
        empty = {grade_id(c) for c in nb.cells if is_grade_cell(c) and c.cell_type == "code" and not has_code(c.source)}
        scores = [replace(s, points=0.0, error=None, judged=False) if s.grade_id in empty else s for s in scores]
    report = CheckReport(path, scores, list(dict.fromkeys(notes)), None, time.monotonic() - start)
    report.notebook_node = nb
    return report
