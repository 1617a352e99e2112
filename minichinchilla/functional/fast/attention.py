"""Fast attention: accelerates `minichinchilla/functional/attention.py` (same names, same contract).

The reference computes eqs. 3.1-3.10 as written: it builds the whole (B, NH, T, T) score matrix,
keeps P for the backward and runs one batched product per equation. This version changes:

1. Never holds P (FlashAttention's idea): the forward keeps one log-sum-exp per query and the
   backward rebuilds P = exp(S - lse) block by block (chapter 03, section 6).
2. Blocks of heads x 64 queries, so a block of scores stays in the L2 cache; a causal block reads
   only the keys at or before its last query (about half of the score products are skipped).
3. Scales q once instead of every score; the softmax divides the (Tb, hs) output, not (Tb, Tk) P.
4. Layouts for BLAS: heads folded into one contiguous batch axis BH = B * NH; keys copied straight
   into K^T (a plain (hs, Tk) right operand multiplies faster than a transposed view); row sums as
   products with a vector of ones; D = rowsum(dP * P) computed as rowsum(dy * y) on (T, hs).
5. Blocks of heads run on worker threads (`_blocks.for_each_block`), BLAS kept to one thread each.

On CuPy there is one block of all heads and all queries (one big kernel beats many small ones).
`tests/test_functional_fast.py` holds every output and gradient equal to the reference to 1e-10.
"""
from __future__ import annotations

import math

from ...backend import get_array_module
from ..attention import _check_inputs, _check_kv_cache, _check_padding
from ..rope import rope_backward, rope_forward
from ._blocks import for_each_block
from ..linear import linear_backward, linear_forward

_NEG_INF = float("-inf")
_SCORE_BYTES = 512 * 1024  # scores per block of heads: fits in L2 next to q, k, v


def _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, offset):
    """QKV projection (chapters/03-attention.md, eq. 3.1), split into heads, RoPE'd, q scaled.

    The heads come out with (B, NH) folded into ONE batch axis, BH = B * NH, and contiguous:
    every later product is then one stacked GEMM over BH independent (T, hs) matrices with
    plain strides, which BLAS runs at full speed (strided views of qkv can fall off that path).
    Returns q (scaled by 1/sqrt(hs)) and v, each (BH, T, hs) contiguous; k as (B, NH, T, hs),
    possibly a strided view (callers copy it into the layout they need, see `_keys_transposed`);
    the linear cache, the RoPE cache (None without RoPE) and the scale.
    """
    xp = get_array_module(x)
    B, T, C = x.shape
    qkv, cache_qkv = linear_forward(x, Wqkv, bqkv)  # (B, T, 3C) one GEMM for all of q, k, v
    # Columns are [q | k | v], and inside each third head h owns columns h*hs:(h+1)*hs,
    # so a reshape + transpose splits them into heads.
    heads = qkv.reshape(B, T, 3, NH, hs).transpose(2, 0, 3, 1, 4)  # (3, B, NH, T, hs) view
    # ONE copy for q and v together: NumPy copies this 5-D view about four times faster than
    # it copies each 4-D head view on its own (measured in chapter 12). k is left as a view:
    # the scores want it transposed, and copying it straight into that layout saves a pass.
    qv = xp.ascontiguousarray(heads[0::2])  # (2, B, NH, T, hs)
    q, v = qv[0].reshape(B * NH, T, hs), qv[1].reshape(B * NH, T, hs)  # (BH, T, hs) views, contiguous
    k = heads[1]  # (B, NH, T, hs) strided view into qkv
    rope_cache = None
    if rope_base is not None:
        # RoPE rotates q and k only (eq. 5.4); v carries content, not position.
        q, rope_cache = rope_forward(q, rope_base, offset)  # (BH, T, hs) fresh
        k, _ = rope_forward(k, rope_base, offset)  # (B, NH, T, hs) fresh, same tables
    # Scale q rather than the scores (eq. 3.2): (BH, T, hs) is no bigger than (BH, T, T).
    scale = 1.0 / math.sqrt(hs)  # Python float: keeps float32
    q *= scale  # (BH, T, hs) our own copy (or fresh from rope_forward): safe in place
    return q, k, v, cache_qkv, rope_cache, scale


