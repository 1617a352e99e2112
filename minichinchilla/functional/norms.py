"""LayerNorm and RMSNorm over the last axis, with hand-derived backwards."""
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
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    n = x - mean  # (..., C) centred; fresh, so it becomes n in place below
    out = xp.multiply(n, n)  # (..., C) squares; this buffer is reused for the output
    var = out.mean(axis=-1, keepdims=True)  # (..., 1) biased variance
    var += eps  # (..., 1)
    rstd = xp.sqrt(var, out=var)  # (..., 1)
    xp.reciprocal(rstd, out=rstd)  # (..., 1) rstd = 1/sqrt(var + eps), cached: no divide later
    n *= rstd  # (..., C) normalised: zero mean, unit variance per row
    xp.multiply(n, gamma, out=out)  # (..., C)
    out += beta  # (..., C)
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
    xp = get_array_module(dout, n)
    C = n.shape[-1]
    tmp = xp.multiply(dout, n)  # (..., C) scratch buffer
    dgamma = tmp.reshape(-1, C).sum(axis=0)  # (C,) gamma scales every row: sum over rows
    dbeta = dout.reshape(-1, C).sum(axis=0)  # (C,)
    dx = xp.multiply(dout, gamma)  # (..., C) dn, turned into dx in place
    mean_dn = dx.mean(axis=-1, keepdims=True)  # (..., 1)
    xp.multiply(dx, n, out=tmp)  # (..., C) dn * n
    mean_dnn = tmp.mean(axis=-1, keepdims=True)  # (..., 1)
    dx -= mean_dn  # (..., C)
    xp.multiply(n, mean_dnn, out=tmp)  # (..., C)
    dx -= tmp  # (..., C)
    dx *= rstd  # (..., C)
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
    out = xp.multiply(x, x)  # (..., C) squares; buffer reused for the output
    ms = out.mean(axis=-1, keepdims=True)  # (..., 1) mean square
    ms += eps  # (..., 1)
    rstd = xp.sqrt(ms, out=ms)  # (..., 1)
    xp.reciprocal(rstd, out=rstd)  # (..., 1)
    n = x * rstd  # (..., C)
    xp.multiply(n, gamma, out=out)  # (..., C)
    return out, (n, rstd, gamma)


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
    xp = get_array_module(dout, n)
    C = n.shape[-1]
    tmp = xp.multiply(dout, n)  # (..., C) scratch buffer
    dgamma = tmp.reshape(-1, C).sum(axis=0)  # (C,)
    dx = xp.multiply(dout, gamma)  # (..., C) dn, turned into dx in place
    xp.multiply(dx, n, out=tmp)  # (..., C)
    mean_dnn = tmp.mean(axis=-1, keepdims=True)  # (..., 1)
    xp.multiply(n, mean_dnn, out=tmp)  # (..., C)
    dx -= tmp  # (..., C)
    dx *= rstd  # (..., C)
    return dx, dgamma
