"""Fast GELU: accelerates `gelu_forward`/`gelu_backward` of `minichinchilla/functional/activations.py`.

GELU is about ten elementwise passes, each one flop per 8 bytes moved: memory-bound. The reference
writes it as one expression, so every pass streams the whole (N, 4C) array from memory and makes
a temporary. Changes:

1. Rows in blocks of ~256 KiB (`_blocks.for_each_block`): the first pass brings a block into the
   L2 cache, the other nine find it there.
2. Every pass writes in place into the output buffer (`out=`): no temporaries to allocate.
3. Blocks on worker threads (NumPy releases the GIL inside a ufunc).

ReLU (one pass) has nothing to gain. `tests/test_functional_fast.py` holds both equal to the
reference to 1e-10.
"""
from __future__ import annotations

from ...backend import get_array_module
from .._checks import check_float
from ..activations import _GELU_3C, _GELU_C, _SQRT_2_OVER_PI
from ._blocks import for_each_block

def gelu_forward(x):
    """`minichinchilla.functional.gelu_forward`, faster: same inputs and outputs (its cache is for the fast backward).

    Ten in-place passes over cache-sized blocks of rows.
    """
    xp = get_array_module(x)
    check_float("x", x)
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)  # (N, F)
    t = xp.empty_like(x2)  # (N, F) becomes the tanh term in place
    out = xp.empty_like(x2)  # (N, F)

    def block(rows):
        xb, tb, ob = x2[rows], t[rows], out[rows]  # (R, F) each
        xp.multiply(xb, xb, out=tb)  # (R, F)
        tb *= xb  # (R, F) x^3 (x*x*x, not x**3: cheaper and dtype-safe)
        tb *= _GELU_C  # (R, F)
        tb += xb  # (R, F)
        tb *= _SQRT_2_OVER_PI  # (R, F) the tanh argument
        xp.tanh(tb, out=tb)  # (R, F)
        xp.add(tb, 1.0, out=ob)  # (R, F)
        ob *= xb  # (R, F)
        ob *= 0.5  # (R, F)

    for_each_block(xp, x2.shape[0], x2.shape[1] * x.dtype.itemsize, block)
    return out.reshape(x.shape), (x, t.reshape(x.shape))


def gelu_backward(dout, cache):
    """`minichinchilla.functional.gelu_backward`, faster: same inputs and outputs (its cache is for the fast backward).

    In-place passes over cache-sized blocks of rows.
    """
    x, t = cache
    xp = get_array_module(dout, x)
    shape2 = (-1, x.shape[-1]) if x.ndim else (1, 1)
    x2, t2, d2 = x.reshape(shape2), t.reshape(shape2), dout.reshape(shape2)  # (N, F) each
    dx = xp.empty_like(x2)  # (N, F)

    def block(rows):
        xb, tb, db, dxb = x2[rows], t2[rows], d2[rows], dx[rows]  # (R, F) each
        xp.multiply(xb, xb, out=dxb)  # (R, F) becomes the local derivative in place
        dxb *= _GELU_3C  # (R, F)
        dxb += 1.0  # (R, F)
        dxb *= _SQRT_2_OVER_PI  # (R, F) d(tanh argument)/dx
        sech2 = xp.multiply(tb, tb)  # (R, F) scratch
        xp.subtract(1.0, sech2, out=sech2)  # (R, F) 1 - tanh^2
        dxb *= sech2  # (R, F)
        dxb *= xb  # (R, F)
        dxb += 1.0  # (R, F)
        dxb += tb  # (R, F)
        dxb *= 0.5  # (R, F) local derivative
        dxb *= db  # (R, F) chain rule

    for_each_block(xp, x2.shape[0], x2.shape[1] * x.dtype.itemsize, block)
    return dx.reshape(x.shape)
