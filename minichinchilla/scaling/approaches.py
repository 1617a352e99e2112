"""The three ways Hoffmann et al. (2022) estimate the compute-optimal frontier N_opt(C) ∝ C^a,
D_opt(C) ∝ C^b, run over a table of training results.

* Approach 1 — the envelope of training curves: at each compute C, the lowest loss any run
  reached with C FLOPs, and which N got it (chapters/10-scaling-laws.md, eq. 10.5).
* Approach 2 — IsoFLOP profiles: for each fixed budget C, loss against log N is (nearly) a
  parabola whose minimum is N_opt(C) (chapters/10-scaling-laws.md, eq. 10.6).
* Approach 3 — fit L(N, D) = E + A/N^α + B/D^β to every final loss and read a = β/(α+β) off the
  closed form (chapters/10-scaling-laws.md, eq. 10.2 and 10.4).

The results table is a list of dicts (one per training run) or a dict of equal-length columns:

=============  =================================================================================
``N``          parameters (total, embeddings included, as Chinchilla counts)
``N_nonembed`` optional: parameters without embeddings (Kaplan's count); use ``n_col="N_nonembed"``
``D``          training tokens of the run
``C``          training FLOPs of the run, 6·N·D (a nominal ``C_budget`` column, if present, is
               what Approach 2 groups by: integer step counts make 6·N·D drift from it)
``loss``       final evaluation loss (nats/token)
``n_layers``   ``d_model``, ``seed``: the run's shape and seed (for grouping and plots)
``curve``      optional: list of (tokens, loss) evaluation points during training (Approach 1)
=============  =================================================================================

Each approach checks only the columns it uses and names any that are missing. `load_results` /
`save_results` keep such a table as JSON Lines (one run per line).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomically
from .fit import bootstrap_fit, fit_parametric
from .parametric import ChinchillaFit

__all__ = ["approach1", "approach2", "approach2_bootstrap", "isoflop_vertex", "seed_means", "approach3", "Approach1Result", "Approach2Result",
           "Approach3Result", "BudgetOptimum", "plot_approach1", "plot_approach2", "plot_approach3",
           "load_results", "save_results", "as_columns", "power_law_fit",
           "simulate_curves_table", "simulate_isoflop_table"]

DOCUMENTED_COLUMNS = ("N", "D", "C", "loss", "n_layers", "d_model", "seed")


# ----------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------
def as_columns(table):
    """A results table (list of dicts or dict of columns) as a dict of columns (lists/arrays)."""
    if isinstance(table, dict):
        cols = dict(table)
    elif isinstance(table, (list, tuple)):
        if not all(isinstance(r, dict) for r in table):
            raise TypeError("a results table given as a list must be a list of dicts (one per run)")
        keys = sorted({k for r in table for k in r})
        cols = {k: [r.get(k) for r in table] for k in keys}
    else:
        raise TypeError(f"table must be a list of dicts or a dict of columns, got {type(table)}")
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"table columns have different lengths: {lengths}")
    return cols


def _require(cols, names, who):
    missing = [n for n in names if n not in cols or any(v is None for v in cols[n])]
    if missing:
        raise ValueError(f"{who}: results table is missing column(s) {missing} "
                         f"(has {sorted(cols)})")


def _positive_column(cols, name, who):
    a = np.asarray(cols[name], dtype=np.float64)
    bad = ~np.isfinite(a) | (a <= 0)
    if bad.any():
        raise ValueError(f"{who}: column {name!r} must be positive and finite; row "
                         f"{int(np.argmax(bad))} has {a[np.argmax(bad)]!r}")
    return a


def power_law_fit(C, Y):
    """Least squares in log-log: log Y = a·log C + log k. Returns (a, k) with Y ≈ k·C^a."""
    C = np.asarray(C, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if len(C) < 2 or len(np.unique(C)) < 2:
        raise ValueError(f"need at least 2 distinct budgets to fit a power law, got {len(np.unique(C))}")
    a, logk = np.polyfit(np.log(C), np.log(Y), 1)
    return float(a), float(np.exp(logk))


def save_results(table, path):
    """Write a results table as JSON Lines, one run per line (numpy values become plain JSON)."""
    cols = as_columns(table)
    n = len(next(iter(cols.values()))) if cols else 0

    def plain(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (list, tuple)):
            return [plain(u) for u in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    write_text_atomically(path, "".join(json.dumps({k: plain(v[i]) for k, v in cols.items()}) + "\n"
                                        for i in range(n)))


def load_results(path, warn=None):
    """Read a JSON Lines results table; returns a list of dicts (blank lines are skipped).

    A last line without its newline is what a writer killed mid-line leaves behind: it is
    dropped, with a warning through `warn` (default: stderr), as `train`'s log reader does. Any
    other line that is not JSON means a damaged file: ValueError naming the line."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    rows = []
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if torn.strip():
        message = (f"warning: {path}: the last line is cut short (its writer stopped mid-line); "
                   f"ignoring it")
        if warn is None:
            import sys

            print(message, file=sys.stderr)
        else:
            warn(message)
    return rows


