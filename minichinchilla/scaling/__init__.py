"""Scaling-law science: FLOP counting, the Chinchilla parametric fit, the three approaches of
Hoffmann et al. (2022), a synthetic language with a known entropy rate, and compute planning.

* `flops`       — C ≈ 6ND, the Appendix-F per-component count, Table A4, exact counts for ModelConfig
* `parametric`  — `ChinchillaFit` L(N, D) = E + A/N^α + B/D^β and its compute-optimal closed form
* `fit`         — Huber/L-BFGS fit of the parametric law from 4,500 starts, bootstrap intervals
* `approaches`  — Approach 1 (envelope), 2 (IsoFLOP parabolas), 3 (parametric) over a results table
* `synthetic`   — `SyntheticLanguage`, a Markov source whose entropy rate (the true E) is exact
* `plan`, `cli` — `python -m minichinchilla scaling plan --flops C`
"""
from .approaches import approach1, approach2, approach3, load_results, save_results
from .fit import bootstrap_fit, fit_parametric
from .flops import (TABLE_A4, ParamCount, flops_6nd, model_flops, params_count, table_a4_ratios,
                    transformer_flops)
from .parametric import EPOCH_FIT, PAPER_FIT, ChinchillaFit
from .plan import plan, suggest_shape
from .synthetic import SyntheticLanguage

__all__ = ["TABLE_A4", "ParamCount", "flops_6nd", "model_flops", "params_count",
           "table_a4_ratios", "transformer_flops", "EPOCH_FIT", "PAPER_FIT", "ChinchillaFit",
           "fit_parametric", "bootstrap_fit", "approach1", "approach2", "approach3",
           "load_results", "save_results", "SyntheticLanguage", "plan", "suggest_shape"]
