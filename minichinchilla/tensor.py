"""A small reverse-mode autograd engine (chapters/01-autograd.md).

A `Tensor` holds an array (`.data`, NumPy or CuPy) and, after `backward()`, its gradient
(`.grad`, same shape and dtype). Every operation on tensors records, in the output, its
parents and a closure that maps the output's gradient to one gradient per parent — the
vector–Jacobian product of chapters/01-autograd.md, eq. 1.2. `backward()` sorts the graph
once (topological order) and walks it in reverse, adding each contribution into the parent's
gradient (chapters/01-autograd.md, eq. 1.3), so a tensor used twice receives both.

Two kinds of nodes live in the same graph:

* primitives (add, matmul, exp, sum, indexing, ...) whose local gradients are a line each;
* fused nodes that wrap a hand-derived forward/backward pair (`linear`, `attention`,
  `layernorm`, ...). Models run on these: one node per layer. Each takes `kernels=`, the set of
  pairs it runs: "reference" (the default: `minichinchilla.functional`, the code the chapters
  derive) or "fast" (`minichinchilla.functional.fast`, the same contract, tuned); a model passes
  its `ModelConfig.kernels`.

Rules the engine keeps: gradients are never modified in place once stored (accumulation
builds a new array), so pass-through gradients can be shared safely; no operation changes
dtype; NumPy and CuPy arrays are never mixed silently.

Memory (chapters/12-performance.md). The graph is made of `_Node`s, not of the output
Tensors themselves: a node holds its backward closure, its parents' nodes and its gradient,
but not its output's array. So an intermediate result that no backward needs (the output of
a residual add, say) is freed as soon as the model drops the Tensor — as in PyTorch, where
autograd keeps only what the backward saved. A leaf tensor (a parameter) is its own node.
"""
from __future__ import annotations

import contextlib

from . import functional
from .backend import get_array_module, get_backend
from .functional import fast

# The kernel sets a fused node can run: same pair names, same contracts (tests/test_functional_fast.py).
KERNEL_SETS = {"reference": functional, "fast": fast}

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block operations record no graph (inference, evaluation, optimiser steps)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def _as_array(data, dtype=None):
    if isinstance(data, Tensor):
        raise TypeError("Tensor(...) got a Tensor; use .data or .detach()")
    if hasattr(data, "__array__") or hasattr(data, "__cuda_array_interface__"):
        xp = get_array_module(data)
        return xp.asarray(data, dtype=dtype)
    xp = get_backend()
    arr = xp.asarray(data, dtype=dtype)
    if dtype is None and arr.dtype.kind == "f" and arr.dtype.itemsize == 8:
        arr = arr.astype(xp.float32)  # Python floats become float32, the default dtype
    return arr


class _Node:
    """The graph record of an operation's output: what backward() needs, and not the output.

    parents: one entry per input of the operation — that input's node (a `_Node`, or the
    Tensor itself for a leaf that requires grad), or None for an input needing no gradient.
    """

    __slots__ = ("_parents", "_backward", "grad", "_freed")
    requires_grad = True

    def __init__(self, parents, backward):
        self._parents, self._backward, self.grad, self._freed = parents, backward, None, False


