"""Grading a notebook contained, with checks its code cannot reach: the pieces nbgrader and the self-check share.

- :class:`ContainedKernelManager` starts the kernel through :mod:`autograder.sandbox` (limits, no network,
  read-only course files) and kills everything it started when the kernel goes.
- :class:`ContainedExecute` is nbgrader's ``Execute`` with that kernel, a cap on the output kept, and a
  kernel that dies (``os._exit``, a limit) ending the run instead of the grading.
- :class:`RunChecks` then runs every test cell's checks outside the kernel (:func:`run_checks`) and puts
  their verdicts in the cells' outputs, which nbgrader's ``SaveAutoGrades`` scores as usual.

``nbgrader_config.py`` wires both into ``nbgrader autograde``; ``python -m autograder check`` and
``python -m autograder grade`` use the same classes, so the three give the same score.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Configurable

from nbgrader.preprocessors import Execute, NbGraderPreprocessor

from autograder import sandbox
from autograder.notebooks import REPO, is_grade_cell

OUTPUT_NOTE = "[rice-lab: output over {limit} in this notebook; the rest of it was not kept]"


class GradingSandbox(Configurable):
    """Limits for the code of the notebooks being graded (``c.GradingSandbox.*`` in nbgrader_config.py)."""

    contain = Bool(True, help="Run kernels and answer processes inside the sandbox").tag(config=True)
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


def checks_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for kernels whose checks the graders run outside them (shared course data included)."""
    from autograder.datasets import CACHE_ENV, cache_dir

    env = dict(os.environ if env is None else env)
    env["RICE_LAB_CHECKS"] = "outside"
    env[CACHE_ENV] = str(cache_dir())
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONPATH"] = sandbox._pythonpath(env.get("PYTHONPATH", ""))
    return env


# --- the kernel -------------------------------------------------------------------------------------

class ContainedKernelManager(AsyncKernelManager):
    """A kernel started through the sandbox; with namespaces it talks over Unix sockets (no network)."""

    limits_json = Unicode("").tag(config=False)
    run_dir = Unicode("").tag(config=False)
    log_path = Unicode("").tag(config=False)

    def prepare(self, limits: sandbox.Limits | None, run_dir: Path, log_path: Path | None = None) -> None:
        """Set the limits (None: run uncontained), the folder for the kernel's home and sockets, and the
        file that gets what the kernel process writes to its own stdout and stderr."""
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = str(run_dir)
        self.log_path = str(log_path or run_dir / "kernel.log")
        self.connection_file = str(run_dir / "connection.json")  # beside the sockets, in a folder the kernel sees
        self.containment = None
        if limits is not None:
            limits = limits.with_paths(writable=[run_dir])
            self.containment = sandbox.Containment.create(limits)
            self.limits_json = self.containment.limits.to_json()
            if sandbox.namespaces_available() and not limits.network:
                self.transport, self.ip = "ipc", str(run_dir / "kernel")

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        env = checks_env(kw.get("env") or os.environ)
        if self.limits_json:
            limits = sandbox.Limits.from_json(self.limits_json)
            cwd = kw.get("cwd")
            if cwd:  # the notebook's own folder is its to write in
                limits = limits.with_paths(writable=[cwd])
            cmd = sandbox.contained_command(cmd, limits)
            env = sandbox.contained_env(env, limits, Path(self.run_dir) / "home")
        kw["env"] = env
        if self.log_path:
            self._log = open(self.log_path, "ab")
            kw["stdout"] = kw["stderr"] = self._log
        return cmd, kw

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if not restart and getattr(self, "containment", None) is not None:
            self.containment.kill()
        if not restart and getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


