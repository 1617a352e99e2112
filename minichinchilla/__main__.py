"""`python -m minichinchilla <command> [options]` — the course's command line.

Each command lives in its own module with a ``main(argv) -> int``; this file only dispatches,
so ``python -m minichinchilla train --help`` imports nothing but the training code. Exit codes
and error messages follow one convention, described in ``minichinchilla/cli.py``. The same
entry point is installed as the console script ``minichinchilla`` (pyproject.toml).
"""
import importlib
import sys

from .cli import error

COMMANDS = {
    "train": ("minichinchilla.train", "pretrain a language model (default: a small model on the built-in corpus)"),
    "sample": ("minichinchilla.sample", "generate text from a run's latest checkpoint"),
    "eval": ("minichinchilla.evaluate", "validation loss and perplexity of a run's checkpoint"),
    "finetune": ("minichinchilla.finetune", "fine-tune a pretrained run on a classification task"),
    "scaling": ("minichinchilla.scaling.cli", "scaling laws: plan a compute-optimal model, run sweeps"),
    "bench": ("minichinchilla.bench", "time a training step against PyTorch"),
    "book": ("minichinchilla.book", "build or serve the course website"),
    "course": ("minichinchilla.course", "write a student's copy of the notebooks (solutions hidden)"),
    "assignments": ("minichinchilla.assignments", "release student versions of the assignments, or grade submissions"),
    "gradcheck-demo": ("minichinchilla.demo", "check every layer's backward against finite differences"),
}


# Third-party modules that only some commands need -> the pyproject.toml extra that installs them.
# A command that finds one missing says which extra to install instead of printing a traceback.
OPTIONAL_MODULES = {
    "nbformat": "assignments", "nbclient": "assignments", "jupyter_client": "assignments",
    "ipykernel": "assignments", "IPython": "assignments", "traitlets": "assignments",
    "sphinx": "docs", "myst_parser": "docs", "myst_nb": "docs", "markdown_it": "docs",
    "selenium": "docs",
    "torch": "torch",
    "dask": "dask", "distributed": "dask",
    "cupy": "gpu", "cupyx": "gpu",
}


def usage():
    lines = ["usage: python -m minichinchilla <command> [options]",
             "       python -m minichinchilla --version", "", "commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'python -m minichinchilla <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from . import __version__

        print(f"minichinchilla {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return error(f"unknown command {name!r}\n\n{usage()}")
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return module.main(rest) or 0
    except ModuleNotFoundError as err:
        extra = OPTIONAL_MODULES.get((err.name or "").split(".")[0])
        if extra is None:
            raise  # a module of the package itself, or a core dependency: a bug, keep the traceback
        return error(f"the {name!r} command needs {err.name}, which is not installed: "
                     f"pip install 'minichinchilla[{extra}]' (or, in a checkout, "
                     f"pip install -e '.[{extra}]')")


if __name__ == "__main__":
    sys.exit(main())
