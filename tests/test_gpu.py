"""The whole model on a GPU through CuPy: the same code, the same numbers (chapters/12-performance.md).

Skipped unless CuPy really runs a kernel here (`minichinchilla.backend.cupy_available`). Run them
with ``pytest -m gpu tests/`` or ``bash scripts/gpu_check.sh OUT_DIR``.
"""
import numpy as np
import pytest

from minichinchilla import backend
from minichinchilla.gradcheck import rel_error
from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.optim import AdamW, param_groups_for_decay

pytestmark = pytest.mark.gpu

CONFIGS = [
    dict(),
    dict(norm="rmsnorm", activation="relu", tie_embeddings=False, pos_encoding="rope"),
]


def _config(**kw):
    base = dict(vocab_size=64, seq_len=32, d_model=64, n_layers=2, n_heads=4)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def on_cupy():
    """Switch new arrays to CuPy for one test, and back to NumPy afterwards."""
    if not backend.cupy_available():
        pytest.skip("needs a CUDA GPU where CuPy really runs")
    previous = backend.backend_name()
    backend.set_backend("cupy")
    try:
        yield
    finally:
        backend.set_backend(previous)


def _batch(cfg, B=4, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cfg.vocab_size, (B, cfg.seq_len))
    targets = rng.integers(0, cfg.vocab_size, (B, cfg.seq_len))
    targets[0, :3] = -100  # a few ignored positions
    return idx, targets


def _run(cfg, idx, targets, key_padding_mask=None):
    """Logits, loss and every parameter gradient, as NumPy arrays, on the current backend."""
    model = TransformerLM(cfg, seed=3)  # initialised with NumPy: the same weights on both devices
    logits, loss = model(backend.asarray(idx), backend.asarray(targets),
                         key_padding_mask=None if key_padding_mask is None else backend.asarray(key_padding_mask))
    loss.backward()
    grads = {name: backend.to_numpy(p.grad) for name, p in model.named_parameters()}
    return backend.to_numpy(logits.data), float(loss.item()), grads, model


@pytest.mark.parametrize("kernels", ["fast", "reference"])
@pytest.mark.parametrize("kw", CONFIGS)
def test_model_on_cupy_matches_numpy(on_cupy, kw, kernels):
    """Both kernel sets run on CuPy through the same `xp` seam."""
    import cupy

    cfg = _config(**kw, kernels=kernels)
    idx, targets = _batch(cfg)
    mask = np.zeros(idx.shape, dtype=bool)
    mask[1, -5:] = True  # padding keys in one sequence
    backend.set_backend("numpy")
    ref_logits, ref_loss, ref_grads, _ = _run(cfg, idx, targets, mask)
    backend.set_backend("cupy")
    logits, loss, grads, model = _run(cfg, idx, targets, mask)
    assert all(isinstance(p.data, cupy.ndarray) for p in model.parameters())
    assert logits.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    # float32 on two devices: different summation orders, so agreement to ~1e-5, not bitwise.
    assert rel_error(logits, ref_logits) < 1e-4
    assert abs(loss - ref_loss) < 1e-4 * abs(ref_loss)
    for name, g in grads.items():
        assert rel_error(g, ref_grads[name]) < 1e-3, name


def test_optimizer_and_functional_step_on_cupy(on_cupy):
    """AdamW, the fused AdamW and the engine-free step of the benchmark run on CuPy too."""
    import cupy

    from minichinchilla.bench import functional_step
    from minichinchilla.functional.fast import FusedAdamW

    cfg = _config()
    idx, targets = _batch(cfg)
    model = TransformerLM(cfg, seed=3)
    g_idx, g_targets = backend.asarray(idx), backend.asarray(targets)
    _, loss = model(g_idx, g_targets)
    loss.backward()
    autograd = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    f_loss = functional_step(model, g_idx, g_targets)
    assert abs(f_loss - float(loss.item())) < 1e-6
    for n, p in model.named_parameters():
        assert isinstance(p.grad, cupy.ndarray)
        assert rel_error(backend.to_numpy(p.grad), backend.to_numpy(autograd[n])) < 1e-5, n
    twin = TransformerLM(cfg, seed=3)
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = p.grad
    AdamW(param_groups_for_decay(model, 0.1), lr=1e-3).step()
    FusedAdamW(param_groups_for_decay(twin, 0.1), lr=1e-3).step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert isinstance(p.data, cupy.ndarray) and isinstance(q.data, cupy.ndarray)
        assert bool((p.data == q.data).all())


def test_short_training_run_on_cupy_loss_falls(on_cupy):
    cfg = _config()
    rng = np.random.default_rng(1)
    # A learnable language: each sequence counts upwards modulo the vocabulary.
    starts = rng.integers(0, cfg.vocab_size, (8, 1))
    seq = (starts + np.arange(cfg.seq_len + 1)) % cfg.vocab_size
    x, y = backend.asarray(seq[:, :-1]), backend.asarray(seq[:, 1:])
    model = TransformerLM(cfg, seed=0)
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=3e-3)
    losses = []
    for _ in range(40):
        _, loss = model(x, y)
        model.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses[::8]
