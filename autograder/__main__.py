"""Command line: `python -m autograder generate | check NOTEBOOK | grade COURSE_DIR | reliability`."""

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
    check.add_argument("--source", type=Path, help="folder of the source notebooks with hidden tests "
                       "(default: solutions/ of this repository)")
    check.add_argument("--contained", action="store_true",
                       help="run the notebook's code in the graders' sandbox (memory, CPU, processes, no network, "
                            "read-only course files)")
    check.add_argument("--memory", default="4GiB", help="with --contained: memory per process (default 4GiB)")
    grade = commands.add_parser("grade", help="autograde every submission of a course folder, in parallel")
    grade.add_argument("course_dir", type=Path)
    grade.add_argument("--assignment", action="append", help="assignment to grade (repeatable; default: all submitted)")
    grade.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    grade.add_argument("--timeout", type=int, default=None, help="seconds each cell may run (default: nbgrader_config)")
    grade.add_argument("--job-timeout", type=int, default=None,
                       help="seconds one submission may take in all before it is killed (default 10x --timeout, min 300)")
    grade.add_argument("--csv", type=Path, help="grades csv to write (default COURSE_DIR/grades.csv)")
    grade.add_argument("--source", type=Path, help="folder of the source notebooks with hidden tests, kept "
                       "outside the learners' repository (default: the course's source_directory)")
    grade.add_argument("--memory", default="4GiB", help="memory per process of a submission (default 4GiB)")
    grade.add_argument("--cpu-time", type=int, default=1800, help="CPU seconds per process (default 1800)")
    grade.add_argument("--processes", type=int, default=256, help="processes and threads at once (default 256)")
    grade.add_argument("--max-output", default="8MiB", help="output kept per notebook (default 8MiB)")
    grade.add_argument("--uncontained", action="store_true",
                       help="run submissions without the sandbox (trusted code only)")
    reliability = commands.add_parser("reliability", help="run every check on its solution for many seeds and "
                                      "count false failures")
    reliability.add_argument("assignments", nargs="*", help="assignment names (default: every registered one)")
    reliability.add_argument("--seeds", type=int, default=200, help="seeds per check (default 200)")
    reliability.add_argument("--first-seed", type=int, default=0)
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
    if args.command == "reliability":
        from autograder.reliability import main as reliability_main
        return reliability_main(args.assignments or None, args.seeds, args.first_seed)
    if args.command == "check":
        from autograder.notebooks import NotebookUnreadable
        from autograder.selfcheck import check_notebook
        if not args.notebook.is_file():
            print(f"check: {args.notebook}: no such notebook file", file=sys.stderr)
            return 2
        if args.source is not None and not args.source.is_dir():
            print(f"check: {args.source}: no such source folder", file=sys.stderr)
            return 2
        from autograder.sandbox import parse_size
        try:
            parse_size(args.memory)
        except ValueError as err:
            print(f"check: --memory {err}", file=sys.stderr)
            return 2
        try:
            report = check_notebook(args.notebook, timeout=args.timeout, source=args.source,
                                    contained=args.contained, memory=args.memory)
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
        from autograder.sandbox import parse_size
        for size in (args.memory, args.max_output):
            parse_size(size)
        limits = {"memory": args.memory, "cpu_seconds": args.cpu_time, "processes": args.processes,
                  "max_output": args.max_output, "contain": not args.uncontained}
        result = grade_course(args.course_dir, assignments=args.assignment, jobs=args.jobs,
                              cell_timeout=args.timeout, job_timeout=args.job_timeout, csv_path=args.csv,
                              source=args.source, limits=limits)
    except (CohortError, ValueError) as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    print(result.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
