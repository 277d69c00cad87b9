"""`python -m autograder grade COURSE_DIR`: autograde a cohort in parallel, never stopping on a bad submission.

Each submission is graded by its own ``nbgrader autograde`` (and ``generate_feedback``) process in a
scratch course holding *copies* of the source, the submission and the gradebook, so parallel jobs never
write the same sqlite file. The notebook's code runs contained (:mod:`autograder.sandbox`: memory, CPU
time, processes, output and file size, no network, read-only course files) and its checks run outside
its kernel (:mod:`autograder.grading`). After every job the course files, the gradebook and the other
submissions are compared by hash with what they were (:mod:`autograder.integrity`); anything changed is
restored and the submission scores zero. The main process merges each job's grades into the course
gradebook, one at a time, and writes nbgrader's grades csv plus a report with every outcome and why.
"""

from __future__ import annotations

import csv
import json
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning
from nbgrader.plugins.export import CsvExportPlugin
from nbgrader.utils import compute_checksum, parse_utc
from traitlets.config.loader import PyFileConfigLoader

from autograder import sandbox
from autograder.audit import REJECTED
from autograder.integrity import Guarded, tree_hashes
from autograder.notebooks import (REPO, NotebookUnreadable, first_error_line, grade_id, is_grade_cell, kernel_env,
                                  nbgrader_meta, read_notebook, score_cells)

BIG_FILE = 2_000_000  # bytes; larger submissions are graded but reported


class CohortError(Exception):
    """The course folder cannot be graded at all (no config, no submissions, no source)."""


@dataclass
class Outcome:
    """How one submission ended: its score and why."""

    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"   # "graded" or "zero" (not gradable: a reason says why)
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class CohortResult:
    """Everything a cohort run produced."""

    outcomes: list[Outcome]
    csv_path: Path
    report_path: Path
    seconds: float = 0.0
    jobs: int = 1
    protection: list[str] = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        """Submissions graded per minute of wall-clock time (the whole run, preparation included)."""
        return 60 * len(self.outcomes) / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        """A table of outcomes, then throughput, protections, and where the csv and the report are."""
        lines = [f"{'student':<20} {'assignment':<12} {'score':>11}  status  reasons"]
        for o in self.outcomes:
            reasons = "; ".join(o.reasons) or "-"
            lines.append(f"{o.student:<20} {o.assignment:<12} {o.score:>5g}/{o.max_score:<5g}  {o.status:<6}  {reasons}")
        lines.append(f"graded {len(self.outcomes)} submissions in {self.seconds:.0f} s with {self.jobs} jobs "
                     f"({self.per_minute:.1f} per minute)")
        lines += [f"contained: {line}" for line in self.protection]
        lines += [f"grades:  {self.csv_path}", f"report:  {self.report_path}"]
        return "\n".join(lines)


@dataclass
class Course:
    """Paths of a course folder, as its nbgrader_config.py sets them."""

    root: Path
    source: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_url: str
    course_id: str
    source_name: str = "source"  # the source folder's name in nbgrader_config.py (scratch courses use it)

    @classmethod
    def load(cls, root: Path, source: Path | None = None) -> "Course":
        root = root.resolve()
        config_file = root / "nbgrader_config.py"
        if not config_file.is_file():
            raise CohortError(f"{config_file}: not found; COURSE_DIR must be an nbgrader course folder")
        config = PyFileConfigLoader(config_file.name, path=str(root)).load_config()
        directories = config.get("CourseDirectory", {})

        def folder(name: str, default: str) -> Path:
            return root / directories.get(name, default)

        db_url = directories.get("db_url", f"sqlite:///{root / 'gradebook.db'}")
        source = Path(source).resolve() if source else folder("source_directory", "source")
        return cls(root, source, folder("submitted_directory", "submitted"),
                   folder("autograded_directory", "autograded"), folder("feedback_directory", "feedback"),
                   db_url, directories.get("course_id", "default_course"),
                   directories.get("source_directory", "source"))


