"""Optimisers and the learning-rate schedule (chapters/07-pretraining.md).

`AdamW` follows PyTorch's update rule and order exactly (decoupled weight decay, as
Chinchilla used — Hoffmann et al. found AdamW beat Adam for their models):

    p <- p - lr * wd * p                      # decay first, independent of the gradient
    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Parameter groups let norms and biases skip weight decay, as is usual.
Updates happen in place on `.data` (optimiser state is the one place in-place work belongs).
"""
from __future__ import annotations

import math

from .backend import get_array_module, to_numpy


def _groups(params, defaults):
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    groups = params if isinstance(params[0], dict) else [{"params": params}]
    out = []
    for g in groups:
        g = {**defaults, **g, "params": list(g["params"])}
        for p in g["params"]:
            if p.data.dtype.kind != "f":
                raise TypeError(f"optimizer: parameter of dtype {p.data.dtype} cannot be trained")
        out.append(g)
    return out


class Optimizer:
    def __init__(self, params, defaults):
        self.param_groups = _groups(params, defaults)
        self.state = {}  # id(param) -> dict of arrays

    def zero_grad(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self):
        """Optimiser state as NumPy arrays keyed by the parameter's position (for checkpoints)."""
        out = {}
        for i, p in enumerate(self._params()):
            for k, v in self.state.get(id(p), {}).items():
                out[f"{i}.{k}"] = to_numpy(v).copy() if hasattr(v, "shape") else v
        out["lrs"] = [g["lr"] for g in self.param_groups]
        return out

    def load_state_dict(self, state):
        from .backend import asarray

        params = self._params()
        new = {}
        for key, v in state.items():
            if key == "lrs":
                continue
            i, name = key.split(".", 1)
            i = int(i)
            if i >= len(params):
                raise ValueError(f"optimizer state has an entry for parameter {i}, but there are only {len(params)}")
            p = params[i]
            if hasattr(v, "shape") and name != "step" and tuple(v.shape) != p.shape:
                raise ValueError(f"optimizer state {key}: shape {tuple(v.shape)} != parameter shape {p.shape}")
            new.setdefault(id(p), {})[name] = (asarray(v, dtype=p.data.dtype) if name != "step" else int(v))
        self.state = new
        for g, lr in zip(self.param_groups, state.get("lrs", [])):
            g["lr"] = float(lr)


