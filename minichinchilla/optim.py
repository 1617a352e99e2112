"""Optimisers and the learning-rate schedule (chapters/07-pretraining.md).

`AdamW` follows PyTorch's update rule and order exactly (decoupled weight decay, as
Chinchilla used — Hoffmann et al. found AdamW beat Adam for their models):

    p <- p - lr * wd * p                      # decay first, independent of the gradient
    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Parameter groups let norms and biases skip weight decay, as is usual.
Updates happen in place on `.data` (optimiser state is the one place in-place work belongs):
a parameter keeps its array object, whatever the optimiser.
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

    One parameter at a time, one line per equation of chapters/07-pretraining.md: (7.4) decay,
    (7.5) moments, (7.6) bias-corrected step. Every update is in place on ``p.data``, ``m`` and
    ``v``: a parameter keeps its array, so a model's arrays stay the model's own. A faster step
    over whole groups at once, same numbers to the bit, is the explicit opt-in
    `minichinchilla.functional.fast.FusedAdamW` (chapters/12-performance.md).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamW: invalid lr={lr}, betas={betas} or eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:  # a parameter without a gradient is skipped, as in PyTorch
                    self._update(p, g)

    def _moments(self, p):
        """This parameter's state: step count t and the moments m, v (zeros before its first step)."""
        if id(p) not in self.state:
            xp = get_array_module(p.data)
            self.state[id(p)] = {"step": 0, "m": xp.zeros_like(p.data), "v": xp.zeros_like(p.data)}
        return self.state[id(p)]

    def _update(self, p, g):
        lr, (b1, b2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
        st = self._moments(p)
        st["step"] += 1
        t, m, v, grad = st["step"], st["m"], st["v"], p.grad
        p.data *= 1.0 - lr * wd  # (7.4) decoupled: shrink the weights, not the gradient
        m *= b1
        m += (1.0 - b1) * grad  # (7.5) first moment
        v *= b2
        v += (1.0 - b2) * (grad * grad)  # (7.5) second moment
        # (7.6) with the bias corrections folded as PyTorch folds them (same float32 rounding):
        # lr * m_hat = (lr / (1 - b1^t)) * m  and  sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t).
        denom = get_array_module(v).sqrt(v) / math.sqrt(1.0 - b2 ** t) + eps  # sqrt(v_hat) + eps
        p.data -= (lr / (1.0 - b1 ** t)) * (m / denom)  # (7.6) the step


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