def grade_course(course_dir: Path, assignments: list[str] | None = None, jobs: int = 2,
                 cell_timeout: int | None = None, job_timeout: int | None = None,
                 csv_path: Path | None = None, source: Path | None = None,
                 limits: dict | None = None) -> CohortResult:
    """Grade every submission under COURSE_DIR/submitted; write the gradebook, feedback, csv and report.

    ``source`` is a folder of source notebooks outside the course (private hidden tests); ``limits``
    sets the sandbox (keys of :class:`autograder.grading.GradingSandbox`: memory, cpu_seconds, processes,
    max_output, contain).
    """
    from autograder.course import prepare_course
    from autograder.datasets import CACHE_ENV, cache_dir, course_dataset

    start = time.monotonic()
    course = Course.load(course_dir, source)
    if not course.submitted.is_dir():
        raise CohortError(f"{course.submitted}: no submissions folder (nbgrader collect puts them there)")
    if not course.source.is_dir():
        raise CohortError(f"{course.source}: no such source folder")
    names = assignments or sorted({p.name for p in course.submitted.glob("*/*") if p.is_dir()})
    for name in names:
        if not (course.source / name).is_dir():
            raise CohortError(f"{course.source / name}: no source for assignment {name!r}")
    limits = {"contain": True, **(limits or {})}
    enforced = sandbox.namespaces_available()
    if limits["contain"] and not enforced and jobs > 1:
        jobs = 1  # without namespaces a submission could write elsewhere: one at a time, so the hashes say who
    job_timeout = job_timeout or max(300, 10 * (cell_timeout or 60))
    course_dataset()  # made once, here, before contained kernels read it
    prepare_course(names)  # and what a notebook reads beyond it (05-shortcut: its two classifiers)
    with tempfile.TemporaryDirectory(prefix="rice-lab-grade-") as scratch_dir:
        scratch = Path(scratch_dir)
        env = kernel_env(scratch)
        env[CACHE_ENV] = str(cache_dir())  # every job reads the same course data (jobs get their own TMPDIR)
        released = {name: _prepare_assignment(course, name, scratch, env) for name in names}
        students = sorted(p.name for p in course.submitted.iterdir() if p.is_dir())
        with Gradebook(course.db_url, course.course_id) as gb:
            for student in students:
                gb.update_or_create_student(student)
        snapshot = scratch / "gradebook-snapshot.db"
        shutil.copy(_db_path(course), snapshot)
        guard = _Guard(course, scratch, enforced or not limits["contain"])
        tasks = [(s, a) for a in names for s in students if (course.submitted / s / a).is_dir()]
        outcomes = []

        workers = _Workers(env)

        def grade(task: tuple[str, str]) -> tuple[Outcome, Path | None]:
            outcome, job = _grade_one(course, task[0], task[1], released[task[1]], snapshot, scratch, env,
                                      cell_timeout, job_timeout, limits, workers)
            return guard.verify(outcome, job)

        try:
            if jobs <= 1:
                for task in tasks:  # one at a time: grade, check the files, merge
                    outcome, job = grade(task)
                    guard.merge(outcome, job)
                    outcomes.append(outcome)
            else:
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    for outcome, job in pool.map(grade, tasks):  # merged in a fixed order: one writer
                        guard.merge(outcome, job)
                        outcomes.append(outcome)
        finally:
            workers.close()
    csv_path = Path(csv_path or course.root / "grades.csv")
    _export(course, csv_path)
    report_path = course.root / "grading_report.csv"
    _write_report(outcomes, report_path)
    protection = sandbox.describe(_limits_of(limits)) if limits["contain"] else ["nothing (--uncontained)"]
    if limits["contain"] and not enforced:
        protection.append("one submission at a time: without namespaces, files are checked by hash after each")
    protection += guard.notes
    return CohortResult(outcomes, csv_path, report_path, time.monotonic() - start, jobs, protection)


def _limits_of(limits: dict) -> sandbox.Limits:
    return sandbox.Limits(memory=sandbox.parse_size(limits.get("memory", "4GiB")),
                          cpu_seconds=limits.get("cpu_seconds", 1800), processes=limits.get("processes", 256),
                          protect=("course",))


