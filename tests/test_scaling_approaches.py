"""Approaches 1–3 recover the exponents of a known law; tables, JSONL round trip, plots, errors."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minichinchilla.scaling.approaches import (approach1, approach2, approach3, load_results,  # noqa: E402
                                               plot_approach1, plot_approach2, plot_approach3,
                                               save_results, simulate_curves_table,
                                               simulate_isoflop_table)
from minichinchilla.scaling.parametric import EPOCH_FIT, PAPER_FIT  # noqa: E402


@pytest.fixture(scope="module")
def curves():
    return simulate_curves_table(PAPER_FIT, np.logspace(7, 10, 31), np.logspace(8, 12, 80),
                                 vocab_size=32_000)


@pytest.fixture(scope="module")
def isoflop():
    return simulate_isoflop_table(PAPER_FIT, np.logspace(18, 22, 5), rng=0)


def test_approach1_recovers_exponent(curves):
    r = approach1(curves)
    # discrete model sizes (10 per decade) make N_opt a staircase: a within 0.005 measured 0.0016
    assert r.a == pytest.approx(PAPER_FIT.a, abs=0.01)
    assert r.a + r.b == pytest.approx(1.0)
    assert r.interior.sum() >= 20 and not r.interior.all()  # the ends are not interior


def test_approach1_from_final_points_only():
    """Without curves: several runs per size, each trained to a different length (two seeds)."""
    rows = []
    for seed in (0, 1):
        for r in simulate_curves_table(PAPER_FIT, np.logspace(7, 10, 31), np.logspace(8, 12, 40),
                                       noise=1e-3, rng=seed):
            rows += [dict(r, D=t, loss=l, seed=seed, curve=None) for t, l in r["curve"]]
    for r in rows:
        del r["curve"]
    res = approach1(rows)
    assert res.a == pytest.approx(PAPER_FIT.a, abs=0.01)
    assert len(res.runs) == 31


def test_approach2_recovers_exponent_and_reports_inside(isoflop):
    r = approach2(isoflop)
    assert r.a == pytest.approx(PAPER_FIT.a, abs=0.005)
    assert r.inside.all() and r.used.all() and len(r.C) == 5
    assert [b.inside for b in r.budgets] == [True] * 5 and r.budgets[2].C == r.C[2]
    assert len(r.budgets[0].N) == 9
    # the parabola's vertex is near the true optimum of each budget (the profile is not exactly
    # a parabola in log N, hence a few per cent)
    n_true, _ = PAPER_FIT.compute_optimal(r.C)
    np.testing.assert_allclose(r.N_opt, n_true, rtol=0.1)


def test_approach2_flags_minimum_outside_the_sampled_range():
    rows = simulate_isoflop_table(EPOCH_FIT, np.logspace(18, 21, 4), rng=1)
    # shift one budget's models far to the right of its optimum: minimum is an extrapolation
    c0 = rows[0]["C"]
    shifted = [dict(r, N=r["N"] * 30, D=c0 / (6 * r["N"] * 30),
                    loss=EPOCH_FIT.loss(r["N"] * 30, c0 / (6 * r["N"] * 30)))
               for r in rows if r["C"] == c0]
    table = shifted + [r for r in rows if r["C"] != c0]
    r = approach2(table)
    assert not r.inside[0] and r.inside[1:].all()
    assert not r.used[0]
    assert r.a == pytest.approx(EPOCH_FIT.a, abs=0.01)


def test_approach3_recovers_exponent(isoflop):
    r = approach3(isoflop)
    assert r.a == pytest.approx(PAPER_FIT.a, abs=1e-4)
    n_opt, _ = PAPER_FIT.compute_optimal(1e21)
    assert r.coef_N * 1e21 ** r.a == pytest.approx(n_opt, rel=1e-3)


def test_approach2_groups_by_nominal_budget_when_present(isoflop):
    """Actual 6ND drifts from the nominal budget (whole optimiser steps); C_budget groups exactly."""
    rng = np.random.default_rng(0)
    drifted = [dict(r, C_budget=r["C"], C=r["C"] * rng.uniform(0.8, 1.25)) for r in isoflop]
    r = approach2(drifted)
    assert len(r.C) == 5 and r.a == pytest.approx(approach2(isoflop).a)
    assert len(approach2(drifted, budget_col="C").C) > 5  # grouping by drifted C splits budgets


def test_all_three_agree_on_dict_of_columns(isoflop):
    cols = {k: [row[k] for row in isoflop] for k in isoflop[0]}
    assert approach2(cols).a == pytest.approx(approach2(isoflop).a)


def test_non_embedding_column(curves):
    r = approach1(curves, n_col="N_nonembed")
    assert r.n_col == "N_nonembed" and np.isfinite(r.a)
    with pytest.raises(ValueError, match="N_nonembed"):
        approach2(simulate_isoflop_table(PAPER_FIT, [1e19, 1e20], rng=0), n_col="N_nonembed")


def test_missing_columns_are_named(isoflop):
    no_loss = [{k: v for k, v in r.items() if k != "loss"} for r in isoflop]
    with pytest.raises(ValueError, match=r"\['loss'\]"):
        approach2(no_loss)
    with pytest.raises(ValueError, match=r"\['loss'\]"):
        approach3(no_loss)
    no_c = [{k: v for k, v in r.items() if k not in ("C", "N")} for r in isoflop]
    with pytest.raises(ValueError, match=r"\['N', 'C'\]"):
        approach2(no_c)
    with pytest.raises(ValueError, match="positive"):
        approach2([dict(r, N=-1.0) for r in isoflop])


def test_jsonl_round_trip(tmp_path, curves):
    path = tmp_path / "runs.jsonl"
    save_results(curves[:5], path)
    back = load_results(path)
    assert len(back) == 5 and back[0]["curve"][0] == list(curves[0]["curve"][0])
    assert back[2]["N"] == curves[2]["N"]
    (tmp_path / "bad.jsonl").write_text('{"N": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_results(tmp_path / "bad.jsonl")


def test_plots_are_agg_safe(curves, isoflop):
    import matplotlib.pyplot as plt

    for fn, res in ((plot_approach1, approach1(curves)), (plot_approach2, approach2(isoflop)),
                    (plot_approach3, approach3(isoflop, prescreen_iter=5, keep=32))):
        axs = fn(res)
        assert len(axs) == 2 and axs[1].get_xlabel() == "training FLOPs C"
        _, ax = plt.subplots()
        assert fn(res, ax=ax)[1] is ax
        plt.close("all")