class Tensor:
    """An array with a gradient. ``Tensor(data, requires_grad=False)``."""

    # `ndarray + Tensor`: NumPy steps aside (returns NotImplemented) so Tensor.__radd__ runs.
    __array_ufunc__ = None
    _freed = False  # a leaf is never freed; an operation's output asks its node
    _node = None  # the graph record of an operation's output (None for leaves and constants)

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad=True needs a floating-point array, got dtype {self.data.dtype} "
                f"(integer tensors such as token ids have no gradient)"
            )
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.name = name

    # ---- construction of graph nodes -------------------------------------------------
    @classmethod
    def from_op(cls, data, parents, backward, name=None):
        """Make the output of an operation.

        Inputs:
            data: the output array
            parents: the Tensors the output was computed from
            backward: ``backward(dout) -> tuple`` with one gradient (or None) per parent
        Records the graph only when gradients are enabled and some parent needs one.
        """
        out = cls.__new__(cls)
        out.data, out.name = data, name
        needs = _grad_enabled and any(p.requires_grad for p in parents)
        out.requires_grad = needs
        if needs:
            # Parents enter the graph as nodes: the graph never holds an output's array.
            entries = tuple(p._node or (p if p.requires_grad else None) for p in parents)
            out._node = _Node(entries, backward)
        else:
            out.__dict__["grad"] = None
        return out

    # An operation's output keeps its gradient, parents and closure in its node.
    def _get_grad(self):
        node = self._node
        return self.__dict__.get("grad") if node is None else node.grad

    def _set_grad(self, value):
        node = self._node
        if node is None:
            self.__dict__["grad"] = value
        else:
            node.grad = value

    grad = property(_get_grad, _set_grad)
    _parents = property(lambda self: () if self._node is None else self._node._parents)
    _backward = property(lambda self: None if self._node is None else self._node._backward)

    # ---- basic properties ----------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.transpose())

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{grad})"

    def item(self):
        return self.data.item()

    def numpy(self):
        from .backend import to_numpy

        return to_numpy(self.data)

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    # ---- backward ------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Backpropagate from this tensor, accumulating ``.grad`` in every tensor that needs it.

        ``grad`` is the upstream gradient d(loss)/d(self); it may be omitted only for a scalar
        (then it is 1). Unless ``retain_graph``, each node's closure (and the arrays it holds)
        is released as soon as it has run, which keeps peak memory low, as PyTorch does.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no parameter in its graph has requires_grad=True)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a scalar output; this one has shape "
                    f"{self.shape}: pass grad= with that shape (e.g. a loss should be .mean()-ed first)"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if get_array_module(grad) is not xp:
                get_array_module(grad, self.data)  # raises the mixing error
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward(grad): grad has shape {tuple(grad.shape)}, "
                                 f"the tensor has shape {self.shape}")

        root = self._node or self
        if root._freed:
            raise RuntimeError("this graph was already backpropagated and freed; "
                               "call backward(retain_graph=True) to backpropagate twice")
        order = _topological_order(root)
        root.grad = grad if root.grad is None else root.grad + grad
        for node in reversed(order):
            if node._backward is None or node.grad is None:
                continue
            grads = node._backward(node.grad)
            for parent, g in zip(node._parents, grads):
                if g is None or parent is None:
                    continue
                # Accumulate (eq. 1.3): a tensor used twice receives both contributions.
                parent.grad = g if parent.grad is None else parent.grad + g
            if not retain_graph:
                node._backward, node._parents, node._freed = None, (), True
                node.grad = None  # an intermediate's gradient is not needed once passed on

    # ---- operators -----------------------------------------------------------------------
    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return sub(self, other)
    def __rsub__(self, other): return sub(other, self)
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __truediv__(self, other): return div(self, other)
    def __rtruediv__(self, other): return div(other, self)
    def __neg__(self): return mul(self, -1.0)
    def __pow__(self, p): return power(self, p)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __getitem__(self, index): return getitem(self, index)

    def sum(self, axis=None, keepdims=False): return reduce_sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return amax(self, axis, keepdims)
    def exp(self): return exp(self)
    def log(self): return log(self)
    def tanh(self): return tanh(self)
    def relu(self): return relu(self)
    def reshape(self, *shape): return reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *axes): return transpose(self, axes[0] if len(axes) == 1 else (axes or None))


