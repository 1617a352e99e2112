"""Train/validation split at the level of documents.

Why split documents, not lines or tokens? Neighbouring lines of one document share
names, phrases and topic. If line 7 of a docstring is in training and line 8 in
validation, the model has in effect seen the answer, and the validation loss says it
generalises better than it does. Holding out whole documents asks the honest question:
how well does the model predict text it has never seen any part of?
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def split_documents(documents: Sequence[T], val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[list[T], list[T]]:
    """Split documents into (train, validation) with a seeded random choice.

    The same documents, fraction and seed always give the same split. Both parts keep
    the documents' original order.

    Inputs:
        documents: any sequence (usually `Document`s).
        val_fraction: share held out for validation, 0 <= val_fraction < 1; the
            validation set gets ``round(n * val_fraction)`` documents, at least 1 when
            ``val_fraction > 0``.
        seed: seed of the `np.random.Generator` that picks the validation documents.
    Returns:
        (train, validation) lists; disjoint, together all documents.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(documents)
    n_val = 0 if val_fraction == 0 else max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ValueError(f"cannot split {n} document(s) with val_fraction={val_fraction}: "
                         f"training would be empty; add documents or lower val_fraction")
    order = np.random.default_rng(seed).permutation(n)  # (n,)
    is_val = np.zeros(n, dtype=bool)  # (n,)
    is_val[order[:n_val]] = True
    train = [d for d, v in zip(documents, is_val) if not v]
    val = [d for d, v in zip(documents, is_val) if v]
    return train, val
