"""Multi-head causal self-attention with masks and optional RoPE; its backward; and a
KV-cached step for generation.

Shapes (llm.c names): B batch, T sequence length, C model width, NH heads, hs = C / NH.
Every head is one slice of a batched matmul over (B, NH): no Python loop over batch,
time or heads anywhere.
"""
from __future__ import annotations

import math
import operator

from ..backend import get_array_module
from ._checks import check_float, check_ndim, check_shape
from .linear import linear_backward, linear_forward
from .rope import rope_backward, rope_forward
from .softmax import _softmax_backward_into, _softmax_into

_NEG_INF = float("-inf")


def _check_inputs(x, Wqkv, bqkv, Wo, bo, n_heads, rope_base):
    """Validate shapes/dtypes; return (B, T, C, NH, hs)."""
    check_float("x", x)
    check_ndim("x", x, 3, "(B, T, C)")
    B, T, C = x.shape
    try:
        NH = operator.index(n_heads)
    except TypeError:
        raise TypeError(f"n_heads must be an int, got {type(n_heads).__name__}") from None
    if NH <= 0 or C % NH != 0:
        raise ValueError(f"n_heads={NH} must be positive and divide C={C} (x has shape {tuple(x.shape)})")
    hs = C // NH
    check_float("Wqkv", Wqkv)
    check_shape("Wqkv", Wqkv, (C, 3 * C), f"(C, 3C) for x of shape {tuple(x.shape)}")
    check_float("Wo", Wo)
    check_shape("Wo", Wo, (C, C), f"(C, C) for x of shape {tuple(x.shape)}")
    if bqkv is not None:
        check_float("bqkv", bqkv)
        check_shape("bqkv", bqkv, (3 * C,), f"(3C,) for x of shape {tuple(x.shape)}")
    if bo is not None:
        check_float("bo", bo)
        check_shape("bo", bo, (C,), f"(C,) for x of shape {tuple(x.shape)}")
    if rope_base is not None and hs % 2 != 0:
        raise ValueError(f"RoPE needs an even head size, got hs = C / n_heads = {C} / {NH} = {hs}")
    return B, T, C, NH, hs


def _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, offset):
    """QKV projection (chapters/03-attention.md, eq. 3.1), split into heads, RoPE'd, q scaled.

    Returns q (scaled by 1/sqrt(hs)), k, v, each (B, NH, T, hs), the linear cache and the
    RoPE cache (None without RoPE).
    """
    B, T, C = x.shape
    qkv, cache_qkv = linear_forward(x, Wqkv, bqkv)  # (B, T, 3C) one GEMM for all of q, k, v
    # Columns are [q | k | v], and inside each third head h owns columns h*hs:(h+1)*hs,
    # so a reshape + transpose (a view, no copy) splits them into heads.
    qkv = qkv.reshape(B, T, 3, NH, hs).transpose(2, 0, 3, 1, 4)  # (3, B, NH, T, hs)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (B, NH, T, hs) each, views
    rope_cache = None
    if rope_base is not None:
        # RoPE rotates q and k only (eq. 5.4); v carries content, not position.
        q, rope_cache = rope_forward(q, rope_base, offset)  # (B, NH, T, hs) fresh
        k, _ = rope_forward(k, rope_base, offset)  # (B, NH, T, hs) same tables
    # Scale q rather than the scores (eq. 3.2): (B, NH, T, hs) is no bigger than
    # (B, NH, T, T), and the scaled copy is contiguous, which the GEMM below prefers.
    scale = 1.0 / math.sqrt(hs)  # Python float: keeps float32
    if rope_cache is None:
        q = q * scale  # (B, NH, T, hs) fresh
    else:
        q *= scale  # (B, NH, T, hs) fresh from rope_forward: safe in place
    return q, k, v, cache_qkv, rope_cache, scale


def _mask(xp, Tq, Tk, causal, key_padding_mask, past=0):
    """Boolean mask, True = NOT allowed (chapters/03-attention.md, eq. 3.3).

    Query i sits at position past + i; causally it may see keys j <= past + i.
    Returns None (nothing masked), (1, 1, Tq, Tk) or (B, 1, Tq, Tk).
    """
    mask = None
    if causal:
        mask = xp.triu(xp.ones((Tq, Tk), dtype=bool), k=past + 1)[None, None]  # (1, 1, Tq, Tk)
    if key_padding_mask is not None:
        pad = key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk) True = padding key
        mask = pad if mask is None else (mask | pad)  # (B, 1, Tq, Tk)
    return mask


