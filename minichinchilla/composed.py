"""The same layers built from autograd primitives instead of hand-derived backwards.

Autograd composes the gradient of a layer from its pieces (exp, sum, matmul, ...), one small
node at a time. The fused nodes in `tensor.py` run the hand-derived backward of
`minichinchilla.functional` instead: one node per layer, fewer temporaries, and the formula of
the chapter. Both must give the same gradients — `tests/test_composed.py` checks it to 1e-9,
and chapters 01, 03 and 04 use the comparison to show that a derivation is right.
"""
from __future__ import annotations

import math

from . import tensor as ops
from .backend import get_array_module
from .tensor import Tensor


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)); the max is a constant shift (eq. 2.2), so it is detached."""
    shift = Tensor(x.data.max(axis=axis, keepdims=True))
    e = ops.exp(x - shift)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean over non-ignored targets of logsumexp(logits) - logits[target]."""
    targets = targets.data if isinstance(targets, Tensor) else targets  # ids carry no gradient
    xp = get_array_module(logits.data)
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index
    n_valid = int(valid.sum())
    shift = Tensor(flat.data.max(axis=-1, keepdims=True))
    lse = ops.log(ops.exp(flat - shift).sum(axis=-1)) + shift.reshape(-1)  # (N,)
    picked = flat[xp.arange(flat.shape[0]), xp.where(valid, t, 0)]  # (N,)
    per_token = ops.where(valid, lse - picked, 0.0)
    return per_token.sum() / max(n_valid, 1)


def layernorm(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc * (var + eps) ** -0.5 * gamma + beta


def rmsnorm(x, gamma, eps=1e-6):
    ms = (x * x).mean(axis=-1, keepdims=True)
    return x * (ms + eps) ** -0.5 * gamma


def gelu(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    inner = (x + 0.044715 * x * x * x) * math.sqrt(2.0 / math.pi)
    return 0.5 * x * (1.0 + ops.tanh(inner))


def ffn(x, W1, b1, W2, b2, activation="gelu"):
    h = ops.matmul(x, W1) + b1 if b1 is not None else ops.matmul(x, W1)
    h = gelu(h) if activation == "gelu" else ops.relu(h)
    y = ops.matmul(h, W2)
    return y + b2 if b2 is not None else y


def attention(x, Wqkv, bqkv, Wo, bo, n_heads, causal=True, key_padding_mask=None):
    """Multi-head self-attention from primitives (chapters/03-attention.md, eqs. 3.1–3.6)."""
    xp = get_array_module(x.data)
    B, T, C = x.shape
    hs = C // n_heads
    qkv = ops.matmul(x, Wqkv)  # (B, T, 3C)
    if bqkv is not None:
        qkv = qkv + bqkv
    q, k, v = ops.split(qkv, 3, axis=-1)  # 3 x (B, T, C)
    heads = lambda t: t.reshape(B, T, n_heads, hs).transpose(0, 2, 1, 3)  # noqa: E731  (B, NH, T, hs)
    q, k, v = heads(q), heads(k), heads(v)
    scores = ops.matmul(q, k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))  # (B, NH, T, T)
    masked = xp.zeros((B, 1, T, T), dtype=bool)
    if causal:
        masked = masked | xp.triu(xp.ones((T, T), dtype=bool), k=1)
    if key_padding_mask is not None:
        masked = masked | key_padding_mask[:, None, None, :]
    scores = ops.masked_fill(scores, xp.broadcast_to(masked, scores.shape), -xp.inf)
    # A fully masked row has no key to attend to: define its weights as 0 (not NaN).
    empty = masked.all(axis=-1, keepdims=True)  # (B, 1, T, 1)
    scores = ops.masked_fill(scores, xp.broadcast_to(empty, scores.shape), 0.0)
    att = ops.where(xp.broadcast_to(empty, scores.shape), 0.0, softmax(scores, axis=-1))
    y = ops.matmul(att, v)  # (B, NH, T, hs)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    y = ops.matmul(y, Wo)
    return y + bo if bo is not None else y
