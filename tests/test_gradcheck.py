"""The gradient checker's own verdicts (minichinchilla/gradcheck.py, chapters/01-autograd.md section 6).

A tool students are taught to trust must never FAIL a correct backward, never pass a broken one,
say so when a check tests nothing (a true gradient of zero, e.g. softmax with dout = ones), and warn
when the precision makes the verdict noise (float32)."""
import warnings

import numpy as np
import pytest

import minichinchilla.functional as F
from minichinchilla import tensor as ops
from minichinchilla.gradcheck import (GradcheckError, GradcheckPrecisionWarning, finite_difference_noise,
                                      numerical_gradient,
                                      gradcheck, rel_error)
from minichinchilla.tensor import Tensor




def softmax_without_y(dout, cache):
    y = _y_of(cache)
    return dout - (dout * y).sum(axis=-1, keepdims=True)


def softmax_zeros(dout, cache):
    return np.zeros_like(dout)


def _y_of(cache):
    return next(c for c in (cache if isinstance(cache, tuple) else (cache,)) if hasattr(c, "shape"))




BROKEN = [softmax_without_y, softmax_zeros]


def tensor_softmax_with(backward):
    """A Tensor function whose node uses `backward`: the Tensor path of gradcheck."""
    return lambda t: ops.fused(F.softmax_forward, backward, t)


@pytest.fixture
def x(rng):
    return rng.standard_normal((4, 6)) * 2


def test_softmax_cache_exposes_y(x):
    y, cache = F.softmax_forward(x)
    assert np.array_equal(_y_of(cache), y)  # the broken backwards below read y from the cache


def test_correct_softmax_with_dout_ones_is_uninformative_not_fail(x):
    for res in (gradcheck(F.softmax_forward, [x], F.softmax_backward, names=["x"], dout=np.ones((4, 6))),
                gradcheck(ops.softmax, [x], names=["x"], dout=np.ones((4, 6)))):
        text = str(res)
        assert res.ok is not False and res.ok is None
        assert "FAIL" not in text and "uninformative" in text and "random upstream gradient" in text
        assert res.verdicts["x"] == "uninformative"
        # the actual magnitudes are printed: both gradients are round-off, below the noise floor
        ana, num = res.magnitudes["x"]
        assert max(ana, num) <= res.noise < 1e-8 and f"{num:.1e}" in text


def test_correct_layernorm_unit_gain_with_dout_ones_is_uninformative_for_x(rng):
    x, gamma, beta = rng.standard_normal((3, 5)), np.ones(5), np.zeros(5)
    res = gradcheck(F.layernorm_forward, [x, gamma, beta], F.layernorm_backward,
                    names=["x", "gamma", "beta"], dout=np.ones((3, 5)))
    assert res.verdicts["x"] == "uninformative" and res.verdicts["beta"] == "ok"
    assert res.ok is None and "FAIL" not in str(res)


@pytest.mark.parametrize("broken", BROKEN)
@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_broken_softmax_with_random_dout_fails_on_both_paths(x, rng, broken, scale):
    dout = scale * rng.standard_normal(x.shape)
    res = gradcheck(F.softmax_forward, [x], broken, names=["x"], dout=dout, raise_on_fail=False)
    assert res.ok is False and "FAIL dx" in str(res) and res.errors["x"] > 1e-2, str(res)
    with pytest.raises(GradcheckError, match="worst at index"):
        gradcheck(F.softmax_forward, [x], broken, names=["x"], dout=dout)
    res = gradcheck(tensor_softmax_with(broken), [x], names=["x"], dout=dout, raise_on_fail=False)
    assert res.ok is False and "FAIL dx" in str(res), str(res)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-6])
def test_correct_softmax_with_random_dout_passes_at_any_scale(x, rng, scale):
    dout = scale * rng.standard_normal(x.shape)
    for res in (gradcheck(F.softmax_forward, [x], F.softmax_backward, names=["x"], dout=dout),
                gradcheck(ops.softmax, [x], names=["x"], dout=dout)):
        assert res.ok is True and res.errors["x"] < 1e-8, str(res)
        assert str(res).startswith("ok   dx: relative error ") and "max |gradient|" in str(res)


def test_noise_floor_scales_with_dout(x, rng):
    out = F.softmax_forward(x)[0]
    d = rng.standard_normal(x.shape)
    assert finite_difference_noise(out, 1e-3 * d) == pytest.approx(1e-3 * finite_difference_noise(out, d))


