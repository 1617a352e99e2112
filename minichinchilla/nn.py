"""Modules with PyTorch's names, so what a learner knows transfers (chapters/05-transformer.md).

A `Module` owns `Parameter`s and sub-modules as plain attributes; `named_parameters()` finds
them by walking the attributes in the order they were set. Each layer's `forward` is one
fused autograd node running a hand-derived pair; `kernels=` names the set of pairs: "reference"
(`minichinchilla.functional`, the default for a layer built by hand) or "fast"
(`minichinchilla.functional.fast`, what `TransformerLM` uses unless its config says otherwise).

Parameter names follow one scheme, PyTorch's: a module with one matrix calls it `weight` (and
its bias `bias`); a module with several names each by its role, `<role>_weight` / `<role>_bias`
(as `torch.nn.MultiheadAttention` has `in_proj_weight`): attention's `qkv_*` and `proj_*`, the
feed-forward's `up_*`, `down_*` (and SwiGLU's `gate_weight`). These are the checkpoint keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from . import tensor as ops
from .backend import asarray, get_backend, to_numpy
from .functional import swiglu_backward, swiglu_forward
from .tensor import Tensor, kernel_set


class Parameter(Tensor):
    """A Tensor that a Module trains: it always requires a gradient."""

    def __init__(self, data, dtype=None, name=None):
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)


INIT_STD = 0.02  # GPT-2's initial weight std (chapters/05-transformer.md, eq. 5.7)
ROPE_BASE = 10000.0  # the base of RoPE's rotation frequencies (chapters/05-transformer.md, eq. 5.4)


def init_normal(rng, shape, std, dtype):
    """N(0, std^2) drawn with NumPy (the same numbers on CPU and GPU), then put on the backend."""
    return asarray(rng.normal(0.0, std, size=shape).astype(dtype))


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # ---- parameter discovery -------------------------------------------------------------
    def _children(self):
        for name, value in vars(self).items():
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, (Parameter, Module)):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix="", _seen=None):
        """(name, Parameter) pairs; a parameter shared by two modules (tied) is listed once."""
        seen = set() if _seen is None else _seen
        for name, value in self._children():
            full = f"{prefix}{name}"
            if isinstance(value, Parameter):
                if id(value) not in seen:
                    seen.add(id(value))
                    yield full, value
            else:
                yield from value.named_parameters(prefix=full + ".", _seen=seen)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        yield self
        for _, value in self._children():
            if isinstance(value, Module):
                yield from value.modules()

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    # ---- saving and loading ------------------------------------------------------------------
    def state_dict(self):
        """name -> a NumPy copy of the parameter (host memory, ready to save)."""
        return {name: to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters. All-or-nothing: any missing, extra or mis-shaped
        key raises ValueError listing every problem, and then no parameter is changed.
        Keys of older checkpoints (`LEGACY_KEYS`) are read under their current names."""
        params = dict(self.named_parameters())
        state = {_current_key(k, params): v for k, v in state.items()}
        missing = sorted(set(params) - set(state))
        extra = sorted(set(state) - set(params))
        wrong = [f"{k}: expected {p.shape}, got {tuple(np.shape(state[k]))}"
                 for k, p in params.items() if k in state and tuple(np.shape(state[k])) != p.shape]
        if missing or extra or wrong:
            lines = []
            if missing:
                lines.append(f"missing keys: {', '.join(missing)}")
            if extra:
                lines.append(f"unexpected keys: {', '.join(extra)}")
            if wrong:
                lines.append("shape mismatch: " + "; ".join(wrong))
            raise ValueError("load_state_dict: nothing was loaded because of\n  " + "\n  ".join(lines))
        for k, p in params.items():
            p.data = asarray(state[k], dtype=p.data.dtype)
            p.grad = None


# Parameter names before they followed one scheme (checkpoints written before issue 11):
# old suffix -> current suffix. `load_state_dict` still reads them.
LEGACY_KEYS = {"attn.qkv": "attn.qkv_weight", "attn.proj": "attn.proj_weight",
               "ffn.w1": "ffn.up_weight", "ffn.b1": "ffn.up_bias",
               "ffn.w2": "ffn.down_weight", "ffn.b2": "ffn.down_bias"}


def _current_key(key, params):
    """`key` under its current name: 'blocks.0.ffn.w1' -> 'blocks.0.ffn.up_weight' when only the
    latter is a parameter; any other key unchanged."""
    if key in params:
        return key
    for old, new in LEGACY_KEYS.items():
        if key == old or key.endswith("." + old):
            renamed = key[:len(key) - len(old)] + new
            return renamed if renamed in params else key
    return key


class Linear(Module):
    """y = x W + b with W of shape (d_in, d_out) — the XW convention of the source article."""

    def __init__(self, d_in, d_out, bias=True, std=INIT_STD, rng=None, dtype="float32", kernels="reference"):
        rng = rng or np.random.default_rng(0)
        self.kernels = kernels
        self.weight = Parameter(init_normal(rng, (d_in, d_out), std, dtype))
        self.bias = Parameter(get_backend().zeros(d_out, dtype=dtype)) if bias else None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias, kernels=self.kernels)