def _attend(q, k, v, mask):
    """Scores, masks, softmax and weighted sum (chapters/03-attention.md, eq. 3.2 to chapters/03-attention.md, eq. 3.5).

    Returns y (B, NH, Tq, hs) and the attention weights P (B, NH, Tq, Tk).
    """
    xp = get_array_module(q, k, v)
    att = q @ k.swapaxes(-1, -2)  # (B, NH, Tq, Tk) scores, already scaled through q
    if mask is not None:
        # Masks go in BEFORE the softmax's row max: a masked score of -inf becomes
        # exp(-inf) = 0 weight, and a large masked score cannot dominate the max.
        xp.copyto(att, _NEG_INF, where=mask)  # (B, NH, Tq, Tk)
    P = _softmax_into(att, -1, att)  # (B, NH, Tq, Tk) in place; all -inf rows -> 0
    y = P @ v  # (B, NH, Tq, hs)
    return y, P


def _merge_heads(y):
    """(B, NH, T, hs) -> (B, T, C): concatenate the heads (chapters/03-attention.md, eq. 3.6)."""
    B, NH, T, hs = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)  # (B, T, C) copy


def attention_forward(x, Wqkv, bqkv, Wo, bo, n_heads, causal=True, key_padding_mask=None,
                      rope_base=None):
    """Multi-head self-attention.

    q, k, v = split(x Wqkv + bqkv) into NH heads     (chapters/03-attention.md, eq. 3.1)
    S = q k^T / sqrt(hs)                              (chapters/03-attention.md, eq. 3.2)
    masked entries of S set to -inf                   (chapters/03-attention.md, eq. 3.3)
    P = softmax(S) along keys                         (chapters/03-attention.md, eq. 3.4)
    y = P v                                           (chapters/03-attention.md, eq. 3.5)
    out = concat_heads(y) Wo + bo                     (chapters/03-attention.md, eq. 3.6)

    With `rope_base`, q and k are rotated by RoPE at positions 0..T-1 before the scores
    (chapters/05-transformer.md, eq. 5.4; rotate-half layout, see rope.py).
    A query row whose keys are ALL masked gets zero weights: zero output, zero gradient.

    Inputs:
        x: (B, T, C) float
        Wqkv: (C, 3C), columns [q | k | v]; head h uses columns h*hs:(h+1)*hs of each third
        bqkv: (3C,) or None;  Wo: (C, C);  bo: (C,) or None
        n_heads: NH, must divide C
        causal: query t attends only keys <= t
        key_padding_mask: (B, T) bool or None; True marks a padding key no query may attend to
        rope_base: None, or the RoPE frequency base (e.g. 10000.0)
    Returns:
        out: (B, T, C)
        cache: everything `attention_backward` needs (inputs, q, k, v, P, RoPE tables)
    """
    xp = get_array_module(x, Wqkv, bqkv, Wo, bo)
    B, T, C, NH, hs = _check_inputs(x, Wqkv, bqkv, Wo, bo, n_heads, rope_base)
    if key_padding_mask is not None:
        if getattr(getattr(key_padding_mask, "dtype", None), "kind", None) != "b":
            raise TypeError("key_padding_mask must be a bool array (True = padding), got "
                            f"{getattr(key_padding_mask, 'dtype', type(key_padding_mask).__name__)}")
        check_shape("key_padding_mask", key_padding_mask, (B, T), f"(B, T) for x of shape {tuple(x.shape)}")
    q, k, v, cache_qkv, rope_cache, scale = _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, 0)  # (B, NH, T, hs) each
    y, P = _attend(q, k, v, _mask(xp, T, T, causal, key_padding_mask))  # (B, NH, T, hs), (B, NH, T, T)
    out, cache_o = linear_forward(_merge_heads(y), Wo, bo)  # (B, T, C)
    return out, (cache_qkv, cache_o, q, k, v, P, rope_cache, scale, NH)


