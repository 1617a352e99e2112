"""SwiGLU feed-forward: a gated FFN with three matrices and no biases (Shazeer 2020; PaLM, LLaMA).

    G = X W_g,   U = X W_u,   H = silu(G) ⊙ U,   Y = H W_d       (eq. 4.15 of chapter 04)

The gate path G, through silu(z) = z·σ(z) (eq. 4.13), decides per hidden unit how much of the
value path U passes. Written as the chapter writes it, one line per equation.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float, check_shape


def _sigmoid(z):
    """σ(z) = 1 / (1 + e^{-z}), written as (1 + tanh(z/2)) / 2: the same function, but e^{-z}
    overflows for z < -88 in float32 and tanh never does. Python floats keep z's dtype."""
    xp = get_array_module(z)
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


def _check(x, W_gate, W_up, W_down):
    for name, a in (("x", x), ("W_gate", W_gate), ("W_up", W_up), ("W_down", W_down)):
        check_float(name, a)
    if W_gate.ndim != 2 or x.ndim < 1 or x.shape[-1] != W_gate.shape[0]:
        raise ValueError(f"W_gate must be (C, F) with C = x's last dim: x has shape "
                         f"{tuple(x.shape)}, W_gate has shape {tuple(W_gate.shape)}")
    check_shape("W_up", W_up, W_gate.shape, "the shape of W_gate, (C, F)")
    if W_down.ndim != 2 or W_down.shape[0] != W_gate.shape[1]:
        raise ValueError(f"W_down must be (F, C_out) with F = W_gate's columns: W_gate has shape "
                         f"{tuple(W_gate.shape)}, W_down has shape {tuple(W_down.shape)}")


def swiglu_forward(x, W_gate, W_up, W_down):
    """SwiGLU feed-forward (chapters/04-ffn-norm-residual.md, eq. 4.15), with
    silu (chapters/04-ffn-norm-residual.md, eq. 4.13).

    Inputs:
        x: (..., C); W_gate: (C, F); W_up: (C, F); W_down: (F, C_out)
    Returns:
        out: (..., C_out)
        cache: (x, W_gate, W_up, W_down, G, U, S, H) with S = σ(G), for `swiglu_backward`
    """
    _check(x, W_gate, W_up, W_down)
    G = x @ W_gate  # (..., F) gate pre-activation
    U = x @ W_up  # (..., F) value path
    S = _sigmoid(G)  # (..., F) σ(G), kept: silu and its derivative both need it
    H = (G * S) * U  # (..., F) silu(G) ⊙ U: eq. 4.13 inside eq. 4.15
    out = H @ W_down  # (..., C_out)
    return out, (x, W_gate, W_up, W_down, G, U, S, H)


def swiglu_backward(dout, cache):
    """SwiGLU backward (chapters/04-ffn-norm-residual.md, eq. 4.16), with the derivative of silu
    (chapters/04-ffn-norm-residual.md, eq. 4.14).

    Inputs:
        dout: (..., C_out); cache from `swiglu_forward`
    Returns:
        dx: (..., C), dW_gate: (C, F), dW_up: (C, F), dW_down: (F, C_out)
    """
    x, W_gate, W_up, W_down, G, U, S, H = cache
    check_shape("dout", dout, x.shape[:-1] + (W_down.shape[1],), "the forward output's shape")
    C, F = W_gate.shape
    x2, H2 = x.reshape(-1, C), H.reshape(-1, F)  # (N, C), (N, F): weight gradients sum over rows
    dout2 = dout.reshape(-1, W_down.shape[1])  # (N, C_out)
    dW_down = H2.T @ dout2  # (F, C_out)
    dH = (dout2 @ W_down.T).reshape(H.shape)  # (..., F)
    dU = dH * (G * S)  # (..., F) through H = silu(G) ⊙ U, the U factor
    dG = dH * U * (S * (1.0 + G * (1.0 - S)))  # (..., F) the silu(G) factor, times silu' (eq. 4.14)
    dG2, dU2 = dG.reshape(-1, F), dU.reshape(-1, F)  # (N, F) each
    dW_gate = x2.T @ dG2  # (C, F)
    dW_up = x2.T @ dU2  # (C, F)
    dx = (dG2 @ W_gate.T + dU2 @ W_up.T).reshape(x.shape)  # (..., C): x feeds both paths, add them
    return dx, dW_gate, dW_up, dW_down
