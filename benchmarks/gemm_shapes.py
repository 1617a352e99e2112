"""The training step's own matrix products, NumPy (OpenBLAS) against PyTorch (MKL / oneDNN).

Why this exists (chapters/12-performance.md, section 6). Most of a step is the linear layers'
matrix products, and both implementations hand those to a BLAS library: NumPy's wheel ships
OpenBLAS, PyTorch's CPU wheel uses Intel's MKL. So before blaming our Python for a gap, measure
what the two libraries do on exactly the products the step runs. For every linear layer of a
config (QKV, attention output, FFN up, FFN down, tied logits) there are three products, with the
transposes the step really uses:

    forward   Y  = X W          (N, d_in)  @ (d_in, d_out)
    backward  dX = dY W^T       (N, d_out) @ (d_out, d_in)   W read transposed, no copy
    backward  dW = X^T dY       (d_in, N)  @ (N, d_out)      X read transposed, no copy

Each product is timed SUSTAINED (repeated back to back for `--seconds`, total time / count),
the way it runs inside a training loop, not best-of-a-few: a single fast run flatters whichever
library happens to be warm. Each library runs in its own child process (OpenBLAS's and OpenMP's
thread pools in one process fight over the cores), the two sides taken in turns, `--rounds`
times; we keep each product's best round.

Usage (repository root):
    python benchmarks/gemm_shapes.py --configs a,b --threads 1,2 [--json benchmarks/gemm-shapes.json]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from minichinchilla.atomic import write_text_atomically  # noqa: E402
from minichinchilla.bench import CONFIGS, environment  # noqa: E402  (the same configs as the step benchmark)
from minichinchilla.cli import run_command  # noqa: E402


def products(spec):
    """[(layer, kind, M, K, N, transpose_a, transpose_b, calls per step)] for one config."""
    C, L, V = spec["d_model"], spec["n_layers"], spec["vocab_size"]
    N = spec["batch"] * spec["seq_len"]
    layers = [("QKV projection", C, 3 * C, L), ("attention output", C, C, L),
              ("FFN up", C, 4 * C, L), ("FFN down", 4 * C, C, L), ("tied logits", C, V, 1)]
    out = []
    for name, d_in, d_out, calls in layers:
        # The tied logits use W = E^T, a transposed view of the (V, C) embedding table, so there the
        # forward reads its weight transposed and the backward's dY W^T = dY E reads it plainly.
        tied = name == "tied logits"
        out.append((name, "Y = X W", N, d_in, d_out, False, tied, calls))
        out.append((name, "dX = dY W^T", N, d_out, d_in, False, not tied, calls))
        out.append((name, "dW = X^T dY", d_in, N, d_out, True, False, calls))
    return out


def _child(lib, threads, spec, seconds):
    """Runs in a fresh process: ms per product, sustained, for one library."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
    result = []
    for name, kind, M, K, N, ta, tb, calls in products(spec):
        a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        if lib == "torch":
            a, b = torch.from_numpy(a), torch.from_numpy(b)
        A = a.T if ta else a  # a transposed VIEW, as in linear_backward: BLAS gets a flag, not a copy
        B = b.T if tb else b
        A @ B  # warm-up: first-call setup, pages of the output
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            A @ B
            n += 1
        result.append(1e3 * (time.perf_counter() - t0) / n)
    return result


def measure(spec, threads, seconds, rounds):
    """{lib: [best ms per product]}, the two libraries in alternating child processes."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OPENBLAS_THREAD_TIMEOUT="1")
    best = {}
    for _ in range(rounds):
        for lib in ("numpy", "torch"):
            code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                    f"import gemm_shapes as g; "
                    f"print(json.dumps(g._child({lib!r}, {threads}, {spec!r}, {seconds})))")
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{lib} child failed:\n{out.stderr[-2000:]}")
            ms = json.loads(out.stdout.strip().splitlines()[-1])
            best[lib] = [min(x, y) for x, y in zip(best[lib], ms)] if lib in best else ms
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="a,b")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", type=float, default=0.4, help="how long each product is repeated")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", metavar="PATH")
    return run_command(p, _run, argv)


def _run(args):
    configs = args.configs.split(",")  # the user's mistakes first, whatever is installed
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; choose from {sorted(CONFIGS)}")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError("this benchmark compares against PyTorch, which is not installed (pip install torch)") from None
    rows = []
    for cfg in configs:
        spec = CONFIGS[cfg]
        for threads in [int(t) for t in args.threads.split(",")]:
            ms = measure(spec, threads, args.seconds, args.rounds)
            total = {lib: sum(t * calls for t, (*_, calls) in zip(ms[lib], products(spec))) for lib in ms}
            print(f"config {cfg}, {threads} thread(s): products per step {total['numpy']:.1f} ms (NumPy) "
                  f"vs {total['torch']:.1f} ms (PyTorch), ratio {total['numpy'] / total['torch']:.2f}")
            for (name, kind, M, K, N, ta, tb, calls), tn, tt in zip(products(spec), ms["numpy"], ms["torch"]):
                gflops = 2 * M * K * N / tn / 1e6
                print(f"  {name:17s} {kind:12s} ({M:5d} x {K:5d}) @ ({K:5d} x {N:5d}) x{calls}  "
                      f"numpy {tn:6.2f} ms ({gflops:4.0f} GFLOP/s)  torch {tt:6.2f} ms  ratio {tn / tt:.2f}")
            rows.append(dict(config=cfg, threads=threads, numpy_ms_per_step=total["numpy"],
                             torch_ms_per_step=total["torch"],
                             products=[dict(layer=n, kind=k, M=M, K=K, N=N, calls=c, numpy_ms=tn, torch_ms=tt)
                                       for (n, k, M, K, N, _, _, c), tn, tt in
                                       zip(products(spec), ms["numpy"], ms["torch"])]))
    if args.json:
        write_text_atomically(args.json, json.dumps(dict(environment=environment(), rows=rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