class Embedding(Module):
    def __init__(self, num_embeddings, dim, std=INIT_STD, rng=None, dtype="float32", kernels="reference"):
        rng = rng or np.random.default_rng(0)
        self.kernels = kernels
        self.weight = Parameter(init_normal(rng, (num_embeddings, dim), std, dtype))

    def forward(self, idx):
        return ops.embedding(idx, self.weight, kernels=self.kernels)


class LayerNorm(Module):
    def __init__(self, dim, eps=1e-5, dtype="float32", kernels="reference"):
        xp = get_backend()
        self.weight = Parameter(xp.ones(dim, dtype=dtype))
        self.bias = Parameter(xp.zeros(dim, dtype=dtype))
        self.eps, self.kernels = eps, kernels

    def forward(self, x):
        return ops.layernorm(x, self.weight, self.bias, eps=self.eps, kernels=self.kernels)


class RMSNorm(Module):
    def __init__(self, dim, eps=1e-6, dtype="float32", kernels="reference"):
        self.weight = Parameter(get_backend().ones(dim, dtype=dtype))
        self.eps, self.kernels = eps, kernels

    def forward(self, x):
        return ops.rmsnorm(x, self.weight, eps=self.eps, kernels=self.kernels)


class MultiHeadAttention(Module):
    """Causal multi-head self-attention with a fused QKV projection (chapters/03-attention.md):
    `qkv_weight` is W_qkv (C, 3C) of eq. 3.1, `proj_weight` is W_o (C, C) of eq. 3.6."""

    def __init__(self, d_model, n_heads, causal=True, rope_base=None, out_std=INIT_STD, rng=None,
                 dtype="float32", kernels="reference"):
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        rng = rng or np.random.default_rng(0)
        xp = get_backend()
        self.n_heads, self.causal, self.rope_base, self.kernels = n_heads, causal, rope_base, kernels
        self.qkv_weight = Parameter(init_normal(rng, (d_model, 3 * d_model), INIT_STD, dtype))
        self.qkv_bias = Parameter(xp.zeros(3 * d_model, dtype=dtype))
        self.proj_weight = Parameter(init_normal(rng, (d_model, d_model), out_std, dtype))
        self.proj_bias = Parameter(xp.zeros(d_model, dtype=dtype))

    def forward(self, x, key_padding_mask=None):
        return ops.attention(x, self.qkv_weight, self.qkv_bias, self.proj_weight, self.proj_bias,
                             self.n_heads, causal=self.causal, key_padding_mask=key_padding_mask,
                             rope_base=self.rope_base, kernels=self.kernels)

    def weights(self, x, key_padding_mask=None):
        """The attention weights P, (B, NH, T, T), of input x (B, T, C): for plots, no gradient."""
        x = x.data if isinstance(x, Tensor) else x
        return kernel_set(self.kernels).attention_weights(
            x, self.qkv_weight.data, self.qkv_bias.data, self.n_heads, causal=self.causal,
            key_padding_mask=key_padding_mask, rope_base=self.rope_base)

    def step(self, x, kv_cache=None):
        """Inference on new tokens only, reusing cached keys/values (chapters/05-transformer.md, eq. 5.8)."""
        out, kv_cache = kernel_set(self.kernels).attention_step(
            x.data, self.qkv_weight.data, self.qkv_bias.data, self.proj_weight.data, self.proj_bias.data,
            self.n_heads, kv_cache=kv_cache, rope_base=self.rope_base)
        return Tensor(out), kv_cache


class FeedForward(Module):
    """FFN(x) = act(x W1 + b1) W2 + b2 (chapters/04-ffn-norm-residual.md, eq. 4.4), with
    `up_weight` = W1 (C, F) and `down_weight` = W2 (F, C); act is "gelu" or "relu"."""

    def __init__(self, d_model, d_ff, activation="gelu", out_std=INIT_STD, rng=None,
                 dtype="float32", kernels="reference"):
        rng = rng or np.random.default_rng(0)
        xp = get_backend()
        self.activation, self.kernels = activation, kernels
        self.up_weight = Parameter(init_normal(rng, (d_model, d_ff), INIT_STD, dtype))
        self.up_bias = Parameter(xp.zeros(d_ff, dtype=dtype))
        self.down_weight = Parameter(init_normal(rng, (d_ff, d_model), out_std, dtype))
        self.down_bias = Parameter(xp.zeros(d_model, dtype=dtype))

    def forward(self, x):
        return ops.ffn(x, self.up_weight, self.up_bias, self.down_weight, self.down_bias,
                       activation=self.activation, kernels=self.kernels)


