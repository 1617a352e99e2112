"""Gradient checks, reference comparisons, edge cases and error messages for
`minichinchilla.functional` (every pair, float64, random upstream gradient)."""
import copy
import pathlib
import re

import numpy as np
import pytest

import minichinchilla.functional as F
from minichinchilla.gradcheck import gradcheck, rel_error

TOL = 1e-7
ROOT = pathlib.Path(__file__).resolve().parents[1]
FUNCTIONAL_DIR = ROOT / "minichinchilla" / "functional"


def check(forward, inputs, backward, names, **kwargs):
    """gradcheck with the course tolerance; prints the result (see it with pytest -s)."""
    result = gradcheck(forward, inputs, backward, names=names, kwargs=kwargs, tol=TOL)
    print(forward.__name__, kwargs.get("_label", ""), dict((k, f"{v:.1e}") for k, v in result.errors.items()))
    assert result.ok, str(result)
    return result


def away_from_zero(rng, shape, margin=0.1):
    """Values with |x| >= margin: finite differences of ReLU are exact there."""
    u = rng.standard_normal(shape)
    return np.sign(u) * (margin + np.abs(u))


# --------------------------------------------------------------------------- linear
@pytest.mark.parametrize("shape,d_out", [((3, 4), 5), ((2, 3, 4), 5), ((1, 1, 4), 2), ((2, 1, 3, 3), 1), ((4,), 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(rng, shape, d_out, bias):
    x = rng.standard_normal(shape)
    W = rng.standard_normal((shape[-1], d_out))
    b = rng.standard_normal(d_out) if bias else None
    check(F.linear_forward, [x, W, b], F.linear_backward, ["x", "W", "b"])


def test_linear_matches_matmul_and_db_none(rng):
    x = rng.standard_normal((2, 3, 4))
    W = rng.standard_normal((4, 5))
    out, cache = F.linear_forward(x, W)
    assert rel_error(out, np.einsum("btc,cd->btd", x, W)) < 1e-12
    dx, dW, db = F.linear_backward(np.ones_like(out), cache)
    assert db is None and dx.shape == x.shape and dW.shape == W.shape


# --------------------------------------------------------------------------- embedding
def test_embedding_gradcheck_repeated_indices(rng):
    E = rng.standard_normal((6, 4))
    idx = np.array([[0, 2, 2, 5], [2, 0, 1, 2]])  # id 2 four times, id 3 and 4 never
    check(F.embedding_forward, [idx, E], F.embedding_backward, ["idx", "E"])


@pytest.mark.parametrize("idx_shape", [(1,), (7,), (2, 5), (2, 3, 4)])
def test_embedding_matches_add_at(rng, idx_shape):
    V, C = 5, 3
    E = rng.standard_normal((V, C)).astype(np.float32)
    idx = rng.integers(0, V, size=idx_shape)
    out, cache = F.embedding_forward(idx, E)
    assert out.shape == idx_shape + (C,) and np.array_equal(out, E[idx])
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dE = F.embedding_backward(dout, cache)
    ref = np.zeros((V, C), np.float64)
    np.add.at(ref, idx.reshape(-1), dout.reshape(-1, C).astype(np.float64))  # the slow reference
    assert dE.dtype == np.float32 and rel_error(dE, ref) < 1e-6


def test_embedding_unused_rows_are_zero_and_dtype_kept(rng):
    E = rng.standard_normal((10, 2)).astype(np.float32)
    idx = np.array([3, 3, 3], dtype=np.int32)
    out, cache = F.embedding_forward(idx, E)
    dE = F.embedding_backward(np.ones((3, 2), np.float64), cache)  # a float64 dout still gives E's dtype
    assert dE.dtype == np.float32
    assert np.all(dE[3] == 3.0) and np.count_nonzero(np.delete(dE, 3, axis=0)) == 0


# --------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 3, 4), 1), ((4, 3), 0), ((1, 1), -1), ((2, 2, 1, 6), -1)])
def test_softmax_gradcheck(rng, shape, axis):
    x = rng.standard_normal(shape) * 3
    if shape[axis] == 1:  # softmax over one entry is the constant 1: its true gradient is zero
        res = gradcheck(F.softmax_forward, [x], F.softmax_backward, names=["x"], kwargs=dict(axis=axis))
        assert res.ok is None and "uninformative" in str(res)
        return
    check(F.softmax_forward, [x], F.softmax_backward, ["x"], axis=axis)


def test_softmax_masked_rows(rng):
    x = rng.standard_normal((3, 5))
    x[0, [1, 3]] = -np.inf  # partly masked row
    x[2, :] = -np.inf  # fully masked row -> zeros, not NaN
    y, cache = F.softmax_forward(x)
    assert np.all(np.isfinite(y))
    assert np.all(y[2] == 0) and np.all(y[0, [1, 3]] == 0)
    assert np.allclose(y[:2].sum(-1), 1.0)
    dx = F.softmax_backward(rng.standard_normal(x.shape), cache)
    assert np.all(np.isfinite(dx)) and np.all(dx[2] == 0)
    check(F.softmax_forward, [x], F.softmax_backward, ["x"])


def test_softmax_large_inputs_stable():
    x = np.array([[1e4, 0.0, -1e4], [1e30, 1e30, 1e30]], dtype=np.float32)
    y, _ = F.softmax_forward(x)
    assert np.all(np.isfinite(y))
    assert np.allclose(y[0], [1, 0, 0]) and np.allclose(y[1], 1 / 3)


# --------------------------------------------------------------------------- cross-entropy
def _ce_reference(logits, targets, ignore_index=-100):
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    t = targets.reshape(-1)
    m = z.max(1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(1)) + m[:, 0]
    valid = t != ignore_index
    nll = lse[valid] - z[np.flatnonzero(valid), t[valid]]
    return nll.mean() if valid.any() else 0.0


@pytest.mark.parametrize("shape,ignore", [((4, 7), []), ((2, 3, 5), [(0, 1), (1, 2)]), ((1, 1, 3), []),
                                          ((5, 2), [(3,)])])
def test_cross_entropy_gradcheck(rng, shape, ignore):
    logits = rng.standard_normal(shape) * 2
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    for pos in ignore:
        targets[pos] = -100
    loss, _ = F.cross_entropy_forward(logits, targets)
    assert loss.shape == () and isinstance(loss, np.ndarray)
    assert abs(float(loss) - _ce_reference(logits, targets)) < 1e-12
    check(F.cross_entropy_forward, [logits, targets], F.cross_entropy_backward, ["logits", "targets"])


def test_cross_entropy_custom_ignore_index(rng):
    logits = rng.standard_normal((6, 4))
    targets = np.array([0, -1, 3, -1, 2, 1])
    loss, cache = F.cross_entropy_forward(logits, targets, ignore_index=-1)
    assert abs(float(loss) - _ce_reference(logits, targets, -1)) < 1e-12
    dlogits = F.cross_entropy_backward(1.0, cache)
    assert np.all(dlogits[[1, 3]] == 0)
    check(F.cross_entropy_forward, [logits, targets], F.cross_entropy_backward, ["logits", "targets"],
          ignore_index=-1)


def test_cross_entropy_backward_formula(rng):
    logits = rng.standard_normal((5, 3))
    targets = np.array([0, 2, 1, -100, 2])
    _, cache = F.cross_entropy_forward(logits, targets)
    d = F.cross_entropy_backward(np.asarray(2.0), cache)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[[0, 1, 2, 4], [0, 2, 1, 2]] = 1
    expected = (p - onehot) * 2.0 / 4
    expected[3] = 0
    assert rel_error(d, expected) < 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_huge_logits(rng, dtype):
    logits = (rng.standard_normal((4, 6)) * 1e4).astype(dtype)
    targets = np.array([0, 1, 2, 3])
    loss, cache = F.cross_entropy_forward(logits, targets)
    d = F.cross_entropy_backward(1.0, cache)
    assert loss.dtype == dtype and np.isfinite(loss) and np.all(np.isfinite(d))
    assert abs(float(loss) - _ce_reference(logits, targets)) <= 1e-6 * max(1.0, abs(float(loss)))


def test_cross_entropy_all_ignored_gives_zero(rng):
    logits = rng.standard_normal((2, 3, 5)).astype(np.float32)
    targets = np.full((2, 3), -100)
    loss, cache = F.cross_entropy_forward(logits, targets)
    d = F.cross_entropy_backward(np.float32(1.0), cache)
    assert float(loss) == 0.0 and loss.dtype == np.float32 and loss.shape == ()
    assert d.shape == logits.shape and d.dtype == np.float32 and np.count_nonzero(d) == 0


# --------------------------------------------------------------------------- norms
@pytest.mark.parametrize("shape", [(3, 6), (2, 3, 5), (1, 1, 4), (4, 3)])
def test_layernorm_gradcheck(rng, shape):
    C = shape[-1]
    x = rng.standard_normal(shape) * 2 + 0.5
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    check(F.layernorm_forward, [x, gamma, beta], F.layernorm_backward, ["x", "gamma", "beta"])


def test_layernorm_matches_definition(rng):
    x = rng.standard_normal((3, 7)) * 4 + 1
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    out, (n, rstd, _) = F.layernorm_forward(x, gamma, beta, eps=1e-5)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * gamma + beta
    assert rel_error(out, ref) < 1e-12 and rstd.shape == (3, 1)


@pytest.mark.parametrize("shape", [(3, 6), (2, 3, 5), (1, 1, 4), (4, 2)])
def test_rmsnorm_gradcheck(rng, shape):
    x = rng.standard_normal(shape) + 0.3
    gamma = rng.standard_normal(shape[-1])
    check(F.rmsnorm_forward, [x, gamma], F.rmsnorm_backward, ["x", "gamma"])


def test_rmsnorm_matches_definition(rng):
    x = rng.standard_normal((2, 3, 8))
    gamma = rng.standard_normal(8)
    out, _ = F.rmsnorm_forward(x, gamma, eps=1e-6)
    ref = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * gamma
    assert rel_error(out, ref) < 1e-12


# --------------------------------------------------------------------------- activations
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
def test_relu_gradcheck(rng, shape):
    check(F.relu_forward, [away_from_zero(rng, shape)], F.relu_backward, ["x"])


def test_relu_zero_has_zero_gradient():
    x = np.array([-1.0, 0.0, 2.0])
    out, cache = F.relu_forward(x)
    assert np.array_equal(out, [0, 0, 2]) and np.array_equal(F.relu_backward(np.ones(3), cache), [0, 0, 1])


@pytest.mark.parametrize("shape", [(9,), (3, 4), (2, 3, 5)])
def test_gelu_gradcheck(rng, shape):
    check(F.gelu_forward, [rng.standard_normal(shape) * 2], F.gelu_backward, ["x"])


def test_gelu_matches_formula():
    x = np.linspace(-6, 6, 101)
    out, _ = F.gelu_forward(x)
    ref = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    assert rel_error(out, ref) < 1e-14


# --------------------------------------------------------------------------- FFN
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("bias", [(True, True), (False, True), (True, False), (False, False)])
def test_ffn_gradcheck(rng, activation, bias):
    B, T, C, Fh = 2, 3, 4, 6
    x = rng.standard_normal((B, T, C))
    W1, W2 = rng.standard_normal((C, Fh)) * 0.5, rng.standard_normal((Fh, C)) * 0.5
    b1 = rng.standard_normal(Fh) if bias[0] else None
    b2 = rng.standard_normal(C) if bias[1] else None
    if activation == "relu":  # keep pre-activations away from the kink at 0
        h = x @ W1 + (b1 if b1 is not None else 0)  # (B, T, F)
        assert np.abs(h).min() > 1e-3  # this seed keeps every |h| well above h = 1e-5
    check(F.ffn_forward, [x, W1, b1, W2, b2], F.ffn_backward, ["x", "W1", "b1", "W2", "b2"],
          activation=activation)


def test_ffn_equals_composition(rng):
    x = rng.standard_normal((2, 4))
    W1, b1, W2, b2 = rng.standard_normal((4, 8)), rng.standard_normal(8), rng.standard_normal((8, 4)), None
    out, _ = F.ffn_forward(x, W1, b1, W2, b2, activation="relu")
    assert rel_error(out, np.maximum(x @ W1 + b1, 0) @ W2) < 1e-12
    grads = F.ffn_backward(np.ones_like(out), F.ffn_forward(x, W1, b1, W2, b2, activation="relu")[1])
    assert grads[4] is None and grads[2] is not None


# --------------------------------------------------------------------------- RoPE
def _rope_reference(x, base=10000.0, offset=0):
    """Rotate-half RoPE by explicit complex multiplication, one pair (i, i + hs/2) at a time."""
    T, hs = x.shape[-2:]
    half = hs // 2
    out = np.empty_like(x)
    for i in range(half):
        theta = base ** (-2 * i / hs)
        angle = (np.arange(T) + offset) * theta  # (T,)
        z = (x[..., i] + 1j * x[..., i + half]) * np.exp(1j * angle)
        out[..., i], out[..., i + half] = z.real, z.imag
    return out


@pytest.mark.parametrize("shape,offset", [((5, 4), 0), ((2, 3, 6, 8), 0), ((1, 2), 3), ((2, 2, 3, 4), 7)])
def test_rope_gradcheck_and_reference(rng, shape, offset):
    x = rng.standard_normal(shape)
    out, _ = F.rope_forward(x, offset=offset)
    assert rel_error(out, _rope_reference(x, offset=offset)) < 1e-12
    check(F.rope_forward, [x], F.rope_backward, ["x"], offset=offset, base=100.0)


def test_rope_relative_position_property(rng):
    # q.k after RoPE depends only on the distance between the two positions.
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    def dot(pq, pk):
        rq, _ = F.rope_forward(q[None], offset=pq)
        rk, _ = F.rope_forward(k[None], offset=pk)
        return float(rq[0] @ rk[0])
    assert abs(dot(5, 2) - dot(13, 10)) < 1e-10 and abs(dot(0, 0) - q @ k) < 1e-12


def test_rope_backward_is_inverse(rng):
    x = rng.standard_normal((3, 6, 4))
    out, cache = F.rope_forward(x, offset=2)
    assert rel_error(F.rope_backward(out, cache), x) < 1e-12
    assert cache[0].dtype == x.dtype
    out32, cache32 = F.rope_forward(x.astype(np.float32))
    assert cache32[0].dtype == np.float32 and cache32[1].dtype == np.float32


# --------------------------------------------------------------------------- attention
def _attention_reference(x, Wqkv, bqkv, Wo, bo, NH, causal=True, kpm=None, rope_base=None):
    """Loops over batch and heads: the definition, written for clarity not speed."""
    B, T, C = x.shape
    hs = C // NH
    qkv = x @ Wqkv + (0 if bqkv is None else bqkv)
    y = np.zeros((B, T, C))
    for b in range(B):
        for h in range(NH):
            q = qkv[b, :, h * hs:(h + 1) * hs]
            k = qkv[b, :, C + h * hs:C + (h + 1) * hs]
            v = qkv[b, :, 2 * C + h * hs:2 * C + (h + 1) * hs]
            if rope_base is not None:
                q, k = _rope_reference(q, rope_base), _rope_reference(k, rope_base)
            s = q @ k.T / np.sqrt(hs)
            allowed = np.ones((T, T), bool)
            if causal:
                allowed &= np.tril(np.ones((T, T), bool))
            if kpm is not None:
                allowed &= ~kpm[b][None, :]
            for t in range(T):
                if allowed[t].any():
                    w = np.exp(s[t, allowed[t]] - s[t, allowed[t]].max())
                    y[b, t, h * hs:(h + 1) * hs] = (w / w.sum()) @ v[allowed[t]]
    return y @ Wo + (0 if bo is None else bo)


def _attention_inputs(rng, B, T, C, bias=True):
    x = rng.standard_normal((B, T, C))
    Wqkv = rng.standard_normal((C, 3 * C)) / np.sqrt(C)
    Wo = rng.standard_normal((C, C)) / np.sqrt(C)
    bqkv = rng.standard_normal(3 * C) * 0.1 if bias else None
    bo = rng.standard_normal(C) * 0.1 if bias else None
    return x, Wqkv, bqkv, Wo, bo


def _padding(kind, B, T):
    if kind is None:
        return None
    kpm = np.zeros((B, T), bool)
    if kind == "right":
        kpm[-1, T - 1:] = True  # last sequence has one padding token at the end
    elif kind == "left":
        kpm[0, 0] = True  # with causal attention, query 0 of batch 0 sees only a pad: fully masked
    elif kind == "all":
        kpm[-1, :] = True  # a whole sequence of padding: every row fully masked
    return kpm


ATTENTION_CASES = [
    # B, T, C, NH, causal, padding, bias, rope
    (2, 4, 8, 2, True, None, True, None),
    (1, 1, 4, 1, True, None, True, None),  # T = 1, n_heads = 1
    (2, 3, 6, 1, False, None, False, None),  # not causal, no biases
    (2, 5, 8, 4, True, "right", True, None),
    (2, 4, 4, 2, True, "left", True, None),  # one fully masked row
    (2, 3, 4, 2, False, "all", True, None),  # a fully masked sequence
    (2, 4, 8, 2, True, None, True, 10000.0),  # RoPE
    (1, 5, 8, 2, False, "left", False, 100.0),  # RoPE, not causal, padding
]


@pytest.mark.parametrize("B,T,C,NH,causal,padding,bias,rope", ATTENTION_CASES)
def test_attention_gradcheck_and_reference(rng, B, T, C, NH, causal, padding, bias, rope):
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, B, T, C, bias)
    kpm = _padding(padding, B, T)
    kw = dict(n_heads=NH, causal=causal, key_padding_mask=kpm, rope_base=rope)
    out, _ = F.attention_forward(x, Wqkv, bqkv, Wo, bo, **kw)
    ref = _attention_reference(x, Wqkv, bqkv, Wo, bo, NH, causal, kpm, rope)
    assert rel_error(out, ref) < 1e-12
    check(F.attention_forward, [x, Wqkv, bqkv, Wo, bo], F.attention_backward,
          ["x", "Wqkv", "bqkv", "Wo", "bo"], **kw)


@pytest.mark.parametrize("B,T,C,NH,causal,padding,bias,rope", ATTENTION_CASES)
def test_attention_weights_rebuild_the_forward(rng, B, T, C, NH, causal, padding, bias, rope):
    """P from attention_weights, applied to the values by hand, gives attention_forward's output;
    its rows are distributions over the keys a query may see (all zero when it may see none)."""
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, B, T, C, bias)
    kpm = _padding(padding, B, T)
    kw = dict(causal=causal, key_padding_mask=kpm, rope_base=rope)
    P = F.attention_weights(x, Wqkv, bqkv, NH, **kw)  # (B, NH, T, T)
    assert P.shape == (B, NH, T, T) and P.dtype == x.dtype
    hs = C // NH
    v = (x @ Wqkv + (0 if bqkv is None else bqkv))[..., 2 * C:]  # (B, T, C) values
    v = v.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)  # (B, NH, T, hs)
    y = (P @ v).transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    out, _ = F.attention_forward(x, Wqkv, bqkv, Wo, bo, NH, **kw)
    assert rel_error(y @ Wo + (0 if bo is None else bo), out) < 1e-12
    allowed = np.ones((B, 1, T, T), bool)
    if causal:
        allowed &= np.tril(np.ones((T, T), bool))
    if kpm is not None:
        allowed &= ~kpm[:, None, None, :]
    assert (P[~np.broadcast_to(allowed, P.shape)] == 0).all()
    sees_any = np.broadcast_to(allowed.any(-1), P.shape[:-1])
    np.testing.assert_allclose(P.sum(-1), np.where(sees_any, 1.0, 0.0), atol=1e-12)


