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
    """Mean negative log-likelihood of the targets (mean over non-ignored
    targets: chapters/02-softmax-cross-entropy.md, eq. 2.6), computed with log-sum-exp
    (chapters/02-softmax-cross-entropy.md, eq. 2.5).

    loss = (1/N) * sum over valid i of [logsumexp(logits_i) - logits_i[target_i]],
    N = number of targets different from `ignore_index` (padding).

    Because the row max is subtracted first, logits of magnitude 1e4 give no overflow.
    When EVERY target is ignored we return loss 0 (and a zero gradient); PyTorch's
    ``F.cross_entropy`` returns NaN (0/0) there.

    Inputs:
        logits: (..., V) float, e.g. (B, T, V)
        targets: (...) integer ids in [0, V) or `ignore_index`, e.g. (B, T)
        ignore_index: target value that contributes no loss and no gradient
    Returns:
        loss: 0-d array in logits' dtype
        cache: (probs (N, V), targets (N,), valid (N,), N_valid, logits' shape)
    Raises:
        ValueError if a target is outside [0, V) and not `ignore_index`, or shapes differ.
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
    """Fused softmax + cross-entropy gradient (chapters/02-softmax-cross-entropy.md, eq. 2.7).

    dlogits_i = (softmax(logits_i) - onehot(target_i)) * dloss / N_valid for valid rows,
    and 0 for ignored rows.

    Inputs:
        dloss: scalar or 0-d array, upstream gradient of the loss
        cache: from `cross_entropy_forward`
    Returns:
        dlogits: same shape and dtype as logits
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
