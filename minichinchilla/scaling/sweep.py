"""IsoFLOP sweeps: train a grid of model sizes × compute budgets, one row of results per run.

This is how Hoffmann et al. gathered the data behind Approaches 2 and 3 (chapters/10-scaling-laws.md):
fix a budget C, train models of several sizes N, each on exactly D = C / (6N) tokens with a
cosine schedule whose length is ITS OWN horizon (a longer cycle cut short overestimates the
loss, the flaw Chinchilla found in earlier sweeps), and record the final loss. Every run here
trains a TransformerLM on fresh tokens from a `SyntheticLanguage`, so data never repeats
(Chinchilla's single-epoch regime) and the irreducible loss is known exactly: each row carries
`floor`, the true process's expected loss on the evaluation the run actually did, and
`oracle_loss`, the true process's loss on the very validation windows the run was scored on.

The design (batch, context, learning rate per size, warm-up, clipping, evaluation) lives in
`RunSpec`; the grid of budgets × sizes × seeds in `default_grid`, centred on the optimum of a
pilot law (`design.py` sizes it by a power analysis). Results are appended to a JSONL table
(one object per finished run), so a sweep is resumable: finished runs are skipped.

Runs go to a `concurrent.futures`-style executor: local processes, each single-threaded (small
models make NumPy most competitive per core), or a Dask cluster (`--executor dask`; a
`LocalCluster` by default, a running scheduler with `--scheduler ADDRESS`). Either way:

* one sweep at a time writes an output: a lock next to it (`minichinchilla.runlock`) refuses a
  second process with an ``error:`` line naming the holder; a lock left by a killed sweep is
  taken over;
* Ctrl-C cancels the queued runs, stops the workers within seconds, keeps every finished row and
  exits 130;
* workers die with the sweep (a ``kill -9`` of the main process leaves no orphan);
* a last line cut short by a crash mid-write is dropped (with a warning) and its run redone.
"""
from __future__ import annotations

import functools
import json
import math
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

RESULT_COLUMNS = ("key", "status", "language", "C_budget", "C", "N", "N_nonembed", "D", "loss",
                  "floor", "oracle_loss", "n_layers", "d_model", "n_heads", "seed", "curve", "lr",
                  "batch_size", "seq_len", "steps", "warmup_steps", "grad_clip", "vocab_size",
                  "language_seed", "eval_windows", "elapsed_s", "error")

# Model shapes (d_model, n_layers, n_heads), about 1.3–1.8x apart in N for the V = 128 language.
DEFAULT_SHAPES = ((8, 1, 2), (12, 1, 2), (16, 1, 2), (16, 2, 2), (20, 2, 2), (24, 2, 2),
                  (32, 2, 2), (32, 3, 2), (40, 3, 2), (48, 3, 4), (56, 3, 4), (64, 3, 4),
                  (64, 4, 4), (80, 4, 4), (96, 4, 4), (112, 5, 4), (128, 5, 4))
# Budgets of the committed design: 64x in 7 doublings (see design.py for why these).
DEFAULT_BUDGETS = tuple(1.25e10 * 2 ** k for k in range(7))
DEFAULT_SEEDS = (0, 1)

# Learning rate per size: lr_opt(N) = LR_AT_10K · (N / 1e4)^LR_EXPONENT, fitted to the LR scan
# (results/toy-chinchilla-lr-scan.jsonl; refitted and checked by tests/test_scaling_design.py),
# held inside the scanned range LR_SCANNED: the rule is not extrapolated beyond what was measured.
LR_AT_10K = 0.007662
LR_EXPONENT = -0.63
LR_SCANNED = (1e-3, 1.6e-2)