def _keys_transposed(k):
    """(B, NH, T, hs) keys, any strides -> (BH, hs, T) contiguous: the layout the score GEMM
    wants (see `_attend`), made in one copy."""
    xp = get_array_module(k)
    B, NH, T, hs = k.shape
    return xp.ascontiguousarray(k.transpose(0, 1, 3, 2)).reshape(B * NH, hs, T)  # (BH, hs, T)


def _future_bias(xp, Tb, dtype):
    """(Tb, Tb) additive causal mask: 0 on and below the diagonal, -inf above it."""
    upper = xp.triu(xp.ones((Tb, Tb), dtype=bool), k=1)  # (Tb, Tb) True = a key in the future
    return xp.where(upper, _NEG_INF, 0.0).astype(dtype)  # (Tb, Tb)


def _mask_scores(S, first, future, pad):
    """Write -inf where a query may not look (chapters/03-attention.md, eq. 3.3), in place.

    S: (G, Tb, Tk) scores of the queries at positions first .. first+Tb-1 against keys
    0 .. Tk-1. Causally query first+i sees keys j <= first+i, so only the (Tb, Tb) square of
    columns first .. first+Tb-1 holds masked entries: adding `future` (0 / -inf, from
    `_future_bias`; None when not causal) to that square masks them in one cheap pass.
    pad: None or (G, Tk) bool, True = padding key.
    """
    xp = get_array_module(S)
    # Masks go in BEFORE the softmax's row max: a masked score of -inf becomes exp(-inf) = 0
    # weight, and a large masked score cannot dominate the max.
    if future is not None:
        Tb = S.shape[1]
        square = S[:, :, first:first + Tb]  # (G, Tb, Tb) view
        square += future[:Tb, :Tb]  # (G, Tb, Tb) x + (-inf) = -inf
    if pad is not None:
        xp.copyto(S, _NEG_INF, where=pad[:, None, :])  # (G, Tb, Tk)


def _query_block(xp, Tq):
    """Queries per block. CPU: 64, so a block of scores stays in cache and a causal block
    skips the keys in its future. GPU: all of them (one big kernel beats many small ones)."""
    return Tq if xp.__name__ != "numpy" else min(Tq, 64)


def _attend(q, kT, v, past, causal, pad):
    """Masked softmax attention, FlashAttention style (chapters/03-attention.md, eq. 3.2 to
    chapters/03-attention.md, eq. 3.5), without ever holding all of P.

    For a block of G heads and Tb queries:  S = q k^T (already scaled through q), mask,
    m = rowmax(S), E = exp(S - m), s = rowsum(E), y = (E v) / s.  Dividing the (Tb, hs) output
    instead of the (Tb, Tk) weights is the same softmax with hs/Tk of the divisions. We keep
    only lse = m + log(s), one number per query: the backward rebuilds P = exp(S - lse) from it
    (chapter 03, section 6). A causal block of queries first..first+Tb-1 reads only keys
    0..first+Tb-1: the keys in its future would all get weight 0, so they are skipped.

    Layout matters as much as flop counts here: the keys come TRANSPOSED and contiguous, kT of
    shape (BH, hs, Tk), because BLAS multiplies q (Tb, hs) by a plain (hs, Tk) matrix almost twice
    as fast as by the transposed view of a (Tk, hs) one (hs = 32 is a short inner dimension).

    Inputs:
        q: (BH, Tq, hs) scaled queries at positions past .. past+Tq-1
        kT: (BH, hs, Tk) keys, transposed; v: (BH, Tk, hs) values
        pad: None or (BH, Tk) bool, True = padding key
    Returns:
        y (BH, Tq, hs) and lse (BH, Tq). A query whose keys are all masked gets y = 0.
    """
    xp = get_array_module(q, kT, v)
    BH, Tq, hs = q.shape
    Tk = kT.shape[2]
    y = xp.empty_like(q)  # (BH, Tq, hs)
    lse = xp.empty((BH, Tq), dtype=q.dtype)  # (BH, Tq)
    Tb = _query_block(xp, Tq)
    future = _future_bias(xp, Tb, q.dtype) if causal else None  # (Tb, Tb)
    ones = xp.ones((Tk, 1), dtype=q.dtype)  # (Tk, 1)

    def heads(g):  # one block of heads g, all queries, block by block
        for lo in range(0, Tq, Tb):
            hi = min(lo + Tb, Tq)
            end = min(past + hi, Tk) if causal else Tk  # the keys this block can see
            S = xp.matmul(q[g, lo:hi], kT[g, :, :end])  # (G, Tb, end) scores
            _mask_scores(S, past + lo, future, None if pad is None else pad[g, :end])
            m = S.max(axis=-1, keepdims=True)  # (G, Tb, 1) row maxima
            if pad is not None:
                # A row of all -inf has max -inf, and -inf - (-inf) = NaN: shift it by 0.
                m = xp.where(xp.isfinite(m), m, 0.0)  # (G, Tb, 1)
            S -= m  # (G, Tb, end) shift invariance (eq. 2.2): every exponent <= 0
            xp.exp(S, out=S)  # (G, Tb, end) unnormalised weights E
            # Row sums as a product with a vector of ones: BLAS beats NumPy's reduction here.
            s = xp.matmul(S, ones[:end])  # (G, Tb, 1) >= 1, except all-masked rows: 0
            if pad is not None:
                s = xp.where(s == 0, 1.0, s)  # (G, Tb, 1) all-masked rows: 0 / 1 = 0, not NaN
            yb = y[g, lo:hi]  # (G, Tb, hs) view we write into
            xp.matmul(S, v[g, :end], out=yb)  # (G, Tb, hs)
            yb /= s  # (G, Tb, hs) normalise the output, not the (Tb, Tk) weights
            xp.log(s, out=s)  # (G, Tb, 1)
            s += m  # (G, Tb, 1) log-sum-exp of the row
            lse[g, lo:hi] = s[..., 0]  # (G, Tb)

    # Blocks of heads: ~512 KiB of scores each, spread over the worker threads (_blocks.py).
    for_each_block(xp, BH, Tb * Tk * q.dtype.itemsize, heads, block_bytes=_SCORE_BYTES, uses_blas=True)
    return y, lse