class _Guard:
    """The course's files, the other submissions and the gradebook, checked by hash after every job.

    Where the sandbox makes them read-only (namespaces), a change cannot come from a submission: it is
    someone else's work (an instructor editing while grading) and is left alone, with a note. Elsewhere
    the submission that ran is the one that could: the files are restored, the changed versions kept in
    ``grading_quarantine/`` (nothing is lost), and the submission scores zero.
    """

    def __init__(self, course: Course, scratch: Path, enforced: bool) -> None:
        import rice_lab

        self.course, self.enforced = course, enforced
        paths = [course.source, course.submitted, course.root / "nbgrader_config.py", REPO / "autograder",
                 Path(rice_lab.__file__).resolve().parent]
        self.files = Guarded.take(paths, scratch / "backup")
        self.gradebook = _db_path(course)
        self.gradebook_backup = scratch / "gradebook-merged.db"
        self._remember_gradebook()
        self.lock = threading.Lock()
        self.notes: list[str] = []

    def _remember_gradebook(self) -> None:
        shutil.copy(self.gradebook, self.gradebook_backup)
        self.gradebook_hash = tree_hashes(self.gradebook)

    def verify(self, outcome: Outcome, job: Path | None) -> tuple[Outcome, Path | None]:
        """After a job: whatever changed is restored (and kept aside) if the submission could have done it."""
        with self.lock:
            changed = self.files.changes()
            gradebook_changed = tree_hashes(self.gradebook) != self.gradebook_hash
            if not changed and not gradebook_changed:
                return outcome, job
            names = ", ".join(_relative(p, self.course.root) for p in changed[:3])
            names += (", " if names and gradebook_changed else "") + ("gradebook.db" if gradebook_changed else "")
            if self.enforced:
                self.notes.append(f"changed while grading, not by a submission (they could not write there): {names}; "
                                  "left as is")
                self.files = Guarded.take(self.files.paths, self.files.backup.parent / f"backup-{len(self.notes)}")
                self.gradebook_hash = tree_hashes(self.gradebook)
                return outcome, job
            quarantine = self.course.root / "grading_quarantine" / f"{outcome.student}--{outcome.assignment}"
            for path in changed + ([self.gradebook] if gradebook_changed else []):
                if path.is_file():
                    target = quarantine / _relative(path, self.course.root).lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
            self.files.restore(changed)
            if gradebook_changed:
                shutil.copy(self.gradebook_backup, self.gradebook)
            outcome.status, outcome.reasons = "zero", outcome.reasons + [
                f"changed files outside its folder ({names}): restored (the changed versions are in "
                f"{_relative(quarantine, self.course.root)}), and the submission scores zero"]
            return outcome, None

    def merge(self, outcome: Outcome, job: Path | None) -> None:
        with self.lock:
            _merge(self.course, outcome, job)
            self._remember_gradebook()


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _area(path: Path, root: Path) -> str:
    """The part of the course (or of this package's checkout) a path lies in: 'solutions/', 'gradebook.db'.

    Naming areas, not files, keeps a reason short, and the same wherever the course and the checkout lie.
    """
    for base in (root, Path(__file__).resolve().parents[1]):
        try:
            parts = path.relative_to(base).parts
        except ValueError:
            continue
        return parts[0] + ("/" if len(parts) > 1 else "") if parts else str(path)
    return str(path)


def _db_path(course: Course) -> Path:
    if not course.db_url.startswith("sqlite:///"):
        raise CohortError(f"{course.db_url}: only sqlite gradebooks are supported")
    return Path(course.db_url[len("sqlite:///"):])


def _nbgrader(args: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float | None = None,
              module: str = "nbgrader") -> int | None:
    """Run one nbgrader command, output to ``log``; None when killed (with its kernels) at ``timeout``."""
    with open(log, "a") as out:
        process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(process.pid)
            process.wait()
            return None


