"""The synthetic language: exact entropy rate against Monte Carlo, determinism, fresh batches."""
import time

import numpy as np
import pytest

from minichinchilla.scaling.synthetic import SyntheticLanguage


@pytest.fixture(scope="module")
def lang():
    return SyntheticLanguage(vocab_size=64, seed=0)


def test_stationary_distribution_is_stationary(lang):
    pi = lang.stationary()
    assert pi.shape == (64, 64) and pi.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.einsum("ab,abc->bc", pi, lang.P), pi, atol=1e-15)
    np.testing.assert_allclose(lang.P.sum(-1), 1.0)


def test_entropy_rate_matches_monte_carlo(lang):
    """−mean log p(x_t | x_{t−2}, x_{t−1}) over ~1M sampled tokens. Error bar from 64 independent
    streams (each stream's mean is one independent replicate)."""
    x = lang.sample_streams(64, 16_384, rng=np.random.default_rng(1))  # (64, 16384)
    per_stream = -lang.log_prob(x).mean(axis=1)  # (64,)
    mc = per_stream.mean()
    se = per_stream.std(ddof=1) / np.sqrt(len(per_stream))
    h = lang.entropy_rate()
    assert 2.7 < h < 3.0  # the default hierarchy sits near 2.85 nats, well below log 64 = 4.16
    assert abs(mc - h) < 4 * se, (mc, h, se)
    assert se < 2e-3  # so the check above is tight: |MC − exact| < ~0.25 %


def test_entropy_ladder_and_window(lang):
    lad = lang.entropy_ladder()
    assert np.log(64) >= lad["unigram"] > lad["order1"] > lad["entropy_rate"]
    h = lang.entropy_rate()
    assert lang.window_entropy(2048) > h
    assert lang.window_entropy(2048) == pytest.approx(h, abs=1e-3)
    assert lang.window_entropy(1) == pytest.approx(lad["unigram"])


def test_deterministic_by_seed():
    a, b, c = SyntheticLanguage(seed=5), SyntheticLanguage(seed=5), SyntheticLanguage(seed=6)
    np.testing.assert_array_equal(a.P, b.P)
    assert a.entropy_rate() == b.entropy_rate() != c.entropy_rate()
    np.testing.assert_array_equal(a.sample(5000, rng=7), b.sample(5000, rng=7))
    assert not np.array_equal(a.sample(5000, rng=7), a.sample(5000, rng=8))


def test_alias_tables_reproduce_the_conditional_exactly(lang):
    V = 64
    prob, alias = lang.alias_prob, lang.alias_idx  # (V², V)
    q = prob.copy()
    rows = np.repeat(np.arange(V * V), V)
    np.add.at(q, (rows, alias.ravel()), (1.0 - prob).ravel())
    np.testing.assert_allclose(q / V, lang.P.reshape(V * V, V), atol=1e-14)


def test_batches_are_fresh_and_shifted(lang):
    it = lang.batches(8, 32, rng=0, pool=8)
    x1, y1 = next(it)
    x2, y2 = next(it)
    assert x1.shape == y1.shape == (8, 32) and x1.dtype == np.int64
    np.testing.assert_array_equal(x1[:, 1:], y1[:, :-1])
    assert not np.array_equal(x1, x2)
    # each row continues its chain: same tokens as sampling with the state carried by hand
    rng = np.random.default_rng(0)
    w1 = lang.sample_streams(8, 33, rng)
    w2 = lang.sample_streams(8, 33, rng, state=w1[:, -2:])
    np.testing.assert_array_equal(x1, w1[:, :-1])
    np.testing.assert_array_equal(x2, w2[:, :-1])
    big = lang.batches(8, 32, rng=0)  # default pool: 128 batches per refill, all different
    seen = {next(big)[0].tobytes() for _ in range(200)}
    assert len(seen) == 200
    assert x1.min() >= 0 and x1.max() < 64


def test_sample_length_and_speed(lang):
    rng = np.random.default_rng(0)
    assert lang.sample(12_345, rng).shape == (12_345,)
    t0 = time.perf_counter()
    x = lang.sample(1_000_000, rng)
    rate = x.size / (time.perf_counter() - t0)
    # ~2–3 M tokens/s measured on 2 shared cores; a lenient floor so a busy machine does not fail
    assert rate > 3e5, rate