def _topological_order(root):
    """Nodes ordered so that every node comes after all of its parents (iterative DFS)."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p is not None and id(p) not in seen:
                stack.append((p, False))
    return order


# ======================================================================================
# Primitives. Each computes its output array and a closure returning parent gradients.
# ======================================================================================

def _tensor(x, like):
    """Wrap a constant (Python scalar or array) so it can take part in an operation."""
    if isinstance(x, Tensor):
        get_array_module(x.data, like.data)  # refuse NumPy/CuPy mixing with a clear error
        return x
    xp = get_array_module(like.data)
    if isinstance(x, (int, float)):
        # A scalar takes the other operand's dtype: float32 * 2.0 must stay float32.
        dtype = like.data.dtype if like.data.dtype.kind == "f" else None
        return Tensor(xp.asarray(x, dtype=dtype))
    get_array_module(x, like.data)
    return Tensor(x)


def _pair(a, b):
    """Both operands as Tensors (at least one of them already is)."""
    a = a if isinstance(a, Tensor) else _tensor(a, b)
    return a, _tensor(b, a)


def unbroadcast(grad, shape):
    """Sum a gradient over the axes that broadcasting added or stretched (eq. 1.4).

    Inputs: grad (shape of the broadcast result), shape: the operand's original shape.
    Returns: an array of `shape`.
    """
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def add(a, b):
    a, b = _pair(a, b)
    sa, sb = a.shape, b.shape
    return Tensor.from_op(a.data + b.data, (a, b),
                          lambda g: (unbroadcast(g, sa), unbroadcast(g, sb)))


def sub(a, b):
    a, b = _pair(a, b)
    sa, sb = a.shape, b.shape
    return Tensor.from_op(a.data - b.data, (a, b),
                          lambda g: (unbroadcast(g, sa), unbroadcast(-g, sb)))


def mul(a, b):
    a, b = _pair(a, b)
    ad, bd = a.data, b.data
    return Tensor.from_op(ad * bd, (a, b),
                          lambda g: (unbroadcast(g * bd, ad.shape), unbroadcast(g * ad, bd.shape)))


def div(a, b):
    a, b = _pair(a, b)
    ad, bd = a.data, b.data
    out = ad / bd

    def backward(g):
        return unbroadcast(g / bd, ad.shape), unbroadcast(-g * out / bd, bd.shape)
    return Tensor.from_op(out, (a, b), backward)


def power(x, p):
    """x ** p for a constant exponent p (a Python number)."""
    if isinstance(p, Tensor):
        raise TypeError("power: the exponent must be a Python number (use exp(p * log(x)) for a tensor)")
    xd = x.data
    return Tensor.from_op(xd ** p, (x,), lambda g: (g * p * xd ** (p - 1),))


def exp(x):
    out = get_array_module(x.data).exp(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * out,))


def log(x):
    xd = x.data
    return Tensor.from_op(get_array_module(xd).log(xd), (x,), lambda g: (g / xd,))


def tanh(x):
    out = get_array_module(x.data).tanh(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * (1 - out * out),))


def relu(x):
    xd = x.data
    return Tensor.from_op(xd * (xd > 0), (x,), lambda g: (g * (xd > 0),))


def matmul(a, b):
    """Batched matrix product with broadcasting over leading axes (eq. 1.5).

    Inputs: a (..., n, k), b (..., k, m). Returns (..., n, m).
    Backward: da = g @ b^T, db = a^T @ g, each summed over broadcast axes.
    """
    a, b = _pair(a, b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul needs operands with at least 2 dims, got shapes {a.shape} and "
                         f"{b.shape} (reshape a vector to (1, n) or (n, 1))")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ, {a.shape} @ {b.shape}")
    ad, bd = a.data, b.data

    def backward(g):
        da = g @ bd.swapaxes(-1, -2)  # (..., n, k)
        db = ad.swapaxes(-1, -2) @ g  # (..., k, m)
        return unbroadcast(da, ad.shape), unbroadcast(db, bd.shape)
    return Tensor.from_op(ad @ bd, (a, b), backward)


def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axis)


def _expand(g, shape, axes, keepdims):
    """Give a reduced gradient back the reduced axes so it broadcasts against the input."""
    xp = get_array_module(g)
    if not keepdims:
        g = xp.expand_dims(g, axes) if axes else g
    return xp.broadcast_to(g, shape)


def reduce_sum(x, axis=None, keepdims=False):
    """Sum over `axis` (all axes by default); the gradient broadcasts back over the summed axes."""
    axes, shape = _norm_axis(axis, x.ndim), x.shape
    out = x.data.sum(axis=axes, keepdims=keepdims)
    return Tensor.from_op(out, (x,), lambda g: (_expand(g, shape, axes, keepdims),))


def mean(x, axis=None, keepdims=False):
    axes, shape = _norm_axis(axis, x.ndim), x.shape
    count = 1
    for a in axes:
        count *= shape[a]
    out = x.data.mean(axis=axes, keepdims=keepdims)
    return Tensor.from_op(out, (x,), lambda g: (_expand(g / count, shape, axes, keepdims),))


def amax(x, axis=None, keepdims=False):
    """Maximum over axes. The gradient is split evenly among tied maxima (as torch.amax)."""
    axes = _norm_axis(axis, x.ndim)
    xd = x.data
    out_k = xd.max(axis=axes, keepdims=True)
    out = out_k if keepdims else out_k.reshape([n for i, n in enumerate(xd.shape) if i not in axes])

    def backward(g):
        is_max = xd == out_k  # (shape of x) True where x attains the max
        count = is_max.sum(axis=axes, keepdims=True).astype(xd.dtype)  # int counts would promote to float64
        gk = g if keepdims else get_array_module(g).expand_dims(g, axes)
        return ((gk / count) * is_max,)
    return Tensor.from_op(out, (x,), backward)


def reshape(x, shape):
    old = x.shape
    return Tensor.from_op(x.data.reshape(shape), (x,), lambda g: (g.reshape(old),))


def transpose(x, axes=None):
    """Permute axes (default: reverse them, like ndarray.T). Backward applies the inverse."""
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    return Tensor.from_op(x.data.transpose(axes), (x,), lambda g: (g.transpose(inverse),))


def getitem(x, index):
    """Indexing and gathering: basic slices and integer-array indices.

    Backward scatters the gradient into zeros of x's shape, ADDING at repeated indices
    (advanced indexing can pick the same element twice; `+=` with it would keep only one).
    """
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    xd = x.data
    shape, dtype = xd.shape, xd.dtype  # the backward needs x's shape, not its values

    def backward(g):
        xp = get_array_module(g)
        dx = xp.zeros(shape, dtype=dtype)
        xp.add.at(dx, index, g) if _is_advanced(index) else dx.__setitem__(index, g)
        return (dx,)
    return Tensor.from_op(xd[index], (x,), backward)


def _is_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "dtype") or isinstance(i, list) for i in items)


def concatenate(tensors, axis=0):
    tensors = list(tensors)
    xp = get_array_module(*[t.data for t in tensors])
    sizes = [t.shape[axis] for t in tensors]
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)

    ax = axis % tensors[0].ndim

    def backward(g):
        return tuple(g[(slice(None),) * ax + (slice(lo, hi),)] for lo, hi in zip(bounds, bounds[1:]))
    return Tensor.from_op(xp.concatenate([t.data for t in tensors], axis=axis), tensors, backward)


def split(x, sections, axis=-1):
    """Split into equal `sections` (an int) or at the given indices; each part is a slice of x."""
    n = x.shape[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"split: axis of size {n} does not divide into {sections} equal parts")
        step = n // sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0, *sections, n]
    ax = axis % x.ndim
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        index = (slice(None),) * ax + (slice(lo, hi),)
        parts.append(getitem(x, index))
    return parts


def where(cond, a, b):
    """Elementwise choice: a where cond is True, else b. `cond` is a boolean array (no gradient)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    a, b = _pair(a, b)
    xp = get_array_module(cond, a.data, b.data)
    out = xp.where(cond, a.data, b.data)
    sa, sb = a.shape, b.shape
    return Tensor.from_op(out, (a, b), lambda g: (unbroadcast(g * cond, sa), unbroadcast(g * ~cond, sb)))


