"""Softmax along one axis, numerically stable, and its vector–Jacobian product."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float


def softmax_forward(x, axis=-1):
    """Softmax along `axis` (chapters/02-softmax-cross-entropy.md, eq. 2.1), computed
    after subtracting the row max (chapters/02-softmax-cross-entropy.md, eq. 2.2).

    A slice that is entirely -inf (a fully masked attention row) gives all zeros, not NaN.

    Inputs:
        x: (..., n, ...) float array of scores
        axis: the axis to normalise over
    Returns:
        y: same shape and dtype as x, non-negative, summing to 1 along `axis`
        cache: (y, axis)
    """
    xp = get_array_module(x)
    check_float("x", x)
    # Shift invariance (eq. 2.2): subtracting the row max leaves softmax unchanged and makes
    # every exponent <= 0, so exp never overflows.
    m = x.max(axis=axis, keepdims=True)  # (..., 1, ...) row maxima
    # A row that is entirely -inf (every key masked) has max -inf, and -inf - (-inf) = NaN.
    # Shifting such rows by 0 instead keeps them at exp(-inf) = 0.
    m = xp.where(xp.isfinite(m), m, 0.0)  # (..., 1, ...) Python float: dtype is kept
    e = xp.exp(x - m)  # (..., n, ...) eq. 2.1's numerator, shifted
    s = e.sum(axis=axis, keepdims=True)  # (..., 1, ...)
    # s == 0 only for all -inf rows (otherwise the max contributes exp(0) = 1): dividing
    # those zeros by 1 gives the zero row we want instead of 0/0 = NaN.
    y = e / xp.where(s == 0, 1.0, s)  # (..., n, ...) eq. 2.1
    return y, (y, axis)


def softmax_backward(dout, cache):
    """Vector–Jacobian product of softmax (chapters/02-softmax-cross-entropy.md, eq. 2.4).

    The Jacobian (chapters/02-softmax-cross-entropy.md, eq. 2.3) is diag(y) - y y^T; applied to dy it collapses to
    y * (dy - <dy, y>), O(n) per row instead of O(n^2).

    Inputs:
        dout: same shape as y, upstream gradient
        cache: from `softmax_forward`
    Returns:
        dx: same shape as dout
    """
    y, axis = cache
    return y * (dout - (dout * y).sum(axis=axis, keepdims=True))  # (..., n, ...) eq. 2.4
