"""The nbgrader web interface works out of the box: with this repository's nbgrader_config.py the exchange
exists (so the formgrader offers release and collect), and release -> fetch -> submit -> collect ->
autograde goes round, headless, as the formgrader and the Assignments tab would drive it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.notebooks import REPO, kernel_env, read_notebook, score_cells

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="nbgrader's exchange does not run on Windows")


def _nbgrader(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"nbgrader {' '.join(args)}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


def test_formgrader_finds_the_exchange(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", course)
    code = ("from traitlets.config.loader import PyFileConfigLoader\n"
            "from nbgrader.apps.api import NbGraderAPI\nfrom nbgrader.coursedir import CourseDirectory\n"
            "from nbgrader.auth import Authenticator\n"
            "config = PyFileConfigLoader('nbgrader_config.py', path='.').load_config()\n"
            "api = NbGraderAPI(CourseDirectory(config=config), Authenticator(config=config), config=config)\n"
            "print(api.exchange_root, api.exchange_is_functional)")
    run = subprocess.run([sys.executable, "-c", code], cwd=course, env=kernel_env(tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    root, functional = run.stdout.split()
    assert Path(root) == course / "exchange" and functional == "True"


def test_release_fetch_submit_collect_autograde(tmp_path: Path) -> None:
    course, student = tmp_path / "course", tmp_path / "student"
    course.mkdir()
    student.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", course)
    shutil.copytree(REPO / "solutions" / "01-data", course / "solutions" / "01-data")
    env = kernel_env(tmp_path)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "no-user-config")
    exchange = f"--Exchange.root={course / 'exchange'}"

    _nbgrader(["generate_assignment", "01-data", "--force"], course, env)
    _nbgrader(["release_assignment", "01-data"], course, env)
    _nbgrader(["fetch_assignment", "01-data", "--course", "rice-lab", exchange], student, env)
    fetched = student / "01-data" / "01-data.ipynb"
    nb = nbformat.read(fetched, as_version=4)
    solution = nbformat.read(REPO / "solutions" / "01-data" / "01-data.ipynb", as_version=4)
    answers = {c.get("id"): c.source for c in solution.cells if (c.get("id") or "").endswith("_answer")}
    for cell in nb.cells:
        if cell.get("id") in answers:
            cell.source = answers[cell.get("id")]
    nbformat.write(nb, fetched)
    _nbgrader(["submit", "01-data", "--course", "rice-lab", exchange], student, env)
    _nbgrader(["collect", "01-data"], course, env)
    submitted = [p for p in (course / "submitted").glob("*/01-data/01-data.ipynb")]
    assert len(submitted) == 1
    learner = submitted[0].parent.parent.name
    _nbgrader(["autograde", "01-data", "--student", learner], course, env)
    graded = read_notebook(course / "autograded" / learner / "01-data" / "01-data.ipynb")
    scores = score_cells(graded)
    assert sum(s.points for s in scores) == sum(s.max_points for s in scores) == 12
