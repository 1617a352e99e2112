"""Fast LayerNorm and RMSNorm: accelerate `minichinchilla/functional/norms.py` (same contract).

The reference writes each equation as one whole-array NumPy expression: about eight passes over
the (N, C) activations forward and ten backward, each streaming the array from memory. Changes:

1. Rows go through every pass in blocks of ~256 KiB (`_blocks.for_each_block`), so only the first
   pass over a block reads main memory; the rest find it in the L2 cache.
2. Row means are matrix-vector products with a vector of 1/C (and column sums products with a row
   of ones): BLAS beats NumPy's reduction over short rows.
3. Every pass writes into a preallocated buffer (`out=`), no temporaries; `dout * n` is made once
   and serves both dgamma and mean(dn * n).
4. Blocks run on worker threads; per-block partial sums are added in block order, so dgamma has
   the same bits with any thread count.

`tests/test_functional_fast.py` holds every output and gradient equal to the reference to 1e-10.
"""
from __future__ import annotations

from ...backend import get_array_module
from ..norms import _check_norm_inputs
from ._blocks import for_each_block


def _sum_partials(parts):
    """Add per-block partial sums in block order (the same bits with any number of threads)."""
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """`minichinchilla.functional.layernorm_forward`, faster: same inputs and outputs (its cache is for the fast backward).

    Cache-blocked, row means as BLAS products, worker threads.
    """
    xp = get_array_module(x, gamma, beta)
    _check_norm_inputs(x, gamma, beta)
    if beta is None:
        raise TypeError("beta must be a floating-point array of shape (C,), got None")
    C = x.shape[-1]
    x2 = x.reshape(-1, C)  # (N, C)
    n = xp.empty_like(x2)  # (N, C)
    out = xp.empty_like(x2)  # (N, C)
    rstd = xp.empty((x2.shape[0], 1), dtype=x.dtype)  # (N, 1)
    avg = xp.full((C, 1), 1.0 / C, dtype=x.dtype)  # (C, 1): x @ avg is the row mean

    def block(rows):
        xb, nb, ob, rb = x2[rows], n[rows], out[rows], rstd[rows]  # (R, C), (R, C), (R, C), (R, 1)
        xp.matmul(xb, avg, out=rb)  # (R, 1) mean
        xp.subtract(xb, rb, out=nb)  # (R, C) centred
        xp.multiply(nb, nb, out=ob)  # (R, C) squares; this buffer becomes the output
        xp.matmul(ob, avg, out=rb)  # (R, 1) biased variance
        rb += eps  # (R, 1)
        xp.sqrt(rb, out=rb)  # (R, 1)
        xp.reciprocal(rb, out=rb)  # (R, 1) rstd = 1/sqrt(var + eps), cached: no divide later
        nb *= rb  # (R, C) normalised: zero mean, unit variance per row
        xp.multiply(nb, gamma, out=ob)  # (R, C)
        ob += beta  # (R, C)

    for_each_block(xp, x2.shape[0], C * x.dtype.itemsize, block, uses_blas=True)
    lead = x.shape[:-1]
    return out.reshape(x.shape), (n.reshape(x.shape), rstd.reshape(lead + (1,)), gamma)


def layernorm_backward(dout, cache):
    """`minichinchilla.functional.layernorm_backward`, faster: same inputs and outputs (its cache is for the fast backward).

    Cache-blocked, means as BLAS products, dgamma summed per block in block order.
    """
    n, rstd, gamma = cache
    xp = get_array_module(dout, n)
    C = n.shape[-1]
    n2, r2, d2 = n.reshape(-1, C), rstd.reshape(-1, 1), dout.reshape(-1, C)  # (N, C), (N, 1), (N, C)
    dx = xp.empty_like(d2)  # (N, C)
    g_avg = (gamma * (1.0 / C)).reshape(C, 1)  # (C, 1): y @ g_avg = mean(y * gamma) per row

    def block(rows):
        nb, rb, db, dxb = n2[rows], r2[rows], d2[rows], dx[rows]  # (R, C), (R, 1), (R, C), (R, C)
        ones = xp.ones((1, nb.shape[0]), dtype=nb.dtype)  # (1, R): ones @ y sums the rows of y
        dn_n = xp.multiply(db, nb)  # (R, C) dout * n
        dgamma = xp.matmul(ones, dn_n)[0]  # (C,) gamma scales every row: sum over rows
        dbeta = xp.matmul(ones, db)[0]  # (C,)
        mean_dn = xp.matmul(db, g_avg)  # (R, 1) mean(dn)
        mean_dnn = xp.matmul(dn_n, g_avg)  # (R, 1) mean(dn * n)
        xp.multiply(db, gamma, out=dxb)  # (R, C) dn, turned into dx in place
        dxb -= mean_dn  # (R, C)
        xp.multiply(nb, mean_dnn, out=dn_n)  # (R, C) reuse the scratch
        dxb -= dn_n  # (R, C)
        dxb *= rb  # (R, C)
        return dgamma, dbeta

    parts = for_each_block(xp, n2.shape[0], C * n.dtype.itemsize, block, uses_blas=True)
    dgamma = _sum_partials([p[0] for p in parts])  # (C,)
    dbeta = _sum_partials([p[1] for p in parts])  # (C,)
    return dx.reshape(n.shape), dgamma, dbeta