def lr_for(n_params):
    """The learning rate the design gives a model of `n_params` (total) parameters."""
    rate = LR_AT_10K * (n_params / 1e4) ** LR_EXPONENT
    return min(max(rate, LR_SCANNED[0]), LR_SCANNED[1])


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run; equal specs give equal losses (up to BLAS round-off).

    The model reads `seq_len` tokens and is scored on the next token at each position; it trains
    on batches of `batch_size` fresh windows for D = C_budget / (6N) tokens with AdamW (β2 0.95,
    weight decay 0.1), `warmup_frac` of the steps of linear warm-up, cosine decay to 0.1·lr at
    the run's own last step, and gradient clipping at `grad_clip`. It is evaluated on
    `eval_windows` fixed validation windows at the end, and on the first `curve_windows` of them
    at `n_evals` points along the way (the curve Approach 1 uses)."""

    C_budget: float
    d_model: int
    n_layers: int
    n_heads: int
    lr: float
    seed: int = 0
    language: str = "hierarchical"
    language_seed: int = 0
    seq_len: int = 16
    batch_size: int = 32
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    n_evals: int = 8
    eval_windows: int = 2048
    curve_windows: int = 512

    @property
    def key(self):
        return (f"{self.language}-C{self.C_budget:.4g}-d{self.d_model}-L{self.n_layers}"
                f"-h{self.n_heads}-T{self.seq_len}-b{self.batch_size}-lr{self.lr:.3g}-s{self.seed}")

    @property
    def vocab_size(self):
        from .synthetic import LANGUAGES

        return LANGUAGES[self.language]["vocab_size"]

    def model_config(self):
        from ..model import ModelConfig

        return ModelConfig(vocab_size=self.vocab_size, seq_len=self.seq_len, d_model=self.d_model,
                           n_layers=self.n_layers, n_heads=self.n_heads)

    def params(self):
        from .flops import params_count

        return params_count(self.model_config())

    def steps(self):
        """Steps so that 6·N·D matches the budget: D = C / (6N) tokens, batch_size·seq_len per step."""
        tokens = self.C_budget / (6 * self.params().total)
        return int(round(tokens / (self.batch_size * self.seq_len)))

    def seconds_estimate(self):
        """Rough single-core wall time: a fixed cost per step plus the FLOPs at 3e10 FLOP/s
        (both measured on this project's engine at B = 32, T = 16, one BLAS thread)."""
        return self.steps() * 1.5e-3 + self.C_budget / 3e10


def default_grid(budgets=DEFAULT_BUDGETS, sizes_per_budget=7, seeds=DEFAULT_SEEDS,
                shapes=DEFAULT_SHAPES, min_steps=400, centre=None, language="hierarchical",
                lr=None, **spec_kwargs):
    """The IsoFLOP grid: per budget C, the `sizes_per_budget` consecutive shapes whose N is
    centred (in log N) on `centre(C)` — default the pilot law's optimum (`design.PILOT_FIT`) —
    among those that train for at least `min_steps` steps; every size with every seed.

    lr: None → `lr_for(N)` per size, or a number for every run. Raises ValueError when a budget
    fits fewer than 3 sizes (no parabola) or a budget is not positive and finite."""
    from .design import PILOT_FIT

    if centre is None:
        centre = lambda C: PILOT_FIT.compute_optimal(C)[0]  # noqa: E731
    specs = []
    for C in budgets:
        if not (C > 0 and math.isfinite(C)):
            raise ValueError(f"budget must be positive and finite, got {C!r}")
        cands = [RunSpec(C, d, L, h, lr=0.0, language=language, **spec_kwargs)
                 for d, L, h in shapes]
        cands = [s for s in cands if s.steps() >= min_steps]
        if len(cands) < min(3, sizes_per_budget):
            raise ValueError(f"budget {C:.3g} FLOPs is too small for the grid: fewer than "
                             f"{min(3, sizes_per_budget)} shapes train for {min_steps} steps")
        target = math.log(centre(C))
        logs = [math.log(s.params().total) for s in cands]
        k = min(sizes_per_budget, len(cands))
        # the window of k consecutive shapes whose mean log N is nearest the target
        lo = min(range(len(cands) - k + 1), key=lambda i: abs(np.mean(logs[i:i + k]) - target))
        for s in cands[lo:lo + k]:
            rate = lr_for(s.params().total) if lr is None else float(lr)
            for seed in seeds:
                specs.append(RunSpec(**{**asdict(s), "lr": float(f"{rate:.3g}"), "seed": seed}))
    return specs


# ---- one run ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _language(name, seed):
    from .synthetic import make_language

    lang = make_language(name, seed)
    lang.stationary()  # computed once per worker process
    return lang


@functools.lru_cache(maxsize=4)
def validation_windows(language="hierarchical", language_seed=0, seq_len=16, n_windows=2048):
    """The fixed validation windows (n_windows, seq_len + 1) every run of a design is scored on,
    drawn with their own seed (12345; training streams use 1000 + the run's seed), and the true
    process's loss on them."""
    lang = _language(language, language_seed)
    val = lang.sample_streams(n_windows, seq_len + 1, np.random.default_rng(12345))
    return val, lang.oracle_loss(val)


def _evaluate(model, x, y):
    from ..tensor import no_grad

    with no_grad():
        return float(model(x, y)[1].item())


def run_one(spec: RunSpec) -> dict:
    """Train one model for its budget; return its result row (status 'ok' or 'failed')."""
    row = dict(key=spec.key, vocab_size=spec.vocab_size, **asdict(spec))
    start = time.perf_counter()
    try:
        from ..model import TransformerLM
        from ..optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_decay

        lang = _language(spec.language, spec.language_seed)
        counts = spec.params()
        steps = spec.steps()
        if steps < 1:
            raise ValueError(f"budget {spec.C_budget:.3g} is too small for N={counts.total}")
        model = TransformerLM(spec.model_config(), seed=spec.seed)
        params = model.parameters()
        opt = AdamW(param_groups_for_decay(model, 0.1), lr=spec.lr, betas=(0.9, 0.95))
        val, oracle = validation_windows(spec.language, spec.language_seed, spec.seq_len,
                                         spec.eval_windows)
        x_val, y_val = val[:, :-1], val[:, 1:]  # (W, T) each: predict tokens 1..T
        cw = min(spec.curve_windows, spec.eval_windows)
        data = lang.batches(spec.batch_size, spec.seq_len, np.random.default_rng(1000 + spec.seed))
        warmup = max(1, int(spec.warmup_frac * steps))
        eval_at = sorted(set(int(round(steps * (i + 1) / spec.n_evals)) for i in range(spec.n_evals)))
        tokens_per_step = spec.batch_size * spec.seq_len
        curve = []
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, steps, spec.lr, warmup)
            x, y = next(data)
            _, loss = model(x, y)
            model.zero_grad()
            loss.backward()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            clip_grad_norm(params, spec.grad_clip)
            opt.step()
            if step + 1 in eval_at[:-1]:
                curve.append([(step + 1) * tokens_per_step, _evaluate(model, x_val[:cw], y_val[:cw])])
        final = _evaluate(model, x_val, y_val)
        D = steps * tokens_per_step
        curve.append([D, final])
        row.update(status="ok", N=counts.total, N_nonembed=counts.non_embedding, D=D,
                   C=6.0 * counts.total * D, loss=final, curve=curve, steps=steps,
                   warmup_steps=warmup, floor=lang.eval_floor(spec.seq_len), oracle_loss=oracle,
                   error=None)
    except Exception as exc:  # a crashed run is recorded, the sweep goes on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=5))
    row["elapsed_s"] = time.perf_counter() - start
    return row