# ----------------------------------------------------------------------------------------------
# Approach 1: the envelope of training curves
# ----------------------------------------------------------------------------------------------
@dataclass
class Approach1Result:
    """N_opt ≈ coef_N·C^a and D_opt ≈ coef_D·C^b, fitted on the `interior` grid points.

    C_grid (G,) FLOPs; envelope (G,) lowest loss at each C; N_opt, D_opt (G,) the run that
    achieved it; interior (G,) True where runs both smaller and larger than the winner reach
    that C (elsewhere the winner may only be the largest/smallest run available); runs: list of
    (N, C array, loss array) for plotting."""

    a: float
    b: float
    coef_N: float
    coef_D: float
    C_grid: np.ndarray
    envelope: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    interior: np.ndarray
    runs: list = field(repr=False)
    n_col: str = "N"


def approach1(table, n_col="N", n_grid=60, interior_only=True):
    """Approach 1 (chapters/10-scaling-laws.md, eq. 10.5): the lower envelope of loss vs FLOPs.

    Every evaluation point of every run is placed at C = 6·N·tokens (N from `n_col`); each run's
    curve is interpolated linearly in log C; on `n_grid` log-spaced budgets the lowest loss over
    the runs that reach that budget is the envelope, and the N of the run achieving it is
    N_opt(C). Power laws N_opt ∝ C^a, D_opt = C/(6·N_opt) ∝ C^b are fitted by least squares in
    log-log, on interior points only unless `interior_only=False`.

    Columns: `n_col` and `curve`; without a `curve` column, `D` and `loss`: the final points of
    all runs of one size (trained to different lengths, as Chinchilla's four cosine horizons per
    size) become that size's curve.
    Returns: Approach1Result.
    """
    cols = as_columns(table)
    who = "approach1"
    _require(cols, [n_col], who)
    N = _positive_column(cols, n_col, who)
    if "curve" in cols and all(c is not None for c in cols["curve"]):
        curves = [np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in cols["curve"]]
    else:
        # no training curves: the final (D, loss) points of runs of the same size, trained to
        # different lengths, form that size's curve (seeds at the same D are averaged)
        _require(cols, ["D", "loss"], who + " (without a 'curve' column)")
        D = _positive_column(cols, "D", who)
        L = np.asarray(cols["loss"], dtype=np.float64)
        sizes = np.unique(N)
        curves = []
        for n in sizes:
            at = N == n
            ds = np.unique(D[at])
            curves.append(np.array([[d, np.mean(L[at & (D == d)])] for d in ds]))
        N = sizes
    runs = []
    for n, cv in zip(N, curves):
        cv = cv[np.isfinite(cv).all(axis=1) & (cv[:, 0] > 0)]
        if len(cv) == 0:
            continue
        cv = cv[np.argsort(cv[:, 0])]
        runs.append((float(n), 6.0 * n * cv[:, 0], cv[:, 1]))
    if len(runs) < 2:
        raise ValueError(f"{who}: need at least 2 runs with evaluation points, got {len(runs)}")
    lo = min(r[1][0] for r in runs)
    hi = max(r[1][-1] for r in runs)
    C_grid = np.logspace(np.log10(lo), np.log10(hi), int(n_grid))  # (G,)
    G = len(C_grid)
    envelope = np.full(G, np.nan)
    N_opt = np.full(G, np.nan)
    interior = np.zeros(G, dtype=bool)
    Ns = np.array([r[0] for r in runs])  # (R,)
    for g, c in enumerate(C_grid):
        # every run whose curve spans c contributes its interpolated loss there
        covering = [i for i, r in enumerate(runs) if r[1][0] <= c * (1 + 1e-12) and c <= r[1][-1] * (1 + 1e-12)]
        if not covering:
            continue
        losses = [np.interp(np.log(c), np.log(runs[i][1]), runs[i][2]) for i in covering]
        best = covering[int(np.argmin(losses))]
        envelope[g], N_opt[g] = min(losses), Ns[best]
        cov_N = Ns[covering]
        interior[g] = bool((cov_N < Ns[best]).any() and (cov_N > Ns[best]).any())
    D_opt = C_grid / (6.0 * N_opt)  # (G,)
    use = interior if interior_only else np.isfinite(N_opt)
    if use.sum() < 2:
        raise ValueError(f"{who}: fewer than 2 budgets where the envelope is interior "
                         f"({int(use.sum())}); train a wider range of sizes or use interior_only=False")
    a, kN = power_law_fit(C_grid[use], N_opt[use])
    b, kD = power_law_fit(C_grid[use], D_opt[use])
    return Approach1Result(a=a, b=b, coef_N=kN, coef_D=kD, C_grid=C_grid, envelope=envelope,
                           N_opt=N_opt, D_opt=D_opt, interior=interior, runs=runs, n_col=n_col)


