"""Scaling-law science: FLOP counting, the Chinchilla parametric fit, the three approaches of
Hoffmann et al. (2022), a synthetic language with a known entropy rate, and compute planning.

* `flops`       — C ≈ 6ND, the Appendix-F per-component count, Table A4, exact counts for ModelConfig
* `parametric`  — `ChinchillaFit` L(N, D) = E + A/N^α + B/D^β and its compute-optimal closed form
* `fit`         — Huber/L-BFGS fit of the parametric law from 4,500 starts, bootstrap intervals
* `approaches`  — Approach 1 (envelope), 2 (IsoFLOP parabolas), 3 (parametric) over a results table
* `synthetic`   — `SyntheticLanguage`, a Markov source whose entropy rate (the true E) is exact
* `plan`, `cli` — `python -m minichinchilla scaling plan --flops C`
"""
from .flops import (ParamCount, TABLE_A4, flops_6nd, model_flops, params_count, table_a4_ratios,
                    transformer_flops)
from .parametric import EPOCH_FIT, PAPER_FIT, ChinchillaFit

__all__ = ["ParamCount", "TABLE_A4", "flops_6nd", "model_flops", "params_count",
           "table_a4_ratios", "transformer_flops", "EPOCH_FIT", "PAPER_FIT", "ChinchillaFit"]