def test_broken_softmax_with_dout_ones_never_passes(x):
    """With dout = ones the broken y-less VJP returns zeros: the old checker called that a pass."""
    for broken in BROKEN:
        res = gradcheck(F.softmax_forward, [x], broken, names=["x"], dout=np.ones(x.shape), raise_on_fail=False)
        assert res.ok is not True and "ok " not in str(res)


def test_wrong_nonzero_gradient_where_truth_is_zero_fails(x):
    """A backward returning something sizeable where the true gradient is zero is a failure."""
    res = gradcheck(F.softmax_forward, [x], lambda d, c: d * _y_of(c), names=["x"],
                    dout=np.ones(x.shape), raise_on_fail=False)
    assert res.ok is False and "FAIL" in str(res)


def test_tensor_path_tanh(rng):
    x = rng.standard_normal((3, 4))
    res = gradcheck(ops.tanh, [x], names=["x"])
    assert res.ok is True and res.errors["x"] < 1e-8
    broken = lambda t: Tensor.from_op(np.tanh(t.data), (t,), lambda g: (g * (1 - np.tanh(t.data)),))  # noqa: E731
    res = gradcheck(broken, [x], names=["x"], raise_on_fail=False)
    assert res.ok is False and "FAIL dx" in str(res)


@pytest.mark.parametrize("path", ["pair", "tensor"])
def test_float32_input_warns_naming_the_dtype(x, path):
    x32 = x.astype(np.float32)
    with pytest.warns(GradcheckPrecisionWarning, match=r"float32.*float64"):
        if path == "pair":
            gradcheck(F.softmax_forward, [x32], F.softmax_backward, names=["x"], raise_on_fail=False)
        else:
            gradcheck(ops.softmax, [x32], names=["x"], raise_on_fail=False)


def test_float32_at_default_h_gives_bug_sized_errors_for_a_correct_layer():
    """Why the warning exists: in float32 at h = 1e-5 a CORRECT softmax backward differs from the
    centred difference by 1e-3 .. 1e-1 in the sense of eq. 1.7 (chapter 01 quotes the measured band),
    and gradcheck never calls such a check ok."""
    errs = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((4, 6)).astype(np.float32) * 2
        dout = rng.standard_normal((4, 6)).astype(np.float32)
        y, cache = F.softmax_forward(x)
        numeric = numerical_gradient(lambda z: F.softmax_forward(z)[0], x, dout)
        errs.append(rel_error(F.softmax_backward(dout, cache), numeric))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GradcheckPrecisionWarning)
            res = gradcheck(F.softmax_forward, [x], F.softmax_backward, names=["x"], dout=dout,
                            raise_on_fail=False)
        assert res.verdicts["x"] != "ok" and "float64" in str(res), str(res)
    assert 1e-3 < min(errs) and max(errs) < 1e-1, errs


@pytest.mark.parametrize("path", ["pair", "tensor"])
def test_float64_warns_about_nothing(x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if path == "pair":
            gradcheck(F.softmax_forward, [x], F.softmax_backward, names=["x"])
            gradcheck(F.softmax_forward, [x], F.softmax_backward, names=["x"], dout=np.ones(x.shape))
        else:
            gradcheck(ops.softmax, [x], names=["x"])
            gradcheck(ops.tanh, [x], names=["x"])


def test_rel_error_floor():
    a, b = np.array([0.0, 1e-17]), np.array([4e-11, 0.0])
    assert rel_error(a, b) == pytest.approx(1.0)  # round-off over round-off
    assert rel_error(a, b, floor=1e-8) == pytest.approx(4e-3)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0


def test_contributing_lists_gradchecks_public_names_and_result_fields():
    """CONTRIBUTING's layout row and contract bullet name what gradcheck.py really exports."""
    import pathlib
    import re

    import minichinchilla.gradcheck as G

    text = (pathlib.Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `minichinchilla/gradcheck.py`"))
    names = re.findall(r"`(\w+)", row.split("|")[2])
    public = {n for n in dir(G) if not n.startswith("_") and (callable(getattr(G, n)))} - {"field", "dataclass"}
    assert set(names) >= {"gradcheck", "rel_error", "finite_difference_noise", "GradcheckPrecisionWarning"}
    assert set(names) <= public, set(names) - public
    bullet = text.split("- Every backward is checked with `gradcheck`", 1)[1].split("\n- ", 1)[0].split("\n#", 1)[0]
    fields = set(re.findall(r"`\.(\w+)`", bullet))
    result = G.GradcheckResult()
    assert fields >= {"ok", "errors", "verdicts", "magnitudes", "noise", "low_precision"}
    assert all(hasattr(result, f) for f in fields), [f for f in fields if not hasattr(result, f)]
