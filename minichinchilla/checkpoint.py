"""Checkpoints: save a run so that it can be resumed exactly, sampled from or fine-tuned.

A checkpoint is the folder ``RUN/ckpt/``:

    state.json            step, data-RNG state, train config, model config, optimiser scalars,
                          the names of the two array files below  <- written LAST: the commit
    model-000300.npz      parameters (name -> float32 array)
    optim-000300.npz      AdamW's moments m and v (one pair per parameter)
    tokenizer.json        the tokenizer the run was trained with

**Safe format.** Arrays are ``.npz`` read with ``allow_pickle=False`` and everything else is
JSON, so loading a checkpoint can never run code (a pickle can).

**Atomic.** Each file is written to a temporary name and renamed with `os.replace`, which
is atomic: a reader sees the old file or the new one, never half of one. The array files of
a new checkpoint get new names, and only once they are complete is ``state.json`` replaced to
point at them. A crash (or ``kill -9``) at any moment therefore leaves either the previous
checkpoint or the new one, both complete. Files that no ``state.json`` names are deleted
after the commit.

`load_run(run_dir)` is the public entry point: ``model, tokenizer, train_config``.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .data import Tokenizer, load_tokenizer
from .model import ModelConfig, TransformerLM

FORMAT_VERSION = 1
STATE_FILE = "state.json"
TOKENIZER_FILE = "tokenizer.json"


# ---- writing ---------------------------------------------------------------------------
def _write_atomically(path: Path, write):
    """Call ``write(file)`` on a temporary file next to `path`, flush it to disk, rename it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj):
    _write_atomically(path, lambda f: f.write(json.dumps(obj, indent=1).encode("utf-8")))


def _split_optimizer_state(optimizer):
    """AdamW.state_dict() -> (arrays for the .npz, JSON-able scalars)."""
    arrays, scalars = {}, {}
    for key, value in optimizer.state_dict().items():
        if hasattr(value, "shape"):
            arrays[key] = np.asarray(value)
        else:
            scalars[key] = value
    return arrays, scalars


def save_checkpoint(ckpt_dir, *, model, optimizer, step: int, rng: np.random.Generator,
                    train_config: TrainConfig, tokenizer: Tokenizer, extra: dict | None = None) -> Path:
    """Write a complete checkpoint into `ckpt_dir` atomically; return the state.json path.

    Inputs:
        model, optimizer: their state dicts are saved (arrays copied to host memory).
        step: the number of optimiser updates done; training resumes at this step.
        rng: the data-order generator; its ``bit_generator.state`` is saved as JSON.
        train_config, tokenizer: saved so the run can be rebuilt without its command line.
        extra: JSON-able bookkeeping (elapsed time, data fingerprint, ...).
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model_file, optim_file = f"model-{step:06d}.npz", f"optim-{step:06d}.npz"
    params = model.state_dict()  # name -> np.ndarray
    optim_arrays, optim_scalars = _split_optimizer_state(optimizer)
    _write_atomically(ckpt_dir / model_file, lambda f: np.savez(f, **params))
    _write_atomically(ckpt_dir / optim_file, lambda f: np.savez(f, **optim_arrays))
    tokenizer.save(ckpt_dir / TOKENIZER_FILE)  # atomic too
    state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "files": {"model": model_file, "optimizer": optim_file, "tokenizer": TOKENIZER_FILE},
        "rng_state": rng.bit_generator.state,  # plain ints and strings: JSON-able
        "train_config": train_config.to_dict(),
        "model_config": model.config.to_dict(),
        "optimizer_scalars": optim_scalars,
        "extra": extra or {},
    }
    _write_json(ckpt_dir / STATE_FILE, state)  # the commit point
    keep = {STATE_FILE, TOKENIZER_FILE, model_file, optim_file}
    for p in ckpt_dir.iterdir():  # older array files and leftovers of interrupted writes
        if p.is_file() and p.name not in keep and (p.suffix in (".npz", ".tmp")):
            p.unlink(missing_ok=True)
    return ckpt_dir / STATE_FILE


# ---- reading ---------------------------------------------------------------------------
def find_checkpoint(run_dir) -> Path:
    """The checkpoint folder of a run: ``RUN/ckpt`` (or `run_dir` itself if it is one)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise ValueError(f"{str(run_dir)!r} is not a directory (expected a run directory)")
    for candidate in (run_dir / "ckpt", run_dir):
        if (candidate / STATE_FILE).exists():
            return candidate
    raise FileNotFoundError(f"no checkpoint in {str(run_dir)!r}: expected "
                            f"{str(run_dir / 'ckpt' / STATE_FILE)!r} (did the run save one yet?)")


