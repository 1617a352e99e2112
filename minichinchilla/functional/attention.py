"""Multi-head causal self-attention with masks and optional RoPE; its backward; and a
KV-cached step for generation: the reference version, one line per equation of chapter 03.

Shapes (llm.c names): B batch, T sequence length, C model width, NH heads, hs = C / NH.
Every head is one slice of a batched matmul over (B, NH): no loop over batch, time or heads.
The whole (B, NH, T, T) matrix of weights P is built and cached, exactly as the equations
write it. `minichinchilla/functional/fast/attention.py` computes the same numbers without ever
holding P (chapter 12 derives it from this file, change by change).
"""
from __future__ import annotations

import math
import operator

from ..backend import get_array_module
from ._checks import check_float, check_ndim, check_shape
from .linear import linear_backward, linear_forward
from .rope import rope_backward, rope_forward
from .softmax import softmax_backward, softmax_forward

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
    if Wo is not None:  # attention_weights stops before the output projection
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


def _check_padding(key_padding_mask, x):
    """key_padding_mask must be None or a (B, T) bool array for x of shape (B, T, C)."""
    if key_padding_mask is None:
        return
    if getattr(getattr(key_padding_mask, "dtype", None), "kind", None) != "b":
        raise TypeError("key_padding_mask must be a bool array (True = padding), got "
                        f"{getattr(key_padding_mask, 'dtype', type(key_padding_mask).__name__)}")
    check_shape("key_padding_mask", key_padding_mask, tuple(x.shape[:2]), f"(B, T) for x of shape {tuple(x.shape)}")


def _check_kv_cache(kv_cache, B, NH, hs):
    """kv_cache must be None or (k, v), each (B, NH, T_past, hs); returns T_past."""
    if kv_cache is None:
        return 0
    if not isinstance(kv_cache, tuple) or len(kv_cache) != 2:
        raise TypeError("kv_cache must be None or a tuple (k, v)")
    T_past = kv_cache[0].shape[2] if getattr(kv_cache[0], "ndim", 0) == 4 else 0
    for name, a in zip(("kv_cache k", "kv_cache v"), kv_cache):
        check_float(name, a)
        check_shape(name, a, (B, NH, T_past, hs), "(B, NH, T_past, hs)")
    return T_past


def _split_heads(a, NH):
    """(B, T, C) -> (B, NH, T, hs): head h owns columns h*hs:(h+1)*hs of each third of Wqkv."""
    B, T, C = a.shape
    return a.reshape(B, T, NH, C // NH).transpose(0, 2, 1, 3)  # (B, NH, T, hs) view


def _merge_heads(y):
    """(B, NH, T, hs) -> (B, T, C): concatenate the heads (chapters/03-attention.md, eq. 3.6)."""
    B, NH, T, hs = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)  # (B, T, C)


def _qkv_heads(x, Wqkv, bqkv, NH, rope_base, offset=0):
    """q, k, v of every head, (B, NH, T, hs) each (chapters/03-attention.md, eq. 3.1); with
    `rope_base`, q and k rotated to positions offset.. (chapters/05-transformer.md, eq. 5.4)."""
    C = x.shape[-1]
    qkv, cache_qkv = linear_forward(x, Wqkv, bqkv)  # (B, T, 3C) one product for all of q, k, v
    q, k, v = (_split_heads(qkv[..., i * C:(i + 1) * C], NH) for i in range(3))  # (B, NH, T, hs) each
    rope_cache = None
    if rope_base is not None:  # RoPE rotates q and k only; v carries content, not position
        q, rope_cache = rope_forward(q, rope_base, offset)  # (B, NH, T, hs)
        k, _ = rope_forward(k, rope_base, offset)  # (B, NH, T, hs) same angles
    return q, k, v, cache_qkv, rope_cache


