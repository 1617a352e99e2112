"""Designing the sweep: the LR rule and pilot law are what the committed scan says, and the power
analysis sees what it should (tighter with more seeds, right on a noiseless law)."""
import pathlib

import numpy as np
import pytest

from minichinchilla.scaling import sweep
from minichinchilla.scaling.design import (PILOT_FIT, fit_lr_rule, pilot_law, simulate_design,
                                           tilted)
from minichinchilla.scaling.parametric import ChinchillaFit
from minichinchilla.scaling.sweep import RunSpec, load_results

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCAN = ROOT / "results" / "toy-chinchilla-lr-scan.jsonl"
LAW = ChinchillaFit(E=3.6, A=80.0, B=5000.0, alpha=0.8, beta=0.8)


def scan_rows():
    rows = [r for r in load_results(SCAN) if r["status"] == "ok"]
    if not rows:
        pytest.skip("no committed LR scan")
    return rows


def test_lr_rule_in_the_package_is_the_committed_scans_fit():
    lr_10k, gamma, per_size = fit_lr_rule(scan_rows(), 2e11)
    assert sweep.LR_AT_10K == pytest.approx(lr_10k, rel=0.01)
    assert sweep.LR_EXPONENT == pytest.approx(gamma, abs=0.01)
    assert gamma < 0  # bigger models want smaller steps
    assert len(per_size) >= 5


def test_pilot_law_in_the_package_is_the_committed_scans_fit():
    from minichinchilla.scaling.synthetic import make_language

    law = pilot_law(scan_rows(), E=make_language("hierarchical").eval_floor(16), budget=2e11)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(PILOT_FIT, name) == pytest.approx(getattr(law, name), rel=0.01), name


def test_the_grid_is_centred_on_the_pilot_optimum():
    specs = sweep.default_grid()
    for C in sorted({s.C_budget for s in specs}):
        ns = np.log(sorted({s.params().total for s in specs if s.C_budget == C}))
        n_opt = np.log(PILOT_FIT.compute_optimal(C)[0])
        assert ns.min() < n_opt < ns.max(), C


def test_fit_lr_rule_recovers_a_planted_rule():
    rows = []
    for n in (3e3, 1e4, 3e4, 1e5):
        best = 5e-3 * (n / 1e4) ** -0.4
        for lr in (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2):
            rows.append(dict(status="ok", C_budget=1e11, N=n, lr=lr,
                             loss=3.7 + 0.02 * np.log(lr / best) ** 2))
    lr_10k, gamma, per_size = fit_lr_rule(rows, 1e11)
    assert lr_10k == pytest.approx(5e-3, rel=1e-6) and gamma == pytest.approx(-0.4, abs=1e-6)
    assert all(inside for _, _, inside in per_size)


def test_pilot_law_recovers_a_planted_profile():
    rows = []
    for n in np.geomspace(3e3, 1e5, 7):
        d = 2e11 / (6 * n)
        rows.append(dict(status="ok", C_budget=2e11, N=n, D=d, lr=1e-2, loss=LAW.loss(n, d)))
    law = pilot_law(rows, E=LAW.E)
    assert law.alpha == pytest.approx(0.8, rel=1e-4) and law.A == pytest.approx(80.0, rel=1e-3)


def _grid(law, k=7, span=4.0):
    budgets = 1.25e10 * 2.0 ** np.arange(7)
    return [(c, list(np.geomspace(law.compute_optimal(c)[0] / span,
                                  law.compute_optimal(c)[0] * span, k))) for c in budgets]


def test_power_analysis_without_noise_is_exact_and_more_seeds_narrow_it():
    exact = simulate_design(LAW, _grid(LAW), seeds=1, noise=0.0, n_sim=3, approach3=True)
    assert np.allclose(exact.a3, LAW.a, atol=1e-3) and exact.width3 < 1e-3
    assert np.allclose(exact.a2, LAW.a, atol=0.02)  # a parabola is not exactly the profile
    one = simulate_design(LAW, _grid(LAW), seeds=1, noise=0.01, n_sim=60, approach3=False, rng=1)
    four = simulate_design(LAW, _grid(LAW), seeds=4, noise=0.01, n_sim=60, approach3=False, rng=1)
    assert four.width2 < one.width2
    assert 0 < one.inside2 <= 1


def test_tilted_law_moves_only_the_exponent():
    t = tilted(LAW, 0.4)
    assert t.a == pytest.approx(0.4) and t.alpha + t.beta == pytest.approx(LAW.alpha + LAW.beta)
    n0, d0 = LAW.compute_optimal(1e11)
    assert t.loss(n0, d0) == pytest.approx(LAW.loss(n0, d0))


def test_runs_of_the_design_train_at_least_400_steps_with_clipping():
    spec = RunSpec(1.25e10, 16, 2, 2, lr=1e-2)
    assert spec.steps() >= 400 and spec.grad_clip == 1.0 and spec.eval_windows == 2048
