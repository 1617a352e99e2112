"""The one way the package writes a whole file: atomically, and on disk before it is visible.

A reader, or a crash at any moment (``kill -9``, power loss), sees either the old file or the
complete new one, never half of one:

1. the bytes go to a temporary file in the same folder (``.NAME.XXXX.tmp``; the same file
   system, so the rename below cannot turn into a copy);
2. ``fsync``: the data is on disk before any name points at it (without it, a crash soon
   after the rename can leave the new name pointing at an empty file);
3. ``os.replace`` renames it over the old name, atomically on POSIX and Windows;
4. the folder is fsynced so the rename itself survives a crash.

If the write fails in Python, the temporary file is removed. Append-only logs (``log.jsonl``)
are not written here: they append one line at a time, flushed per line (`append_line`).

    write_text_atomically("out/report.json", json.dumps(report))
    write_atomically("ckpt/model.npz", lambda f: np.savez(f, **arrays))
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_SUFFIX = ".tmp"


def write_atomically(path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a binary temporary file next to `path`, fsync it, rename it to `path`.

    Creates the parent folder if needed. Returns `path` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.chmod(tmp, _new_file_mode())  # mkstemp makes it private (0600); a plain file is not
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_bytes_atomically(path, data: bytes) -> Path:
    return write_atomically(path, lambda f: f.write(data))


def write_text_atomically(path, text: str) -> Path:
    """`text` as UTF-8 (newlines written as given, on every platform)."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def copy_file_atomically(src, path) -> Path:
    """Copy the file `src` to `path` the same way, keeping `src`'s modification time."""
    with open(src, "rb") as source:
        write_atomically(path, lambda f: shutil.copyfileobj(source, f))
    st = os.stat(src)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return Path(path)


def write_json_atomically(path, obj, indent: int | None = 1) -> Path:
    """`obj` as JSON followed by a newline. NaN/inf are refused: they are not JSON."""
    return write_text_atomically(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def append_line(path, line: str) -> None:
    """Append one line to a log and flush it to disk: after a crash the log holds every line
    appended before it (the last one at worst cut short, which the log readers skip)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def _new_file_mode() -> int:
    """The mode `open(path, "w")` would give a new file: 0o666 minus the process umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022  # the usual default where /proc is missing
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; its rename is durable enough
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename has still happened
    finally:
        os.close(fd)
