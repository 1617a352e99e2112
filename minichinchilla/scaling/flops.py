"""Counting training FLOPs and parameters: the bookkeeping behind C ≈ 6ND.

Two ways of counting the compute of one training run live here:

* the rule of thumb ``C = 6 N D`` (chapters/09-compute-optimal.md, eq. 9.1): every parameter takes
  part in one multiply-add (2 FLOPs) per token in the forward pass and two in the backward pass;
* an explicit per-component count of one sequence, as Hoffmann et al. (2022, "Training
  Compute-Optimal Large Language Models", Appendix F) do it, that also sees the attention
  matrix (which grows with the sequence length S, not with N) and the vocabulary projections.

`table_a4_ratios` puts the two side by side for the six models of the paper's Table A4, and shows
something the paper does not say: its printed ratios are reproduced only if the embedding and
final-logit FLOPs are *left out*, although the text of Appendix F lists them.

`model_flops` and `params_count` do the same exact counting for this repository's own
GPT-2-style `ModelConfig` (duck-typed: any object with the attribute names works).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import FEED_FORWARDS

__all__ = [
    "flops_6nd",
    "transformer_flops",
    "TABLE_A4",
    "TableA4Row",
    "table_a4_ratios",
    "table_a4_report",
    "model_flops",
    "params_count",
    "ParamCount",
]


def flops_6nd(N, D):
    """Training FLOPs by the rule of thumb C = 6·N·D (chapters/09-compute-optimal.md, eq. 9.1).

    Inputs:  N  scalar or array, parameters;  D  scalar or array, training tokens (broadcast).
    Returns: float or float64 array of the same broadcast shape.

    The 6 is 2 (a multiply and an add) × 3 (forward, plus a backward pass that costs twice the
    forward because it computes gradients for both the activations and the weights).
    """
    N = np.asarray(N, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    out = 6.0 * N * D
    return float(out) if out.ndim == 0 else out


def _forward_components(n_layers, d_model, d_ff, n_heads, d_head, seq_len, vocab_size):
    """Forward FLOPs of one sequence, component by component (Hoffmann et al. 2022, App. F)."""
    S, d, f, h, V = seq_len, d_model, d_ff, n_heads, vocab_size
    kh = d_head * n_heads  # total width of queries/keys/values over all heads
    # Python ints throughout: exact, no overflow (6.8B model × 2048 tokens is ~1e14).
    return {
        "embeddings": 2 * S * V * d,  # as if the lookup were a one-hot (S, V) @ (V, d) matmul
        "qkv": n_layers * 2 * 3 * S * d * kh,  # x @ [Wq Wk Wv]: (S, d) @ (d, 3kh)
        "attn_logits": n_layers * 2 * S * S * kh,  # Q @ K^T per head: (S, k) @ (k, S), h heads
        "attn_softmax": n_layers * 3 * h * S * S,  # ~3 FLOPs per score (max-subtract, exp, divide)
        "attn_reduce": n_layers * 2 * S * S * kh,  # weights @ V per head: (S, S) @ (S, k)
        "attn_project": n_layers * 2 * S * kh * d,  # concatenated heads @ Wo: (S, kh) @ (kh, d)
        "dense": n_layers * 2 * S * (d * f + d * f),  # two FFN matmuls (S, d)@(d, f), (S, f)@(f, d)
        "logits": 2 * S * d * V,  # final h @ W_out: (S, d) @ (d, V)
    }


def transformer_flops(n_layers, d_model, d_ff, n_heads, d_head, seq_len, vocab_size,
                      include_embeddings=True):
    """Training FLOPs for ONE sequence of `seq_len` tokens, counted per component.

    This is the count of Hoffmann et al. (2022), Appendix F
    (chapters/09-compute-optimal.md, eq. 9.3), with training = 3 × forward
    (chapters/09-compute-optimal.md, eq. 9.4):

    ======================  =========================
    embeddings              2·S·V·d
    per layer: QKV          2·3·S·d·(k·h)
    attention logits        2·S²·(k·h)
    softmax                 3·h·S²
    reduction (P @ V)       2·S²·(k·h)
    output projection       2·S·(k·h)·d
    dense block             2·S·(d·f + d·f)
    final logits            2·S·d·V
    ======================  =========================

    Inputs:  n_layers L, d_model d, d_ff f, n_heads h, d_head k, seq_len S, vocab_size V (ints);
             include_embeddings: False leaves out the embedding and final-logit terms.
    Returns: int, training FLOPs per sequence (divide by S for FLOPs per token).
    Biases, normalisation, activations and residual adds are not counted (they are O(S·d) each,
    a fraction ~1/d of the matmuls).
    """
    for name, v in (("n_layers", n_layers), ("d_model", d_model), ("d_ff", d_ff),
                    ("n_heads", n_heads), ("d_head", d_head), ("seq_len", seq_len),
                    ("vocab_size", vocab_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    parts = _forward_components(int(n_layers), int(d_model), int(d_ff), int(n_heads),
                                int(d_head), int(seq_len), int(vocab_size))
    if not include_embeddings:
        parts["embeddings"] = 0
        parts["logits"] = 0
    forward = sum(parts.values())
    return 3 * forward  # backward ≈ 2 × forward (gradients w.r.t. inputs and w.r.t. weights)


# ----------------------------------------------------------------------------------------------
# Table A4 of Hoffmann et al. (2022): "our count" / 6ND for six models, seq 2048, vocab 32,000.
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableA4Row:
    """One model of Table A4. `params` is the size as printed there ("1.1B"); `params_a9` the
    exact size listed for the same shape in the paper's Table A9 (all 50 models)."""

    name: str
    params: float
    params_a9: float
    d_model: int
    ffw_size: int
    kv_size: int
    n_heads: int
    n_layers: int
    printed_ratio: float


