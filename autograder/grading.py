"""Grading a notebook contained, with checks its code cannot reach: what nbgrader and the self-check share.

:class:`ContainedExecute` replaces nbgrader's ``Execute``. It runs the notebook's cells, in order, in one
answer process (:mod:`autograder.answers`: an IPython shell, as in a kernel, started inside
:mod:`autograder.sandbox`), keeping each cell's outputs. A test cell does not run there: its checks run
in the grading process, calling the learner's functions in the answer process
(:class:`autograder.remote.RemoteFunction`), and their verdict becomes the cell's output, which nbgrader's
``SaveAutoGrades`` scores as usual. Nothing the notebook's code does (rebinding ``numpy.allclose``,
reaching a check's globals, printing to stderr) can touch a check.

``nbgrader_config.py`` wires it into ``nbgrader autograde``; ``python -m autograder check`` and
``python -m autograder grade`` use the same class, so the three give the same score.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Configurable

from nbgrader.preprocessors import NbGraderPreprocessor

from autograder import sandbox
from autograder.notebooks import REPO, has_code, is_grade_cell

OUTPUT_NOTE = "[rice-lab: output over {limit} in this notebook; the rest of it was not kept]"


class GradingSandbox(Configurable):
    """Limits for the code of the notebooks being graded (``c.GradingSandbox.*`` in nbgrader_config.py)."""

    contain = Bool(True, help="Run the notebook's code inside the sandbox").tag(config=True)
    memory = Unicode("4GiB", help="Data memory per process (e.g. 4GiB)").tag(config=True)
    cpu_seconds = Integer(1800, help="CPU seconds per process").tag(config=True)
    processes = Integer(256, help="Processes and threads at once").tag(config=True)
    file_size = Unicode("256MiB", help="Largest file a notebook may write").tag(config=True)
    max_output = Unicode("8MiB", help="Output kept per notebook (the rest is dropped)").tag(config=True)
    network = Bool(False, help="Allow network access").tag(config=True)
    protect = List(Unicode(), help="More folders to keep read-only").tag(config=True)
    hide = List(Unicode(), help="Folders the notebook may not see (other submissions being graded)").tag(config=True)

    def limits(self, course_root: Path | None = None) -> sandbox.Limits:
        """The limits, protecting the course folder, this repository, the library and the course data."""
        limits = sandbox.Limits(memory=sandbox.parse_size(self.memory), cpu_seconds=self.cpu_seconds or None,
                                processes=self.processes or None, file_size=sandbox.parse_size(self.file_size),
                                network=self.network)
        return limits.with_paths(protect=protected_paths(course_root) + list(self.protect), hide=list(self.hide))


def protected_paths(course_root: Path | None = None) -> list[Path]:
    """What a graded notebook may read but never change: the course, the autograder, the library, the data."""
    import rice_lab
    from autograder.datasets import cache_dir

    paths = [REPO, Path(rice_lab.__file__).resolve().parent.parent, cache_dir()]
    if course_root is not None:
        paths.insert(0, Path(course_root))
    return paths


def answers_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the answer process: this repository importable, the shared course data."""
    from autograder.datasets import CACHE_ENV, cache_dir

    env = dict(os.environ if env is None else env)
    env[CACHE_ENV] = str(cache_dir())
    env["PYTHONPATH"] = sandbox._pythonpath(env.get("PYTHONPATH", ""))
    env.pop("MPLBACKEND", None)  # the answer process shows figures inline, as a notebook does
    return env


class ContainedExecute(NbGraderPreprocessor):
    """Run the notebook in a contained answer process and score its test cells from outside it.

    Configured by ``c.Execute.timeout`` (seconds per cell) and ``c.GradingSandbox`` (the limits).
    """

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        from nbgrader.coursedir import CourseDirectory

        workdir = Path((resources.get("metadata") or {}).get("path") or ".").resolve()
        settings = GradingSandbox(parent=self)
        root = Path(CourseDirectory(config=self.config).root).resolve()
        limits = settings.limits(root).with_paths(writable=[workdir]) if settings.contain else None
        timeout = int(self.config.Execute.get("timeout", 60) or 60)
        result = execute_notebook(nb, workdir, limits, timeout, sandbox.parse_size(settings.max_output))
        for note in result.notes:
            self.log.warning("%s", note)
        resources.setdefault("rice_lab", {})["notes"] = result.notes
        return nb, resources


