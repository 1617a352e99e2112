"""``python -m minichinchilla.assignments {release,grade,list,collect}`` — see
notebooks/assignments/README.md."""
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
    g.add_argument("--out", required=True, help="what students may see: <student>.json and .html "
                                                 "feedback, grades.csv (never inside SUBMISSIONS_DIR)")
    g.add_argument("--instructor-dir", help="instructor-only: executed notebooks, suspicion report "
                                            "(default: OUT.instructor beside OUT; never inside "
                                            "OUT, the submissions or the repository)")
    g.add_argument("--source", help="instructor notebooks, e.g. a private copy with your own "
                                    "hidden tests (default: the repository's notebooks/assignments)")
    g.add_argument("--cell-timeout", default="60", help="whole seconds per cell (default 60)")
    g.add_argument("--notebook-timeout", default="300",
                   help="whole seconds per notebook (default 300)")
    g.add_argument("--jobs", default="1", help="notebooks graded in parallel (default 1)")
    g.add_argument("--sandbox", choices=("auto", "bwrap", "unshare"), default="auto",
                   help="which sandbox: bubblewrap, else util-linux unshare as root (default auto)")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run student code WITHOUT isolation where no sandbox works (recorded in "
                        "the report and grades.meta.json); never the default")
    g.add_argument("--student", action="append", help="grade only this student (repeatable)")

    ls = sub.add_parser("list", help="list the exercises, their graded cells and points")
    ls.add_argument("--source", help="instructor notebooks")

    c = sub.add_parser("collect", help="(for students) package your notebooks into a zip to submit")
    c.add_argument("folder", help="the folder holding your assignment notebooks")
    c.add_argument("--student", required=True, help="your student id (the zip's top folder)")
    c.add_argument("--out", help="the zip to write (default: <student>-submission.zip here)")
    return p


def _positive_int(flag, text):
    """A whole number of seconds (or jobs) >= 1, or GradingError naming the flag."""
    from .grading import GradingError

    try:
        value = int(str(text), 10)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise GradingError(f"{flag} must be a whole number >= 1, got {text!r}")
    return value


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

        cell_timeout = _positive_int("--cell-timeout", args.cell_timeout)
        notebook_timeout = _positive_int("--notebook-timeout", args.notebook_timeout)
        jobs = _positive_int("--jobs", args.jobs)
        reports = grade(args.submissions, args.out, args.source, cell_timeout, notebook_timeout,
                        jobs, args.student, log=lambda m: print(m, file=sys.stderr),
                        no_sandbox=args.no_sandbox, instructor_dir=args.instructor_dir,
                        sandbox_kind=args.sandbox)
        if args.no_sandbox:
            print("WARNING: graded with --no-sandbox: student code ran with your rights")
        for line in summary_lines(reports):
            print(line)
        print(f"results in {args.out} (grades.csv, one .json and one .html per student)")
        return 0
    if args.command == "collect":
        from .collect import collect

        path, names = collect(args.folder, args.student, args.out)
        for name in names:
            print(f"added {name}")
        print(f"wrote {path}: submit this file")
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
