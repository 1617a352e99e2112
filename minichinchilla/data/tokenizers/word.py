"""Word-level tokenizer: one id per word seen often enough in training text.

Pre-tokenisation is one regular expression (`WORD_RE`) that finds, left to right:

* words: a letter or underscore, then letters/digits/underscores, with inner
  apostrophes (``don't``, ``max_size``, ``__init__``, ``utf8``);
* numbers: digits, optionally with one decimal part (``42``, ``3.14``);
* punctuation and symbols, a run of one repeated character at a time (``.``, ``(``,
  ``...``, ``--``, and the double backquote that marks code in docstrings).

Whitespace is thrown away, so word-level tokenization is *lossy*: `decode` rebuilds
spacing with simple rules (a space between tokens, none before ``.,;:!?)]}%`` and none
after ``([{``), newlines are lost, and rare words become ``<unk>``. Those three losses
are exactly what byte-level BPE (`bpe.py`) fixes.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from minichinchilla.data.tokenizers.base import iter_texts
from minichinchilla.data.tokenizers.vocab import VocabularyTokenizer, build_vocabulary

WORD_RE = re.compile(r"[^\W\d]\w*(?:'\w+)*|\d+(?:\.\d+)?|([^\w\s])\1*")
_NO_SPACE_BEFORE = set(".,;:!?)]}%")
_NO_SPACE_AFTER = set("([{")


def pre_tokenize(text: str) -> list[str]:
    """Words, numbers and punctuation runs of ``text``, in order; whitespace dropped."""
    return [m.group(0) for m in WORD_RE.finditer(text)]  # group(0): the whole match


class WordTokenizer(VocabularyTokenizer):
    """Words ↔ ids with a frequency threshold; unseen words become ``<unk>``.

    Special tokens (``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3): see `vocab.py`.
    """

    type_name = "word"
    piece_kind = "words"

    @classmethod
    def train(cls, texts: Any, min_freq: int = 2,
              max_size: int | None = None) -> "WordTokenizer":
        """Build the vocabulary from ``texts`` (a string, or strings or `Document`s).

        Inputs:
            min_freq: keep words seen at least this many times. Words seen once are
                mostly typos, names and numbers; giving each an id wastes embedding rows
                the model can barely train (it sees each one once).
            max_size: at most this many ids, specials included (most frequent kept).
        """
        counts: Counter = Counter()
        for text in iter_texts(texts):
            counts.update(pre_tokenize(text))
        return cls(build_vocabulary(counts, min_freq, max_size))

    def split(self, text: str) -> list[str]:
        return pre_tokenize(text)

    def join(self, pieces: list[str]) -> str:
        out: list[str] = []
        for piece in pieces:
            if out and piece[0] not in _NO_SPACE_BEFORE and out[-1][-1] not in _NO_SPACE_AFTER:
                out.append(" ")
            out.append(piece)
        return "".join(out)