def attention_backward(dout, cache):
    """Backward of `attention_forward`.

    dy = dout Wo^T split into heads; dP = dy v^T; dv = P^T dy   (chapters/03-attention.md, eq. 3.7)
    dS = P * (dP - rowsum(dP * P)), the softmax VJP             (chapters/03-attention.md, eq. 3.8)
    dq = dS k / sqrt(hs);  dk = dS^T q / sqrt(hs)               (chapters/03-attention.md, eq. 3.9)
    RoPE backward on dq and dk                                  (chapters/05-transformer.md, eq. 5.5)
    the QKV projection's backward gives dx, dWqkv, dbqkv        (chapters/03-attention.md, eq. 3.10)

    Masked entries need no special care: their P is 0, so their dS is 0.

    Inputs:
        dout: (B, T, C); cache from `attention_forward`
    Returns:
        dx: (B, T, C), dWqkv: (C, 3C), dbqkv: (3C,) or None, dWo: (C, C), dbo: (C,) or None
    """
    cache_qkv, cache_o, q, k, v, P, rope_cache, scale, NH = cache
    xp = get_array_module(dout, q)
    B, _, T, hs = q.shape
    C = NH * hs
    dy, dWo, dbo = linear_backward(dout, cache_o)  # (B, T, C), (C, C), (C,)
    dy = dy.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)  # (B, NH, T, hs) view
    dv = P.swapaxes(-1, -2) @ dy  # (B, NH, T, hs) the transpose is folded into the GEMM
    dP = dy @ v.swapaxes(-1, -2)  # (B, NH, T, T)
    dS = _softmax_backward_into(dP, P, -1, out=dP)  # (B, NH, T, T) overwrites dP
    # S = q_scaled k^T, and the cached q is already q_scaled = q / sqrt(hs).
    dq = dS @ k  # (B, NH, T, hs) gradient w.r.t. q_scaled ...
    dq *= scale  # (B, NH, T, hs) ... times d q_scaled / d q
    dk = dS.swapaxes(-1, -2) @ q  # (B, NH, T, hs) q is scaled, so the 1/sqrt(hs) is inside
    if rope_cache is not None:
        dq = rope_backward(dq, rope_cache)  # (B, NH, T, hs)
        dk = rope_backward(dk, rope_cache)  # (B, NH, T, hs)
    # Put the three head gradients back in the [q | k | v] column layout of Wqkv.
    dqkv = xp.empty((B, T, 3, NH, hs), dtype=dq.dtype)  # (B, T, 3, NH, hs)
    heads = dqkv.transpose(2, 0, 3, 1, 4)  # (3, B, NH, T, hs) view into dqkv
    heads[0] = dq
    heads[1] = dk
    heads[2] = dv
    dx, dWqkv, dbqkv = linear_backward(dqkv.reshape(B, T, 3 * C), cache_qkv)  # (B, T, C), (C, 3C), (3C,)
    return dx, dWqkv, dbqkv, dWo, dbo


def attention_step(x, Wqkv, bqkv, Wo, bo, n_heads, kv_cache=None, rope_base=None):
    """Causal attention for the newest tokens, reusing cached keys and values
    (chapters/05-transformer.md, eq. 5.8). Inference only: there is no backward.

    Keys and values of past tokens never change under causal attention, so generation
    computes q, k, v for the new tokens only and attends to [past keys, new keys]. The
    result equals the last T_new rows of `attention_forward` on the whole sequence.

    Inputs:
        x: (B, T_new, C) the newest tokens, at positions T_past .. T_past+T_new-1
        Wqkv, bqkv, Wo, bo, n_heads, rope_base: as in `attention_forward`
        kv_cache: None, or (k, v) each (B, NH, T_past, hs); cached keys are already RoPE'd
    Returns:
        out: (B, T_new, C)
        kv_cache: (k, v) each (B, NH, T_past + T_new, hs), to pass to the next step
    """
    xp = get_array_module(x, Wqkv, bqkv, Wo, bo)
    B, T_new, C, NH, hs = _check_inputs(x, Wqkv, bqkv, Wo, bo, n_heads, rope_base)
    T_past = 0
    if kv_cache is not None:
        if not isinstance(kv_cache, tuple) or len(kv_cache) != 2:
            raise TypeError("kv_cache must be None or a tuple (k, v)")
        k_past, v_past = kv_cache
        T_past = k_past.shape[2] if getattr(k_past, "ndim", 0) == 4 else 0
        for name, a in (("kv_cache k", k_past), ("kv_cache v", v_past)):
            check_float(name, a)
            check_shape(name, a, (B, NH, T_past, hs), "(B, NH, T_past, hs)")
    q, k, v, _, _, _ = _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, T_past)  # (B, NH, T_new, hs) each
    if kv_cache is not None:
        k = xp.concatenate((k_past, k), axis=2)  # (B, NH, T_past + T_new, hs)
        v = xp.concatenate((v_past, v), axis=2)  # (B, NH, T_past + T_new, hs)
    else:
        k = xp.ascontiguousarray(k)  # (B, NH, T_new, hs) own the memory, not a view of qkv
        v = xp.ascontiguousarray(v)  # (B, NH, T_new, hs)
    y, _ = _attend(q, k, v, _mask(xp, T_new, T_past + T_new, True, None, past=T_past))  # (B, NH, T_new, hs)
    out, _ = linear_forward(_merge_heads(y), Wo, bo)  # (B, T_new, C)
    return out, (k, v)
