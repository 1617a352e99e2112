"""The GPU-only branches of the kernels, exercised on a CPU.

A few fast kernels (`minichinchilla.functional.fast`, the default kernel set of a model) take a
different route when their array module is not NumPy (chapters/12-performance.md, section 7):
`for_each_block` makes ONE block of all rows, attention takes all queries in one block (computing
the masked future instead of skipping it), and the embedding backward uses `cupyx.scatter_add`
instead of sort + `reduceat`. The reference kernels have no such branches. `tests/test_gpu.py`
checks them on a real GPU, which most machines (and CI) do not have. Here the fast modules
are handed a stand-in array module: NumPy under another name, with `cupyx.scatter_add` played by
`np.add.at`. That runs every GPU branch's logic on the CPU, so a mistake in it shows up before a GPU
is at hand; what it cannot check is CuPy itself.
"""
import sys
import types

import numpy as np
import pytest

from minichinchilla.functional import fast
from minichinchilla.gradcheck import rel_error
from minichinchilla.model import ModelConfig, TransformerLM

_FAST_MODULES = ("activations", "attention", "cross_entropy", "embedding", "norms")


class _NumpyUnderAnotherName(types.ModuleType):
    """`np.<anything>`, but `__name__` is not "numpy", so kernels take their GPU branch."""

    def __init__(self):
        super().__init__("numpy_as_gpu")

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def gpu_branches(monkeypatch):
    fake = _NumpyUnderAnotherName()
    for name in _FAST_MODULES:
        module = sys.modules[f"{fast.__name__}.{name}"]
        monkeypatch.setattr(module, "get_array_module", lambda *arrays, _fake=fake: _fake)
    monkeypatch.setitem(sys.modules, "cupyx", types.SimpleNamespace(scatter_add=np.add.at))
    return fake


def _grads(cfg, idx, targets, key_padding_mask=None):
    model = TransformerLM(cfg, seed=3)
    _, loss = model(idx, targets, key_padding_mask=key_padding_mask)
    loss.backward()
    return float(loss.data), {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("kw", [
    dict(),
    dict(norm="rmsnorm", activation="relu", tie_embeddings=False, pos_encoding="rope"),
])
def test_gpu_branches_give_the_cpu_results(request, kw):
    cfg = ModelConfig(vocab_size=37, seq_len=80, d_model=32, n_layers=2, n_heads=4, dtype="float64", **kw)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 37, (3, 80))  # T = 80 > 64: the CPU path uses two query blocks
    targets = rng.integers(0, 37, (3, 80))
    pad = np.zeros((3, 80), dtype=bool)
    pad[1, :5] = True  # left padding: fully masked rows in sequence 1
    loss_cpu, grads_cpu = _grads(cfg, idx, targets, pad)
    request.getfixturevalue("gpu_branches")
    from minichinchilla.functional.fast import attention

    assert cfg.kernels == "fast"
    assert attention._query_block(attention.get_array_module(idx), 80) == 80  # really the GPU branch
    loss_gpu, grads_gpu = _grads(cfg, idx, targets, pad)
    assert abs(loss_gpu - loss_cpu) < 1e-12
    assert grads_gpu.keys() == grads_cpu.keys()
    for name in grads_cpu:
        assert rel_error(grads_gpu[name], grads_cpu[name]) < 1e-10, name


def test_gpu_branch_of_the_embedding_backward_adds_repeated_ids(gpu_branches):
    E = np.arange(12.0).reshape(4, 3)
    idx = np.array([[1, 1, 3], [1, 0, 3]])
    dout = np.random.default_rng(0).standard_normal((2, 3, 3))
    _, cache = fast.embedding_forward(idx, E)
    dE = fast.embedding_backward(dout, cache)
    expected = np.zeros_like(E)
    np.add.at(expected, idx.reshape(-1), dout.reshape(-1, 3))
    assert np.allclose(dE, expected) and not dE[2].any()