def test_attention_weights_bad_mask(rng):
    x, Wqkv, bqkv, _, _ = _attention_inputs(rng, 2, 3, 4)
    with pytest.raises(TypeError, match="bool"):
        F.attention_weights(x, Wqkv, bqkv, 2, key_padding_mask=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="key_padding_mask"):
        F.attention_weights(x, Wqkv, bqkv, 2, key_padding_mask=np.zeros((2, 4), bool))


@pytest.mark.parametrize("kind", ["left", "all"])
@pytest.mark.parametrize("rope", [None, 10000.0])
def test_attention_fully_masked_rows_zero_output_and_grad(rng, kind, rope):
    B, T, C, NH = 2, 4, 4, 2
    x, Wqkv, _, Wo, _ = _attention_inputs(rng, B, T, C)
    kpm = _padding(kind, B, T)
    causal = kind == "left"
    rows = (0, 0) if kind == "left" else (1, slice(None))  # the fully masked query rows
    out, cache = F.attention_forward(x, Wqkv, None, Wo, None, NH, causal=causal, key_padding_mask=kpm,
                                     rope_base=rope)
    assert np.all(np.isfinite(out)) and np.all(out[rows] == 0)  # zero output (no output bias)
    grads = F.attention_backward(rng.standard_normal(out.shape), cache)
    assert grads[2] is None and grads[4] is None
    assert all(np.all(np.isfinite(g)) for g in grads if g is not None)
    # An upstream gradient on the fully masked rows only must give exactly zero gradients.
    dout = np.zeros_like(out)
    dout[rows] = rng.standard_normal(dout[rows].shape)
    for g in F.attention_backward(dout, cache):
        assert g is None or np.count_nonzero(g) == 0
    if kind == "all":  # a sequence that is all padding influences nothing, so gets no dx
        dx = F.attention_backward(rng.standard_normal(out.shape), cache)[0]
        assert np.all(dx[1] == 0)


