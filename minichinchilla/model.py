"""The decoder-only language model (chapters/05-transformer.md).

Chinchilla, like Gopher, is a decoder-only autoregressive transformer — not the
encoder-decoder the source article describes. For token ids x_1 .. x_T (`idx`, one row) the
model is

    X_0 = E[x_1..x_T] + P[0:T]                           (eq. 5.1)   (T, C)
    X_l = Block_l(X_{l-1}),  l = 1..L                     (eq. 5.2)   (T, C)
    Z   = Norm(X_L) E^T        (tied embeddings)          (eq. 5.3)   (T, V)

with E the (V, C) token embedding, whose row e(v) = E[v] belongs to token v. Row t of Z scores
every possible next token: p(x_{t+1} = v | x_1..x_t) = softmax(Z[t])_v, which is
exp(e(v)^T h_t) / sum_u exp(e(u)^T h_t) with h_t = Norm(X_L)[t] — the pretraining objective of
chapters/02-softmax-cross-entropy.md, eq. 2.8.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import tensor as ops
from .backend import asarray, to_numpy
from .nn import (FEED_FORWARDS, INIT_STD, ROPE_BASE, Block, Embedding, Linear, Module, Parameter,
                 init_normal, make_norm)
from .tensor import Tensor, no_grad

__all__ = ["ModelConfig", "TransformerLM", "ROPE_BASE", "sample_next"]


@dataclass
class ModelConfig:
    """The shape of a TransformerLM; `Block` and `TransformerLM` read everything from it.

    `seq_len` is the model's context: the most tokens it reads at once (the learned position
    table has `seq_len` rows). `activation` names the feed-forward variant, one of
    `minichinchilla.nn.FEED_FORWARDS`: "gelu" (GPT-2), "relu" (the source article) or "swiglu"
    (PaLM, LLaMA: three matrices, no biases). `d_ff`, the hidden width F, defaults to 4·d_model
    for gelu and relu; for swiglu to 8/3·d_model rounded up to a multiple of 8
    (`nn.swiglu_width`), LLaMA's choice: three C×F matrices then hold about as many weights as
    two at 4·d_model, so a swiglu model is about as large as a gelu one of the same shape.
    """

    vocab_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int | None = None
    norm: str = "layernorm"  # or "rmsnorm" (Gopher and Chinchilla used RMSNorm)
    activation: str = "gelu"  # a key of nn.FEED_FORWARDS: "gelu", "relu" or "swiglu"
    tie_embeddings: bool = True
    pos_encoding: str = "learned"  # or "rope"
    dtype: str = "float32"  # "float64" for gradient checks
    # The forward/backward pairs the layers run: "fast" (minichinchilla.functional.fast, tuned) or
    # "reference" (minichinchilla.functional, the code the chapters derive). Same numbers either way.
    kernels: str = "fast"

    def __post_init__(self):
        for name in ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig: d_model ({self.d_model}) must be divisible by "
                             f"n_heads ({self.n_heads})")
        if self.activation not in FEED_FORWARDS:
            raise ValueError(f"ModelConfig.activation must be one of {list(FEED_FORWARDS)}, "
                             f"got {self.activation!r}")
        if self.d_ff is None:
            self.d_ff = FEED_FORWARDS[self.activation].default_d_ff(self.d_model)
        if not isinstance(self.d_ff, (int, np.integer)) or isinstance(self.d_ff, bool) or self.d_ff < 1:
            raise ValueError(f"ModelConfig.d_ff must be a positive integer or None, got {self.d_ff!r}")
        if self.pos_encoding not in ("learned", "rope"):
            raise ValueError(f"ModelConfig.pos_encoding must be 'learned' or 'rope', got {self.pos_encoding!r}")
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError("ModelConfig: RoPE needs an even head size (d_model / n_heads)")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"ModelConfig.norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}")
        if self.kernels not in ("fast", "reference"):
            raise ValueError(f"ModelConfig.kernels must be 'fast' or 'reference', got {self.kernels!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"ModelConfig.dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"ModelConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


class TransformerLM(Module):
    """A GPT-style decoder-only language model. ``logits, loss = model(idx, targets)``."""

    def __init__(self, config: ModelConfig, seed: int = 0):
        self.config = c = config
        self.kernels = c.kernels  # the kernel set of the tied logits and the loss (the layers hold their own)
        rng = np.random.default_rng(seed)
        self.tok_emb = Embedding(c.vocab_size, c.d_model, rng=rng, dtype=c.dtype, kernels=c.kernels)
        self.pos_emb = (Parameter(init_normal(rng, (c.seq_len, c.d_model), INIT_STD, c.dtype))
                        if c.pos_encoding == "learned" else None)
        self.blocks = [Block(c, rng=rng) for _ in range(c.n_layers)]
        self.norm_f = make_norm(c.norm, c.d_model, c.dtype, kernels=c.kernels)
        self.lm_head = None if c.tie_embeddings else Linear(c.d_model, c.vocab_size, bias=False,
                                                            rng=rng, dtype=c.dtype, kernels=c.kernels)

    # ---- forward ---------------------------------------------------------------------
    def _check_idx(self, idx):
        if not hasattr(idx, "dtype") or idx.dtype.kind not in "iu":
            raise TypeError(f"idx must be an integer array of token ids, got "
                            f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        if idx.shape[1] > self.config.seq_len:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds the model's context "
                             f"seq_len={self.config.seq_len}")

    def hidden_states(self, idx, key_padding_mask=None):
        """The final normalised hidden states h_t, shape (B, T, C) — what heads read."""
        idx = idx.data if isinstance(idx, Tensor) else idx
        self._check_idx(idx)
        x = self._embed(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, key_padding_mask=key_padding_mask)  # (B, T, C)
        return self.norm_f(x)  # (B, T, C)

    def _embed(self, idx, start=0):
        """Token embeddings plus learned positions start .. start+T-1 (none with RoPE): (B, T, C)."""
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb[start:start + idx.shape[1]]  # (B, T, C) + (T, C)
        return x

    def logits_from_hidden(self, h):
        if self.lm_head is not None:
            return self.lm_head(h)  # (B, T, V)
        # Tied embeddings: logit_v = e(v)^T h_t (eq. 5.3); E^T is a view, the GEMM reads it transposed.
        return ops.linear(h, self.tok_emb.weight.T, kernels=self.kernels)  # (B, T, V)

    def forward(self, idx, targets=None, key_padding_mask=None, ignore_index=-100):
        logits = self.logits_from_hidden(self.hidden_states(idx, key_padding_mask))  # (B, T, V)
        loss = None
        if targets is not None:
            targets = targets.data if isinstance(targets, Tensor) else targets
            if tuple(targets.shape) != logits.shape[:2]:
                raise ValueError(f"targets must have shape {logits.shape[:2]}, got {tuple(targets.shape)}")
            loss = ops.cross_entropy(logits, targets, ignore_index=ignore_index, kernels=self.kernels)
        return logits, loss

    def attention_maps(self, idx, key_padding_mask=None):
        """Every layer's attention weights for the token ids idx (B, T): a list of n_layers arrays
        of shape (B, NH, T, T), P[b, h, t, s] = how much query t of head h reads key s.
        Runs the same forward as `hidden_states`, without building a graph."""
        idx = idx.data if isinstance(idx, Tensor) else idx
        self._check_idx(idx)
        maps = []
        with no_grad():
            x = self._embed(idx)  # (B, T, C)
            for block in self.blocks:
                maps.append(block.attn.weights(block.norm1(x), key_padding_mask))  # (B, NH, T, T)
                x = block(x, key_padding_mask=key_padding_mask)  # (B, T, C)
        return maps

    # ---- bookkeeping -----------------------------------------------------------------
    def num_params(self, non_embedding=False):
        """Parameter count N; a tied embedding is counted once (chapters/05-transformer.md, eq. 5.6).

        ``non_embedding=True`` leaves out the token and position embeddings (and an untied
        output matrix), as Kaplan et al. count; Chinchilla counts everything.
        """
        n = sum(p.size for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.size
            n -= self.pos_emb.size if self.pos_emb is not None else 0
            n -= self.lm_head.weight.size if self.lm_head is not None else 0
        return int(n)

    # ---- generation ------------------------------------------------------------------
    def _step(self, idx, caches, start):
        """Run new tokens through the stack with per-block KV caches; logits of the last token."""
        x = self._embed(idx, start)  # (B, T_new, C) at positions start .. start+T_new-1
        for i, block in enumerate(self.blocks):
            x, caches[i] = block.step(x, caches[i])
        return self.logits_from_hidden(self.norm_f(x)).data[:, -1, :]  # (B, V)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=None, use_cache=True,
                 stream=None):
        """Sample continuations. Returns (B, T + max_new_tokens) token ids (NumPy int64).

        The model sees at most `seq_len` tokens of context. While the sequence fits, a KV cache
        makes each new token cost one position's work (eq. 5.8); once the window must slide,
        every position's embedding changes, so the window is recomputed each step (as the
        uncached path always does) — both give the same tokens.
        ``temperature=0`` picks the most likely token; ``top_k`` keeps the k most likely;
        ``stream(new_ids)`` is called after every step (the CLI prints tokens as they come).
        """
        idx = np.asarray(to_numpy(idx.data if isinstance(idx, Tensor) else idx), dtype=np.int64)
        if idx.ndim != 2 or idx.shape[1] < 1:
            raise ValueError(f"generate: idx must have shape (B, T) with T >= 1, got {idx.shape}")
        if temperature < 0:
            raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
        if top_k is not None and not (1 <= top_k):
            raise ValueError(f"generate: top_k must be a positive integer, got {top_k}")
        rng = np.random.default_rng(seed)
        L = self.config.seq_len
        was_training = self.training
        self.eval()
        caches, cached_len = None, 0
        with no_grad():
            for _ in range(max_new_tokens):
                if use_cache and idx.shape[1] <= L:
                    if caches is None:  # prime the cache with the whole prompt
                        caches = [None] * len(self.blocks)
                        logits = self._step(asarray(idx), caches, 0)
                    else:
                        logits = self._step(asarray(idx[:, -1:]), caches, cached_len)
                    cached_len = idx.shape[1]
                else:
                    window = asarray(idx[:, -L:])
                    logits = self.logits_from_hidden(self.hidden_states(window)).data[:, -1, :]
                nxt = sample_next(to_numpy(logits).astype(np.float64), temperature, top_k, rng)
                idx = np.concatenate([idx, nxt[:, None]], axis=1)
                if stream is not None:
                    stream(nxt)
        self.train(was_training)
        return idx


def sample_next(logits, temperature, top_k, rng):
    """One token per row from logits (B, V): greedy at temperature 0, else softmax(logits / T)."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]  # (B, 1) the k-th largest logit
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cdf = np.cumsum(probs / probs.sum(axis=-1, keepdims=True), axis=-1)  # (B, V)
    u = rng.random((logits.shape[0], 1))
    return np.minimum((cdf < u).sum(axis=-1), logits.shape[-1] - 1)