class _Workers:
    """One grading worker process per parallel job (``python -m autograder._job --worker``), each grading
    one submission at a time: nbgrader, torch and the checks are imported once per worker. A worker that
    runs past a job's time limit, or dies, is killed with everything it started and replaced."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.idle: "queue.Queue[subprocess.Popen]" = queue.Queue()
        self.started: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        worker = subprocess.Popen([sys.executable, "-m", "autograder._job", "--worker"], env=self.env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, start_new_session=True)
        with self.lock:
            self.started.append(worker)
        return worker

    def run(self, args: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> int | None:
        """Grade one submission; its exit code, or None when it was killed at ``timeout`` seconds."""
        try:
            worker = self.idle.get_nowait()
        except queue.Empty:
            worker = self._start()
        replies: "queue.Queue[str]" = queue.Queue()
        try:
            worker.stdin.write(json.dumps({"args": args, "cwd": str(cwd), "env": env, "log": str(log)}) + "\n")
            worker.stdin.flush()
            threading.Thread(target=lambda: replies.put(worker.stdout.readline()), daemon=True).start()
            line = replies.get(timeout=timeout)
        except (OSError, queue.Empty) as err:
            self._kill(worker)
            return None if isinstance(err, queue.Empty) else 1
        if not line:  # the worker died (it never should: jobs run inside it, learners' code does not)
            self._kill(worker)
            return 1
        self.idle.put(worker)
        return int(json.loads(line)["code"])

    def _kill(self, worker: subprocess.Popen) -> None:
        _kill_tree(worker.pid)
        worker.wait()
        sandbox.kill_cgroups_of(worker.pid)

    def close(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                try:
                    worker.stdin.close()
                    worker.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    self._kill(worker)


def _kill_tree(pid: int) -> None:
    """Kill a process and every descendant (kernels run in sessions of their own)."""
    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _write_config(course: Course, workdir: Path, copy_assignment: str | None = None) -> None:
    """A scratch course: the course's config and its source (linked, or one assignment copied)."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(course.root / "nbgrader_config.py", workdir / "nbgrader_config.py")
    source = workdir / course.source_name
    if copy_assignment:
        shutil.copytree(course.source / copy_assignment, source / copy_assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    elif not source.exists():
        source.symlink_to(course.source, target_is_directory=True)


def _prepare_assignment(course: Course, name: str, scratch: Path, env: dict[str, str]) -> Path:
    """Release the assignment in a scratch course (for comparison) and make sure the gradebook has it."""
    work = scratch / f"release-{name}"
    _write_config(course, work)
    log = work / "generate.log"
    code = _nbgrader(["generate_assignment", name, "--force", f"--CourseDirectory.root={work}"], work, env, log)
    release_dirs = [p for p in work.glob(f"*/{name}") if p.is_dir() and p.parent.name != course.source_name]
    if code != 0 or not release_dirs:
        raise CohortError(f"nbgrader generate_assignment {name} failed; see {log.read_text()[-800:]}")
    db = _db_path(course)
    if not db.exists():
        shutil.copy(work / "gradebook.db", db)
    else:
        with Gradebook(course.db_url, course.course_id) as gb:
            try:
                known = bool(gb.find_assignment(name).notebooks)
            except MissingEntry:
                known = False
        if not known:
            code = _nbgrader(["generate_assignment", name, "--force", f"--CourseDirectory.root={work}",
                              f"--CourseDirectory.db_url={course.db_url}"], work, env, log)
            if code != 0:
                raise CohortError(f"could not add {name} to {course.db_url}; see {log}")
    return release_dirs[0]


# --- one submission --------------------------------------------------------------------------------

def _grade_one(course: Course, student: str, assignment: str, release: Path, snapshot: Path, scratch: Path,
               env: dict[str, str], cell_timeout: int | None, job_timeout: int,
               limits: dict, workers: _Workers) -> tuple[Outcome, Path | None]:
    """Inspect, then autograde one submission in a scratch course; never raises for a bad submission."""
    start = time.monotonic()
    outcome = Outcome(student, assignment)
    submission = course.submitted / student / assignment
    gradable, outcome.reasons = inspect_submission(submission, release)
    if not gradable:
        outcome.status = "zero"
        return outcome, None
    work = scratch / "jobs" / f"{student}--{assignment}"
    _write_config(course, work, copy_assignment=assignment)
    shutil.copytree(submission, work / course.submitted.name / student / assignment)
    shutil.copy(snapshot, work / "gradebook.db")
    (work / "tmp").mkdir()
    log = work / "autograde.log"
    options = [f"--CourseDirectory.root={work}", f"--CourseDirectory.db_url=sqlite:///{work / 'gradebook.db'}"]
    if cell_timeout:
        options.append(f"--Execute.timeout={cell_timeout}")
    options += _sandbox_options(course, scratch, limits)
    job_env = {**env, "TMPDIR": str(work / "tmp")}  # kernels' and answer processes' folders live in the job
    code = workers.run([assignment, student, *options], work, job_env, log, timeout=job_timeout)
    graded = work / "autograded" / student / assignment
    notebooks = sorted(p.name for p in release.glob("*.ipynb"))
    complete = code in (0, 3) and all((graded / nb).is_file() for nb in notebooks)
    if code is None:
        outcome.reasons.append(f"killed after {job_timeout} s in all (grading time limit)")
    elif not complete:
        outcome.reasons.append(_failure_reason(log.read_text(errors="replace")))
    if not complete:
        outcome.status = "zero"
        return outcome, None
    mismatch = _scores_mismatch(work, student, assignment, graded, notebooks)
    if mismatch:
        outcome.status = "zero"
        outcome.reasons.append(mismatch)
        return outcome, None
    outcome.reasons += _execution_notes(graded, notebooks, cell_timeout, limits)
    outcome.reasons += _sandbox_refusals(log.read_text(errors="replace"), course.root)
    if code == 3:
        outcome.reasons.append("feedback could not be generated")
    outcome.seconds = time.monotonic() - start
    return outcome, work


def _sandbox_options(course: Course, scratch: Path, limits: dict) -> list[str]:
    """nbgrader options for the job's sandbox: the limits, and what to protect and hide."""
    if not limits.get("contain", True):
        return ["--GradingSandbox.contain=False"]
    options = [f"--GradingSandbox.{key}={limits[key]}" for key in ("memory", "cpu_seconds", "processes", "max_output")
               if key in limits]
    # The real course (gradebook, submissions, source) is read-only; the scratch folder, with every other
    # job's copy, is hidden (the job's own notebook folder and temporary folder stay writable).
    for path in (course.root, course.source):
        options.append(f"--GradingSandbox.protect={path}")
    options.append(f"--GradingSandbox.hide={scratch}")
    return options


def _scores_mismatch(work: Path, student: str, assignment: str, graded: Path, notebooks: list[str]) -> str | None:
    """A reason when the job's gradebook disagrees with the scores its autograded notebooks show."""
    expected = {}
    for name in notebooks:
        for score in score_cells(read_notebook(graded / name)):
            expected[(name.removesuffix(".ipynb"), score.grade_id)] = score.points
    try:
        with Gradebook(f"sqlite:///{work / 'gradebook.db'}", "") as gb, warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)
            submission = gb.find_submission(assignment, student)
            recorded = {(nb.name, g.name): float(g.auto_score or 0.0) for nb in submission.notebooks
                        for g in nb.grades if (nb.name, g.name) in expected}
    except Exception as err:  # an unreadable or missing gradebook is itself a mismatch
        return f"its gradebook could not be read after grading ({type(err).__name__})"
    differing = [cell for cell, points in expected.items() if abs(recorded.get(cell, -1.0) - points) > 1e-9]
    if differing:
        return (f"the grades recorded for {', '.join(c for _, c in differing[:3])} differ from its autograded "
                "notebook (a tampered gradebook): scored zero")
    return None


