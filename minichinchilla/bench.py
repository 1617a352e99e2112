"""`python -m minichinchilla bench`: time a full training step against PyTorch, side by side.

A step is forward + backward + AdamW + zero_grad of the project's own TransformerLM. Each
measurement runs in a fresh child process, so the BLAS thread count is set before NumPy loads
and the peak memory of one framework is not mixed with the other's. For every config and thread
count we report, for minichinchilla and for the identical model in PyTorch eager (same weights,
so the first losses match):

    ms/step (median of the repeats, with min and max), tokens/s, model FLOPs per step (from
    minichinchilla.scaling.model_flops), achieved GFLOP/s, MFU against the float32 GEMM peak
    measured on this machine with the same thread count, and the step's peak memory.

Results are printed as a table and written as JSON (``--json PATH``). This is a benchmark, not
a test: nothing here asserts a time.
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

CONFIGS = {
    "a": dict(vocab_size=256, d_model=128, n_layers=4, n_heads=4, seq_len=128, batch=16),
    "b": dict(vocab_size=512, d_model=256, n_layers=6, n_heads=8, seq_len=256, batch=8),
    "b64": dict(vocab_size=512, d_model=256, n_layers=6, n_heads=8, seq_len=256, batch=64),
}


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


def _model_and_batch(spec, seed=0):
    import numpy as np

    from .model import ModelConfig, TransformerLM

    shape = {k: v for k, v in spec.items() if k != "batch"}
    cfg = ModelConfig(**shape)
    model = TransformerLM(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cfg.vocab_size, (spec["batch"], cfg.seq_len))
    targets = rng.integers(0, cfg.vocab_size, (spec["batch"], cfg.seq_len))
    return cfg, model, idx, targets


def _child_ours(spec, warmup, repeats, device):
    from .backend import asarray, get_backend, set_backend
    from .optim import AdamW, param_groups_for_decay

    if device == "gpu":
        set_backend("cupy")
    cfg, model, idx, targets = _model_and_batch(spec)
    idx, targets = asarray(idx), asarray(targets)
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-4)
    xp = get_backend()
    sync = (lambda: xp.cuda.Device().synchronize()) if device == "gpu" else (lambda: None)

    def step():
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    # Peak memory of a step = highest RSS while stepping - RSS with model and batch ready.
    # Measured from before the FIRST step, so allocator caches filled by it count for both.
    peak_ok = _reset_peak_rss()
    base = _rss_kib("VmRSS")
    first = float(step().item())
    for _ in range(warmup - 1):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = _rss_kib("VmHWM") - base if peak_ok and device == "cpu" else None
    return dict(times=times, first_loss=first, peak_mib=None if peak is None else peak / 1024)


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
        return loss

    peak_ok = _reset_peak_rss()
    base = _rss_kib("VmRSS")
    first = float(step().item())
    for _ in range(warmup - 1):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = _rss_kib("VmHWM") - base if peak_ok and device == "cpu" else None
    return dict(times=times, first_loss=first, peak_mib=None if peak is None else peak / 1024)


def _torch_ref(model, dev):
    from .reference_torch import torch_model_from

    return torch_model_from(model, device=dev)


def _child_gemm_peak(device, n=1024, repeats=10):
    """The float32 matrix-multiply rate this process reaches: the 'peak' MFU is measured against."""
    if device == "gpu":
        import cupy as xp
    else:
        import numpy as xp
    a = xp.ones((n, n), dtype=xp.float32)
    b = xp.ones((n, n), dtype=xp.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        if device == "gpu":
            xp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t0)
    return dict(gflops=2 * n**3 / best / 1e9)


def _child(args):
    job = json.loads(args)
    if job["kind"] == "ours":
        return _child_ours(job["spec"], job["warmup"], job["repeats"], job["device"])
    if job["kind"] == "torch":
        return _child_torch(job["spec"], job["warmup"], job["repeats"], job["device"], job["threads"])
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
    return dict(impl=name, ms_median=med * 1e3, ms_min=min(res["times"]) * 1e3,
                ms_max=max(res["times"]) * 1e3, tokens_per_s=tokens / med, gflops=achieved,
                mfu=achieved / peak_gflops, peak_mib=res["peak_mib"], first_loss=res["first_loss"])


def run(configs, threads_list, warmup, repeats, with_torch, device):
    from .model import ModelConfig
    from .scaling import model_flops

    try:
        import torch  # noqa: F401

        have_torch = with_torch
    except ImportError:
        have_torch = False
    rows = []
    for threads in threads_list:
        peak = _run_child({"kind": "gemm", "device": device}, threads)["gflops"]
        for name in configs:
            spec = CONFIGS[name]
            cfg = ModelConfig(**{k: v for k, v in spec.items() if k != "batch"})
            flops = model_flops(cfg) * spec["batch"]
            job = dict(spec=spec, warmup=warmup, repeats=repeats, device=device, threads=threads)
            ours = _summary("minichinchilla", spec, _run_child({**job, "kind": "ours"}, threads), flops, peak)
            row = dict(config=name, threads=threads, device=device, gemm_peak_gflops=peak,
                       flops_per_step=flops, ours=ours)
            if have_torch:
                row["torch"] = _summary("pytorch", spec, _run_child({**job, "kind": "torch"}, threads), flops, peak)
                row["time_ratio"] = ours["ms_median"] / row["torch"]["ms_median"]
                if ours["peak_mib"] is not None and row["torch"]["peak_mib"]:
                    row["memory_ratio"] = ours["peak_mib"] / row["torch"]["peak_mib"]
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


def _format_row(row):
    def fmt(r):
        mem = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f} MiB"
        return (f"{r['impl']:<15}{r['ms_median']:9.1f} ms [{r['ms_min']:.1f}–{r['ms_max']:.1f}]"
                f"{r['tokens_per_s']:11.0f} tok/s{r['gflops']:8.1f} GFLOP/s  MFU {100 * r['mfu']:5.1f}%  "
                f"peak {mem}  loss0 {r['first_loss']:.4f}")
    lines = [f"config {row['config']}  threads {row['threads']}  device {row['device']}  "
             f"GEMM peak {row['gemm_peak_gflops']:.0f} GFLOP/s  model {row['flops_per_step'] / 1e9:.2f} GFLOP/step",
             "  " + fmt(row["ours"])]
    if "torch" in row:
        lines.append("  " + fmt(row["torch"]))
        mem = f", memory {row['memory_ratio']:.2f}x" if "memory_ratio" in row else ""
        lines.append(f"  minichinchilla / pytorch: time {row['time_ratio']:.2f}x{mem}")
    return "\n".join(lines)


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
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minichinchilla bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="a,b", help=f"comma-separated, from {sorted(CONFIGS)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated BLAS/torch thread counts")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-torch", action="store_true", help="time minichinchilla only")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child)))
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        print(f"error: unknown config(s) {bad}; choose from {sorted(CONFIGS)}", file=sys.stderr)
        return 2
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        print(f"error: --threads must be comma-separated integers, got {args.threads!r}", file=sys.stderr)
        return 2
    if args.warmup < 1 or args.repeats < 1:
        print("error: --warmup and --repeats must be at least 1", file=sys.stderr)
        return 2
    env = environment()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    rows = run(configs, threads, args.warmup, args.repeats, not args.no_torch, args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(environment=env, results=rows), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