# --- the checks, outside the kernel -------------------------------------------------------------------

@dataclass
class CheckCall:
    """One ``check_x(answer_name, seed=...)`` line of a test cell."""

    module: str
    function: str
    argument: str
    keywords: dict[str, Any] = field(default_factory=dict)


class NotRunnableOutside(ValueError):
    """A test cell holds something other than imports of checks and calls of them."""


def check_calls(source: str) -> list[CheckCall]:
    """The checks a test cell calls: ``from autograder.checks.aNN import check_x`` then ``check_x(name)``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise NotRunnableOutside(f"syntax error: {err}") from None
    imported: dict[str, tuple[str, str]] = {}
    calls = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autograder.checks."):
            for alias in node.names:
                imported[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                isinstance(node.value.func, ast.Name) and node.value.func.id in imported and \
                len(node.value.args) == 1 and isinstance(node.value.args[0], ast.Name):
            try:
                keywords = {k.arg: ast.literal_eval(k.value) for k in node.value.keywords}
            except ValueError:
                raise NotRunnableOutside(f"line {node.lineno}: keyword arguments must be constants") from None
            module, function = imported[node.value.func.id]
            calls.append(CheckCall(module, function, node.value.args[0].id, keywords))
        else:
            raise NotRunnableOutside(f"line {getattr(node, 'lineno', '?')}: only `from autograder.checks.x import "
                                     "check_y` and `check_y(answer)` may appear in a test cell")
    if not calls:
        raise NotRunnableOutside("no check is called")
    return calls


def _stream(text: str) -> NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _error(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


@dataclass
class Execution:
    """What running a notebook found beyond its outputs: notes for the report."""

    notes: list[str] = field(default_factory=list)


def execute_notebook(nb: NotebookNode, workdir: Path, limits: sandbox.Limits | None, timeout: int = 60,
                     max_output: int = 8 * sandbox.MiB) -> Execution:
    """Run ``nb``'s code cells in order in a fresh (contained) answer process, in place.

    Each code cell gets the outputs it produced there (at most ``max_output`` characters in all); each
    test cell gets its checks' verdict, computed in this process against the answers in the other one.
    A cell that stops the answer process (``os._exit``, a limit) ends the run: the cells after it get
    nothing, the test cells after it an error naming what happened.
    """
    from autograder.remote import AnswerProcess, AnswerProcessGone

    execution = Execution()
    home = Path(tempfile.mkdtemp(prefix="rice-lab-answers-"))
    # The files a check writes for its cases (images, masks) go where the answer process can read them.
    cases = home / "home" / "cases"
    cases.mkdir(parents=True)
    calls = {id(cell): _calls_or_none(cell) for cell in nb.cells if cell.cell_type == "code" and is_grade_cell(cell)}
    preload = tuple(dict.fromkeys(c.module for found in calls.values() if found for c in found))
    left, gone = max_output, None
    env = answers_env()  # before the swap below: the course cache's default lives in the real temp dir
    tempdir, tempfile.tempdir = tempfile.tempdir, str(cases)
    process = None
    try:
        try:
            process = AnswerProcess(workdir, limits=limits, home=home / "home", preload=preload, env=env,
                                    log=home / "answers.log")
        except AnswerProcessGone as err:
            gone = str(err)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            found = calls.get(id(cell))
            if gone is not None:
                cell.outputs = [_error("AnswerProcessGone", gone)] if is_grade_cell(cell) else []
                continue
            try:
                if found:
                    cell.outputs = _verdict(found, process, timeout)
                    continue
                if is_grade_cell(cell) and has_code(cell.source):  # a cell of comments alone runs nothing
                    execution.notes.append(f"test cell {cell.metadata.get('nbgrader', {}).get('grade_id')} ran with the "
                                           "notebook's code, not outside it (it holds more than check calls)")
                run = process.run_cell(cell.source, timeout, max(left, 0))
            except AnswerProcessGone as err:
                gone = str(err)
                if is_grade_cell(cell):
                    cell.outputs = [_error("AnswerProcessGone", gone)]
                else:
                    cell.outputs = [_error("DeadKernelError", f"the process running the notebook stopped in this cell: "
                                           f"{gone.split(': ', 1)[-1]}; the cells after it did not run")]
                continue
            cell.outputs = [_output(o) for o in run.get("outputs") or []]
            cell.execution_count = run.get("execution_count")
            left -= sum(len(o.get("text") or "") + sum(len(v) for v in (o.get("data") or {}).values())
                        for o in run.get("outputs") or [])
            if run.get("dropped") and left >= -1:
                cell.outputs.append(_stream(OUTPUT_NOTE.format(limit=sandbox.format_size(max_output)) + "\n"))
                left = -2
    finally:
        tempfile.tempdir = tempdir
        if process is not None:
            process.close()
        execution.notes += _refusals(home / "answers.log")
        shutil.rmtree(home, ignore_errors=True)
    return execution


def _refusals(log: Path) -> list[str]:
    """What the sandbox refused the notebook's code (its audit hook writes one line per refusal)."""
    if not log.is_file():
        return []
    notes = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("rice-lab sandbox: refused"):
            notes.append("the sandbox " + line.removeprefix("rice-lab sandbox: "))
    return list(dict.fromkeys(notes))


