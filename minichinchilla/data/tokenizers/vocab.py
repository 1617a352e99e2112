"""Shared machinery of tokenizers with an explicit vocabulary (word- and character-level).

Text is split into *pieces* (words or characters); each piece with an entry in the
vocabulary gets its id, every other piece gets ``<unk>``. The first four ids are the
special tokens, in this order, so that padding is always id 0:

    0 ``<pad>``  fills short sequences in a batch (`pad_batch`); never a real token
    1 ``<unk>``  any piece not in the vocabulary
    2 ``<bos>``  beginning of a document (optional, ``add_bos=True``)
    3 ``<eos>``  end of a document; `encode_documents` puts it between documents
"""
from __future__ import annotations

import warnings
from abc import abstractmethod
from collections import Counter
from typing import Any, Iterable

from minichinchilla.data.tokenizers.base import Tokenizer

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def build_vocabulary(counts: Counter, min_freq: int, max_size: int | None) -> list[str]:
    """Specials, then pieces seen at least ``min_freq`` times, most frequent first.

    Ties are broken alphabetically so the same text always gives the same ids.
    ``max_size`` counts the specials too.
    """
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    if max_size is not None and max_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                         f"got {max_size}")
    kept = sorted((p for p, c in counts.items() if c >= min_freq and p not in SPECIAL_TOKENS),
                  key=lambda p: (-counts[p], p))
    if max_size is not None:
        kept = kept[: max_size - len(SPECIAL_TOKENS)]
    return list(SPECIAL_TOKENS) + kept


class VocabularyTokenizer(Tokenizer):
    """A tokenizer defined by a list of pieces: id i ↔ ``tokens[i]``.

    Subclasses say how text splits into pieces (`split`) and how pieces join back (`join`).
    """

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID
    piece_kind = "pieces"  # "words" / "characters", used in the unknown-piece warning

    def __init__(self, tokens: list[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        self.tokens = list(tokens)
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}

    @abstractmethod
    def split(self, text: str) -> list[str]:
        """Text → pieces (before the vocabulary lookup)."""

    @abstractmethod
    def join(self, pieces: list[str]) -> str:
        """Pieces → text."""

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False,
               warn_unknown: bool = False) -> list[int]:
        """Text → ids; pieces not in the vocabulary become ``<unk>`` (id 1).

        Inputs:
            text: any string.
            add_bos, add_eos: put ``<bos>`` first / ``<eos>`` last.
            warn_unknown: issue a `UserWarning` naming how many pieces became ``<unk>``.
        """
        ids = [self.token_to_id.get(p, UNK_ID) for p in self.split(text)]
        if warn_unknown:
            unknown = self.out_of_vocabulary(text)
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:5])
                warnings.warn(f"text contains {len(unknown)} {self.piece_kind} not in the "
                              f"vocabulary, mapped to <unk> ({shown})", stacklevel=2)
        return [BOS_ID] * add_bos + ids + [EOS_ID] * add_eos

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids → text. ``<unk>`` is written as ``"<unk>"``; ``<pad>``, ``<bos>``, ``<eos>``
        are dropped unless ``skip_special_tokens=False``."""
        pieces = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"id {i} is outside the vocabulary (vocab_size={self.vocab_size})")
            if skip_special_tokens and i in (PAD_ID, BOS_ID, EOS_ID):
                continue
            pieces.append(self.tokens[i])
        return self.join(pieces)

    def out_of_vocabulary(self, text: str) -> list[str]:
        return [p for p in self.split(text) if p not in self.token_to_id]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VocabularyTokenizer":
        return cls(data["tokens"])