def _mask(xp, Tq, Tk, causal, key_padding_mask, past=0):
    """Boolean mask, True = NOT allowed (chapters/03-attention.md, eq. 3.3), or None.

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


def _weights(q, k, mask):
    """P = softmax(masked(q k^T / sqrt(hs))): chapters/03-attention.md, eq. 3.2 to
    chapters/03-attention.md, eq. 3.4.

    Returns P (B, NH, Tq, Tk) and the softmax cache for the backward.
    """
    xp = get_array_module(q, k)
    S = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])  # (B, NH, Tq, Tk) eq. 3.2
    if mask is not None:
        # The mask goes in BEFORE the softmax's row max: exp(-inf) = 0 weight, and a large
        # masked score cannot dominate the max. A query whose keys are ALL masked has a row of
        # -inf, which softmax_forward turns into zeros: it reads nothing (output 0, gradient 0).
        S = xp.where(mask, _NEG_INF, S)  # (B, NH, Tq, Tk) eq. 3.3
    return softmax_forward(S, axis=-1)  # (B, NH, Tq, Tk) eq. 3.4


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
        cache: everything `attention_backward` needs (the two linear caches, q, k, v, P, RoPE tables)
    """
    xp = get_array_module(x, Wqkv, bqkv, Wo, bo)
    B, T, C, NH, hs = _check_inputs(x, Wqkv, bqkv, Wo, bo, n_heads, rope_base)
    _check_padding(key_padding_mask, x)
    q, k, v, cache_qkv, rope_cache = _qkv_heads(x, Wqkv, bqkv, NH, rope_base)  # (B, NH, T, hs) each, eq. 3.1
    P, cache_P = _weights(q, k, _mask(xp, T, T, causal, key_padding_mask))  # (B, NH, T, T) eq. 3.2 to eq. 3.4
    y = P @ v  # (B, NH, T, hs) eq. 3.5
    out, cache_o = linear_forward(_merge_heads(y), Wo, bo)  # (B, T, C) eq. 3.6
    return out, (cache_qkv, cache_o, q, k, v, cache_P, rope_cache)


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
    cache_qkv, cache_o, q, k, v, cache_P, rope_cache = cache
    xp = get_array_module(dout, q)
    NH, hs = q.shape[1], q.shape[3]
    P = cache_P[0]  # (B, NH, T, T)
    dy_cat, dWo, dbo = linear_backward(dout, cache_o)  # (B, T, C), (C, C), (C,) eq. 3.7
    dy = _split_heads(dy_cat, NH)  # (B, NH, T, hs)
    dP = dy @ v.swapaxes(-1, -2)  # (B, NH, T, T) eq. 3.7
    dv = P.swapaxes(-1, -2) @ dy  # (B, NH, T, hs) eq. 3.7
    dS = softmax_backward(dP, cache_P)  # (B, NH, T, T) eq. 3.8
    dq = dS @ k / math.sqrt(hs)  # (B, NH, T, hs) eq. 3.9
    dk = dS.swapaxes(-1, -2) @ q / math.sqrt(hs)  # (B, NH, T, hs) eq. 3.9
    if rope_cache is not None:
        dq = rope_backward(dq, rope_cache)  # (B, NH, T, hs) eq. 5.5
        dk = rope_backward(dk, rope_cache)  # (B, NH, T, hs) eq. 5.5
    dqkv = xp.concatenate([_merge_heads(dq), _merge_heads(dk), _merge_heads(dv)], axis=-1)  # (B, T, 3C)
    dx, dWqkv, dbqkv = linear_backward(dqkv, cache_qkv)  # (B, T, C), (C, 3C), (3C,) eq. 3.10
    return dx, dWqkv, dbqkv, dWo, dbo


def attention_weights(x, Wqkv, bqkv, n_heads, causal=True, key_padding_mask=None, rope_base=None):
    """The attention weights P of every head (chapters/03-attention.md, eq. 3.4), for looking at.

    The same projection, masks and softmax as `attention_forward`, stopping at P. It is for
    plots and inspection of small inputs: P has B * NH * T * T entries. No gradient flows.

    Inputs:
        x, Wqkv, bqkv, n_heads, causal, key_padding_mask, rope_base: as in `attention_forward`
    Returns:
        P: (B, NH, T, T); row t holds query t's weights over the keys and sums to 1
        (0 for a query whose keys are all masked)
    """
    xp = get_array_module(x, Wqkv, bqkv)
    B, T, C, NH, hs = _check_inputs(x, Wqkv, bqkv, None, None, n_heads, rope_base)
    _check_padding(key_padding_mask, x)
    q, k, _, _, _ = _qkv_heads(x, Wqkv, bqkv, NH, rope_base)  # (B, NH, T, hs) each
    P, _ = _weights(q, k, _mask(xp, T, T, causal, key_padding_mask))  # (B, NH, T, T)
    return P


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
    T_past = _check_kv_cache(kv_cache, B, NH, hs)
    q, k, v, _, _ = _qkv_heads(x, Wqkv, bqkv, NH, rope_base, offset=T_past)  # (B, NH, T_new, hs) each
    if kv_cache is not None:
        k = xp.concatenate((kv_cache[0], k), axis=2)  # (B, NH, T_past + T_new, hs)
        v = xp.concatenate((kv_cache[1], v), axis=2)  # (B, NH, T_past + T_new, hs)
    else:
        k, v = xp.ascontiguousarray(k), xp.ascontiguousarray(v)  # own the memory, not views of qkv
    P, _ = _weights(q, k, _mask(xp, T_new, T_past + T_new, True, None, past=T_past))  # (B, NH, T_new, Tk)
    out, _ = linear_forward(_merge_heads(P @ v), Wo, bo)  # (B, T_new, C) eq. 3.5 and eq. 3.6
    return out, (k, v)
