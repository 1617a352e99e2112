"""What every tokenizer promises, saving/loading, and tokenizer-independent helpers.

A tokenizer maps text to a list of integer ids (``encode``) and back (``decode``).
The model only ever sees ids in ``range(vocab_size)``. All tokenizers save to one JSON
file with a ``"type"`` field, so `load_tokenizer` can rebuild whichever one was saved.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...atomic import write_text_atomically

_REGISTRY: dict[str, type["Tokenizer"]] = {}


class Tokenizer(ABC):
    """Base class: ``encode``, ``decode``, ``vocab_size``, ``save``/``load``.

    Subclasses set ``type_name``, implement `to_dict`/`from_dict`, and are registered
    automatically for `load_tokenizer`. ``pad_id``, ``bos_id``, ``eos_id`` are ``None``
    when a tokenizer has no such token.
    """

    type_name: str = ""
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            _REGISTRY[cls.type_name] = cls

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids; every id from `encode` is < vocab_size."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text → ids."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Ids → text."""

    def out_of_vocabulary(self, text: str) -> list[str]:
        """The pieces of ``text`` that `encode` maps to ``<unk>`` (each occurrence, in order).

        Empty for byte-level BPE, which can spell any text.
        """
        return []

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the tokenizer, as JSON-able data (no "type")."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tokenizer":
        """Inverse of `to_dict`."""

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (atomically: temporary file, then rename)."""
        path = Path(path)
        text = json.dumps({"type": self.type_name, **self.to_dict()}, ensure_ascii=False)
        write_text_atomically(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Read a tokenizer saved by `save`; checks the file holds this class's type."""
        tokenizer = load_tokenizer(path)
        if not isinstance(tokenizer, cls):
            raise ValueError(f"{str(path)!r} holds a {type(tokenizer).__name__}, "
                             f"not a {cls.__name__}")
        return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load any saved tokenizer, choosing the class from the file's ``"type"`` field."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"tokenizer file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a tokenizer JSON file: {err}") from None
    kind = data.pop("type", None) if isinstance(data, dict) else None
    if kind not in _REGISTRY:
        raise ValueError(f"{str(path)!r} has tokenizer type {kind!r}; "
                         f"known types: {sorted(_REGISTRY)}")
    return _REGISTRY[kind].from_dict(data)


def iter_texts(texts: Any) -> Iterable[str]:
    """Accept one string, or an iterable of strings or `Document`s; yield strings."""
    if isinstance(texts, str):
        yield texts
        return
    for item in texts:
        yield item if isinstance(item, str) else item.text


def encode_documents(tokenizer: Tokenizer, texts: Iterable[str]) -> np.ndarray:
    """Encode documents into one token stream for language modelling.

    Documents are joined with the tokenizer's end-of-document id (``eos_id``) after each
    one, so the model learns where a document stops and never reads two documents as one
    sentence. Tokenizers without ``eos_id`` just concatenate.

    Inputs:
        tokenizer: any `Tokenizer`.
        texts: document texts.
    Returns:
        ids: (N,) int64.
    """
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text))
        ids.extend(eos)
    return np.asarray(ids, dtype=np.int64)  # (N,)


def bytes_per_token(tokenizer: Tokenizer, texts: Iterable[str]) -> float:
    """Compression ratio: UTF-8 bytes of ``texts`` divided by the number of tokens.

    Higher means each token carries more text, so a fixed context window (and a fixed
    token budget, as in Chinchilla's D) covers more text. Bytes, not characters, so the
    number is comparable across tokenizers and languages.
    """
    n_bytes = n_tokens = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tokenizer.encode(text))
    if n_tokens == 0:
        raise ValueError("bytes_per_token needs at least one non-empty text")
    return n_bytes / n_tokens