def _sandbox_refusals(log: str, root: Path) -> list[str]:
    """What the sandbox refused the kernel, from the job's log, one reason per kind."""
    reasons = []
    writes = {_area(Path(w), root) for w in re.findall(r"the sandbox refused a write to (\S+)", log)}
    if writes:
        shown = sorted(writes)
        more = f", and {len(shown) - 4} more" if len(shown) > 4 else ""
        reasons.append(f"tried to write outside its folder ({', '.join(shown[:4])}{more}): refused")
    if "the sandbox refused a network connection" in log:
        reasons.append("tried to open a network connection: refused")
    return reasons


def inspect_submission(submission: Path, release: Path) -> tuple[bool, list[str]]:
    """Compare a submission with the released notebooks: (gradable at all?, reasons worth reporting)."""
    reasons = []
    expected = sorted(p.name for p in release.glob("*.ipynb"))
    present = sorted(p.name for p in submission.glob("*.ipynb"))
    gradable = False
    for name in expected:
        path = submission / name
        if not path.is_file():
            others = [p for p in present if p not in expected]
            reasons.append(f"wrong notebook name: found {', '.join(others)}, expected {name}" if others
                           else f"{name} not submitted")
            continue
        try:
            nb = read_notebook(path)
        except NotebookUnreadable as err:
            reasons.append(f"{name}: {err}")
            continue
        gradable = True
        version = _saved_version(path)
        if version is not None and version < 4:
            reasons.append(f"{name}: saved as nbformat {version} (converted to 4 for grading)")
        reasons += [f"{name}: {r}" for r in _compare_cells(nb, read_notebook(release / name))]
        if path.stat().st_size > BIG_FILE:
            reasons.append(f"{name}: file is {path.stat().st_size / 1e6:.1f} MB (saved outputs are cleared "
                           "before grading)")
    extra = [p for p in present if p not in expected]
    if extra and all((submission / name).is_file() for name in expected):
        reasons.append(f"extra notebook{'s' if len(extra) > 1 else ''} {', '.join(extra)} not graded")
    return gradable, reasons


