"""Task heads on a pretrained decoder: classification, per-token tagging, regression.

The body is the pretrained `TransformerLM` up to its final norm: ``h = body.hidden_states(idx,
key_padding_mask)``, shape (B, T, C). A head is one new linear layer on top (GPT-1's recipe,
Radford et al. 2018):

    classification   p(y | x) = softmax(W_c h_x + b_c)      h_x: one vector per sequence
    tagging          p(y_t | x) = softmax(W_c h_t + b_c)    one prediction per token
    regression       y_hat = w^T h_x + b                    trained with squared error

In a decoder the attention is causal: ``h_t`` has read tokens 0..t only, so the one position
that has read the whole sequence is the LAST real (non-padding) token. ``pooling="last"``
takes ``h`` there — with right padding that is position ``length - 1`` of each row, not
``T - 1`` (a classic bug reads the padding). ``pooling="mean"`` averages ``h_t`` over the
real positions instead. The linear layer is `ops.linear` (chapters/01-autograd.md, eq. 1.8),
the loss the fused cross-entropy (chapters/02-softmax-cross-entropy.md, eq. 2.6).

New parameters start small: weights N(0, 0.02^2), biases 0, so the untrained head predicts
near-uniform classes (loss ≈ log K) and the first gradients do not wreck the body.
"""
from __future__ import annotations

import numpy as np

from minichinchilla import tensor as ops
from minichinchilla.backend import asarray, get_array_module
from minichinchilla.nn import INIT_STD, Linear, Module
from minichinchilla.tensor import Tensor, no_grad

POOLINGS = ("last", "mean")
HEAD_KINDS = ("classify", "tag", "regress")


def _mask_array(key_padding_mask, B, T):
    if key_padding_mask is None:
        return None
    mask = key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask
    if tuple(mask.shape) != (B, T) or mask.dtype != bool:
        raise ValueError(f"key_padding_mask must be a bool array of shape {(B, T)}, got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} of shape {tuple(mask.shape)}")
    return mask


def last_positions(key_padding_mask, B, T):
    """Index of the last non-padding position of each row. Returns (B,) int64.

    With right padding (`pad_batch`) this is ``length - 1``; a row with no padding gives
    ``T - 1``. A row that is all padding is an error (it has nothing to read).
    """
    mask = _mask_array(key_padding_mask, B, T)
    if mask is None:
        return np.full(B, T - 1, dtype=np.int64)  # (B,)
    xp = get_array_module(mask)
    real = ~mask  # (B, T)
    if not bool(real.any(axis=1).all()):
        raise ValueError("key_padding_mask has a row that is all padding")
    # the last True of each row: T - 1 - (first True of the reversed row)
    return T - 1 - xp.argmax(real[:, ::-1], axis=1).astype(xp.int64)  # (B,)


def pool(h, key_padding_mask=None, pooling="last"):
    """One vector per sequence from hidden states.

    Inputs:
        h: Tensor (B, T, C); key_padding_mask: (B, T) bool, True at padding, or None.
        pooling: "last" (h at the last non-padding position) or "mean" (mean over the
            non-padding positions).
    Returns:
        Tensor (B, C).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if h.ndim != 3:
        raise ValueError(f"h must have shape (B, T, C), got {h.shape}")
    B, T, C = h.shape
    xp = get_array_module(h.data)
    if pooling == "last":
        pos = asarray(last_positions(key_padding_mask, B, T))  # (B,)
        return h[xp.arange(B), pos]  # (B, C) gather; backward scatters into those rows only
    mask = _mask_array(key_padding_mask, B, T)
    if mask is None:
        return h.mean(axis=1)  # (B, C)
    real = (~mask).astype(h.dtype)  # (B, T) 1 at real tokens
    counts = real.sum(axis=1, keepdims=True)  # (B, 1)
    if not bool((counts > 0).all()):
        raise ValueError("key_padding_mask has a row that is all padding")
    return (h * real[:, :, None]).sum(axis=1) / counts  # (B, C)


class Head(Module):
    """A linear head ``W h + b`` with ``n_out`` outputs.

    ``kind`` = "classify" (pooled, logits (B, K)), "tag" (every position, logits (B, T, K))
    or "regress" (pooled, one number per row (B,)).
    """

    def __init__(self, d_model, n_out, kind="classify", pooling="last", std=INIT_STD, seed=0,
                 dtype="float32"):
        if kind not in HEAD_KINDS:
            raise ValueError(f"kind must be one of {HEAD_KINDS}, got {kind!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if kind == "regress" and n_out != 1:
            raise ValueError(f"a regression head has one output, got n_out={n_out}")
        self.kind, self.pooling = kind, pooling
        # Small normal weights, zero bias: near-uniform predictions at the start.
        self.proj = Linear(d_model, n_out, bias=True, std=std, rng=np.random.default_rng(seed),
                           dtype=dtype)

    def forward(self, h, key_padding_mask=None):
        """Inputs: h (B, T, C) Tensor, key_padding_mask (B, T) bool or None.
        Returns: logits (B, K) | tag logits (B, T, K) | predictions (B,)."""
        if self.kind == "tag":
            return self.proj(h)  # (B, T, K)
        out = self.proj(pool(h, key_padding_mask, self.pooling))  # (B, n_out)
        return out.reshape(out.shape[0]) if self.kind == "regress" else out


class FineTuneModel(Module):
    """A pretrained body plus a new head. ``out = model(idx, key_padding_mask)``.

    With ``freeze_body=True`` the body runs without recording a graph (`no_grad`): no
    gradient reaches it, it is not given to the optimiser, and a step costs about a third
    of a full one (no backward through the body).
    """

    def __init__(self, body, head, freeze_body=False):
        self.body, self.head = body, head
        self.freeze_body = bool(freeze_body)

    def forward(self, idx, key_padding_mask=None):
        if self.freeze_body:
            with no_grad():
                h = self.body.hidden_states(idx, key_padding_mask)  # (B, T, C), no graph
            h = h.detach()
        else:
            h = self.body.hidden_states(idx, key_padding_mask)  # (B, T, C)
        return self.head(h, key_padding_mask)

    def trainable_parameters(self):
        return self.head.parameters() if self.freeze_body else self.parameters()


def classification_loss(logits, labels):
    """Mean cross-entropy of (B, K) logits against (B,) class ids (chapters/02-softmax-cross-entropy.md, eq. 2.6)."""
    return ops.cross_entropy(logits, labels)


def tagging_loss(logits, tags, ignore_index=-100):
    """Mean cross-entropy over real tokens: (B, T, K) logits, (B, T) tags, padding = ignore_index."""
    return ops.cross_entropy(logits, tags, ignore_index=ignore_index)


def squared_error_loss(pred, target):
    """Mean squared error ``mean((y_hat - y)^2)`` of (B,) predictions against (B,) targets."""
    target = target.data if isinstance(target, Tensor) else target
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {tuple(target.shape)}")
    diff = pred - Tensor(asarray(target, dtype=pred.dtype))  # (B,)
    return (diff * diff).mean()
