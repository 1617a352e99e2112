"""`python -m minichinchilla train`: pretrain a decoder-only LM (chapters/07-pretraining.md).

    python -m minichinchilla train                          # small model, built-in corpus
    python -m minichinchilla train --max-steps 2000 --d-model 192 --out runs/big
    python -m minichinchilla train --config run.toml --lr 1e-3
    python -m minichinchilla train --resume runs/big        # continue after Ctrl-C or a crash

What one run does, in order:

1. data (`minichinchilla.data.pipeline`): documents -> clean -> split by document -> train a
   tokenizer on the training split (cached by corpus hash) -> two token streams;
2. model (`TransformerLM`) and AdamW with two parameter groups (no decay on norms/biases);
3. the loop: a random batch, forward, backward, clip the global gradient norm, set the
   learning rate (linear warm-up, cosine decay to 10 % at exactly ``max_steps``, the run's
   horizon), step. Every ``eval_interval`` steps, at step 0 and at the last step: estimate train
   and validation loss, append a line to ``RUN/log.jsonl``, save ``RUN/ckpt/``;
4. the end: ``RUN/loss.png`` and a sample.

**Resuming is exact.** The checkpoint holds the parameters, AdamW's moments, the step and the
state of the generator that draws the batches, and the schedule is a function of the step
only. A resumed run therefore draws the same batches with the same learning rates and its
losses match an uninterrupted run to float32 round-off.

**A bad day loses nothing.** Ctrl-C saves a checkpoint at the current step and exits with code
130 (a second Ctrl-C aborts at once). A loss that stops being finite ends the run before it
reaches the log or a checkpoint, so the last checkpoint is the last good one. The run directory
is locked (`minichinchilla.runlock`) so a second process cannot write into it. Bad input,
including a size that would not fit in memory, is one ``error: ...`` line and exit code 2.

**Threads.** BLAS and the fast kernels use `--threads` threads (default: one for a model this
small, `minichinchilla.resources.default_threads`), shown in the terminal header.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .atomic import append_line, write_atomically, write_json_atomically, write_text_atomically
from .backend import asarray, set_backend
from .checkpoint import (check_configs_agree, find_checkpoint, load_model_weights, load_optimizer_state,
                         load_tokenizer_from, model_config_from, read_state, restore_rng,
                         save_checkpoint, train_config_from)
from .cli import EXIT_INTERRUPTED, run_command
from .config import TrainConfig, add_config_arguments, load_config, overrides_from_args, read_config_file
from .data import IGNORE_INDEX, TokenStream
from .data.pipeline import RunData, prepare_data
from .model import TransformerLM
from .optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_decay
from .progress import ProgressBar
from .resources import (SMALL_MODEL_D_MODEL, available_memory_bytes, default_threads, format_bytes,
                        limit_threads)
from .runlock import LOCK_FILE, locked_directory
from .tensor import no_grad

LOG_FILE = "log.jsonl"
PLOT_FILE = "loss.png"
CONFIG_FILE = "config.json"
DATA_ORDER_STREAM = 1  # the batches' generator is default_rng([seed, 1]); the weights' is seed
# exp() of a float64 overflows past ~709.78: the perplexity of a loss above this is reported as
# exp(700) ~ 1e304 ("astronomical") instead of raising OverflowError.
MAX_EXP_ARG = 700.0
FLOAT32_BYTES = 4
SAMPLE_TEMPERATURE = 0.8  # the sample printed at the end of a run
SAMPLE_TOP_K = 40


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf."""