def test_attention_padding_is_invisible(rng):
    # Changing a padding token's content must not change the other tokens' outputs.
    B, T, C = 1, 5, 8
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, B, T, C)
    kpm = np.zeros((B, T), bool)
    kpm[0, 2] = True
    out1, _ = F.attention_forward(x, Wqkv, bqkv, Wo, bo, 2, causal=False, key_padding_mask=kpm)
    x2 = x.copy()
    x2[0, 2] += 10.0
    out2, _ = F.attention_forward(x2, Wqkv, bqkv, Wo, bo, 2, causal=False, key_padding_mask=kpm)
    keep = [0, 1, 3, 4]
    assert rel_error(out1[0, keep], out2[0, keep]) < 1e-12


def test_attention_causal_is_causal(rng):
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, 2, 6, 8)
    out1, _ = F.attention_forward(x, Wqkv, bqkv, Wo, bo, 2, rope_base=10000.0)
    x2 = x.copy()
    x2[:, 4:] = rng.standard_normal((2, 2, 8))  # change the future
    out2, _ = F.attention_forward(x2, Wqkv, bqkv, Wo, bo, 2, rope_base=10000.0)
    assert rel_error(out1[:, :4], out2[:, :4]) < 1e-12


@pytest.mark.parametrize("rope", [None, 10000.0])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_step_matches_forward(rng, rope, bias, dtype):
    B, T, C, NH = 2, 7, 8, 2
    x, Wqkv, bqkv, Wo, bo = (None if a is None else a.astype(dtype) for a in _attention_inputs(rng, B, T, C, bias))
    full, _ = F.attention_forward(x, Wqkv, bqkv, Wo, bo, NH, causal=True, rope_base=rope)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    # one token at a time, then in uneven chunks: both must equal the full forward's rows
    for chunks in ([1] * T, [3, 1, 2, 1], [T]):
        cache, start, pieces = None, 0, []
        for n in chunks:
            out, cache = F.attention_step(x[:, start:start + n], Wqkv, bqkv, Wo, bo, NH, kv_cache=cache,
                                          rope_base=rope)
            assert out.dtype == dtype and cache[0].shape == (B, NH, start + n, C // NH)
            pieces.append(out)
            start += n
        assert rel_error(np.concatenate(pieces, axis=1), full) < tol


def test_attention_step_does_not_mutate_cache(rng):
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, 1, 3, 4)
    _, cache = F.attention_step(x[:, :2], Wqkv, bqkv, Wo, bo, 2)
    saved = copy.deepcopy(cache)
    F.attention_step(x[:, 2:], Wqkv, bqkv, Wo, bo, 2, kv_cache=cache)
    assert all(np.array_equal(a, b) for a, b in zip(cache, saved))


