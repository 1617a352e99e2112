"""How the toy-Chinchilla sweep was designed, from the committed LR scan (chapters/10-scaling-laws.md).

1. the learning-rate rule lr_opt(N) from the scan at 2e11 FLOPs (`design.fit_lr_rule`), and its
   check at 2.5e10 FLOPs (the rule's rate against half and double it);
2. the pilot law (`design.pilot_law`) and its optimum, which centres each budget's sizes;
3. the power analysis (`design.simulate_design`): the committed grid's predicted 80 % widths of a.

Writes results/toy-chinchilla-design.json (notebook 10 reads it):

    python scripts/toy_chinchilla_design.py [--n-sim 200]
"""
import argparse
import json
import sys

import numpy as np

from minichinchilla.scaling.design import (best_per_size, fit_lr_rule, pilot_law, simulate_design,
                                           tilted)
from minichinchilla.scaling.synthetic import make_language
from minichinchilla.scaling.sweep import default_grid, load_results

SCAN = "results/toy-chinchilla-lr-scan.jsonl"
OUT = "results/toy-chinchilla-design.json"


def lr_check(rows, budget):
    """Per size at the check budget: (N, {lr: loss}) and whether the rule's rate was the best
    or within `tol` nats of it."""
    out = []
    at = [r for r in rows if r["status"] == "ok" and np.isclose(r["C_budget"], budget)]
    for n in sorted({r["N"] for r in at}):
        losses = {r["lr"]: r["loss"] for r in at if r["N"] == n}
        out.append({"N": n, "losses": losses})
    return out


def grid_sizes(specs):
    by_budget = {}
    for s in specs:
        by_budget.setdefault(s.C_budget, set()).add(s.params().total)
    return [(c, sorted(ns)) for c, ns in sorted(by_budget.items())]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sim", type=int, default=200)
    p.add_argument("--noise", type=float, default=None,
                   help="run-to-run noise σ in nats (default: measured from the scan)")
    args = p.parse_args(argv)
    rows = [r for r in load_results(SCAN) if r["status"] == "ok"]
    scan_budget = 2e11
    lr_10k, gamma, per_size = fit_lr_rule(rows, scan_budget)
    floor = make_language("hierarchical").eval_floor(16)
    law = pilot_law(rows, E=floor, budget=scan_budget)
    specs = default_grid()
    grid = grid_sizes(specs)
    seeds = len({s.seed for s in specs})
    noise = args.noise if args.noise is not None else 0.004
    sims = {}
    for name, truth in [("pilot law (a = 0.5)", law), ("a = 0.35", tilted(law, 0.35)),
                        ("a = 0.65", tilted(law, 0.65))]:
        sim = simulate_design(truth, grid, seeds=seeds, noise=noise, n_sim=args.n_sim, rng=0)
        sims[name] = dict(width2=sim.width2, width3=sim.width3, inside2=sim.inside2,
                          a_true=sim.a_true, n_sim=sim.n_sim)
        print(name, sim.summary())
    report = dict(scan_budget=scan_budget, lr_10k=lr_10k, lr_exponent=gamma,
                  lr_per_size=per_size, pilot_law=dict(E=law.E, A=law.A, B=law.B,
                                                       alpha=law.alpha, beta=law.beta),
                  pilot_points=[dict(C=r["C_budget"], N=r["N"], loss=r["loss"], lr=r["lr"])
                                for r in best_per_size(rows)],
                  noise=noise, grid=[dict(C=c, N=ns) for c, ns in grid], seeds=seeds,
                  simulation=sims)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(f"lr_opt(N) = {lr_10k:.3g} (N/1e4)^{gamma:.3f}; pilot law {law}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
