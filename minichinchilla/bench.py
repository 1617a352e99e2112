"""`python -m minichinchilla bench`: time a full training step against PyTorch, side by side.

A step is forward + backward + AdamW + zero_grad of the project's own TransformerLM. Each
measurement runs in a fresh child process, so the BLAS thread count is set before NumPy loads
and the peak memory of one framework is not mixed with the other's. For every config and thread
count we report, for minichinchilla (its default kernels, `minichinchilla.functional.fast`, and the
default `AdamW`), for the same model on the reference kernels (`ModelConfig(kernels="reference")`,
reported for the record; ``--no-reference`` skips it) and for the identical model in PyTorch eager
(same weights, so the first losses match):

    ms/step (median of the repeats, with min and max), tokens/s, model FLOPs per step (from
    minichinchilla.scaling.model_flops), achieved GFLOP/s, MFU against the float32 GEMM peak
    measured on this machine with the same thread count, and the step's peak memory.

Results are printed as a table and written as JSON (``--json PATH``). This is a benchmark, not
a test: nothing here asserts a time.

Besides wall-clock time every child records the CPU time of each step (``time.process_time``):
on a shared, busy machine the wall clock of a 1-thread run measures the neighbours as much as
the code, its CPU time much less so. Two extra measurements:

* ``--overhead``: the same step written straight against the functional pairs
  (`functional_step`, no autograd graph) — the difference is what the engine costs;
* ``--small``: tokens/s and FLOP/s of the small models a scaling sweep trains (1 thread each,
  one process per core), and from them `sweep_estimate`: how long a sweep takes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from .atomic import write_text_atomically
from .cli import run_command

CONFIGS = {
    "a": dict(vocab_size=256, d_model=128, n_layers=4, n_heads=4, seq_len=128, batch=16),
    "b": dict(vocab_size=512, d_model=256, n_layers=6, n_heads=8, seq_len=256, batch=8),
    "b64": dict(vocab_size=512, d_model=256, n_layers=6, n_heads=8, seq_len=256, batch=64),
}
# The small models a scaling sweep trains (minichinchilla.scaling.sweep.DEFAULT_SHAPES), about
# 10k, 100k and 1M parameters; measured on 1 thread, as the sweep runs one process per core.
SMALL_CONFIGS = {
    "s10k": dict(vocab_size=64, d_model=16, n_layers=2, n_heads=2, seq_len=32, batch=16),
    "s100k": dict(vocab_size=64, d_model=48, n_layers=3, n_heads=4, seq_len=32, batch=32),
    "s1m": dict(vocab_size=64, d_model=128, n_layers=5, n_heads=4, seq_len=64, batch=32),
}
ALL_CONFIGS = {**CONFIGS, **SMALL_CONFIGS}


# ---- child side: one measurement in a clean process --------------------------------------

def _reset_peak_rss():
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _model_and_batch(spec, seed=0, kernels="fast"):
    import numpy as np

    from .model import ModelConfig, TransformerLM

    shape = {k: v for k, v in spec.items() if k != "batch"}
    cfg = ModelConfig(**shape, kernels=kernels)
    model = TransformerLM(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cfg.vocab_size, (spec["batch"], cfg.seq_len))
    targets = rng.integers(0, cfg.vocab_size, (spec["batch"], cfg.seq_len))
    return cfg, model, idx, targets


def functional_step(model, idx, targets):
    """Forward + backward of `model` (learned positions, LayerNorm, tied embeddings) written
    directly against the hand-derived pairs of the model's kernel set (`ModelConfig.kernels`): no
    Tensor, no graph.

    It does exactly the work of ``model(idx, targets)[1].backward()`` and leaves the same
    gradients in every ``p.grad``; the time difference between the two is the autograd
    engine's overhead (chapters/12-performance.md). Returns the loss as a float.
    """
    from .tensor import kernel_set

    c = model.config
    pairs = kernel_set(c.kernels)  # minichinchilla.functional or minichinchilla.functional.fast
    if c.pos_encoding != "learned" or c.norm != "layernorm" or not c.tie_embeddings:
        raise NotImplementedError("functional_step covers learned positions, LayerNorm and tied embeddings")
    B, T = idx.shape
    E, pos = model.tok_emb.weight, model.pos_emb
    x, c_emb = pairs.embedding_forward(idx, E.data)  # (B, T, C)
    x = x + pos.data[:T]  # (B, T, C)
    caches = []
    for blk in model.blocks:
        h, c1 = pairs.layernorm_forward(x, blk.norm1.weight.data, blk.norm1.bias.data)
        a, c2 = pairs.attention_forward(h, blk.attn.qkv_weight.data, blk.attn.qkv_bias.data,
                                    blk.attn.proj_weight.data, blk.attn.proj_bias.data, c.n_heads)
        x = x + a  # (B, T, C)
        h, c3 = pairs.layernorm_forward(x, blk.norm2.weight.data, blk.norm2.bias.data)
        f, c4 = pairs.ffn_forward(h, blk.ffn.up_weight.data, blk.ffn.up_bias.data,
                              blk.ffn.down_weight.data, blk.ffn.down_bias.data, activation=c.activation)
        x = x + f  # (B, T, C)
        caches.append((c1, c2, c3, c4))
    h, c_f = pairs.layernorm_forward(x, model.norm_f.weight.data, model.norm_f.bias.data)
    logits, c_out = pairs.linear_forward(h, E.data.T)  # (B, T, V)
    loss, c_ce = pairs.cross_entropy_forward(logits, targets)

    dlogits = pairs.cross_entropy_backward(1.0, c_ce)  # (B, T, V)
    dh, dET, _ = pairs.linear_backward(dlogits, c_out)  # (B, T, C), (C, V)
    dx, model.norm_f.weight.grad, model.norm_f.bias.grad = pairs.layernorm_backward(dh, c_f)
    for blk, (c1, c2, c3, c4) in zip(reversed(model.blocks), reversed(caches)):
        ffn = blk.ffn
        dh, ffn.up_weight.grad, ffn.up_bias.grad, ffn.down_weight.grad, ffn.down_bias.grad = \
            pairs.ffn_backward(dx, c4)
        dh, blk.norm2.weight.grad, blk.norm2.bias.grad = pairs.layernorm_backward(dh, c3)
        dx = dx + dh  # the residual: both paths' gradients add (chapters/04-ffn-norm-residual.md, eq. 4.11)
        attn = blk.attn
        dh, attn.qkv_weight.grad, attn.qkv_bias.grad, attn.proj_weight.grad, attn.proj_bias.grad = \
            pairs.attention_backward(dx, c2)
        dh, blk.norm1.weight.grad, blk.norm1.bias.grad = pairs.layernorm_backward(dh, c1)
        dx = dx + dh
    dpos = pos.data * 0  # (L, C) rows T.. get no gradient
    dpos[:T] = dx.sum(axis=0)  # (T, C) the position table is shared by the batch
    pos.grad = dpos
    E.grad = pairs.embedding_backward(dx, c_emb) + dET.T  # tied: lookup and logits both use E
    return float(loss)


def _child_ours(spec, warmup, repeats, device, mode="autograd", kernels="fast"):
    from .backend import asarray, get_backend, set_backend
    from .optim import AdamW, param_groups_for_decay

    if device == "gpu":
        set_backend("cupy")
    cfg, model, idx, targets = _model_and_batch(spec, kernels=kernels)
    idx, targets = asarray(idx), asarray(targets)
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-4)  # the AdamW a user gets by default
    xp = get_backend()
    sync = (lambda: xp.cuda.Device().synchronize()) if device == "gpu" else (lambda: None)

    def step():
        if mode == "functional":
            loss = functional_step(model, idx, targets)
        else:
            _, loss = model(idx, targets)
            loss.backward()
            loss = loss.item()
        opt.step()
        opt.zero_grad()
        return loss

    return _measure(step, warmup, repeats, sync, device)


def _measure(step, warmup, repeats, sync, device):
    """Run `step` warmup + repeats times; wall and CPU seconds per step, first loss, peak memory."""
    # Peak memory of a step = highest RSS while stepping - RSS with model and batch ready.
    # Measured from before the FIRST step, so allocator caches filled by it count for both.
    peak_ok = _reset_peak_rss()
    base = _rss_kib("VmRSS")
    first = float(step())
    for _ in range(warmup - 1):
        step()
    sync()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = _rss_kib("VmHWM") - base if peak_ok and device == "cpu" else None
    return dict(times=times, cpu_times=cpu, first_loss=first, peak_mib=None if peak is None else peak / 1024)


def _child_torch(spec, warmup, repeats, device, threads):
    import torch

    torch.set_num_threads(threads)
    cfg, model, idx, targets = _model_and_batch(spec)
    dev = "cuda" if device == "gpu" else "cpu"
    ref = _torch_ref(model, dev)
    del model
    t_idx, t_tgt = torch.tensor(idx, device=dev), torch.tensor(targets, device=dev)
    groups = [{"params": [p for p in ref.parameters() if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in ref.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4)
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)

    def step():
        _, loss = ref(t_idx, t_tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return _measure(step, warmup, repeats, sync, device)


def _torch_ref(model, dev):
    from .reference_torch import torch_model_from

    return torch_model_from(model, device=dev)


def _child_gemm_peak(device, n=None, repeats=20):
    """The float32 matrix-multiply rate this process reaches: the 'peak' MFU is measured against.
    n = 1024 on a CPU; 8192 on a GPU, where a smaller product cannot fill the device."""
    if device == "gpu":
        import cupy as xp
    else:
        import numpy as xp
    n = n or (8192 if device == "gpu" else 1024)
    a = xp.ones((n, n), dtype=xp.float32)
    b = xp.ones((n, n), dtype=xp.float32)
    a @ b  # warm-up: thread pool, caches
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        if device == "gpu":
            xp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t0)
    return dict(gflops=2 * n**3 / best / 1e9)


# ---- where the time goes: exclusive time per kind of kernel --------------------------------

PROFILE_GROUPS = {  # group -> the pairs of a kernel set that a model's nodes call (and the optimiser)
    "attention layer (incl. its two linears)": ("attention_forward", "attention_backward"),
    "feed-forward (two linears + GELU)": ("ffn_forward", "ffn_backward"),
    "matmul: tied logits": ("linear_forward", "linear_backward"),
    "LayerNorm": ("layernorm_forward", "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward"),
    "cross-entropy": ("cross_entropy_forward", "cross_entropy_backward"),
    "embedding": ("embedding_forward", "embedding_backward"),
    "AdamW": (),  # timed around opt.step()
}


class _TimedKernels:
    """A kernel set that runs `base`'s pairs and adds each call's CPU time to `spent[group]`.

    A model is pointed at it for profiling; nothing in `base` (a module) is touched. Time is
    EXCLUSIVE: a timed call made inside another timed call counts for its own group only.
    """

    def __init__(self, base, spent):
        self._base, self._spent, self._stack = base, spent, []  # stack of [group, start, children]
        for group, names in PROFILE_GROUPS.items():
            for name in names:
                setattr(self, name, self.timed(getattr(base, name), group))

    def __getattr__(self, name):  # pairs we do not time (attention_step, ...): the base set's own
        return getattr(self._base, name)

    def timed(self, fn, group):
        def run(*args, **kwargs):
            self._stack.append([group, time.process_time(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                g, t0, children = self._stack.pop()
                elapsed = time.process_time() - t0
                self._spent[g] += elapsed - children
                if self._stack:
                    self._stack[-1][2] += elapsed
        return run


def profile_step(spec, steps=3, warmup=1, kernels="fast"):
    """Time one training step by kind of work: the model runs on a `_TimedKernels` copy of its
    kernel set, which counts each pair's CPU time (`time.process_time`, robust on a busy machine
    for a 1-thread run), and AdamW.step is timed around its call. What is left is the autograd
    engine, residual adds and Python glue.

    Returns {group: ms per step, ..., "engine, residual adds, glue": ms, "total": ms}.
    """
    from .optim import AdamW, param_groups_for_decay
    from .tensor import kernel_set

    cfg, model, idx, targets = _model_and_batch(spec, kernels=kernels)
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-4)
    spent = {g: 0.0 for g in PROFILE_GROUPS}
    timed = _TimedKernels(kernel_set(kernels), spent)
    for module in model.modules():  # every layer (and the model's logits and loss) runs the timed set
        if hasattr(module, "kernels"):
            module.kernels = timed
    optimizer_step = timed.timed(opt.step, "AdamW")

    def step():
        _, loss = model(idx, targets)
        loss.backward()
        optimizer_step()
        opt.zero_grad()

    for _ in range(warmup):
        step()
    for g in spent:
        spent[g] = 0.0
    t0 = time.process_time()
    for _ in range(steps):
        step()
    total = time.process_time() - t0
    out = {g: 1e3 * t / steps for g, t in spent.items()}
    out["engine, residual adds, glue"] = 1e3 * total / steps - sum(out.values())
    out["total"] = 1e3 * total / steps
    return out


def profile_torch(spec, steps=3, warmup=1):
    """The same breakdown for the PyTorch reference, from torch.profiler's self CPU time per op."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg, model, idx, targets = _model_and_batch(spec)
    ref = _torch_ref(model, "cpu")
    t_idx, t_tgt = torch.tensor(idx), torch.tensor(targets)
    groups = [{"params": [p for p in ref.parameters() if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in ref.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4)

    def step():
        _, loss = ref(t_idx, t_tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    # torch's ops are finer than our groups: its products all count as the FFN's, its attention
    # kernel as attention; compare sums (attention + FFN + logits) rather than single rows.
    rules = (("feed-forward (two linears + GELU)", ("aten::mm", "aten::addmm", "aten::bmm", "gelu")),
             ("attention layer (incl. its two linears)", ("flash_attention", "scaled_dot_product")),
             ("LayerNorm", ("layer_norm",)),
             ("cross-entropy", ("log_softmax", "nll_loss", "cross_entropy")),
             ("embedding", ("embedding", "index_select", "index_add", "aten::index")),
             ("AdamW", ("_foreach", "adamw", "lerp", "addcdiv", "addcmul")))
    out = {g: 0.0 for g in PROFILE_GROUPS}
    out["engine, residual adds, glue"] = 0.0
    total = 0.0
    for ev in prof.key_averages():
        ms = ev.self_cpu_time_total / 1e3 / steps
        total += ms
        name = ev.key.lower()
        group = next((g for g, keys in rules if any(k.lower() in name for k in keys)), "engine, residual adds, glue")
        out[group] += ms
    out["total"] = total
    return out


def kernel_table(spec, repeats=10, kernels="fast"):
    """Each kernel of a training step, forward + backward, ours against PyTorch's, on the shapes of
    `spec`, interleaved in ONE process and timed by CPU time (min over `repeats`): a comparison
    that survives a busy machine better than whole steps do. Needs torch; run with 1 thread.

    Returns rows dict(kernel, calls_per_step, ours_ms, torch_ms) — times per call.
    """
    import numpy as np
    import torch

    from .optim import AdamW, param_groups_for_decay
    from .tensor import kernel_set

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pairs = kernel_set(kernels)  # our forward/backward pairs
    torch_F = torch.nn.functional
    B, T, C, V, L, NH = spec["batch"], spec["seq_len"], spec["d_model"], spec["vocab_size"], spec["n_layers"], spec["n_heads"]
    Fd = 4 * C
    rng = np.random.default_rng(0)

    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def tt(a, grad=True):
        return torch.from_numpy(a).requires_grad_(grad)

    to_time = []  # (name, calls per step, ours(), torch())
    for name, d_in, d_out, calls in (("linear: QKV projection", C, 3 * C, L), ("linear: attention output", C, C, L),
                                     ("linear: FFN up", C, Fd, L), ("linear: FFN down", Fd, C, L),
                                     ("linear: tied logits", C, V, 1)):
        x, W, b, d = arr(B, T, d_in), arr(d_in, d_out, scale=0.05), arr(d_out), arr(B, T, d_out)
        tx, tW, tb, td = tt(x.reshape(-1, d_in)), tt(W), tt(b), torch.from_numpy(d.reshape(-1, d_out))

        def ours(x=x, W=W, b=b, d=d):
            _, c = pairs.linear_forward(x, W, b)
            pairs.linear_backward(d, c)

        to_time.append((name, calls, ours, lambda tx=tx, tW=tW, tb=tb, td=td: torch.addmm(tb, tx, tW).backward(td)))

    hs = C // NH
    x, d = arr(B, T, C), arr(B, T, C)
    Wqkv, bqkv, Wo, bo = arr(C, 3 * C, scale=0.05), arr(3 * C), arr(C, C, scale=0.05), arr(C)
    tx, tWqkv, tbqkv, tWo, tbo, td = tt(x), tt(Wqkv), tt(bqkv), tt(Wo), tt(bo), torch.from_numpy(d)

    def ours_attn():
        _, c = pairs.attention_forward(x, Wqkv, bqkv, Wo, bo, NH)
        pairs.attention_backward(d, c)

    def torch_attn():
        qkv = torch.addmm(tbqkv, tx.reshape(-1, C), tWqkv).reshape(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)
        y = torch_F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        out = torch.addmm(tbo, y.transpose(1, 2).reshape(B * T, C), tWo)
        out.backward(td.reshape(B * T, C))

    to_time.append(("attention layer (incl. its two linears)", L, ours_attn, torch_attn))
    h, dh = arr(B, T, Fd), arr(B, T, Fd)
    th, tdh = tt(h), torch.from_numpy(dh)

    def ours_gelu():
        _, c = pairs.gelu_forward(h)
        pairs.gelu_backward(dh, c)

    to_time.append(("GELU", L, ours_gelu, lambda: torch_F.gelu(th, approximate="tanh").backward(tdh)))
    g, be = arr(C), arr(C)
    tg, tbe = tt(g), tt(be)

    def ours_ln():
        _, c = pairs.layernorm_forward(x, g, be)
        pairs.layernorm_backward(d, c)

    to_time.append(("LayerNorm", 2 * L + 1, ours_ln, lambda: torch_F.layer_norm(tx, (C,), tg, tbe).backward(td)))
    logits, tgt = arr(B, T, V), rng.integers(0, V, (B, T))
    tl, ttgt = tt(logits.reshape(-1, V)), torch.from_numpy(tgt.reshape(-1))

    def ours_ce():
        _, c = pairs.cross_entropy_forward(logits, tgt)
        pairs.cross_entropy_backward(1.0, c)

    to_time.append(("cross-entropy", 1, ours_ce, lambda: torch_F.cross_entropy(tl, ttgt).backward()))
    _, model, _, _ = _model_and_batch(spec, kernels=kernels)
    ref = _torch_ref(model, "cpu")
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-4)
    for p in model.parameters():
        p.grad = np.full(p.shape, 1e-3, dtype=p.data.dtype)
    topt = torch.optim.AdamW(ref.parameters(), lr=1e-4)
    for p in ref.parameters():
        p.grad = torch.full_like(p, 1e-3)
    to_time.append(("AdamW (all parameters)", 1, opt.step, topt.step))

    times = {k[0]: ([], []) for k in to_time}
    for _ in range(repeats + 1):
        for name, _, ours, theirs in to_time:
            t0 = time.process_time()
            ours()
            t1 = time.process_time()
            theirs()
            t2 = time.process_time()
            times[name][0].append(t1 - t0)
            times[name][1].append(t2 - t1)
    return [dict(kernel=name, calls_per_step=calls, ours_ms=1e3 * min(times[name][0][1:]),
                 torch_ms=1e3 * min(times[name][1][1:])) for name, calls, _, _ in to_time]


def _child(args):
    job = json.loads(args)
    if job["kind"] in ("ours", "functional", "reference"):
        mode = "functional" if job["kind"] == "functional" else "autograd"
        kernels = "reference" if job["kind"] == "reference" else "fast"
        return _child_ours(job["spec"], job["warmup"], job["repeats"], job["device"], mode, kernels)
    if job["kind"] == "torch":
        return _child_torch(job["spec"], job["warmup"], job["repeats"], job["device"], job["threads"])
    if job["kind"] == "profile":
        return profile_step(job["spec"], job["repeats"])
    if job["kind"] == "profile_torch":
        return profile_torch(job["spec"], job["repeats"])
    if job["kind"] == "kernels":
        return kernel_table(job["spec"], job["repeats"])
    return _child_gemm_peak(job["device"])


# ---- parent side ---------------------------------------------------------------------------

def _run_child(job, threads):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    # Idle OpenBLAS threads spin waiting for work; let them sleep after 1 ms-ish of idleness.
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
    out = subprocess.run([sys.executable, "-m", "minichinchilla.bench", "--child", json.dumps(job)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({job['kind']}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(name, spec, res, flops_per_step, peak_gflops):
    med = statistics.median(res["times"])
    tokens = spec["batch"] * spec["seq_len"]
    achieved = flops_per_step / med / 1e9
    cpu = res.get("cpu_times") or [float("nan")]
    return dict(impl=name, ms_median=med * 1e3, ms_min=min(res["times"]) * 1e3,
                ms_max=max(res["times"]) * 1e3, cpu_ms_median=statistics.median(cpu) * 1e3,
                cpu_ms_min=min(cpu) * 1e3, tokens_per_s=tokens / med, gflops=achieved,
                mfu=achieved / peak_gflops, peak_mib=res["peak_mib"], first_loss=res["first_loss"])


def _flops_per_step(spec):
    from .model import ModelConfig
    from .scaling import model_flops

    cfg = ModelConfig(**{k: v for k, v in spec.items() if k != "batch"})
    return model_flops(cfg) * spec["batch"]


def _pooled(results):
    """Several children's measurements as one: all steps' times together, the median peak."""
    peaks = sorted(r["peak_mib"] for r in results if r["peak_mib"] is not None)
    return dict(times=[t for r in results for t in r["times"]],
                cpu_times=[t for r in results for t in r["cpu_times"]],
                first_loss=results[0]["first_loss"], peak_mib=peaks[len(peaks) // 2] if peaks else None,
                runs=len(results))


def run(configs, threads_list, warmup, repeats, with_torch, device, overhead=False, runs=1, reference=True):
    """Measure every config at every thread count: the model on its default (fast) kernels, and with
    ``reference`` the same model on the reference kernels, for the record. With ``runs > 1`` each implementation is
    measured in `runs` fresh child processes, taken in turns (ours, functional, torch, ours, ...),
    and their steps pooled: two fresh processes of the same code can differ by ~10% on a VM
    (where their memory lands), which one process per side cannot average out."""
    try:
        import torch  # noqa: F401

        have_torch = with_torch
    except ImportError:
        have_torch = False
    kinds = (["ours"] + (["reference"] if reference else []) + (["functional"] if overhead else [])
             + (["torch"] if have_torch else []))
    rows = []
    for threads in threads_list:
        peak = _run_child({"kind": "gemm", "device": device}, threads)["gflops"]
        for name in configs:
            spec = ALL_CONFIGS[name]
            flops = _flops_per_step(spec)
            job = dict(spec=spec, warmup=warmup, repeats=repeats, device=device, threads=threads)
            measured = {k: [] for k in kinds}
            for _ in range(runs):
                for k in kinds:
                    measured[k].append(_run_child({**job, "kind": k}, threads))
            label = {"ours": "minichinchilla", "reference": "reference", "functional": "functional",
                     "torch": "pytorch"}
            summ = {k: _summary(label[k], spec, _pooled(v), flops, peak) for k, v in measured.items()}
            ours = summ["ours"]
            row = dict(config=name, threads=threads, device=device, gemm_peak_gflops=peak,
                       flops_per_step=flops, spec=spec, runs=runs, ours=ours)
            if reference:
                row["reference"] = summ["reference"]
            if overhead:
                row["functional"] = summ["functional"]
                row["engine_overhead"] = ours["ms_median"] / row["functional"]["ms_median"] - 1
                row["engine_overhead_cpu"] = ours["cpu_ms_median"] / row["functional"]["cpu_ms_median"] - 1
            if have_torch:
                row["torch"] = summ["torch"]
                row["time_ratio"] = ours["ms_median"] / row["torch"]["ms_median"]
                row["cpu_time_ratio"] = ours["cpu_ms_median"] / row["torch"]["cpu_ms_median"]
                if reference:
                    row["reference_time_ratio"] = row["reference"]["ms_median"] / row["torch"]["ms_median"]
                    row["reference_cpu_time_ratio"] = row["reference"]["cpu_ms_median"] / row["torch"]["cpu_ms_median"]
                if ours["peak_mib"] is not None and row["torch"]["peak_mib"]:
                    row["memory_ratio"] = ours["peak_mib"] / row["torch"]["peak_mib"]
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


def _format_row(row):
    def fmt(r):
        mem = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f} MiB"
        return (f"{r['impl']:<15}{r['ms_median']:9.1f} ms [{r['ms_min']:.1f}–{r['ms_max']:.1f}]"
                f"  cpu {r['cpu_ms_median']:8.1f} ms"
                f"{r['tokens_per_s']:11.0f} tok/s{r['gflops']:8.1f} GFLOP/s  MFU {100 * r['mfu']:5.1f}%  "
                f"peak {mem}  loss0 {r['first_loss']:.4f}")
    lines = [f"config {row['config']}  threads {row['threads']}  device {row['device']}  runs {row.get('runs', 1)}  "
             f"GEMM peak {row['gemm_peak_gflops']:.0f} GFLOP/s  model {row['flops_per_step'] / 1e9:.2f} GFLOP/step",
             "  " + fmt(row["ours"])]
    if "reference" in row:
        lines.append("  " + fmt(row["reference"]))
    if "functional" in row:
        lines.append("  " + fmt(row["functional"]))
    if "torch" in row:
        lines.append("  " + fmt(row["torch"]))
        mem = f", memory {row['memory_ratio']:.2f}x" if "memory_ratio" in row else ""
        lines.append(f"  minichinchilla / pytorch: time {row['time_ratio']:.2f}x (cpu time "
                     f"{row['cpu_time_ratio']:.2f}x){mem}")
        if "reference_time_ratio" in row:
            lines.append(f"  reference kernels / pytorch: time {row['reference_time_ratio']:.2f}x (cpu time "
                         f"{row['reference_cpu_time_ratio']:.2f}x), for the record")
    if "engine_overhead" in row:
        lines.append(f"  autograd engine over functional pairs: {100 * row['engine_overhead']:+.1f}% "
                     f"(cpu time {100 * row['engine_overhead_cpu']:+.1f}%)")
    return "\n".join(lines)


def run_small(names=tuple(SMALL_CONFIGS), warmup=3, repeats=20, with_torch=True):
    """Throughput of the small models of a scaling sweep, 1 thread each (a sweep runs one process
    per core). Returns rows with N (parameters), tokens/s and achieved GFLOP/s, ours and torch's."""
    from .model import ModelConfig
    from .scaling.flops import params_count

    rows = []
    for name in names:
        spec = SMALL_CONFIGS[name]
        flops = _flops_per_step(spec)
        job = dict(spec=spec, warmup=warmup, repeats=repeats, device="cpu", threads=1)
        n_params = params_count(ModelConfig(**{k: v for k, v in spec.items() if k != "batch"})).total
        ours = _summary("minichinchilla", spec, _run_child({**job, "kind": "ours"}, 1), flops, 1.0)
        row = dict(config=name, spec=spec, params=n_params, flops_per_step=flops, ours=ours)
        if with_torch:
            try:
                row["torch"] = _summary("pytorch", spec, _run_child({**job, "kind": "torch"}, 1), flops, 1.0)
            except RuntimeError:
                pass
        rows.append(row)
        line = (f"{name:<6} N={n_params:>9,}  ours {ours['ms_median']:7.2f} ms/step (cpu {ours['cpu_ms_median']:.2f})"
                f" {ours['tokens_per_s']:9.0f} tok/s {ours['gflops']:6.2f} GFLOP/s")
        if "torch" in row:
            t = row["torch"]
            line += f" | torch {t['ms_median']:7.2f} ms (cpu {t['cpu_ms_median']:.2f}) {t['tokens_per_s']:9.0f} tok/s"
        print(line, flush=True)
    return rows


def sweep_estimate(specs, small_rows, workers=1, use="cpu"):
    """How long an IsoFLOP sweep takes on this machine, from measured small-model throughput.

    A run of N parameters on D tokens costs model_flops per sequence × sequences; it runs at the
    FLOP rate measured for the nearest small models (`run_small` rows; log-log interpolation in
    N, constant beyond the ends), one run per worker process (one per core, 1 thread each).
    `use="cpu"` takes the rate from CPU time per step (what a quiet core would do), "wall" from
    the wall clock.

    Inputs:
        specs: RunSpec-like objects (minichinchilla.scaling.sweep.default_grid()), or the records of
            finished runs (dicts with "N" and "C", as in results/*.jsonl)
        small_rows: rows from `run_small` (or the "small" list of a benchmark JSON)
        workers: processes running in parallel (cores)
    Returns:
        dict(runs, run_seconds [per spec], total_hours, runs_per_hour) — runs_per_hour for the
        whole machine, i.e. ``workers`` cores.
    """
    import math

    from .scaling import model_flops

    key = "cpu_ms_median" if use == "cpu" else "ms_median"
    points = sorted((r["params"], r["flops_per_step"] / (r["ours"][key] / 1e3)) for r in small_rows)
    if not points:
        raise ValueError("sweep_estimate needs at least one measured small model")

    def rate(n):  # achieved FLOP/s at n parameters
        if n <= points[0][0]:
            return points[0][1]
        if n >= points[-1][0]:
            return points[-1][1]
        for (n0, r0), (n1, r1) in zip(points, points[1:]):
            if n0 <= n <= n1:
                w = (math.log(n) - math.log(n0)) / (math.log(n1) - math.log(n0))
                return math.exp((1 - w) * math.log(r0) + w * math.log(r1))

    seconds = []
    for sp in specs:
        if isinstance(sp, dict):  # a finished run's record (results/*.jsonl): N and its training FLOPs C
            n, flops = sp["N"], sp["C"]
        else:
            n, flops = sp.params().total, model_flops(sp.model_config()) * sp.batch_size * sp.steps()
        seconds.append(flops / rate(n))
    total = sum(seconds) / max(1, workers)
    return dict(runs=len(seconds), run_seconds=seconds, total_hours=total / 3600,
                runs_per_hour=len(seconds) / (total / 3600) if total > 0 else float("inf"))


def environment():
    import numpy

    info = dict(python=platform.python_version(), numpy=numpy.__version__, machine=platform.machine(),
                processor=platform.processor(), cpus=os.cpu_count())
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        info["blas"] = ", ".join(f"{m.get('internal_api')} {m.get('version')} ({m.get('architecture')})"
                                 for m in __import__("threadpoolctl").threadpool_info()
                                 if m.get("user_api") == "blas")
    except Exception:
        pass
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minichinchilla bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="a,b", help=f"comma-separated, from {sorted(CONFIGS)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated BLAS/torch thread counts")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1,
                        help="fresh child processes per implementation, taken in turns; their steps are pooled")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-torch", action="store_true", help="time minichinchilla only")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the run on the reference kernels (by default timed beside the fast ones)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--overhead", action="store_true",
                        help="also time the same step written against the functional pairs (no autograd)")
    parser.add_argument("--profile", action="store_true",
                        help="also break one step down by kind of kernel (1 thread, CPU time), and PyTorch's kernels "
                             "against ours on the same shapes")
    parser.add_argument("--small", action="store_true",
                        help="also measure the small sweep models (1 thread) and estimate a sweep's duration")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return run_command(parser, _run, argv)


def _check_args(args):
    """Every user mistake, found before minutes of timing (ValueError -> `error:` line, exit 2)."""
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in ALL_CONFIGS]
    if bad or not configs:
        raise ValueError(f"unknown config(s) {bad or args.configs!r}; choose from {sorted(ALL_CONFIGS)}")
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        raise ValueError(f"--threads must be comma-separated integers, got {args.threads!r}") from None
    if min(threads) < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads!r}")
    if args.warmup < 1 or args.repeats < 1 or args.runs < 1:
        raise ValueError("--warmup, --repeats and --runs must be at least 1")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise ValueError(f"--json {args.json}: the folder {folder} does not exist")
    if args.device == "gpu":
        from .backend import cupy_available

        if not cupy_available():
            raise ValueError("--device gpu: CuPy cannot run here (no CUDA GPU, or CuPy is not installed: "
                             "pip install -r requirements-gpu.txt)")
    return configs, threads


