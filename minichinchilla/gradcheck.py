"""Gradient checking: compare a hand-derived backward with finite differences.

Why it works (chapters/01-autograd.md, eq. 1.6): for a scalar probe
``s(x) = sum(f(x) * dout)`` with a fixed upstream gradient ``dout``,
``ds/dx = J^T dout`` is exactly what a backward pass returns, and the centred
difference ``(s(x + h e_i) - s(x - h e_i)) / 2h`` estimates it with error O(h^2).

Two rules make a check meaningful:

* ``dout`` is RANDOM. With ``dout = 1`` (i.e. checking ``sum(f(x))``) softmax's true
  gradient is identically zero: the check then compares round-off with round-off and says
  nothing about the backward. `gradcheck` recognises this case and reports it as
  "uninformative" instead of a pass or a failure.
* Everything runs in float64 with ``h ~ 1e-5``: truncation error ~h^2 = 1e-10 and
  round-off ~eps/h = 1e-11, so a correct backward agrees to about 1e-9. In float32,
  eps/h ~ 1e-2 is the size of a real bug, so `gradcheck` warns about float32 inputs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .backend import get_array_module, to_numpy

OK, FAIL, UNINFORMATIVE = "ok", "FAIL", "uninformative"


class GradcheckPrecisionWarning(UserWarning):
    """An input or output of a gradient check is not float64: the verdict may be noise."""


def rel_error(a, b, floor=0.0) -> float:
    """Scale-aware relative error (chapters/01-autograd.md, eq. 1.7).

    max |a - b| / max(max |a|, max |b|, floor). Dividing by the largest magnitude (not
    elementwise, as CS231n does) keeps entries that are zero up to round-off from reporting a
    relative error of 1; the floor keeps two arrays that are both round-off (a true gradient
    of zero) from doing the same. With floor 0 and both arrays all zero the error is 0.
    """
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(b).max(), floor)
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max() / scale)


def finite_difference_noise(out, dout, h=1e-5) -> float:
    """Round-off floor of a centred difference of the probe s = sum(out * dout), eq. 1.6.

    Each evaluation of s is exact only to about eps * sum |out * dout| (eps of out's dtype);
    dividing the difference of two such values by 2h magnifies that to eps * sum|out*dout| / h
    (up to the factor 4 of safety used here). A numerical gradient below this size is
    indistinguishable from zero. The floor scales with |dout|: a tiny upstream gradient gives a
    tiny floor, so a check with a small random dout is as informative as one with a large one.
    """
    out = to_numpy(out)
    dout = to_numpy(dout)
    eps = float(np.finfo(out.dtype).eps) if out.dtype.kind == "f" else float(np.finfo(np.float64).eps)
    total = float(np.abs(out.astype(np.float64) * dout.astype(np.float64)).sum())
    return 4.0 * eps * total / h


def numerical_gradient(f, x, dout, h=1e-5):
    """Centred-difference estimate of d sum(f(x) * dout) / dx (chapters/01-autograd.md, eq. 1.6).

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
    """What `gradcheck` found: one entry per differentiable input.

    ``verdicts[name]`` is "ok", "FAIL" or "uninformative" (the true gradient is below the
    finite-difference noise, so nothing was tested). ``ok`` is True when every input passed,
    False when any failed, and None (no verdict) when none failed but some were uninformative.
    """

    errors: dict = field(default_factory=dict)  # name -> relative error (eq. 1.7)
    details: dict = field(default_factory=dict)  # name -> (worst index, analytic, numeric)
    tol: float = 1e-7
    verdicts: dict = field(default_factory=dict)  # name -> "ok" | "FAIL" | "uninformative"
    magnitudes: dict = field(default_factory=dict)  # name -> (max |analytic|, max |numeric|)
    noise: float = 0.0  # finite-difference round-off floor (finite_difference_noise)
    low_precision: bool = False  # an input or the output was not float64

    def verdict(self, name) -> str:
        if name in self.verdicts:
            return self.verdicts[name]
        return OK if self.errors[name] < self.tol else FAIL

    @property
    def ok(self):
        verdicts = [self.verdict(name) for name in self.errors]
        if FAIL in verdicts:
            return False
        return None if UNINFORMATIVE in verdicts else True

    def __str__(self):
        return "\n".join(self._line(name) for name in self.errors)

    def _line(self, name):
        verdict, err = self.verdict(name), self.errors[name]
        ana_max, num_max = self.magnitudes.get(name, (float("nan"), float("nan")))
        if verdict == UNINFORMATIVE:
            advice = ("in float32 round-off hides the gradient: check in float64" if self.low_precision
                      else "the true gradient is ~0, so this check tests nothing: use a random upstream "
                           "gradient (dout)")
            return (f"uninformative d{name}: max |numeric| {num_max:.1e} and max |analytic| {ana_max:.1e} "
                    f"are below the finite-difference noise {self.noise:.1e}; {advice}")
        line = f"{verdict:<4} d{name}: relative error {err:.2e} (max |gradient| {max(ana_max, num_max):.1e})"
        if verdict == FAIL:
            idx, ana, num = self.details[name]
            line += f"; worst at index {idx}: analytic {ana:.6g}, numeric {num:.6g}"
        if self.low_precision:
            line += " [not float64: round-off alone is about this size; check in float64]"
        return line


class GradcheckError(AssertionError):
    pass


def _is_differentiable(a):
    return a is not None and hasattr(a, "dtype") and a.dtype.kind == "f"


def _warn_if_not_float64(inputs, names, out, h) -> bool:
    """Warn (GradcheckPrecisionWarning) when a check cannot be trusted; True when it warned."""
    low = [f"{names[i]} ({a.dtype})" for i, a in enumerate(inputs)
           if _is_differentiable(a) and a.dtype != np.float64]
    out_dtype = np.dtype(getattr(out, "dtype", np.float64))
    if not low and out_dtype.kind == "f" and out_dtype != np.float64:
        low = [f"the output ({out_dtype}) from float64 inputs"]
    if low:
        dtype = np.dtype(getattr(out, "dtype", np.float32))
        eps = float(np.finfo(dtype).eps) if dtype.kind == "f" else float(np.finfo(np.float32).eps)
        warnings.warn(
            f"gradcheck: {', '.join(low)} {'is' if len(low) == 1 else 'are'} not float64. A centred "
            f"difference with h = {h:g} carries round-off of about eps/h = {eps / h:.0e} relative in "
            f"{dtype}, the size of a real bug, "
            "so a correct backward may FAIL and a broken one may look fine. Check in float64: "
            "x.astype(np.float64) for every input (chapters/01-autograd.md, section 6).",
            GradcheckPrecisionWarning, stacklevel=3)
    return bool(low)


def _compare(name, analytic, numeric, result):
    if analytic is None:
        raise GradcheckError(f"d{name}: the backward returned None for a differentiable input")
    if tuple(analytic.shape) != tuple(numeric.shape):
        raise GradcheckError(
            f"d{name}: the backward returned shape {tuple(analytic.shape)}, "
            f"expected {tuple(numeric.shape)} (the shape of {name})"
        )
    a = to_numpy(analytic).astype(np.float64)
    n = to_numpy(numeric).astype(np.float64)
    diff = np.abs(a - n)
    idx = np.unravel_index(int(diff.argmax()), diff.shape) if diff.size else ()
    idx = tuple(int(i) for i in idx)
    ana_max = float(np.abs(a).max()) if a.size else 0.0
    num_max = float(np.abs(n).max()) if n.size else 0.0
    result.errors[name] = rel_error(a, n, floor=result.noise)
    result.details[name] = (idx, float(a[idx]), float(n[idx]))
    result.magnitudes[name] = (ana_max, num_max)
    if max(ana_max, num_max) <= result.noise:
        result.verdicts[name] = UNINFORMATIVE
    else:
        result.verdicts[name] = OK if result.errors[name] < result.tol else FAIL


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
        inputs: list of arrays; checks are meaningful in float64 (other float dtypes warn,
            GradcheckPrecisionWarning)
        names: a name per input, used in the report (default x0, x1, ...)
        dout: the upstream gradient; a random normal one when None (see module docstring)
    Returns:
        a GradcheckResult (``print`` it for a readable verdict with the error magnitudes).
        Each input is "ok" (relative error eq. 1.7 below ``tol``), "FAIL", or "uninformative"
        (true gradient below the finite-difference noise, e.g. softmax with dout = ones: not a
        failure, but nothing was tested). When ``raise_on_fail`` is true, a failure raises
        GradcheckError naming the input, the worst index, and the analytic vs numeric values.
    """
    kwargs = dict(kwargs or {})
    inputs = list(inputs)
    names = list(names) if names is not None else [f"x{i}" for i in range(len(inputs))]
    if len(names) != len(inputs):
        raise ValueError(f"gradcheck: {len(names)} names for {len(inputs)} inputs")
    slots = [i for i, a in enumerate(inputs) if a is None or _is_differentiable(a)]

    if backward is not None:
        out, cache = forward(*inputs, **kwargs)
        out_data = out
        dout = _upstream(dout, out_data, seed)
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
        out_data = out.data
        dout = _upstream(dout, out_data, seed)
        out.backward(dout)
        analytic = {i: tensors[i].grad for i in slots if inputs[i] is not None}

        def f_at(i):
            def f(xi):
                args = [Tensor(a) if a is not None and hasattr(a, "dtype") else a for a in inputs]
                args[i] = Tensor(xi)
                return forward(*args, **kwargs).data
            return f

    low_precision = _warn_if_not_float64(inputs, names, out_data, h)
    result = GradcheckResult(tol=tol, noise=finite_difference_noise(out_data, dout, h),
                             low_precision=low_precision)
    for i in slots:
        if inputs[i] is None:
            continue
        numeric = numerical_gradient(f_at(i), inputs[i], dout, h=h)
        _compare(names[i], analytic[i], numeric, result)

    if raise_on_fail and result.ok is False:
        raise GradcheckError("gradient check failed:\n" + str(result))
    return result


def _upstream(dout, out, seed):
    """The upstream gradient: the caller's, or a random normal one of out's shape and dtype."""
    if dout is not None:
        return dout
    xp = get_array_module(out)
    rng = np.random.default_rng(seed)
    return xp.asarray(rng.standard_normal(np.shape(out)), dtype=out.dtype)
