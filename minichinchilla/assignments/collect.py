"""Package a student's assignment notebooks for submission (CS231n's ``collect_submission``).

``python -m minichinchilla.assignments collect FOLDER --student ID`` writes ``ID-submission.zip``
holding ``ID/A1-....ipynb`` and the other assignment notebooks of FOLDER — exactly the layout the
grader expects once the instructor unzips every submission into one folder. It refuses a notebook
that is not valid JSON (a half-saved file) and never overwrites an existing zip.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import nbformat

from ..atomic import write_atomically

NOTEBOOK = re.compile(r"^A\d+-.*\.ipynb$")


def collect(folder, student, out=None):
    """Write the submission zip; returns (path, [names added]). Raises GradingError on bad input."""
    from .grading import GradingError

    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"{folder} is not a folder")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", student or ""):
        raise GradingError(f"--student {student!r}: use letters, digits, '.', '_' or '-' only")
    out = Path(out) if out else Path(f"{student}-submission.zip")
    if out.exists():
        raise GradingError(f"{out} already exists; refusing to overwrite it")
    notebooks = sorted(p for p in folder.iterdir() if p.is_file() and NOTEBOOK.match(p.name))
    if not notebooks:
        raise GradingError(f"{folder} holds no assignment notebooks (A1-....ipynb)")
    for p in notebooks:
        try:
            nbformat.validate(nbformat.read(str(p), as_version=4))
        except Exception as e:  # noqa: BLE001
            raise GradingError(f"{p} is not a valid notebook ({type(e).__name__}); save it again "
                               "from Jupyter") from None
    def pack(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for p in notebooks:
                z.write(p, f"{student}/{p.name}")

    write_atomically(out, pack)
    return out, [p.name for p in notebooks]