# ----------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP profiles
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetOptimum:
    """One IsoFLOP profile of Approach 2: its budget C, the parabola's vertex N_opt / D_opt /
    loss_opt, whether the vertex is `inside` the sampled sizes, whether the parabola is `curved`
    upwards, whether it was `used` in the power-law fit, and the runs' sizes N and losses."""

    C: float
    N_opt: float
    D_opt: float
    loss_opt: float
    inside: bool
    curved: bool
    used: bool
    parabola: np.ndarray
    N: np.ndarray
    loss: np.ndarray


@dataclass
class Approach2Result:
    """Per budget k: C[k], the parabola loss ≈ p[k](log N) (numpy poly1d coefficients, highest
    first), N_opt[k] = its minimum, loss_opt[k], inside[k] (minimum within the sampled N range),
    curved[k] (parabola opens upwards), used[k] (entered the power-law fit); points[k] = (N, loss)
    of the runs. Fitted N_opt ≈ coef_N·C^a, D_opt = C/(6 N_opt) ≈ coef_D·C^b."""

    a: float
    b: float
    coef_N: float
    coef_D: float
    C: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    loss_opt: np.ndarray
    inside: np.ndarray
    curved: np.ndarray
    used: np.ndarray
    parabolas: list = field(repr=False)
    points: list = field(repr=False)
    n_col: str = "N"

    @property
    def budgets(self):
        """The same numbers, one `BudgetOptimum` per budget (in increasing C)."""
        return [BudgetOptimum(float(c), float(n), float(d), float(l), bool(i), bool(cu), bool(u),
                              p, pts[0], pts[1])
                for c, n, d, l, i, cu, u, p, pts in zip(self.C, self.N_opt, self.D_opt,
                                                        self.loss_opt, self.inside, self.curved,
                                                        self.used, self.parabolas, self.points)]


