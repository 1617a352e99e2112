"""SwiGLU end to end: the pair against finite differences, the module, its parameter and FLOP
counts, a model that trains with it (PyTorch cross-checks in tests/test_torch_model.py)."""
import re
from pathlib import Path

import numpy as np
import pytest

from minichinchilla.functional import swiglu_backward, swiglu_forward
from minichinchilla.gradcheck import gradcheck, numerical_gradient, rel_error
from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.nn import FEED_FORWARDS, SwiGLUFeedForward, swiglu_width
from minichinchilla.optim import AdamW
from minichinchilla.scaling.flops import model_flops, params_count
from minichinchilla.tensor import Tensor

NAMES = ["x", "W_gate", "W_up", "W_down"]


def _inputs(rng, lead=(2, 3), C=5, F=7, C_out=4, dtype=np.float64):
    shapes = [lead + (C,), (C, F), (C, F), (F, C_out)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("lead", [(6,), (2, 3), (2, 2, 2)])
def test_pair_against_finite_differences(rng, lead):
    """Every gradient of the pair, float64, against a random upstream gradient (not ones)."""
    inputs = _inputs(rng, lead)
    out, cache = swiglu_forward(*inputs)
    dout = rng.standard_normal(out.shape)
    grads = swiglu_backward(dout, cache)
    assert len(grads) == 4
    for i, (name, g) in enumerate(zip(NAMES, grads)):
        def f(a, i=i):
            args = list(inputs)
            args[i] = a
            return swiglu_forward(*args)[0]
        err = rel_error(g, numerical_gradient(f, inputs[i], dout))
        assert err < 1e-8, f"d{name}: relative error {err:.2e}"
    gradcheck(swiglu_forward, inputs, swiglu_backward, names=NAMES)  # the package's own verdict


def test_forward_is_the_equation(rng):
    """Y = (silu(X W_g) ⊙ X W_u) W_d with silu(z) = z σ(z), σ computed the textbook way."""
    x, Wg, Wu, Wd = _inputs(rng)
    G, U = x @ Wg, x @ Wu
    expected = (G / (1 + np.exp(-G)) * U) @ Wd
    assert rel_error(swiglu_forward(x, Wg, Wu, Wd)[0], expected) < 1e-14


def test_extreme_gates_are_finite(rng):
    """σ via tanh: a gate of -1000 gives silu = 0 (no overflow warning), +1000 gives silu = z."""
    x = np.array([[1.0], [-1.0]])
    Wg, Wu, Wd = np.array([[1000.0]]), np.array([[1.0]]), np.array([[1.0]])
    with np.errstate(all="raise"):
        out, cache = swiglu_forward(x, Wg, Wu, Wd)
        grads = swiglu_backward(np.ones_like(out), cache)
    np.testing.assert_allclose(out, [[1000.0], [0.0]], atol=1e-12)
    assert all(np.isfinite(g).all() for g in grads)


def test_float32_stays_float32_and_nothing_is_modified(rng):
    inputs = _inputs(rng, dtype=np.float32)
    before = [a.copy() for a in inputs]
    out, cache = swiglu_forward(*inputs)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dout_before = dout.copy()
    grads = swiglu_backward(dout, cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert all(np.array_equal(a, b) for a, b in zip(inputs, before))
    assert np.array_equal(dout, dout_before)


def test_bad_shapes_name_the_argument(rng):
    x, Wg, Wu, Wd = _inputs(rng)
    with pytest.raises(ValueError, match="W_gate"):
        swiglu_forward(x[..., :3], Wg, Wu, Wd)
    with pytest.raises(ValueError, match="W_up"):
        swiglu_forward(x, Wg, Wu[:, :3], Wd)
    with pytest.raises(ValueError, match="W_down"):
        swiglu_forward(x, Wg, Wu, Wd[:3])
    with pytest.raises(TypeError, match="x"):
        swiglu_forward(x.astype(np.int64), Wg, Wu, Wd)
    out, cache = swiglu_forward(x, Wg, Wu, Wd)
    with pytest.raises(ValueError, match="dout"):
        swiglu_backward(out[..., :2], cache)


def test_module_is_one_node_of_the_pair(rng):
    ffn = SwiGLUFeedForward(5, 7, rng=np.random.default_rng(0), dtype="float64")
    assert [n for n, _ in ffn.named_parameters()] == ["gate_weight", "up_weight", "down_weight"]
    x = rng.standard_normal((2, 3, 5))
    xt = Tensor(x, requires_grad=True)
    dout = rng.standard_normal((2, 3, 5))
    ffn(xt).backward(dout)
    out, cache = swiglu_forward(x, ffn.gate_weight.data, ffn.up_weight.data, ffn.down_weight.data)
    dx, dWg, dWu, dWd = swiglu_backward(dout, cache)
    assert rel_error(ffn(xt).data, out) == 0.0
    for got, want in ((xt.grad, dx), (ffn.gate_weight.grad, dWg), (ffn.up_weight.grad, dWu),
                      (ffn.down_weight.grad, dWd)):
        assert rel_error(got, want) == 0.0


def tiny(**kw):
    base = dict(vocab_size=11, seq_len=6, d_model=8, n_layers=2, n_heads=2, dtype="float64")
    return ModelConfig(**{**base, **kw})


def _matrix_entries(model):
    return sum(p.size for p in model.parameters() if p.ndim == 2)


@pytest.mark.parametrize("d_ff", [12, 32])
def test_swiglu_adds_one_matrix_per_layer(d_ff):
    """The contract: with an explicit d_ff, n_layers·d_model·d_ff more weight-matrix entries than
    GELU (the third matrix); the counts of scaling.flops agree with the model's own."""
    gelu, swiglu = TransformerLM(tiny(d_ff=d_ff)), TransformerLM(tiny(d_ff=d_ff, activation="swiglu"))
    L, C = 2, 8
    assert _matrix_entries(swiglu) - _matrix_entries(gelu) == L * C * d_ff
    # ...and no FFN biases: the totals differ by the matrix minus the (F + C) biases per layer.
    assert swiglu.num_params() - gelu.num_params() == L * (C * d_ff - d_ff - C)
    for model in (gelu, swiglu):
        assert params_count(model.config).total == model.num_params()
        assert params_count(model.config).non_embedding == model.num_params(non_embedding=True)
    T = 6
    assert model_flops(swiglu.config) - model_flops(gelu.config) == 3 * L * 2 * T * C * d_ff


def test_default_width_is_llamas():
    """d_ff = 8/3·d_model rounded up to a multiple of 8: three matrices ≈ GELU's two at 4·d_model."""
    assert [swiglu_width(C) for C in (8, 64, 128, 4096)] == [24, 176, 344, 10928]
    assert all(swiglu_width(C) % 8 == 0 and 0 <= swiglu_width(C) - 8 * C / 3 < 8
               for C in range(1, 300))
    cfg = ModelConfig(vocab_size=64, seq_len=16, d_model=96, n_layers=2, n_heads=4,
                      activation="swiglu")
    assert cfg.d_ff == 256 and FEED_FORWARDS["swiglu"].default_d_ff(96) == 256
    gelu = params_count(ModelConfig(vocab_size=64, seq_len=16, d_model=96, n_layers=2, n_heads=4))
    assert abs(params_count(cfg).non_embedding / gelu.non_embedding - 1) < 0.01


def test_every_parameter_gradient_of_a_swiglu_model(rng):
    model = TransformerLM(tiny(activation="swiglu", norm="rmsnorm", pos_encoding="rope"), seed=1)
    for p in model.parameters():
        p.data = p.data * 10 if p.ndim >= 2 else p.data + 0.1 * rng.standard_normal(p.shape)
    idx, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    model.zero_grad()
    model(idx, targets)[1].backward()
    for name, p in model.named_parameters():
        original = p.data

        def f(arr):
            p.data = arr
            return model(idx, targets)[1].data
        numeric = numerical_gradient(f, original, np.float64(1.0))
        p.data = original
        assert rel_error(p.grad, numeric) < 1e-7, name


def test_a_swiglu_model_trains():
    """150 AdamW steps memorise a sequence, as the GELU model of test_model.py does."""
    cfg = ModelConfig(vocab_size=20, seq_len=12, d_model=32, n_layers=2, n_heads=4,
                      activation="swiglu")
    model = TransformerLM(cfg, seed=0)
    seq = np.array([[3, 7, 1, 9, 4, 4, 12, 0, 5, 8, 2, 11, 6]])
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(150):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        model.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5 and losses[-1] < 0.05
    np.testing.assert_array_equal(model.generate(seq[:, :1], 11, temperature=0), seq[:, :12])


def test_chapter_04_has_the_equations():
    """The pair cites eqs. 4.13-4.16; each must exist in chapter 04."""
    text = (Path(__file__).resolve().parent.parent / "chapters" / "04-ffn-norm-residual.md").read_text()
    for n in (13, 14, 15, 16):
        assert re.search(rf"\\tag{{4\.{n}}}", text), f"eq. 4.{n} missing"


def test_both_kernel_sets_agree_on_a_swiglu_model(rng):
    """SwiGLU has one pair; the rest of the model switches kernels, and the results agree."""
    idx, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    results = []
    for kernels in ("fast", "reference"):
        model = TransformerLM(tiny(activation="swiglu", kernels=kernels), seed=3)
        _, loss = model(idx, targets)
        loss.backward()
        results.append((loss.item(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_fast, g_fast), (loss_ref, g_ref) = results
    assert abs(loss_fast - loss_ref) < 1e-12
    assert all(rel_error(g_fast[n], g_ref[n]) < 1e-9 for n in g_ref)