# Rows as in Table A4 (cross-checked against Table A9, which lists the same shapes with exact
# sizes: 74M, 306M, 552M, 1,143M, 1,593M, 6,796M). Note: a widely copied version of these rows gives
# the 552M model 22 layers and the 1.1B model 24; Table A9 says 24 and 26, and only 24/26 give
# the printed ratios (22/24 give 0.99 and 1.00) — see `table_a4_ratios`.
TABLE_A4 = (
    TableA4Row("73M", 73e6, 74e6, 640, 2560, 64, 10, 10, 1.03),
    TableA4Row("305M", 305e6, 306e6, 1024, 4096, 64, 16, 20, 1.10),
    TableA4Row("552M", 552e6, 552e6, 1280, 5120, 128, 10, 24, 1.08),
    TableA4Row("1.1B", 1.1e9, 1143e6, 1792, 7168, 128, 14, 26, 1.04),
    TableA4Row("1.6B", 1.6e9, 1593e6, 2048, 8192, 128, 16, 28, 1.03),
    TableA4Row("6.8B", 6.8e9, 6796e6, 3584, 14336, 128, 28, 40, 0.99),
)
TABLE_A4_SEQ_LEN = 2048
TABLE_A4_VOCAB = 32_000


def _table_a4_n(row, n_source, vocab_size):
    d, f, kh, L = row.d_model, row.ffw_size, row.kv_size * row.n_heads, row.n_layers
    nonembedding = L * (3 * d * kh + kh * d + 2 * d * f)  # weight matrices of the blocks
    if n_source == "stated":
        return row.params
    if n_source == "a9":
        return row.params_a9
    if n_source == "nonembedding":
        return float(nonembedding)
    if n_source == "counted":
        # Gopher/Chinchilla blocks also carry Transformer-XL relative-position weights (a d×d
        # projection per layer); add those and one V×d embedding and Table A9's sizes come out
        # to within 0.2 %.
        return float(nonembedding + L * d * d + vocab_size * d)
    raise ValueError(f"n_source must be 'stated', 'a9', 'nonembedding' or 'counted', got {n_source!r}")