def rmsnorm_forward(x, gamma, eps=1e-6):
    """`minichinchilla.functional.rmsnorm_forward`, faster: same inputs and outputs (its cache is for the fast backward).

    Cache-blocked, as `layernorm_forward`.
    """
    xp = get_array_module(x, gamma)
    _check_norm_inputs(x, gamma)
    C = x.shape[-1]
    x2 = x.reshape(-1, C)  # (N, C)
    n = xp.empty_like(x2)  # (N, C)
    out = xp.empty_like(x2)  # (N, C)
    rstd = xp.empty((x2.shape[0], 1), dtype=x.dtype)  # (N, 1)
    avg = xp.full((C, 1), 1.0 / C, dtype=x.dtype)  # (C, 1)

    def block(rows):
        xb, nb, ob, rb = x2[rows], n[rows], out[rows], rstd[rows]
        xp.multiply(xb, xb, out=ob)  # (R, C) squares; buffer reused for the output
        xp.matmul(ob, avg, out=rb)  # (R, 1) mean square
        rb += eps  # (R, 1)
        xp.sqrt(rb, out=rb)  # (R, 1)
        xp.reciprocal(rb, out=rb)  # (R, 1)
        xp.multiply(xb, rb, out=nb)  # (R, C)
        xp.multiply(nb, gamma, out=ob)  # (R, C)

    for_each_block(xp, x2.shape[0], C * x.dtype.itemsize, block, uses_blas=True)
    lead = x.shape[:-1]
    return out.reshape(x.shape), (n.reshape(x.shape), rstd.reshape(lead + (1,)), gamma)


def rmsnorm_backward(dout, cache):
    """`minichinchilla.functional.rmsnorm_backward`, faster: same inputs and outputs (its cache is for the fast backward).

    Cache-blocked, as `layernorm_backward`.
    """
    n, rstd, gamma = cache
    xp = get_array_module(dout, n)
    C = n.shape[-1]
    n2, r2, d2 = n.reshape(-1, C), rstd.reshape(-1, 1), dout.reshape(-1, C)  # (N, C), (N, 1), (N, C)
    dx = xp.empty_like(d2)  # (N, C)
    g_avg = (gamma * (1.0 / C)).reshape(C, 1)  # (C, 1)

    def block(rows):
        nb, rb, db, dxb = n2[rows], r2[rows], d2[rows], dx[rows]
        ones = xp.ones((1, nb.shape[0]), dtype=nb.dtype)  # (1, R)
        dn_n = xp.multiply(db, nb)  # (R, C) dout * n
        dgamma = xp.matmul(ones, dn_n)[0]  # (C,)
        mean_dnn = xp.matmul(dn_n, g_avg)  # (R, 1) mean(dn * n)
        xp.multiply(db, gamma, out=dxb)  # (R, C) dn, turned into dx in place
        xp.multiply(nb, mean_dnn, out=dn_n)  # (R, C)
        dxb -= dn_n  # (R, C)
        dxb *= rb  # (R, C)
        return dgamma

    dgamma = _sum_partials(for_each_block(xp, n2.shape[0], C * n.dtype.itemsize, block, uses_blas=True))  # (C,)
    return dx.reshape(n.shape), dgamma
