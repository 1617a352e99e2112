"""Cache blocking and worker threads for the fast NumPy kernels (chapter 12, performance).

Why this file exists. An elementwise pass such as ``t *= x`` does one flop per 8 bytes it
moves: its speed is set by memory bandwidth, not by arithmetic (the roofline of chapter 12).
GELU is about ten such passes. Over a (B·T, 4C) = (2048, 1024) float32 array — 8 MiB, bigger
than the 2 MiB L2 cache of one core — every pass streams the whole array from L3 or DRAM.
Cut into blocks of rows of about `BLOCK_BYTES`, the first pass brings a block into L2 and the
other nine find it there: the same code, two to five times faster (measured in chapter 12).

The second reason is threads. OpenBLAS runs every matrix product on all cores, but a NumPy
ufunc runs on one. NumPy releases the GIL inside a ufunc, so Python threads that each own a
run of blocks do run in parallel: `for_each_block` gives every thread one contiguous run.
The blocks do not depend on the number of threads, and per-block results are returned in block
order, so a reduction summed from them gives the same bits with 1 thread or 8.

On CuPy both tricks are wrong: a GPU wants one big kernel, not many small launches, so there
is exactly one block, run in the calling thread.

A third fix lives here because every kernel benefits: `keep_freed_memory`. NumPy allocates a
fresh array for each result, and glibc hands big freed blocks straight back to the operating
system, so the next step maps them again and the kernel zero-fills every page on first touch:
for the (b) benchmark config that was ~30,000 page faults and ~150 ms of system time per step.
Raising glibc's mmap and trim thresholds keeps freed memory in the process for reuse; the peak
memory does not change. Set MINICHINCHILLA_MALLOPT=0 to leave the allocator alone.

Nothing here runs at import: importing minichinchilla must not change a learner's process. The
allocator setting is made the first time a blocked kernel runs (`_first_use`), the worker threads
start the first time a kernel has enough work to share, and threadpoolctl is loaded the first
time a kernel needs BLAS kept to one thread. `setup_done()` says whether that first use happened.
"""
from __future__ import annotations

import os
import threading

BLOCK_BYTES = 256 * 1024  # a few blocks (inputs + outputs + scratch) fit in one core's L2
# Below this much data a kernel runs on the calling thread: waking a worker and handing it work
# costs tens of microseconds, as much as the work itself on a small array.
MIN_PARALLEL_BYTES = 1024 * 1024

_state = {"threads": None, "pool": None, "blas": None, "blas_threads": 1, "min_parallel": MIN_PARALLEL_BYTES,
          "mallopt": None}  # None: first-use setup has not run
_lock = threading.Lock()


def num_threads() -> int:
    """Worker threads for elementwise kernels: MINICHINCHILLA_NUM_THREADS, else the BLAS
    thread count from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else the number of cores."""
    if _state["threads"] is None:
        for var in ("MINICHINCHILLA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            value = os.environ.get(var, "").strip()
            if value.isdigit() and int(value) > 0:
                _state["threads"] = int(value)
                break
        else:
            _state["threads"] = os.cpu_count() or 1
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use `n` worker threads for the blocked kernels from now on (1 = no threads)."""
    if int(n) < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    with _lock:
        _state["threads"] = int(n)
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
            _state["pool"] = None


def _pool():
    with _lock:
        if _state["pool"] is None:
            from concurrent.futures import ThreadPoolExecutor

            _state["pool"] = ThreadPoolExecutor(max_workers=max(1, num_threads() - 1),
                                                thread_name_prefix="minichinchilla")
        return _state["pool"]


def _blas_controller():
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            _state["blas"] = ThreadpoolController()
            info = _state["blas"].select(user_api="blas").info()
            _state["blas_threads"] = max([m.get("num_threads", 1) for m in info] or [1])
        except Exception:  # threadpoolctl missing: then BLAS-using blocks run as they are
            _state["blas"], _state["blas_threads"] = False, 1
    return _state["blas"]


def _blas_one_thread():
    """Limit BLAS to one thread for the duration of a blocked kernel; returns the limiter (call
    its ``restore_original_limits()``) or None when there is nothing to limit.

    Two reasons. The products inside a block are small (a 64 x 32 by 32 x 256 block of attention
    scores): OpenBLAS splitting each across threads costs more in hand-offs than it saves. And
    when the blocks themselves run on several threads, two threads each asking OpenBLAS for two
    more would fight over two cores.
    """
    controller = _blas_controller()
    if not controller or _state["blas_threads"] <= 1:
        return None
    return controller.limit(limits=1, user_api="blas")


def keep_freed_memory(threshold_bytes=64 * 1024 * 1024):
    """Ask glibc to serve arrays up to `threshold_bytes` from its heap and not to return freed
    memory to the OS (Linux/glibc only; elsewhere a no-op). Returns True if it took effect."""
    if os.environ.get("MINICHINCHILLA_MALLOPT", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
    ok = mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)) == 1
    return ok and mallopt(M_TRIM_THRESHOLD, 2 * int(threshold_bytes)) == 1


def _first_use():
    """The process-wide setup of the fast kernels, done once, the first time one of them runs."""
    if _state["mallopt"] is None:
        _state["mallopt"] = keep_freed_memory()


def setup_done() -> bool:
    """True once a fast kernel has run and made its process-wide setup (see the module docstring)."""
    return _state["mallopt"] is not None


def row_blocks(n_rows, rows_per_block):
    """Slices covering 0 .. n_rows in steps of `rows_per_block` (the last may be shorter)."""
    step = max(1, int(rows_per_block))
    return [slice(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]


def rows_per_block(xp, n_rows, row_bytes, block_bytes=BLOCK_BYTES):
    """How many rows make one block: all of them on a GPU, about `block_bytes` on a CPU."""
    if xp.__name__ != "numpy":
        return max(1, n_rows)
    return max(1, block_bytes // max(1, row_bytes))


def for_each_block(xp, n_rows, row_bytes, fn, block_bytes=BLOCK_BYTES, uses_blas=False):
    """Call ``fn(rows)`` for consecutive row slices covering 0 .. n_rows; return the results
    in block order.

    `fn` must write only into rows `rows` of its outputs, so blocks can run in any order and
    on any thread. NumPy: blocks of ~`block_bytes`, spread over `num_threads()` threads.
    CuPy: one call with every row. `uses_blas=True` (the block does small matrix products)
    keeps BLAS on one thread while the blocks run (see `_blas_one_thread`).
    """
    _first_use()
    blocks = row_blocks(n_rows, rows_per_block(xp, n_rows, row_bytes, block_bytes))
    n_threads = min(num_threads(), len(blocks)) if n_rows * row_bytes >= _state["min_parallel"] else 1
    if not uses_blas and n_threads <= 1:
        return [fn(rows) for rows in blocks]
    limit = _blas_one_thread() if uses_blas and xp.__name__ == "numpy" else None
    if uses_blas and limit is None and _state["blas_threads"] > 1:
        n_threads = 1  # cannot keep BLAS to one thread per worker: run the blocks in turn
    try:
        if n_threads <= 1:
            return [fn(rows) for rows in blocks]
        # Thread i takes the i-th contiguous run of blocks; the calling thread takes run 0.
        runs = [blocks[i * len(blocks) // n_threads:(i + 1) * len(blocks) // n_threads]
                for i in range(n_threads)]
        futures = [_pool().submit(lambda run=run: [fn(rows) for rows in run]) for run in runs[1:]]
        results = [fn(rows) for rows in runs[0]]
        for f in futures:
            results.extend(f.result())
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return results
