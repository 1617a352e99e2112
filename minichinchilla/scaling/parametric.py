"""The Chinchilla parametric loss L(N, D) = E + A/N^α + B/D^β and its compute-optimal frontier.

E is the loss of a perfect model of the data (the entropy of the text), A/N^α the penalty for a
finite model, B/D^β the penalty for finite data. Minimising L along the iso-compute line C = 6ND
has a closed form (chapters/10-scaling-laws.md, eq. 10.2):

    G = (αA / (βB))^(1/(α+β)),   N_opt = G (C/6)^a,   D_opt = G^-1 (C/6)^b,
    a = β/(α+β),   b = α/(α+β).

E does not move the optimum at all: it shifts every point on the iso-compute line equally.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChinchillaFit", "PAPER_FIT", "EPOCH_FIT"]


@dataclass(frozen=True)
class ChinchillaFit:
    """Parameters of L(N, D) = E + A/N^α + B/D^β (chapters/10-scaling-laws.md, eq. 10.1)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    # -- the law itself ------------------------------------------------------------------------
    def loss(self, N, D):
        """Predicted loss (nats/token) at N parameters and D tokens
        (chapters/10-scaling-laws.md, eq. 10.1). Inputs broadcast; returns float or float64 array
        of the broadcast shape."""
        N = np.asarray(N, dtype=np.float64)
        D = np.asarray(D, dtype=np.float64)
        out = self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)
        return float(out) if out.ndim == 0 else out

    # -- the compute-optimal frontier -----------------------------------------------------------
    @property
    def a(self):
        """Exponent of N_opt ∝ C^a: a = β/(α+β)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self):
        """Exponent of D_opt ∝ C^b: b = α/(α+β); a + b = 1 because C = 6ND."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self):
        """G = (αA/(βB))^(1/(α+β)), the constant in N_opt = G·(C/6)^a."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def compute_optimal(self, C):
        """(N_opt, D_opt) minimising L(N, D) subject to 6ND = C
        (chapters/10-scaling-laws.md, eq. 10.2).

        Why it holds: on the line D = C/(6N), dL/dN = −αA N^(−α−1) + βB (C/6)^(−β) N^(β−1) = 0
        gives N^(α+β) = (αA/βB)(C/6)^β. Inputs: C scalar or array (FLOPs, > 0).
        Returns: (N_opt, D_opt), floats or float64 arrays shaped like C.
        """
        C = np.asarray(C, dtype=np.float64)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError(f"C must be positive and finite, got {C!r}")
        x = C / 6.0
        N_opt = self.G * x ** self.a
        D_opt = x ** self.b / self.G
        if N_opt.ndim == 0:
            return float(N_opt), float(D_opt)
        return N_opt, D_opt

    def tokens_per_param(self, C):
        """D_opt/N_opt at budget C (chapters/10-scaling-laws.md, eq. 10.8); ≈ 20 is the famous
        Chinchilla rule, but note it drifts with C unless α = β."""
        N_opt, D_opt = self.compute_optimal(C)
        return D_opt / N_opt

    def optimal_loss(self, C):
        """L(N_opt(C), D_opt(C)), the lowest loss reachable with C FLOPs."""
        return self.loss(*self.compute_optimal(C))


# Hoffmann et al. (2022), eq. (10) in the paper: the rounded values printed in its body.
PAPER_FIT = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

# Besiroglu, Erdil, Barnett & You (2024), "Chinchilla Scaling: A replication attempt"
# (arXiv 2404.10102): refit of Approach 3 on data read off the paper's Figure 4. Their a ≈ 0.51
# agrees with the paper's Approaches 1 and 2, unlike PAPER_FIT's a ≈ 0.45.
EPOCH_FIT = ChinchillaFit(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
