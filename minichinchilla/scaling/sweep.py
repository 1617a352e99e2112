"""IsoFLOP sweeps: train a grid of model sizes × compute budgets, one row of results per run.

This is how Hoffmann et al. gathered the data behind Approaches 2 and 3 (chapters/10-scaling-laws.md):
fix a budget C, train models of several sizes N, each on exactly D = C / (6N) tokens with a
cosine schedule whose length is ITS OWN horizon (a longer cycle cut short overestimates the
loss, the flaw Chinchilla found in earlier sweeps), and record the final loss. Every run here
trains a TransformerLM on fresh tokens from the `SyntheticLanguage`, so data never repeats
(Chinchilla's single-epoch regime) and the irreducible loss E is known exactly.

Results are appended to a JSONL table (one object per run, see `RESULT_COLUMNS`), so a sweep is
restartable: finished runs are skipped. Runs go to a `concurrent.futures` executor — local
processes, each single-threaded (small models make NumPy most competitive per core), or a Dask
cluster through the same interface (`Client.get_executor()`).
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

RESULT_COLUMNS = ("key", "status", "C_budget", "C", "N", "N_nonembed", "D", "loss", "n_layers",
                  "d_model", "n_heads", "seed", "curve", "lr", "batch_size", "seq_len", "steps",
                  "vocab_size", "language_seed", "entropy_floor", "elapsed_s", "error")

# Model shapes of the default ladder (d_model, n_layers, n_heads): about 1.5–2x apart in N.
DEFAULT_SHAPES = ((16, 1, 2), (16, 2, 2), (24, 2, 2), (32, 2, 2), (40, 3, 2), (48, 3, 4),
                  (64, 3, 4), (64, 4, 4), (80, 4, 4), (96, 5, 4), (128, 5, 4), (160, 6, 4))
DEFAULT_BUDGETS = (5e10, 1e11, 2e11, 5e11, 1e12)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run; equal specs give equal losses (up to BLAS round-off)."""

    C_budget: float
    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int = 64
    seq_len: int = 32
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    language_seed: int = 0
    n_evals: int = 8
    eval_sequences: int = 256
    warmup_frac: float = 0.05

    @property
    def key(self):
        return (f"C{self.C_budget:.3g}-d{self.d_model}-L{self.n_layers}-h{self.n_heads}"
                f"-b{self.batch_size}-lr{self.lr:g}-s{self.seed}")

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


def batch_size_for(C):
    """Batch grows with the budget (as in the paper): 16 sequences at 1e11 FLOPs, x2 per 4x compute."""
    b = 16 * math.sqrt(C / 1e11)  # 5e10 -> 16 (rounded), 5e11 -> 32, 1e12 -> 64
    return int(2 ** round(math.log2(max(8.0, b))))


def lr_for(d_model):
    """A width-dependent learning rate from a small scan at the smallest budget (see chapter 10):
    narrow models tolerate larger steps."""
    return 3e-3 * min(1.0, (48 / d_model) ** 0.5)


