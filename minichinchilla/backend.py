"""The array backend: NumPy on the CPU, CuPy on an NVIDIA GPU, one code path for both.

Every kernel in `minichinchilla.functional` asks its *inputs* which array module they
belong to (`xp = get_array_module(x)`) instead of importing numpy, so the same line of
code runs on either device. Only this module decides which backend *new* arrays
(parameters, batches) are created on.

Choose the backend with the environment variable ``MINICHINCHILLA_BACKEND``
(``numpy`` — the default —, ``cupy`` or ``auto``) or at run time with `set_backend`. The
variable is read the first time a new array is made (`get_backend`), not at import: importing
the package never fails and never touches a GPU.
"""
from __future__ import annotations

import os

import numpy

_BACKEND_NAMES = ("numpy", "cupy", "auto")
_ENV_VAR = "MINICHINCHILLA_BACKEND"
_xp = None  # the module new arrays are created with; None until first use (see get_backend)


class BackendUnavailable(RuntimeError, ValueError):
    """The requested backend cannot run here. A ValueError too: for a command line it is the
    user's choice that cannot be honoured (one `error:` line, exit 2, see minichinchilla/cli.py)."""


def cupy_available() -> bool:
    """True only when CuPy is installed AND can run a kernel on a GPU.

    ``import cupy`` succeeds on a machine without a GPU, so importing is not enough:
    we ask the CUDA runtime for a device and run one tiny kernel.
    """
    try:
        import cupy

        if not cupy.is_available():
            return False
        int(cupy.arange(2).sum())
        return True
    except Exception:
        return False


def set_backend(name: str):
    """Switch the backend used for new arrays: 'numpy', 'cupy' or 'auto' (CuPy if it runs)."""
    global _xp
    if name not in _BACKEND_NAMES:
        raise ValueError(f"backend must be one of {_BACKEND_NAMES}, got {name!r}")
    _xp = _resolve(name)
    return _xp


def _resolve(name):
    """The array module for a backend name (raises BackendUnavailable for 'cupy' without a GPU)."""
    if name == "numpy" or (name == "auto" and not cupy_available()):
        return numpy
    if cupy_available():
        import cupy

        return cupy
    raise BackendUnavailable(
        "backend 'cupy' was requested but CuPy cannot run here (no CUDA GPU, or CuPy is "
        "not installed: pip install -r requirements-gpu.txt). Use 'numpy' or 'auto'."
    )


def get_backend():
    """The array module (numpy or cupy) that new arrays are created with.

    On first use it is taken from MINICHINCHILLA_BACKEND (default numpy); a value that is not a
    backend, or 'cupy' where CuPy cannot run, raises BackendUnavailable naming the variable.
    """
    global _xp
    if _xp is None:
        name = os.environ.get(_ENV_VAR, "numpy").strip().lower() or "numpy"
        if name not in _BACKEND_NAMES:
            raise BackendUnavailable(f"{_ENV_VAR}={name!r}: must be one of {', '.join(_BACKEND_NAMES)}")
        try:
            _xp = _resolve(name)
        except BackendUnavailable as err:
            raise BackendUnavailable(f"{_ENV_VAR}={name}: {err}") from None
    return _xp


def backend_name() -> str:
    return get_backend().__name__


def get_array_module(*arrays):
    """The array module the given arrays live in (numpy for NumPy arrays and Python scalars).

    Raises TypeError when NumPy and CuPy arrays are mixed: moving data between host and
    device must be explicit (`to_numpy`, `asarray`), never a silent copy.
    """
    module = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool)):
            continue
        m = _module_of(a)
        if module is None:
            module = m
        elif m is not module:
            raise TypeError(
                f"cannot mix {module.__name__} and {m.__name__} arrays in one operation; "
                "move them to one device first (minichinchilla.backend.asarray / to_numpy)"
            )
    return module if module is not None else numpy


def _module_of(a):
    t = type(a)
    if t.__module__.startswith("cupy"):
        import cupy

        return cupy
    return numpy


def asarray(a, dtype=None):
    """Put `a` on the current backend's device (a copy only when needed)."""
    xp = get_backend()
    if xp is numpy and _module_of(a) is not numpy:
        return to_numpy(a).astype(dtype) if dtype is not None else to_numpy(a)
    return xp.asarray(a, dtype=dtype)


def to_numpy(a):
    """A NumPy copy of `a`, wherever it lives (used for printing, plotting and saving)."""
    if _module_of(a) is numpy:
        return numpy.asarray(a)
    return a.get()

