"""`python -m autograder reliability`: how often each check fails a right answer (false failures).

Every check draws a new random case per call, so a check that accepts every right answer must pass the
solution for every seed. This runs each check (visible and hidden) of each assignment on its solution
for ``--seeds`` seeds and prints the failures per check; the instructors' page records the figures.
"""

from __future__ import annotations

import importlib
import io
import os
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from types import SimpleNamespace

import nbformat

from autograder.course import ASSIGNMENTS
from autograder.grading import check_calls
from autograder.notebooks import REPO, grade_id, is_grade_cell, is_locked


@dataclass
class Reliability:
    """Failures of one check over the seeds it ran with."""

    assignment: str
    check: str
    seeds: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.failures) / self.seeds if self.seeds else 0.0


def solution_namespace(assignment: str) -> SimpleNamespace:
    """The solution notebook's setup and answer cells run here (its 'try it' cells and checks skipped)."""
    from IPython.core.interactiveshell import InteractiveShell

    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    shell = InteractiveShell.instance()
    shell.enable_gui = lambda gui=None: None
    for cell in nb.cells:
        gid = grade_id(cell) or ""
        if cell.cell_type == "code" and not is_grade_cell(cell) and (gid.endswith("_answer") or is_locked(cell)):
            with redirect_stdout(io.StringIO()):
                result = shell.run_cell(cell.source, store_history=False, silent=True)
            if not result.success:
                raise RuntimeError(f"{assignment}: cell {gid} failed: {result.error_in_exec or result.error_before_exec}")
    return SimpleNamespace(**shell.user_ns)


def measure(assignment: str, seeds: int, first_seed: int = 0) -> list[Reliability]:
    """Run every check of ``assignment`` on its solution for ``seeds`` seeds."""
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = solution_namespace(assignment)
    results = []
    for cell in nb.cells:
        if not (is_grade_cell(cell) and cell.cell_type == "code"):
            continue
        for call in check_calls(cell.source):
            check = getattr(importlib.import_module(call.module), call.function)
            record = Reliability(assignment, call.function)
            start = time.monotonic()
            for seed in range(first_seed, first_seed + seeds):
                try:
                    with redirect_stdout(io.StringIO()):
                        check(getattr(answers, call.argument), seed=seed)
                except AssertionError as failed:
                    record.failures.append((seed, str(failed).splitlines()[0][:160]))
                record.seeds += 1
            record.seconds = time.monotonic() - start
            results.append(record)
    return results


def render(results: list[Reliability]) -> str:
    lines = [f"{'assignment':<10} {'check':<28} {'seeds':>5} {'false failures':>15} {'s per call':>10}"]
    for r in results:
        lines.append(f"{r.assignment:<10} {r.check:<28} {r.seeds:>5} {len(r.failures):>7} ({r.rate:6.1%}) "
                     f"{r.seconds / max(r.seeds, 1):>10.2f}")
        for seed, message in r.failures[:3]:
            lines.append(f"    seed {seed}: {message}")
    return "\n".join(lines)


def main(assignments: list[str] | None, seeds: int, first_seed: int = 0) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    results = []
    for assignment in assignments or list(ASSIGNMENTS):
        results += measure(assignment, seeds, first_seed)
    print(render(results))
    return 1 if any(r.failures for r in results) else 0