def _calls_or_none(cell: NotebookNode) -> list[CheckCall] | None:
    try:
        return check_calls(cell.source)
    except NotRunnableOutside:
        return None


def _output(raw: dict) -> NotebookNode:
    """A notebook output from the answer process's plain dict (only the fields a notebook allows)."""
    kind = raw.get("output_type")
    if kind == "stream":
        return nbformat.v4.new_output("stream", name=str(raw.get("name", "stdout")), text=str(raw.get("text", "")))
    if kind == "error":
        return nbformat.v4.new_output("error", ename=str(raw.get("ename", "Error")), evalue=str(raw.get("evalue", "")),
                                      traceback=[str(line) for line in raw.get("traceback") or []])
    data = {str(k): str(v) for k, v in (raw.get("data") or {}).items()}
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    if kind == "execute_result":
        return nbformat.v4.new_output("execute_result", data=data, metadata=metadata,
                                      execution_count=raw.get("execution_count"))
    return nbformat.v4.new_output("display_data", data=data, metadata=metadata)


def _verdict(calls: list[CheckCall], process: Any, timeout: int) -> list[NotebookNode]:
    """Run the calls of one test cell here; its outputs (what the checks printed, then the first failure)."""
    import importlib

    from autograder.remote import AnswerProcessGone, RemoteFunction

    printed = io.StringIO()
    outputs: list[NotebookNode] = []
    for call in calls:
        try:
            with contextlib.redirect_stdout(printed):
                check = getattr(importlib.import_module(call.module), call.function)
                answer = process.get(call.argument)
                if isinstance(answer, RemoteFunction):
                    answer.timeout = timeout
                check(answer, **call.keywords)
        except AnswerProcessGone as err:
            outputs.append(_error("AnswerProcessGone", str(err)))
            break
        except NameError as err:
            outputs.append(_error("NameError", f"{err} (run the cell that defines it; did it fail?)"))
            break
        except Exception as err:  # CheckFailed, or a check tripping over a strange answer
            outputs.append(_error(type(err).__name__, str(err)))
            break
    if printed.getvalue():
        outputs.insert(0, _stream(printed.getvalue()))
    return outputs