# ---- the results table --------------------------------------------------------------------------

def load_results(path, warn=None):
    """Rows of a JSONL results table ([] when the file does not exist yet). A last line cut short
    by a crash mid-write is dropped with a warning, and its run counts as not done."""
    from .approaches import load_results as read_table

    return read_table(path, warn=warn) if Path(path).exists() else []


def _repair_tail(path):
    """Cut a torn last line (no newline) off `path`, so the next row starts on a line of its own."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _append_row(path, row):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


class _OutputLock:
    """An exclusive lock on one results file: `runlock.RunLock` on its folder, held through a
    lock file named after the output, so sweeps writing different files of one folder do not
    block each other."""

    def __init__(self, path):
        from ..runlock import RunLock

        path = Path(path).resolve()
        self.path = path
        self._lock = RunLock(path.parent, command=f"scaling sweep --out {path.name}")
        self._lock.path = path.parent / f".{path.name}.lock"

    def __enter__(self):
        from ..runlock import DirectoryLocked

        try:
            self._lock.acquire()
        except DirectoryLocked as exc:
            h = exc.holder
            raise ValueError(f"{str(self.path)!r} is locked: another sweep is writing it "
                             f"(pid {h.get('pid', '?')}, since {h.get('started', '?')}); wait "
                             f"for it to finish or stop it, or use another --out") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()


# ---- executors ----------------------------------------------------------------------------------

def _die_with_parent(parent_pid, kernel=True):
    """In a worker: exit as soon as the process that started it is gone, however it ended.

    With `kernel`, Linux's PR_SET_PDEATHSIG has the kernel send SIGKILL when the parent dies
    (only safe in a process started from the parent's main thread: the signal fires when the
    starting THREAD ends); in every case a daemon thread polls the parent pid once a second."""
    if kernel:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def _init_worker(parent_pid):
    """Process-pool worker initialiser: one BLAS thread, Ctrl-C left to the parent (which stops
    the workers itself, so a run is never half-killed into a bogus row), death with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    _single_blas_thread()