class SwiGLUFeedForward(Module):
    """SwiGLU(x) = (silu(x W_g) ⊙ x W_u) W_d (chapters/04-ffn-norm-residual.md, eq. 4.15): three
    matrices `gate_weight` = W_g (C, F), `up_weight` = W_u (C, F), `down_weight` = W_d (F, C), no
    biases, as in PaLM and LLaMA. There is one (reference) pair for it, whatever `kernels` says."""

    def __init__(self, d_model, d_ff, out_std=INIT_STD, rng=None, dtype="float32", kernels=None):
        rng = rng or np.random.default_rng(0)
        self.gate_weight = Parameter(init_normal(rng, (d_model, d_ff), INIT_STD, dtype))
        self.up_weight = Parameter(init_normal(rng, (d_model, d_ff), INIT_STD, dtype))
        self.down_weight = Parameter(init_normal(rng, (d_ff, d_model), out_std, dtype))

    def forward(self, x):
        # One autograd node running the hand-derived pair, like every layer (tensor.fused).
        return ops.fused(swiglu_forward, swiglu_backward, x, self.gate_weight, self.up_weight,
                         self.down_weight)


def swiglu_width(d_model, multiple=8):
    """LLaMA's SwiGLU hidden width: 2/3 of 4·d_model, so that three C×F matrices hold as many
    weights as GELU's two at 4·d_model, rounded up to a multiple of 8 (LLaMA rounds to 256)."""
    return multiple * math.ceil(8 * d_model / (3 * multiple))


@dataclass(frozen=True)
class FeedForwardKind:
    """A feed-forward variant that `ModelConfig(activation=...)` can name.

    `module(d_model, d_ff, out_std=, rng=, dtype=, kernels=)` builds it; `default_d_ff(d_model)` is its
    hidden width F when the config gives none; `n_matrices` weight matrices of C·F entries and,
    if `bias`, F + C bias entries are what the parameter and FLOP counts
    (`minichinchilla/scaling/flops.py`) read. Adding a variant is one entry in FEED_FORWARDS.
    """

    module: Callable
    default_d_ff: Callable[[int], int]
    n_matrices: int
    bias: bool


FEED_FORWARDS = {
    "gelu": FeedForwardKind(partial(FeedForward, activation="gelu"), lambda C: 4 * C, 2, True),
    "relu": FeedForwardKind(partial(FeedForward, activation="relu"), lambda C: 4 * C, 2, True),
    "swiglu": FeedForwardKind(SwiGLUFeedForward, swiglu_width, 3, False),
}


def make_norm(kind, dim, dtype="float32", kernels="reference"):
    if kind == "layernorm":
        return LayerNorm(dim, dtype=dtype, kernels=kernels)
    if kind == "rmsnorm":
        return RMSNorm(dim, dtype=dtype, kernels=kernels)
    raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {kind!r}")


class Block(Module):
    """Pre-norm residual block (chapters/04-ffn-norm-residual.md, eq. 4.12):

        x = x + Attention(Norm(x));  x = x + FFN(Norm(x))

    The source article writes X^(l) = FFN(MultiHead(X^(l-1))): no residual path, no norm.
    Real models add both; chapter 04's notebook shows what goes wrong without them.

    Built from a `ModelConfig` (its d_model, n_heads, d_ff, n_layers, norm, activation,
    pos_encoding, dtype and kernels); the feed-forward is the config's entry in `FEED_FORWARDS`.
    """

    def __init__(self, config, rng=None):
        c = config  # a ModelConfig: d_model, n_heads, d_ff, n_layers, norm, activation, ...
        rng = rng or np.random.default_rng(0)
        # GPT-2: the two projections that write into the residual stream get a smaller init,
        # so the stream's variance does not grow with depth (chapters/05-transformer.md, eq. 5.7).
        out_std = INIT_STD / math.sqrt(2 * c.n_layers)
        rope_base = ROPE_BASE if c.pos_encoding == "rope" else None
        self.norm1 = make_norm(c.norm, c.d_model, c.dtype, c.kernels)
        self.attn = MultiHeadAttention(c.d_model, c.n_heads, rope_base=rope_base, out_std=out_std,
                                       rng=rng, dtype=c.dtype, kernels=c.kernels)
        self.norm2 = make_norm(c.norm, c.d_model, c.dtype, c.kernels)
        self.ffn = FEED_FORWARDS[c.activation].module(c.d_model, c.d_ff, out_std=out_std, rng=rng,
                                                      dtype=c.dtype, kernels=c.kernels)

    def forward(self, x, key_padding_mask=None):
        x = x + self.attn(self.norm1(x), key_padding_mask=key_padding_mask)  # (B, T, C)
        x = x + self.ffn(self.norm2(x))  # (B, T, C)
        return x

    def step(self, x, kv_cache=None):
        """Inference with a key/value cache: the same computation as forward, new tokens only."""
        a, kv_cache = self.attn.step(self.norm1(x), kv_cache)
        x = x + a
        return x + self.ffn(self.norm2(x)), kv_cache
