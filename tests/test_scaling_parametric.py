"""The parametric law and its compute-optimal closed form."""
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from minichinchilla.scaling.parametric import EPOCH_FIT, PAPER_FIT, ChinchillaFit


@pytest.mark.parametrize("fit", [PAPER_FIT, EPOCH_FIT, ChinchillaFit(2.0, 50.0, 900.0, 0.5, 0.2)])
@pytest.mark.parametrize("C", [1e15, 1e19, 5.76e23, 1e26])
def test_closed_form_matches_brute_force_along_iso_flop_line(fit, C):
    def loss_at(log_n):
        n = np.exp(log_n)
        return fit.loss(n, C / (6 * n))

    res = minimize_scalar(loss_at, bracket=(np.log(1e3), np.log(1e12)),
                          options={"xtol": 1e-12})
    N_opt, D_opt = fit.compute_optimal(C)
    assert np.log(N_opt) == pytest.approx(res.x, abs=1e-5)
    assert 6 * N_opt * D_opt == pytest.approx(C, rel=1e-12)
    assert fit.optimal_loss(C) == pytest.approx(res.fun, rel=1e-12)


def test_exponents_and_published_values():
    assert PAPER_FIT.a == pytest.approx(0.28 / 0.62)
    assert PAPER_FIT.a + PAPER_FIT.b == pytest.approx(1.0)
    assert EPOCH_FIT.a == pytest.approx(0.5126, abs=1e-4)  # Besiroglu et al. report a ≈ 0.51
    assert (EPOCH_FIT.E, EPOCH_FIT.A, EPOCH_FIT.B) == (1.8172, 482.01, 2085.43)


def test_vectorised_and_tokens_per_param():
    C = np.logspace(18, 24, 7)
    N_opt, D_opt = EPOCH_FIT.compute_optimal(C)
    assert N_opt.shape == D_opt.shape == (7,)
    np.testing.assert_allclose(EPOCH_FIT.tokens_per_param(C), D_opt / N_opt)
    # Chinchilla's own budget: the replication gives ~20 tokens per parameter; the rounded
    # published fit gives far more — a visible consequence of rounding α, β.
    assert 15 < EPOCH_FIT.tokens_per_param(5.76e23) < 25
    assert PAPER_FIT.tokens_per_param(5.76e23) > 60
    L = PAPER_FIT.loss(np.array([1e8, 1e9]), np.array([[1e9], [1e10]]))
    assert L.shape == (2, 2) and np.all(L > PAPER_FIT.E)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_compute_optimal_rejects_bad_budgets(bad):
    with pytest.raises(ValueError, match="C must be positive"):
        PAPER_FIT.compute_optimal(bad)