# ---- evaluation --------------------------------------------------------------------------
def estimate_loss(model, tokens, batch_size: int, seq_len: int, max_batches: int = 0):
    """Mean next-token loss over a token stream, without gradients.

    ``max_batches=0`` (or enough batches to cover it) scores every token exactly once;
    otherwise ``max_batches * batch_size`` windows at evenly spaced offsets — the same
    windows every time, so estimates at different steps are comparable.
    Returns (mean loss, number of targets scored).
    """
    tokens = np.asarray(tokens)
    N, T = len(tokens), seq_len
    B = max(1, min(batch_size, (N - 1) // T))
    stream = TokenStream(tokens, B, T)
    if max_batches and max_batches * B < math.ceil((N - 1) / T):
        starts = np.linspace(0, N - T - 1, max_batches * B).round().astype(np.int64)  # (rows,)
        windows = tokens[starts[:, None] + np.arange(T + 1)]  # (rows, T+1)
        batches = [(w[:, :-1], w[:, 1:]) for w in np.split(windows, max_batches)]
    else:
        batches = stream.sequential_batches()
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with no_grad():
        for x, y in batches:
            n = int((y != IGNORE_INDEX).sum())
            _, loss = model(asarray(x), asarray(y))  # mean over the n scored targets
            total += float(loss.data) * n
            count += n
    model.train(was_training)
    return total / count, count


# ---- the run directory -------------------------------------------------------------------
def read_log(run_dir) -> list[dict]:
    """The evaluations in ``RUN/log.jsonl`` (a half-written last line, from a crash, is skipped)."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def _json_line(entry: dict) -> str:
    return json.dumps(entry, allow_nan=False) + "\n"  # strict JSON: a NaN is refused, never written


def _append_log(run_dir, entry):
    append_line(Path(run_dir) / LOG_FILE, _json_line(entry))


def plot_losses(run_dir) -> Path | None:
    """Train and validation loss against step, saved as ``RUN/loss.png`` (matplotlib, Agg)."""
    entries = read_log(run_dir)
    if not entries:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, no GUI

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = [e["step"] for e in entries]
    ax.plot(steps, [e["train_loss"] for e in entries], "o-", label="train")
    ax.plot(steps, [e["val_loss"] for e in entries], "s-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(Path(run_dir).resolve().name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return write_atomically(Path(run_dir) / PLOT_FILE, lambda f: fig.savefig(f, format="png"))


def default_run_dir() -> Path:
    base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _clear_run_dir(run_dir: Path):
    """--force: remove what a run writes (and only that)."""
    shutil.rmtree(run_dir / "ckpt", ignore_errors=True)
    for name in (LOG_FILE, PLOT_FILE, CONFIG_FILE):
        (run_dir / name).unlink(missing_ok=True)


# ---- Ctrl-C ------------------------------------------------------------------------------
class _StopOnSigint:
    """First Ctrl-C: finish the current step, save, exit. Second Ctrl-C: abort immediately."""

    def __init__(self, say):
        self.requested = False
        self.say = say
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.say("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to abort without saving)")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


# ---- one run's state, and the stages of the loop -------------------------------------------
@dataclass
class RunResult:
    step: int
    interrupted: bool
    val_loss: float | None
    run_dir: Path


@dataclass
class _Run:
    """Everything the loop reads and changes, built by `_set_up` before anything is written."""

    cfg: TrainConfig
    run_dir: Path
    data: RunData
    model: TransformerLM
    optimizer: AdamW
    rng: np.random.Generator  # the data order (not the generator that initialised the weights)
    step: int  # optimiser updates done
    elapsed: float  # wall time of the run, summed over resumes
    last_saved: int | None  # step of the newest checkpoint
    logged: set  # steps already in log.jsonl
    window_tokens: int = 0  # training tokens and seconds since the last evaluation
    window_seconds: float = 0.0
    batches: TokenStream = field(init=False)

    def __post_init__(self):
        self.batches = TokenStream(self.data.train_ids, self.cfg.batch_size, self.cfg.seq_len)

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "ckpt"

    def lr(self) -> float:
        cfg = self.cfg
        return cosine_lr(self.step, cfg.horizon, cfg.lr, cfg.warmup, cfg.min_lr_ratio)

    def due_for_evaluation(self) -> bool:
        at = self.step % self.cfg.eval_interval == 0 or self.step == self.cfg.horizon
        return at and self.step not in self.logged

    def diverged(self, what: str) -> TrainingDiverged:
        where = (f"the last good checkpoint is {self.ckpt_dir} (step {self.last_saved}), which "
                 f"--resume and sample load" if self.last_saved is not None else "no checkpoint was saved")
        return TrainingDiverged(f"{what} at step {self.step}; training stopped and {where}. "
                                f"Try a lower --lr or --warmup-steps > 0")


def _set_up(cfg: TrainConfig, run_dir: Path, resume: bool) -> _Run:
    """Data, model, optimiser and the data-order generator: fresh, or from the checkpoint."""
    if not resume:
        data = prepare_data(cfg)
        model, optimizer = _new_model_and_optimizer(cfg, data.tokenizer.vocab_size)
        rng = np.random.default_rng([cfg.seed, DATA_ORDER_STREAM])
        return _Run(cfg, run_dir, data, model, optimizer, rng, step=0, elapsed=0.0,
                    last_saved=None, logged=set())
    ckpt_dir = find_checkpoint(run_dir)
    state = read_state(ckpt_dir)
    check_configs_agree(ckpt_dir, cfg, model_config_from(state, ckpt_dir))
    data = prepare_data(cfg, tokenizer=load_tokenizer_from(ckpt_dir, state))
    extra = state.get("extra", {})
    if extra.get("data_fingerprint") not in (None, data.fingerprint):
        raise ValueError(f"the data of this run changed since it started ({cfg.data or 'built-in corpus'}); "
                         f"resuming would not continue the same run")
    model, optimizer = _new_model_and_optimizer(cfg, data.tokenizer.vocab_size)
    load_model_weights(model, ckpt_dir, state)
    load_optimizer_state(optimizer, ckpt_dir, state)
    step = state["step"]
    return _Run(cfg, run_dir, data, model, optimizer, restore_rng(state), step=step,
                elapsed=float(extra.get("elapsed", 0.0)), last_saved=step, logged=set())


def _new_model_and_optimizer(cfg: TrainConfig, vocab_size: int):
    model = TransformerLM(cfg.model_config(vocab_size), seed=cfg.seed)
    optimizer = AdamW(param_groups_for_decay(model, cfg.weight_decay), lr=cfg.lr,
                      betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return model, optimizer


def _open_run_dir(run: _Run, resume: bool, force: bool) -> None:
    """A new run writes its config.json; a resumed one trims its log to the checkpoint's step
    (evaluations after it were made by the interrupted process and will be made again)."""
    if resume:
        entries = [e for e in read_log(run.run_dir) if e.get("step", -1) <= run.step]
        write_text_atomically(run.run_dir / LOG_FILE, "".join(_json_line(e) for e in entries))
        run.logged = {e["step"] for e in entries}
        return
    if force:
        _clear_run_dir(run.run_dir)
    elif (run.run_dir / LOG_FILE).exists() or (run.run_dir / "ckpt").exists():
        raise ValueError(f"output directory {str(run.run_dir)!r} already holds a run; use --force to "
                         f"replace it or --resume {run.run_dir} to continue it")
    write_json_atomically(run.run_dir / CONFIG_FILE, run.cfg.to_dict())


def _evaluate(run: _Run) -> dict:
    """Estimate train and validation loss now; the log entry. A non-finite loss stops the run
    before it reaches the log or a checkpoint."""
    cfg, data, B, T = run.cfg, run.data, run.cfg.batch_size, run.cfg.seq_len
    t0 = time.perf_counter()
    val_loss, _ = estimate_loss(run.model, data.val_ids, B, T, cfg.eval_batches)
    train_batches = cfg.eval_batches or math.ceil((len(data.val_ids) - 1) / T / B)  # as many as val
    train_loss, _ = estimate_loss(run.model, data.train_ids, B, T, train_batches)
    for name, value in (("validation loss", val_loss), ("training loss (evaluation)", train_loss)):
        if not math.isfinite(value):
            raise run.diverged(f"{name} is {value}")
    run.elapsed += time.perf_counter() - t0
    tok_per_s = round(run.window_tokens / run.window_seconds, 1) if run.window_seconds else None
    run.window_tokens, run.window_seconds = 0, 0.0
    return {"step": run.step, "train_loss": train_loss, "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, MAX_EXP_ARG)), "lr": run.lr(),
            "tokens": run.step * B * T, "elapsed": round(run.elapsed, 3), "tok_per_s": tok_per_s}


def _save(run: _Run) -> None:
    save_checkpoint(run.ckpt_dir, model=run.model, optimizer=run.optimizer, step=run.step, rng=run.rng,
                    train_config=run.cfg, tokenizer=run.data.tokenizer,
                    extra={"elapsed": run.elapsed, "data_fingerprint": run.data.fingerprint,
                           "num_params": run.model.num_params()})
    run.last_saved = run.step


def _train_step(run: _Run) -> tuple[float, float]:
    """One optimiser step on a random batch; returns (loss, lr). Stops on a non-finite loss or
    gradient before the update, so the weights stay finite."""
    t0 = time.perf_counter()
    x, y = run.batches.sample_batch(run.rng)  # (B, T), (B, T)
    lr = run.lr()
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    _, loss = run.model(asarray(x), asarray(y))
    loss_value = float(loss.data)
    if not math.isfinite(loss_value):
        raise run.diverged(f"training loss is {loss_value}")
    run.optimizer.zero_grad()
    loss.backward()
    clip = run.cfg.grad_clip if run.cfg.grad_clip > 0 else math.inf
    grad_norm = clip_grad_norm(run.model.parameters(), clip)
    if not math.isfinite(grad_norm):
        raise run.diverged(f"gradient norm is {grad_norm}")
    run.optimizer.step()
    run.step += 1
    seconds = time.perf_counter() - t0
    run.window_tokens += x.size
    run.window_seconds += seconds
    run.elapsed += seconds
    return loss_value, lr


# ---- the training run ----------------------------------------------------------------------
def run_training(cfg: TrainConfig, run_dir, *, resume: bool = False, force: bool = False,
                 quiet: bool = False, stop_at_step: int | None = None, out=None,
                 threads: int | None = None) -> RunResult:
    """Train (or, with ``resume``, continue) the run in `run_dir`; see the module docstring.

    Everything that can fail on bad input (sizes, data, tokenizer, model, checkpoint) is
    checked before anything is written; the run directory is locked (`RunLock`) for the
    whole run. ``stop_at_step`` stops as Ctrl-C would, after that many steps (to demonstrate
    and test resuming). ``threads`` caps BLAS and kernel threads (default: `default_threads`).
    """
    out = out or sys.stdout
    run_dir = Path(run_dir)
    _use_backend(cfg.backend)
    check_fits_in_memory(cfg)
    threads = threads or default_threads(cfg.model_config(cfg.vocab_size))
    command = "python -m minichinchilla train" + (" --resume" if resume else "")
    with locked_directory(run_dir, command), limit_threads(threads):
        run = _set_up(cfg, run_dir, resume)
        _open_run_dir(run, resume, force)
        bar = ProgressBar(total=cfg.horizon, initial=run.step, out=out, quiet=quiet)
        for line in _header(run, threads, resume):
            bar.write(line)
        interrupted = False
        # Overflow in a diverging run is caught as a non-finite loss and stopped with one clear
        # message (TrainingDiverged); NumPy's own warnings would only bury it.
        with _StopOnSigint(bar.write) as sigint, np.errstate(over="ignore", invalid="ignore"):
            while True:
                if run.due_for_evaluation():
                    entry = _evaluate(run)
                    _append_log(run_dir, entry)  # log first: a crash before the save re-does this step
                    run.logged.add(run.step)
                    _save(run)
                    bar.write(_format_evaluation(entry))
                    bar.restart_clock()
                if run.step >= cfg.horizon:
                    break
                if sigint.requested or (stop_at_step is not None and run.step >= stop_at_step):
                    if run.last_saved != run.step:
                        _save(run)
                    interrupted = True
                    break
                loss, lr = _train_step(run)
                bar.step(loss, lr, tokens=cfg.tokens_per_step)
        bar.close()
        plot_losses(run_dir)
    if interrupted:
        print(f"stopped at step {run.step}/{cfg.horizon}; checkpoint saved to {run.ckpt_dir}\n"
              f"resume with: python -m minichinchilla train --resume {run_dir}", file=out, flush=True)
        return RunResult(run.step, True, read_log(run_dir)[-1]["val_loss"], run_dir)
    log = read_log(run_dir)
    print(f"done: val loss {log[0]['val_loss']:.4f} (step {log[0]['step']}) -> {log[-1]['val_loss']:.4f} "
          f"(step {log[-1]['step']}), perplexity {log[-1]['val_ppl']:.2f}; run saved in {run_dir}",
          file=out, flush=True)
    if cfg.sample_tokens:
        _print_sample(run, out)
    return RunResult(run.step, False, log[-1]["val_loss"], run_dir)


# ---- around the loop -----------------------------------------------------------------------
def _use_backend(name: str) -> None:
    try:
        set_backend(name)
    except RuntimeError as err:  # e.g. cupy without a GPU: the user's choice, so exit 2
        raise ValueError(str(err)) from None


def check_fits_in_memory(cfg: TrainConfig, available: int | None = None) -> None:
    """Refuse a run whose estimated memory exceeds what the machine has free, naming the flag
    that makes it too big — before anything is allocated. `available` defaults to the
    machine's (`minichinchilla.resources.available_memory_bytes`)."""
    available = available_memory_bytes() if available is None else available
    need = estimate_training_bytes(cfg)
    if available is None or need <= available:
        return
    defaults = TrainConfig()
    culprit = min(SIZE_KEYS, key=lambda k: estimate_training_bytes(cfg, **{k: getattr(defaults, k)}))
    flag = "--" + culprit.replace("_", "-")
    raise ValueError(f"{flag} {getattr(cfg, culprit)}: this run needs about {format_bytes(need)} of memory "
                     f"(parameters, gradients, AdamW moments and activations), more than the "
                     f"{format_bytes(available)} available; lower {flag}")


SIZE_KEYS = ("n_layers", "d_model", "d_ff", "seq_len", "batch_size", "vocab_size", "n_heads")


def estimate_training_bytes(cfg: TrainConfig, **sizes) -> int:
    """An upper estimate of a training step's memory in bytes (float32), from the sizes only.

    Per parameter 5 floats (weight, gradient, two AdamW moments, one temporary); per token and
    layer the activations kept for the backward pass (about 16 C + 2 F floats, plus two NH x T
    attention rows); per token the logits and their gradient (3 V).
    """
    s = {k: getattr(cfg, k) for k in SIZE_KEYS} | sizes
    C, L, T, B, V, NH = s["d_model"], s["n_layers"], s["seq_len"], s["batch_size"], s["vocab_size"], s["n_heads"]
    F = s["d_ff"] or 4 * C
    params = V * C + T * C + L * (4 * C * C + 2 * C * F + 9 * C + F) + (0 if cfg.tie_embeddings else V * C)
    activations = B * T * (L * (16 * C + 2 * F + 2 * NH * T) + 3 * V)
    return FLOAT32_BYTES * (5 * params + activations)


def _header(run: _Run, threads: int, resume: bool) -> list[str]:
    cfg, model, B, T = run.cfg, run.model, run.cfg.batch_size, run.cfg.seq_len
    epochs = cfg.horizon * B * T / len(run.data.train_ids)
    return [run.data.description,
            f"tokenizer: {cfg.tokenizer}, {run.data.tokenizer.vocab_size} tokens ({run.data.tokenizer_note})",
            f"model: {model.num_params():,} parameters (d_model={cfg.d_model}, n_layers={cfg.n_layers}, "
            f"n_heads={cfg.n_heads}, seq_len={model.config.seq_len})",
            f"run: {cfg.horizon} steps x {B} x {T} = {cfg.horizon * B * T:,} tokens ({epochs:.2f} epochs), "
            f"lr {cfg.lr:g} (warm-up {cfg.warmup}, cosine to {cfg.min_lr_ratio:g}x), "
            f"{'resuming at step ' + str(run.step) + ', ' if resume else ''}out: {run.run_dir}",
            f"threads: {threads} (BLAS and kernels; --threads N to change)"]


def _format_evaluation(entry: dict) -> str:
    rate = "-" if entry["tok_per_s"] is None else format(entry["tok_per_s"], ",.0f")
    ppl = f"{entry['val_ppl']:.2f}" if entry["val_ppl"] < 1e6 else f"{entry['val_ppl']:.3g}"
    return (f"step {entry['step']:>6} | train {entry['train_loss']:.4f} | val {entry['val_loss']:.4f} | "
            f"ppl {ppl} | lr {entry['lr']:.2e} | {rate} tok/s")


def _print_sample(run: _Run, out) -> None:
    from .sample import generate_text

    cfg = run.cfg
    print(f"\nsample (seed {cfg.seed}, temperature {SAMPLE_TEMPERATURE}, top-k {SAMPLE_TOP_K}):\n---", file=out)
    generate_text(run.model, run.data.tokenizer, cfg.sample_prompt, cfg.sample_tokens, SAMPLE_TEMPERATURE,
                  SAMPLE_TOP_K, cfg.seed, write=lambda s: (out.write(s), out.flush()),
                  warn=lambda m: print(m, file=sys.stderr))
    print("\n---", file=out, flush=True)

# ---- command line ------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minichinchilla train",
        description="Pretrain a decoder-only language model. With no options: a ~1M-parameter "
                    "model on the built-in corpus (README, Quickstart, says how long it takes).")
    p.add_argument("--config", metavar="FILE", help="a .json or .toml file of config keys")
    p.add_argument("--out", metavar="DIR", help="run directory, new or empty (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="reuse a non-empty --out (replaces its run files)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-evaluation lines (the summary and sample still print)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for BLAS and the fast kernels (default: 1 for models with d_model "
                        f"<= {SMALL_MODEL_D_MODEL}, else every core)")
    add_config_arguments(p)
    return p


def _resume_config(run_dir: Path, args) -> TrainConfig:
    ckpt_dir = find_checkpoint(run_dir)
    if ckpt_dir != run_dir / "ckpt":
        raise ValueError(f"--resume takes the run directory, not its checkpoint folder: "
                         f"--resume {run_dir.parent}")
    saved = train_config_from(read_state(ckpt_dir), ckpt_dir)
    given = {**(read_config_file(args.config) if args.config else {}), **overrides_from_args(args)}
    TrainConfig.from_dict({**saved.to_dict(), **given})  # unknown keys / wrong types first
    for key, value in given.items():
        if getattr(saved, key) != value:
            raise ValueError(f"cannot change {key!r} when resuming (the run has {getattr(saved, key)!r}, "
                             f"got {value!r}): a resumed run continues with its saved config and "
                             f"horizon; start a new run with --out instead")
    return saved


def main(argv=None) -> int:
    # A Ctrl-C inside the loop is handled there (checkpoint, then exit 130); a KeyboardInterrupt
    # reaching run_command is one before the loop started, or a second Ctrl-C inside it.
    return run_command(build_parser(), _run, argv, user_errors=(TypeError, TrainingDiverged),
                       interrupted="interrupted (no checkpoint written by this interrupt)")


def _run(args) -> int:
    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise ValueError(f"--out {args.out!r} and --resume {args.resume!r} name different "
                             f"directories; a resumed run continues in its own directory")
        cfg = _resume_config(run_dir, args)
    else:
        cfg = load_config(args.config, overrides_from_args(args))
        run_dir = Path(args.out) if args.out else default_run_dir()
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"--out {str(run_dir)!r} exists and is not a directory")
        if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()) and not args.force:
            raise ValueError(f"output directory {str(run_dir)!r} is not empty; use --force to reuse "
                             f"it (its checkpoint and log are replaced) or --resume {run_dir} to "
                             f"continue the run in it")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    result = run_training(cfg, run_dir, resume=bool(args.resume), force=args.force, quiet=args.quiet,
                          threads=args.threads)
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
