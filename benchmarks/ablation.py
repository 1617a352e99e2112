"""What each optimisation of chapter 12 bought, kernel by kernel, measured side by side.

Loads the hand-derived kernels as they were BEFORE the performance work (git commit BASE) next to
today's fast ones (`minichinchilla.functional.fast`), and times each pair — forward + backward on the shapes of benchmark config (b), one BLAS
thread, CPU time (`time.process_time`), the two versions interleaved, minimum over repeats (robust
on a busy machine). Also runs whole steps in child processes with and without the allocator fix
(`MINICHINCHILLA_MALLOPT=0`) to count page faults and system time.

Usage (repository root):  python benchmarks/ablation.py [--repeats 15] [--json benchmarks/ablation.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = "4c3fa53"  # the last commit before the performance work (benchmark added, kernels untouched)
FILES = ("_checks", "linear", "rope", "softmax", "activations", "norms", "attention", "ffn")


def load_baseline():
    """The functional package at BASE, importable as `baseline_functional`."""
    tmp = pathlib.Path(tempfile.mkdtemp()) / "baseline_functional"
    tmp.mkdir()
    (tmp / "__init__.py").write_text("")
    for name in FILES:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASE}:minichinchilla/functional/{name}.py"],
                             capture_output=True, text=True, check=True).stdout
        (tmp / f"{name}.py").write_text(src.replace("from ..backend", "from minichinchilla.backend"))
    spec = importlib.util.spec_from_file_location("baseline_functional", tmp / "__init__.py",
                                                  submodule_search_locations=[str(tmp)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["baseline_functional"] = pkg
    spec.loader.exec_module(pkg)
    return {n: importlib.import_module(f"baseline_functional.{n}") for n in FILES}


def timed_pairs(pairs, repeats):
    """{name: (before_ms, after_ms)}: min CPU time of each callable, the pairs interleaved."""
    times = {name: ([], []) for name in pairs}
    for _ in range(repeats + 1):
        for name, (before, after) in pairs.items():
            for i, fn in enumerate((before, after)):
                t0 = time.process_time()
                fn()
                times[name][i].append(time.process_time() - t0)
    return {name: (1e3 * min(b[1:]), 1e3 * min(a[1:])) for name, (b, a) in times.items()}


def kernel_ablation(repeats):
    import numpy as np

    from minichinchilla.bench import CONFIGS, _model_and_batch
    from minichinchilla.functional import fast
    from minichinchilla.functional.fast import FusedAdamW
    from minichinchilla.optim import AdamW, param_groups_for_decay

    old = load_baseline()
    spec = CONFIGS["b"]
    B, T, C, NH = spec["batch"], spec["seq_len"], spec["d_model"], spec["n_heads"]
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x, d, h, dh = f32(B, T, C), f32(B, T, C), f32(B, T, 4 * C), f32(B, T, 4 * C)
    Wqkv, bqkv, Wo, bo = f32(C, 3 * C) * 0.05, f32(3 * C), f32(C, C) * 0.05, f32(C)
    g, b = f32(C), f32(C)

    def fb(fwd, bwd, *args, dout, **kw):
        def run():
            _, cache = fwd(*args, **kw)
            bwd(dout, cache)
        return run

    pairs = {
        "attention layer (causal, config b)": (
            fb(old["attention"].attention_forward, old["attention"].attention_backward, x, Wqkv, bqkv, Wo, bo, NH, dout=d),
            fb(fast.attention_forward, fast.attention_backward, x, Wqkv, bqkv, Wo, bo, NH, dout=d)),
        "GELU (B*T, 4C)": (fb(old["activations"].gelu_forward, old["activations"].gelu_backward, h, dout=dh),
                           fb(fast.gelu_forward, fast.gelu_backward, h, dout=dh)),
        "LayerNorm (B*T, C)": (fb(old["norms"].layernorm_forward, old["norms"].layernorm_backward, x, g, b, dout=d),
                               fb(fast.layernorm_forward, fast.layernorm_backward, x, g, b, dout=d)),
    }
    _, model, _, _ = _model_and_batch(spec)
    _, model2, _, _ = _model_and_batch(spec)
    opt, opt2 = FusedAdamW(param_groups_for_decay(model, 0.1), lr=1e-4), AdamW(param_groups_for_decay(model2, 0.1), lr=1e-4)
    for m in (model, model2):
        for p in m.parameters():
            p.grad = np.full(p.shape, 1e-3, dtype=np.float32)

    pairs["AdamW (4.8M parameters): per parameter, then FusedAdamW"] = (opt2.step, opt.step)
    return timed_pairs(pairs, repeats)


def _step_child(mallopt):
    code = ("import resource, time, json\n"
            "from minichinchilla.bench import CONFIGS, _model_and_batch\n"
            "from minichinchilla.optim import AdamW, param_groups_for_decay\n"
            "cfg, model, idx, targets = _model_and_batch(CONFIGS['b'])\n"
            "opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-4)\n"
            "def step():\n"
            "    _, loss = model(idx, targets); loss.backward(); opt.step(); opt.zero_grad()\n"
            "step(); step()\n"
            "r0 = resource.getrusage(resource.RUSAGE_SELF); cpu = []\n"
            "for _ in range(4):\n"
            "    t0 = time.process_time(); step(); cpu.append(time.process_time() - t0)\n"
            "r1 = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(json.dumps(dict(faults=(r1.ru_minflt - r0.ru_minflt) / 4, sys_ms=1e3 * (r1.ru_stime - r0.ru_stime) / 4,"
            " cpu_ms=1e3 * min(cpu))))\n")
    env = dict(os.environ, MINICHINCHILLA_MALLOPT="1" if mallopt else "0", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    load = os.getloadavg()
    rows = kernel_ablation(args.repeats)
    print(f"kernel, forward + backward (CPU ms, 1 thread, min of {args.repeats}; load {load[0]:.1f})")
    for name, (before, after) in rows.items():
        print(f"  {name:38s} before {before:8.2f}  after {after:8.2f}  speed-up {before / after:5.2f}x")
    alloc = {"glibc default": _step_child(False), "mallopt (keep_freed_memory)": _step_child(True)}
    print("whole step, config b, 1 thread: page faults and system time per step")
    for name, r in alloc.items():
        print(f"  {name:30s} {r['faults']:9.0f} faults  {r['sys_ms']:7.1f} ms system  {r['cpu_ms']:8.1f} ms CPU")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(
            base_commit=BASE, load_average=list(load), repeats=args.repeats,
            kernels={k: dict(before_ms=a, after_ms=b) for k, (a, b) in rows.items()}, allocator=alloc), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
