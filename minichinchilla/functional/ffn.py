"""Position-wise feed-forward network: linear -> activation -> linear."""
from __future__ import annotations

from .activations import gelu_backward, gelu_forward, relu_backward, relu_forward
from .linear import linear_backward, linear_forward

_ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
}


def ffn_forward(x, W1, b1, W2, b2, activation="gelu"):
    """Feed-forward block (chapters/04-ffn-norm-residual.md, eq. 4.4):
    out = act(x W1 + b1) W2 + b2, composed from the linear and activation pairs.

    Inputs:
        x: (..., C); W1: (C, F); b1: (F,) or None; W2: (F, C_out); b2: (C_out,) or None
        activation: "gelu" (tanh approximation) or "relu"
    Returns:
        out: (..., C_out)
        cache: (cache of each of the three layers, activation name)
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    act_forward, _ = _ACTIVATIONS[activation]
    h, cache1 = linear_forward(x, W1, b1)  # (..., F) hidden pre-activation
    a, cache_act = act_forward(h)  # (..., F)
    out, cache2 = linear_forward(a, W2, b2)  # (..., C_out)
    return out, (cache1, cache_act, cache2, activation)


def ffn_backward(dout, cache):
    """Feed-forward backward (chapters/04-ffn-norm-residual.md, eq. 4.5): the three
    backwards in reverse order.

    Inputs:
        dout: (..., C_out); cache from `ffn_forward`
    Returns:
        dx: (..., C), dW1: (C, F), db1: (F,) or None, dW2: (F, C_out), db2: (C_out,) or None
    """
    cache1, cache_act, cache2, activation = cache
    _, act_backward = _ACTIVATIONS[activation]
    da, dW2, db2 = linear_backward(dout, cache2)  # (..., F), (F, C_out), (C_out,)
    dh = act_backward(da, cache_act)  # (..., F)
    dx, dW1, db1 = linear_backward(dh, cache1)  # (..., C), (C, F), (F,)
    return dx, dW1, db1, dW2, db2
