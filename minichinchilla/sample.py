"""`python -m minichinchilla sample --checkpoint RUN`: generate text from a trained run.

    python -m minichinchilla sample --checkpoint runs/20250101-120000 \\
        --prompt "The for statement" --max-new-tokens 200 --temperature 0.8 --top-k 40 --seed 1

Tokens are printed as they are generated. The same checkpoint, prompt, settings and seed
always give the same text (the seed drives the only random choice: the sampled token).
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from .cli import run_command
from .resources import default_threads, limit_threads

REPLACEMENT_CHAR = "\ufffd"


def encode_prompt(tokenizer, prompt: str, warn=None) -> list[int]:
    """Prompt -> ids. An empty prompt starts a new document (the end-of-document token).

    Pieces the vocabulary lacks (word- or character-level tokenizers) become ``<unk>``;
    ``warn(message)`` is called once listing them.
    """
    unknown = tokenizer.out_of_vocabulary(prompt) if prompt else []
    if unknown and warn is not None:
        kind = getattr(tokenizer, "piece_kind", "pieces")
        shown = ", ".join(repr(u) for u in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        warn(f"warning: {len(unknown)} {kind} of the prompt are not in the vocabulary and "
             f"become <unk>: {shown}")
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:  # nothing to condition on: start a fresh document
        start = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        ids = [start]
    return ids


class StreamDecoder:
    """Turn a growing list of token ids into printable text, piece by piece.

    A byte-level BPE token can hold part of a UTF-8 character; decoding it alone gives
    U+FFFD. We decode the whole sequence each time and hold back a trailing U+FFFD until
    the next token completes the character.
    """

    def __init__(self, tokenizer, context_ids):
        self.tokenizer = tokenizer
        self.ids = list(context_ids)
        self.printed = len(tokenizer.decode(self.ids))

    def push(self, new_ids) -> str:
        self.ids.extend(int(i) for i in new_ids)
        text = self.tokenizer.decode(self.ids)
        end = len(text)
        while end > self.printed and text[end - 1] == REPLACEMENT_CHAR:
            end -= 1
        out, self.printed = text[self.printed:end], max(self.printed, end)
        return out

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        out, self.printed = text[self.printed:], len(text)
        return out


def generate_text(model, tokenizer, prompt: str = "", max_new_tokens: int = 200,
                  temperature: float = 0.8, top_k: int | None = 40, seed: int | None = None,
                  write=None, warn=None) -> str:
    """Sample a continuation of `prompt`; return the generated text (without the prompt).

    ``write(text)`` (optional) receives the text as it is generated, starting with the prompt.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    context = encode_prompt(tokenizer, prompt, warn)
    decoder = StreamDecoder(tokenizer, context)
    if write is not None and prompt:
        write(tokenizer.decode(context))
    pieces = []

    def stream(new_ids):
        text = decoder.push(new_ids)
        pieces.append(text)
        if write is not None and text:
            write(text)

    model.generate(np.asarray([context], dtype=np.int64), max_new_tokens, temperature=temperature,
                   top_k=top_k, seed=seed, stream=stream)
    tail = decoder.flush()
    pieces.append(tail)
    if write is not None and tail:
        write(tail)
    return "".join(pieces)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minichinchilla sample",
                                description="Generate text from a run's latest checkpoint.")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="a run directory (runs/...)")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy")
    p.add_argument("--top-k", type=int, default=40, metavar="K", help="0 = no top-k cut")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="the same seed gives the same text (default: a fresh random seed)")
    return p


def main(argv=None) -> int:
    return run_command(build_parser(), _run, argv)


def _run(args) -> int:
    from .checkpoint import load_run

    if not (math.isfinite(args.temperature) and args.temperature >= 0):  # NaN fails every comparison
        raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
    model, tokenizer, _ = load_run(args.checkpoint)

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    with limit_threads(default_threads(model.config)):  # as `train` ran it: see resources.py
        generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature,
                      args.top_k or None, args.seed, write=write,
                      warn=lambda m: print(m, file=sys.stderr))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