class ContainedExecute(Execute):
    """nbgrader's Execute: a contained kernel, a cap on kept output, a dead kernel ends only the run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", ContainedKernelManager)
        super().__init__(*args, **kwargs)
        self.sandbox = GradingSandbox(parent=self)
        self._scratch: Path | None = None
        self.kernel_log: Path | None = None
        self._refusals: list[str] = []

    def course_root(self) -> Path:
        from nbgrader.coursedir import CourseDirectory
        return Path(CourseDirectory(config=self.config).root).resolve()

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        if isinstance(km, ContainedKernelManager):
            self._scratch = Path(tempfile.mkdtemp(prefix="rice-lab-kernel-"))
            # The log lives outside the folders the kernel may write (and, when grading a cohort, see).
            self._log_dir = Path(tempfile.mkdtemp(prefix="rice-lab-kernel-log-"))
            self.kernel_log = self.kernel_log or self._log_dir / "kernel.log"
            km.prepare(self.sandbox.limits(self.course_root()) if self.sandbox.contain else None, self._scratch,
                       self.kernel_log)
        return km

    def sandbox_notes(self) -> list[str]:
        """What the sandbox refused the kernel (from the kernel's log), one note each."""
        return list(self._refusals)

    def _read_refusals(self) -> None:
        if self.kernel_log is None or not Path(self.kernel_log).is_file():
            return
        text = Path(self.kernel_log).read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("rice-lab sandbox: refused"):
                note = "the sandbox " + line.removeprefix("rice-lab sandbox: ")
                if note not in self._refusals:
                    self._refusals.append(note)
                    self.log.warning("%s", note)

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> tuple[NotebookNode, Any]:
        self._output_left = sandbox.parse_size(self.sandbox.max_output)
        self._output_limit = self.sandbox.max_output
        self._current = None
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            cell = self._current
            if cell is not None:
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename="DeadKernelError",
                    evalue="the kernel died while running this cell (os._exit, a crash, or a memory or "
                           "process limit); the cells after it did not run", traceback=[]))
            return nb, resources
        finally:
            self._read_refusals()
            for folder in (self._scratch, getattr(self, "_log_dir", None)):
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            self._scratch = self._log_dir = None

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        self._current = cell
        return super().preprocess_cell(cell, resources, index)

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
        size = _message_size(msg)
        if self._output_left is not None and size > self._output_left:
            if self._output_left >= 0:
                outs.append(nbformat.v4.new_output("stream", name="stdout",
                                                   text=OUTPUT_NOTE.format(limit=self._output_limit) + "\n"))
            self._output_left = -1
            return None
        if self._output_left is not None:
            self._output_left -= size
        return super().output(outs, msg, display_id, cell_index)


def _message_size(msg: dict) -> int:
    content = msg.get("content", {})
    if "text" in content:
        return len(content["text"])
    return sum(len(v) if isinstance(v, str) else len(str(v)) for v in (content.get("data") or {}).values())


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


def run_checks(nb: NotebookNode, workdir: Path, limits: sandbox.Limits | None, timeout: int = 60) -> list[str]:
    """Run every test cell's checks in this process against the notebook's code re-run in an answer process.

    The code cells that are not test cells run, in order, in a fresh (contained) answer process; before
    each test cell, its checks call the answers there. Each test cell's outputs become the checks'
    verdict. Returns notes for the report (test cells that could not be run this way).
    """
    from autograder.remote import AnswerProcess, AnswerProcessGone

    notes: list[str] = []
    pending: list[str] = []
    process: AnswerProcess | None = None
    home = Path(tempfile.mkdtemp(prefix="rice-lab-answers-"))
    env = checks_env()
    env.pop("RICE_LAB_CHECKS")
    # The files a check writes for its cases (images, masks) go where the answer process can read them.
    cases = home / "home" / "cases"
    cases.mkdir(parents=True)
    tempdir, tempfile.tempdir = tempfile.tempdir, str(cases)
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if not is_grade_cell(cell):
                pending.append(cell.source)
                continue
            try:
                calls = check_calls(cell.source)
            except NotRunnableOutside as err:
                notes.append(f"test cell {cell.metadata.get('nbgrader', {}).get('grade_id')} was scored in the "
                             f"kernel ({err})")
                continue
            if process is None:
                try:
                    process = AnswerProcess(workdir, limits=limits, home=home / "home",
                                            preload=tuple(dict.fromkeys(c.module for c in calls)), env=env)
                except AnswerProcessGone as err:
                    cell.outputs = [_error("AnswerProcessGone", str(err))]
                    break
            try:
                process.exec_cells(pending, timeout)
            except AnswerProcessGone:
                pass  # the checks below report it
            pending = []
            cell.outputs = _verdict(calls, process, timeout)
    finally:
        tempfile.tempdir = tempdir
        if process is not None:
            process.close()
        shutil.rmtree(home, ignore_errors=True)
    return notes


def _verdict(calls: list[CheckCall], process: Any, timeout: int) -> list[NotebookNode]:
    """Run the calls of one test cell; its outputs (what the checks printed, then the first failure)."""
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


class RunChecks(NbGraderPreprocessor):
    """nbgrader autograde step, after Execute: every test cell's verdict comes from :func:`run_checks`."""

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        workdir = Path((resources.get("metadata") or {}).get("path") or ".").resolve()
        settings = GradingSandbox(parent=self)
        from nbgrader.coursedir import CourseDirectory
        root = Path(CourseDirectory(config=self.config).root).resolve()
        limits = settings.limits(root).with_paths(writable=[workdir]) if settings.contain else None
        timeout = int(self.config.Execute.get("timeout", 60) or 60)
        for note in run_checks(nb, workdir, limits, timeout):
            self.log.warning(note)
        return nb, resources
