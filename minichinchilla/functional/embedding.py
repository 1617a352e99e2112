"""Token embedding: a row lookup, whose backward is a scatter-add of rows (the reference;
`fast/embedding.py` replaces the element-at-a-time `add.at` with a sort and one `reduceat`)."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_float, check_int


def embedding_forward(idx, E):
    """Look up one row of E per token id (chapters/02-softmax-cross-entropy.md, eq. 2.9).

    Inputs:
        idx: (...) integer token ids, e.g. (B, T), each in [0, V)
        E: (V, C) embedding table
    Returns:
        out: (..., C) with out[b, t] = E[idx[b, t]]
        cache: (idx, V, E's dtype) for `embedding_backward`
    """
    xp = get_array_module(idx, E)
    check_int("idx", idx)
    check_float("E", E)
    if E.ndim != 2:
        raise ValueError(f"E must be 2-D (V, C), got shape {tuple(E.shape)}")
    V = E.shape[0]
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            raise ValueError(f"idx holds {bad}, outside [0, {V}) for E of shape {tuple(E.shape)}")
    out = xp.take(E, idx, axis=0)  # (..., C), a fresh copy of the selected rows
    return out, (idx, E.shape, E.dtype)


def embedding_backward(dout, cache):
    """Scatter-add each upstream row into the row of E it came from
    (chapters/02-softmax-cross-entropy.md, eq. 2.10).

    A token id that appears k times receives the SUM of its k upstream rows: the
    lookup used that row k times, and gradients accumulate over uses.

    Inputs:
        dout: (..., C) upstream gradient, same leading shape as idx
        cache: from `embedding_forward`
    Returns:
        dE: (V, C) in E's dtype; rows of ids that never appeared are zero
    """
    idx, E_shape, E_dtype = cache
    xp = get_array_module(dout, idx)
    V, C = E_shape
    dE = xp.zeros(E_shape, dtype=E_dtype)  # (V, C)
    flat = idx.reshape(-1)  # (N,)
    # np.add.at, not dE[flat] += ...: with += a repeated id would keep only ONE of its rows.
    xp.add.at(dE, flat, dout.reshape(-1, C).astype(E_dtype, copy=False))  # (V, C) eq. 2.10
    return dE
