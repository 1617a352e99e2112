"""The toy-Chinchilla analysis with bootstrap intervals (chapters/10-scaling-laws.md, notebook 10).

Over every finished run of results/toy-chinchilla.jsonl:

* Approach 1 (envelope of the training curves), Approach 2 (a parabola in ln N through the
  seed-averaged losses of each budget; bootstrap resampling the seeds of each (budget, N) point)
  and Approach 3 (Huber δ = 1e-3 on ln loss, N = total parameters; bootstrap resampling runs
  i.i.d.), each with N counted with and without embeddings;
* 80 % and 95 % percentile intervals of a (N_opt ∝ C^a), Approach 3's E against the exact
  floor and the oracle loss on the validation windows;
* the learning-rate bias, from the LR scan: where the IsoFLOP minimum at the scan budget falls
  with each single rate, against the rate per size.

Writes results/toy-chinchilla-analysis.json, which notebook 10 reads and asserts:

    python scripts/toy_chinchilla_analysis.py [--n-boot 1000] [--n-boot3 200]
"""
import argparse
import json
import sys
import time

import numpy as np

from minichinchilla.scaling.approaches import approach1, approach2_bootstrap, isoflop_vertex
from minichinchilla.scaling.fit import bootstrap_fit
from minichinchilla.scaling.sweep import load_results

RUNS = "results/toy-chinchilla.jsonl"
SCAN = "results/toy-chinchilla-lr-scan.jsonl"
OUT = "results/toy-chinchilla-analysis.json"
LEVELS = (0.8, 0.95)


def _interval(samples, level):
    s = np.asarray(samples)
    s = s[np.isfinite(s)]
    return [float(v) for v in np.quantile(s, [(1 - level) / 2, (1 + level) / 2])]


def approach3_boot(rows, n_col, n_boot, seed=0):
    N = np.array([r[n_col] for r in rows], dtype=np.float64)
    D = np.array([r["D"] for r in rows], dtype=np.float64)
    L = np.array([r["loss"] for r in rows], dtype=np.float64)
    boot = bootstrap_fit(N, D, L, n_boot=n_boot, seed=seed)
    f = boot.point
    out = dict(E=f.E, A=f.A, B=f.B, alpha=f.alpha, beta=f.beta, a=f.a, b=f.b,
               rms_rel_resid=float(np.sqrt(np.mean((f.loss(N, D) / L - 1) ** 2))))
    for name in ("a", "E"):
        out[f"{name}_ci"] = {str(lv): _interval(boot.samples[name], lv) for lv in LEVELS}
    return out


def approach2_summary(rows, n_col, n_boot):
    b = approach2_bootstrap(rows, n_boot=n_boot, n_col=n_col, levels=LEVELS)
    r = b["result"]
    return dict(a=b["a"], a_ci={str(k): list(v) for k, v in b["ci"].items()},
                width={str(k): v for k, v in b["width"].items()}, failed=b["failed"],
                budgets=[dict(C=o.C, N_opt=o.N_opt, D_opt=o.D_opt, loss_opt=o.loss_opt,
                              inside=o.inside, N_min=float(np.min(o.N)), N_max=float(np.max(o.N)))
                         for o in r.budgets])


def lr_bias(scan_rows, max_n=70_000):
    """At the scan budget, over the sizes up to `max_n` (the sweep's range there): the loss each
    size pays at every single rate against its own best rate, and where the IsoFLOP parabola's
    vertex falls with one rate for every size versus the best rate per size."""
    budget = 2e11
    at = [r for r in scan_rows if np.isclose(r["C_budget"], budget) and r["N"] <= max_n]
    sizes = sorted({r["N"] for r in at})
    best = {n: min((r for r in at if r["N"] == n), key=lambda r: r["loss"]) for n in sizes}

    def vertex(pts):
        _, n_opt, loss_opt, inside = isoflop_vertex([r["N"] for r in pts], [r["loss"] for r in pts])
        return dict(N_opt=n_opt, loss_opt=loss_opt, inside=inside)

    out = {"budget": budget, "sizes": sizes, "fixed": {},
           "per_size": dict(vertex(list(best.values())),
                            best_lr=[best[n]["lr"] for n in sizes],
                            best_loss=[best[n]["loss"] for n in sizes])}
    for lr in sorted({r["lr"] for r in at}):
        pts = {r["N"]: r for r in at if r["lr"] == lr}
        if len(pts) == len(sizes):
            out["fixed"][str(lr)] = dict(vertex(list(pts.values())),
                                         penalty=[pts[n]["loss"] - best[n]["loss"] for n in sizes])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-boot", type=int, default=1000, help="Approach 2 bootstraps")
    p.add_argument("--n-boot3", type=int, default=200, help="Approach 3 bootstraps")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = [r for r in load_results(RUNS) if r["status"] == "ok"]
    out = dict(n_runs=len(rows), budgets=sorted({r["C_budget"] for r in rows}),
               seeds=sorted({r["seed"] for r in rows}), floor=rows[0]["floor"],
               oracle_loss=rows[0]["oracle_loss"],
               elapsed_s_total=float(sum(r["elapsed_s"] for r in rows)))
    assert len({r["floor"] for r in rows}) == 1 and len({r["oracle_loss"] for r in rows}) == 1
    for n_col in ("N", "N_nonembed"):
        a1 = approach1(rows, n_col=n_col)
        out[f"approach1_{n_col}"] = dict(a=a1.a, interior=int(a1.interior.sum()))
        out[f"approach2_{n_col}"] = approach2_summary(rows, n_col, args.n_boot)
        out[f"approach3_{n_col}"] = approach3_boot(rows, n_col, args.n_boot3)
    out["lr_bias"] = lr_bias([r for r in load_results(SCAN) if r["status"] == "ok"])
    out["seconds"] = time.perf_counter() - t0
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    a2, a3 = out["approach2_N"], out["approach3_N"]
    print(f"{len(rows)} runs; Approach 2 a = {a2['a']:.3f} 80% {a2['a_ci']['0.8']}; "
          f"Approach 3 a = {a3['a']:.3f} 80% {a3['a_ci']['0.8']}, E = {a3['E']:.4f} "
          f"(floor {out['floor']:.4f}, oracle {out['oracle_loss']:.4f}); {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
