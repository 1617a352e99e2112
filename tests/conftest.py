"""Shared pytest set-up: markers for optional extras skip cleanly where the extra is absent.

| marker  | needs                                              | install                                   |
|---------|----------------------------------------------------|-------------------------------------------|
| gpu     | a CUDA GPU where CuPy really runs                  | pip install -r requirements-gpu.txt       |
| torch   | PyTorch (the cross-checks)                         | pip install torch==2.13.0                 |
| docs    | the book's Sphinx stack (and Chromium for browsers)| pip install -r requirements-docs.txt      |
| dask    | dask.distributed (the sweep's distributed executor)| pip install "dask[distributed]"           |
| sandbox | a working bubblewrap or unshare user namespace     | apt-get install bubblewrap                |
| nbgrader| nbgrader itself (release checked against its rules)| pip install nbgrader                      |

`.ci/run` runs the README's command without any extra (everything marked here skips), then installs
the extras and runs `pytest tests -m "torch or docs or dask or sandbox or nbgrader"`.
"""
import functools
import importlib.util
import shutil
import subprocess

import numpy as np
import pytest

from minichinchilla.backend import cupy_available


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@functools.lru_cache(maxsize=None)
def _sandbox_works() -> bool:
    """True where an unprivileged namespace sandbox really starts (bubblewrap, else unshare)."""
    tries = []
    if shutil.which("bwrap"):
        tries.append(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"])
    if shutil.which("unshare"):
        tries.append(["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "true"])
    for argv in tries:
        try:
            if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    return False


HAS_TORCH = _has("torch")
HAS_GPU = cupy_available()
HAS_DOCS = all(_has(m) for m in ("sphinx", "myst_nb", "sphinx_book_theme"))
HAS_DASK = _has("dask") and _has("distributed")
HAS_NBGRADER = _has("nbgrader")

_REASONS = {
    "gpu": "needs a CUDA GPU where CuPy really runs",
    "torch": "PyTorch is not installed (pip install torch==2.13.0)",
    "docs": "the docs stack is not installed (pip install -r requirements-docs.txt)",
    "dask": 'Dask is not installed (pip install "dask[distributed]")',
    "sandbox": "no working bubblewrap/unshare sandbox (apt-get install bubblewrap)",
    "nbgrader": "nbgrader is not installed (pip install nbgrader)",
}


def _missing(marker: str) -> bool:
    if marker == "sandbox":
        return not _sandbox_works()
    return not {"gpu": HAS_GPU, "torch": HAS_TORCH, "docs": HAS_DOCS, "dask": HAS_DASK,
            "nbgrader": HAS_NBGRADER}[marker]


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, reason in _REASONS.items():
            if marker in item.keywords and _missing(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
