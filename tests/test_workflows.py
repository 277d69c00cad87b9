"""The GitHub Actions workflows are valid (checked offline by actionlint) and run what CI runs here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint (the dev extra, Linux x86-64) not installed")
def test_every_workflow_passes_actionlint():
    assert WORKFLOWS
    run = subprocess.run([ACTIONLINT, "-shellcheck=", "-pyflakes=", *map(str, WORKFLOWS)], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ci_runs_the_script_that_runs_the_readme_s_test_command():
    assert "bash .ci/run" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test   #" in (ROOT / "README.md").read_text()
