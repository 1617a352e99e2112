"""An exclusive lock on a run directory, so that two processes never write one run.

    from minichinchilla.runlock import RunLock, DirectoryLocked

    with RunLock("runs/x", command="train"):
        ...   # only this process writes runs/x until the block ends

    with locked_directory("runs/new", command="train"):   # creates the folder if needed
        ...   # and removes it again if the block fails before writing anything into it

Two `train --out D` (or two `--resume D`, or a sweep writing into an output another sweep is
writing) would interleave their log lines and delete each other's temporary files. The lock
makes the second one stop at once with a clear message instead.

How it works. The lock is the file ``DIR/.minichinchilla.lock``, held with ``fcntl.flock``.
The kernel releases a flock when its holder's process ends in any way, ``kill -9`` included,
so a lock left behind by a killed run is *stale*: the next process gets the lock, sees the old
holder's pid in the file, and takes over (``lock.took_over_from`` says whose it was). The file
names its holder (pid, command, start time) so that a refusal can say who is using the folder.
On release the file is removed; a process that opened it just before the removal notices that
the path no longer names the file it locked, and tries again.

Where ``fcntl`` does not exist (Windows), the lock is the same file created with ``O_EXCL``;
a holder that is no longer alive (its pid is gone) counts as stale and is taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".minichinchilla.lock"


class DirectoryLocked(ValueError):
    """Another live process holds the lock. A ValueError, so every command's error convention
    (`minichinchilla.cli.run_command`) prints it as one ``error:`` line and exits 2."""

    def __init__(self, directory, holder: dict):
        self.directory, self.holder = Path(directory), holder
        who = f"pid {holder.get('pid', '?')}"
        if holder.get("command"):
            who += f", {holder['command']}"
        if holder.get("started"):
            who += f", since {holder['started']}"
        super().__init__(f"{str(self.directory)!r} is locked: it is in use by another process "
                         f"({who}); wait for it to finish or stop it, or use another directory")


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # no file, or one a dying holder left half-written


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: "does this process exist?", sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


class RunLock:
    """``with RunLock(directory, command="train"):`` — hold `directory` exclusively.

    `directory` must exist. Raises `DirectoryLocked` (naming the holder's pid) when another
    live process holds it. After entering, ``took_over_from`` is the holder dict of a stale
    lock that was taken over (its process had died), else None.
    """

    def __init__(self, directory, command: str = ""):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command
        self.took_over_from: dict | None = None
        self._fd: int | None = None

    # ---- context manager ----
    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self.held:
            raise RuntimeError(f"RunLock on {str(self.directory)!r} is already held by this object")
        if not self.directory.is_dir():
            raise FileNotFoundError(f"cannot lock {str(self.directory)!r}: not a directory")
        self._acquire_flock() if fcntl is not None else self._acquire_exclusive_create()
        self._write_holder()

    def release(self) -> None:
        if not self.held:
            return
        try:
            os.unlink(self.path)  # unlink first, while we still hold it: nobody else can be mid-write
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    # ---- the two ways to take it ----
    def _acquire_flock(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DirectoryLocked(self.directory, _read_holder(self.path)) from None
            if self._still_the_file(fd):
                break
            os.close(fd)  # the holder removed the file between our open and our flock: again
        previous = _read_holder(self.path)
        self.took_over_from = previous or None  # a file with a holder in it, yet free: stale
        self._fd = fd

    def _still_the_file(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def _acquire_exclusive_create(self) -> None:
        for _ in range(2):  # at most one stale file to clear
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                return
            except FileExistsError:
                holder = _read_holder(self.path)
                if _pid_alive(holder.get("pid")):
                    raise DirectoryLocked(self.directory, holder) from None
                self.took_over_from = holder
                self.path.unlink(missing_ok=True)
        raise DirectoryLocked(self.directory, _read_holder(self.path))

    def _write_holder(self) -> None:
        holder = {"pid": os.getpid(), "command": self.command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, (json.dumps(holder) + "\n").encode("utf-8"))
        os.fsync(self._fd)


@contextlib.contextmanager
def locked_directory(directory, command: str = "", warn=None):
    """Create `directory` if needed and hold its `RunLock` for the ``with`` block.

    A folder this call created is removed again when the block leaves it empty (bad input
    found after the lock was taken: nothing is left behind). A stale lock that was taken over
    is reported through ``warn(message)`` (default: a line on stderr).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{str(directory)!r} exists and is not a directory")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(directory, command=command) as lock:
            if lock.took_over_from:
                (warn or _print_warning)(
                    f"warning: {str(directory)!r} was locked by pid {lock.took_over_from.get('pid')}, "
                    f"which is gone (killed?); taking the lock over")
            yield lock
    finally:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # succeeds only while it is empty


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr)
