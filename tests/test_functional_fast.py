"""The fast kernel set (`minichinchilla.functional.fast`) against the reference pairs.

Every fast pair must compute what its reference computes: the same output and the same
gradients (float64, to 1e-10), on shapes that are not multiples of the block sizes (64 queries,
~256 KiB of rows), with padding masks, RoPE and fully masked query rows. And the reference
modules must stay the readable version: short bodies, no threads, no `out=` buffers, no imports
of the fast kernels.
"""
import ast
import copy
import pathlib
import re

import numpy as np
import pytest

import minichinchilla.functional as reference
from minichinchilla.functional import fast
from minichinchilla.functional.fast import _blocks

TOL = 1e-10
ROOT = pathlib.Path(__file__).resolve().parents[1]
FUNCTIONAL_DIR = ROOT / "minichinchilla" / "functional"
PAIRS = ["linear", "embedding", "softmax", "cross_entropy", "layernorm", "rmsnorm", "relu", "gelu", "ffn",
         "attention", "rope"]


def _rel(a, b):
    """Largest difference relative to the largest entry (an entry that is 0 in one set and 1e-18
    in the other, a rounding of a sum of terms that cancel, is not a disagreement)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _agree(name, inputs, kwargs=None, rng=None, dout=None):
    """Run the reference and the fast pair on the same inputs and a random dout; compare all."""
    kwargs = kwargs or {}
    fwd_r, bwd_r = getattr(reference, f"{name}_forward"), getattr(reference, f"{name}_backward")
    fwd_f, bwd_f = getattr(fast, f"{name}_forward"), getattr(fast, f"{name}_backward")
    saved = copy.deepcopy(inputs)
    out_r, cache_r = fwd_r(*inputs, **kwargs)
    out_f, cache_f = fwd_f(*inputs, **kwargs)
    assert np.asarray(out_f).dtype == np.float64
    assert _rel(out_f, out_r) < TOL, f"{name} forward differs by {_rel(out_f, out_r):.1e}"
    if dout is None:
        dout = rng.standard_normal(np.shape(out_r))
    dout_saved = np.copy(dout)
    grads_r, grads_f = bwd_r(dout, cache_r), bwd_f(dout, cache_f)
    grads_r = grads_r if isinstance(grads_r, tuple) else (grads_r,)
    grads_f = grads_f if isinstance(grads_f, tuple) else (grads_f,)
    assert len(grads_r) == len(grads_f)
    for i, (gr, gf) in enumerate(zip(grads_r, grads_f)):
        assert (gr is None) == (gf is None), f"{name} gradient {i}: None in one set only"
        if gr is not None:
            assert gf.dtype == np.float64 and gf.shape == gr.shape
            assert _rel(gf, gr) < TOL, f"{name} gradient {i} differs by {_rel(gf, gr):.1e}"
    for a, b in zip(inputs, saved):
        assert a is None or np.array_equal(a, b), f"{name} modified an input"
    assert np.array_equal(dout, dout_saved), f"{name} modified dout"


def test_fast_is_a_complete_kernel_set_with_fast_attention_norms_and_cross_entropy():
    for name in PAIRS:
        for part in ("forward", "backward"):
            assert callable(getattr(fast, f"{name}_{part}"))
            # the reference names are the reference's own, never the fast ones
            assert getattr(reference, f"{name}_{part}").__module__.startswith("minichinchilla.functional.")
            assert ".fast" not in getattr(reference, f"{name}_{part}").__module__
    for name in ("attention_forward", "attention_backward", "attention_step", "attention_weights",
                 "layernorm_forward", "layernorm_backward", "cross_entropy_forward", "cross_entropy_backward"):
        assert getattr(fast, name).__module__.startswith("minichinchilla.functional.fast."), name


@pytest.mark.parametrize("shape,d_out", [((3, 5), 7), ((2, 67, 9), 11)])
def test_linear(rng, shape, d_out):
    x, W = rng.standard_normal(shape), rng.standard_normal((shape[-1], d_out))
    _agree("linear", [x, W, rng.standard_normal(d_out)], rng=rng)
    _agree("linear", [x, W, None], rng=rng)


def test_embedding_repeated_and_unused_ids(rng):
    E = rng.standard_normal((13, 5))
    idx = rng.integers(0, 7, (3, 41))  # ids 7..12 never appear; the others many times
    _agree("embedding", [idx, E], rng=rng)


@pytest.mark.parametrize("shape", [(3, 5), (70, 257), (2, 37, 130)])
def test_norms_and_activations(rng, shape):
    x = rng.standard_normal(shape) * 3 + 0.5
    C = shape[-1]
    _agree("layernorm", [x, rng.standard_normal(C), rng.standard_normal(C)], rng=rng)
    _agree("rmsnorm", [x, rng.standard_normal(C)], rng=rng)
    _agree("gelu", [x], rng=rng)
    _agree("relu", [x], rng=rng)
    _agree("softmax", [x], rng=rng)


def test_norms_many_rows_run_in_several_blocks_on_threads(rng, monkeypatch):
    """Enough rows for many ~256 KiB blocks, and worker threads forced on: the partial sums of
    dgamma are added in block order, so the result still equals the reference."""
    monkeypatch.setitem(_blocks._state, "min_parallel", 0)
    before = _blocks.num_threads()
    _blocks.set_num_threads(3)
    try:
        x = rng.standard_normal((1500, 67))  # 1500 * 67 * 8 bytes = ~785 KiB: 4 blocks
        _agree("layernorm", [x, rng.standard_normal(67), rng.standard_normal(67)], rng=rng)
        _agree("rmsnorm", [x, rng.standard_normal(67)], rng=rng)
        _agree("gelu", [x], rng=rng)
    finally:
        _blocks.set_num_threads(before)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_ffn(rng, activation):
    x = rng.standard_normal((2, 19, 6))
    W1, W2 = rng.standard_normal((6, 23)), rng.standard_normal((23, 6))
    _agree("ffn", [x, W1, rng.standard_normal(23), W2, rng.standard_normal(6)], {"activation": activation}, rng)


def test_rope(rng):
    _agree("rope", [rng.standard_normal((2, 3, 71, 8))], {"base": 100.0, "offset": 5}, rng)


@pytest.mark.parametrize("shape", [(4, 7), (3, 70, 130)])
def test_cross_entropy_with_ignored_targets(rng, shape):
    logits = rng.standard_normal(shape) * 4
    targets = rng.integers(0, shape[-1], shape[:-1])
    targets.reshape(-1)[::3] = -100
    _agree("cross_entropy", [logits, targets], rng=rng, dout=np.asarray(rng.standard_normal()))
    targets[...] = -100  # every target ignored: loss 0 and zero gradient in both
    _agree("cross_entropy", [logits, targets], rng=rng, dout=np.asarray(1.3))


@pytest.mark.parametrize("kernels", [reference, fast], ids=["reference", "fast"])
def test_cross_entropy_ignores_a_nan_in_an_ignored_row(kernels):
    """A NaN or inf in an ignored row (a padded position of a diverged model) must not touch the
    loss or the gradient of the other rows, as PyTorch's ignore_index behaves."""
    logits = np.random.default_rng(0).standard_normal((4, 5))
    targets = np.array([1, -100, 3, -100])
    clean_loss, clean_cache = kernels.cross_entropy_forward(logits, targets)
    clean_grad = kernels.cross_entropy_backward(1.0, clean_cache)
    logits[1, 2], logits[3] = np.nan, np.inf
    loss, cache = kernels.cross_entropy_forward(logits, targets)
    grad = kernels.cross_entropy_backward(1.0, cache)
    assert np.isfinite(loss) and loss == clean_loss
    assert np.array_equal(grad, clean_grad) and not grad[[1, 3]].any()