def _attend_backward(dy, q, kT, v, lse, D, past, causal, pad):
    """Backward of `_attend`, block by block, rebuilding P = exp(S - lse) from q and k.

    dv = P^T dy, dP = dy v^T           (chapters/03-attention.md, eq. 3.7)
    dS = P * (dP - D)                   (chapters/03-attention.md, eq. 3.8)
    dq_s = dS k, dk = dS^T q_s          (chapters/03-attention.md, eq. 3.9)

    D = rowsum(dP * P) of eq. 3.8 equals rowsum(dy * y): sum_j (dy . v_j) P_ij = dy . y. The
    caller computes it once on the (T, hs) arrays, so no (Tb, Tk) pass is needed for it.

    As in the forward, every product gets plain (not transposed-view) right operands where
    the inner dimension is hs: k and v^T are made contiguous once per call.

    Inputs:
        dy: (BH, Tq, hs); q (scaled), kT, v, lse, past, causal, pad as in `_attend`; D: (BH, Tq)
    Returns:
        dq_s (gradient w.r.t. the SCALED q), dk, dv: (BH, Tq, hs), (BH, Tk, hs), (BH, Tk, hs)
    """
    xp = get_array_module(dy, q)
    BH, Tq, hs = q.shape
    Tk = kT.shape[2]
    k = xp.ascontiguousarray(kT.swapaxes(-1, -2))  # (BH, Tk, hs) for dq = dS k
    vT = xp.ascontiguousarray(v.swapaxes(-1, -2))  # (BH, hs, Tk) for dP = dy v^T
    dq = xp.empty_like(q)  # (BH, Tq, hs)
    dk = xp.zeros_like(k)  # (BH, Tk, hs) accumulated over query blocks
    dv = xp.zeros_like(v)  # (BH, Tk, hs)
    Tb = _query_block(xp, Tq)
    future = _future_bias(xp, Tb, q.dtype) if causal else None  # (Tb, Tb)

    def heads(g):
        for lo in range(0, Tq, Tb):
            hi = min(lo + Tb, Tq)
            end = min(past + hi, Tk) if causal else Tk
            P = xp.matmul(q[g, lo:hi], kT[g, :, :end])  # (G, Tb, end) S again
            _mask_scores(P, past + lo, future, None if pad is None else pad[g, :end])
            P -= lse[g, lo:hi, None]  # (G, Tb, end)
            xp.exp(P, out=P)  # (G, Tb, end) the weights P, exactly as in the forward
            dyb = dy[g, lo:hi]  # (G, Tb, hs)
            dvb, dkb = dv[g, :end], dk[g, :end]  # (G, end, hs) views we accumulate into
            dvb += xp.matmul(P.swapaxes(-1, -2), dyb)  # (G, end, hs) eq. 3.7
            dS = xp.matmul(dyb, vT[g, :, :end])  # (G, Tb, end) dP, eq. 3.7
            dS -= D[g, lo:hi, None]  # (G, Tb, end)
            dS *= P  # (G, Tb, end) the softmax VJP, eq. 3.8
            xp.matmul(dS, k[g, :end], out=dq[g, lo:hi])  # (G, Tb, hs) eq. 3.9
            dkb += xp.matmul(dS.swapaxes(-1, -2), q[g, lo:hi])  # (G, end, hs) eq. 3.9

    for_each_block(xp, BH, Tb * Tk * q.dtype.itemsize, heads, block_bytes=_SCORE_BYTES, uses_blas=True)
    return dq, dk, dv


