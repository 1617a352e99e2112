"""Execute notebooks in place and store their outputs (what nbval later compares against).

Usage: python scripts/execute_notebooks.py notebooks/03-attention.ipynb [more.ipynb ...]
Runs each notebook top to bottom in a fresh kernel started in the notebook's folder, without
timing metadata (so re-running produces a clean diff), and prints how long each took.
"""
import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient


def execute(path, timeout=600):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    start = time.perf_counter()
    client.execute()
    for cell in nb.cells:  # execution counts in order, no stray metadata
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # kernels inherit it; see scripts/test.sh
    for path in args.notebooks:
        print(f"{path}: {execute(path, args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
