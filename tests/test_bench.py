"""The benchmark's own machinery and the fast paths of chapter 12: they must change speed, never
results (blocked kernels, worker threads, the fused AdamW's flat buffers, the node-based graph)."""
import gc
import json
import weakref

import numpy as np
import pytest

from minichinchilla import bench
from minichinchilla.functional import fast
from minichinchilla.functional.fast import FusedAdamW, _blocks
from minichinchilla.gradcheck import rel_error
from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.optim import AdamW, param_groups_for_decay
from minichinchilla.tensor import Tensor


@pytest.fixture
def threads():
    """Set the worker-thread count for one test (threading even small arrays); restore afterwards."""
    before, min_parallel = _blocks.num_threads(), _blocks._state["min_parallel"]
    _blocks._state["min_parallel"] = 0
    yield _blocks.set_num_threads
    _blocks.set_num_threads(before)
    _blocks._state["min_parallel"] = min_parallel


def _spec(**kw):
    spec = dict(vocab_size=32, d_model=32, n_layers=2, n_heads=4, seq_len=16, batch=3)
    spec.update(kw)
    return spec


# --------------------------------------------------------------------------- functional_step
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_functional_step_gives_autograds_gradients(dtype, tol):
    spec = _spec()
    cfg = ModelConfig(**{k: v for k, v in spec.items() if k != "batch"}, dtype=dtype)
    model = TransformerLM(cfg, seed=2)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 32, (3, 16))
    targets = rng.integers(0, 32, (3, 16))
    targets[1, 8:] = -100  # ignored positions
    _, loss = model(idx[:, :12], targets[:, :12])  # T < seq_len: only the first position rows
    loss.backward()
    ref = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    f_loss = bench.functional_step(model, idx[:, :12], targets[:, :12])
    assert abs(f_loss - float(loss.item())) < tol
    for n, p in model.named_parameters():
        assert p.grad.dtype == np.dtype(dtype)
        assert rel_error(p.grad, ref[n]) < tol, n


def test_functional_step_refuses_other_architectures():
    model = TransformerLM(ModelConfig(vocab_size=8, seq_len=4, d_model=8, n_layers=1, n_heads=2,
                                      norm="rmsnorm"))
    with pytest.raises(NotImplementedError):
        bench.functional_step(model, np.zeros((1, 4), int), np.zeros((1, 4), int))


# --------------------------------------------------------------------------- blocks and threads
def test_row_blocks_cover_every_row_once():
    for n, per in [(1, 1), (10, 3), (10, 10), (10, 64), (1000, 7)]:
        rows = np.concatenate([np.arange(n)[s] for s in _blocks.row_blocks(n, per)])
        assert np.array_equal(rows, np.arange(n))