def _group_budgets(C, rtol):
    """Group runs whose budgets agree within a relative tolerance; returns a list of index arrays."""
    order = np.argsort(C)
    groups, current = [], [order[0]]
    for i in order[1:]:
        if C[i] <= C[current[0]] * (1 + rtol):
            current.append(i)
        else:
            groups.append(np.array(current))
            current = [i]
    groups.append(np.array(current))
    return groups


def isoflop_vertex(N, loss):
    """One IsoFLOP profile: the parabola loss ≈ p(ln N) (least squares), its vertex N_opt and
    loss there, and whether the vertex lies inside the sampled sizes. Returns (p, N_opt,
    loss_opt, inside); N_opt and loss_opt are NaN when the parabola does not open upwards."""
    x = np.log(np.asarray(N, dtype=np.float64))  # (k,)
    p = np.polyfit(x, np.asarray(loss, dtype=np.float64), 2)  # loss ≈ p0·x² + p1·x + p2
    if p[0] <= 0:
        return p, float("nan"), float("nan"), False
    xs = -p[1] / (2 * p[0])  # vertex of the parabola
    return p, float(np.exp(xs)), float(np.polyval(p, xs)), bool(x.min() <= xs <= x.max())


def approach2(table, n_col="N", budget_rtol=0.1, inside_only=True, budget_col=None):
    """Approach 2 (chapters/10-scaling-laws.md, eq. 10.6): a parabola per IsoFLOP profile.

    Runs are grouped by budget (`budget_col` within `budget_rtol` of the group's smallest;
    default: the nominal `C_budget` column if the table has one, else `C`); in each group
    with ≥ 3 distinct sizes, loss is fitted by least squares as a quadratic in log N; if it opens
    upwards its vertex is N_opt(C). A vertex outside the sampled N range is an extrapolation:
    it is reported (`inside` False) and, with `inside_only`, left out of the power-law fit.

    Columns: `n_col`, `C` (or `budget_col`), `loss`. Returns: Approach2Result (its `budgets`
    property lists one BudgetOptimum per budget).
    """
    cols = as_columns(table)
    who = "approach2"
    if budget_col is None:
        budget_col = "C_budget" if "C_budget" in cols else "C"
    _require(cols, [n_col, budget_col, "loss"], who)
    N = _positive_column(cols, n_col, who)
    C = _positive_column(cols, budget_col, who)
    L = np.asarray(cols["loss"], dtype=np.float64)
    budgets, n_opt, l_opt, inside, curved, parabolas, points = [], [], [], [], [], [], []
    for idx in _group_budgets(C, budget_rtol):
        idx = idx[np.isfinite(L[idx])]
        if len(np.unique(N[idx])) < 3:
            continue  # a parabola needs three sizes
        p, nv, lv, ins = isoflop_vertex(N[idx], L[idx])
        budgets.append(float(np.exp(np.mean(np.log(C[idx])))))
        points.append((N[idx], L[idx]))
        parabolas.append(p)
        curved.append(bool(p[0] > 0))
        n_opt.append(nv)
        l_opt.append(lv)
        inside.append(ins)
    if not budgets:
        raise ValueError(f"{who}: no budget has runs of 3 or more distinct sizes")
    budgets, n_opt, l_opt = np.array(budgets), np.array(n_opt), np.array(l_opt)
    inside, curved = np.array(inside), np.array(curved)
    used = inside if inside_only else curved
    if used.sum() < 2:
        raise ValueError(f"{who}: fewer than 2 budgets with a usable minimum "
                         f"(curved: {int(curved.sum())}, inside the sampled range: "
                         f"{int(inside.sum())}); widen the N range or use inside_only=False")
    d_opt = budgets / (6.0 * n_opt)
    a, kN = power_law_fit(budgets[used], n_opt[used])
    b, kD = power_law_fit(budgets[used], d_opt[used])
    return Approach2Result(a=a, b=b, coef_N=kN, coef_D=kD, C=budgets, N_opt=n_opt, D_opt=d_opt,
                           loss_opt=l_opt, inside=inside, curved=curved, used=used,
                           parabolas=parabolas, points=points, n_col=n_col)


