"""`python -m minichinchilla gradcheck-demo`: check every layer's hand-derived backward.

Each forward/backward pair of `minichinchilla.functional` is compared with centred finite
differences in float64 against a random upstream gradient (chapters/01-autograd.md, eq. 1.6).
"""
import argparse

import numpy as np

from . import functional as F
from .cli import run_command
from .gradcheck import gradcheck


def cases(rng):
    B, T, C, NH, V = 2, 4, 8, 2, 11
    r = lambda *s: rng.standard_normal(s)  # noqa: E731
    mask = np.zeros((B, T), dtype=bool)
    mask[1, 3] = True
    return [
        ("linear", F.linear_forward, F.linear_backward, [r(B, T, C), r(C, 5), r(5)], {}, ["x", "W", "b"]),
        ("embedding", F.embedding_forward, F.embedding_backward, [rng.integers(0, V, (B, T)), r(V, C)], {}, ["idx", "E"]),
        ("softmax", F.softmax_forward, F.softmax_backward, [r(B, T, V)], {}, ["x"]),
        ("cross_entropy", F.cross_entropy_forward, F.cross_entropy_backward,
         [r(B, T, V), rng.integers(0, V, (B, T))], {}, ["logits", "targets"]),
        ("layernorm", F.layernorm_forward, F.layernorm_backward, [r(B, T, C), r(C), r(C)], {}, ["x", "gamma", "beta"]),
        ("rmsnorm", F.rmsnorm_forward, F.rmsnorm_backward, [r(B, T, C), r(C)], {}, ["x", "gamma"]),
        ("relu", F.relu_forward, F.relu_backward, [r(B, T, C)], {}, ["x"]),
        ("gelu", F.gelu_forward, F.gelu_backward, [r(B, T, C)], {}, ["x"]),
        ("ffn", F.ffn_forward, F.ffn_backward, [r(B, T, C), r(C, 4 * C), r(4 * C), r(4 * C, C), r(C)], {}, ["x", "W1", "b1", "W2", "b2"]),
        ("swiglu", F.swiglu_forward, F.swiglu_backward, [r(B, T, C), r(C, 12), r(C, 12), r(12, C)], {},
         ["x", "W_gate", "W_up", "W_down"]),
        ("attention", F.attention_forward, F.attention_backward,
         [r(B, T, C), r(C, 3 * C), r(3 * C), r(C, C), r(C)], dict(n_heads=NH, key_padding_mask=mask), ["x", "Wqkv", "bqkv", "Wo", "bo"]),
        ("attention+rope", F.attention_forward, F.attention_backward,
         [r(B, T, C), r(C, 3 * C), r(3 * C), r(C, C), r(C)], dict(n_heads=NH, rope_base=10000.0), ["x", "Wqkv", "bqkv", "Wo", "bo"]),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minichinchilla gradcheck-demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    return run_command(parser, _run, argv)


def _run(args):
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    print(f"{'layer':<16}{'input':<8}{'relative error':>16}")
    for name, fwd, bwd, inputs, kwargs, arg_names in cases(rng):
        result = gradcheck(fwd, inputs, bwd, kwargs=kwargs, names=arg_names, raise_on_fail=False)
        for inp, err in result.errors.items():
            print(f"{name:<16}{inp:<8}{err:>16.2e}")
            worst = max(worst, err)
    ok = worst < 1e-7
    print(f"\nworst relative error {worst:.2e}: {'all backwards agree with finite differences' if ok else 'FAILED'}")
    return 0 if ok else 1
