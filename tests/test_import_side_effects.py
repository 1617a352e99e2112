"""Importing minichinchilla changes nothing in the process: no threads, no allocator settings, no
environment variables, no BLAS thread limits. What the fast kernels need is set up on first use.

Each check runs in a fresh interpreter (this test process has long since imported everything).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, json, os, sys, threading
    import numpy  # NumPy's own import is not ours to judge
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = lambda: []
    blas_before = [(m.get("internal_api"), m.get("num_threads")) for m in threadpool_info()]
    threads_before, env_before = threading.active_count(), dict(os.environ)
    loads = []

    class SpyCDLL(ctypes.CDLL):  # records every shared library opened through ctypes (mallopt needs one)
        def __init__(self, name, *args, **kwargs):
            loads.append(str(name))
            super().__init__(name, *args, **kwargs)

    ctypes.CDLL = SpyCDLL
    import minichinchilla, minichinchilla.bench, minichinchilla.model, minichinchilla.optim, minichinchilla.train
    from minichinchilla.functional.fast import _blocks
    report = dict(loads=loads, threads=[threads_before, threading.active_count()],
                  env_changed=sorted(k for k in set(env_before) | set(os.environ)
                                     if env_before.get(k) != os.environ.get(k)),
                  blas=[blas_before, [(m.get("internal_api"), m.get("num_threads")) for m in threadpool_info()]],
                  setup_at_import=_blocks.setup_done())
    if "--use" in sys.argv:  # then run a fast kernel once: the setup happens now, and only now
        import numpy as np
        from minichinchilla.functional import fast
        fast.layernorm_forward(np.ones((4, 8)), np.ones(8), np.zeros(8))
        report["setup_after_use"] = _blocks.setup_done()
    print(json.dumps(report))
""")


def _probe(*args, **env):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_changes_nothing_in_the_process():
    report = _probe()
    assert report["loads"] == [], f"a shared library was opened at import: {report['loads']}"
    assert report["threads"][0] == report["threads"][1], "import started threads"
    assert report["env_changed"] == [], f"import changed the environment: {report['env_changed']}"
    assert report["blas"][0] == report["blas"][1], "import changed BLAS thread limits"
    assert report["setup_at_import"] is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator setting is glibc's")
def test_the_fast_kernels_set_themselves_up_on_first_use():
    report = _probe("--use", MINICHINCHILLA_MALLOPT="1")
    assert report["setup_at_import"] is False and report["setup_after_use"] is True


def test_a_bad_backend_variable_does_not_break_the_import():
    report = _probe(MINICHINCHILLA_BACKEND="cupy-that-is-not-there")
    assert report["loads"] == []


@pytest.mark.parametrize("value", ["cupy", "not-a-backend"])
def test_a_backend_that_cannot_run_is_one_error_line_on_the_command_line(tmp_path, value):
    from minichinchilla.backend import cupy_available

    if value == "cupy" and cupy_available():
        pytest.skip("CuPy runs here")
    for argv in (["bench", "--configs", "s10k"], ["train", "--max-steps", "1", "--out", str(tmp_path / "run")]):
        out = subprocess.run([sys.executable, "-m", "minichinchilla", *argv], capture_output=True, text=True,
                             env={**os.environ, "MINICHINCHILLA_BACKEND": value}, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "MINICHINCHILLA_BACKEND" in lines[0], out.stderr
        assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()  # nothing was written
