"""Planning a compute-optimal run: from a FLOP budget to N_opt, D_opt and a concrete model shape.

`plan(C)` evaluates the closed form of a `ChinchillaFit` (chapters/10-scaling-laws.md, eq. 10.2)
and then searches a grid of GPT-2-style shapes for the one whose exact parameter count
(`params_count`, chapters/05-transformer.md, eq. 5.6) is closest to N_opt, keeping the aspect
ratio d_model/n_layers in a sensible range (Kaplan et al. 2020 found loss flat for ratios from
~20 to ~200; GPT-2 small has 64, Chinchilla 70B about 100).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .flops import params_count
from .parametric import EPOCH_FIT, PAPER_FIT, ChinchillaFit

__all__ = ["FITS", "Shape", "Plan", "suggest_shape", "plan"]

FITS = {"epoch": EPOCH_FIT, "paper": PAPER_FIT}
FIT_SOURCES = {"epoch": "Besiroglu et al. 2024 refit of Approach 3, matches the paper's Table 3",
               "paper": "Hoffmann et al. 2022 eq. (10), printed constants; N_opt ~2x low",
               "custom": "a ChinchillaFit given by the caller"}


@dataclass(frozen=True)
class Shape:
    """A GPT-2-style shape and its exact parameter counts."""

    n_layers: int
    d_model: int
    n_heads: int
    d_ff: int
    N: int
    N_nonembed: int

    @property
    def aspect(self):
        return self.d_model / self.n_layers


@dataclass(frozen=True)
class Plan:
    """Compute-optimal N, D for `flops` under `fit`, and the nearest concrete `shape`; D_shape is
    the token count that spends the budget on that shape, C / (6·shape.N)."""

    flops: float
    fit_name: str
    fit: ChinchillaFit
    N_opt: float
    D_opt: float
    tokens_per_param: float
    loss_opt: float
    shape: Shape
    D_shape: float
    vocab_size: int
    seq_len: int

    def report(self):
        s, f = self.shape, self.fit
        lines = [
            f"compute budget C       {self.flops:.3e} FLOPs",
            f"fit                    {self.fit_name} ({FIT_SOURCES[self.fit_name]})",
            f"                       E={f.E:g}, A={f.A:g}, B={f.B:g}, "
            f"alpha={f.alpha:g}, beta={f.beta:g} (a={f.a:.3f}, b={f.b:.3f})",
            f"N_opt                  {self.N_opt:.3e} parameters",
            f"D_opt                  {self.D_opt:.3e} tokens",
            f"tokens per parameter   {self.tokens_per_param:.1f}",
            f"predicted loss         {self.loss_opt:.3f} nats/token",
            f"suggested shape        n_layers={s.n_layers}, d_model={s.d_model}, n_heads={s.n_heads}, "
            f"d_ff={s.d_ff} (vocab {self.vocab_size}, seq_len {self.seq_len}, tied embeddings)",
            f"  its parameters       N={s.N:.4g} ({s.N / self.N_opt:.3f} x N_opt), "
            f"non-embedding {s.N_nonembed:.4g}, d_model/n_layers={s.aspect:.0f}",
            f"  tokens for budget    D = C/(6N) = {self.D_shape:.3e}",
        ]
        if abs(np.log(s.N / self.N_opt)) > np.log(1.5):
            lines.append("  note: no shape in the searched range comes within 1.5x of N_opt "
                         "(at this budget the embedding table alone is too large or too small)")
        return "\n".join(lines)


def suggest_shape(N_target, vocab_size=32_000, seq_len=2048, head_size=64, aspect=(32, 256),
                  max_layers=128, max_d_model=16_384, target_aspect=64.0):
    """The GPT-2-style shape whose parameter count is closest to N_target (in log ratio).

    Searches n_layers ∈ 1..max_layers and d_model ∈ head_size·{1, 2, …} ≤ max_d_model with
    aspect[0] ≤ d_model/n_layers ≤ aspect[1]; ties within 1 % are broken toward d_model/n_layers
    ≈ target_aspect. n_heads = d_model/head_size, d_ff = 4·d_model. Returns a Shape."""
    if not (np.isfinite(N_target) and N_target > 0):
        raise ValueError(f"N_target must be positive and finite, got {N_target!r}")
    best, best_score = None, np.inf
    for L in range(1, max_layers + 1):
        for d in range(head_size, max_d_model + 1, head_size):
            if not aspect[0] <= d / L <= aspect[1]:
                continue
            cfg = SimpleNamespace(vocab_size=vocab_size, seq_len=seq_len, d_model=d, n_layers=L,
                                  n_heads=d // head_size, d_ff=4 * d, norm="layernorm",
                                  tie_embeddings=True, pos_encoding="learned")
            pc = params_count(cfg)
            # closeness in log N first; a small penalty prefers the middle aspect ratio
            score = abs(np.log(pc.total / N_target)) + 0.005 * abs(np.log(d / L / target_aspect))
            if score < best_score:
                best_score = score
                best = Shape(L, d, d // head_size, 4 * d, pc.total, pc.non_embedding)
    if best is None:
        raise ValueError(f"no shape satisfies aspect range {aspect} with head_size {head_size}")
    return best


def plan(flops, fit="epoch", vocab_size=32_000, seq_len=2048, head_size=64):
    """Compute-optimal plan for a budget of `flops` FLOPs.

    Inputs:  flops > 0;  fit: 'epoch' (default: Besiroglu et al.'s refit, which matches the
             paper's Table 3), 'paper' (the printed eq. (10) constants) or a ChinchillaFit;  vocab_size, seq_len,
             head_size for the suggested shape.
    Returns: Plan.
    """
    try:
        flops = float(flops)
    except (TypeError, ValueError):
        raise ValueError(f"flops must be a number, got {flops!r}") from None
    if not (np.isfinite(flops) and flops > 0):
        raise ValueError(f"flops must be a positive, finite number of FLOPs, got {flops!r}")
    if isinstance(fit, ChinchillaFit):
        name, law = "custom", fit
    elif fit in FITS:
        name, law = fit, FITS[fit]
    else:
        raise ValueError(f"fit must be one of {sorted(FITS)} or a ChinchillaFit, got {fit!r}")
    N_opt, D_opt = law.compute_optimal(flops)
    shape = suggest_shape(N_opt, vocab_size=vocab_size, seq_len=seq_len, head_size=head_size)
    return Plan(flops=flops, fit_name=name, fit=law, N_opt=N_opt, D_opt=D_opt,
                tokens_per_param=D_opt / N_opt, loss_opt=law.loss(N_opt, D_opt), shape=shape,
                D_shape=flops / (6.0 * shape.N), vocab_size=vocab_size, seq_len=seq_len)