def read_state(ckpt_dir) -> dict:
    """The parsed state.json of a checkpoint folder, with a clear error when it is damaged."""
    path = Path(ckpt_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint file {str(path)!r} is truncated or corrupted: {err}") from None
    needed = ("format_version", "step", "files", "rng_state", "train_config", "model_config")
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise ValueError(f"checkpoint file {str(path)!r} is not a minichinchilla checkpoint "
                         f"(missing keys)")
    if state["format_version"] != FORMAT_VERSION:
        raise ValueError(f"checkpoint file {str(path)!r} has format version {state['format_version']}, "
                         f"this code reads version {FORMAT_VERSION}")
    return state


def read_arrays(path) -> dict[str, np.ndarray]:
    """All arrays of an .npz, read eagerly (so a damaged member fails here, naming the file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} is missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ValueError(f"checkpoint file {str(path)!r} is truncated or corrupted "
                         f"({type(err).__name__}: {err})") from None


def load_tokenizer_from(ckpt_dir, state) -> Tokenizer:
    path = Path(ckpt_dir) / state["files"].get("tokenizer", TOKENIZER_FILE)
    try:
        return load_tokenizer(path)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"checkpoint file {str(path)!r} is truncated or corrupted: {err}") from None


def load_model_weights(model, ckpt_dir, state) -> None:
    """Copy the saved parameters into `model`; a shape mismatch names the file and the arrays."""
    path = Path(ckpt_dir) / state["files"]["model"]
    arrays = read_arrays(path)
    try:
        model.load_state_dict(arrays)
    except ValueError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not match the model shape "
                         f"{model.config.to_dict()}:\n{err}") from None


def load_optimizer_state(optimizer, ckpt_dir, state) -> None:
    path = Path(ckpt_dir) / state["files"]["optimizer"]
    merged = {**read_arrays(path), **state.get("optimizer_scalars", {})}
    try:
        optimizer.load_state_dict(merged)
    except ValueError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not match the optimizer: {err}") from None


def restore_rng(state) -> np.random.Generator:
    """A Generator in exactly the saved state (the data order continues where it stopped)."""
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = state["rng_state"]
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"checkpoint RNG state is invalid: {err}") from None
    return rng


def model_config_from(state, ckpt_dir) -> ModelConfig:
    try:
        return ModelConfig.from_dict(state["model_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(Path(ckpt_dir) / STATE_FILE)!r}: bad model config: {err}") from None


def train_config_from(state, ckpt_dir) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["train_config"], f"checkpoint {str(Path(ckpt_dir) / STATE_FILE)!r}")
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(Path(ckpt_dir) / STATE_FILE)!r}: bad train config: {err}") from None


def load_run(run_dir):
    """Load a run's latest checkpoint: ``model, tokenizer, train_config = load_run("runs/x")``.

    The model's parameters are put on the current backend (`minichinchilla.backend`).
    Raises FileNotFoundError (no such run / no checkpoint yet) or ValueError (a truncated or
    corrupted file, named in the message; arrays that do not fit the saved model shape).
    """
    ckpt_dir = find_checkpoint(run_dir)
    state = read_state(ckpt_dir)
    train_config = train_config_from(state, ckpt_dir)
    model_config = model_config_from(state, ckpt_dir)
    tokenizer = load_tokenizer_from(ckpt_dir, state)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(f"checkpoint {str(ckpt_dir)!r}: tokenizer has {tokenizer.vocab_size} tokens "
                         f"but the model's vocab_size is {model_config.vocab_size}")
    model = TransformerLM(model_config, seed=train_config.seed)
    load_model_weights(model, ckpt_dir, state)
    return model, tokenizer, train_config
