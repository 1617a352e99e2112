"""Fused AdamW: accelerates `AdamW` of `minichinchilla/optim.py` (same rule, same bits).

The reference updates one parameter at a time: about twelve elementwise passes per parameter, each
a NumPy call. A model has dozens of small parameters (biases, norm gains), so the step pays ~80
calls per pass in overhead, and each big matrix streams from memory twelve times. Changes:

1. The moments m and v of a whole parameter group live in two flat buffers owned by the optimiser
   (``state[id(p)]["m"]`` is a view into one of them, so checkpoints see the usual per-parameter
   arrays). Each step gathers the gradients and the parameters into flat buffers with one
   ``concatenate`` each, and copies the new values back into every ``p.data`` in place: a
   parameter keeps its own array object, nothing is rebound.
2. The update runs over the flat buffers in cache-sized blocks on the worker threads
   (`_blocks.for_each_block`), into one scratch buffer per block: no temporaries.
3. The operations and their order are exactly the reference's, so the result is bit-for-bit the
   same (tests/test_optim.py).

What it buys depends on the model (one thread, CPU time, chapters/12-performance.md): for the
8k-parameter sweep model a step takes 0.08 ms instead of 0.21 ms (~30 small parameters: the calls
were the cost); for config (b)'s 4.8M parameters it is SLOWER, 10.2-10.7 ms against 8.3-8.8 ms,
because gathering and scattering the parameters costs two more passes than the calls it saves.
So it is an explicit opt-in: ``FusedAdamW(params, lr=..., weight_decay=...)`` where you would write
``AdamW(...)``, for models with many small parameters. If some parameter of a group has no gradient, or the group mixes dtypes or step
counts, that group takes the reference's per-parameter update, which PyTorch's semantics need.
"""
from __future__ import annotations

import math

from ...backend import get_array_module
from ...optim import AdamW
from ._blocks import for_each_block


class FusedAdamW(AdamW):
    """`minichinchilla.optim.AdamW` over flat per-group buffers (see the module docstring)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self._flat = {}  # group index -> {"m", "v", "p", "g": flat buffers, "offsets"}

    def step(self):
        for i, g in enumerate(self.param_groups):
            if all(p.grad is not None for p in g["params"]) and self._flat_ready(i, g):
                self._step_flat(self._flat[i], g)
            else:
                for p in g["params"]:
                    if p.grad is not None:
                        self._update(p, g)

    def _flat_ready(self, i, g):
        """Make sure group i's moments live in flat buffers (built or rebuilt from the per-parameter
        state); False when the group cannot share buffers (mixed arrays, dtypes or step counts)."""
        ps = g["params"]
        xp, dtype = get_array_module(ps[0].data), ps[0].data.dtype
        if any(get_array_module(p.data) is not xp or p.data.dtype != dtype for p in ps):
            return False
        if len({self.state[id(p)]["step"] if id(p) in self.state else 0 for p in ps}) != 1:
            return False
        f = self._flat.get(i)
        if f is not None and all(self.state.get(id(p), {}).get("m") is mv and self.state[id(p)]["v"] is vv
                                 for p, mv, vv in zip(ps, f["m_views"], f["v_views"])):
            return True
        offsets = [0]
        for p in ps:
            offsets.append(offsets[-1] + p.data.size)
        f = {k: xp.zeros(offsets[-1], dtype=dtype) for k in ("m", "v", "p", "g")}
        f["offsets"], f["m_views"], f["v_views"] = offsets, [], []
        for p, lo, hi in zip(ps, offsets, offsets[1:]):
            st = self._moments(p)
            m_view, v_view = f["m"][lo:hi].reshape(p.data.shape), f["v"][lo:hi].reshape(p.data.shape)
            m_view[...], v_view[...] = st["m"], st["v"]  # copy the state in, then hand out the views
            st["m"], st["v"] = m_view, v_view
            f["m_views"].append(m_view)
            f["v_views"].append(v_view)
        self._flat[i] = f
        return True

    def _step_flat(self, f, g):
        lr, (b1, b2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
        ps = g["params"]
        P, M, V, G = f["p"], f["m"], f["v"], f["g"]  # (n,) each
        xp = get_array_module(P)
        xp.concatenate([p.grad.reshape(-1) for p in ps], out=G)  # (n,) one copy of every gradient
        xp.concatenate([p.data.reshape(-1) for p in ps], out=P)  # (n,) and of every parameter
        for p in ps:
            self.state[id(p)]["step"] += 1
        t = self.state[id(ps[0])]["step"]
        # Python floats throughout: float32 buffers stay float32 (no NumPy float64 scalars).
        decay, c1, c2 = 1.0 - lr * wd, 1.0 - b1, 1.0 - b2
        step_size, sqrt_bias2 = lr / (1.0 - b1 ** t), math.sqrt(1.0 - b2 ** t)

        def block(r):  # the reference's operations, in the reference's order (AdamW._update)
            pb, mb, vb, gb = P[r], M[r], V[r], G[r]  # (R,) views
            tmp = xp.empty_like(gb)  # (R,) scratch
            pb *= decay  # (7.4)
            mb *= b1
            xp.multiply(gb, c1, out=tmp)
            mb += tmp  # (7.5)
            vb *= b2
            xp.multiply(gb, gb, out=tmp)
            tmp *= c2
            vb += tmp  # (7.5)
            xp.sqrt(vb, out=tmp)  # (7.6)
            tmp /= sqrt_bias2
            tmp += eps
            xp.divide(mb, tmp, out=tmp)
            tmp *= step_size
            pb -= tmp  # (7.6)

        for_each_block(xp, P.shape[0], P.dtype.itemsize, block)  # 1-D: a "row" is one number
        for p, lo, hi in zip(ps, f["offsets"], f["offsets"][1:]):
            p.data[...] = P[lo:hi].reshape(p.data.shape)  # in place: p keeps its own array
