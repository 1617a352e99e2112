"""Turn the benchmark's JSON (and benchmarks/ablation.py's) into the Markdown tables of
benchmarks/cpu-results.md.

Usage (repository root):
    python -m minichinchilla bench --configs a,b --threads 1,2 --repeats 10 --overhead --profile --small \
        --json benchmarks/cpu-results.json
    python benchmarks/ablation.py --json benchmarks/ablation.json
    python benchmarks/render.py benchmarks/cpu-results.json [benchmarks/ablation.json [before.json]]
"""
from __future__ import annotations

import json
import sys


def main_table(results):
    lines = ["| config | threads | ours ms (min–max) | PyTorch ms (min–max) | time ratio | CPU-time ratio "
             "| ours GFLOP/s | MFU ours | MFU PyTorch | peak MiB ours / PyTorch | engine overhead (CPU time) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        o, t = r["ours"], r.get("torch")
        mem = f"{o['peak_mib']:.0f} / {t['peak_mib']:.0f}" if t and o["peak_mib"] is not None else "n/a"
        eng = f"{100 * r['engine_overhead_cpu']:+.1f}%" if "engine_overhead_cpu" in r else "—"
        lines.append(
            f"| {r['config']} | {r['threads']} | {o['ms_median']:.1f} ({o['ms_min']:.0f}–{o['ms_max']:.0f}) | "
            + (f"{t['ms_median']:.1f} ({t['ms_min']:.0f}–{t['ms_max']:.0f}) | {r['time_ratio']:.2f}× | "
               f"{r['cpu_time_ratio']:.2f}× | " if t else "— | — | — | ")
            + f"{o['gflops']:.1f} | {100 * o['mfu']:.0f}% | " + (f"{100 * t['mfu']:.0f}% | " if t else "— | ")
            + f"{mem} | {eng} |")
    return "\n".join(lines)


def profile_table(profile):
    names = list(profile)
    keys = [k for k in profile[names[0]] if k != "total"]
    lines = ["| where (1 thread, CPU ms per step) | " + " | ".join(f"config {n}" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for k in keys + ["total"]:
        cells = []
        for n in names:
            v, tot = profile[n][k], profile[n]["total"]
            cells.append(f"{v:.1f} ({100 * v / tot:.0f}%)" if k != "total" else f"**{v:.1f}**")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kernel_table(kernels):
    out = []
    for name, rows in kernels.items():
        out += [f"config {name}:", "",
                "| kernel (forward + backward) | calls per step | ours ms | PyTorch ms | ratio |",
                "|---|---:|---:|---:|---:|"]
        for r in rows:
            out.append(f"| {r['kernel']} | {r['calls_per_step']} | {r['ours_ms']:.2f} | {r['torch_ms']:.2f} | "
                       f"{r['ours_ms'] / r['torch_ms']:.2f} |")
        out += ["", "(The QKV and attention-output rows are also inside the attention-layer row.)", ""]
    return "\n".join(out)


def small_table(small, estimate):
    lines = ["| model | parameters | ours ms/step (CPU) | ours tokens/s | ours GFLOP/s | PyTorch ms/step (CPU) "
             "| PyTorch tokens/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in small:
        o, t = r["ours"], r.get("torch")
        tok = r["spec"]["batch"] * r["spec"]["seq_len"]
        lines.append(f"| {r['config']} | {r['params']:,} | {o['ms_median']:.2f} ({o['cpu_ms_median']:.2f}) | "
                     f"{o['tokens_per_s']:,.0f} | {r['flops_per_step'] / (o['cpu_ms_median'] / 1e3) / 1e9:.1f} | "
                     + (f"{t['ms_median']:.2f} ({t['cpu_ms_median']:.2f}) | {t['tokens_per_s']:,.0f} |" if t else "— | — |"))
        del tok
    if estimate:
        lines += ["", f"Default IsoFLOP grid (`scaling.sweep.default_grid()`): {estimate['runs']} runs, about "
                      f"{60 * estimate['total_hours']:.0f} minutes on {estimate['workers']} single-threaded "
                      f"worker(s), i.e. {estimate['runs_per_hour']:.0f} runs per hour "
                      "(`bench.sweep_estimate`, from the CPU time per step above)."]
    return "\n".join(lines)


def ablation_table(ab):
    lines = ["| kernel, forward + backward (config b shapes, 1 thread, CPU ms) | before | after | speed-up |",
             "|---|---:|---:|---:|"]
    for k, r in ab["kernels"].items():
        lines.append(f"| {k} | {r['before_ms']:.2f} | {r['after_ms']:.2f} | {r['before_ms'] / r['after_ms']:.2f}× |")
    lines += ["", "| whole step, config b, 1 thread | page faults per step | system ms per step | CPU ms per step |",
              "|---|---:|---:|---:|"]
    for k, r in ab["allocator"].items():
        lines.append(f"| {k} | {r['faults']:,.0f} | {r['sys_ms']:.1f} | {r['cpu_ms']:.1f} |")
    return "\n".join(lines)


def before_after_table(before, after):
    """Ratio to PyTorch before the performance work and now, per config and thread count."""
    b = {(r["config"], r["threads"]): r for r in before}
    lines = ["| config | threads | before: ours / PyTorch time | before: memory | now: time | now: memory |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in after:
        old = b.get((r["config"], r["threads"]))
        if old is None or "torch" not in r:
            continue
        lines.append(f"| {r['config']} | {r['threads']} | {old['time_ratio']:.2f}× | {old.get('memory_ratio', float('nan')):.2f}× | "
                     f"{r['time_ratio']:.2f}× | {r.get('memory_ratio', float('nan')):.2f}× |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    data = json.load(open(argv[0]))
    env = data["environment"]
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    print()
    print(main_table(data["results"]))
    if data.get("profile"):
        print()
        print(profile_table(data["profile"]))
    if data.get("kernels"):
        print()
        print(kernel_table(data["kernels"]))
    if data.get("small"):
        print()
        print(small_table(data["small"], data.get("sweep_estimate")))
    if len(argv) > 1:
        print()
        print(ablation_table(json.load(open(argv[1]))))
    if len(argv) > 2:
        print()
        print(before_after_table(json.load(open(argv[2]))["results"], data["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