def masked_fill(x, mask, value):
    """x with `value` where mask is True (e.g. -inf on masked attention scores)."""
    mask = mask.data if isinstance(mask, Tensor) else mask
    xp = get_array_module(x.data, mask)
    out = xp.where(mask, x.data.dtype.type(value), x.data)
    return Tensor.from_op(out, (x,), lambda g: (unbroadcast(g * ~mask, x.shape),))


# ======================================================================================
# Fused nodes: one graph node per layer, running a hand-derived pair from `functional`.
# ======================================================================================

def fused(forward, backward, *args, **kwargs):
    """Run ``out, cache = forward(*arrays, **kwargs)`` as ONE node of the graph.

    `args` are Tensors, arrays or None, in the forward's order. The backward returns one
    gradient per differentiable (floating-point or None) input, which is how the functional
    pairs are specified; integer inputs such as token ids get none.
    """
    arrays = [a.data if isinstance(a, Tensor) else a for a in args]
    out, cache = forward(*arrays, **kwargs)
    slots = [i for i, a in enumerate(arrays) if a is None or a.dtype.kind == "f"]
    # Only Tensor inputs are graph parents; `keep` says which of the backward's outputs are theirs.
    keep = [k for k, i in enumerate(slots) if isinstance(args[i], Tensor)]
    parents = [args[slots[k]] for k in keep]

    def _backward(g):
        grads = backward(g, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(grads[k] for k in keep)
    return Tensor.from_op(out, parents, _backward)


def kernel_set(kernels):
    """The module of forward/backward pairs a fused node runs.

    "reference" is `minichinchilla.functional` (the pairs the chapters derive), "fast" is
    `minichinchilla.functional.fast`; any other module with the same pair names is used as given.
    """
    if isinstance(kernels, str):
        if kernels not in KERNEL_SETS:
            raise ValueError(f"kernels must be one of {sorted(KERNEL_SETS)}, got {kernels!r}")
        return KERNEL_SETS[kernels]
    return kernels


def linear(x, W, b=None, kernels="reference"):
    """Y = XW + b (chapters/01-autograd.md, eq. 1.8) as one node."""
    k = kernel_set(kernels)
    return fused(k.linear_forward, k.linear_backward, x, W, b)


def embedding(idx, E, kernels="reference"):
    """Rows of E picked by integer ids (chapters/02-softmax-cross-entropy.md, eq. 2.9)."""
    k = kernel_set(kernels)
    return fused(k.embedding_forward, k.embedding_backward, idx, E)


def softmax(x, axis=-1, kernels="reference"):
    k = kernel_set(kernels)
    return fused(k.softmax_forward, k.softmax_backward, x, axis=axis)


def cross_entropy(logits, targets, ignore_index=-100, kernels="reference"):
    """Mean negative log-likelihood over non-ignored targets (chapters/02-softmax-cross-entropy.md, eq. 2.6)."""
    k = kernel_set(kernels)
    return fused(k.cross_entropy_forward, k.cross_entropy_backward, logits, targets, ignore_index=ignore_index)


def layernorm(x, gamma, beta, eps=1e-5, kernels="reference"):
    k = kernel_set(kernels)
    return fused(k.layernorm_forward, k.layernorm_backward, x, gamma, beta, eps=eps)


def rmsnorm(x, gamma, eps=1e-6, kernels="reference"):
    k = kernel_set(kernels)
    return fused(k.rmsnorm_forward, k.rmsnorm_backward, x, gamma, eps=eps)


def gelu(x, kernels="reference"):
    k = kernel_set(kernels)
    return fused(k.gelu_forward, k.gelu_backward, x)


def ffn(x, W1, b1, W2, b2, activation="gelu", kernels="reference"):
    k = kernel_set(kernels)
    return fused(k.ffn_forward, k.ffn_backward, x, W1, b1, W2, b2, activation=activation)


def attention(x, Wqkv, bqkv, Wo, bo, n_heads, causal=True, key_padding_mask=None, rope_base=None,
              kernels="reference"):
    """Multi-head self-attention as one node (chapters/03-attention.md, eqs. 3.1–3.10)."""
    k = kernel_set(kernels)
    mask = key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask
    return fused(k.attention_forward, k.attention_backward, x, Wqkv, bqkv, Wo, bo,
                 n_heads=n_heads, causal=causal, key_padding_mask=mask, rope_base=rope_base)
