"""`python -m minichinchilla scaling <subcommand>`: scaling-law tools on the command line.

Subcommands live in a registry so that others can add theirs without editing this file: a
module calls `register_subcommand(name, help, add_arguments, run)` at import time and is listed
in `PLUGIN_MODULES` (modules that are not there yet are skipped). `run(args) -> int` returns the
exit code. Built in: `plan` and `table-a4`.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import sys

from ..cli import run_command

__all__ = ["main", "register_subcommand", "SUBCOMMANDS", "PLUGIN_MODULES"]

SUBCOMMANDS = {}  # name → (help, add_arguments(parser), run(args) -> int)
PLUGIN_MODULES = ("minichinchilla.scaling.sweep",)  # imported if present; they register themselves


def register_subcommand(name, help, add_arguments, run):
    """Add `python -m minichinchilla scaling <name>`; re-registering a name replaces it."""
    SUBCOMMANDS[name] = (help, add_arguments, run)


class _UsageError(ValueError):
    """A bad option value: `run_command` prints it as one ``error: ...`` line (exit 2)."""


# -- plan ----------------------------------------------------------------------------------------
PAPER_FIT_WARNING = (
    "warning: --fit paper uses the rounded Approach-3 constants printed in Hoffmann et al. (2022); "
    "they give N_opt ~2x below the paper's own Table 3 (32B instead of ~67B at Gopher's 5.76e23 "
    "FLOPs) and are not reliable for planning (Besiroglu et al. 2024; chapter 10). "
    "The default --fit epoch reproduces Table 3.")


def _plan_arguments(p):
    p.add_argument("--flops", required=True, type=float, help="training compute budget C in FLOPs, e.g. 1e21")
    p.add_argument("--fit", choices=("epoch", "paper"), default="epoch",
                   help="epoch (default): Besiroglu et al. 2024's refit of Approach 3, which "
                        "agrees with the paper's Table 3; paper: the rounded constants printed in "
                        "Hoffmann et al. 2022 eq. (10) (warns: they undershoot N_opt ~2x)")
    p.add_argument("--vocab-size", type=int, default=32_000)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--head-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _plan_run(args):
    from .plan import plan

    if not (math.isfinite(args.flops) and args.flops > 0):
        raise _UsageError(f"--flops must be a positive, finite number of FLOPs, got {args.flops!r}")
    for name in ("vocab_size", "seq_len", "head_size"):
        if getattr(args, name) < 1:
            raise _UsageError(f"--{name.replace('_', '-')} must be a positive integer, "
                              f"got {getattr(args, name)}")
    p = plan(args.flops, fit=args.fit, vocab_size=args.vocab_size, seq_len=args.seq_len,
             head_size=args.head_size)
    if args.fit == "paper":
        print(PAPER_FIT_WARNING, file=sys.stderr)
    if args.json:
        s = p.shape
        print(json.dumps({"flops": p.flops, "fit": p.fit_name, "N_opt": p.N_opt, "D_opt": p.D_opt,
                          "tokens_per_param": p.tokens_per_param, "loss_opt": p.loss_opt,
                          "shape": {"n_layers": s.n_layers, "d_model": s.d_model,
                                    "n_heads": s.n_heads, "d_ff": s.d_ff, "N": s.N,
                                    "N_nonembed": s.N_nonembed},
                          "D_shape": p.D_shape, "vocab_size": p.vocab_size,
                          "seq_len": p.seq_len}, indent=2))
    else:
        print(p.report())
    return 0


# -- table-a4 ------------------------------------------------------------------------------------
def _table_a4_arguments(p):
    pass


def _table_a4_run(args):
    from .flops import table_a4_report

    print("Hoffmann et al. (2022) Table A4: Appendix-F FLOPs / 6ND (seq 2048, vocab 32,000)")
    print(table_a4_report())
    return 0


register_subcommand("plan", "compute-optimal N, D and a model shape for a FLOP budget",
                    _plan_arguments, _plan_run)
register_subcommand("table-a4", "reproduce Table A4 of Hoffmann et al. (FLOP count vs 6ND)",
                    _table_a4_arguments, _table_a4_run)


def _load_plugins():
    for mod in PLUGIN_MODULES:
        try:
            present = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            present = False
        if present:
            importlib.import_module(mod)


def _parser():
    parser = argparse.ArgumentParser(prog="python -m minichinchilla scaling",
                                     description="Scaling laws: compute-optimal planning and analysis.")
    sub = parser.add_subparsers(dest="subcommand", metavar="<subcommand>")
    for name, (help_, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad usage or input, 130 Ctrl-C; see ``minichinchilla/cli.py``)."""
    _load_plugins()
    parser = _parser()

    def run(args):
        if args.subcommand is None:
            parser.print_help(sys.stderr)
            return 2
        return int(SUBCOMMANDS[args.subcommand][2](args) or 0)

    return run_command(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
