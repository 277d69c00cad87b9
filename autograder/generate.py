"""`python -m autograder generate`: rebuild exercises/ from solutions/ with nbgrader generate_assignment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.course import ASSIGNMENTS
from autograder.notebooks import REPO, kernel_env


class GenerateError(Exception):
    """nbgrader generate_assignment failed; the message holds the end of its log."""


def generate(assignments: list[str] | None = None, into: Path | None = None, repo: Path = REPO) -> list[Path]:
    """Run ``nbgrader generate_assignment`` in a scratch course and copy each result to ``into``/<a>.

    The scratch course keeps the gradebook nbgrader writes out of the repository; ``into`` defaults
    to the repository's ``exercises/``.
    """
    into = Path(into or repo / "exercises")
    written = []
    with tempfile.TemporaryDirectory(prefix="rice-lab-generate-") as scratch:
        course = Path(scratch)
        shutil.copy(repo / "nbgrader_config.py", course / "nbgrader_config.py")
        for assignment in assignments or list(ASSIGNMENTS):
            source = repo / "solutions" / assignment
            if not source.is_dir():
                raise GenerateError(f"{source}: no such assignment folder")
            shutil.copytree(source, course / "solutions" / assignment,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
            run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                                  "--log-level=WARN"], cwd=course, env=kernel_env(course),
                                 capture_output=True, text=True)
            released = course / "exercises" / assignment
            if run.returncode != 0 or not released.is_dir():
                tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
                raise GenerateError(f"nbgrader generate_assignment {assignment} failed:\n{tail}")
            target = into / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(released, target)
            written.append(target)
    return written
