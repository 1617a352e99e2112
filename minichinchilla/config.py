"""`TrainConfig`: everything that defines a pretraining run, in one dataclass.

A run's configuration comes from three layers, each overriding the one before:

    defaults (this file)  <  a JSON or TOML file (--config run.toml)  <  command-line flags (--lr 1e-3)

Every key is checked: an unknown key or a value of the wrong type is an error that names
the key, never a silent default. The whole config is saved in every checkpoint, so a run
can always be resumed, sampled from and evaluated exactly as it was trained.

Example ``run.toml`` (flat keys, the field names below)::

    tokenizer = "bpe"
    vocab_size = 1024
    d_model = 128
    max_steps = 600
    lr = 3e-3
"""
from __future__ import annotations

import json
import math
import sys
import tomllib
import types
import typing
import warnings
from dataclasses import InitVar, asdict, dataclass, field, fields
from pathlib import Path

from .model import ModelConfig
from .nn import FEED_FORWARDS

DEFAULT_MAX_STEPS = 500  # used when neither max_steps nor token_budget is given
DEFAULT_SEQ_LEN = 128
CONTEXT_LEN_DEPRECATED = "context_len / --context-len is deprecated: it is an alias of seq_len / --seq-len"

CHOICES = {
    "tokenizer": ("bpe", "char", "word"),
    "norm": ("layernorm", "rmsnorm"),
    "activation": tuple(FEED_FORWARDS),
    "pos_encoding": ("learned", "rope"),
    "backend": ("numpy", "cupy", "auto"),
}


