"""Input validation shared by the kernels: clear errors that name the argument and its shape.

A wrong shape caught here costs one line of reading; the same mistake caught by a
broadcasting rule three layers later costs an afternoon.
"""
from __future__ import annotations


def shape_of(a):
    """The shape of an array as a tuple (or the type name for a non-array)."""
    return tuple(a.shape) if hasattr(a, "shape") else type(a).__name__


def check_float(name, a):
    """Raise TypeError unless `a` is a floating-point array."""
    kind = getattr(getattr(a, "dtype", None), "kind", None)
    if kind != "f":
        got = a.dtype if hasattr(a, "dtype") else type(a).__name__
        raise TypeError(f"{name} must be a floating-point array, got {got} with shape {shape_of(a)}")


def check_int(name, a):
    """Raise TypeError unless `a` is an integer array (token ids, targets)."""
    kind = getattr(getattr(a, "dtype", None), "kind", None)
    if kind not in ("i", "u"):
        got = a.dtype if hasattr(a, "dtype") else type(a).__name__
        raise TypeError(f"{name} must be an integer array, got {got} with shape {shape_of(a)}")


def check_shape(name, a, expected, context=""):
    """Raise ValueError unless `a.shape == expected` (a tuple)."""
    if tuple(a.shape) != tuple(expected):
        extra = f" ({context})" if context else ""
        raise ValueError(f"{name} must have shape {tuple(expected)}{extra}, got {shape_of(a)}")


def check_ndim(name, a, ndim, names):
    """Raise ValueError unless `a` has `ndim` dimensions; `names` spells them, e.g. '(B, T, C)'."""
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {names}, got shape {shape_of(a)}")
