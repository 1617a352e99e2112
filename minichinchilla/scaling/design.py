"""Designing an IsoFLOP sweep before running it: learning rate per size, and a power analysis.

A sweep costs hours; whether it can answer its question (is a, in N_opt ∝ C^a, known to ±0.05?)
can be checked in seconds beforehand, by simulating it (chapters/10-scaling-laws.md, "Designing
the sweep"):

1. `fit_lr_rule` turns a learning-rate scan (every size at a few rates, one budget) into a rule
   lr_opt(N) = lr_10k · (N/1e4)^γ: per size, a parabola of loss in log lr gives its best rate,
   then a straight line through log lr_opt against log N.
2. `pilot_law` fits L(N, D) = E + A/N^α + B/D^α, E the exact floor, to the best run of each size
   at the scan budget: a rough law, good enough to say where the optimum lies and how curved the
   profiles are; `tilted` moves its exponent a to ask how the design copes if a is not 0.5.
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

__all__ = ["fit_lr_rule", "best_per_size", "pilot_law", "tilted", "simulate_design",
           "DesignSimulation", "PILOT_FIT"]

# The pilot law the committed grid is centred on: `pilot_law` of the LR scan's runs at 2e11 FLOPs
# (results/toy-chinchilla-lr-scan.jsonl), E the exact floor; tests/test_scaling_design.py refits it.
PILOT_FIT = ChinchillaFit(E=3.62411, A=43.517, B=1902.9, alpha=0.7354, beta=0.7354)


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


def pilot_law(rows, E, budget=None):
    """A rough law from one IsoFLOP profile: L = E + A/N^α + B/D^α with the floor E given and
    α = β (so a = 0.5, Chinchilla's value, is the prior), A, B and α fitted by least squares in
    ln(L − E) to the best run of each size at `budget` (default: the budget with most sizes).

    At one budget D = C/(6N), so the profile is E + A·N^−α + B·(C/6)^−α·N^α: its width fixes α
    and its position the ratio A/B. Returns a ChinchillaFit."""
    from scipy.optimize import least_squares

    pts = best_per_size(rows)
    if budget is None:
        counts = {}
        for r in pts:
            counts[r["C_budget"]] = counts.get(r["C_budget"], 0) + 1
        budget = max(counts, key=counts.get)
    pts = [r for r in pts if np.isclose(r["C_budget"], budget)]
    if len(pts) < 4:
        raise ValueError(f"pilot_law needs at least 4 sizes at one budget, got {len(pts)}")
    N = np.array([r["N"] for r in pts], dtype=np.float64)
    D = np.array([r["D"] for r in pts], dtype=np.float64)
    L = np.array([r["loss"] for r in pts], dtype=np.float64)
    if np.any(L <= E):
        raise ValueError("every pilot loss must lie above the floor E")

    def resid(t):  # t = (ln A, ln B, α)
        return np.log(np.exp(t[0]) * N ** -t[2] + np.exp(t[1]) * D ** -t[2]) - np.log(L - E)

    t = least_squares(resid, x0=[np.log(10.0), np.log(10.0), 0.4],
                      bounds=([-20, -20, 0.05], [30, 30, 2.0])).x
    return ChinchillaFit(E=float(E), A=float(np.exp(t[0])), B=float(np.exp(t[1])),
                         alpha=float(t[2]), beta=float(t[2]))


def tilted(law, a):
    """The same law with its frontier exponent moved to `a` = β/(α+β), keeping α + β and the
    optimum at the geometric middle of 1e10–1e12 FLOPs: to ask how a design copes if a is not 0.5."""
    s = law.alpha + law.beta
    beta, alpha = a * s, (1 - a) * s
    C0 = 1e11
    n0, d0 = law.compute_optimal(C0)
    # keep each term's size at the old optimum: A·n0^−α = A0·n0^−α0, B·d0^−β = B0·d0^−β0
    A = law.A * n0 ** (alpha - law.alpha)
    B = law.B * d0 ** (beta - law.beta)
    return ChinchillaFit(E=law.E, A=A, B=B, alpha=alpha, beta=beta)


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