class SGD(Optimizer):
    """SGD with momentum and (coupled, L2-style) weight decay, as torch.optim.SGD."""

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if g["weight_decay"]:
                    d = d + g["weight_decay"] * p.data
                if g["momentum"]:
                    st = self.state.setdefault(id(p), {})
                    if "momentum" not in st:
                        st["momentum"] = d.copy()
                    else:
                        st["momentum"] *= g["momentum"]
                        st["momentum"] += d
                    d = st["momentum"]
                p.data -= g["lr"] * d


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), PyTorch's rule and order.

    Speed (chapters/12-performance.md). The update is ~12 elementwise passes over every
    parameter: memory-bound work. Done parameter by parameter it costs ~80 small NumPy calls
    per pass and streams each array from memory twelve times. Instead, at its first step the
    optimiser moves each group's parameters into ONE contiguous buffer and makes every
    ``p.data`` a view into it (m and v likewise); gradients are gathered into a flat buffer
    with one ``concatenate``. The update then runs over the flat buffers in cache-sized
    blocks on the worker threads (`minichinchilla.functional._blocks`): the same arithmetic in
    the same order, so the result is bit-for-bit the per-parameter one. If anything replaces
    a ``p.data`` or a state array (``load_state_dict``, a checkpoint), the next step notices
    and rebuilds the buffers; if some parameter has no gradient, the group falls back to the
    plain per-parameter loop (`_step_param`), which PyTorch's semantics need there.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamW: invalid lr={lr}, betas={betas} or eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self._flat = {}  # group index -> flat buffers and the views handed out

    def step(self):
        for i, g in enumerate(self.param_groups):
            ps = g["params"]
            if all(p.grad is not None for p in ps) and self._flat_ok(i, g):
                self._step_flat(i, g)
            else:
                for p in ps:
                    if p.grad is not None:
                        self._step_param(p, g)

    # ---- the plain version: one parameter at a time -------------------------------------
    def _step_param(self, p, g):
        lr, (b1, b2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
        xp = get_array_module(p.data, p.grad)
        st = self.state.get(id(p))
        if st is None:
            st = self.state[id(p)] = {"step": 0, "m": xp.zeros_like(p.data), "v": xp.zeros_like(p.data)}
        st["step"] += 1
        t, m, v, grad = st["step"], st["m"], st["v"], p.grad
        if wd:
            p.data *= 1.0 - lr * wd  # decoupled: shrink the weights, not the gradient
        m *= b1
        m += (1.0 - b1) * grad
        v *= b2
        v += (1.0 - b2) * (grad * grad)
        bias1 = 1.0 - b1 ** t
        bias2 = 1.0 - b2 ** t
        denom = xp.sqrt(v)  # a fresh temporary, updated in place below
        denom /= math.sqrt(bias2)
        denom += eps
        p.data -= (lr / bias1) * (m / denom)

    # ---- the fast version: the whole group as three flat buffers ---------------------------
    def _flat_ok(self, i, g):
        """Make sure group i lives in flat buffers (build them if needed); False if it cannot."""
        ps = g["params"]
        xp = get_array_module(ps[0].data)
        dtype = ps[0].data.dtype
        if any(get_array_module(p.data) is not xp or p.data.dtype != dtype for p in ps):
            return False
        steps = {self.state[id(p)]["step"] if id(p) in self.state else 0 for p in ps}
        if len(steps) != 1:  # parameters at different step counts: keep them separate
            return False
        f = self._flat.get(i)
        if f is not None and all(p.data is pv and self.state[id(p)]["m"] is mv and self.state[id(p)]["v"] is vv
                                 for p, pv, mv, vv in zip(ps, f["p_views"], f["m_views"], f["v_views"])):
            return True
        # (Re)build: copy the current values in, then hand out views of the flat buffers.
        sizes = [p.data.size for p in ps]
        offsets = [0]
        for n in sizes:
            offsets.append(offsets[-1] + n)
        flat = {k: xp.empty(offsets[-1], dtype=dtype) for k in ("p", "m", "v", "g")}
        for k in ("p_views", "m_views", "v_views"):
            flat[k] = []
        step = steps.pop()
        for p, lo, hi in zip(ps, offsets, offsets[1:]):
            st = self.state.get(id(p)) or {"step": 0}
            for key, src in (("p", p.data), ("m", st.get("m")), ("v", st.get("v"))):
                view = flat[key][lo:hi].reshape(p.data.shape)  # a view into the flat buffer
                if src is None:
                    view[...] = 0
                else:
                    view[...] = src
                flat[key + "_views"].append(view)
            p.data = flat["p_views"][-1]
            self.state[id(p)] = {"step": step, "m": flat["m_views"][-1], "v": flat["v_views"][-1]}
        self._flat[i] = flat
        return True

    def _step_flat(self, i, g):
        from .functional._blocks import for_each_block

        lr, (b1, b2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
        f = self._flat[i]
        P, M, V, G = f["p"], f["m"], f["v"], f["g"]  # (n_params,) each
        xp = get_array_module(P)
        xp.concatenate([p.grad.reshape(-1) for p in g["params"]], out=G)  # (n_params,) one copy
        for p in g["params"]:
            self.state[id(p)]["step"] += 1
        t = self.state[id(g["params"][0])]["step"]
        bias1 = 1.0 - b1 ** t
        bias2 = 1.0 - b2 ** t
        # Python floats throughout: float32 buffers stay float32 (no NumPy float64 scalars).
        decay, c1, c2 = 1.0 - lr * wd, 1.0 - b1, 1.0 - b2
        sqrt_bias2, step_size = math.sqrt(bias2), lr / bias1

        def block(r):  # the same operations, in the same order, as _step_param
            pb, mb, vb, gb = P[r], M[r], V[r], G[r]  # (R,) views
            tmp = xp.empty_like(gb)  # (R,) scratch
            if wd:
                pb *= decay
            mb *= b1
            xp.multiply(gb, c1, out=tmp)
            mb += tmp
            vb *= b2
            xp.multiply(gb, gb, out=tmp)
            tmp *= c2
            vb += tmp
            xp.sqrt(vb, out=tmp)  # denominator
            tmp /= sqrt_bias2
            tmp += eps
            xp.divide(mb, tmp, out=tmp)
            tmp *= step_size
            pb -= tmp

        # 1-D buffers: "rows" are single numbers, blocks of BLOCK_BYTES of them.
        for_each_block(xp, P.shape[0], P.dtype.itemsize, block)


def clip_grad_norm(params, max_norm):
    """Scale all gradients so their global L2 norm is at most `max_norm`; return the norm before.

    Gradients are replaced (not modified in place): the autograd engine may share them.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = get_array_module(grads[0])
    total = math.sqrt(float(sum(float(xp.vdot(g.ravel(), g.ravel())) for g in grads)))
    if total > max_norm and total > 0:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * scale
    return total


def cosine_lr(step, max_steps, lr_max, warmup_steps=0, min_lr_ratio=0.1):
    """Linear warm-up, then cosine decay to `min_lr_ratio * lr_max` at exactly `max_steps`.

    The cycle length is the run's horizon: Hoffmann et al. (2022) found that a cosine cycle
    longer than the run (stopping early on a longer schedule) overestimates the final loss,
    a mistake that biased Kaplan et al.'s estimates towards bigger models.
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    if warmup_steps > 0 and step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    min_lr = min_lr_ratio * lr_max
    return min_lr + 0.5 * (lr_max - min_lr) * (1.0 + math.cos(math.pi * progress))


def param_groups_for_decay(model, weight_decay):
    """Two groups: matrices (embeddings, projections) decay; biases and norm gains do not."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
