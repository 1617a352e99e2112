"""`python -m minichinchilla train`: pretrain a decoder-only LM (chapters/07-pretraining.md).

    python -m minichinchilla train                          # small model, built-in corpus, ~2-3 min
    python -m minichinchilla train --max-steps 2000 --d-model 192 --out runs/big
    python -m minichinchilla train --config run.toml --lr 1e-3
    python -m minichinchilla train --resume runs/big        # continue after Ctrl-C or a crash

What one run does, in order:

1. data: documents -> clean -> split by document -> train a tokenizer on the training split
   (cached by corpus hash) -> two token streams, train and validation;
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

Ctrl-C saves a checkpoint at the current step and exits with code 130 (a second Ctrl-C aborts
at once). Bad input is one ``error: ...`` line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .backend import asarray, set_backend
from .checkpoint import (find_checkpoint, load_model_weights, load_optimizer_state,
                         load_tokenizer_from, read_state, restore_rng, save_checkpoint,
                         train_config_from)
from .cli import EXIT_INTERRUPTED, run_command
from .config import TrainConfig, add_config_arguments, load_config, overrides_from_args, read_config_file
from .data import (IGNORE_INDEX, ByteBPETokenizer, CharTokenizer, Document, TokenStream, WordTokenizer,
                   cache_dir, clean_documents, encode_documents, load_builtin_documents,
                   load_text_documents, load_tokenizer, split_documents)
from .model import TransformerLM
from .optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_decay
from .tensor import no_grad

LOG_FILE = "log.jsonl"
PLOT_FILE = "loss.png"
CONFIG_FILE = "config.json"
SPLIT_SEED = 0  # the validation documents do not depend on the run's seed: runs stay comparable
MIN_DOCS_FOR_DOC_SPLIT = 10  # fewer documents (e.g. one .txt file) are split by position instead


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf."""


# ---- data ------------------------------------------------------------------------------
@dataclass
class RunData:
    tokenizer: object
    train_ids: np.ndarray  # (N_train,) int64
    val_ids: np.ndarray  # (N_val,) int64
    fingerprint: str  # sha256 of the cleaned train and validation text
    description: str  # one line for the log
    tokenizer_note: str
    val_bytes: int = 0  # UTF-8 bytes of the validation text itself (for bits per byte)


