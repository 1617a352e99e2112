"""Mean cross-entropy over non-ignored targets, fused with its softmax: the reference version
(`fast/cross_entropy.py` works in place on one (N, V) buffer)."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float, check_int


def _check_ce_inputs(logits, targets, ignore_index):
    """Validate; return the logits as rows z (N, V), the targets t (N,) and valid (N,) bool."""
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
    return z, t, valid


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
    t_safe = xp.where(valid, t, 0)  # (N,) ignored rows point at class 0; masked out below
    m = z.max(axis=1, keepdims=True)  # (N, 1) row maxima: every exponent below is <= 0
    lse = m[:, 0] + xp.log(xp.exp(z - m).sum(axis=1))  # (N,) log-sum-exp, eq. 2.5
    nll = lse - z[xp.arange(z.shape[0]), t_safe]  # (N,) -log p(target) per row
    # where, not a product with `valid`: an ignored row may hold NaN or inf (a padded position
    # of a diverged model), and NaN * 0 is NaN; an ignored row must not touch the loss at all.
    nll = xp.where(valid, nll, 0.0)  # (N,)
    loss = xp.asarray(nll.sum() / max(n_valid, 1), dtype=logits.dtype)  # () eq. 2.6; 0/1 = 0 when all ignored
    probs = xp.exp(z - lse[:, None])  # (N, V) softmax, kept for the fused backward
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
    onehot = xp.zeros_like(probs)  # (N, V)
    onehot[xp.arange(probs.shape[0]), t_safe] = 1.0  # (N, V)
    dlogits = (probs - onehot) * scale  # (N, V) eq. 2.7
    dlogits = xp.where(valid[:, None], dlogits, 0.0)  # (N, V) ignored rows: no gradient at all
    return dlogits.reshape(shape)  # (..., V)