def _run(args):
    if args.child:
        print(json.dumps(_child(args.child)))
        return 0
    configs, threads = _check_args(args)
    env = environment()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    rows = run(configs, threads, args.warmup, args.repeats, not args.no_torch, args.device, args.overhead, args.runs,
               reference=not args.no_reference)
    out = dict(environment=env, results=rows)
    if args.profile and args.device == "cpu":
        out["profile"], out["kernels"] = {}, {}
        for name in configs:
            job = dict(spec=ALL_CONFIGS[name], warmup=1, repeats=5, device="cpu", threads=1)
            out["profile"][name] = _run_child({**job, "kind": "profile"}, 1)
            print(f"profile {name} (1 thread, CPU ms per step): " +
                  ", ".join(f"{k} {v:.1f}" for k, v in out["profile"][name].items()), flush=True)
            if not args.no_torch:
                out["kernels"][name] = _run_child({**job, "kind": "kernels", "repeats": 10}, 1)
                for r in out["kernels"][name]:
                    print(f"  {r['kernel']:42s} x{r['calls_per_step']:<3d} ours {r['ours_ms']:8.2f} ms  "
                          f"torch {r['torch_ms']:8.2f} ms  ratio {r['ours_ms'] / r['torch_ms']:.2f}", flush=True)
    if args.small and args.device == "cpu":
        from .scaling.sweep import default_grid

        out["small"] = run_small(with_torch=not args.no_torch)
        workers = os.cpu_count() or 1
        est = sweep_estimate(default_grid(), out["small"], workers=workers)
        out["sweep_estimate"] = dict(grid="scaling.sweep.default_grid()", workers=workers,
                                     runs=est["runs"], total_hours=est["total_hours"],
                                     runs_per_hour=est["runs_per_hour"])
        print(f"default sweep grid: {est['runs']} runs, about {60 * est['total_hours']:.0f} min on {workers} "
              f"core(s) ({est['runs_per_hour']:.0f} runs/hour)", flush=True)
    out["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:  # all at once at the end: an interrupted run leaves no half-written file
        write_text_atomically(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