def _field(default, help: str = ""):
    """A config field with its help text (the --flag's help), written once, here."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """One pretraining run. The defaults train a ~1M-parameter model on the built-in corpus
    (`python -m minichinchilla train`; README, Quickstart, for the time it takes)."""

    # ---- data and tokenizer ----
    data: str | None = _field(None, "a UTF-8 .txt file or a folder of them; omit for the built-in corpus")
    val_fraction: float = _field(0.1, "share of documents held out for validation")
    tokenizer: str = _field("bpe", "byte-level BPE, characters or words")
    vocab_size: int = _field(1024, "BPE: total vocabulary; char/word: largest vocabulary kept")
    # ---- model shape (see ModelConfig) ----
    d_model: int = _field(128, "width of the residual stream")
    n_layers: int = _field(4, "transformer blocks")
    n_heads: int = _field(4, "attention heads (must divide d_model)")
    d_ff: int | None = _field(None, "FFN width; none = the activation's default (4 * d_model; swiglu: 8/3 * d_model, a multiple of 8)")
    norm: str = _field("layernorm")
    activation: str = _field("gelu")
    pos_encoding: str = _field("learned")
    tie_embeddings: bool = _field(True, "true/false: share the input embedding with the output layer")
    # ---- batches and horizon ----
    batch_size: int = _field(16, "rows per batch")
    seq_len: int = _field(DEFAULT_SEQ_LEN, "the model's context: tokens per training row (and the longest sample "
                               "context)")
    max_steps: int | None = _field(None, "the run's horizon: the cosine schedule ends exactly here "
                                         f"(default {DEFAULT_MAX_STEPS} when token_budget is not given)")
    token_budget: int | None = _field(None, "alternative horizon: ceil(token_budget / (batch_size * "
                                            "seq_len)) steps")
    # ---- optimiser and schedule ----
    lr: float = _field(3e-3, "peak learning rate")
    min_lr_ratio: float = _field(0.1, "the cosine decays to this fraction of lr (Chinchilla: 10x decay)")
    warmup_steps: int = _field(30, "linear warm-up (capped at half the run)")
    weight_decay: float = _field(0.1, "AdamW decay on matrices (not on norms and biases)")
    beta1: float = _field(0.9, "AdamW's first-moment decay")
    beta2: float = _field(0.95, "AdamW's second-moment decay")
    grad_clip: float = _field(1.0, "clip the global gradient norm to this; 0 = off")
    # ---- evaluation, sampling, reproducibility ----
    eval_interval: int = _field(100, "evaluate and checkpoint every N steps (and at 0 and the end)")
    eval_batches: int = _field(8, "batches per loss estimate; 0 = the whole validation split")
    seed: int = _field(0, "model initialisation, data order and the final sample")
    backend: str = _field("numpy", "array library: NumPy, CuPy (a CUDA GPU) or whichever is available")
    sample_tokens: int = _field(200, "length of the sample printed at the end; 0 = none")
    sample_prompt: str = _field("", "prompt of that sample; empty = a new document")
    # Deprecated alias of seq_len (it once meant a model context longer than the training rows).
    context_len: InitVar[int | None] = None

    def __post_init__(self, context_len=None):
        if context_len is not None:
            context_len = _check_type("context_len", context_len, int)
            warnings.warn(CONTEXT_LEN_DEPRECATED, FutureWarning, stacklevel=3)
            if self.seq_len not in (context_len, DEFAULT_SEQ_LEN):
                raise ValueError(f"context_len ({context_len}) is a deprecated alias of seq_len "
                                 f"({self.seq_len}); give seq_len only")
            self.seq_len = context_len
        self.validate()

    # ---- checks ----------------------------------------------------------------------
    def validate(self):
        """Check every value; raise TypeError (wrong type) or ValueError (bad value) naming the key."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, _check_type(f.name, getattr(self, f.name), hints[f.name]))
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"config key {_flagged(key)} must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("vocab_size", "d_model", "n_layers", "n_heads", "batch_size", "seq_len",
                    "eval_interval", "d_ff", "max_steps", "token_budget"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"config key {_flagged(key)} must be a positive integer, got {value}")
        for key in ("warmup_steps", "eval_batches", "sample_tokens", "seed"):
            if getattr(self, key) < 0:
                raise ValueError(f"config key {_flagged(key)} must be >= 0, got {getattr(self, key)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"config key {_flagged('lr')} must be a positive number, got {self.lr}")
        for key in ("weight_decay", "grad_clip"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"config key {_flagged(key)} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"config key {_flagged('min_lr_ratio')} must be in [0, 1], got {self.min_lr_ratio}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"config key {_flagged(key)} must be in [0, 1), got {getattr(self, key)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"config key {_flagged('val_fraction')} must be in (0, 1), got {self.val_fraction}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.data is not None and not self.data.strip():
            raise ValueError("config key 'data' is an empty path (leave it out for the built-in corpus)")
        if self.max_steps is not None and self.token_budget is not None:
            if self.max_steps != self._steps_for_budget():
                raise ValueError(f"give max_steps or token_budget, not both (max_steps={self.max_steps}, "
                                 f"token_budget={self.token_budget} = {self._steps_for_budget()} steps)")

    def _steps_for_budget(self):
        return math.ceil(self.token_budget / (self.batch_size * self.seq_len))

    # ---- derived values ----------------------------------------------------------------
    @property
    def horizon(self) -> int:
        """The run's length in optimiser steps, fixed when the run starts."""
        if self.max_steps is not None:
            return self.max_steps
        if self.token_budget is not None:
            return self._steps_for_budget()
        return DEFAULT_MAX_STEPS

    @property
    def warmup(self) -> int:
        """Warm-up steps actually used: at most half the run, so a short run still decays."""
        return min(self.warmup_steps, self.horizon // 2)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model shape; the vocabulary size comes from the trained tokenizer."""
        return ModelConfig(vocab_size=vocab_size, seq_len=self.seq_len,
                           d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                           d_ff=self.d_ff, norm=self.norm, activation=self.activation,
                           tie_embeddings=self.tie_embeddings, pos_encoding=self.pos_encoding)

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        """Build from a dict; unknown keys are an error naming them and `source`."""
        if not isinstance(data, dict):
            raise TypeError(f"{source} must be a table of key = value pairs, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} | {"context_len"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"known keys: {', '.join(sorted(known))}")
        return cls(**data)


def _flagged(key: str) -> str:
    """``'seed' (--seed)``: a message names the config key and its command-line flag."""
    return f"{key!r} (--{key.replace('_', '-')})"


def _check_type(name, value, hint):
    """Return `value` (ints accepted as floats) or raise TypeError naming the key and types."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:
        if t is type(None):
            continue
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
    wanted = " or ".join("null" if t is type(None) else t.__name__ for t in options)
    raise TypeError(f"config key {_flagged(name)} must be {wanted}, got {type(value).__name__} {value!r}")


def read_config_file(path) -> dict:
    """The key/value table in a ``.json`` or ``.toml`` file (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            with open(path, "rb") as f:
                return tomllib.load(f)
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise TypeError(f"config file {str(path)!r} must hold a JSON object, "
                                f"got {type(data).__name__}")
            return data
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} is not valid {suffix[1:].upper()}: {err}") from None
    raise ValueError(f"config file {str(path)!r}: use a .json or .toml file")


def load_config(path=None, overrides: dict | None = None) -> TrainConfig:
    """Defaults < the file at `path` (JSON or TOML) < `overrides` (e.g. from the command line)."""
    data = {} if path is None else read_config_file(path)
    source = "config" if path is None else f"config file {str(path)!r}"
    TrainConfig.from_dict(data, source)  # report a bad file before any override hides it
    return TrainConfig.from_dict({**data, **(overrides or {})}, source)


_METAVARS = {"data": "PATH", "sample_prompt": "TEXT"}
FIELD_HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}


# ---- command-line flags, one per field --------------------------------------------------
def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parser_for(hint):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    base = next(t for t in options if t is not type(None))
    nullable = type(None) in options
    convert = {bool: _parse_bool, int: int, float: float, str: str}[base]

    def parse(text):
        if nullable and base is not str and text.strip().lower() in ("none", "null"):
            return None
        return convert(text)

    parse.__name__ = base.__name__  # argparse says "invalid int value: 'x'"
    return parse


def add_config_arguments(parser):
    """One flag per TrainConfig field (``--max-steps``, ``--lr`` ...). Flags not given are absent
    from the parsed namespace (default SUPPRESS), so only what the user typed overrides."""
    import argparse

    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("run configuration (override the config file)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        choices = CHOICES.get(f.name)
        meta = "{" + ",".join(choices) + "}" if choices else _METAVARS.get(f.name, _parser_for(hints[f.name]).__name__)
        group.add_argument(flag, dest=f"cfg_{f.name}", type=_parser_for(hints[f.name]),
                           default=argparse.SUPPRESS, choices=choices, metavar=meta,
                           help=f"{FIELD_HELP[f.name]} (default: {f.default!r})".lstrip())
    group.add_argument("--context-len", dest="context_len", type=_parser_for(int), default=None,
                       metavar="int", help="deprecated alias of --seq-len")


def overrides_from_args(namespace, warn=None) -> dict:
    """The config keys the user typed as flags. The deprecated ``--context-len`` becomes
    ``seq_len`` (``warn(message)`` is called once); given beside a different ``--seq-len`` it
    is an error."""
    overrides = {k[4:]: v for k, v in vars(namespace).items() if k.startswith("cfg_")}
    alias = getattr(namespace, "context_len", None)
    if alias is not None:
        if overrides.get("seq_len", alias) != alias:
            raise ValueError(f"--context-len {alias} is a deprecated alias of --seq-len "
                             f"{overrides['seq_len']}; give --seq-len only")
        (warn or _print_warning)(f"warning: {CONTEXT_LEN_DEPRECATED}")
        overrides["seq_len"] = alias
    return overrides


def _print_warning(message):
    print(message, file=sys.stderr)