# --------------------------------------------------------------------------- no mutation
def _ops(rng):
    """(name, forward, inputs, kwargs, backward) for every pair, on float64 inputs."""
    x3 = rng.standard_normal((2, 3, 4))
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, 2, 3, 4)
    kpm = np.array([[True, False, False], [False, False, False]])
    return [
        ("linear", F.linear_forward, [x3, rng.standard_normal((4, 5)), rng.standard_normal(5)], {}, F.linear_backward),
        ("embedding", F.embedding_forward, [np.array([[1, 1, 0]]), rng.standard_normal((3, 4))], {},
         F.embedding_backward),
        ("softmax", F.softmax_forward, [x3], {"axis": 1}, F.softmax_backward),
        ("cross_entropy", F.cross_entropy_forward, [x3, np.array([[0, 3, -100], [1, 2, 2]])], {},
         F.cross_entropy_backward),
        ("layernorm", F.layernorm_forward, [x3, rng.standard_normal(4), rng.standard_normal(4)], {},
         F.layernorm_backward),
        ("rmsnorm", F.rmsnorm_forward, [x3, rng.standard_normal(4)], {}, F.rmsnorm_backward),
        ("relu", F.relu_forward, [x3], {}, F.relu_backward),
        ("gelu", F.gelu_forward, [x3], {}, F.gelu_backward),
        ("ffn", F.ffn_forward, [x3, rng.standard_normal((4, 6)), rng.standard_normal(6), rng.standard_normal((6, 4)),
                                rng.standard_normal(4)], {}, F.ffn_backward),
        ("attention", F.attention_forward, [x, Wqkv, bqkv, Wo, bo], {"n_heads": 2, "key_padding_mask": kpm},
         F.attention_backward),
        ("attention_rope", F.attention_forward, [x, Wqkv, bqkv, Wo, bo], {"n_heads": 2, "rope_base": 10000.0},
         F.attention_backward),
        ("rope", F.rope_forward, [x3], {"offset": 2}, F.rope_backward),
    ]


