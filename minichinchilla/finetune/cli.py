"""`python -m minichinchilla finetune`: fine-tune a pretrained run on one task, against baselines.

    python -m minichinchilla finetune --checkpoint runs/x                       # classify, all weights
    python -m minichinchilla finetune --checkpoint runs/x --freeze-body --lr 1e-2
    python -m minichinchilla finetune --checkpoint runs/x --task regress --pooling mean
    python -m minichinchilla finetune --checkpoint runs/x --augment --compare-scratch

Shows a progress bar and the validation curve as it trains, then the test metrics next to the
baselines, and writes ``OUT/finetune.jsonl`` (one JSON object per line: the run's settings, each
evaluation, the test result, each baseline) and, for classification, ``OUT/confusion.png``.
Bad input (no such run, a damaged checkpoint, an unknown task, an ``OUT`` that already holds
results, without ``--force``; an ``OUT`` another process is writing) is one ``error: ...``
line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..cli import run_command
from ..resources import default_threads, limit_threads
from ..runlock import locked_directory
from .tasks import TASK_KINDS

LOG_FILE = "finetune.jsonl"
CONFUSION_FILE = "confusion.png"
OUTPUT_FILES = (LOG_FILE, CONFUSION_FILE)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minichinchilla finetune",
                                description="Fine-tune a pretrained run: package classification, "
                                            "identifier tagging or source-size regression.")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="a pretraining run directory (its latest checkpoint is used)")
    p.add_argument("--task", default="classify", help=f"one of {', '.join(TASK_KINDS)} (default classify)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps at most (default 300)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 1e-3, or 1e-2 with --freeze-body)")
    p.add_argument("--head-lr", type=float, default=None, help="the head's learning rate (default --lr)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-len", type=int, default=128, help="tokens per example (default 128)")
    p.add_argument("--freeze-body", action="store_true", help="train the head only")
    p.add_argument("--pooling", choices=("last", "mean"), default="last",
                   help="which hidden state the head reads (classify/regress)")
    p.add_argument("--eval-interval", type=int, default=25)
    p.add_argument("--patience", type=int, default=4, help="evaluations without improvement before stopping")
    p.add_argument("--augment", action="store_true",
                   help="random token dropout on training inputs (classify)")
    p.add_argument("--augment-p", type=float, default=0.1, help="token dropout probability (default 0.1)")
    p.add_argument("--compare-scratch", action="store_true",
                   help="also fine-tune a randomly initialised body with the same budget")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/finetune-TASK)")
    p.add_argument("--force", action="store_true",
                   help="replace the results of an earlier fine-tuning run in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for BLAS and the fast kernels (default: as train chooses for the model)")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    return p


def _fmt_metrics(kind, m):
    if kind == "classify":
        return f"accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}"
    if kind == "tag":
        return f"token acc {m['accuracy']:.3f}  P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}"
    return f"RMSE {m['rmse']:.3f}  MAE {m['mae']:.3f}  R^2 {m['r2']:.3f}"


def run_cli(args, out=None) -> int:
    from minichinchilla.checkpoint import load_run

    from .tasks import make_task
    from .train import FineTuneConfig

    out = out or sys.stdout
    if args.task not in TASK_KINDS:
        raise ValueError(f"unknown task {args.task!r}; choose one of {', '.join(TASK_KINDS)}")
    lr = args.lr if args.lr is not None else (1e-2 if args.freeze_body else 1e-3)
    cfg = FineTuneConfig(steps=args.steps, lr=lr, head_lr=args.head_lr, batch_size=args.batch_size,
                         max_len=args.max_len, freeze_body=args.freeze_body, pooling=args.pooling,
                         eval_interval=args.eval_interval, patience=args.patience,
                         augment="token_dropout" if args.augment else None, augment_p=args.augment_p,
                         seed=args.seed).validate()
    if args.augment and args.task != "classify":
        raise ValueError("--augment is implemented for --task classify only")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    model, tokenizer, _ = load_run(args.checkpoint)
    threads = args.threads or default_threads(model.config)
    out_dir = Path(args.out) if args.out else Path(args.checkpoint) / f"finetune-{args.task}"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {str(out_dir)!r} exists and is not a directory")
    _refuse_to_overwrite(out_dir, args.force)
    task = make_task(args.task)
    with locked_directory(out_dir, "python -m minichinchilla finetune"), limit_threads(threads):
        _refuse_to_overwrite(out_dir, args.force)  # again: another run may have finished meanwhile
        records, results, baselines = _fine_tune_and_compare(args, cfg, model, tokenizer, task, out,
                                                               threads)
        written = _write_outputs(out_dir, args.task, task, records, results)
    _print_test_table(args.task, task, results, baselines, out)
    print(f"wrote {', '.join(map(str, written))}", file=out)
    return 0


def _refuse_to_overwrite(out_dir: Path, force: bool) -> None:
    earlier = [out_dir / name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if earlier and not force:
        raise ValueError(f"{str(earlier[0])!r} holds an earlier fine-tuning run; use another --out, "
                         f"or --force to replace it")


def _fine_tune_and_compare(args, cfg, model, tokenizer, task, out, threads):
    """Fine-tune (and, with --compare-scratch, a random body), score the baselines; returns
    (records for finetune.jsonl, {init: FineTuneResult}, {name: baseline})."""
    from minichinchilla.progress import ProgressBar

    from .baselines import baselines_for
    from .train import finetune, scratch_copy

    records = [{"type": "run", "checkpoint": str(args.checkpoint), "task": args.task,
                "config": asdict(cfg), "labels": list(task.labels)}]
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=out, flush=True))
    say(task.summary())
    say(task.description)
    say(f"threads: {threads} (BLAS and kernels; --threads N to change)")
    say(f"fine-tuning ({'head only' if cfg.freeze_body else 'all weights'}, lr {cfg.lr:g}, "
        f"{cfg.steps} steps at most, pooling {cfg.pooling}"
        f"{', token dropout %.2f' % cfg.augment_p if cfg.augment else ''}):")
    bodies = {"pretrained": model}
    if args.compare_scratch:
        bodies["scratch"] = scratch_copy(model, cfg.seed)
    results = {}
    for init, body in bodies.items():
        bar = ProgressBar(total=cfg.steps, out=out, quiet=args.quiet)

        def log(entry, init=init, bar=bar):
            records.append({"type": "eval", "init": init, **entry})
            bar.write(f"  [{init}] step {entry['step']:4d}  train loss {entry['train_loss']:.4f}  "
                      f"val loss {entry['val_loss']:.4f}  val {entry['metric']} {entry['val_metric']:.3f}")
        try:
            results[init] = finetune(body, tokenizer, task, cfg, init=init, log=log,
                                     on_step=lambda loss, lr, bar=bar: bar.step(loss, lr))
        finally:
            bar.close()
    records += [{"type": "test", **res.to_dict()} for res in results.values()]
    baselines = baselines_for(args.task, task, tokenizer, cfg.max_len)
    records += [{"type": "baseline", "name": name, "val": b["val"], "test": b["test"]}
                for name, b in baselines.items()]
    return records, results, baselines


def _write_outputs(out_dir: Path, kind: str, task, records, results) -> list[Path]:
    from minichinchilla.atomic import write_text_atomically

    from .metrics import plot_confusion_matrix

    written = [write_text_atomically(out_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in records))]
    if kind == "classify":
        res = results["pretrained"]
        written.append(out_dir / CONFUSION_FILE)
        plot_confusion_matrix(res.confusion, task.labels, written[-1],
                              title=f"fine-tuned, test: accuracy {res.test['accuracy']:.2f}")
    return written


def _print_test_table(kind: str, task, results, baselines, out) -> None:
    print(f"test ({len(task.test)} documents):", file=out)
    for init, res in results.items():
        note = f"best step {res.best_step}/{res.steps_run}{', stopped early' if res.stopped_early else ''}"
        print(f"  fine-tuned ({init:<10}) {_fmt_metrics(kind, res.test)}   [{note}, "
              f"{res.seconds:.0f} s]", file=out)
    for name, b in baselines.items():
        print(f"  baseline {name:<14} {_fmt_metrics(kind, b['test'])}", file=out)


def main(argv=None) -> int:
    # FloatingPointError: fine-tuning diverged (the message says: lower the learning rate)
    return run_command(build_parser(), run_cli, argv, user_errors=(TypeError, FloatingPointError))


if __name__ == "__main__":
    sys.exit(main())