def _merge_heads(y, B):
    """(BH, T, hs) -> (B, T, C): concatenate the heads (chapters/03-attention.md, eq. 3.6)."""
    BH, T, hs = y.shape
    NH = BH // B
    return y.reshape(B, NH, T, hs).transpose(0, 2, 1, 3).reshape(B, T, NH * hs)  # (B, T, C) copy


def _padding_per_head(xp, key_padding_mask, NH):
    """(B, Tk) -> (BH, Tk): head h of sequence b sees sequence b's padding."""
    if key_padding_mask is None:
        return None
    return xp.repeat(key_padding_mask, NH, axis=0)  # (BH, Tk)


def attention_forward(x, Wqkv, bqkv, Wo, bo, n_heads, causal=True, key_padding_mask=None,
                      rope_base=None):
    """`minichinchilla.functional.attention_forward`, faster: same inputs and outputs (its cache is for the fast backward).

    P is never held: one log-sum-exp per query is cached instead (see the module docstring).
    """
    xp = get_array_module(x, Wqkv, bqkv, Wo, bo)
    B, T, C, NH, hs = _check_inputs(x, Wqkv, bqkv, Wo, bo, n_heads, rope_base)
    _check_padding(key_padding_mask, x)
    q, k, v, cache_qkv, rope_cache, scale = _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, 0)  # (BH, T, hs) q, v
    kT = _keys_transposed(k)  # (BH, hs, T) the layout the score GEMM wants
    pad = _padding_per_head(xp, key_padding_mask, NH)  # (BH, T) or None
    y, lse = _attend(q, kT, v, 0, causal, pad)  # (BH, T, hs), (BH, T)
    out, cache_o = linear_forward(_merge_heads(y, B), Wo, bo)  # (B, T, C)
    return out, (cache_qkv, cache_o, q, kT, v, lse, pad, causal, rope_cache, scale, NH)


