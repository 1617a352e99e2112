"""Fast feed-forward block: `minichinchilla/functional/ffn.py` composed from the fast pairs.

Nothing of its own: the same three steps (linear, activation, linear) as the reference, with the
fast GELU (`fast/activations.py`) in the middle. The two products are the reference's: one GEMM each
already (a ones-vector product for the bias gradient measured no faster than `sum(axis=0)`).
"""
from __future__ import annotations

from ..activations import relu_backward, relu_forward
from ..ffn import _check_activation
from .activations import gelu_backward, gelu_forward
from ..linear import linear_backward, linear_forward

_ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
}


def ffn_forward(x, W1, b1, W2, b2, activation="gelu"):
    """Feed-forward block (chapters/04-ffn-norm-residual.md, eq. 4.4) with the fast kernels.

    Inputs and returns as the reference `ffn_forward`.
    """
    _check_activation(activation, _ACTIVATIONS)
    act_forward, _ = _ACTIVATIONS[activation]
    h, cache1 = linear_forward(x, W1, b1)  # (..., F) hidden pre-activation
    a, cache_act = act_forward(h)  # (..., F)
    out, cache2 = linear_forward(a, W2, b2)  # (..., C_out)
    return out, (cache1, cache_act, cache2, activation)


def ffn_backward(dout, cache):
    """Feed-forward backward (chapters/04-ffn-norm-residual.md, eq. 4.5) with the fast kernels."""
    cache1, cache_act, cache2, activation = cache
    _, act_backward = _ACTIVATIONS[activation]
    da, dW2, db2 = linear_backward(dout, cache2)  # (..., F), (F, C_out), (C_out,)
    dh = act_backward(da, cache_act)  # (..., F)
    dx, dW1, db1 = linear_backward(dh, cache1)  # (..., C), (C, F), (F,)
    return dx, dW1, db1, dW2, db2
