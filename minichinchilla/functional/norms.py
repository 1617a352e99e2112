"""LayerNorm and RMSNorm over the last axis, with hand-derived backwards: the reference
version, one line per equation of chapter 04 (`fast/norms.py` is the cache-blocked one)."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float, check_shape


def _check_norm_inputs(x, gamma, beta=None):
    check_float("x", x)
    check_float("gamma", gamma)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis (..., C), got shape {tuple(x.shape)}")
    C = x.shape[-1]
    check_shape("gamma", gamma, (C,), f"x has shape {tuple(x.shape)}")
    if beta is not None:
        check_float("beta", beta)
        check_shape("beta", beta, (C,), f"x has shape {tuple(x.shape)}")


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """LayerNorm over the last axis (chapters/04-ffn-norm-residual.md, eq. 4.6).

    n = (x - mean) * rstd with rstd = 1 / sqrt(var + eps) (biased variance, as in
    PyTorch), then out = n * gamma + beta.

    Inputs:
        x: (..., C), gamma: (C,), beta: (C,)
    Returns:
        out: (..., C)
        cache: (n (..., C), rstd (..., 1), gamma (C,))
    """
    xp = get_array_module(x, gamma, beta)
    _check_norm_inputs(x, gamma, beta)
    if beta is None:
        raise TypeError("beta must be a floating-point array of shape (C,), got None")
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1) eq. 4.6
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (..., 1) biased, eq. 4.6
    rstd = 1.0 / xp.sqrt(var + eps)  # (..., 1) cached: the backward multiplies, never divides
    n = (x - mean) * rstd  # (..., C) zero mean, unit variance per row
    out = n * gamma + beta  # (..., C) eq. 4.6
    return out, (n, rstd, gamma)


def layernorm_backward(dout, cache):
    """LayerNorm gradients: dx by chapters/04-ffn-norm-residual.md, eq. 4.7; dgamma and
    dbeta by chapters/04-ffn-norm-residual.md, eq. 4.8.

    dn = dout * gamma;  dx = rstd * (dn - mean(dn) - n * mean(dn * n)).
    The two means are the gradient flowing back through the mean and the variance.

    Inputs:
        dout: (..., C); cache from `layernorm_forward`
    Returns:
        dx: (..., C), dgamma: (C,), dbeta: (C,)
    """
    n, rstd, gamma = cache
    C = n.shape[-1]
    dn = dout * gamma  # (..., C)
    dx = rstd * (dn - dn.mean(axis=-1, keepdims=True) - n * (dn * n).mean(axis=-1, keepdims=True))  # (..., C) eq. 4.7
    dgamma = (dout * n).reshape(-1, C).sum(axis=0)  # (C,) gamma scales every row: sum over rows, eq. 4.8
    dbeta = dout.reshape(-1, C).sum(axis=0)  # (C,) eq. 4.8
    return dx, dgamma, dbeta


def rmsnorm_forward(x, gamma, eps=1e-6):
    """RMSNorm over the last axis (chapters/04-ffn-norm-residual.md, eq. 4.9).

    n = x * rstd with rstd = 1 / sqrt(mean(x^2) + eps), out = n * gamma. Unlike LayerNorm
    there is no centring and no beta.

    Inputs:
        x: (..., C), gamma: (C,)
    Returns:
        out: (..., C)
        cache: (n (..., C), rstd (..., 1), gamma (C,))
    """
    xp = get_array_module(x, gamma)
    _check_norm_inputs(x, gamma)
    rstd = 1.0 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # (..., 1) eq. 4.9
    n = x * rstd  # (..., C)
    return n * gamma, (n, rstd, gamma)  # (..., C) eq. 4.9


def rmsnorm_backward(dout, cache):
    """RMSNorm gradients (chapters/04-ffn-norm-residual.md, eq. 4.10).

    dn = dout * gamma;  dx = rstd * (dn - n * mean(dn * n));  dgamma = sum(dout * n).
    It is LayerNorm's backward without the mean(dn) term (no centring in the forward).

    Inputs:
        dout: (..., C); cache from `rmsnorm_forward`
    Returns:
        dx: (..., C), dgamma: (C,)
    """
    n, rstd, gamma = cache
    dn = dout * gamma  # (..., C)
    dx = rstd * (dn - n * (dn * n).mean(axis=-1, keepdims=True))  # (..., C) eq. 4.10
    dgamma = (dout * n).reshape(-1, n.shape[-1]).sum(axis=0)  # (C,) eq. 4.10
    return dx, dgamma
