"""Position-wise feed-forward network: linear -> activation -> linear."""
from __future__ import annotations

from .activations import gelu_backward, gelu_forward, relu_backward, relu_forward
from .linear import linear_backward, linear_forward

_ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
}


def _check_activation(activation, table):
    if activation not in table:
        raise ValueError(f"activation must be one of {sorted(table)}, got {activation!r}")


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
    _check_activation(activation, _ACTIVATIONS)
    act_forward, _ = _ACTIVATIONS[activation]
    h, cache1 = linear_forward(x, W1, b1)  # (..., F) hidden pre-activation, eq. 4.4
    a, cache_act = act_forward(h)  # (..., F) eq. 4.4
    out, cache2 = linear_forward(a, W2, b2)  # (..., C_out) eq. 4.4
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
    da, dW2, db2 = linear_backward(dout, cache2)  # (..., F), (F, C_out), (C_out,) eq. 4.5
    dh = act_backward(da, cache_act)  # (..., F) eq. 4.5
    dx, dW1, db1 = linear_backward(dh, cache1)  # (..., C), (C, F), (F,) eq. 4.5
    return dx, dW1, db1, dW2, db2
