"""`minichinchilla.runlock.RunLock`: one process per run directory; stale locks are taken over."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minichinchilla.runlock import LOCK_FILE, DirectoryLocked, RunLock

HOLD = """
import sys, time
from minichinchilla.runlock import RunLock
lock = RunLock(sys.argv[1], command="holder")
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _start_holder(directory):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path, command="first") as lock:
        assert lock.held and (tmp_path / LOCK_FILE).exists()
        with pytest.raises(DirectoryLocked, match=rf"in use by another process \(pid {os.getpid()}, first"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()  # nothing left behind
    with RunLock(tmp_path) as again:  # free again
        assert again.took_over_from is None


def test_second_process_is_refused_naming_the_holder(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(DirectoryLocked) as err:
            RunLock(tmp_path).acquire()
        assert f"pid {proc.pid}" in str(err.value) and "locked" in str(err.value)
        assert isinstance(err.value, ValueError)  # the CLI convention prints it as one error: line
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_after_sigkill_is_taken_over(tmp_path):
    proc = _start_holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_FILE).exists()  # kill -9 leaves the file behind
    with RunLock(tmp_path, command="next") as lock:
        assert lock.took_over_from["pid"] == proc.pid


def test_missing_directory_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        RunLock(tmp_path / "nope").acquire()


def test_lock_without_flock_uses_pid_liveness(tmp_path, monkeypatch):
    import minichinchilla.runlock as runlock

    monkeypatch.setattr(runlock, "fcntl", None)  # the Windows path
    (tmp_path / LOCK_FILE).write_text('{"pid": 999999999, "command": "dead"}')
    with RunLock(tmp_path) as lock:
        assert lock.took_over_from["pid"] == 999999999
        with pytest.raises(DirectoryLocked, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