ATTENTION_CASES = [
    # B, T, C, NH, causal, padding, rope: T not a multiple of the 64-query block
    (2, 70, 12, 3, True, None, None),
    (2, 131, 8, 2, True, "left", None),
    (3, 67, 16, 4, False, "right", 10000.0),
    (2, 70, 8, 2, True, "all", 10000.0),  # a whole sequence of padding: every row fully masked
    (1, 1, 4, 1, True, None, None),
]


def _padding(kind, B, T):
    if kind is None:
        return None
    pad = np.zeros((B, T), dtype=bool)
    if kind == "left":
        pad[0, :5] = True  # causal: queries 0..4 of sequence 0 see only padding, fully masked
    elif kind == "right":
        pad[-1, T - 7:] = True
    else:
        pad[-1, :] = True
    return pad


@pytest.mark.parametrize("B,T,C,NH,causal,padding,rope", ATTENTION_CASES)
def test_attention_forward_backward_weights_and_step(rng, B, T, C, NH, causal, padding, rope):
    x = rng.standard_normal((B, T, C))
    Wqkv, Wo = rng.standard_normal((C, 3 * C)) / np.sqrt(C), rng.standard_normal((C, C)) / np.sqrt(C)
    bqkv, bo = rng.standard_normal(3 * C) * 0.1, rng.standard_normal(C) * 0.1
    pad = _padding(padding, B, T)
    kw = dict(n_heads=NH, causal=causal, key_padding_mask=pad, rope_base=rope)
    _agree("attention", [x, Wqkv, bqkv, Wo, bo], kw, rng)
    _agree("attention", [x, Wqkv, None, Wo, None], kw, rng)
    P_r = reference.attention_weights(x, Wqkv, bqkv, NH, causal=causal, key_padding_mask=pad, rope_base=rope)
    P_f = fast.attention_weights(x, Wqkv, bqkv, NH, causal=causal, key_padding_mask=pad, rope_base=rope)
    assert _rel(P_f, P_r) < TOL
    if pad is not None:  # fully masked query rows: zero weights, zero output, in both sets
        out_r, _ = reference.attention_forward(x, Wqkv, None, Wo, None, **kw)
        out_f, _ = fast.attention_forward(x, Wqkv, None, Wo, None, **kw)
        empty = pad[:, None, None, :].repeat(T, axis=2)  # (B, 1, T, T) the padding, per query
        if causal:
            empty = empty | np.triu(np.ones((T, T), dtype=bool), k=1)
        rows = empty.all(axis=-1)[:, 0]  # (B, T) queries that see no key
        assert rows.any() or padding == "right"
        for out, P in ((out_r, P_r), (out_f, P_f)):
            assert not out[rows].any() and not P.transpose(0, 2, 1, 3)[rows].any()
    if causal and pad is None:  # the KV-cached step: the prompt, then two tokens one at a time
        T0 = max(1, T - 2)
        outs = []
        for kernels in (reference, fast):
            out, cache = kernels.attention_step(x[:, :T0], Wqkv, bqkv, Wo, bo, NH, rope_base=rope)
            steps = [out]
            for t in range(T0, T):
                out, cache = kernels.attention_step(x[:, t:t + 1], Wqkv, bqkv, Wo, bo, NH, kv_cache=cache,
                                                    rope_base=rope)
                steps.append(out)
            outs.append(np.concatenate(steps, axis=1))
        full, _ = reference.attention_forward(x, Wqkv, bqkv, Wo, bo, NH, rope_base=rope)
        assert _rel(outs[0], full) < TOL and _rel(outs[1], full) < TOL


