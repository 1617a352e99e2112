"""Rotary position embedding (RoPE), "rotate-half" layout, and its backward.

Layout (the GPT-NeoX / Hugging Face LLaMA convention): the head dimension hs is split
into two halves, and channel i is paired with channel i + hs/2, for i = 0 .. hs/2 - 1.
The pair at position p is rotated by the angle p * theta_i with theta_i = base^(-2i/hs):

    out[i]        = x[i] cos - x[i + hs/2] sin
    out[i + hs/2] = x[i + hs/2] cos + x[i] sin

(The "interleaved" layout of the original paper pairs channels 2i and 2i+1 instead; the
two differ only by a fixed permutation of the channels of q and k.)
"""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float


def rope_tables(xp, T, hs, base=10000.0, offset=0, dtype=None):
    """cos and sin of the rotation angles for positions offset .. offset+T-1.

    Inputs:
        xp: the array module (numpy or cupy); T: number of positions; hs: head size (even)
    Returns:
        cos, sin: each (T, hs/2) in `dtype`. Angles are formed in float64 and rounded once,
        so positions in the thousands keep float32-accurate tables.
    """
    half = hs // 2
    inv_freq = base ** (-xp.arange(half, dtype=xp.float64) * (2.0 / hs))  # (hs/2,) theta_i
    pos = xp.arange(offset, offset + T, dtype=xp.float64)  # (T,)
    angles = pos[:, None] * inv_freq[None, :]  # (T, hs/2)
    return xp.cos(angles).astype(dtype, copy=False), xp.sin(angles).astype(dtype, copy=False)


def _rotate(x, cos, sin):
    """Rotate each channel pair (i, i + hs/2) of x (..., T, hs) by the tabulated angles.

    The inverse rotation is the same call with -sin (rotation by minus the angle).
    """
    xp = get_array_module(x, cos)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (..., T, hs/2) views
    return xp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)  # (..., T, hs) eq. 5.4


def rope_forward(x, base=10000.0, offset=0):
    """Apply RoPE to x (chapters/05-transformer.md, eq. 5.4), positions offset .. offset+T-1.

    Because a rotation by p*theta dotted with one by p'*theta depends only on p - p',
    q . k after RoPE depends on the RELATIVE position of query and key. `offset` is the
    position of the first row: the KV cache (eq. 5.8) uses it for newly generated tokens.

    Inputs:
        x: (..., T, hs) float with hs even, e.g. queries (B, NH, T, hs)
        base: the frequency base (10000.0 in the RoFormer / LLaMA papers)
        offset: integer position of x[..., 0, :]
    Returns:
        out: (..., T, hs), cache: (cos, sin), each (T, hs/2) in x's dtype
    """
    xp = get_array_module(x)
    check_float("x", x)
    if x.ndim < 2 or x.shape[-1] % 2 != 0:
        raise ValueError(f"x must be (..., T, hs) with hs even, got shape {tuple(x.shape)}")
    T, hs = x.shape[-2], x.shape[-1]
    cos, sin = rope_tables(xp, T, hs, base, offset, x.dtype)  # (T, hs/2) each
    return _rotate(x, cos, sin), (cos, sin)


def rope_backward(dout, cache):
    """RoPE backward (chapters/05-transformer.md, eq. 5.5): a rotation is orthogonal, so
    its transpose — the rotation by the opposite angle — carries the gradient back.

    Inputs:
        dout: (..., T, hs); cache from `rope_forward`
    Returns:
        dx: (..., T, hs)
    """
    cos, sin = cache
    return _rotate(dout, cos, -sin)  # (..., T, hs) eq. 5.5
