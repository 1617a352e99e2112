"""Elementwise activations: ReLU and GELU (tanh approximation); the reference versions
(`fast/activations.py` has the cache-blocked GELU)."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float

# Python floats, not NumPy float64 scalars: a float32 array times a Python float stays
# float32, whereas times np.float64(...) would silently give float64.
_SQRT_2_OVER_PI = 0.7978845608028654  # sqrt(2 / pi)
_GELU_C = 0.044715
_GELU_3C = 3.0 * _GELU_C  # from d/dx of c*x^3


def relu_forward(x):
    """ReLU, max(x, 0) (chapters/04-ffn-norm-residual.md, eq. 4.1).

    Inputs:
        x: (...) float
    Returns:
        out: (...), cache: out (its positive entries mark where the gradient passes)
    """
    xp = get_array_module(x)
    check_float("x", x)
    out = xp.maximum(x, 0.0)  # (...) eq. 4.1
    return out, out


def relu_backward(dout, cache):
    """ReLU backward (chapters/04-ffn-norm-residual.md, eq. 4.1): dx = dout where x > 0, else 0.

    At exactly x = 0 we take the derivative to be 0, as PyTorch does.

    Inputs:
        dout: (...); cache from `relu_forward`
    Returns:
        dx: (...)
    """
    out = cache
    xp = get_array_module(dout, out)
    return xp.where(out > 0, dout, 0.0)  # (...) eq. 4.1; Python 0.0 keeps dout's dtype


def gelu_forward(x):
    """GELU, tanh approximation (chapters/04-ffn-norm-residual.md, eq. 4.2), exactly as
    ``torch.nn.functional.gelu(x, approximate="tanh")``:

        out = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))

    Inputs:
        x: (...) float
    Returns:
        out: (...), cache: (x, t) with t the tanh term, reused by the backward
    """
    xp = get_array_module(x)
    check_float("x", x)
    t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))  # (...) x*x*x: cheaper than x**3
    return 0.5 * x * (1.0 + t), (x, t)  # (...) eq. 4.2


def gelu_backward(dout, cache):
    """GELU backward (chapters/04-ffn-norm-residual.md, eq. 4.3):

        d out/dx = 0.5 * (1 + t + x * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 * x^2))

    where t = tanh(sqrt(2/pi) * (x + 0.044715 x^3)) and 1 - t^2 is tanh's derivative.

    Inputs:
        dout: (...); cache from `gelu_forward`
    Returns:
        dx: (...)
    """
    x, t = cache
    local = 0.5 * (1.0 + t + x * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + _GELU_3C * x * x))  # (...) eq. 4.3
    return dout * local  # (...) chain rule
