"""The autograd engine: every primitive gradchecked in float64, plus the engine's rules."""
import numpy as np
import pytest

from minichinchilla import tensor as ops
from minichinchilla.gradcheck import gradcheck
from minichinchilla.tensor import Tensor, no_grad

TOL = 1e-7


def r(rng, *shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul, ops.div])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((4,), (2, 3, 4))])
def test_binary_broadcasting(rng, op, shapes):
    a, b = r(rng, *shapes[0]), r(rng, *shapes[1])
    if op is ops.div:
        b = np.sign(b) * (np.abs(b) + 0.5)  # keep away from 0
    gradcheck(op, [a, b], names=["a", "b"], tol=TOL)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3), (3, 1))])
def test_matmul(rng, shapes):
    gradcheck(ops.matmul, [r(rng, *shapes[0]), r(rng, *shapes[1])], names=["a", "b"], tol=TOL)


@pytest.mark.parametrize("fn,domain", [
    (ops.exp, None), (ops.log, "positive"), (ops.tanh, None), (ops.relu, "nonzero"),
    (lambda x: ops.power(x, 3), None), (lambda x: ops.power(x, -0.5), "positive"),
])
def test_unary(rng, fn, domain):
    x = r(rng, 3, 5)
    if domain == "positive":
        x = np.abs(x) + 0.1
    if domain == "nonzero":  # finite differences straddling relu's kink are meaningless
        x = np.sign(x) * (np.abs(x) + 0.1)
    gradcheck(fn, [x], tol=TOL)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_reductions(rng, axis, keepdims, reduce):
    x = r(rng, 2, 3, 4)
    fn = {"sum": ops.reduce_sum, "mean": ops.mean, "max": ops.amax}[reduce]
    gradcheck(lambda t: fn(t, axis=axis, keepdims=keepdims), [x], tol=TOL)


def test_max_splits_gradient_among_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True)
    ops.amax(x, axis=1).backward(np.array([1.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [2.0, 0.0, 2.0]])


def test_shape_ops(rng):
    x = r(rng, 2, 3, 4)
    gradcheck(lambda t: t.reshape(6, 4), [x], tol=TOL)
    gradcheck(lambda t: t.transpose(2, 0, 1), [x], tol=TOL)
    gradcheck(lambda t: t.T, [x], tol=TOL)
    gradcheck(lambda t: t[:, 1:, ::2], [x], tol=TOL)
    gradcheck(lambda a, b: ops.concatenate([a, b], axis=1), [x, r(rng, 2, 5, 4)], tol=TOL)
    gradcheck(lambda t: ops.split(t, 2, axis=-1)[1] * ops.split(t, [1], axis=-1)[0], [x], tol=TOL)


def test_gather_accumulates_repeated_indices(rng):
    E = r(rng, 5, 3)
    idx = np.array([[0, 2, 2], [4, 0, 0]])
    gradcheck(lambda t: t[idx], [E], tol=TOL)
    x = r(rng, 4, 6)
    gradcheck(lambda t: t[np.arange(4), np.array([1, 1, 5, 0])], [x], tol=TOL)


def test_where_and_masked_fill(rng):
    a, b = r(rng, 3, 4), r(rng, 3, 4)
    cond = rng.random((3, 4)) > 0.5
    gradcheck(lambda x, y: ops.where(cond, x, y), [a, b], tol=TOL)
    gradcheck(lambda x: ops.masked_fill(x, cond, 0.0), [a], tol=TOL)


def test_reused_node_accumulates():
    """y = x*x + x uses x three times: dy/dx = 2x + 1 (chapters/01-autograd.md, eq. 1.3)."""
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_diamond_graph(rng):
    a = r(rng, 3, 3)
    gradcheck(lambda t: ops.tanh(t @ t) * ops.exp(t) + t.sum(axis=0), [a], tol=TOL)


def test_grads_accumulate_across_backward_calls_until_zero_grad():
    x = Tensor(np.array([2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    assert x.grad[0] == 6.0
    x.zero_grad()
    assert x.grad is None


def test_no_grad_and_detach():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad
    z = (x * 2.0).detach()
    assert not z.requires_grad and z._parents == ()


def test_backward_twice_without_retain_graph_is_an_error():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_dtype_is_kept_float32():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    y = (ops.exp(x) * 2.0 + 1.0) / 3.0
    y = (y @ Tensor(np.ones((3, 2), dtype=np.float32))).mean() ** 2
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32  # Python floats default to float32


def test_clear_errors():
    with pytest.raises(ValueError, match="scalar"):
        (Tensor(np.ones(3), requires_grad=True) * 2.0).backward()
    with pytest.raises(TypeError, match="integer"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(ValueError, match="inner dimensions"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 2)))
    with pytest.raises(ValueError, match="shape"):
        (Tensor(np.ones(3), requires_grad=True) * 2.0).backward(np.ones(4))


def test_mixing_numpy_and_cupy_is_refused(monkeypatch):
    """No CuPy on CI: stand a fake 'cupy' module behind one array type and check the message."""
    import types

    from minichinchilla import backend

    fake = types.ModuleType("cupy")

    class FakeCupyArray(np.ndarray):
        pass

    real = backend._module_of
    monkeypatch.setattr(backend, "_module_of", lambda a: fake if isinstance(a, FakeCupyArray) else real(a))
    gpu = np.ones(3).view(FakeCupyArray)
    with pytest.raises(TypeError, match="cannot mix numpy and cupy"):
        backend.get_array_module(np.ones(3), gpu)


def test_ndarray_on_the_left_defers_to_tensor():
    x = Tensor(np.ones(2), requires_grad=True)
    y = np.full(2, 3.0) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_every_primitive_keeps_float32_gradients():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    outs = [ops.amax(x, axis=1), ops.mean(x, axis=0), x[np.array([0, 0])], ops.power(x, 2),
            ops.where(np.eye(2, 3, dtype=bool), x, 0.0), ops.masked_fill(x, np.eye(2, 3, dtype=bool), 0.0)]
    for out in outs:
        x.zero_grad()
        out.sum().backward()
        assert x.grad.dtype == np.float32, out