def default_grid(budgets=DEFAULT_BUDGETS, shapes=DEFAULT_SHAPES, sizes_per_budget=5,
                 tokens_per_param_guess=60.0, min_steps=150, seed=0, vocab_size=64, seq_len=32):
    """Per budget, the `sizes_per_budget` shapes nearest the optimum guessed from
    N ≈ sqrt(C / (6 k)) (k tokens per parameter), keeping only runs with at least `min_steps`.

    The window slides with the budget, as the paper's IsoFLOP grids do, so each budget's
    minimum can fall inside its grid. Raises ValueError when a budget fits no model.
    """
    specs = []
    for C in budgets:
        if not (C > 0 and math.isfinite(C)):
            raise ValueError(f"budget must be positive and finite, got {C!r}")
        bs = batch_size_for(C)
        cands = [RunSpec(C, d, L, h, vocab_size=vocab_size, seq_len=seq_len, batch_size=bs,
                         lr=lr_for(d), seed=seed) for d, L, h in shapes]
        cands = [s for s in cands if s.steps() >= min_steps]
        if not cands:
            raise ValueError(f"budget {C:.3g} FLOPs is too small for any model in the grid "
                             f"(every run would have fewer than {min_steps} steps)")
        guess = math.sqrt(C / (6 * tokens_per_param_guess))
        centre = min(range(len(cands)), key=lambda i: abs(math.log(cands[i].params().total / guess)))
        lo = max(0, min(centre - sizes_per_budget // 2, len(cands) - sizes_per_budget))
        specs.extend(cands[lo:lo + sizes_per_budget])
    return specs


def _evaluate(model, x_val, y_val):
    from ..tensor import no_grad

    with no_grad():
        return float(model(x_val, y_val)[1].item())


def run_one(spec: RunSpec) -> dict:
    """Train one model for its budget; return its result row (status 'ok' or 'failed')."""
    row = dict(key=spec.key, **{k: v for k, v in asdict(spec).items()})
    start = time.perf_counter()
    try:
        from ..model import TransformerLM
        from ..optim import AdamW, cosine_lr, param_groups_for_decay
        from .synthetic import SyntheticLanguage

        lang = SyntheticLanguage(vocab_size=spec.vocab_size, seed=spec.language_seed)
        counts = spec.params()
        steps = spec.steps()
        if steps < 1:
            raise ValueError(f"budget {spec.C_budget:.3g} is too small for N={counts.total}")
        model = TransformerLM(spec.model_config(), seed=spec.seed)
        opt = AdamW(param_groups_for_decay(model, 0.1), lr=spec.lr, betas=(0.9, 0.95))
        # Validation: a fixed sample from the language (its own seed), the same for every run.
        val = lang.sample_streams(spec.eval_sequences, spec.seq_len + 1, np.random.default_rng(12345))
        x_val, y_val = val[:, :-1], val[:, 1:]
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
            opt.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            if step + 1 in eval_at:
                curve.append([(step + 1) * tokens_per_step, _evaluate(model, x_val, y_val)])
        D = steps * tokens_per_step
        row.update(status="ok", N=counts.total, N_nonembed=counts.non_embedding, D=D,
                   C=6.0 * counts.total * D, loss=curve[-1][1], curve=curve, steps=steps,
                   entropy_floor=lang.window_entropy(spec.seq_len), error=None)
    except Exception as exc:  # a crashed run is recorded, the sweep goes on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=5))
    row["elapsed_s"] = time.perf_counter() - start
    return row


def load_results(path):
    """Rows of a JSONL results table; a sweep that has not started yet has none."""
    from .approaches import load_results as read_table

    return read_table(path) if os.path.exists(path) else []


def _single_thread():
    """Worker initialiser: one BLAS thread per process, one process per core."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def make_executor(kind="process", workers=None, address=None):
    """A concurrent.futures-style executor: local processes, or a Dask cluster's executor."""
    if kind == "process":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"  # inherited by the workers before they import NumPy
        return ProcessPoolExecutor(max_workers=workers or os.cpu_count(),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_single_thread)
    if kind == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("the Dask executor needs dask[distributed]: pip install 'dask[distributed]'") from None
        client = Client(address) if address else Client(LocalCluster(n_workers=workers or 1,
                                                                      threads_per_worker=1))
        executor = client.get_executor()
        executor.client_to_close = client
        return executor
    raise ValueError(f"executor must be 'process' or 'dask', got {kind!r}")


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
    next call; it never stops the sweep.
    """
    done = {r["key"] for r in load_results(results_path) if r.get("status") == "ok"}
    todo = [s for s in specs if s.key not in done]
    progress = SweepProgress(total=len(todo), flops_total=sum(s.C_budget for s in todo))
    log(f"sweep: {len(specs)} runs in the grid, {len(specs) - len(todo)} already finished, "
        f"{len(todo)} to run")
    if not todo:
        return []
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    new_rows = []
    from concurrent.futures import as_completed

    pool = make_executor(executor, workers, address)
    try:
        # Biggest first: the longest runs start early, so the pool does not idle at the end.
        futures = {pool.submit(run_one, s): s for s in sorted(todo, key=lambda s: -s.C_budget)}
        for fut in as_completed(futures):
            row = fut.result()
            with open(results_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            new_rows.append(row)
            progress.done += 1
            progress.flops_done += futures[fut].C_budget
            status = f"loss {row['loss']:.4f}" if row["status"] == "ok" else f"FAILED: {row['error']}"
            if row["status"] != "ok":
                progress.failed += 1
            log(f"  {row['key']}: {status} ({row['elapsed_s']:.0f} s) | {progress.line()}")
    finally:
        pool.shutdown(wait=True)
        client = getattr(pool, "client_to_close", None)
        if client is not None:
            client.close()
    return new_rows


# ---- `python -m minichinchilla scaling sweep` ---------------------------------------------------

def _sweep_arguments(p):
    p.add_argument("--out", default="results/isoflop-sweep.jsonl", help="JSONL results table (appended)")
    p.add_argument("--budgets", default=",".join(f"{c:g}" for c in DEFAULT_BUDGETS),
                   help="comma-separated FLOP budgets")
    p.add_argument("--sizes-per-budget", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    p.add_argument("--executor", choices=["process", "dask"], default="process")
    p.add_argument("--address", help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their sizes, train nothing")


def _sweep_run(args):
    try:
        budgets = [float(c) for c in args.budgets.split(",") if c.strip()]
    except ValueError:
        raise ValueError(f"--budgets must be comma-separated numbers, got {args.budgets!r}") from None
    if args.sizes_per_budget < 1 or (args.workers is not None and args.workers < 1):
        raise ValueError("--sizes-per-budget and --workers must be at least 1")
    specs = default_grid(budgets=budgets, sizes_per_budget=args.sizes_per_budget, seed=args.seed)
    if args.dry_run:
        for s in specs:
            n = s.params().total
            print(f"{s.key:<40} N={n:>8,d}  steps={s.steps():>6d}  tokens/param={s.C_budget / (6 * n * n):7.1f}")
        return 0
    rows = run_sweep(specs, args.out, executor=args.executor, workers=args.workers, address=args.address)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _register():
    from .cli import register_subcommand

    register_subcommand("sweep", "train an IsoFLOP grid of model sizes x budgets (restartable)",
                        _sweep_arguments, _sweep_run)


_register()
