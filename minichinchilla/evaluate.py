"""`python -m minichinchilla eval --checkpoint RUN`: validation loss and perplexity of a run.

The validation split is rebuilt from the run's saved config (same data, same cleaning, same
document split) and encoded with the run's own tokenizer, so the number is comparable with
``val_loss`` in ``RUN/log.jsonl``. By default every validation token is scored once.

Perplexity is exp(loss): the number of equally likely tokens the model is "choosing between".
Bits per byte divides the total loss by the text's UTF-8 bytes instead of its tokens, which
makes runs with different tokenizers comparable.
"""
from __future__ import annotations

import argparse
import math
import sys

from .checkpoint import find_checkpoint, load_run, read_state
from .cli import run_command
from .data.pipeline import prepare_data
from .resources import default_threads, limit_threads
from .train import MAX_EXP_ARG, estimate_loss


def evaluate_run(run_dir, max_batches: int = 0, batch_size: int | None = None) -> dict:
    """Validation metrics of a run's latest checkpoint, as a dict (see the module docstring)."""
    model, tokenizer, cfg = load_run(run_dir)
    state = read_state(find_checkpoint(run_dir))
    data = prepare_data(cfg, tokenizer=tokenizer)
    saved = state.get("extra", {}).get("data_fingerprint")
    with limit_threads(default_threads(model.config)):  # as `train` ran it: see resources.py
        loss, n = estimate_loss(model, data.val_ids, batch_size or cfg.batch_size, cfg.seq_len, max_batches)
    if not math.isfinite(loss):
        raise ValueError(f"the checkpoint of {str(run_dir)!r} gives a validation loss of {loss}: "
                         f"its model is broken (non-finite outputs)")
    # Bytes of the real text, not of decode(ids): decoding adds document separators and
    # <unk> spellings that are not in the text. loss (nats/token) * tokens/byte / ln 2 = bits/byte.
    tokens_per_byte = len(data.val_ids) / max(1, data.val_bytes)
    return {"step": int(state["step"]), "val_loss": loss, "val_ppl": math.exp(min(loss, MAX_EXP_ARG)),
            "tokens": n, "bits_per_byte": loss * tokens_per_byte / math.log(2),
            "data_changed": bool(saved and saved != data.fingerprint)}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minichinchilla eval",
                                description="Validation loss and perplexity of a run's latest checkpoint.")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="a run directory (runs/...)")
    p.add_argument("--batches", type=int, default=0, metavar="N",
                   help="score N evenly spaced batches only (default 0: the whole split)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="default: the run's")
    return p


def main(argv=None) -> int:
    return run_command(build_parser(), _run, argv)


def _run(args) -> int:
    if args.batches < 0 or (args.batch_size is not None and args.batch_size < 1):
        raise ValueError("--batches must be >= 0 and --batch-size >= 1")
    m = evaluate_run(args.checkpoint, args.batches, args.batch_size)
    if m["data_changed"]:
        print("warning: the data differs from the text this run was trained on", file=sys.stderr)
    print(f"step {m['step']}: val loss {m['val_loss']:.4f} | perplexity {m['val_ppl']:.2f} | "
          f"{m['bits_per_byte']:.3f} bits/byte | {m['tokens']:,} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
