"""Fast cross-entropy: accelerates `minichinchilla/functional/cross_entropy.py` (same contract).

The logits are the biggest activation of a small model ((B*T, V) with V up to 50k), and the
reference makes four (N, V) temporaries (z - m, its exp, z - lse, the softmax; the backward a
one-hot and a product). Changes:

1. One (N, V) buffer: shifted logits, exponentiated in place, divided in place into the softmax
   the backward needs; the target's logit is picked before the exp, so log-sum-exp needs no
   second pass over the row.
2. The backward scales the cached softmax by one per-row weight (0 for ignored rows) and
   subtracts the one-hot only at the N_valid target entries: no (N, V) one-hot.

`tests/test_functional_fast.py` holds loss and gradient equal to the reference to 1e-10.
"""
from __future__ import annotations

from ...backend import get_array_module
from ..cross_entropy import _check_ce_inputs


def cross_entropy_forward(logits, targets, ignore_index=-100):
    """`minichinchilla.functional.cross_entropy_forward`, faster: same inputs and outputs (its cache is for the fast backward).

    One (N, V) buffer, exponentiated and normalised in place.
    """
    xp = get_array_module(logits, targets)
    z, t, valid = _check_ce_inputs(logits, targets, ignore_index)  # (N, V), (N,), (N,)
    n_valid = int(valid.sum())
    rows = xp.arange(t.shape[0])  # (N,)
    t_safe = xp.where(valid, t, 0)  # (N,) ignored rows point at class 0; masked out below

    probs = z - z.max(axis=1, keepdims=True)  # (N, V) shifted logits, every entry <= 0
    picked = probs[rows, t_safe]  # (N,) shifted logit of each target (copy)
    xp.exp(probs, out=probs)  # (N, V) in place
    s = probs.sum(axis=1)  # (N,) each >= 1: the max term contributes exp(0)
    # log-sum-exp minus the target's logit, both shifted by the same max (it cancels).
    nll = xp.log(s) - picked  # (N,)
    probs /= s[:, None]  # (N, V) softmax, kept for the fused backward
    nll = xp.where(valid, nll, 0.0)  # (N,) ignored rows contribute nothing, even a NaN one
    loss = xp.asarray(nll.sum() / max(n_valid, 1), dtype=logits.dtype)  # () 0/1 = 0 when all ignored
    return loss, (probs, t_safe, valid, n_valid, tuple(logits.shape))


def cross_entropy_backward(dloss, cache):
    """`minichinchilla.functional.cross_entropy_backward`, faster: same inputs and outputs (its cache is for the fast backward).

    Scales the cached softmax per row and subtracts the one-hot at the targets only.
    """
    probs, t_safe, valid, n_valid, shape = cache
    xp = get_array_module(probs)
    # Cast dloss to the logits' dtype so a float64 0-d dloss cannot promote float32 math.
    scale = xp.asarray(dloss, dtype=probs.dtype) / max(n_valid, 1)  # ()
    w = valid * scale  # (N,) per-row weight: scale, or 0 for ignored rows
    dlogits = probs * w[:, None]  # (N, V) fresh, never the cached probs
    if not bool(valid.all()):
        dlogits[~valid] = 0.0  # an ignored row's NaN times 0 would stay NaN
    rows = xp.flatnonzero(valid)  # (N_valid,)
    dlogits[rows, t_safe[rows]] -= scale  # (N_valid,) subtract the one-hot
    return dlogits.reshape(shape)  # (..., V)
