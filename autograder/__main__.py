"""Command line: `python -m autograder generate | check NOTEBOOK | grade COURSE_DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run one command, return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="regenerate exercises/ from solutions/ (nbgrader generate_assignment)")
    gen.add_argument("assignments", nargs="*", help="assignment names (default: every registered one)")
    gen.add_argument("--into", type=Path, help="folder to write into (default: exercises/)")
    check = commands.add_parser("check", help="run a notebook in a fresh kernel and print its score per question")
    check.add_argument("notebook", type=Path)
    check.add_argument("--timeout", type=int, default=60, help="seconds each cell may run (default 60)")
    grade = commands.add_parser("grade", help="autograde every submission of a course folder, in parallel")
    grade.add_argument("course_dir", type=Path)
    grade.add_argument("--assignment", action="append", help="assignment to grade (repeatable; default: all submitted)")
    grade.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    grade.add_argument("--timeout", type=int, default=None, help="seconds each cell may run (default: nbgrader_config)")
    grade.add_argument("--job-timeout", type=int, default=None,
                       help="seconds one submission may take in all before it is killed (default 10x --timeout, min 300)")
    grade.add_argument("--csv", type=Path, help="grades csv to write (default COURSE_DIR/grades.csv)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        from autograder.generate import GenerateError, generate
        try:
            for target in generate(args.assignments or None, args.into):
                print(f"generated {target}")
        except GenerateError as err:
            print(f"generate: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "check":
        from autograder.notebooks import NotebookUnreadable
        from autograder.selfcheck import check_notebook
        if not args.notebook.is_file():
            print(f"check: {args.notebook}: no such notebook file", file=sys.stderr)
            return 2
        try:
            report = check_notebook(args.notebook, timeout=args.timeout)
        except NotebookUnreadable as err:
            print(f"check: {args.notebook}: {err}", file=sys.stderr)
            return 2
        print(report.render())
        return 0 if report.points == report.max_points else 1
    from autograder.cohort import CohortError, grade_course
    if not args.course_dir.is_dir():
        print(f"grade: {args.course_dir}: no such course folder", file=sys.stderr)
        return 2
    try:
        result = grade_course(args.course_dir, assignments=args.assignment, jobs=args.jobs,
                              cell_timeout=args.timeout, job_timeout=args.job_timeout, csv_path=args.csv)
    except CohortError as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    print(result.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
