"""``python -m minichinchilla.assignments {release,grade,list}`` — see notebooks/assignments/README.md."""
from __future__ import annotations

import argparse
import sys

from ..cli import run_command


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m minichinchilla.assignments",
        description="Release and grade the course's assignment notebooks (nbgrader-compatible).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("release", help="write the student versions of the instructor notebooks")
    r.add_argument("outdir", help="new (or empty) directory for the student notebooks")
    r.add_argument("--source", help="instructor notebooks (default: the repository's "
                                    "notebooks/assignments)")

    g = sub.add_parser("grade", help="grade a folder of submissions, one sub-folder per student")
    g.add_argument("submissions", help="SUBMISSIONS_DIR/<student>/<notebook>.ipynb")
    g.add_argument("--out", required=True, help="results: <student>.json, grades.csv, and the "
                                                 "executed notebooks under <student>/")
    g.add_argument("--source", help="instructor notebooks, e.g. a private copy with your own "
                                    "hidden tests (default: the repository's notebooks/assignments)")
    g.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    g.add_argument("--notebook-timeout", type=float, default=300.0,
                   help="seconds per notebook (default 300)")
    g.add_argument("--jobs", type=int, default=1, help="notebooks graded in parallel (default 1)")
    g.add_argument("--student", action="append", help="grade only this student (repeatable)")

    ls = sub.add_parser("list", help="list the exercises, their graded cells and points")
    ls.add_argument("--source", help="instructor notebooks")
    return p


def main(argv=None) -> int:
    from .grading import GradingError  # a problem with the grader's inputs: exit 2, no traceback

    return run_command(_parser(), _run, argv, user_errors=(GradingError,))


def _run(args) -> int:
    if args.command == "release":
        from .release import release

        paths = release(args.outdir, args.source)
        for path in paths:
            print(f"wrote {path}")
        return 0
    if args.command == "grade":
        from .grading import GradingError, grade, summary_lines

        if args.jobs < 1 or args.cell_timeout <= 0 or args.notebook_timeout <= 0:
            raise GradingError("--jobs, --cell-timeout and --notebook-timeout must be positive")
        reports = grade(args.submissions, args.out, args.source, args.cell_timeout,
                        args.notebook_timeout, args.jobs, args.student,
                        log=lambda m: print(m, file=sys.stderr))
        for line in summary_lines(reports):
            print(line)
        print(f"results in {args.out} (grades.csv and one JSON file per student)")
        return 0
    if args.command == "list":
        from . import nbtools
        from .exercises import exercise_of
        from .grading import default_source, load_instructor

        total = 0.0
        for name, nb in load_instructor(args.source or default_source()).items():
            print(name)
            for gid, pts, _ in nbtools.graded_cells(nb):
                ex = exercise_of(gid)
                print(f"  {gid:<32} {pts:>4g}  {ex.title if ex else ''}")
                total += pts
        print(f"total {total:g} points")
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse requires one of the three


if __name__ == "__main__":
    sys.exit(main())
