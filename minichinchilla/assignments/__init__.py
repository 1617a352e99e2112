"""Classroom assignments: nbgrader-compatible release and grading for `notebooks/assignments/`.

* ``python -m minichinchilla.assignments release OUTDIR`` writes the student versions;
* ``python -m minichinchilla.assignments grade SUBMISSIONS_DIR --out RESULTS_DIR`` grades them;
* ``check(name, fn, *given)`` runs one exercise's visible checks from a notebook (self-study).

The instructor's guide is `notebooks/assignments/README.md`.
"""
from .checks import check
from .nbtools import strip_solutions

__all__ = ["check", "main", "strip_solutions"]


def main(argv=None) -> int:
    """The command line (``python -m minichinchilla.assignments``); see `cli.py`."""
    from .cli import main as _main

    return _main(argv)