def test_no_op_mutates_inputs_or_dout(rng):
    for name, fwd, inputs, kwargs, bwd in _ops(rng):
        saved_inputs, saved_kwargs = copy.deepcopy(inputs), copy.deepcopy(kwargs)
        out, cache = fwd(*inputs, **kwargs)
        dout = np.asarray(rng.standard_normal(np.shape(out)))
        saved_dout = dout.copy()
        saved_cache = copy.deepcopy(cache)
        first = bwd(dout, cache)
        second = bwd(dout, cache)  # a second backward from the same cache gives the same grads
        for a, b in zip(inputs, saved_inputs):
            assert np.array_equal(a, b), f"{name} mutated an input"
        for k in kwargs:
            if isinstance(kwargs[k], np.ndarray):
                assert np.array_equal(kwargs[k], saved_kwargs[k]), f"{name} mutated {k}"
        assert np.array_equal(dout, saved_dout), f"{name} mutated dout"
        first = first if isinstance(first, tuple) else (first,)
        second = second if isinstance(second, tuple) else (second,)
        for g1, g2 in zip(first, second):
            assert (g1 is None and g2 is None) or np.array_equal(g1, g2), f"{name}'s backward mutated its cache"
        del saved_cache


# --------------------------------------------------------------------------- code hygiene
def test_functional_never_imports_numpy():
    pattern = re.compile(r"^\s*(import\s+numpy|from\s+numpy)", re.MULTILINE)
    files = sorted(FUNCTIONAL_DIR.rglob("*.py"))  # the fast kernels too
    assert files
    offenders = [f.name for f in files if pattern.search(f.read_text())]
    assert not offenders, f"these functional files import numpy: {offenders} (use get_array_module)"


