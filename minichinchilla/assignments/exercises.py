"""The ten exercises: which notebook holds each, what the student writes, and which of the
package's own implementations are removed from the grading copy of the package.

Graded cells are matched to exercises by their grade_id: every grade_id of exercise N starts with
``exN_`` (``ex1_softmax_vector``, ``ex1_solution``, ...). Given code cells use ``exN_given`` and a
notebook's set-up cell ``aK_setup``.

``strip`` names what gives an exercise's answer away, by NAME rather than by module, so a tuned
twin in ``functional/fast/`` or a re-export anywhere is caught too (`gradingcopy.py`): a plain name
removes every module-level ``def`` (or assignment) of that name in every module of the copy;
``Class.attr`` removes that method or property from every class of that name.
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
    strip: tuple  # names removed from the grading copy (see the module docstring)


# Any gradient can be had without deriving it: by finite differences with the package's
# numerical_gradient, or by re-writing the forward with Tensor primitives and calling backward().
FINITE_DIFFERENCES = ("numerical_gradient",)
AUTOGRAD = ("Tensor.backward", "_topological_order")

EXERCISES = (
    Exercise("ex1", "softmax backward (Jacobian-vector product)", "A1-backprop-basics.ipynb",
             ("softmax_backward",), "chapters/02-softmax-cross-entropy.md", 30,
             ("softmax_backward", "softmax") + FINITE_DIFFERENCES + AUTOGRAD),
    Exercise("ex2", "cross-entropy backward with ignore_index", "A1-backprop-basics.ipynb",
             ("cross_entropy_backward",), "chapters/02-softmax-cross-entropy.md", 30,
             ("cross_entropy_backward", "cross_entropy") + FINITE_DIFFERENCES + AUTOGRAD),
    Exercise("ex3", "layernorm backward", "A2-layers.ipynb",
             ("layernorm_backward",), "chapters/04-ffn-norm-residual.md", 45,
             ("layernorm_backward", "layernorm") + FINITE_DIFFERENCES + AUTOGRAD),
    Exercise("ex4", "GELU (tanh) and FFN backward", "A2-layers.ipynb",
             ("gelu_backward", "ffn_backward"), "chapters/04-ffn-norm-residual.md", 45,
             ("gelu_backward", "ffn_backward", "linear_backward", "gelu", "ffn", "linear")
             + FINITE_DIFFERENCES + AUTOGRAD),
    Exercise("ex5", "embedding backward (repeated ids accumulate)", "A1-backprop-basics.ipynb",
             ("embedding_backward",), "chapters/02-softmax-cross-entropy.md", 20,
             ("embedding_backward", "embedding") + FINITE_DIFFERENCES + AUTOGRAD),
    Exercise("ex6", "multi-head causal attention backward", "A3-attention.ipynb",
             ("attention_backward",), "chapters/03-attention.md", 90,
             ("attention_backward", "attention") + FINITE_DIFFERENCES + AUTOGRAD),
    Exercise("ex7", "an autograd primitive: amax with tie-splitting", "A4-autograd-and-optim.ipynb",
             ("amax",), "chapters/01-autograd.md", 40,
             ("amax", "Tensor.max") + FINITE_DIFFERENCES),
    Exercise("ex8", "AdamW with decoupled weight decay", "A4-autograd-and-optim.ipynb",
             ("adamw_step",), "chapters/07-pretraining.md", 30,
             ("adamw_step", "AdamW.step", "FusedAdamW.step", "FusedAdamW._step_flat",
              "FusedAdamW._flat_ready")),
    Exercise("ex9", "transformer FLOPs and the compute-optimal allocation", "A5-scaling.ipynb",
             ("transformer_flops", "compute_optimal"), "chapters/09-compute-optimal.md", 40,
             ("transformer_flops", "_forward_components", "model_flops", "compute_optimal",
              "ChinchillaFit.compute_optimal", "ChinchillaFit.G", "ChinchillaFit.a", "ChinchillaFit.b",
              "ChinchillaFit.tokens_per_param", "ChinchillaFit.optimal_loss")),
    Exercise("ex10", "fitting the Chinchilla parametric loss", "A5-scaling.ipynb",
             ("fit_parametric",), "chapters/10-scaling-laws.md", 60,
             ("fit_parametric", "bootstrap_fit", "objective_and_grad")),
)

BY_KEY = {e.key: e for e in EXERCISES}


def exercise_of(grade_id):
    """The Exercise a grade_id belongs to (None for set-up cells such as ``a1_setup``)."""
    if not grade_id:
        return None
    return BY_KEY.get(grade_id.split("_", 1)[0])


def notebook_exercises(notebook):
    """The exercises of one notebook (by file name), in course order."""
    return tuple(e for e in EXERCISES if e.notebook == notebook)


def stripped_names(notebook):
    """Every name removed from the grading copy used for `notebook`, in a stable order."""
    seen = []
    for e in notebook_exercises(notebook):
        for name in e.writes + e.strip:
            if name not in seen:
                seen.append(name)
    return tuple(seen)
