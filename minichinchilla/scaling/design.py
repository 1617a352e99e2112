"""Designing an IsoFLOP sweep before running it: learning rate per size, and a power analysis.

A sweep costs hours; whether it can answer its question (is a, in N_opt ∝ C^a, known to ±0.05?)
can be checked in seconds beforehand, by simulating it (chapters/10-scaling-laws.md, "Designing
the sweep"):

1. `fit_lr_rule` turns a learning-rate scan (every size at a few rates, one budget) into a rule
   lr_opt(N) = lr_10k · (N/1e4)^γ: per size, a parabola of loss in log lr gives its best rate,
   then a straight line through log lr_opt against log N.
2. `pilot_law` fits L(N, D) = E + A/N^α + B/D^β to the best run of each size of the pilot runs:
   a rough law, good enough to say where the optimum lies and how curved the profiles are.
3. `simulate_design` draws the planned grid's losses from that law plus run-to-run noise
   (σ nats, measured from runs that differ only in seed), runs Approaches 2 and 3 on every
   simulated sweep exactly as the analysis will, and reports the spread of the fitted a: the
   10th–90th percentile width is what the bootstrap interval of the real sweep should come to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .approaches import approach2, power_law_fit
from .fit import fit_parametric
from .parametric import ChinchillaFit

__all__ = ["fit_lr_rule", "best_per_size", "pilot_law", "simulate_design", "DesignSimulation",
           "PILOT_FIT"]

# The pilot law the committed grid is centred on: `pilot_law` of the LR scan's runs
# (results/toy-chinchilla-lr-scan.jsonl); tests/test_scaling_design.py refits and compares.
PILOT_FIT = ChinchillaFit(E=3.62, A=20.0, B=20.0, alpha=0.35, beta=0.35)


def _ok(rows, budget=None):
    rows = [r for r in rows if r.get("status") == "ok"]
    if budget is not None:
        rows = [r for r in rows if np.isclose(r["C_budget"], budget, rtol=1e-6)]
    return rows


def fit_lr_rule(rows, budget):
    """lr_opt(N) = lr_10k·(N/1e4)^γ from the runs at `budget`: returns (lr_10k, γ, per_size) with
    per_size a list of (N, lr_opt, inside) — inside False where the best rate is at an end of the
    scanned range (then that end is used, and the rule is only a bound there)."""
    rows = _ok(rows, budget)
    per_size = []
    for n in sorted({r["N"] for r in rows}):
        pts = sorted((r["lr"], r["loss"]) for r in rows if r["N"] == n)
        if len(pts) < 3:
            continue
        x = np.log([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        c = np.polyfit(x, y, 2)
        inside = c[0] > 0 and x.min() < -c[1] / (2 * c[0]) < x.max()
        best = -c[1] / (2 * c[0]) if inside else x[np.argmin(y)]
        per_size.append((float(n), float(np.exp(best)), bool(inside)))
    if len(per_size) < 2:
        raise ValueError(f"need at least 2 sizes with 3 or more learning rates at {budget:.3g} FLOPs")
    gamma, k = power_law_fit([p[0] / 1e4 for p in per_size], [p[1] for p in per_size])
    return k, gamma, per_size


def best_per_size(rows):
    """The lowest-loss run of each (budget, N): the pilot points a law is fitted to."""
    best = {}
    for r in _ok(rows):
        key = (r["C_budget"], r["N"])
        if key not in best or r["loss"] < best[key]["loss"]:
            best[key] = r
    return [best[k] for k in sorted(best)]


def pilot_law(rows):
    """Approach 3 (Huber δ = 1e-3 on ln loss, total N) on `best_per_size(rows)`: a ChinchillaFit."""
    pts = best_per_size(rows)
    return fit_parametric([r["N"] for r in pts], [r["D"] for r in pts], [r["loss"] for r in pts])


@dataclass
class DesignSimulation:
    """Fitted exponents a over `n_sim` simulated sweeps: `a2`, `a3` arrays (NaN where a fit
    failed); `inside2` the fraction of budgets whose Approach-2 minimum fell inside its sizes;
    `width2`, `width3` the 10th–90th percentile widths; the true a of the law."""

    a_true: float
    a2: np.ndarray
    a3: np.ndarray
    inside2: float
    n_sim: int

    @staticmethod
    def _width(a):
        a = a[np.isfinite(a)]
        return float(np.subtract(*np.quantile(a, [0.9, 0.1]))) if len(a) > 2 else float("nan")

    @property
    def width2(self):
        return self._width(self.a2)

    @property
    def width3(self):
        return self._width(self.a3)

    def summary(self):
        return (f"true a = {self.a_true:.3f}; {self.n_sim} simulated sweeps: Approach 2 a 80% "
                f"width {self.width2:.3f} (minimum inside its sizes at {self.inside2:.0%} of "
                f"budgets), Approach 3 a 80% width {self.width3:.3f}")


def simulate_design(law, budgets_and_sizes, seeds=2, noise=0.004, n_sim=100, rng=0,
                    approach3=True):
    """Simulate the planned sweep `n_sim` times and fit it as the analysis will.

    Inputs:  law: ChinchillaFit the losses come from;  budgets_and_sizes: list of (C, [N, ...]);
             seeds: runs per (C, N);  noise: σ of the additive run-to-run noise (nats);
             approach3: also fit the parametric law (slower: a few starts per simulation).
    Returns: DesignSimulation.
    """
    rng = np.random.default_rng(rng)
    C = np.concatenate([[c] * len(ns) for c, ns in budgets_and_sizes]).astype(np.float64)
    N = np.concatenate([ns for _, ns in budgets_and_sizes]).astype(np.float64)
    D = C / (6 * N)
    mean = law.loss(N, D)  # (R,)
    true = np.array([np.log(law.A), np.log(law.B), np.log(law.E), law.alpha, law.beta])
    starts = true + np.array([[0, 0, 0, 0, 0], [1, -1, 0, 0.05, -0.05], [-1, 1, 0, -0.05, 0.05]])
    a2, a3, inside = [], [], []
    for _ in range(int(n_sim)):
        runs = mean[:, None] + noise * rng.standard_normal((len(mean), int(seeds)))  # (R, S)
        table = {"N": N, "C_budget": C, "loss": runs.mean(axis=1)}
        try:
            r2 = approach2(table)
            a2.append(r2.a)
            inside.append(r2.inside.mean())
        except ValueError:
            a2.append(np.nan)
            inside.append(0.0)
        if approach3:
            NN, DD = np.repeat(N, seeds), np.repeat(D, seeds)
            fit = fit_parametric(NN, DD, runs.ravel(), inits=starts, prescreen_iter=None,
                                 maxiter=200, n_polish=1)
            a3.append(fit.a)
    return DesignSimulation(a_true=law.a, a2=np.array(a2), a3=np.array(a3, dtype=np.float64),
                            inside2=float(np.mean(inside)), n_sim=int(n_sim))
