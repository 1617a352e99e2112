"""The ten exercises: which notebook holds each, what the student writes, and which of the
package's own implementations are switched off while a submission is graded.

Graded cells are matched to exercises by their grade_id: every grade_id of exercise N starts with
``exN_`` (``ex1_softmax_vector``, ``ex1_solution``, ...). Given code cells use ``exN_given`` and a
notebook's set-up cell ``aK_setup``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    key: str  # "ex1"; the prefix of every grade_id of this exercise
    title: str
    notebook: str
    writes: tuple  # the functions the student writes
    chapter: str
    minutes: int  # time estimate for a student who has read the chapter
    disable: tuple  # "module:attribute" — package code that gives the answer away


_F = "minichinchilla.functional"
_T = "minichinchilla.tensor"
_C = "minichinchilla.composed"

EXERCISES = (
    Exercise("ex1", "softmax backward (Jacobian-vector product)", "A1-backprop-basics.ipynb",
             ("softmax_backward",), "chapters/02-softmax-cross-entropy.md", 30,
             (f"{_F}:softmax_backward", f"{_T}:softmax",
              f"{_C}:softmax")),
    Exercise("ex2", "cross-entropy backward with ignore_index", "A1-backprop-basics.ipynb",
             ("cross_entropy_backward",), "chapters/02-softmax-cross-entropy.md", 30,
             (f"{_F}:cross_entropy_backward", f"{_T}:cross_entropy", f"{_C}:cross_entropy")),
    Exercise("ex3", "layernorm backward", "A2-layers.ipynb",
             ("layernorm_backward",), "chapters/04-ffn-norm-residual.md", 45,
             (f"{_F}:layernorm_backward", f"{_T}:layernorm", f"{_C}:layernorm")),
    Exercise("ex4", "GELU (tanh) and FFN backward", "A2-layers.ipynb",
             ("gelu_backward", "ffn_backward"), "chapters/04-ffn-norm-residual.md", 45,
             (f"{_F}:gelu_backward", f"{_F}:ffn_backward", f"{_F}:linear_backward",
              f"{_T}:gelu", f"{_T}:ffn", f"{_T}:linear", f"{_C}:gelu", f"{_C}:ffn")),
    Exercise("ex5", "embedding backward (repeated ids accumulate)", "A1-backprop-basics.ipynb",
             ("embedding_backward",), "chapters/02-softmax-cross-entropy.md", 20,
             (f"{_F}:embedding_backward", f"{_T}:embedding")),
    Exercise("ex6", "multi-head causal attention backward", "A3-attention.ipynb",
             ("attention_backward",), "chapters/03-attention.md", 90,
             (f"{_F}:attention_backward", f"{_T}:attention", f"{_C}:attention")),
    Exercise("ex7", "an autograd primitive: amax with tie-splitting", "A4-autograd-and-optim.ipynb",
             ("amax",), "chapters/01-autograd.md", 40,
             (f"{_T}:amax", f"{_T}:Tensor.max")),
    Exercise("ex8", "AdamW with decoupled weight decay", "A4-autograd-and-optim.ipynb",
             ("adamw_step",), "chapters/07-pretraining.md", 30,
             ("minichinchilla.optim:AdamW.step",)),
    Exercise("ex9", "transformer FLOPs and the compute-optimal allocation", "A5-scaling.ipynb",
             ("transformer_flops", "compute_optimal"), "chapters/09-compute-optimal.md", 40,
             ("minichinchilla.scaling.flops:transformer_flops",
              "minichinchilla.scaling.flops:_forward_components",
              "minichinchilla.scaling.flops:model_flops",
              "minichinchilla.scaling.parametric:ChinchillaFit.compute_optimal",
              "minichinchilla.scaling.parametric:ChinchillaFit.G",
              "minichinchilla.scaling.parametric:ChinchillaFit.a",
              "minichinchilla.scaling.parametric:ChinchillaFit.b",
              "minichinchilla.scaling.parametric:ChinchillaFit.tokens_per_param",
              "minichinchilla.scaling.parametric:ChinchillaFit.optimal_loss")),
    Exercise("ex10", "fitting the Chinchilla parametric loss", "A5-scaling.ipynb",
             ("fit_parametric",), "chapters/10-scaling-laws.md", 60,
             ("minichinchilla.scaling.fit:fit_parametric",
              "minichinchilla.scaling.fit:bootstrap_fit",
              "minichinchilla.scaling.fit:objective_and_grad")),
)

BY_KEY = {e.key: e for e in EXERCISES}


def exercise_of(grade_id):
    """The Exercise a grade_id belongs to (None for set-up cells such as ``a1_setup``)."""
    if not grade_id:
        return None
    return BY_KEY.get(grade_id.split("_", 1)[0])


def all_disabled():
    """Every disabled target, in a stable order (used by the grader's first cell)."""
    seen = []
    for e in EXERCISES:
        for t in e.disable:
            if t not in seen:
                seen.append(t)
    return tuple(seen)
