"""minichinchilla: a from-scratch course in how Chinchilla-style language models work.

Used like a small PyTorch::

    import minichinchilla as mc
    x = mc.Tensor([[1.0, 2.0]], requires_grad=True)
    with mc.no_grad(): ...
    model = mc.TransformerLM(mc.ModelConfig(vocab_size=64, seq_len=32, d_model=32,
                                            n_layers=2, n_heads=2))
    opt = mc.optim.AdamW(model.parameters(), lr=3e-3)

The package has three layers; the engine imports nothing from the other two.

The engine, what a learner reads beside chapters 01–07:

* `backend`      — NumPy on the CPU or CuPy on a GPU, one code path for both
* `functional`   — hand-derived forward/backward pairs for every layer (chapters 02–05);
  `functional.fast` holds tuned versions with the same contracts (chapter 12)
* `tensor`       — a small reverse-mode autograd engine that wraps those pairs (chapter 01)
* `nn`, `model`  — modules and the decoder-only `TransformerLM` (chapters 04–05)
* `optim`        — SGD, AdamW, gradient clipping, warmup + cosine schedule (chapter 07)
* `gradcheck`    — finite-difference gradient checks used everywhere

Applications built on the engine: `data` (corpus, tokenizers, batches), `train` (with `config`,
`checkpoint`, `runlock`, `atomic`, `resources`, `progress`), `sample`, `evaluate`, `finetune`,
`scaling` (FLOP counting, fits, sweeps; chapters 09–10), `bench` (with `reference_torch`).

Course tooling: `assignments` (release and grade), `book` (the website), `course` (a student's
copy), `demo`, and the command line `python -m minichinchilla <command>` (`__main__`, `cli`).

Importing the package imports nothing else: the names above load on first use.
"""
from __future__ import annotations

import importlib

# Top-level names and the submodule each is defined in. None of them is a submodule's own name,
# so `minichinchilla.gradcheck`, `minichinchilla.tensor`, ... always stay the modules.
_EXPORTS = {
    "Tensor": "tensor",
    "no_grad": "tensor",
    "ModelConfig": "model",
    "TransformerLM": "model",
}
_SUBMODULES = ("backend", "functional", "tensor", "nn", "model", "optim", "gradcheck",
               "data", "scaling")

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name):
    """Load a top-level name on first use (PEP 562), so `import minichinchilla` stays cheap."""
    if name == "__version__":
        value = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _version():
    """The version in pyproject.toml, its one source: read from the source tree when the package
    runs from a checkout, else from the installed package's metadata."""
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "minichinchilla":
            return project["version"]
    from importlib.metadata import version

    return version("minichinchilla")
