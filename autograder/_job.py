"""Grading jobs: nbgrader autograde, then generate_feedback, in one interpreter.

``python -m autograder._job ASSIGNMENT STUDENT [nbgrader options]`` grades one submission (run from its
scratch course folder). ``python -m autograder._job --worker`` grades one submission per JSON line read
on stdin (``{"args": [...], "cwd": ..., "env": {...}, "log": ...}``) and answers each with a line
``{"code": N}``: the cohort grader keeps one worker per parallel job, so nbgrader, torch and the checks
are imported once per worker rather than once per submission. Exit status / code: 0 graded with
feedback, 1 autograde failed, 3 graded but feedback failed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def _run(app_class: type, argv: list[str]) -> int:
    app = app_class()
    try:
        app.initialize(argv)
        app.start()
    except SystemExit as stop:
        return int(stop.code or 0)
    except Exception as err:  # nbgrader reports most failures itself; anything else ends this job only
        print(f"ERROR {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        try:
            app.reset()  # nbgrader apps: drop their log handlers and singleton, ready for the next job
        except Exception:
            pass
    return 0


def main(argv: list[str]) -> int:
    """Autograde one submission and generate its feedback; never touches another student's files."""
    from nbgrader.apps import AutogradeApp, GenerateFeedbackApp

    assignment, student, *options = argv
    common = [assignment, "--student", student, "--force", *options]
    if _run(AutogradeApp, common) != 0:
        return 1
    feedback_options = [o for o in common if not o.startswith("--Execute.")]
    return 3 if _run(GenerateFeedbackApp, feedback_options) != 0 else 0


def worker() -> int:
    """Grade the jobs read on stdin, one after another, each with its own folder, environment and log."""
    results = os.dup(1)
    requests = os.fdopen(os.dup(0), "r")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    base_path = list(sys.path)
    for line in requests:
        job = json.loads(line)
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)  # everything this job prints, nbgrader's log included, goes to its own log
        os.dup2(log, 2)
        os.close(log)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        tempfile.tempdir = None  # TMPDIR is the job's own
        try:
            code = main(job["args"])
        except BaseException as err:  # noqa: BLE001 (one job's failure must not end the worker)
            print(f"ERROR {type(err).__name__}: {err}", file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        sys.path[:] = base_path  # nbgrader puts each job's folder first on sys.path
        os.write(results, (json.dumps({"code": code}) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(worker() if sys.argv[1:] == ["--worker"] else main(sys.argv[1:]))
