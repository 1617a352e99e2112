"""Atomic file writes: a reader (or a crash) sees the old file or the complete new one, never half."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path, text: str) -> None:
    """Write `text` next to `path` under a temporary name, then rename it into place.

    `os.replace` is atomic within one file system, so a kill during the write leaves at most a
    stray temporary file, which is removed when the write fails in Python.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
