"""Write the student versions of the instructor notebooks (nbgrader's generate_assignment)."""
from __future__ import annotations

from pathlib import Path

from . import nbtools
from .grading import GradingError, load_instructor


def release(outdir, source=None):
    """Write one student notebook per instructor notebook of `source` into `outdir`.

    Solutions become ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, hidden tests are
    removed, outputs cleared; nbgrader metadata is kept. Refuses a non-empty `outdir`.
    Returns the written paths.
    """
    from .grading import default_source

    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise GradingError(f"{outdir} already exists and is not empty; refusing to overwrite it "
                           "(choose a new directory or empty it first)")
    notebooks = load_instructor(source or default_source())
    released = {}
    for name, nb in notebooks.items():
        try:
            released[name] = nbtools.release_notebook(nb, name)
        except nbtools.NotebookFormatError as e:
            raise GradingError(f"cannot release {name}: {e}") from None
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, nb in released.items():
        nbtools.write(nb, outdir / name)
        paths.append(outdir / name)
    return paths