def test_power_law_hierarchy_and_bad_arguments():
    lang = SyntheticLanguage(vocab_size=32, weights="power",
                             levels=((4, 0), (None, 0), (None, 4), (None, None)))
    assert lang.weights[0] > lang.weights[-1]
    assert 0 < lang.entropy_rate() < np.log(32)
    with pytest.raises(ValueError, match="vocab_size"):
        SyntheticLanguage(vocab_size=1)
    with pytest.raises(ValueError, match="weights"):
        SyntheticLanguage(weights=(0.5, 0.6, 0.2))
    with pytest.raises(ValueError, match="group count"):
        SyntheticLanguage(levels=((None, 0), (None, 100)), weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="concentration"):
        SyntheticLanguage(concentration=0)


# ---- the floor of the evaluation the sweep actually runs ----------------------------------------

@pytest.mark.parametrize("name", ["cliff", "hierarchical"])
def test_eval_floor_matches_a_monte_carlo_oracle(name):
    """The sweep scores tokens 1..T of (T+1)-token windows from their prefixes. The exact floor
    of that evaluation is the mean oracle loss over many fresh windows: 8,192 windows × 20
    replicates, error bar from the replicates."""
    from minichinchilla.scaling.synthetic import make_language

    lang = make_language(name)
    T = 16
    reps = [lang.oracle_loss(lang.sample_streams(8192, T + 1, np.random.default_rng(100 + i)))
            for i in range(20)]
    mc, se = np.mean(reps), np.std(reps, ddof=1) / np.sqrt(len(reps))
    floor = lang.eval_floor(T)
    assert abs(mc - floor) < 4 * se and se < 2e-3, (name, mc, floor, se)


def test_eval_floor_of_the_cliff_language_is_not_window_entropy():
    """Issue 13's numbers for T = 32: the right floor (H1 + 31 h)/32 = 2.8606, not the window
    entropy 2.9009 (which also charges the first token, predicted from nothing)."""
    from minichinchilla.scaling.synthetic import make_language

    lang = make_language("cliff")
    lad = lang.entropy_ladder()
    assert lang.eval_floor(32) == pytest.approx((lad["order1"] + 31 * lang.entropy_rate()) / 32)
    assert lang.eval_floor(32) == pytest.approx(2.8606, abs=5e-5)
    assert lang.window_entropy(32) == pytest.approx(2.9009, abs=5e-5)
    assert lang.eval_floor(1) == pytest.approx(lad["order1"])


def test_hierarchical_language_is_order_one_with_a_smooth_ladder():
    """Every level reads only the previous token, so the floor is the same at every position."""
    from minichinchilla.scaling.synthetic import make_language

    lang = make_language("hierarchical")
    h = lang.entropy_rate()
    assert lang.vocab_size == 128
    assert lang.eval_floor(1) == pytest.approx(h, abs=1e-12)
    assert lang.eval_floor(16) == pytest.approx(h, abs=1e-12)
    assert h == pytest.approx(3.6241, abs=5e-5)  # the floor quoted in issue 13
    assert lang.entropy_ladder()["order1"] == pytest.approx(h, abs=1e-12)
    assert lang.entropy_ladder()["unigram"] - h > 0.5  # the previous token is worth > 0.5 nats


def test_oracle_loss_on_fixed_windows_is_exact_arithmetic():
    from minichinchilla.scaling.synthetic import make_language

    lang = make_language("cliff")
    w = lang.sample_streams(4, 6, np.random.default_rng(0))  # (4, 6)
    pi = lang.stationary()
    first = np.log(pi[w[:, 0], w[:, 1]] / pi.sum(axis=1)[w[:, 0]])
    manual = -(first.sum() + lang.log_prob(w).sum()) / (4 * 5)
    assert lang.oracle_loss(w) == pytest.approx(manual, rel=1e-12)
    with pytest.raises(ValueError, match="windows"):
        lang.oracle_loss(w[:, :1])


def test_synthetic_module_cites_only_what_the_repository_has():
    import pathlib

    import minichinchilla.scaling.synthetic as mod

    text = pathlib.Path(mod.__file__).read_text(encoding="utf-8")
    assert "feasibility study" not in text and "PyTorch" not in text