def test_blocked_kernels_give_the_same_bits_on_one_and_two_threads(threads):
    """Blocks do not depend on the thread count and partial sums add in block order."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x, g, b = f32(600, 256), f32(256), f32(256)  # 600 KiB: three blocks
    h = f32(300, 1024)
    xa, Wqkv, bqkv, Wo, bo = f32(4, 40, 32), f32(32, 96) * 0.2, f32(96), f32(32, 32), f32(32)
    kpm = np.zeros((4, 40), bool)
    kpm[1, -7:] = True

    def run():
        out = []
        y, c = fast.layernorm_forward(x, g, b)
        out += [y, *fast.layernorm_backward(y * 0.5, c)]
        y, c = fast.rmsnorm_forward(x, g)
        out += [y, *fast.rmsnorm_backward(y * 0.5, c)]
        y, c = fast.gelu_forward(h)
        out += [y, fast.gelu_backward(h, c)]
        for kw in (dict(), dict(key_padding_mask=kpm, causal=False), dict(rope_base=10000.0)):
            y, c = fast.attention_forward(xa, Wqkv, bqkv, Wo, bo, 4, **kw)
            out += [y, *fast.attention_backward(y, c)]
        return out

    threads(1)
    one = run()
    threads(2)
    two = run()
    for a, c in zip(one, two):
        assert a.dtype == np.float32 and np.array_equal(a, c)


def test_set_num_threads_rejects_zero(threads):
    with pytest.raises(ValueError):
        threads(0)


# --------------------------------------------------------------------------- AdamW
def _twin_models(dtype="float32"):
    cfg = ModelConfig(vocab_size=32, seq_len=8, d_model=16, n_layers=2, n_heads=2, dtype=dtype)
    return TransformerLM(cfg, seed=1), TransformerLM(cfg, seed=1)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_adamw_is_bitwise_the_per_parameter_rule_and_rebinds_nothing(threads, n_threads):
    threads(n_threads)
    fused_model, plain_model = _twin_models()
    opt = FusedAdamW(param_groups_for_decay(fused_model, 0.1), lr=1e-2, betas=(0.9, 0.95))
    ref = AdamW(param_groups_for_decay(plain_model, 0.1), lr=1e-2, betas=(0.9, 0.95))
    arrays = [p.data for p in fused_model.parameters()]
    rng = np.random.default_rng(0)
    for _ in range(4):
        for p, q in zip(fused_model.parameters(), plain_model.parameters()):
            p.grad = q.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
        ref.step()
    assert opt._flat  # the fused path really ran
    for p, q, a in zip(fused_model.parameters(), plain_model.parameters(), arrays):
        assert p.data is a and not np.shares_memory(p.data, opt._flat[0]["p"])  # its own array, updated in place
        assert np.array_equal(p.data, q.data)
        assert np.array_equal(opt.state[id(p)]["m"], ref.state[id(q)]["m"])


def test_fused_adamw_survives_replaced_arrays_and_missing_grads():
    fused_model, plain_model = _twin_models()
    opt = FusedAdamW(param_groups_for_decay(fused_model, 0.1), lr=1e-2)
    ref = AdamW(param_groups_for_decay(plain_model, 0.1), lr=1e-2)
    rng = np.random.default_rng(1)

    def grads(skip=None):
        for i, (p, q) in enumerate(zip(fused_model.parameters(), plain_model.parameters())):
            g = None if i == skip else rng.standard_normal(p.shape).astype(np.float32)
            p.grad = q.grad = g

    grads()
    opt.step()
    ref.step()
    # A checkpoint restore replaces every p.data and the optimiser state: the next step relinks.
    fused_model.load_state_dict(plain_model.state_dict())
    opt.load_state_dict(ref.state_dict())
    for skip in (None, 0, None):  # a parameter without a gradient: PyTorch skips it entirely
        grads(skip)
        opt.step()
        ref.step()
    for p, q in zip(fused_model.parameters(), plain_model.parameters()):
        assert np.array_equal(p.data, q.data)
    assert opt.state_dict().keys() == ref.state_dict().keys()


# --------------------------------------------------------------------------- engine memory
def test_intermediate_arrays_are_freed_when_the_model_drops_them():
    """The graph keeps nodes, not outputs: an array no backward needs dies with its Tensor."""
    x = Tensor(np.ones((64, 64)), requires_grad=True)
    y = x * 3.0  # mul's backward keeps x's array and the constant, not y's
    z = y + 1.0  # add's backward keeps only shapes
    watch = weakref.ref(z.data)
    loss = (z * z).sum()  # this mul keeps z's array: it is still needed
    del y, z
    gc.collect()
    assert watch() is not None
    w = x + 2.0
    watch_w = weakref.ref(w.data)
    loss2 = (w + 1.0).sum()
    del w
    gc.collect()
    assert watch_w() is None  # nothing in loss2's graph needs w's values
    (loss + loss2).backward()
    np.testing.assert_allclose(x.grad, 2 * 4.0 * 3.0 + 1.0)


# --------------------------------------------------------------------------- sweep estimate
def test_sweep_estimate_interpolates_and_scales_with_workers():
    from minichinchilla.scaling.sweep import default_grid

    rows = [dict(params=1e4, flops_per_step=1e9, ours=dict(cpu_ms_median=1000.0, ms_median=2000.0)),
            dict(params=1e6, flops_per_step=1e11, ours=dict(cpu_ms_median=1000.0, ms_median=2000.0))]
    specs = default_grid()
    one = bench.sweep_estimate(specs, rows, workers=1)
    two = bench.sweep_estimate(specs, rows, workers=2)
    wall = bench.sweep_estimate(specs, rows, workers=1, use="wall")
    assert one["runs"] == len(specs) == len(one["run_seconds"])
    assert two["total_hours"] == pytest.approx(one["total_hours"] / 2)
    assert wall["total_hours"] == pytest.approx(2 * one["total_hours"])
    assert one["runs_per_hour"] == pytest.approx(len(specs) / one["total_hours"])
    with pytest.raises(ValueError):
        bench.sweep_estimate(specs, [])
    # Finished runs' records (results/*.jsonl) work too: N parameters, C training FLOPs each.
    records = [dict(N=1e4, C=1e12), dict(N=1e6, C=2e12)]
    est = bench.sweep_estimate(records, rows, workers=1)
    assert est["run_seconds"] == pytest.approx([1e12 / 1e9, 2e12 / 1e11])  # at 1 and 100 GFLOP/s


# --------------------------------------------------------------------------- command line
def test_cli_rejects_unknown_config(capsys):
    assert bench.main(["--configs", "nope"]) == 2
    assert "unknown config" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--threads", "one"], "--threads must be comma-separated integers"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--runs", "0"], "must be at least 1"),
    (["--json", "/no/such/folder/b.json"], "does not exist"),
])
def test_cli_rejects_bad_input_before_timing_anything(argv, message, capsys):
    assert bench.main(["--configs", "s10k"] + argv) == 2
    out, err = capsys.readouterr()
    assert message in err and "Traceback" not in err
    assert "machine:" not in out  # nothing was measured


def test_cli_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = bench.main(["--configs", "s10k", "--threads", "1", "--warmup", "1", "--repeats", "2",
                     "--no-torch", "--overhead", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    row = data["results"][0]
    assert row["config"] == "s10k" and row["threads"] == 1
    assert len({row["ours"]["first_loss"], row["functional"]["first_loss"]}) == 1
    for key in ("ms_median", "cpu_ms_median", "tokens_per_s", "gflops", "mfu", "peak_mib"):
        assert key in row["ours"]
    assert "load_average" in data["environment"] and "engine_overhead" in row
    assert row["reference"]["first_loss"] == pytest.approx(row["ours"]["first_loss"], rel=1e-5)
    printed = capsys.readouterr().out
    assert "autograd engine over functional pairs" in printed and "reference" in printed


@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_profile_step_accounts_for_the_whole_step(kernels):
    prof = bench.profile_step(_spec(), steps=1, kernels=kernels)
    parts = sum(v for k, v in prof.items() if k != "total")
    assert parts == pytest.approx(prof["total"])
    for group in ("attention layer (incl. its two linears)", "feed-forward (two linears + GELU)", "LayerNorm",
                  "matmul: tied logits", "cross-entropy", "embedding", "AdamW"):
        assert prof[group] > 0, group


def test_bench_patches_no_module():
    """No attribute of another module or class is replaced by the engine or the benchmark (profiling
    points a model at a timed kernel set instead)."""
    import ast
    import pathlib

    package = pathlib.Path(bench.__file__).parent
    engine = [package / f"{name}.py" for name in ("bench", "tensor", "optim", "backend", "composed", "nn", "model")]
    for path in engine + sorted((package / "functional").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
                target = node.args[0]
                assert isinstance(target, ast.Name) and target.id == "self", f"{path}:{node.lineno} setattr on {ast.dump(target)}"


def test_cli_gpu_without_cupy_is_one_error_line(capsys):
    from minichinchilla.backend import cupy_available

    if cupy_available():
        pytest.skip("CuPy runs here")
    assert bench.main(["--configs", "s10k", "--device", "gpu"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error:") and "--device gpu" in err and len(err.strip().splitlines()) == 1
    assert "machine:" not in out


def _gemm_shapes_module():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gemm_shapes.py"
    spec = importlib.util.spec_from_file_location("gemm_shapes", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("config", ["a", "b"])
def test_gemm_shapes_are_exactly_the_steps_linear_layer_products(config):
    """benchmarks/gemm_shapes.py times the step's products: their FLOPs must be 3x the forward FLOPs of
    the QKV, attention-output, FFN and logits products in the scaling module's count (App. F)."""
    from minichinchilla.scaling.flops import _forward_components

    g = _gemm_shapes_module()
    spec = g.CONFIGS[config]
    C = spec["d_model"]
    parts = _forward_components(spec["n_layers"], C, 4 * C, spec["n_heads"], C // spec["n_heads"],
                                spec["seq_len"], spec["vocab_size"])
    linear = sum(parts[k] for k in ("qkv", "attn_project", "dense", "logits")) * spec["batch"]
    timed = sum(2 * M * K * N * calls for *_, M, K, N, _, _, calls in g.products(spec))
    assert timed == 3 * linear


def test_gemm_shapes_rejects_unknown_config(capsys):
    assert _gemm_shapes_module().main(["--configs", "a,zz"]) == 2
    assert "unknown config(s) ['zz']" in capsys.readouterr().err


@pytest.mark.torch
def test_gemm_shapes_smoke(tmp_path):
    pytest.importorskip("torch")
    g = _gemm_shapes_module()
    rows = g.measure(dict(vocab_size=16, d_model=8, n_layers=1, seq_len=4, batch=2), 1, 0.01, 1)
    assert set(rows) == {"numpy", "torch"}
    assert all(len(ms) == 15 and all(t > 0 for t in ms) for ms in rows.values())