def attention_backward(dout, cache):
    """`minichinchilla.functional.attention_backward`, faster: same inputs and outputs (its cache is for the fast backward).

    P is rebuilt block by block from the cached log-sum-exp.
    """
    cache_qkv, cache_o, q, kT, v, lse, pad, causal, rope_cache, scale, NH = cache
    xp = get_array_module(dout, q)
    BH, T, hs = q.shape
    B, C = BH // NH, NH * hs
    dy, dWo, dbo = linear_backward(dout, cache_o)  # (B, T, C), (C, C), (C,)
    # D = rowsum(dP * P) = rowsum(dy * y) per head and query: computed on (T, hs), not (T, T).
    y = cache_o[0]  # (B, T, C) the concatenated head outputs, the input of the Wo product
    # einsum multiplies and sums over hs in one pass, three times faster than (dy * y).sum(-1),
    # whose reduction over rows of only hs = 32 numbers is slow in NumPy.
    D = xp.einsum("btnh,btnh->bnt", dy.reshape(B, T, NH, hs), y.reshape(B, T, NH, hs))  # (B, NH, T)
    D = D.reshape(BH, T)  # (BH, T)
    dy = xp.ascontiguousarray(dy.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)).reshape(BH, T, hs)  # (BH, T, hs)
    dq, dk, dv = _attend_backward(dy, q, kT, v, lse, D, 0, causal, pad)  # (BH, T, hs) each
    dq *= scale  # (BH, T, hs) S = (q * scale) k^T: chain rule through the scaling of q
    # (dk needs no factor: the cached q is already the scaled one.)
    if rope_cache is not None:
        dq = rope_backward(dq, rope_cache)  # (BH, T, hs)
        dk = rope_backward(dk, rope_cache)  # (BH, T, hs)
    # Put the three head gradients back in the [q | k | v] column layout of Wqkv.
    dqkv = xp.empty((B, T, 3, NH, hs), dtype=dq.dtype)  # (B, T, 3, NH, hs)
    heads = dqkv.transpose(2, 0, 3, 1, 4)  # (3, B, NH, T, hs) view into dqkv
    heads[0] = dq.reshape(B, NH, T, hs)
    heads[1] = dk.reshape(B, NH, T, hs)
    heads[2] = dv.reshape(B, NH, T, hs)
    dx, dWqkv, dbqkv = linear_backward(dqkv.reshape(B, T, 3 * C), cache_qkv)  # (B, T, C), (C, 3C), (3C,)
    return dx, dWqkv, dbqkv, dWo, dbo


def attention_weights(x, Wqkv, bqkv, n_heads, causal=True, key_padding_mask=None, rope_base=None):
    """`minichinchilla.functional.attention_weights`, faster: same inputs and outputs (its cache is for the fast backward).

    Rebuilds P whole from the forward's log-sum-exp, as the backward does block by block.
    """
    xp = get_array_module(x, Wqkv, bqkv)
    B, T, C, NH, hs = _check_inputs(x, Wqkv, bqkv, None, None, n_heads, rope_base)
    _check_padding(key_padding_mask, x)
    q, k, v, _, _, _ = _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, 0)  # (BH, T, hs) q, v
    kT = _keys_transposed(k)  # (BH, hs, T)
    pad = _padding_per_head(xp, key_padding_mask, NH)  # (BH, T) or None
    _, lse = _attend(q, kT, v, 0, causal, pad)  # (BH, T) one log-sum-exp per query
    P = xp.matmul(q, kT)  # (BH, T, T) scores, all of them at once
    _mask_scores(P, 0, _future_bias(xp, T, q.dtype) if causal else None, pad)
    P -= lse[..., None]  # (BH, T, T)
    xp.exp(P, out=P)  # (BH, T, T) softmax rows, as in the backward
    return P.reshape(B, NH, T, T)


def attention_step(x, Wqkv, bqkv, Wo, bo, n_heads, kv_cache=None, rope_base=None):
    """`minichinchilla.functional.attention_step`, faster: same inputs and outputs (its cache is for the fast backward).

    The new queries run through the blocked `_attend` against [past keys, new keys].
    """
    xp = get_array_module(x, Wqkv, bqkv, Wo, bo)
    B, T_new, C, NH, hs = _check_inputs(x, Wqkv, bqkv, Wo, bo, n_heads, rope_base)
    T_past = _check_kv_cache(kv_cache, B, NH, hs)
    q, k, v, _, _, _ = _project_qkv(x, Wqkv, bqkv, NH, hs, rope_base, T_past)  # (BH, T_new, hs) q, v
    v = v.reshape(B, NH, T_new, hs)  # (B, NH, T_new, hs) the cache's layout, as k already is
    if kv_cache is not None:
        k = xp.concatenate((kv_cache[0], k), axis=2)  # (B, NH, T_past + T_new, hs)
        v = xp.concatenate((kv_cache[1], v), axis=2)  # (B, NH, T_past + T_new, hs)
    else:
        k, v = xp.ascontiguousarray(k), v.copy()  # (B, NH, T_new, hs) own the memory, not views of qkv
    Tk = T_past + T_new
    kT = _keys_transposed(k)  # (BH, hs, Tk)
    y, _ = _attend(q, kT, v.reshape(B * NH, Tk, hs), T_past, True, None)  # (BH, T_new, hs)
    out, _ = linear_forward(_merge_heads(y, B), Wo, bo)  # (B, T_new, C)
    return out, (k, v)
