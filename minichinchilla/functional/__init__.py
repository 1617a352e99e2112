"""Hand-derived forward/backward pairs for every layer of the model (chapters 01–05).

Each layer is a pair of pure functions, CS231n style:

    out, cache = x_forward(inputs...)
    grads = x_backward(dout, cache)   # in the order of the forward's differentiable inputs

Kernels take their array module from their inputs (`get_array_module`), so the same
code runs on NumPy and CuPy. Nothing here mutates its inputs or `dout`.

These are the reference pairs: one line per chapter equation, no threads, no blocking, no
`out=` buffers. Their tuned twins live in `minichinchilla.functional.fast` with the same names
and contracts, each held equal to its reference by tests/test_functional_fast.py; a model
chooses its set with `ModelConfig(kernels="fast" | "reference")`.
"""
from .activations import gelu_backward, gelu_forward, relu_backward, relu_forward
from .attention import attention_backward, attention_forward, attention_step, attention_weights
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .embedding import embedding_backward, embedding_forward
from .ffn import ffn_backward, ffn_forward
from .linear import linear_backward, linear_forward
from .norms import layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from .rope import rope_backward, rope_forward, rope_tables
from .softmax import softmax_backward, softmax_forward
from .swiglu import swiglu_backward, swiglu_forward

__all__ = [
    "linear_forward", "linear_backward",
    "embedding_forward", "embedding_backward",
    "softmax_forward", "softmax_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "layernorm_forward", "layernorm_backward",
    "rmsnorm_forward", "rmsnorm_backward",
    "relu_forward", "relu_backward",
    "gelu_forward", "gelu_backward",
    "ffn_forward", "ffn_backward",
    "swiglu_forward", "swiglu_backward",
    "attention_forward", "attention_backward", "attention_step", "attention_weights",
    "rope_forward", "rope_backward", "rope_tables",
]

from . import fast  # noqa: E402  (after __all__: the fast set reuses the reference's names)
