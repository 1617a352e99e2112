"""Approach 3's fit: objective gradient, recovery of known parameters, the L-BFGS pitfall, speed."""
import time

import numpy as np
import pytest
from scipy.optimize import minimize

from minichinchilla.scaling.fit import (batched_lbfgs, bootstrap_fit, fit_parametric,
                                        objective_and_grad, paper_grid)
from minichinchilla.scaling.parametric import EPOCH_FIT, PAPER_FIT


def grid_points(n_n=15, n_d=14):
    Ns, Ds = np.logspace(7.5, 10, n_n), np.logspace(9, 12, n_d)
    NN, DD = np.meshgrid(Ns, Ds)
    return NN.ravel(), DD.ravel()


def test_paper_grid_has_4500_starts():
    g = paper_grid()
    assert g.shape == (4500, 5)
    assert sorted(set(g[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(set(g[:, 0])) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


@pytest.mark.parametrize("delta", [1e-3, 10.0])  # linear (L1-like) and quadratic regimes
def test_objective_gradient_matches_finite_differences(delta):
    rng = np.random.default_rng(0)
    N, D = grid_points(5, 4)
    L = PAPER_FIT.loss(N, D) * np.exp(rng.normal(0, 0.01, N.shape))
    x, y, l = np.log(N), np.log(D), np.log(L)
    theta = np.array([6.0, 6.1, 0.5, 0.33, 0.29])
    w = rng.integers(0, 3, size=N.shape).astype(float)
    f, g = objective_and_grad(theta, x, y, l, delta, weights=w)
    h = 1e-6
    num = np.array([(objective_and_grad(theta + h * e, x, y, l, delta, weights=w)[0]
                     - objective_and_grad(theta - h * e, x, y, l, delta, weights=w)[0]) / (2 * h)
                    for e in np.eye(5)])
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6 * max(1.0, abs(f)))
    # the batched call agrees with the single one, and blocking does not change results
    F, G = objective_and_grad(np.stack([theta, theta + 0.1]), x, y, l, delta, weights=w,
                              block_elems=1)
    assert F[0] == pytest.approx(f) and np.allclose(G[0], g)


def test_batched_lbfgs_minimises_independent_quadratics():
    rng = np.random.default_rng(1)
    scales = rng.uniform(0.5, 50.0, size=(7, 3))
    centres = rng.normal(size=(7, 3))

    def fun(X, idx):
        r = X - centres[idx]
        return 0.5 * (scales[idx] * r * r).sum(1), scales[idx] * r

    X, F, n_iter, conv = batched_lbfgs(fun, np.zeros((7, 3)))
    np.testing.assert_allclose(X, centres, atol=1e-7)
    assert conv.all()


def test_noise_free_recovery_is_exact():
    N, D = grid_points(8, 8)
    fit = fit_parametric(N, D, PAPER_FIT.loss(N, D), inits=paper_grid()[::5])
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(fit, k) == pytest.approx(getattr(PAPER_FIT, k), rel=1e-6), k


@pytest.mark.parametrize("truth, n_n, n_d, every", [(PAPER_FIT, 15, 14, 1), (EPOCH_FIT, 10, 10, 9)])
def test_recovery_with_noise_and_timing(truth, n_n, n_d, every):
    """210 points with all 4,500 starts; 100 points with every 9th start (500), to save time."""
    rng = np.random.default_rng(0)
    N, D = grid_points(n_n, n_d)
    L = truth.loss(N, D) * np.exp(rng.normal(0, 0.005, N.shape))
    t0 = time.perf_counter()
    fit, info = fit_parametric(N, D, L, inits=paper_grid()[::every], return_info=True)
    seconds = time.perf_counter() - t0
    assert info.n_starts == 4500 // every
    assert seconds < 60, seconds  # ~3 s on 2 idle cores; the target is < 30 s, 60 allows for load
    # Honest tolerances: with 0.5 % noise E and the exponents are well determined, A and B much
    # less (A/N^α and B/D^β trade off against E over three decades). Measured errors: E 1 %,
    # α, β < 0.01, a < 0.006, A and B up to 15 %.
    assert fit.E == pytest.approx(truth.E, rel=0.02)
    assert fit.alpha == pytest.approx(truth.alpha, abs=0.02)
    assert fit.beta == pytest.approx(truth.beta, abs=0.02)
    assert fit.a == pytest.approx(truth.a, abs=0.015)
    assert fit.A == pytest.approx(truth.A, rel=0.3)
    assert fit.B == pytest.approx(truth.B, rel=0.3)
    # the fit is at least as good as the truth on the objective it minimises
    f_truth = objective_and_grad(np.log([truth.A, truth.B, truth.E]).tolist()
                                 + [truth.alpha, truth.beta], np.log(N), np.log(D), np.log(L))[0]
    assert info.objective <= f_truth + 1e-9


def test_scipy_default_tolerances_stop_early_on_the_mean_objective():
    """The pitfall: Huber(δ=1e-3) averaged over points is O(1e-4); L-BFGS-B's default gtol=1e-5
    declares convergence long before the optimum. Tight tolerances (or scaling) fix it."""
    rng = np.random.default_rng(0)
    N, D = grid_points(10, 10)
    L = PAPER_FIT.loss(N, D) * np.exp(rng.normal(0, 0.005, N.shape))
    x, y, l = np.log(N), np.log(D), np.log(L)
    n, delta = len(x), 1e-3

    def mean_obj(t):
        f, g = objective_and_grad(t, x, y, l, delta)
        return f * delta / n, g * delta / n

    start = np.array([5.0, 5.0, 0.5, 0.5, 0.5])
    lazy = minimize(mean_obj, start, jac=True, method="L-BFGS-B")
    tight = minimize(mean_obj, start, jac=True, method="L-BFGS-B",
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000})
    f_lazy = objective_and_grad(lazy.x, x, y, l, delta)[0]
    f_tight = objective_and_grad(tight.x, x, y, l, delta)[0]
    assert lazy.success  # scipy believes it converged …
    assert f_lazy > 1.5 * f_tight  # … at nearly twice the optimum (0.65 vs 0.34 measured)
    assert abs(lazy.x[3] - tight.x[3]) > 0.03  # α: 0.28 instead of 0.34
    # and the tight run agrees with fit_parametric from the same single start
    fit, info = fit_parametric(N, D, L, inits=start[None], return_info=True)
    assert f_tight == pytest.approx(info.objective, rel=1e-6)


def test_bootstrap_intervals():
    rng = np.random.default_rng(3)
    N, D = grid_points(8, 8)
    L = PAPER_FIT.loss(N, D) * np.exp(rng.normal(0, 0.005, N.shape))
    res = bootstrap_fit(N, D, L, n_boot=24, seed=0, extra_starts=2, inits=paper_grid()[::9])
    assert set(res.ci) == {"E", "A", "B", "alpha", "beta", "a", "b"}
    for k, (lo, hi) in res.ci.items():
        assert lo <= hi and res.samples[k].shape == (24,)
    assert res.ci["a"][0] - 0.02 < PAPER_FIT.a < res.ci["a"][1] + 0.02
    assert res.ci["E"][0] - 0.05 < PAPER_FIT.E < res.ci["E"][1] + 0.05
    assert "alpha" in res.summary()


@pytest.mark.parametrize("N, D, L, msg", [
    ([1e8] * 4, [1e9] * 4, [3.0] * 4, "at least 5"),
    ([1e8] * 5, [1e9] * 4, [3.0] * 5, "same length"),
    ([1e8, 1e8, -1, 1e8, 1e8], [1e9] * 5, [3.0] * 5, "N must be positive"),
    ([1e8] * 5, [1e9, 0, 1e9, 1e9, 1e9], [3.0] * 5, "D must be positive"),
    ([1e8] * 5, [1e9] * 5, [3.0, np.nan, 3, 3, 3], "L has 1 non-finite"),
    ([1e8] * 5, [1e9, np.inf, 1e9, 1e9, 1e9], [3.0] * 5, "D has 1 non-finite"),
])
def test_bad_inputs(N, D, L, msg):
    with pytest.raises(ValueError, match=msg):
        fit_parametric(N, D, L)
    with pytest.raises(ValueError, match=msg):
        bootstrap_fit(N, D, L, n_boot=2)
