"""Turning token ids into the arrays a model trains on.

Two shapes of data, two tools:

1. **Language modelling on a stream** (`TokenStream`, `lm_batches`). All training
   documents are one long 1-D array of ids (`encode_documents`). A training example is
   any window of ``seq_len + 1`` consecutive ids: the first ``seq_len`` are the inputs
   ``x`` and the last ``seq_len`` the targets ``y`` (``y[t] = x[t+1]``, "predict the next
   token"). Every position is a prediction, so there is no padding at all.
   Training draws windows at random offsets from a `np.random.Generator` that the caller
   owns: save ``rng.bit_generator.state`` in a checkpoint and the resumed run draws the
   same batches. Evaluation walks the stream in order (`TokenStream.sequential_batches`)
   so every validation token is predicted exactly once.
2. **Variable-length examples** (`pad_batch`, `lm_targets_with_ignore`), e.g. one
   docstring per row for fine-tuning. Rows are padded to a common length; the padding
   mask tells attention to ignore padded keys, and targets at padded positions are
   ``ignore_index`` so they add nothing to the loss (chapters/02-softmax-cross-entropy.md,
   eq. 2.6: the mean is over non-ignored targets only).

Arrays are NumPy (int64 ids, bool masks); the trainer moves them to the backend.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

IGNORE_INDEX = -100


class TokenStream:
    """Windows of a 1-D token array as ``(x, y)`` batches of shape ``(B, T)``.

    Inputs:
        tokens: (N,) integer ids.
        batch_size: B, rows per batch.
        seq_len: T, tokens per row.
    Raises:
        ValueError: ``tokens`` is not 1-D integers, or shorter than one batch window
            (``B * T + 1`` ids: B rows of T inputs, plus the one extra target).
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be a 1-D integer array, got shape {tokens.shape} "
                             f"and dtype {tokens.dtype}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        need = batch_size * seq_len + 1
        if len(tokens) < need:
            raise ValueError(f"token array has {len(tokens)} tokens, but one batch window needs "
                             f"batch_size * seq_len + 1 = {batch_size} * {seq_len} + 1 = {need}; "
                             f"use more text or a smaller batch_size/seq_len")
        self.tokens = tokens.astype(np.int64, copy=False)  # (N,)
        self.batch_size = batch_size
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.tokens)

    def sample_batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One training batch at random offsets.

        Returns:
            x: (B, T) int64 inputs; y: (B, T) int64 targets, ``y[:, t] == x[:, t+1]``.
        """
        B, T = self.batch_size, self.seq_len
        # The last valid start is N - T - 1: its window ends at the last token, index N - 1.
        starts = rng.integers(0, len(self.tokens) - T, size=B)  # (B,)
        windows = self.tokens[starts[:, None] + np.arange(T + 1)]  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)

    def sequential_batches(self, cover_tail: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every target in order, each exactly once: for evaluation.

        Rows are the non-overlapping windows starting at 0, T, 2T, ...; the last batch
        may have fewer than B rows. The ``(N - 1) % T`` targets left after the last full
        window go in one extra row aligned to the end of the stream whose already-counted
        targets are set to ``IGNORE_INDEX`` (only when ``cover_tail``).

        Yields:
            x: (b, T) int64, y: (b, T) int64 with b <= B.
        """
        B, T, N = self.batch_size, self.seq_len, len(self.tokens)
        n_full = (N - 1) // T
        starts = [k * T for k in range(n_full)]
        tail = (N - 1) - n_full * T  # targets not yet covered
        if cover_tail and tail:
            starts.append(N - 1 - T)
        for first in range(0, len(starts), B):
            rows = np.asarray(starts[first:first + B])  # (b,)
            windows = self.tokens[rows[:, None] + np.arange(T + 1)]  # (b, T+1)
            x, y = windows[:, :-1], windows[:, 1:].copy()  # (b, T), (b, T)
            if cover_tail and tail and first + B >= len(starts):
                y[-1, : T - tail] = IGNORE_INDEX  # these targets were in the previous row
            yield x, y

    def num_sequential_targets(self, cover_tail: bool = True) -> int:
        """How many targets `sequential_batches` scores (N - 1 with ``cover_tail``)."""
        N, T = len(self.tokens), self.seq_len
        return N - 1 if cover_tail else (N - 1) // T * T


def lm_batches(tokens: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator,
               num_batches: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random ``(x, y)`` training batches of shape (B, T) from a 1-D token array.

    Endless when ``num_batches`` is None. See `TokenStream.sample_batch`.
    """
    stream = TokenStream(tokens, batch_size, seq_len)
    k = 0
    while num_batches is None or k < num_batches:
        yield stream.sample_batch(rng)
        k += 1


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int | None = 0, max_len: int | None = None,
              truncate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad variable-length id sequences into one array.

    Inputs:
        sequences: B non-empty lists/arrays of ids.
        pad_id: the id written into padding (e.g. ``tokenizer.pad_id``; it is never read,
            because the mask hides it from attention and the targets ignore it). ``None`` — a
            tokenizer without a padding token, such as byte-level BPE — writes 0.
        max_len: longest row kept; T = min(max_len, longest sequence).
        truncate: cut longer sequences to ``max_len`` (keeping the start); if False they raise.
    Returns:
        ids: (B, T) int64; key_padding_mask: (B, T) bool, True where padding;
        lengths: (B,) int64 real lengths after truncation.
    """
    if len(sequences) == 0:
        raise ValueError("pad_batch needs at least one sequence, got none")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)  # (B,)
    if (lengths == 0).any():
        raise ValueError(f"sequence {int(np.argmin(lengths))} is empty; "
                         f"an all-padding row has nothing to attend to")
    if max_len is not None and lengths.max() > max_len:
        if not truncate:
            i = int(np.argmax(lengths))
            raise ValueError(f"sequence {i} has length {lengths[i]} > max_len={max_len} "
                             f"and truncate=False")
        lengths = np.minimum(lengths, max_len)
    B, T = len(sequences), int(lengths.max())
    ids = np.full((B, T), 0 if pad_id is None else pad_id, dtype=np.int64)  # (B, T)
    for b, (seq, n) in enumerate(zip(sequences, lengths)):
        ids[b, :n] = np.asarray(seq[:n], dtype=np.int64)
    key_padding_mask = np.arange(T)[None, :] >= lengths[:, None]  # (B, T)
    return ids, key_padding_mask, lengths


def lm_targets_with_ignore(ids: np.ndarray, key_padding_mask: np.ndarray,
                           ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Next-token targets for a padded batch: ``targets[b, t] = ids[b, t+1]``.

    A target is ``ignore_index`` when position t+1 is padding (there is no next token)
    or t is the last column; padding therefore never adds to the loss.

    Inputs:
        ids: (B, T) int ids; key_padding_mask: (B, T) bool, True where padding.
    Returns:
        targets: (B, T) int64.
    """
    ids, mask = np.asarray(ids), np.asarray(key_padding_mask, dtype=bool)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(f"ids and key_padding_mask must be the same 2-D shape, got "
                         f"{ids.shape} and {mask.shape}")
    targets = np.full(ids.shape, ignore_index, dtype=np.int64)  # (B, T)
    targets[:, :-1] = ids[:, 1:]  # (B, T-1)
    no_next = np.ones(ids.shape, dtype=bool)  # (B, T)
    no_next[:, :-1] = mask[:, 1:] | mask[:, :-1]  # next position is padding, or this one is
    targets[no_next] = ignore_index
    return targets
