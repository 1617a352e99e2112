"""What a run may use of the machine: memory (checked before allocating) and threads.

**Memory.** `available_memory_bytes()` is what the operating system says a new allocation can
get without swapping (``MemAvailable`` on Linux). Commands compare their own estimate with it
before they allocate anything, so an absurd size (``--n-layers 1000000``) is one error line
within a second instead of a MemoryError, or a machine swapping for minutes.

**Threads.** `limit_threads(n)` caps the BLAS library (OpenBLAS/MKL, through threadpoolctl) and
the worker threads of the fast kernels at `n` for the duration of a ``with`` block, and puts
both back afterwards. `default_threads(model_config)` is the measured choice for a model: the
matrices of a small model are too small to split across cores — each hand-off between threads
costs about as much as the arithmetic it shares — and on a shared machine extra threads only
contend with other processes (README, Quickstart).
"""
from __future__ import annotations

import contextlib
import os

# Up to this width a training step runs on one thread. Measured at d_model 128 (the README
# quickstart, 2 cores): 84 s with one thread beside a busy loop, 241 s with two; 84 s against
# 136 s with little other load. 256 extends that to the next size up without a measurement of
# its own: a starting point, compare with --threads.
SMALL_MODEL_D_MODEL = 256


def available_memory_bytes() -> int | None:
    """Memory a process can still allocate without swapping, or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def default_threads(model_config) -> int:
    """1 for a small model (see the module docstring), else every core."""
    if model_config.d_model <= SMALL_MODEL_D_MODEL:
        return 1
    return os.cpu_count() or 1


@contextlib.contextmanager
def limit_threads(n: int):
    """``with limit_threads(1): ...`` — BLAS and the fast kernels' workers use at most `n`
    threads inside the block; the previous settings come back afterwards."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"--threads must be a positive integer, got {n!r}")
    from threadpoolctl import threadpool_limits

    set_kernel_threads, kernel_threads = _kernel_thread_controls()
    previous = kernel_threads()
    with threadpool_limits(limits=n):
        set_kernel_threads(n)
        try:
            yield n
        finally:
            set_kernel_threads(previous)


def _kernel_thread_controls():
    """(set, get) for the fast kernels' worker-thread count."""
    from .functional import fast

    return fast.set_num_threads, fast.num_threads