def test_docstring_citations_are_well_formed():
    allowed = {
        "01-autograd": "1", "02-softmax-cross-entropy": "2", "03-attention": "3",
        "04-ffn-norm-residual": "4", "05-transformer": "5",
    }
    cites = []
    for f in FUNCTIONAL_DIR.glob("*.py"):
        text = f.read_text()
        assert "eqs." not in text, f"{f.name}: cite one equation at a time (chapters/NN-x.md, eq. N.M)"
        for chapter, eq in re.findall(r"chapters/([0-9A-Za-z-]+)\.md, eq\. (\d+\.\d+)", text):
            assert chapter in allowed, f"{f.name} cites unknown chapter {chapter}"
            assert eq.split(".")[0] == allowed[chapter], f"{f.name}: eq. {eq} is not in {chapter}"
            cites.append((chapter, eq))
            path = ROOT / "chapters" / f"{chapter}.md"
            if path.exists():  # written by the chapter authors; check the tag once it exists
                assert f"\\tag{{{eq}}}" in path.read_text(), f"{path.name} has no \\tag{{{eq}}}"
        # every "chapters/..." mention must be a complete citation
        assert text.count("chapters/") == len(re.findall(r"chapters/[0-9A-Za-z-]+\.md, eq\. \d+\.\d+", text)), f.name
    for name in F.__all__:
        doc = getattr(F, name).__doc__ or ""
        if name not in ("rope_tables",):
            assert "chapters/" in doc, f"{name}'s docstring cites no chapter equation"
    assert len(cites) >= 20


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(rng):
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"x.*\(2, 3, 4\).*W.*\(5, 6\)"):
        F.linear_forward(x, rng.standard_normal((5, 6)))
    with pytest.raises(ValueError, match="b must have shape"):
        F.linear_forward(x, rng.standard_normal((4, 6)), rng.standard_normal(5))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        F.linear_forward(np.ones((2, 4), dtype=np.int64), rng.standard_normal((4, 6)))
    with pytest.raises(TypeError, match="idx must be an integer"):
        F.embedding_forward(np.array([0.0, 1.0]), rng.standard_normal((3, 2)))
    with pytest.raises(ValueError, match="idx holds 7"):
        F.embedding_forward(np.array([0, 7]), rng.standard_normal((3, 2)))
    with pytest.raises(ValueError, match="idx holds -1"):
        F.embedding_forward(np.array([0, -1]), rng.standard_normal((3, 2)))
    with pytest.raises(TypeError, match="E must be a floating-point"):
        F.embedding_forward(np.array([0, 1]), np.ones((3, 2), dtype=np.int32))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        F.softmax_forward(np.arange(4))
    with pytest.raises(ValueError, match="targets holds 5"):
        F.cross_entropy_forward(rng.standard_normal((3, 5)), np.array([0, 5, 1]))
    with pytest.raises(ValueError, match="targets holds -3"):
        F.cross_entropy_forward(rng.standard_normal((3, 5)), np.array([0, -3, 1]))
    with pytest.raises(ValueError, match=r"targets must have shape.*\(3, 5\).*\(4,\)"):
        F.cross_entropy_forward(rng.standard_normal((3, 5)), np.array([0, 1, 1, 2]))
    with pytest.raises(TypeError, match="targets must be an integer"):
        F.cross_entropy_forward(rng.standard_normal((3, 5)), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        F.layernorm_forward(x, np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"beta must have shape \(4,\)"):
        F.layernorm_forward(x, np.ones(4), np.zeros(5))
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        F.rmsnorm_forward(x, np.ones(5))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        F.gelu_forward(np.arange(3))
    with pytest.raises(ValueError, match="activation must be one of"):
        F.ffn_forward(x, np.ones((4, 8)), None, np.ones((8, 4)), None, activation="swish")
    with pytest.raises(ValueError, match="hs even"):
        F.rope_forward(rng.standard_normal((3, 5)))


def test_attention_bad_inputs(rng):
    x, Wqkv, bqkv, Wo, bo = _attention_inputs(rng, 2, 3, 8)
    with pytest.raises(ValueError, match=r"n_heads=3 .*C=8"):
        F.attention_forward(x, Wqkv, bqkv, Wo, bo, 3)
    with pytest.raises(ValueError, match=r"Wqkv must have shape \(8, 24\).*got \(8, 16\)"):
        F.attention_forward(x, Wqkv[:, :16], bqkv, Wo, bo, 2)
    with pytest.raises(ValueError, match=r"Wo must have shape \(8, 8\).*got \(8, 4\)"):
        F.attention_forward(x, Wqkv, bqkv, Wo[:, :4], bo, 2)
    with pytest.raises(ValueError, match=r"bqkv must have shape \(24,\)"):
        F.attention_forward(x, Wqkv, bqkv[:8], Wo, bo, 2)
    with pytest.raises(ValueError, match=r"x must be 3-D"):
        F.attention_forward(x[0], Wqkv, bqkv, Wo, bo, 2)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 3\).*got \(2, 4\)"):
        F.attention_forward(x, Wqkv, bqkv, Wo, bo, 2, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool"):
        F.attention_forward(x, Wqkv, bqkv, Wo, bo, 2, key_padding_mask=np.zeros((2, 3)))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        F.attention_forward(x.astype(np.int64), Wqkv, bqkv, Wo, bo, 2)
    with pytest.raises(ValueError, match="even head size"):
        F.attention_forward(x, Wqkv, bqkv, Wo, bo, 8, rope_base=10000.0)
    with pytest.raises(TypeError, match="n_heads must be an int"):
        F.attention_forward(x, Wqkv, bqkv, Wo, bo, 2.0)
    _, cache = F.attention_step(x, Wqkv, bqkv, Wo, bo, 2)
    with pytest.raises(ValueError, match=r"kv_cache k must have shape"):
        F.attention_step(x, Wqkv, bqkv, Wo, bo, 4, kv_cache=cache)


# --------------------------------------------------------------------------- CuPy
@pytest.mark.gpu
def test_every_op_runs_on_cupy_and_matches_numpy(rng):
    """The same kernels on CuPy arrays give NumPy's answers (float64) and keep CuPy arrays."""
    import cupy

    for name, fwd, inputs, kwargs, bwd in _ops(rng):
        g_inputs = [None if a is None else cupy.asarray(a) for a in inputs]
        g_kwargs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        out, cache = fwd(*inputs, **kwargs)
        g_out, g_cache = fwd(*g_inputs, **g_kwargs)
        assert isinstance(g_out, cupy.ndarray) and rel_error(g_out, out) < 1e-10, name
        dout = rng.standard_normal(np.shape(out))
        grads, g_grads = bwd(dout, cache), bwd(cupy.asarray(dout), g_cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        g_grads = g_grads if isinstance(g_grads, tuple) else (g_grads,)
        for g, gg in zip(grads, g_grads):
            assert (g is None and gg is None) or (isinstance(gg, cupy.ndarray) and rel_error(gg, g) < 1e-10), name
    x, Wqkv, bqkv, Wo, bo = (cupy.asarray(a) for a in _attention_inputs(rng, 2, 5, 8))
    full, _ = F.attention_forward(x, Wqkv, bqkv, Wo, bo, 2, rope_base=10000.0)
    _, kv = F.attention_step(x[:, :3], Wqkv, bqkv, Wo, bo, 2, rope_base=10000.0)
    last, _ = F.attention_step(x[:, 3:], Wqkv, bqkv, Wo, bo, 2, kv_cache=kv, rope_base=10000.0)
    assert rel_error(last, full[:, 3:]) < 1e-12