def _saved_version(path: Path) -> int | None:
    import json
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("nbformat"))
    except (ValueError, TypeError, AttributeError, OSError):
        return None


def _compare_cells(nb, released) -> list[str]:
    """Edited locked cells (nbgrader checksums), deleted and reordered cells, checks never run."""
    reasons = []
    mine = {grade_id(c): c for c in nb.cells if grade_id(c)}
    for cell in released.cells:
        gid = grade_id(cell)
        meta = nbgrader_meta(cell)
        if gid is None:
            continue
        if gid not in mine:
            kind = "test" if meta.get("grade") else "answer" if meta.get("solution") else "locked"
            fate = "nbgrader put it back" if kind == "test" else "it is missing when graded"
            reasons.append(f"{kind} cell {gid} deleted ({fate})")
        elif meta.get("locked") and compute_checksum(mine[gid]) != compute_checksum(cell):
            reasons.append(f"locked cell {gid} edited (checksum differs; the original was restored)")
        if gid in mine:
            theirs = nbgrader_meta(mine[gid])
            for key in ("points", "grade", "solution", "locked", "checksum"):
                if key in meta and theirs.get(key) != meta.get(key) and not (key == "checksum" and not meta.get("locked")):
                    reasons.append(f"cell {gid}: nbgrader metadata '{key}' changed from {meta.get(key)!r} to "
                                   f"{theirs.get(key)!r} (the released value is used)")
    released_ids = {grade_id(c) for c in released.cells if grade_id(c)}
    for gid, cell in mine.items():
        if gid not in released_ids and nbgrader_meta(cell).get("grade"):
            reasons.append(f"unknown test cell {gid} (changed grade id?): not scored")
    order = [grade_id(c) for c in released.cells if grade_id(c) and grade_id(c) in mine]
    if [grade_id(c) for c in nb.cells if grade_id(c) in order] != order:
        reasons.append("cells reordered (graded in the submitted order)")
    tests = [c for c in nb.cells if is_grade_cell(c) and c.cell_type == "code"]
    if tests and all(c.get("execution_count") is None for c in tests):
        reasons.append("the checks were never run before submitting (graded anyway)")
    return reasons


def _execution_notes(graded: Path, notebooks: list[str], cell_timeout: int | None, limits: dict) -> list[str]:
    """What the autograded notebooks show: timeouts, dead kernels, memory, rejected cells, failing tests."""
    from autograder.grading import OUTPUT_NOTE

    notes = []
    truncated = OUTPUT_NOTE.split("{")[0]
    for name in notebooks:
        nb = read_notebook(graded / name)
        for index, cell in enumerate(nb.cells):
            error = first_error_line(cell) or ""
            where = f"cell {index + 1}"
            if error.startswith(("CellTimeoutError", "KeyboardInterrupt")):
                notes.append(f"{where} ran past the {cell_timeout or 'configured'} s limit and was interrupted")
            elif error.startswith("DeadKernelError"):
                notes.append(f"the kernel died in {where} (os._exit, a crash, or a memory or process limit)")
            elif error.startswith("MemoryError"):
                notes.append(f"{where} ran out of memory (cap {limits.get('memory', '4GiB')} per process)")
            elif error.startswith("BlockingIOError") or "Resource temporarily unavailable" in error:
                notes.append(f"{where} hit the cap on processes ({limits.get('processes', 256)} at once)")
            elif error.startswith("AnswerProcessGone") and is_grade_cell(cell):
                notes.append(f"its code stopped the process the checks call ({error.split(': ', 1)[-1][:120]})")
            if REJECTED in error or cell.source.startswith(f"raise RuntimeError('{REJECTED}"):
                notes.append(f"{where} rejected: it touches the autograder")
            if any(truncated in (o.get("text") or "") for o in cell.get("outputs", [])):
                notes.append(f"output cut at {limits.get('max_output', '8MiB')} ({where} onwards)")
        failed = [s.grade_id for s in score_cells(nb) if not s.passed]
        if failed:
            notes.append(f"failed: {', '.join(failed)}")
    return list(dict.fromkeys(notes))