# ---- the reference stays the readable version ------------------------------------------------

REFERENCE_FILES = sorted(p for p in FUNCTIONAL_DIR.glob("*.py") if p.name != "__init__.py")
MAX_LINES = 40


def _code_lines(fn):
    """Lines of code of a function's body: no docstring, no comment-only or blank lines."""
    body = fn.body[1:] if (fn.body and isinstance(fn.body[0], ast.Expr)
                           and isinstance(getattr(fn.body[0], "value", None), ast.Constant)) else fn.body
    lines = set()
    for node in body:
        for sub in ast.walk(node):
            if hasattr(sub, "lineno"):
                lines.update(range(sub.lineno, getattr(sub, "end_lineno", sub.lineno) + 1))
    return lines


def _called_private_helpers(fn, functions):
    """Same-module private functions a function calls, transitively (validators exempt)."""
    seen, todo = set(), [fn]
    while todo:
        for node in ast.walk(todo.pop()):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                if (name.startswith("_") and name in functions and name not in seen
                        and not name.startswith(("_check", "_validate"))):
                    seen.add(name)
                    todo.append(functions[name])
    return seen


def test_each_reference_pair_fits_one_screen():
    counted = 0
    for path in REFERENCE_FILES:
        tree = ast.parse(path.read_text())
        source = path.read_text().splitlines()
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        for name, fn in functions.items():
            if not re.fullmatch(r"\w+_(forward|backward)", name):
                continue
            lines = set()
            for part in [name, *_called_private_helpers(fn, functions)]:
                for i in _code_lines(functions[part]):
                    text = source[i - 1].strip()
                    if text and not text.startswith("#"):
                        lines.add((part, i))
            assert len(lines) <= MAX_LINES, f"{path.name}: {name} has {len(lines)} lines of code"
            counted += 1
    assert counted >= 22  # 11 pairs


def test_reference_modules_have_no_threads_blocks_out_buffers_or_fast_imports():
    banned_imports = ("threading", "concurrent", "threadpoolctl", "_blocks", "fast", "ctypes")
    for path in REFERENCE_FILES + [FUNCTIONAL_DIR / "__init__.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.keyword):
                assert node.arg != "out", f"{path.name}:{node.lineno} uses an out= buffer"
                continue
            else:
                continue
            if path.name == "__init__.py" and names == ["", "fast"]:
                continue  # `from . import fast`: the package exposes its fast twin, nothing more
            for n in names:
                assert not any(part in banned_imports for part in re.split(r"[.]", n)), \
                    f"{path.name}:{node.lineno} imports {n}"


def test_every_fast_module_names_the_reference_it_accelerates():
    for path in sorted((FUNCTIONAL_DIR / "fast").glob("*.py")):
        if path.name in ("__init__.py", "_blocks.py"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        reference_path = "minichinchilla/optim.py" if path.name == "optim.py" else f"minichinchilla/functional/{path.name}"
        assert reference_path in doc, f"fast/{path.name} does not name its reference"
        assert "change" in doc.lower() or "nothing of its own" in doc.lower(), f"fast/{path.name} does not say what it changes"