def seed_means(table, n_col="N", budget_col="C_budget"):
    """One row per (budget, size): the mean loss over its seeds. Returns (keys, groups) with keys
    a list of (C, N) and groups the matching list of loss arrays."""
    cols = as_columns(table)
    _require(cols, [n_col, budget_col, "loss"], "seed_means")
    groups = {}
    for c, n, l in zip(cols[budget_col], cols[n_col], cols["loss"]):
        groups.setdefault((float(c), float(n)), []).append(float(l))
    keys = sorted(groups)
    return keys, [np.array(groups[k]) for k in keys]


def approach2_bootstrap(table, n_boot=1000, n_col="N", budget_col="C_budget", seed=0,
                        levels=(0.8, 0.95)):
    """Approach 2 on seed-averaged losses, with percentile-bootstrap intervals for a.

    Each bootstrap resamples the seeds of every (budget, N) point with replacement, averages
    them and refits every parabola and the power law (a bootstrap whose fit fails — fewer than
    2 budgets with an inside minimum — counts as NaN and is reported in `failed`).
    Returns dict(a, samples (n_boot,), ci {level: (lo, hi)}, width {level: hi − lo}, failed,
    inside (per budget, point fit), result (the point Approach2Result))."""
    keys, groups = seed_means(table, n_col, budget_col)
    C = np.array([k[0] for k in keys])
    N = np.array([k[1] for k in keys])

    def fit(losses):
        return approach2({n_col: N, budget_col: C, "loss": losses}, n_col=n_col,
                         budget_col=budget_col)

    point = fit(np.array([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    samples = np.full(int(n_boot), np.nan)
    for b in range(int(n_boot)):
        losses = np.array([g[rng.integers(0, len(g), len(g))].mean() for g in groups])
        try:
            samples[b] = fit(losses).a
        except ValueError:
            pass
    ok = samples[np.isfinite(samples)]
    ci = {lv: tuple(float(v) for v in np.quantile(ok, [(1 - lv) / 2, (1 + lv) / 2]))
          for lv in levels}
    return dict(a=point.a, samples=samples, ci=ci, width={lv: hi - lo for lv, (lo, hi) in ci.items()},
                failed=int(np.isnan(samples).sum()), inside=point.inside, result=point)


# ----------------------------------------------------------------------------------------------
# Approach 3: the parametric fit
# ----------------------------------------------------------------------------------------------
@dataclass
class Approach3Result:
    """The fitted law and its frontier N_opt = coef_N·C^a (coef_N = G·6^(−a)), D_opt = coef_D·C^b;
    `info` the fit diagnostics, `bootstrap` a BootstrapResult when requested; N, D, loss the data."""

    fit: ChinchillaFit
    a: float
    b: float
    coef_N: float
    coef_D: float
    info: object = field(repr=False)
    bootstrap: object = field(default=None, repr=False)
    N: np.ndarray = field(default=None, repr=False)
    D: np.ndarray = field(default=None, repr=False)
    loss: np.ndarray = field(default=None, repr=False)
    n_col: str = "N"


def approach3(table, n_col="N", huber_delta=1e-3, n_boot=0, seed=0, **fit_kwargs):
    """Approach 3 (chapters/10-scaling-laws.md, eq. 10.4): fit L(N, D) to every final loss.

    Columns: `n_col`, `D`, `loss`. `n_boot` > 0 adds bootstrap intervals (`bootstrap_fit`, with
    its own starts). Extra keyword arguments go to the point fit `fit_parametric` only.
    Returns: Approach3Result.
    """
    cols = as_columns(table)
    who = "approach3"
    _require(cols, [n_col, "D", "loss"], who)
    N = np.asarray(cols[n_col], dtype=np.float64)
    D = np.asarray(cols["D"], dtype=np.float64)
    L = np.asarray(cols["loss"], dtype=np.float64)
    fit, info = fit_parametric(N, D, L, huber_delta=huber_delta, return_info=True, **fit_kwargs)
    boot = bootstrap_fit(N, D, L, n_boot=n_boot, seed=seed, huber_delta=huber_delta) if n_boot else None
    # N_opt = G (C/6)^a = (G 6^−a) C^a
    return Approach3Result(fit=fit, a=fit.a, b=fit.b, coef_N=fit.G * 6.0 ** (-fit.a),
                           coef_D=6.0 ** (-fit.b) / fit.G, info=info, bootstrap=boot,
                           N=N, D=D, loss=L, n_col=n_col)


# ----------------------------------------------------------------------------------------------
# plots (matplotlib imported lazily; works with the Agg backend)
# ----------------------------------------------------------------------------------------------
def _axes(ax, n=2):
    """ax=None → a new figure with n panels; one Axes → only the frontier panel; a pair → both."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, axs = plt.subplots(1, n, figsize=(5 * n, 3.8))
        return list(np.atleast_1d(axs))
    if hasattr(ax, "plot"):
        return [None, ax]
    return list(ax)


def _frontier(ax, C, N, use, a, k, label):
    ax.loglog(C[use], N[use], "o", ms=4, label=f"{label} (fitted)")
    if (~use).any():
        ax.loglog(C[~use], N[~use], "o", mfc="none", ms=4, color="grey", label="not used")
    cs = np.logspace(np.log10(np.nanmin(C)), np.log10(np.nanmax(C)), 50)
    ax.loglog(cs, k * cs ** a, "-", label=f"N_opt ∝ C^{a:.3f}")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("N_opt")
    ax.legend(fontsize=8)


def plot_approach1(result, ax=None):
    """Left: every run's loss against FLOPs and their lower envelope; right: N_opt(C) with its
    power law. Returns the list of Axes (the first is None when one Axes was given)."""
    axs = _axes(ax)
    if axs[0] is not None:
        for n, c, l in result.runs:
            axs[0].semilogx(c, l, color="0.75", lw=0.8)
        axs[0].semilogx(result.C_grid, result.envelope, "k-", lw=1.5, label="envelope")
        axs[0].set_xlabel("training FLOPs C")
        axs[0].set_ylabel("loss")
        axs[0].legend(fontsize=8)
    ok = np.isfinite(result.N_opt)
    _frontier(axs[1], result.C_grid[ok], result.N_opt[ok], result.interior[ok], result.a,
              result.coef_N, "envelope winners")
    axs[1].set_title("Approach 1")
    return axs


def plot_approach2(result, ax=None):
    """Left: IsoFLOP profiles (loss vs N per budget) with their parabolas and minima; right:
    N_opt(C) with its power law. Returns the list of Axes."""
    axs = _axes(ax)
    if axs[0] is not None:
        for c, p, (n, l), nopt, lopt in zip(result.C, result.parabolas, result.points,
                                            result.N_opt, result.loss_opt):
            line = axs[0].semilogx(n, l, "o", ms=3, label=f"C = {c:.1e}")[0]
            xs = np.linspace(np.log(n.min()), np.log(n.max()), 50)
            axs[0].semilogx(np.exp(xs), np.polyval(p, xs), "-", color=line.get_color(), lw=1)
            if np.isfinite(nopt):
                axs[0].semilogx([nopt], [lopt], "v", color=line.get_color())
        axs[0].set_xlabel(result.n_col)
        axs[0].set_ylabel("loss")
        axs[0].legend(fontsize=7)
    ok = np.isfinite(result.N_opt)
    _frontier(axs[1], result.C[ok], result.N_opt[ok], result.used[ok], result.a, result.coef_N,
              "parabola minima")
    axs[1].set_title("Approach 2")
    return axs


def plot_approach3(result, ax=None):
    """Left: observed vs fitted loss for every run; right: the fitted frontier N_opt(C) over the
    data's compute range. Returns the list of Axes."""
    axs = _axes(ax)
    if axs[0] is not None:
        pred = result.fit.loss(result.N, result.D)
        axs[0].plot(pred, result.loss, "o", ms=3)
        lims = [min(pred.min(), result.loss.min()), max(pred.max(), result.loss.max())]
        axs[0].plot(lims, lims, "k--", lw=1)
        axs[0].set_xlabel("fitted loss")
        axs[0].set_ylabel("observed loss")
    C = 6.0 * result.N * result.D
    cs = np.logspace(np.log10(C.min()), np.log10(C.max()), 50)
    n_opt, _ = result.fit.compute_optimal(cs)
    axs[1].loglog(cs, n_opt, "-", label=f"N_opt ∝ C^{result.a:.3f}")
    axs[1].set_xlabel("training FLOPs C")
    axs[1].set_ylabel("N_opt")
    axs[1].legend(fontsize=8)
    axs[1].set_title("Approach 3")
    return axs


# ----------------------------------------------------------------------------------------------
# tables simulated from a known law (for tests, notebooks and exercises)
# ----------------------------------------------------------------------------------------------
def _nominal_shape(N):
    """A plausible (n_layers, d_model) for N parameters with d_model = 64·n_layers and N ≈ 12·L·d²."""
    L = max(1, int(round((N / (12 * 64 ** 2)) ** (1 / 3))))
    return L, 64 * L


def simulate_curves_table(fit, N_values, tokens, noise=0.0, rng=None, vocab_size=0):
    """Runs of sizes `N_values`, each evaluated after every count in `tokens`, with loss
    `fit.loss(N, tokens)`·exp(noise·ε): an idealised Approach-1 sweep (every point is as good as
    the final point of a run of that length). Returns a list of dicts with all documented columns."""
    rng = np.random.default_rng(rng)
    tokens = np.asarray(tokens, dtype=np.float64)
    rows = []
    for n in np.asarray(N_values, dtype=np.float64):
        loss = fit.loss(n, tokens) * np.exp(noise * rng.standard_normal(tokens.shape))
        L, d = _nominal_shape(n)
        rows.append({"N": float(n), "N_nonembed": float(max(n - vocab_size * d, 1.0)),
                     "D": float(tokens[-1]), "C": 6.0 * n * float(tokens[-1]),
                     "loss": float(loss[-1]), "n_layers": L, "d_model": d, "seed": 0,
                     "curve": [[float(t), float(v)] for t, v in zip(tokens, loss)]})
    return rows


def simulate_isoflop_table(fit, budgets, n_models=9, span=8.0, noise=0.0, rng=None, jitter=0.3):
    """IsoFLOP runs: for each budget C, `n_models` sizes log-spaced from N*/span to N*·span around
    the law's optimum N* (shifted by a random factor exp(±jitter) so the grid is not centred
    exactly), D = C/(6N), loss = fit.loss(N, D)·exp(noise·ε). Returns a list of dicts."""
    rng = np.random.default_rng(rng)
    rows = []
    for c in np.asarray(budgets, dtype=np.float64):
        n_star, _ = fit.compute_optimal(c)
        centre = n_star * np.exp(rng.uniform(-jitter, jitter))
        for n in np.geomspace(centre / span, centre * span, n_models):
            d = c / (6.0 * n)
            L, dm = _nominal_shape(n)
            rows.append({"N": float(n), "D": float(d), "C": float(c),
                         "loss": float(fit.loss(n, d) * np.exp(noise * rng.standard_normal())),
                         "n_layers": L, "d_model": dm, "seed": 0})
    return rows
