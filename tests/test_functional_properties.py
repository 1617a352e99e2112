"""Property tests (hypothesis) for `minichinchilla.functional`: invariants that must hold
for every input, and float32 staying float32 through every forward and backward."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minichinchilla.functional as F

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)


@SETTINGS
@given(x=hnp.arrays(np.float64, shapes, elements=finite), data=st.data())
def test_softmax_rows_sum_to_one_and_ignore_shift(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    shift = data.draw(st.floats(-1e3, 1e3), label="shift")
    y, _ = F.softmax_forward(x, axis=axis)
    assert np.all(y >= 0) and np.allclose(y.sum(axis=axis), 1.0, atol=1e-12)
    y_shifted, _ = F.softmax_forward(x + shift, axis=axis)  # chapters eq. 2.2: same softmax
    assert np.allclose(y, y_shifted, atol=1e-10)


@SETTINGS
@given(x=hnp.arrays(np.float64, shapes, elements=finite), data=st.data())
def test_softmax_backward_is_orthogonal_to_ones(x, data):
    # softmax output always sums to 1, so a constant upstream gradient changes nothing,
    # and every dx row sums to 0.
    dout = data.draw(hnp.arrays(np.float64, x.shape, elements=finite), label="dout")
    y, cache = F.softmax_forward(x)
    dx = F.softmax_backward(dout, cache)
    assert np.allclose(dx.sum(-1), 0.0, atol=1e-9)
    assert np.allclose(F.softmax_backward(np.full_like(x, 3.0), cache), 0.0, atol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5), C=st.integers(2, 32),
       scale=st.floats(0.01, 1e3), offset=st.floats(-1e3, 1e3))
def test_layernorm_output_is_standardised(seed, rows, C, scale, offset):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, C)) * scale + offset
    out, _ = F.layernorm_forward(x, np.ones(C), np.zeros(C), eps=1e-5)
    var = x.var(-1, keepdims=True)
    assert np.allclose(out.mean(-1), 0.0, atol=1e-9)
    # the variance is var / (var + eps): 1 up to the eps the layer adds
    assert np.allclose(out.var(-1, keepdims=True), var / (var + 1e-5), rtol=1e-7, atol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5), C=st.integers(1, 32),
       scale=st.floats(0.01, 1e3))
def test_rmsnorm_output_has_unit_rms_and_is_scale_invariant(seed, rows, C, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, C)) + 0.1
    out, _ = F.rmsnorm_forward(x, np.ones(C), eps=0.0)
    out_scaled, _ = F.rmsnorm_forward(x * scale, np.ones(C), eps=0.0)
    assert np.allclose(np.sqrt((out * out).mean(-1)), 1.0)
    assert np.allclose(out, out_scaled)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 6), V=st.integers(1, 9), shift=st.floats(-1e4, 1e4))
def test_cross_entropy_is_shift_invariant_and_nonnegative(seed, N, V, shift):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, V)) * 3
    targets = rng.integers(-1, V, size=N)
    targets[targets < 0] = -100
    loss, cache = F.cross_entropy_forward(logits, targets)
    loss2, _ = F.cross_entropy_forward(logits + shift, targets)
    assert float(loss) >= 0.0 and abs(float(loss) - float(loss2)) < 1e-8
    d = F.cross_entropy_backward(1.0, cache)
    assert np.allclose(d.sum(-1), 0.0, atol=1e-12)  # probs and onehot both sum to 1 (or both 0)


# ----------------------------------------------------------------------------- dtypes
def _float32_cases(rng, B, T, NH, hs, V):
    """(name, forward, inputs, kwargs, backward) for every op, all float32."""
    C = NH * hs
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    x = f(B, T, C)
    kpm = np.zeros((B, T), bool)
    kpm[0, -1] = True
    targets = rng.integers(0, V, size=(B, T))
    targets[0, 0] = -100
    return [
        ("linear", F.linear_forward, [x, f(C, 5), f(5)], {}, F.linear_backward),
        ("linear_nobias", F.linear_forward, [x, f(C, 5), None], {}, F.linear_backward),
        ("embedding", F.embedding_forward, [rng.integers(0, V, size=(B, T)), f(V, C)], {}, F.embedding_backward),
        ("softmax", F.softmax_forward, [x], {}, F.softmax_backward),
        ("cross_entropy", F.cross_entropy_forward, [f(B, T, V), targets], {}, F.cross_entropy_backward),
        ("layernorm", F.layernorm_forward, [x, f(C), f(C)], {}, F.layernorm_backward),
        ("rmsnorm", F.rmsnorm_forward, [x, f(C)], {}, F.rmsnorm_backward),
        ("relu", F.relu_forward, [x], {}, F.relu_backward),
        ("gelu", F.gelu_forward, [x], {}, F.gelu_backward),
        ("ffn_gelu", F.ffn_forward, [x, f(C, 2 * C), f(2 * C), f(2 * C, C), f(C)], {}, F.ffn_backward),
        ("ffn_relu", F.ffn_forward, [x, f(C, 2 * C), None, f(2 * C, C), None], {"activation": "relu"}, F.ffn_backward),
        ("attention", F.attention_forward, [x, f(C, 3 * C), f(3 * C), f(C, C), f(C)],
         {"n_heads": NH, "key_padding_mask": kpm}, F.attention_backward),
        ("attention_rope", F.attention_forward, [x, f(C, 3 * C), None, f(C, C), None],
         {"n_heads": NH, "rope_base": 10000.0, "causal": False}, F.attention_backward),
        ("rope", F.rope_forward, [f(B, NH, T, hs)], {"offset": 3}, F.rope_backward),
    ]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 3), T=st.integers(1, 5), NH=st.integers(1, 3),
       hs=st.sampled_from([2, 4]), V=st.integers(2, 7))
def test_every_op_keeps_float32(seed, B, T, NH, hs, V):
    rng = np.random.default_rng(seed)
    for name, fwd, inputs, kwargs, bwd in _float32_cases(rng, B, T, NH, hs, V):
        out, cache = fwd(*inputs, **kwargs)
        assert out.dtype == np.float32, f"{name} forward gave {out.dtype}"
        dout = rng.standard_normal(np.shape(out)).astype(np.float32)
        grads = bwd(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for g in grads:
            assert g is None or g.dtype == np.float32, f"{name} backward gave {g.dtype}"
            assert g is None or np.all(np.isfinite(g)), f"{name} backward gave non-finite values"
    x = rng.standard_normal((B, T, NH * hs)).astype(np.float32)
    W = [rng.standard_normal(s).astype(np.float32) for s in [(NH * hs, 3 * NH * hs), (NH * hs, NH * hs)]]
    out, (k, v) = F.attention_step(x, W[0], None, W[1], None, NH, rope_base=10000.0)
    out2, (k2, _) = F.attention_step(x[:, -1:], W[0], None, W[1], None, NH, kv_cache=(k, v), rope_base=10000.0)
    assert out.dtype == out2.dtype == k.dtype == k2.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_loss_is_0d_array_of_logits_dtype(dtype):
    loss, _ = F.cross_entropy_forward(np.zeros((2, 3), dtype), np.array([0, 1]))
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype
    assert abs(float(loss) - np.log(3)) < 1e-6
