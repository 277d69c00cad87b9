"""`python -m autograder grade COURSE_DIR`: autograde a cohort in parallel, never stopping on a bad submission.

Each submission is graded by its own ``nbgrader autograde`` (and ``generate_feedback``) process in a
scratch course holding a *copy* of the gradebook, so parallel jobs never write the same sqlite file.
The main process then merges each job's grades into the course gradebook, one at a time, and writes
nbgrader's grades csv plus a report with every submission's outcome and the reasons for it.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
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

from autograder.audit import REJECTED
from autograder.notebooks import (NotebookUnreadable, first_error_line, grade_id, is_grade_cell, kernel_env,
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

    def render(self) -> str:
        """A table of outcomes, then where the csv and the report are."""
        lines = [f"{'student':<20} {'assignment':<12} {'score':>11}  status  reasons"]
        for o in self.outcomes:
            reasons = "; ".join(o.reasons) or "-"
            lines.append(f"{o.student:<20} {o.assignment:<12} {o.score:>5g}/{o.max_score:<5g}  {o.status:<6}  {reasons}")
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

    @classmethod
    def load(cls, root: Path) -> "Course":
        root = root.resolve()
        config_file = root / "nbgrader_config.py"
        if not config_file.is_file():
            raise CohortError(f"{config_file}: not found; COURSE_DIR must be an nbgrader course folder")
        config = PyFileConfigLoader(config_file.name, path=str(root)).load_config()
        directories = config.get("CourseDirectory", {})

        def folder(name: str, default: str) -> Path:
            return root / directories.get(name, default)

        db_url = directories.get("db_url", f"sqlite:///{root / 'gradebook.db'}")
        return cls(root, folder("source_directory", "source"), folder("submitted_directory", "submitted"),
                   folder("autograded_directory", "autograded"), folder("feedback_directory", "feedback"),
                   db_url, directories.get("course_id", "default_course"))


def grade_course(course_dir: Path, assignments: list[str] | None = None, jobs: int = 2,
                 cell_timeout: int | None = None, job_timeout: int | None = None,
                 csv_path: Path | None = None) -> CohortResult:
    """Grade every submission under COURSE_DIR/submitted; write the gradebook, feedback, csv and report."""
    course = Course.load(course_dir)
    if not course.submitted.is_dir():
        raise CohortError(f"{course.submitted}: no submissions folder (nbgrader collect puts them there)")
    names = assignments or sorted({p.name for p in course.submitted.glob("*/*") if p.is_dir()})
    for name in names:
        if not (course.source / name).is_dir():
            raise CohortError(f"{course.source / name}: no source for assignment {name!r}")
    job_timeout = job_timeout or max(300, 10 * (cell_timeout or 60))
    with tempfile.TemporaryDirectory(prefix="rice-lab-grade-") as scratch_dir:
        scratch = Path(scratch_dir)
        env = kernel_env(scratch)
        released = {name: _prepare_assignment(course, name, scratch, env) for name in names}
        students = sorted(p.name for p in course.submitted.iterdir() if p.is_dir())
        with Gradebook(course.db_url, course.course_id) as gb:
            for student in students:
                gb.update_or_create_student(student)
        snapshot = scratch / "gradebook-snapshot.db"
        shutil.copy(_db_path(course), snapshot)
        tasks = [(s, a) for a in names for s in students if (course.submitted / s / a).is_dir()]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_grade_one, course, s, a, released[a], snapshot, scratch, env,
                                   cell_timeout, job_timeout) for s, a in tasks]
            outcomes = []
            for future in futures:  # merged in a fixed order: one writer, deterministic gradebook
                outcome, job_db = future.result()
                _merge(course, outcome, job_db)
                outcomes.append(outcome)
    csv_path = Path(csv_path or course.root / "grades.csv")
    _export(course, csv_path)
    report_path = course.root / "grading_report.csv"
    _write_report(outcomes, report_path)
    return CohortResult(outcomes, csv_path, report_path)


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


def _write_config(course: Course, workdir: Path) -> None:
    """A scratch course: the course's config, the source folder linked, paths relative to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(course.root / "nbgrader_config.py", workdir / "nbgrader_config.py")
    source = workdir / course.source.name
    if not source.exists():
        source.symlink_to(course.source, target_is_directory=True)


def _prepare_assignment(course: Course, name: str, scratch: Path, env: dict[str, str]) -> Path:
    """Release the assignment in a scratch course (for comparison) and make sure the gradebook has it."""
    work = scratch / f"release-{name}"
    _write_config(course, work)
    log = work / "generate.log"
    code = _nbgrader(["generate_assignment", name, "--force", f"--CourseDirectory.root={work}"], work, env, log)
    release_dirs = [p for p in work.glob(f"*/{name}") if p.is_dir() and p.parent.name != course.source.name]
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
               env: dict[str, str], cell_timeout: int | None, job_timeout: int) -> tuple[Outcome, Path | None]:
    """Inspect, then autograde one submission in a scratch course; never raises for a bad submission."""
    start = time.monotonic()
    outcome = Outcome(student, assignment)
    submission = course.submitted / student / assignment
    gradable, outcome.reasons = inspect_submission(submission, release)
    if not gradable:
        outcome.status = "zero"
        return outcome, None
    work = scratch / "jobs" / f"{student}--{assignment}"
    _write_config(course, work)
    shutil.copytree(submission, work / course.submitted.name / student / assignment)
    shutil.copy(snapshot, work / "gradebook.db")
    log = work / "autograde.log"
    options = [f"--CourseDirectory.root={work}", f"--CourseDirectory.db_url=sqlite:///{work / 'gradebook.db'}"]
    if cell_timeout:
        options.append(f"--Execute.timeout={cell_timeout}")
    code = _nbgrader([assignment, student, *options], work, env, log, timeout=job_timeout,
                     module="autograder._job")
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
    outcome.reasons += _execution_notes(graded, notebooks, cell_timeout)
    if code == 3:
        outcome.reasons.append("feedback could not be generated")
    outcome.seconds = time.monotonic() - start
    return outcome, work


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
        reasons += [f"{name}: {r}" for r in _compare_cells(nb, read_notebook(release / name))]
        if path.stat().st_size > BIG_FILE:
            reasons.append(f"{name}: file is {path.stat().st_size / 1e6:.1f} MB (saved outputs are cleared "
                           "before grading)")
    return gradable, reasons


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
    order = [grade_id(c) for c in released.cells if grade_id(c) and grade_id(c) in mine]
    if [grade_id(c) for c in nb.cells if grade_id(c) in order] != order:
        reasons.append("cells reordered (graded in the submitted order)")
    tests = [c for c in nb.cells if is_grade_cell(c) and c.cell_type == "code"]
    if tests and all(c.get("execution_count") is None for c in tests):
        reasons.append("the checks were never run before submitting (graded anyway)")
    return reasons


def _execution_notes(graded: Path, notebooks: list[str], cell_timeout: int | None) -> list[str]:
    """What the autograded notebooks show: timeouts, rejected cells, failing tests."""
    notes = []
    for name in notebooks:
        nb = read_notebook(graded / name)
        for index, cell in enumerate(nb.cells):
            error = first_error_line(cell) or ""
            if error.startswith(("CellTimeoutError", "KeyboardInterrupt")):
                notes.append(f"cell {index + 1} ran past the {cell_timeout or 'configured'} s limit and was interrupted")
            if REJECTED in error or cell.source.startswith(f"raise RuntimeError('{REJECTED}"):
                notes.append(f"cell {index + 1} rejected: it touches the autograder")
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
