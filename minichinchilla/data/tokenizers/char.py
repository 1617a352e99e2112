"""Character-level tokenizer: one id per Unicode character (code point).

The simplest possible tokenizer: a vocabulary of a few hundred characters, and any
text made of seen characters round-trips exactly. The price is length: every
character is a token, so a context window of T tokens sees only T characters.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from minichinchilla.data.tokenizers.base import iter_texts
from minichinchilla.data.tokenizers.vocab import VocabularyTokenizer, build_vocabulary


class CharTokenizer(VocabularyTokenizer):
    """Characters ↔ ids; unseen characters become ``<unk>``. Specials: see `vocab.py`."""

    type_name = "char"
    piece_kind = "characters"

    @classmethod
    def train(cls, texts: Any, min_freq: int = 1,
              max_size: int | None = None) -> "CharTokenizer":
        """Build the vocabulary from ``texts`` (a string, or strings or `Document`s).

        Inputs:
            min_freq: keep characters seen at least this many times.
            max_size: at most this many ids, specials included (most frequent kept).
        """
        counts: Counter = Counter()
        for text in iter_texts(texts):
            counts.update(text)
        return cls(build_vocabulary(counts, min_freq, max_size))

    def split(self, text: str) -> list[str]:
        return list(text)

    def join(self, pieces: list[str]) -> str:
        return "".join(pieces)
