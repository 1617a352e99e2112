"""Mean cross-entropy over non-ignored targets, fused with its softmax."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float, check_int


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
    check_float("logits", logits)
    check_int("targets", targets)
    if logits.ndim < 1 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets must have shape logits.shape[:-1]: logits has shape {tuple(logits.shape)}, "
            f"targets has shape {tuple(targets.shape)}")
    V = logits.shape[-1]
    z = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,) bool
    bad = valid & ((t < 0) | (t >= V))  # (N,) bool
    if bool(bad.any()):
        value = int(t[xp.flatnonzero(bad)[0]])
        raise ValueError(f"targets holds {value}, outside [0, {V}) and not ignore_index={ignore_index}")
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
    nll *= valid  # (N,) ignored rows contribute nothing
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
    rows = xp.flatnonzero(valid)  # (N_valid,)
    dlogits[rows, t_safe[rows]] -= scale  # (N_valid,) subtract the one-hot
    return dlogits.reshape(shape)  # (..., V)
