"""Each fast kernel against its reference, on config (b)'s shapes (chapters/12-performance.md, section 9).

    OPENBLAS_NUM_THREADS=1 python benchmarks/reference_vs_fast.py --rounds 3 --json benchmarks/reference-vs-fast.json

For every pair that `minichinchilla.functional.fast` accelerates, forward + backward of the reference
(`minichinchilla.functional`) and of the fast version run interleaved in ONE process, timed by CPU time
(`time.process_time`, far less sensitive to other programs than the wall clock of a one-thread run),
the minimum over `--repeats` calls. That is one round; `--rounds` fresh rounds give a range. The load
average before and after is recorded: on a shared machine read the ranges, not single numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from minichinchilla import functional as reference
from minichinchilla.atomic import write_text_atomically
from minichinchilla.bench import CONFIGS, SMALL_CONFIGS, _model_and_batch
from minichinchilla.cli import run_command
from minichinchilla.functional import fast
from minichinchilla.functional.fast import FusedAdamW
from minichinchilla.optim import AdamW, param_groups_for_decay


def _pair_timer(kernels, name, inputs, kwargs=None):
    forward, backward = getattr(kernels, f"{name}_forward"), getattr(kernels, f"{name}_backward")
    out, _ = forward(*inputs, **(kwargs or {}))
    dout = np.ones_like(out)

    def run():
        _, cache = forward(*inputs, **(kwargs or {}))
        backward(dout, cache)
    return run


def cases(spec, rng):
    """(kernel, reference run(), fast run()) on the shapes of one training step of `spec`."""
    B, T, C, V, NH = spec["batch"], spec["seq_len"], spec["d_model"], spec["vocab_size"], spec["n_heads"]

    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    x, h = arr(B, T, C), arr(B, T, 4 * C)
    Wqkv, bqkv, Wo, bo = arr(C, 3 * C, scale=0.05), arr(3 * C), arr(C, C, scale=0.05), arr(C)
    g, beta = arr(C), arr(C)
    logits, targets = arr(B, T, V), rng.integers(0, V, (B, T))
    E, idx = arr(V, C), rng.integers(0, V, (B, T))
    table = [
        ("attention layer (incl. its two linears)", "attention", [x, Wqkv, bqkv, Wo, bo], {"n_heads": NH}),
        ("LayerNorm", "layernorm", [x, g, beta], None),
        ("GELU", "gelu", [h], None),
        ("cross-entropy", "cross_entropy", [logits, targets], None),
        ("embedding", "embedding", [idx, E], None),
    ]
    out = [(label, _pair_timer(reference, name, inputs, kw), _pair_timer(fast, name, inputs, kw))
           for label, name, inputs, kw in table]
    out.append(("AdamW step (all parameters)", *_optimizer_runs(spec)))
    out.append(("AdamW step, 8k-parameter sweep model", *_optimizer_runs(SMALL_CONFIGS["s10k"])))
    return out


def _optimizer_runs(spec):
    """One step of AdamW and of FusedAdamW (the 'fast' column) over a model, fixed gradients."""
    runs = []
    for optimizer in (AdamW, FusedAdamW):
        _, model, _, _ = _model_and_batch(spec)
        for p in model.parameters():
            p.grad = np.full(p.shape, 1e-3, dtype=p.data.dtype)
        runs.append(optimizer(param_groups_for_decay(model, 0.1), lr=1e-4).step)
    return runs


def one_round(rows, repeats):
    """Minimum CPU ms over `repeats` calls of each run, reference and fast interleaved."""
    times = {label: ([], []) for label, _, _ in rows}
    for _ in range(repeats + 1):
        for label, ref_run, fast_run in rows:
            for i, run in enumerate((ref_run, fast_run)):
                t0 = time.process_time()
                run()
                times[label][i].append(time.process_time() - t0)
    return {label: (1e3 * min(r[1:]), 1e3 * min(f[1:])) for label, (r, f) in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="b", choices=sorted(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", metavar="PATH")
    return run_command(parser, _run, argv)


def _run(args):
    if args.rounds < 1 or args.repeats < 1:
        raise ValueError("--rounds and --repeats must be at least 1")
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = cases(CONFIGS[args.config], np.random.default_rng(0))
    rounds = [one_round(rows, args.repeats) for _ in range(args.rounds)]
    result = dict(config=args.config, rounds=args.rounds, repeats=args.repeats,
                  blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"), load_average_before=load_before,
                  load_average_after=[round(v, 2) for v in os.getloadavg()], kernels=[])
    for label, _, _ in rows:
        ref = [r[label][0] for r in rounds]
        fst = [r[label][1] for r in rounds]
        speedups = [a / b for a, b in zip(ref, fst)]
        result["kernels"].append(dict(kernel=label, reference_ms=ref, fast_ms=fst, speedup=speedups))
        print(f"{label:42s} reference {min(ref):7.2f}-{max(ref):7.2f} ms  fast {min(fst):7.2f}-{max(fst):7.2f} ms  "
              f"speed-up {min(speedups):4.2f}-{max(speedups):4.2f}x", flush=True)
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if args.json:
        write_text_atomically(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
