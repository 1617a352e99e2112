"""Checkpoints: save a run so that it can be resumed exactly, sampled from or fine-tuned.

A checkpoint is the folder ``RUN/ckpt/``:

    state.json            step, data-RNG state, train config, model config, optimiser scalars,
                          the names of the two array files below  <- written LAST: the commit
    model-000300.npz      parameters (name -> float32 array)
    optim-000300.npz      AdamW's moments m and v (one pair per parameter)
    tokenizer.json        the tokenizer the run was trained with

**Safe format.** Arrays are ``.npz`` read with ``allow_pickle=False`` and everything else is
JSON, so loading a checkpoint can never run code (a pickle can).

**Atomic.** Each file is written by `minichinchilla.atomic.write_atomically` (a temporary
name, fsync, then `os.replace`): a reader sees the old file or the new one, never half of one. The array files of
a new checkpoint get new names, and only once they are complete is ``state.json`` replaced to
point at them. A crash (or ``kill -9``) at any moment therefore leaves either the previous
checkpoint or the new one, both complete. Files that no ``state.json`` names are deleted
after the commit.

`load_run(run_dir)` is the public entry point: ``model, tokenizer, train_config``.
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .atomic import TEMP_SUFFIX, write_atomically, write_json_atomically
from .config import TrainConfig
from .data import Tokenizer, load_tokenizer
from .model import ModelConfig, TransformerLM

FORMAT_VERSION = 1
STATE_FILE = "state.json"
TOKENIZER_FILE = "tokenizer.json"


# ---- writing ---------------------------------------------------------------------------
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
    write_atomically(ckpt_dir / model_file, lambda f: np.savez(f, **params))
    write_atomically(ckpt_dir / optim_file, lambda f: np.savez(f, **optim_arrays))
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
    write_json_atomically(ckpt_dir / STATE_FILE, state)  # the commit point
    keep = {STATE_FILE, TOKENIZER_FILE, model_file, optim_file}
    for p in ckpt_dir.iterdir():  # older array files and leftovers of interrupted writes
        if p.is_file() and p.name not in keep and (p.suffix in (".npz", TEMP_SUFFIX)):
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
    """The parsed state.json of a checkpoint folder, its structure checked.

    Raises ValueError naming the file and the first problem: not JSON, a missing key, a value
    of the wrong type, a negative step, a ``files`` entry that is not a file name inside the
    checkpoint folder (a checkpoint never reads another run's files).
    """
    path = Path(ckpt_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint file {str(path)!r} is truncated or corrupted: {err}") from None
    problem = _state_problem(state)
    if problem:
        raise ValueError(f"checkpoint file {str(path)!r} is not a valid minichinchilla checkpoint: {problem}")
    return state


_STATE_TABLES = ("files", "rng_state", "train_config", "model_config")  # required JSON objects
_OPTIONAL_TABLES = ("optimizer_scalars", "extra")


def _state_problem(state) -> str | None:
    """What is structurally wrong with a parsed state.json, or None."""
    if not isinstance(state, dict):
        return f"expected a JSON object, got {type(state).__name__}"
    missing = [k for k in ("format_version", "step", *_STATE_TABLES) if k not in state]
    if missing:
        return f"missing key(s) {', '.join(map(repr, missing))}"
    if state["format_version"] != FORMAT_VERSION:
        return f"format version {state['format_version']!r}, this code reads version {FORMAT_VERSION}"
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"'step' must be a non-negative integer, got {step!r}"
    for key in _STATE_TABLES + tuple(k for k in _OPTIONAL_TABLES if k in state):
        if not isinstance(state[key], dict):
            return f"{key!r} must be a JSON object, got {type(state[key]).__name__}"
    for role in ("model", "optimizer", "tokenizer"):
        name = state["files"].get(role, TOKENIZER_FILE if role == "tokenizer" else None)
        if not isinstance(name, str) or not name:
            return f"'files.{role}' must be a file name, got {name!r}"
        if Path(name).name != name or name in (".", ".."):
            return (f"'files.{role}' is {name!r}: a checkpoint names files inside its own folder "
                    f"only (no folders, no absolute paths)")
    return None


def checkpoint_file(ckpt_dir, state, role: str) -> Path:
    """The path of ``files.<role>`` ("model", "optimizer", "tokenizer"), inside `ckpt_dir`."""
    return Path(ckpt_dir) / state["files"].get(role, TOKENIZER_FILE)


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
    path = checkpoint_file(ckpt_dir, state, "tokenizer")
    try:
        return load_tokenizer(path)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"checkpoint file {str(path)!r} is truncated or corrupted: {err}") from None


def load_model_weights(model, ckpt_dir, state) -> None:
    """Copy the saved parameters into `model`. Refuses weights that are not finite (a run that
    diverged) and arrays that do not fit the model (the message names the file and arrays)."""
    path = checkpoint_file(ckpt_dir, state, "model")
    arrays = read_arrays(path)
    bad = [k for k, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        raise ValueError(f"checkpoint file {str(path)!r} holds non-finite weights (NaN or inf in "
                         f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the run had diverged; "
                         f"use an earlier checkpoint or train again with a lower --lr")
    try:
        model.load_state_dict(arrays)
    except ValueError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not match the model shape "
                         f"{model.config.to_dict()}:\n{err}") from None


def load_optimizer_state(optimizer, ckpt_dir, state) -> None:
    """Restore the optimiser's moments. Every parameter must have every moment (the same names
    as parameter 0, e.g. ``m`` and ``v``), of its shape and finite, once a step has been taken:
    a file with some moments missing would silently restart them at zero."""
    path = checkpoint_file(ckpt_dir, state, "optimizer")
    arrays = read_arrays(path)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    problem = _optimizer_problem(arrays, params, step=state["step"])
    if problem:
        raise ValueError(f"checkpoint file {str(path)!r} does not hold a complete optimizer state: {problem}")
    merged = {**arrays, **state.get("optimizer_scalars", {})}
    try:
        optimizer.load_state_dict(merged)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"checkpoint {str(path)!r} does not match the optimizer: {err}") from None


def _optimizer_problem(arrays: dict, params: list, step: int) -> str | None:
    """What is missing or wrong in the optimiser arrays ``"<param index>.<moment>"``, or None."""
    moments = sorted({key.split(".", 1)[1] for key in arrays if "." in key})
    if step > 0 and not moments:
        return f"no moments saved, but the run is at step {step}"
    for key in arrays:
        index = key.split(".", 1)[0]
        if "." not in key or not index.isdigit() or int(index) >= len(params):
            return f"unexpected array {key!r} (the model has {len(params)} parameters)"
    for i, p in enumerate(params):
        for name in moments:
            a = arrays.get(f"{i}.{name}")
            if a is None:
                return (f"moment {i}.{name} is missing ({len(params)} parameters x "
                        f"{len(moments)} moments {moments} expected)")
            if tuple(a.shape) != tuple(p.shape):
                return f"moment {i}.{name} has shape {tuple(a.shape)}, its parameter {tuple(p.shape)}"
            if not np.isfinite(a).all():
                return f"moment {i}.{name} is not finite"
    return None


def check_configs_agree(ckpt_dir, train_config: TrainConfig, model_config: ModelConfig) -> None:
    """The saved model config must be the one the saved train config describes: an edited
    ``n_heads`` (same shapes, different model) is refused instead of silently loaded."""
    expected = train_config.model_config(model_config.vocab_size).to_dict()
    saved = model_config.to_dict()
    differ = [k for k in _SHAPE_KEYS if k in expected and k in saved and expected[k] != saved[k]]
    if differ:
        raise ValueError(f"checkpoint file {str(Path(ckpt_dir) / STATE_FILE)!r}: its model config and "
                         f"train config disagree on " + ", ".join(
                             f"{k} ({saved[k]!r} vs {expected[k]!r})" for k in differ))


_SHAPE_KEYS = ("seq_len", "d_model", "n_layers", "n_heads", "d_ff", "norm", "activation",
               "tie_embeddings", "pos_encoding")


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
    corrupted file, named in the message; arrays that do not fit the saved model shape;
    non-finite weights).
    """
    ckpt_dir = find_checkpoint(run_dir)
    state = read_state(ckpt_dir)
    train_config = train_config_from(state, ckpt_dir)
    model_config = model_config_from(state, ckpt_dir)
    check_configs_agree(ckpt_dir, train_config, model_config)
    tokenizer = load_tokenizer_from(ckpt_dir, state)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(f"checkpoint {str(ckpt_dir)!r}: tokenizer has {tokenizer.vocab_size} tokens "
                         f"but the model's vocab_size is {model_config.vocab_size}")
    model = TransformerLM(model_config, seed=train_config.seed)
    load_model_weights(model, ckpt_dir, state)
    return model, tokenizer, train_config
