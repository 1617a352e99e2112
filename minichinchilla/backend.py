"""The array backend: NumPy on the CPU, CuPy on an NVIDIA GPU, one code path for both.

Every kernel in `minichinchilla.functional` asks its *inputs* which array module they
belong to (`xp = get_array_module(x)`) instead of importing numpy, so the same line of
code runs on either device. Only this module decides which backend *new* arrays
(parameters, batches) are created on.

Choose the backend with the environment variable ``MINICHINCHILLA_BACKEND``
(``numpy`` — the default —, ``cupy`` or ``auto``) or at run time with `set_backend`.
"""
from __future__ import annotations

import os

import numpy

_BACKEND_NAMES = ("numpy", "cupy", "auto")
_xp = numpy  # the module new arrays are created with


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
    if name == "numpy" or (name == "auto" and not cupy_available()):
        _xp = numpy
    elif cupy_available():
        import cupy

        _xp = cupy
    else:
        raise RuntimeError(
            "backend 'cupy' was requested but CuPy cannot run here (no CUDA GPU, or CuPy is "
            "not installed: pip install -r requirements-gpu.txt). Use 'numpy' or 'auto'."
        )
    return _xp


def get_backend():
    """The array module (numpy or cupy) that new arrays are created with."""
    return _xp


def backend_name() -> str:
    return _xp.__name__


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
    if _xp is numpy and _module_of(a) is not numpy:
        return to_numpy(a).astype(dtype) if dtype is not None else to_numpy(a)
    return _xp.asarray(a, dtype=dtype)


def to_numpy(a):
    """A NumPy copy of `a`, wherever it lives (used for printing, plotting and saving)."""
    if _module_of(a) is numpy:
        return numpy.asarray(a)
    return a.get()


_env = os.environ.get("MINICHINCHILLA_BACKEND", "numpy").strip().lower() or "numpy"
set_backend(_env)