def table_a4_ratios(include_embeddings=False, n_source="stated", rows=TABLE_A4,
                    seq_len=TABLE_A4_SEQ_LEN, vocab_size=TABLE_A4_VOCAB):
    """Ratio (Appendix-F count) / (6·N·D) for the models of Table A4, with D = one sequence.

    Inputs:  include_embeddings: count the embedding and final-logit FLOPs (True) or not (False);
             n_source: which N goes into 6ND — 'stated' (Table A4's rounded size), 'a9' (Table A9's
             exact size), 'nonembedding' (block weight matrices only) or 'counted' (blocks +
             relative-position weights + one V×d embedding, which reproduces Table A9).
    Returns: float64 array (len(rows),).

    What it shows (measured; printed = 1.03 1.10 1.08 1.04 1.03 0.99):
      no embeddings, stated N:   1.037 1.103 1.084 1.085 1.028 0.994  (1.1B row off: "1.1B" is
                                 a rounding of 1,143M; with that N it is 1.044)
      no embeddings, Table A9 N: 1.023 1.100 1.084 1.045 1.033 0.994  (all within ±0.01)
      with embeddings, stated N: 1.598 1.318 1.233 1.190 1.110 1.027  (far off for small models)
    So Table A4 was computed without the 2·S·V·d embedding and logit terms that Appendix F lists.
    """
    out = []
    for row in rows:
        c = transformer_flops(row.n_layers, row.d_model, row.ffw_size, row.n_heads, row.kv_size,
                              seq_len, vocab_size, include_embeddings=include_embeddings)
        out.append(c / flops_6nd(_table_a4_n(row, n_source, vocab_size), seq_len))
    return np.array(out, dtype=np.float64)  # (len(rows),)


def table_a4_report(rows=TABLE_A4):
    """A printable table of the ratios every way they can be counted (for notebooks and the CLI)."""
    cols = [("no-emb/stated", False, "stated"), ("no-emb/A9", False, "a9"),
            ("no-emb/counted", False, "counted"), ("emb/stated", True, "stated"),
            ("emb/A9", True, "a9")]
    vals = {name: table_a4_ratios(emb, src, rows) for name, emb, src in cols}
    head = f"{'model':>6} {'printed':>8} " + " ".join(f"{c[0]:>15}" for c in cols)
    lines = [head]
    for i, row in enumerate(rows):
        lines.append(f"{row.name:>6} {row.printed_ratio:>8.2f} "
                     + " ".join(f"{vals[c[0]][i]:>15.3f}" for c in cols))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Exact counts for this repository's GPT-2-style model (duck-typed ModelConfig).
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamCount:
    """Parameters of a model. `embedding` holds every V×C or T×C table (token embedding, learned
    positions, an untied output head); `non_embedding` everything else (blocks, norms, biases)."""

    total: int
    non_embedding: int
    embedding: int


def _cfg(config, name, default=None, required=True):
    if hasattr(config, name):
        return getattr(config, name)
    if required:
        raise TypeError(f"config has no attribute {name!r} (needs vocab_size, seq_len, d_model, "
                        f"n_layers, n_heads; optional d_ff, activation, norm, tie_embeddings, "
                        f"pos_encoding)")
    return default


def _feed_forward(config):
    """The config's feed-forward variant (nn.FEED_FORWARDS): its matrix count, biases, width."""
    name = _cfg(config, "activation", "gelu", required=False)
    if name not in FEED_FORWARDS:
        raise ValueError(f"config.activation must be one of {list(FEED_FORWARDS)}, got {name!r}")
    return FEED_FORWARDS[name]


def _shape(config):
    V = int(_cfg(config, "vocab_size"))
    T = int(_cfg(config, "seq_len"))
    C = int(_cfg(config, "d_model"))
    L = int(_cfg(config, "n_layers"))
    NH = int(_cfg(config, "n_heads"))
    F = _cfg(config, "d_ff", None, required=False)
    F = _feed_forward(config).default_d_ff(C) if F is None else int(F)
    for name, v in (("vocab_size", V), ("seq_len", T), ("d_model", C), ("n_layers", L),
                    ("n_heads", NH), ("d_ff", F)):
        if v <= 0:
            raise ValueError(f"config.{name} must be positive, got {v}")
    if C % NH:
        raise ValueError(f"config.d_model={C} is not divisible by config.n_heads={NH}")
    return V, T, C, L, NH, F


