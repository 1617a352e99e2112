"""Data augmentation for sequence classification: make new training inputs whose label is known.

Labels here depend on the topic of a docstring (which package), not on any single word, so
deleting a few tokens should not change them; the model sees a slightly different input each
epoch and must not rely on one token. Two methods, both on token ids (after tokenization):

* `token_dropout`: delete each token independently with probability ``p`` (the "random
  deletion" of Wei & Zou's EDA, 2019, applied to subword tokens);
* `span_deletion`: delete one contiguous span covering a fraction of the tokens.

Whether this helps is an empirical question: the fine-tuning CLI's ``--augment`` and
`compare_augmentation` measure it on the same budget and seed. Only training inputs are
augmented, never validation or test.
"""
from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("token_dropout", "span_deletion")


def token_dropout(ids, p: float, rng: np.random.Generator, keep_last: bool = True) -> list:
    """Delete each token with probability `p`; at least one token is always kept.

    Inputs:
        ids: a sequence of token ids; p: deletion probability in [0, 1);
        keep_last: never delete the final token (the end-of-text token the head reads).
    Returns:
        a new list of ids.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    ids = list(ids)
    if len(ids) <= 1 or p == 0.0:
        return ids
    keep = rng.random(len(ids)) >= p  # (n,)
    if keep_last:
        keep[-1] = True
    if not keep.any():
        keep[rng.integers(len(ids))] = True
    out = [i for i, k in zip(ids, keep) if k]
    if keep_last and len(out) == 1 and len(ids) > 1:  # only the end token left: keep one more
        out.insert(0, ids[int(rng.integers(len(ids) - 1))])
    return out


def span_deletion(ids, fraction: float, rng: np.random.Generator, keep_last: bool = True) -> list:
    """Delete one contiguous span of ``round(fraction * n)`` tokens at a random place."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    ids = list(ids)
    body = len(ids) - 1 if keep_last else len(ids)
    n_del = min(int(round(fraction * len(ids))), body - 1)
    if n_del <= 0:
        return ids
    start = int(rng.integers(0, body - n_del + 1))
    return ids[:start] + ids[start + n_del:]


def augment(ids, method: str, strength: float, rng: np.random.Generator) -> list:
    """Apply the augmentation called `method` ("token_dropout" or "span_deletion")."""
    if method == "token_dropout":
        return token_dropout(ids, strength, rng)
    if method == "span_deletion":
        return span_deletion(ids, strength, rng)
    raise ValueError(f"unknown augmentation {method!r}; choose one of {AUGMENTATIONS}")
