import math

import numpy as np
import pytest

from minichinchilla.nn import Parameter
from minichinchilla.optim import SGD, AdamW, clip_grad_norm, cosine_lr


def test_adamw_matches_the_formula(rng):
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(3)]
    p = Parameter(p0.copy())
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    ref, m, v = p0.copy(), np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, start=1):
        p.grad = g
        opt.step()
        ref = ref * (1 - 0.1 * 0.5)  # decoupled decay happens first
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        ref = ref - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
    np.testing.assert_allclose(p.data, ref, rtol=1e-12)


def test_decoupled_weight_decay_differs_from_l2(rng):
    """With a zero gradient AdamW still shrinks the weights, by exactly (1 - lr*wd)."""
    p = Parameter(np.ones(3))
    opt = AdamW([p], lr=0.1, weight_decay=0.1)
    p.grad = np.zeros(3)
    opt.step()
    np.testing.assert_allclose(p.data, 0.99)


def test_param_groups_and_state_round_trip(rng):
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=0.1, weight_decay=1.0)
    a.grad = b.grad = np.zeros(2)
    opt.step()
    assert a.data[0] < 1.0 and b.data[0] == 1.0
    state = opt.state_dict()
    opt2 = AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=0.1, weight_decay=1.0)
    opt2.load_state_dict(state)
    assert opt2.state[id(a)]["step"] == 1


def test_sgd_momentum():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0, momentum=0.5)
    for _ in range(2):
        p.grad = np.ones(1)
        opt.step()
    np.testing.assert_allclose(p.data, [-(1 + 1.5)])


def test_clip_grad_norm():
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    p.grad, q.grad = np.array([3.0, 0.0]), np.array([4.0])
    shared = p.grad
    norm = clip_grad_norm([p, q], 1.0)
    assert norm == pytest.approx(5.0)
    assert math.hypot(*p.grad, *q.grad) == pytest.approx(1.0, rel=1e-5)
    assert shared[0] == 3.0  # replaced, not modified in place


def test_cosine_schedule_spans_exactly_the_horizon():
    lrs = [cosine_lr(s, 100, 1.0, warmup_steps=10) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[100] == pytest.approx(0.1)  # decayed to 10 % at the horizon, not before or after
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[55] == pytest.approx(0.55)


def test_adamw_updates_each_parameter_in_place_and_reads_like_chapter_07():
    """A parameter keeps its own array; the update itself fits in 15 lines; optim.py reaches into
    no private kernel helper (the fast, flat-buffer step is the opt-in functional.fast.FusedAdamW)."""
    import ast
    import inspect

    import minichinchilla.optim as optim

    p = Parameter(np.ones((3, 2)))
    array = p.data
    opt = AdamW([p], lr=0.1, weight_decay=0.1)
    for _ in range(2):
        p.grad = np.full((3, 2), 0.5)
        opt.step()
    assert p.data is array and not np.allclose(array, 1.0)
    body = ast.parse(inspect.getsource(AdamW._update).strip().replace("\n    ", "\n")).body[0].body
    lines = {n.lineno for stmt in body for n in ast.walk(stmt) if hasattr(n, "lineno")}
    assert len(lines) <= 15
    source = inspect.getsource(optim)
    assert "_blocks" not in source and "functional" not in source.replace("functional.fast.FusedAdamW", "")
