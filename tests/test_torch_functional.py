"""Cross-checks of every forward and backward of both kernel sets, `minichinchilla.functional`
(the reference) and `minichinchilla.functional.fast`, against PyTorch (float64 to 1e-7, float32
to 1e-4). Skipped when torch is not installed."""
import numpy as np
import pytest

from minichinchilla import functional
from minichinchilla.gradcheck import rel_error

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
torch_F = torch.nn.functional

DTYPES = [np.float64, np.float32]


@pytest.fixture(params=["reference", "fast"])
def kernels(request):
    """The kernel set under test: every test runs once on each."""
    return functional if request.param == "reference" else functional.fast
TOL = {np.float64: 1e-7, np.float32: 1e-4}


def run_torch(fn, inputs, dout):
    """Run `fn` on torch copies of `inputs`; return (out, grads of the float inputs, in order)."""
    ts = [None if a is None else torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(dout))
    grads = tuple(t.grad.numpy() if t is not None and t.requires_grad else None
                  for t, a in zip(ts, inputs) if a is None or a.dtype.kind == "f")
    return out.detach().numpy(), grads


def compare(name, ours_fwd, ours_bwd, torch_fn, inputs, dtype, rng, kwargs=None):
    """Forward and backward of ours vs torch on the same inputs and random dout; returns worst error."""
    out, cache = ours_fwd(*inputs, **(kwargs or {}))
    dout = np.asarray(rng.standard_normal(np.shape(out)), dtype=dtype)
    grads = ours_bwd(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    t_out, t_grads = run_torch(torch_fn, inputs, dout)
    tol = TOL[dtype]
    errors = {"out": rel_error(out, t_out)}
    assert out.dtype == dtype
    for i, (g, tg) in enumerate(zip(grads, t_grads)):
        if tg is None:
            assert g is None, f"{name}: grad {i} should be None"
            continue
        assert g.dtype == dtype, f"{name}: grad {i} has dtype {g.dtype}"
        errors[f"d{i}"] = rel_error(g, tg)
    print(name, np.dtype(dtype).name, {k: f"{v:.1e}" for k, v in errors.items()})
    bad = {k: v for k, v in errors.items() if v >= tol}
    assert not bad, f"{name} ({np.dtype(dtype).name}) disagrees with torch: {bad}"
    return max(errors.values())


def arrays(rng, dtype, *shapes):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(kernels, rng, dtype, bias):
    x, W, b = arrays(rng, dtype, (2, 5, 8), (8, 6), (6,))
    b = b if bias else None
    compare("linear", kernels.linear_forward, kernels.linear_backward,
            lambda x, W, b: x @ W + b if b is not None else x @ W, [x, W, b], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding(kernels, rng, dtype):
    (E,) = arrays(rng, dtype, (7, 5))
    idx = rng.integers(0, 7, size=(3, 6))
    idx[0, :3] = 4  # repeated ids accumulate
    compare("embedding", kernels.embedding_forward, kernels.embedding_backward, lambda i, E: torch_F.embedding(i, E), [idx, E],
            dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(kernels, rng, dtype, axis):
    (x,) = arrays(rng, dtype, (2, 4, 6))
    compare("softmax", kernels.softmax_forward, kernels.softmax_backward, lambda x: torch.softmax(x, dim=axis), [x * 3],
            dtype, rng, {"axis": axis})


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm(kernels, rng, dtype):
    x, g, b = arrays(rng, dtype, (2, 5, 16), (16,), (16,))
    x = x * 3 + 1
    compare("layernorm", kernels.layernorm_forward, kernels.layernorm_backward,
            lambda x, g, b: torch_F.layer_norm(x, (16,), g, b, eps=1e-5), [x, g, b], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm(kernels, rng, dtype):
    x, g = arrays(rng, dtype, (2, 5, 16), (16,))
    compare("rmsnorm", kernels.rmsnorm_forward, kernels.rmsnorm_backward,
            lambda x, g: torch_F.rms_norm(x, (16,), g, eps=1e-6), [x, g], dtype, rng)
    by_hand = lambda x, g: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * g  # noqa: E731
    compare("rmsnorm_by_hand", kernels.rmsnorm_forward, kernels.rmsnorm_backward, by_hand, [x, g], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_gelu(kernels, rng, dtype):
    (x,) = arrays(rng, dtype, (3, 4, 10))
    x = x * 3
    compare("relu", kernels.relu_forward, kernels.relu_backward, torch_F.relu, [x], dtype, rng)
    compare("gelu", kernels.gelu_forward, kernels.gelu_backward, lambda x: torch_F.gelu(x, approximate="tanh"), [x], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_ffn(kernels, rng, dtype, activation, bias):
    x, W1, b1, W2, b2 = arrays(rng, dtype, (2, 3, 8), (8, 32), (32,), (32, 8), (8,))
    if not bias:
        b1 = b2 = None
    act = torch_F.relu if activation == "relu" else (lambda h: torch_F.gelu(h, approximate="tanh"))

    def ref(x, W1, b1, W2, b2):
        h = x @ W1 + (b1 if b1 is not None else 0)
        return act(h) @ W2 + (b2 if b2 is not None else 0)
    compare("ffn", kernels.ffn_forward, kernels.ffn_backward, ref, [x, W1, b1, W2, b2], dtype, rng, {"activation": activation})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy(kernels, rng, dtype, ignore):
    (logits,) = arrays(rng, dtype, (3, 4, 11))
    targets = rng.integers(0, 11, size=(3, 4))
    if ignore:
        targets[0, :2] = -100
        targets[2, 3] = -100

    def ref(z, t):
        return torch_F.cross_entropy(z.reshape(-1, 11), t.reshape(-1), ignore_index=-100)
    compare("cross_entropy", kernels.cross_entropy_forward, kernels.cross_entropy_backward, ref, [logits * 2, targets], dtype, rng)


def test_cross_entropy_all_ignored_differs_from_torch_by_design(kernels, rng):
    logits = rng.standard_normal((4, 5))
    targets = np.full(4, -100)
    loss, _ = kernels.cross_entropy_forward(logits, targets)
    t_loss = torch_F.cross_entropy(torch.tensor(logits), torch.tensor(targets), ignore_index=-100)
    assert float(loss) == 0.0 and torch.isnan(t_loss)  # ours: 0 (documented); torch: 0/0 = NaN


def torch_rope(x, base):
    """Rotate-half RoPE (the Hugging Face LLaMA / GPT-NeoX layout) in torch, float64 tables."""
    T, hs = x.shape[-2:]
    inv_freq = base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None]  # (T, hs/2)
    emb = torch.cat([angles, angles], dim=-1)  # (T, hs)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope(kernels, rng, dtype):
    (x,) = arrays(rng, dtype, (2, 3, 7, 8))
    compare("rope", kernels.rope_forward, kernels.rope_backward, lambda x: torch_rope(x, 10000.0), [x], dtype, rng)


def torch_attention(NH, causal, kpm, rope_base, sdpa):
    """The same attention in torch: by hand (masked_fill + softmax) or with SDPA."""
    def fn(x, Wqkv, bqkv, Wo, bo):
        B, T, C = x.shape
        hs = C // NH
        qkv = x @ Wqkv + (bqkv if bqkv is not None else 0)  # (B, T, 3C)
        q, k, v = (t.reshape(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, dim=-1))  # (B, NH, T, hs)
        if rope_base is not None:
            q, k = torch_rope(q, rope_base), torch_rope(k, rope_base)
        allowed = torch.ones(B, 1, T, T, dtype=torch.bool)
        if causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
        if kpm is not None:
            allowed = allowed & ~torch.tensor(kpm)[:, None, None, :]
        if sdpa:
            y = torch_F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            s = (q @ k.transpose(-1, -2)) / hs ** 0.5
            s = s.masked_fill(~allowed, float("-inf"))
            p = torch.softmax(s, dim=-1)
            p = torch.where(allowed.any(-1, keepdim=True), p, torch.zeros_like(p))  # fully masked rows -> 0
            y = p @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return y @ Wo + (bo if bo is not None else 0)
    return fn


ATTN = [
    # B, T, C, NH, causal, padding, bias, rope
    (2, 6, 16, 4, True, None, True, None),
    (2, 6, 16, 2, False, "right", False, None),
    (3, 5, 8, 1, True, "right", True, 10000.0),
    (1, 1, 8, 2, True, None, True, None),
    (2, 5, 16, 4, True, "left", True, 10000.0),  # fully masked row: by-hand reference only
    (2, 70, 16, 4, True, "left", True, None),  # T > 64: the fast set's query blocks; fully masked rows
]


def _kpm(kind, B, T):
    if kind is None:
        return None
    kpm = np.zeros((B, T), bool)
    if kind == "right":
        kpm[-1, -2:] = True
    else:
        kpm[0, :2] = True  # causal: queries 0 and 1 of batch 0 see only padding
    return kpm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,C,NH,causal,padding,bias,rope", ATTN)
def test_attention(kernels, rng, dtype, B, T, C, NH, causal, padding, bias, rope):
    x, Wqkv, bqkv, Wo, bo = arrays(rng, dtype, (B, T, C), (C, 3 * C), (3 * C,), (C, C), (C,))
    Wqkv, Wo = Wqkv / np.sqrt(C).astype(dtype), Wo / np.sqrt(C).astype(dtype)
    if not bias:
        bqkv = bo = None
    kpm = _kpm(padding, B, T)
    kw = dict(n_heads=NH, causal=causal, key_padding_mask=kpm, rope_base=rope)
    inputs = [x, Wqkv, bqkv, Wo, bo]
    compare("attention", kernels.attention_forward, kernels.attention_backward, torch_attention(NH, causal, kpm, rope, False),
            inputs, dtype, rng, kw)
    if padding != "left":
        compare("attention_sdpa", kernels.attention_forward, kernels.attention_backward,
                torch_attention(NH, causal, kpm, rope, True), inputs, dtype, rng, kw)


def test_attention_is_causal_sdpa(kernels, rng):
    # is_causal=True in SDPA (its own causal mask) agrees with causal=True here.
    B, T, C, NH = 2, 7, 16, 4
    x, Wqkv, Wo = arrays(rng, np.float64, (B, T, C), (C, 3 * C), (C, C))
    out, _ = kernels.attention_forward(x, Wqkv, None, Wo, None, NH)
    tx, tW, tWo = torch.tensor(x), torch.tensor(Wqkv), torch.tensor(Wo)
    q, k, v = ((tx @ tW).split(C, -1))
    q, k, v = (t.reshape(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
    y = torch_F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
    assert rel_error(out, (y @ tWo).numpy()) < 1e-12