def _init_dask_worker():
    """Run in every worker process of a LocalCluster (their nannies live inside the sweep's own
    process, so a worker's parent IS the sweep): die with it, one BLAS thread, Ctrl-C left to
    the sweep. Returns the pid, so the sweep can stop it."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the handler cannot be changed there
        pass
    _die_with_parent(os.getppid(), kernel=False)
    _single_blas_thread()
    return os.getpid()


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _ProcessPool:
    """Local worker processes (spawned, single-threaded); `stop()` cancels and kills at once."""

    def __init__(self, workers):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"  # inherited by the workers before they import NumPy
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                        initargs=(os.getpid(),),
                                        mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn, arg):
        return self.pool.submit(fn, arg)

    def as_completed(self, futures):
        from concurrent.futures import as_completed

        return as_completed(futures)

    def close(self):
        self.pool.shutdown(wait=True)

    def stop(self):
        processes = list((self.pool._processes or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        _kill(p.pid for p in processes)  # a running run cannot be cancelled: end its process
        for p in processes:
            p.join(timeout=5)


class _DaskPool:
    """A Dask cluster: a LocalCluster of single-threaded worker processes, or the scheduler at
    `address`. `stop()` cancels every future; a LocalCluster's processes are then killed."""

    def __init__(self, workers, address=None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("--executor dask needs dask[distributed]: "
                             "pip install 'dask[distributed]'") from None
        self.cluster, self.futures, self.pids = None, [], []
        if address:
            self.client = Client(address, timeout="20s")
            return
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=40)
        self.client = Client(self.cluster)
        me = os.getpid()
        self.pids = [p for p in self.client.run(_init_dask_worker).values() if p != me]

    def submit(self, fn, arg):
        fut = self.client.submit(fn, arg, pure=False)
        self.futures.append(fut)
        return fut

    def as_completed(self, futures):
        from dask.distributed import as_completed

        return as_completed(list(futures))

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def stop(self):
        try:
            self.client.cancel(self.futures, force=True)
        finally:
            _kill(self.pids)  # a LocalCluster's workers; a remote cluster's stay
            try:
                self.client.close(timeout=3)
                if self.cluster is not None:
                    self.cluster.close(timeout=3)
            except Exception:  # noqa: BLE001 — its processes are gone already
                pass


def make_executor(kind="process", workers=None, address=None):
    """The pool a sweep runs on: 'process' (local processes) or 'dask' (a LocalCluster, or the
    scheduler at `address`)."""
    workers = workers or os.cpu_count() or 1
    if kind == "process":
        return _ProcessPool(workers)
    if kind == "dask":
        return _DaskPool(workers, address)
    raise ValueError(f"executor must be 'process' or 'dask', got {kind!r}")


# ---- the sweep ----------------------------------------------------------------------------------

@dataclass
class SweepProgress:
    total: int
    done: int = 0
    failed: int = 0
    flops_total: float = 0.0
    flops_done: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def line(self):
        elapsed = time.perf_counter() - self.started
        left = elapsed * (self.flops_total / self.flops_done - 1) if self.flops_done else float("nan")
        eta = "?" if math.isnan(left) else f"{left / 60:.0f} min"
        return (f"runs {self.done}/{self.total} done ({self.failed} failed), "
                f"{elapsed / 60:.1f} min elapsed, about {eta} left")


def run_sweep(specs, results_path, executor="process", workers=None, address=None, log=print):
    """Run every spec not already finished in `results_path`, appending rows as runs end.

    Returns the list of new rows. A failed run is recorded with its error and retried on the
    next call; it never stops the sweep. Holds the output's lock throughout; on Ctrl-C
    (KeyboardInterrupt) it cancels what is queued, kills the running workers, keeps the rows
    already written and re-raises.
    """
    results_path = Path(results_path)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    with _OutputLock(results_path):
        if results_path.exists():
            _repair_tail(results_path)
        done = {r["key"] for r in load_results(results_path, warn=log) if r.get("status") == "ok"}
        todo = [s for s in specs if s.key not in done]
        log(f"sweep: {len(specs)} runs in the grid, {len(specs) - len(todo)} already finished, "
            f"{len(todo)} to run")
        if not todo:
            return []
        progress = SweepProgress(total=len(todo), flops_total=sum(s.C_budget for s in todo))
        new_rows = []
        pool = make_executor(executor, workers, address)
        try:
            # Biggest first: the longest runs start early, so the pool does not idle at the end.
            futures = {pool.submit(run_one, s): s for s in sorted(todo, key=lambda s: -s.C_budget)}
            for fut in pool.as_completed(futures):
                row = fut.result()
                _append_row(results_path, row)
                new_rows.append(row)
                progress.done += 1
                progress.flops_done += futures[fut].C_budget
                if row["status"] == "ok":
                    status = f"loss {row['loss']:.4f}"
                else:
                    progress.failed += 1
                    status = f"FAILED: {row['error']}"
                log(f"  {row['key']}: {status} ({row['elapsed_s']:.0f} s) | {progress.line()}")
        except BaseException:
            pool.stop()
            raise
        pool.close()
    return new_rows


