"""Gradient checking: compare a hand-derived backward with finite differences.

Why it works (chapters/01-autograd.md, eq. 1.6): for a scalar probe
``s(x) = sum(f(x) * dout)`` with a fixed upstream gradient ``dout``,
``ds/dx = J^T dout`` is exactly what a backward pass returns, and the centred
difference ``(s(x + h e_i) - s(x - h e_i)) / 2h`` estimates it with error O(h^2).

Two rules make a check meaningful:

* ``dout`` is RANDOM. With ``dout = 1`` (i.e. checking ``sum(f(x))``) softmax's true
  gradient is identically zero, so a broken softmax backward that returns zeros passes.
* Everything runs in float64 with ``h ~ 1e-5``: truncation error ~h^2 = 1e-10 and
  round-off ~eps/h = 1e-11, so a correct backward agrees to about 1e-9.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import get_array_module, to_numpy


def rel_error(a, b) -> float:
    """Scale-aware relative error: max |a - b| / max(max |a|, max |b|).

    Dividing by the largest magnitude (not elementwise, as CS231n does) keeps entries that
    are zero up to round-off from reporting a relative error of 1.
    """
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(b).max())
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max() / scale)


def numerical_gradient(f, x, dout, h=1e-5):
    """Centred-difference estimate of d sum(f(x) * dout) / dx.

    Inputs:
        f: function of one array returning an array shaped like ``dout``
        x: array (float64 recommended); it is NOT modified (we perturb a copy)
        dout: upstream gradient, same shape as ``f(x)`` — use a random one
    Returns:
        dx, same shape as x
    """
    xp = get_array_module(x)
    x = x.copy()
    dx = xp.zeros_like(x)
    flat, dflat = x.reshape(-1), dx.reshape(-1)
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + h
        plus = (f(x) * dout).sum()
        flat[i] = old - h
        minus = (f(x) * dout).sum()
        flat[i] = old
        dflat[i] = (plus - minus) / (2 * h)
    return dx


@dataclass
class GradcheckResult:
    """What `gradcheck` found: one entry per differentiable input."""

    errors: dict = field(default_factory=dict)  # name -> relative error
    details: dict = field(default_factory=dict)  # name -> (worst index, analytic, numeric)
    tol: float = 1e-7

    @property
    def ok(self) -> bool:
        return all(e < self.tol for e in self.errors.values())

    def __str__(self):
        lines = []
        for name, err in self.errors.items():
            idx, ana, num = self.details[name]
            verdict = "ok  " if err < self.tol else "FAIL"
            line = f"{verdict} d{name}: relative error {err:.2e}"
            if err >= self.tol:
                line += f" (worst at index {idx}: analytic {ana:.6g}, numeric {num:.6g})"
            lines.append(line)
        return "\n".join(lines)


class GradcheckError(AssertionError):
    pass


def _is_differentiable(a):
    return a is not None and hasattr(a, "dtype") and a.dtype.kind == "f"


def _compare(name, analytic, numeric, result):
    if analytic is None:
        raise GradcheckError(f"d{name}: the backward returned None for a differentiable input")
    if tuple(analytic.shape) != tuple(numeric.shape):
        raise GradcheckError(
            f"d{name}: the backward returned shape {tuple(analytic.shape)}, "
            f"expected {tuple(numeric.shape)} (the shape of {name})"
        )
    err = rel_error(analytic, numeric)
    diff = np.abs(to_numpy(analytic).astype(np.float64) - to_numpy(numeric))
    idx = np.unravel_index(int(diff.argmax()), diff.shape) if diff.size else ()
    idx = tuple(int(i) for i in idx)
    result.errors[name] = err
    result.details[name] = (idx, float(to_numpy(analytic)[idx]), float(to_numpy(numeric)[idx]))


def gradcheck(forward, inputs, backward=None, *, names=None, kwargs=None, dout=None,
              h=1e-5, tol=1e-7, seed=0, raise_on_fail=True) -> GradcheckResult:
    """Check the gradient of every floating-point input of a function.

    Two kinds of function can be checked:

    * a forward/backward PAIR (pass ``backward``): ``out, cache = forward(*inputs, **kwargs)``
      and ``grads = backward(dout, cache)``, with ``grads`` in the order of the forward's
      differentiable inputs (a bare array when there is only one). Integer inputs (token ids,
      targets) and ``None`` are skipped.
    * a Tensor function (``backward=None``): ``forward(*tensors, **kwargs)`` returns a Tensor;
      we call ``out.backward(dout)`` and read each input's ``.grad``.

    Inputs:
        inputs: list of arrays; checks are meaningful in float64
        names: a name per input, used in the report (default x0, x1, ...)
        dout: the upstream gradient; a random normal one when None (see module docstring)
    Returns:
        a GradcheckResult (``print`` it for a readable verdict). When ``raise_on_fail`` is
        true, a failure raises GradcheckError naming the input, the worst index, and the
        analytic vs numeric values there.
    """
    kwargs = dict(kwargs or {})
    inputs = list(inputs)
    names = list(names) if names is not None else [f"x{i}" for i in range(len(inputs))]
    if len(names) != len(inputs):
        raise ValueError(f"gradcheck: {len(names)} names for {len(inputs)} inputs")
    slots = [i for i, a in enumerate(inputs) if a is None or _is_differentiable(a)]
    result = GradcheckResult(tol=tol)

    if backward is not None:
        out, cache = forward(*inputs, **kwargs)
        xp = get_array_module(out)
        if dout is None:
            rng = np.random.default_rng(seed)
            dout = xp.asarray(rng.standard_normal(np.shape(out)), dtype=out.dtype)
        grads = backward(dout, cache)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) != len(slots):
            raise GradcheckError(
                f"the backward returned {len(grads)} gradients; the forward has "
                f"{len(slots)} differentiable inputs ({', '.join(names[i] for i in slots)})"
            )
        analytic = dict(zip(slots, grads))

        def f_at(i):
            def f(xi):
                args = list(inputs)
                args[i] = xi
                return forward(*args, **kwargs)[0]
            return f
    else:
        from .tensor import Tensor

        tensors = [Tensor(a, requires_grad=_is_differentiable(a)) if a is not None and hasattr(a, "dtype")
                   else a for a in inputs]
        out = forward(*tensors, **kwargs)
        xp = get_array_module(out.data)
        if dout is None:
            rng = np.random.default_rng(seed)
            dout = xp.asarray(rng.standard_normal(out.shape), dtype=out.data.dtype)
        out.backward(dout)
        analytic = {i: tensors[i].grad for i in slots if inputs[i] is not None}

        def f_at(i):
            def f(xi):
                args = [Tensor(a) if a is not None and hasattr(a, "dtype") else a for a in inputs]
                args[i] = Tensor(xi)
                return forward(*args, **kwargs).data
            return f

    for i in slots:
        if inputs[i] is None:
            continue
        numeric = numerical_gradient(f_at(i), inputs[i], dout, h=h)
        _compare(names[i], analytic[i], numeric, result)

    if raise_on_fail and not result.ok:
        raise GradcheckError("gradient check failed:\n" + str(result))
    return result
