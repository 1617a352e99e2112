"""Linear (affine) layer: Y = XW + b, and its backward.

We use the XW convention: W has shape (d_in, d_out), so a row of X times W is a row of Y
and no transpose appears in the forward pass.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float, check_shape


def linear_forward(x, W, b=None):
    """Affine map over the last axis (chapters/01-autograd.md, eq. 1.8).

    Inputs:
        x: (..., d_in) float array — any number of leading dims (B, T, ...)
        W: (d_in, d_out) weights
        b: (d_out,) bias, or None for no bias
    Returns:
        out: (..., d_out) = x @ W + b
        cache: (x, W, has_bias) for `linear_backward`
    """
    xp = get_array_module(x, W, b)
    check_float("x", x)
    check_float("W", W)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (d_in, d_out), got shape {tuple(W.shape)}")
    if x.ndim < 1 or x.shape[-1] != W.shape[0]:
        raise ValueError(
            f"x's last dim must equal W's rows (d_in): x has shape {tuple(x.shape)}, "
            f"W has shape {tuple(W.shape)}")
    d_in, d_out = W.shape
    if b is not None:
        check_float("b", b)
        check_shape("b", b, (d_out,), f"W has shape {tuple(W.shape)}")
    # Fold every leading dim into one row axis: a single big 2-D GEMM is far faster
    # than a batched (B, T, C) @ (C, d_out) that BLAS sees as B small ones.
    x2 = x.reshape(-1, d_in)  # (N, d_in), N = prod(leading dims)
    out = xp.matmul(x2, W)  # (N, d_out) eq. 1.8
    if b is not None:
        out = out + b  # (N, d_out) eq. 1.8, b broadcast over rows
    out = out.reshape(x.shape[:-1] + (d_out,))  # (..., d_out)
    return out, (x, W, b is not None)


def linear_backward(dout, cache):
    """Gradients of the affine map (chapters/01-autograd.md, eq. 1.9).

    dX = dY W^T,   dW = X^T dY (summed over every leading dim),   db = sum of dY rows.

    Inputs:
        dout: (..., d_out) upstream gradient
        cache: from `linear_forward`
    Returns:
        dx: (..., d_in), dW: (d_in, d_out), db: (d_out,) or None when the forward had no bias
    """
    x, W, has_bias = cache
    d_in, d_out = W.shape
    check_shape("dout", dout, x.shape[:-1] + (d_out,), "the forward output's shape")
    x2 = x.reshape(-1, d_in)  # (N, d_in)
    dout2 = dout.reshape(-1, d_out)  # (N, d_out)
    # The transposes below are views: BLAS reads them with a "transposed" flag, no copy.
    dx = (dout2 @ W.T).reshape(x.shape)  # (..., d_in) eq. 1.9
    dW = x2.T @ dout2  # (d_in, d_out) eq. 1.9: the sum over rows happens inside the GEMM
    db = dout2.sum(axis=0) if has_bias else None  # (d_out,) eq. 1.9: b is added to every row, so sum over rows
    return dx, dW, db
