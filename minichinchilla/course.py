"""A student's own copy of the course: ``python -m minichinchilla course init DIR``.

The repository's notebooks are executed and committed WITH the solutions of their "write it
yourself" cells (so the test suite can run them). A student wants the opposite: the same
notebooks with those solutions taken out, in a folder of their own that they can edit, run and
break without touching the repository. ``course init DIR`` writes

* ``DIR/notebooks/NN-topic.ipynb``: every chapter notebook, each ``### BEGIN SOLUTION`` …
  ``### END SOLUTION`` region replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError()``
  (the assignments' own stripping, `minichinchilla.assignments.nbtools.clear_solutions`) and
  that cell's outputs cleared; every other cell keeps its outputs, to compare against;
* ``DIR/chapters/`` and ``DIR/results/``: what the notebooks link to and read (``../chapters/…``,
  ``../results/…``), so every relative path in them works in the copy.

Then ``jupyter lab DIR/notebooks``. The command refuses a DIR that exists and is not empty, and
writes the copy in a temporary folder beside DIR that is renamed into place only when complete:
an interrupted or failed run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .atomic import copy_file_atomically, write_text_atomically
from .cli import run_command

PACKAGE_DIR = Path(__file__).resolve().parent
CHAPTER_NOTEBOOK = re.compile(r"^\d\d-[\w-]+\.ipynb$")
COPIED_FOLDERS = ("chapters", "results")  # what the notebooks link to or read, copied as they are


def _source_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbtools():
    try:
        from .assignments import nbtools
    except ImportError as e:  # nbformat: in requirements.txt, an extra for `pip install .`
        raise ValueError(f"course init needs {e.name}: pip install '.[assignments]'") from None
    return nbtools


def has_solution(cell) -> bool:
    """Whether a cell holds a "write it yourself" solution (an nbgrader solution region)."""
    return cell.get("cell_type") == "code" and "BEGIN SOLUTION" in _source_text(cell)


def student_cell(cell: dict, where: str = "") -> dict:
    """The student's version of one notebook cell (a new dict; `cell` is unchanged).

    A cell with a ``### BEGIN SOLUTION`` region gets nbgrader's stub in its place and loses its
    outputs (they would show the answer); every other cell comes back as it is.
    """
    if not has_solution(cell):
        return copy.deepcopy(cell)
    nbtools = _nbtools()
    node = nbtools.nbformat.from_dict(copy.deepcopy(cell))
    node.source = _source_text(cell)
    marked = nbtools.is_solution(node)
    if not marked:  # the chapter notebooks are not nbgrader notebooks: mark it for the stripper
        node.metadata.setdefault("nbgrader", {})["solution"] = True
    nbtools.clear_solutions(node, where)
    nbtools.clear_outputs(node)
    if not marked:
        del node.metadata["nbgrader"]
    return json.loads(json.dumps(node))


def student_notebook(nb: dict, name: str = "") -> dict:
    """The student's version of a notebook (JSON dict): `student_cell` on every cell."""
    out = {k: v for k, v in nb.items() if k != "cells"}
    out["cells"] = [student_cell(c, f"{name} cell {i}") for i, c in enumerate(nb.get("cells", []))]
    return out


def default_root() -> Path:
    """The course's repository: the checkout this package lives in, else the current folder."""
    for cand in (PACKAGE_DIR.parent, Path.cwd()):
        if (cand / "notebooks").is_dir() and (cand / "chapters").is_dir():
            return cand
    raise ValueError("cannot find the course (no chapters/ and notebooks/ beside the package or "
                     "in the current folder); pass --root with the repository's folder")


def chapter_notebooks(root: Path) -> list[Path]:
    return sorted(p for p in (root / "notebooks").glob("*.ipynb") if CHAPTER_NOTEBOOK.match(p.name))


def _check_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest} already exists and is not empty; refusing to overwrite it "
                         "(choose a new folder)")
    if not dest.parent.is_dir():
        raise ValueError(f"{dest.parent} does not exist (create it first, or choose another DIR)")


def init(dest, root=None) -> list[Path]:
    """Write a student's copy of the course into `dest` (see the module docstring).

    Raises ValueError (nothing written) when `dest` exists and is not empty, or `root` is not
    the course. Returns the notebooks written, in reading order.
    """
    dest = Path(dest).absolute()
    root = Path(root).resolve() if root is not None else default_root()
    notebooks = chapter_notebooks(root) if (root / "notebooks").is_dir() else []
    if not notebooks:
        raise ValueError(f"--root {root}: no chapter notebooks (notebooks/NN-topic.ipynb) there")
    _check_dest(dest)
    students = {}
    for p in notebooks:  # everything is read and stripped before anything is written
        try:
            nb = json.loads(p.read_text(encoding="utf-8"))
            students[p.name] = student_notebook(nb, p.name)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{p}: not a readable notebook ({e})") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        (tmp / "notebooks").mkdir()
        for name, nb in students.items():
            write_text_atomically(tmp / "notebooks" / name,
                                  json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        for folder in COPIED_FOLDERS:
            if (root / folder).is_dir():
                shutil.copytree(root / folder, tmp / folder,
                                ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
                                copy_function=copy_file_atomically)
        _check_dest(dest)  # still free? (another process may have taken it meanwhile)
        os.replace(tmp, dest)  # atomic; replaces an empty folder, refuses a non-empty one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [dest / "notebooks" / name for name in students]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m minichinchilla course",
        description="A student's own copy of the course notebooks, solutions hidden.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init", help="write a student's copy of the chapter notebooks into DIR")
    i.add_argument("dir", type=Path, metavar="DIR", help="a new (or empty) folder for the copy")
    i.add_argument("--root", type=Path, default=None,
                   help="the course repository (default: the checkout this package lives in)")
    return ap


def _run(args) -> int:
    if args.root is not None and not (args.root / "notebooks").is_dir():
        raise ValueError(f"--root {args.root}: not the course repository (no notebooks/ folder)")
    written = init(args.dir, args.root)
    n_todo = sum(c.get("cell_type") == "code" and "raise NotImplementedError()" in _source_text(c)
                 for p in written for c in json.loads(p.read_text(encoding="utf-8"))["cells"])
    print(f"course: wrote {len(written)} notebooks to {args.dir / 'notebooks'} "
          f"({n_todo} cells for you to write). Open them with:\n"
          f"  jupyter lab {args.dir / 'notebooks'}")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