def _split_by_position(documents, val_fraction):
    """Few documents (one file): hold out the last `val_fraction` of the text, cut at a line break."""
    text = "\n\n".join(d.text for d in documents)
    cut = int(len(text) * (1.0 - val_fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline if newline > 0 else cut
    train, val = text[:cut].strip(), text[cut:].strip()
    if not train or not val:
        raise ValueError(f"the data is too small to split into training and validation text "
                         f"({len(text)} characters)")
    source = documents[0].source
    return [Document(train, source)], [Document(val, source)]


def _corpus_hash(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def train_tokenizer(cfg: TrainConfig, train_docs, train_hash: str):
    """Train the configured tokenizer on the training split, or load it from the cache.

    The cache key is (kind, vocab_size, hash of the training text), so any change of corpus
    or settings trains a new one. Returns (tokenizer, note).
    """
    path = cache_dir() / "tokenizers" / f"{cfg.tokenizer}-{cfg.vocab_size}-{train_hash[:16]}.json"
    if path.exists():
        try:
            return load_tokenizer(path), f"cached {path}"
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache file: train again
    texts = [d.text for d in train_docs]
    if cfg.tokenizer == "bpe":
        tokenizer = ByteBPETokenizer.train(texts, vocab_size=cfg.vocab_size)
    elif cfg.tokenizer == "char":
        tokenizer = CharTokenizer.train(texts, max_size=cfg.vocab_size)
    else:
        tokenizer = WordTokenizer.train(texts, min_freq=2, max_size=cfg.vocab_size)
    try:
        tokenizer.save(path)
    except OSError:
        pass  # a read-only cache must not stop training
    return tokenizer, "trained"


def prepare_data(cfg: TrainConfig, tokenizer=None) -> RunData:
    """Documents -> clean -> split -> tokenizer (trained unless given) -> token streams.

    Raises ValueError for a missing, empty, binary or non-UTF-8 data path (the message names
    the file and byte offset) and for splits too small for one batch.
    """
    if cfg.data is None:
        documents, origin = load_builtin_documents(), "built-in corpus"
    else:
        documents, origin = load_text_documents(cfg.data), repr(cfg.data)
    documents, _ = clean_documents(documents)
    if cfg.data is None:
        # The fine-tuning tasks' validation/test docstrings are held out of pretraining, so
        # fine-tuning is measured on text the language model has never seen.
        from .finetune.tasks import exclude_heldout

        documents = exclude_heldout(documents)
    if not documents:
        raise ValueError(f"data {origin} has no text left after cleaning")
    if len(documents) >= MIN_DOCS_FOR_DOC_SPLIT:
        train_docs, val_docs = split_documents(documents, cfg.val_fraction, seed=SPLIT_SEED)
        how = f"{len(train_docs)} train / {len(val_docs)} val documents"
    else:
        train_docs, val_docs = _split_by_position(documents, cfg.val_fraction)
        how = f"{len(documents)} document(s), last {cfg.val_fraction:.0%} of the text held out"
    train_hash = _corpus_hash(d.text for d in train_docs)
    fingerprint = _corpus_hash([train_hash] + [d.text for d in val_docs])
    note = "from checkpoint"
    if tokenizer is None:
        tokenizer, note = train_tokenizer(cfg, train_docs, train_hash)
    train_ids = encode_documents(tokenizer, (d.text for d in train_docs))  # (N_train,)
    val_ids = encode_documents(tokenizer, (d.text for d in val_docs))  # (N_val,)
    need = cfg.batch_size * cfg.seq_len + 1
    if len(train_ids) < need:
        raise ValueError(f"the training split of {origin} has {len(train_ids)} tokens, fewer than one "
                         f"batch needs (batch_size * seq_len + 1 = {need}); use more text or a smaller "
                         f"--batch-size / --seq-len")
    if len(val_ids) < cfg.seq_len + 1:
        raise ValueError(f"the validation split of {origin} has {len(val_ids)} tokens, fewer than one "
                         f"row needs (seq_len + 1 = {cfg.seq_len + 1}); use more text, a larger "
                         f"--val-fraction or a smaller --seq-len")
    description = (f"data: {origin}, {how}; {len(train_ids):,} train / {len(val_ids):,} val tokens")
    val_bytes = sum(len(d.text.encode("utf-8")) for d in val_docs)
    return RunData(tokenizer, train_ids, val_ids, fingerprint, description, note, val_bytes)


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


def _rewrite_log(run_dir, entries):
    path = Path(run_dir) / LOG_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    os.replace(tmp, path)


def _append_log(run_dir, entry):
    with open(Path(run_dir) / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


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
    path = Path(run_dir) / PLOT_FILE
    fig.savefig(path)
    return path


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


# ---- the training run --------------------------------------------------------------------
@dataclass
class RunResult:
    step: int
    interrupted: bool
    val_loss: float | None
    run_dir: Path


def run_training(cfg: TrainConfig, run_dir, *, resume: bool = False, force: bool = False,
                 quiet: bool = False, stop_at_step: int | None = None, out=None) -> RunResult:
    """Train (or, with ``resume``, continue) the run in `run_dir`.

    Everything that can fail on bad input (data, tokenizer, model shape, checkpoint) is done
    before the run directory is touched. ``stop_at_step`` stops as Ctrl-C would, after that
    many steps (to demonstrate and test resuming).
    """
    out = out or sys.stdout
    run_dir = Path(run_dir)

    def say(msg):
        if not quiet:
            print(msg, file=out, flush=True)

    try:
        set_backend(cfg.backend)
    except RuntimeError as err:
        raise ValueError(str(err)) from None

    # ---- set-up: nothing is written until all of it has succeeded ----
    state = ckpt_dir = None
    if resume:
        ckpt_dir = find_checkpoint(run_dir)
        state = read_state(ckpt_dir)
        data = prepare_data(cfg, tokenizer=load_tokenizer_from(ckpt_dir, state))
        saved_fp = state.get("extra", {}).get("data_fingerprint")
        if saved_fp and saved_fp != data.fingerprint:
            raise ValueError(f"the data of this run changed since it started ({cfg.data or 'built-in corpus'}); "
                             f"resuming would not continue the same run")
    else:
        data = prepare_data(cfg)
    tokenizer = data.tokenizer
    model = TransformerLM(cfg.model_config(tokenizer.vocab_size), seed=cfg.seed)
    optimizer = AdamW(param_groups_for_decay(model, cfg.weight_decay), lr=cfg.lr,
                      betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    params = model.parameters()
    horizon, B, T = cfg.horizon, cfg.batch_size, cfg.seq_len
    if resume:
        load_model_weights(model, ckpt_dir, state)
        load_optimizer_state(optimizer, ckpt_dir, state)
        rng = restore_rng(state)
        step = int(state["step"])
        elapsed = float(state.get("extra", {}).get("elapsed", 0.0))
    else:
        # The data order has its own generator (not the one that initialised the weights).
        rng = np.random.default_rng([cfg.seed, 1])
        step, elapsed = 0, 0.0
    train_stream = TokenStream(data.train_ids, B, T)

    # ---- the run directory ----
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "ckpt"
    if resume:
        entries = [e for e in read_log(run_dir) if e.get("step", -1) <= step]
        _rewrite_log(run_dir, entries)  # each evaluation once, even after a crash
    else:
        if force:
            _clear_run_dir(run_dir)
        (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=1) + "\n", encoding="utf-8")
        entries = []
    logged = {e["step"] for e in entries}
    last_saved = step if resume else None

    say(data.description)
    say(f"tokenizer: {cfg.tokenizer}, {tokenizer.vocab_size} tokens ({data.tokenizer_note})")
    n_params = model.num_params()
    say(f"model: {n_params:,} parameters (d_model={cfg.d_model}, n_layers={cfg.n_layers}, "
        f"n_heads={cfg.n_heads}, context={model.config.seq_len})")
    epochs = horizon * B * T / len(data.train_ids)
    say(f"run: {horizon} steps x {B} x {T} = {horizon * B * T:,} tokens ({epochs:.2f} epochs), "
        f"lr {cfg.lr:g} (warm-up {cfg.warmup}, cosine to {cfg.min_lr_ratio:g}x), "
        f"{'resuming at step ' + str(step) + ', ' if resume else ''}out: {run_dir}")

    t_last = time.perf_counter()

    def tick():  # wall time of the run, summed over resumes
        nonlocal elapsed, t_last
        now = time.perf_counter()
        elapsed, t_last = elapsed + now - t_last, now

    def save(at_step):
        nonlocal last_saved
        tick()
        save_checkpoint(ckpt_dir, model=model, optimizer=optimizer, step=at_step, rng=rng,
                        train_config=cfg, tokenizer=tokenizer,
                        extra={"elapsed": elapsed, "data_fingerprint": data.fingerprint,
                               "num_params": n_params})
        last_saved = at_step

    def diverged(what):
        where = (f"the last good checkpoint is {ckpt_dir} (step {last_saved})" if last_saved is not None
                 else "no checkpoint was saved")
        return TrainingDiverged(f"{what} at step {step}; training stopped and {where}. "
                                f"Try a lower --lr or --warmup-steps > 0")

    from tqdm import tqdm

    bar = tqdm(total=horizon, initial=step, disable=quiet or not sys.stderr.isatty(),
               dynamic_ncols=True, unit="step", file=sys.stderr)
    say_eval = (lambda m: bar.write(m, file=out)) if not bar.disable else say
    val_loss = None
    tok_per_s = None
    train_batches = None
    interrupted = False
    window_tokens, window_time = 0, 0.0  # training throughput since the last evaluation
    with _StopOnSigint(say_eval) as sigint:
        while True:
            # -- evaluate and checkpoint: every eval_interval steps, at 0 and at the end --
            if (step % cfg.eval_interval == 0 or step == horizon) and step not in logged:
                val_loss, _ = estimate_loss(model, data.val_ids, B, T, cfg.eval_batches)
                if train_batches is None:  # as many train windows as validation ones
                    train_batches = cfg.eval_batches or math.ceil((len(data.val_ids) - 1) / T / B)
                train_loss, _ = estimate_loss(model, data.train_ids, B, T, train_batches)
                tick()
                entry = {"step": step, "train_loss": train_loss, "val_loss": val_loss,
                         "val_ppl": math.exp(min(val_loss, 700.0)),
                         "lr": cosine_lr(step, horizon, cfg.lr, cfg.warmup, cfg.min_lr_ratio),
                         "tokens": step * B * T, "elapsed": round(elapsed, 3),
                         "tok_per_s": round(window_tokens / window_time, 1) if window_time else None}
                window_tokens, window_time = 0, 0.0
                _append_log(run_dir, entry)  # log first: a crash before the save re-does this step
                logged.add(step)
                save(step)
                say_eval(f"step {step:>6} | train {train_loss:.4f} | val {val_loss:.4f} | "
                         f"ppl {entry['val_ppl']:.2f} | lr {entry['lr']:.2e} | "
                         f"{'-' if entry['tok_per_s'] is None else format(entry['tok_per_s'], ',.0f')} tok/s")
            if step >= horizon:
                break
            if sigint.requested or (stop_at_step is not None and step >= stop_at_step):
                if last_saved != step:
                    save(step)
                interrupted = True
                break
            # -- one optimiser step --
            t0 = time.perf_counter()
            x, y = train_stream.sample_batch(rng)  # (B, T), (B, T)
            lr = cosine_lr(step, horizon, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = lr
            _, loss = model(asarray(x), asarray(y))
            loss_value = float(loss.data)
            if not math.isfinite(loss_value):
                raise diverged(f"training loss is {loss_value}")
            optimizer.zero_grad()
            loss.backward()
            grad_norm = clip_grad_norm(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            if not math.isfinite(grad_norm):  # caught before the update: weights stay finite
                raise diverged(f"gradient norm is {grad_norm}")
            optimizer.step()
            step += 1
            dt = time.perf_counter() - t0
            rate = B * T / dt
            window_tokens, window_time = window_tokens + B * T, window_time + dt
            tok_per_s = rate if tok_per_s is None else 0.9 * tok_per_s + 0.1 * rate
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.1e}", tok_s=f"{tok_per_s:,.0f}",
                            refresh=False)
    bar.close()
    plot_losses(run_dir)
    if interrupted:
        print(f"stopped at step {step}/{horizon}; checkpoint saved to {ckpt_dir}\n"
              f"resume with: python -m minichinchilla train --resume {run_dir}", file=out, flush=True)
        return RunResult(step, True, val_loss, run_dir)
    final = read_log(run_dir)
    first, last = final[0], final[-1]
    print(f"done: val loss {first['val_loss']:.4f} (step {first['step']}) -> {last['val_loss']:.4f} "
          f"(step {last['step']}), perplexity {last['val_ppl']:.2f}; run saved in {run_dir}",
          file=out, flush=True)
    if cfg.sample_tokens:
        from .sample import generate_text

        print(f"\nsample (seed {cfg.seed}, temperature 0.8, top-k 40):\n---", file=out)
        generate_text(model, tokenizer, cfg.sample_prompt, cfg.sample_tokens, 0.8, 40, cfg.seed,
                      write=lambda s: (out.write(s), out.flush()),
                      warn=lambda m: print(m, file=sys.stderr))
        print("\n---", file=out, flush=True)
    return RunResult(step, False, last["val_loss"], run_dir)


# ---- command line ------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minichinchilla train",
        description="Pretrain a decoder-only language model. With no options: a ~1M-parameter "
                    "model on the built-in corpus (about 2-3 minutes on two CPU cores).")
    p.add_argument("--config", metavar="FILE", help="a .json or .toml file of config keys")
    p.add_argument("--out", metavar="DIR", help="run directory, new or empty (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="reuse a non-empty --out (replaces its run files)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-evaluation lines (the summary and sample still print)")
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
        if run_dir.is_dir() and any(run_dir.iterdir()) and not args.force:
            raise ValueError(f"output directory {str(run_dir)!r} is not empty; use --force to reuse "
                             f"it (its checkpoint and log are replaced) or --resume {run_dir} to "
                             f"continue the run in it")
    result = run_training(cfg, run_dir, resume=bool(args.resume), force=args.force, quiet=args.quiet)
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