def params_count(config):
    """Parameters of a GPT-2-style pre-norm decoder described by `config`
    (chapters/05-transformer.md, eq. 5.6; duck-typed: reads attributes by name). Agrees exactly
    with `TransformerLM.num_params()` for every norm / tying / position option.

    Inputs:  config with vocab_size V, seq_len T, d_model C, n_layers L, n_heads NH, d_ff F
             (None → the variant's default: 4C, or 8C/3 rounded up to a multiple of 8 for
             swiglu), activation (a key of nn.FEED_FORWARDS: 'gelu' and 'relu' have two FFN
             matrices with biases, 'swiglu' three without), norm ('layernorm': weight+bias;
             'rmsnorm': weight), tie_embeddings, pos_encoding ('learned' adds a T×C table;
             anything else, e.g. 'rope', adds none).
    Returns: ParamCount(total, non_embedding, embedding). A tied embedding is counted once.
    """
    V, T, C, L, NH, F = _shape(config)
    ffn = _feed_forward(config)
    norm = str(_cfg(config, "norm", "layernorm", required=False)).lower()
    per_norm = C if norm == "rmsnorm" else 2 * C
    tied = bool(_cfg(config, "tie_embeddings", True, required=False))
    learned_pos = str(_cfg(config, "pos_encoding", "learned", required=False)).lower() == "learned"

    block = (per_norm  # ln_1
             + C * 3 * C + 3 * C  # fused QKV weight and bias
             + C * C + C  # attention output projection
             + per_norm  # ln_2
             + ffn.n_matrices * C * F  # FFN: up and down (and SwiGLU's gate), each C×F
             + (F + C if ffn.bias else 0))  # FFN biases
    non_embedding = L * block + per_norm  # + final norm
    embedding = V * C + (T * C if learned_pos else 0) + (0 if tied else V * C)
    return ParamCount(total=non_embedding + embedding, non_embedding=non_embedding,
                      embedding=embedding)


def model_flops(config, seq_len=None):
    """Exact matmul training FLOPs of one sequence for a GPT-2-style `config` (duck-typed).

    Counted (forward, each matmul (m×k)@(k×n) = 2·m·n·k; chapters/09-compute-optimal.md, eq. 9.2),
    then × 3 for forward + backward (eq. 9.4):
      per block: fused QKV 2·T·C·3C; scores Q@K^T 2·T·T·C; weights@V 2·T·T·C; output projection
      2·T·C·C; FFN 2·T·C·F per matrix (up and down; SwiGLU adds its gate: three);  after the
      blocks: tied logits h@E^T 2·T·C·V.
    The attention matmuls are counted over the full T×T square, the conventional count. The
    package's blocked causal kernel skips blocks that lie wholly in the future (about half the
    square at large T) and its backward recomputes the scores; notebook 09 measures both.
    NOT counted: the embedding lookups (a gather, no arithmetic — unlike Hoffmann et al.'s 2·S·V·d),
    bias adds, LayerNorm, softmax, GELU (or SwiGLU's gating), residual adds, the loss and the
    optimiser step; all O(T·C), O(T·F) or O(T·T·NH), a few per cent at most for the small models
    of this course.

    With F = 4C and N_ne = 12·L·C² (the blocks' matmul weights), the count divided by 6·N_ne·T is
    exactly 1 + T/(6C) + V/(12·L·C): attention scores and the logits are what 6ND leaves out
    (chapters/09-compute-optimal.md, eq. 9.5).

    Inputs:  config (ModelConfig-like); seq_len overrides config.seq_len.
    Returns: int, training FLOPs per sequence of seq_len tokens.
    """
    V, T, C, L, NH, F = _shape(config)
    if seq_len is not None:
        if isinstance(seq_len, bool) or int(seq_len) != seq_len or seq_len <= 0:
            raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
        T = int(seq_len)
    block = (2 * T * C * 3 * C  # QKV: (T, C) @ (C, 3C)
             + 2 * T * T * C  # scores: NH × (T, hs) @ (hs, T), hs·NH = C
             + 2 * T * T * C  # mix: NH × (T, T) @ (T, hs)
             + 2 * T * C * C  # output projection (T, C) @ (C, C)
             + _feed_forward(config).n_matrices * 2 * T * C * F)  # FFN: (T, C) @ (C, F) per matrix
    forward = L * block + 2 * T * C * V  # + logits (T, C) @ (C, V)
    return 3 * forward
