"""The fast kernel set: the same pairs as `minichinchilla.functional`, tuned for speed.

`minichinchilla.functional` is the reference: one line per chapter equation, the code the
chapters cite. Each module here accelerates one of those files and opens by naming what it
changes (the habit of llm.c's `dev/cuda` kernels); `tests/test_functional_fast.py` holds every
fast pair equal to its reference (forward and every gradient, float64, to 1e-10), and
chapters/12-performance.md derives each one from its reference and measures what it buys.

Same names, signatures and contracts as the reference, so this package is a complete kernel
set a model can run on (`ModelConfig(kernels="fast")`, the default). Pairs with nothing to
gain (linear, softmax, ReLU, RoPE, SwiGLU, the embedding lookup) are the reference's own.

`FusedAdamW` (fast/optim.py) is the explicit opt-in twin of `minichinchilla.optim.AdamW`: faster
for tiny models (a sweep's), slower for big ones (chapter 12 measures both).

Process-wide setup (the allocator setting and worker threads of `_blocks.py`) happens the
first time a fast kernel runs, never at import.
"""
from .. import __all__ as _reference_names
from ..activations import relu_backward, relu_forward
from ..linear import linear_backward, linear_forward
from ..rope import rope_backward, rope_forward, rope_tables
from ..softmax import softmax_backward, softmax_forward
from ..swiglu import swiglu_backward, swiglu_forward
from .activations import gelu_backward, gelu_forward
from .attention import attention_backward, attention_forward, attention_step, attention_weights
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .embedding import embedding_backward, embedding_forward
from .ffn import ffn_backward, ffn_forward
from .norms import layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from .optim import FusedAdamW
from ._blocks import num_threads, set_num_threads

# The reference's pair names, plus what only the fast set has: the fused optimiser and the
# worker-thread count of the blocked kernels.
__all__ = [*_reference_names, "FusedAdamW", "num_threads", "set_num_threads"]
