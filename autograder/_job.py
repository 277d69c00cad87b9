"""One grading job, run as its own process: nbgrader autograde, then generate_feedback, in one interpreter.

Usage (from a scratch course folder): ``python -m autograder._job ASSIGNMENT STUDENT [nbgrader options]``.
Exit status: 0 graded with feedback, 1 autograde failed, 3 graded but feedback failed.
"""

from __future__ import annotations

import sys


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