def _failure_reason(log: str) -> str:
    """One line on why nbgrader could not grade a submission, from its log."""
    if "DeadKernelError" in log or "Kernel died" in log:
        return "the kernel died while running the notebook (os._exit, a crash or out of memory)"
    if "UnresponsiveKernelError" in log:
        return "the kernel stopped responding and could not be interrupted"
    if "failed to validate" in log:
        return "nbgrader metadata corrupted (the notebook fails nbgrader's validation)"
    errors = [line for line in log.splitlines() if "ERROR" in line]
    return f"nbgrader could not grade it: {errors[0].split('] ', 1)[-1] if errors else 'see the log'}"


# --- merging, export, report -------------------------------------------------------------------------

def _merge(course: Course, outcome: Outcome, job: Path | None) -> None:
    """Copy a job's grades and files into the course (or record a zero); sets the outcome's score."""
    student, assignment = outcome.student, outcome.assignment
    for folder in (course.autograded, course.feedback):
        stale = folder / student / assignment
        if stale.exists():
            shutil.rmtree(stale)
    timestamp = _timestamp(course.submitted / student / assignment)
    with Gradebook(course.db_url, course.course_id) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission trips a benign autoflush warning
        if job is None:
            submission = gb.update_or_create_submission(assignment, student, timestamp=timestamp)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
            gb.db.commit()
        else:
            _copy_submission(Gradebook(f"sqlite:///{job / 'gradebook.db'}", course.course_id), gb, assignment, student)
            for name, target in (("autograded", course.autograded), ("feedback", course.feedback)):
                if (job / name / student / assignment).is_dir():
                    shutil.copytree(job / name / student / assignment, target / student / assignment)
        submission = gb.find_submission(assignment, student)
        outcome.score, outcome.max_score = float(submission.score), float(submission.max_score)


def _timestamp(submission: Path):
    """The submission's timestamp.txt as nbgrader parses it, or None (missing, empty or invalid)."""
    try:
        return parse_utc((submission / "timestamp.txt").read_text().strip())
    except (OSError, ValueError):
        return None


def _copy_submission(source: Gradebook, target: Gradebook, assignment: str, student: str) -> None:
    """Replace ``target``'s submission with ``source``'s: grades, comments, flags, penalties."""
    with source:
        original = source.find_submission(assignment, student)
        try:
            target.remove_submission(assignment, student)
        except MissingEntry:
            pass
        copy = target.add_submission(assignment, student, timestamp=original.timestamp,
                                     extension=original.extension)
        for notebook in original.notebooks:
            into = next(n for n in copy.notebooks if n.name == notebook.name)
            into.flagged, into.late_submission_penalty = notebook.flagged, notebook.late_submission_penalty
            grades = {g.name: g for g in into.grades}
            for grade in notebook.grades:
                g = grades[grade.name]
                g.auto_score, g.manual_score = grade.auto_score, grade.manual_score
                g.extra_credit, g.needs_manual_grade = grade.extra_credit, grade.needs_manual_grade
            comments = {c.name: c for c in into.comments}
            for comment in notebook.comments:
                comments[comment.name].auto_comment = comment.auto_comment
                comments[comment.name].manual_comment = comment.manual_comment
        target.db.commit()


def _export(course: Course, csv_path: Path) -> None:
    """nbgrader's own csv export (the format of `nbgrader export`)."""
    with Gradebook(course.db_url, course.course_id) as gb:
        CsvExportPlugin(to=str(csv_path)).export(gb)


def _write_report(outcomes: list[Outcome], path: Path) -> None:
    """One row per submission: student, assignment, status, score, max_score, reasons (deterministic)."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["student_id", "assignment", "status", "score", "max_score", "reasons"])
        for o in sorted(outcomes, key=lambda o: (o.assignment, o.student)):
            writer.writerow([o.student, o.assignment, o.status, f"{o.score:g}", f"{o.max_score:g}",
                             "; ".join(o.reasons)])
