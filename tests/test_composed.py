"""Two routes to one gradient: hand-derived fused nodes vs the same layer built from primitives.

If the chapter's derivation were wrong, the fused node would disagree with what autograd
composes from exp/sum/matmul. They must agree to 1e-9 in float64.
"""
import numpy as np
import pytest

from minichinchilla import composed
from minichinchilla import tensor as ops
from minichinchilla.gradcheck import rel_error
from minichinchilla.tensor import Tensor


def grads_of(fn, arrays, dout):
    ts = [Tensor(a, requires_grad=a.dtype.kind == "f") if a is not None else None for a in arrays]
    out = fn(*ts)
    out.backward(dout if out.size > 1 else None)
    return out.data, [t.grad for t in ts if t is not None and t.requires_grad]


def agree(fused, composed_fn, arrays, rng):
    out = fused(*[Tensor(a) if a is not None else None for a in arrays])
    dout = rng.standard_normal(out.shape) if out.size > 1 else None
    o1, g1 = grads_of(fused, arrays, dout)
    o2, g2 = grads_of(composed_fn, arrays, dout)
    assert rel_error(o1, o2) < 1e-12
    for a, b in zip(g1, g2):
        assert rel_error(a, b) < 1e-9


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padding", [False, True])
def test_attention(rng, causal, padding):
    B, T, C, NH = 2, 5, 8, 2
    mask = None
    if padding:
        mask = np.zeros((B, T), dtype=bool)
        mask[0, 3:] = True
        mask[1, 0] = True  # with causal=True, query 0 of row 1 sees no key at all
    arrays = [rng.standard_normal(s) for s in [(B, T, C), (C, 3 * C), (3 * C,), (C, C), (C,)]]
    agree(lambda *t: ops.attention(*t, NH, causal=causal, key_padding_mask=mask),
          lambda *t: composed.attention(*t, NH, causal=causal, key_padding_mask=mask), arrays, rng)


def test_layernorm_rmsnorm(rng):
    x, g, b = rng.standard_normal((3, 4, 6)), rng.standard_normal(6), rng.standard_normal(6)
    agree(ops.layernorm, composed.layernorm, [x, g, b], rng)
    agree(ops.rmsnorm, composed.rmsnorm, [x, g], rng)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_ffn(rng, activation):
    arrays = [rng.standard_normal(s) for s in [(2, 3, 4), (4, 16), (16,), (16, 4), (4,)]]
    agree(lambda *t: ops.ffn(*t, activation=activation),
          lambda *t: composed.ffn(*t, activation=activation), arrays, rng)


def test_softmax_and_cross_entropy(rng):
    x = rng.standard_normal((3, 7))
    agree(ops.softmax, composed.softmax, [x], rng)
    targets = np.array([1, -100, 6])
    agree(lambda t: ops.cross_entropy(t, targets), lambda t: composed.cross_entropy(t, targets), [x], rng)