# ---- `python -m minichinchilla scaling sweep` ---------------------------------------------------

def _sweep_arguments(p):
    p.add_argument("--out", default="results/toy-chinchilla.jsonl",
                   help="JSONL results table (appended; finished runs are skipped)")
    p.add_argument("--budgets", default=",".join(f"{c:g}" for c in DEFAULT_BUDGETS),
                   help="comma-separated FLOP budgets")
    p.add_argument("--sizes-per-budget", type=int, default=7)
    p.add_argument("--seeds", default=",".join(str(s) for s in DEFAULT_SEEDS),
                   help="comma-separated model/data seeds, each run once per size")
    p.add_argument("--language", default="hierarchical", help="hierarchical (default) or cliff")
    p.add_argument("--lr", type=float, default=None,
                   help="one learning rate for every run (default: the design's rate per size)")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    p.add_argument("--executor", choices=["process", "dask"], default="process",
                   help="process: a local process pool (default); dask: a Dask cluster")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --executor dask: a running scheduler, e.g. tcp://10.0.0.5:8786 "
                        "(default: a LocalCluster of --workers processes)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, their sizes, FLOPs and estimated time; train nothing")


def _numbers(text, flag, kind=float):
    try:
        values = [kind(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def _check_args(args):
    from .synthetic import LANGUAGES

    budgets = _numbers(args.budgets, "--budgets")
    seeds = _numbers(args.seeds, "--seeds", int)
    if any(not (math.isfinite(c) and c > 0) for c in budgets):
        raise ValueError(f"--budgets must be positive, finite FLOP counts, got {args.budgets!r}")
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must be non-negative integers, got {args.seeds!r}")
    if args.sizes_per_budget < 3:
        raise ValueError("--sizes-per-budget must be at least 3 (a parabola needs three sizes)")
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.language not in LANGUAGES:
        raise ValueError(f"--language must be one of {sorted(LANGUAGES)}, got {args.language!r}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {args.lr!r}")
    if args.scheduler and args.executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    out = Path(args.out)
    if out.exists() and not out.is_file():
        raise ValueError(f"--out {args.out!r} is not a file")
    return budgets, seeds


def dry_run_report(specs, workers):
    """One line per run (its key, then N=…), then the grid's total FLOPs and estimated time."""
    lines = []
    for s in specs:
        n = s.params().total
        lines.append(f"{s.key:<58} N={n:>8,d}  steps={s.steps():>6d}  "
                     f"tokens/param={s.C_budget / (6 * n * n):7.1f}  lr={s.lr:.3g}")
    flops = sum(s.C_budget for s in specs)
    seconds = sum(s.seconds_estimate() for s in specs)
    lines.append(f"total: {len(specs)} runs, {flops:.3g} FLOPs, about {seconds / 3600:.2f} "
                 f"core-hours: {seconds / 60 / workers:.0f} min on {workers} idle core(s)")
    return "\n".join(lines)


def _sweep_run(args):
    budgets, seeds = _check_args(args)
    specs = default_grid(budgets=budgets, sizes_per_budget=args.sizes_per_budget, seeds=seeds,
                        language=args.language, lr=args.lr)
    if args.dry_run:
        print(dry_run_report(specs, args.workers or os.cpu_count() or 1))
        return 0
    rows = run_sweep(specs, args.out, executor=args.executor, workers=args.workers,
                     address=args.scheduler)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _register():
    from .cli import register_subcommand

    register_subcommand("sweep", "train an IsoFLOP grid of model sizes x budgets (resumable)",
                        _sweep_arguments, _sweep_run)


_register()
