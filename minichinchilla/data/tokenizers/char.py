"""Character-level tokenizer: one id per Unicode character (code point).

The simplest possible tokenizer: a vocabulary of a few hundred characters, and any
text made of seen characters round-trips exactly. The price is length: every
character is a token, so a context window of T tokens sees only T characters.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from minichinchilla.data.tokenizers.vocab import VocabularyTokenizer, build_vocabulary


class CharTokenizer(VocabularyTokenizer):
    """Characters ↔ ids; unseen characters become ``<unk>``. Specials: see `vocab.py`."""

    type_name = "char"
    piece_kind = "characters"

    @classmethod
    def train(cls, texts: str | Iterable[str], min_freq: int = 1,
              max_size: int | None = None) -> "CharTokenizer":
        """Build the vocabulary from ``texts`` (one string or many).

        Inputs:
            min_freq: keep characters seen at least this many times.
            max_size: at most this many ids, specials included (most frequent kept).
        """
        texts = [texts] if isinstance(texts, str) else texts
        counts: Counter = Counter()
        for text in texts:
            counts.update(text)
        return cls(build_vocabulary(counts, min_freq, max_size))

    def split(self, text: str) -> list[str]:
        return list(text)

    def join(self, pieces: list[str]) -> str:
        return "".join(pieces)
