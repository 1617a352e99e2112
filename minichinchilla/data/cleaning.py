"""Cleaning: make equal-looking text equal, drop what a model should not learn from.

Why each step:

* **Unicode NFC.** "é" can be one code point (U+00E9) or "e" + a combining accent
  (U+0065 U+0301). They look identical but are different strings, bytes and tokens.
  NFC picks the composed form so the model sees one spelling.
* **Control characters** (Unicode category Cc: NUL, BEL, escape sequences, ...) carry no
  language; they come from terminal logs and broken conversions. Newlines and tabs are
  whitespace, not noise, and are handled next.
* **Whitespace.** ``\\r\\n`` and ``\\r`` become ``\\n``; tabs, non-breaking and other spaces
  become one plain space; runs of spaces collapse; lines are stripped; three or more
  newlines collapse to one blank line. A blank line marks a paragraph, so we keep it.
* **Exact duplicates** are dropped after cleaning (first copy kept): a repeated document
  is over-weighted in training and, if it lands on both sides of the split, leaks
  validation text into training.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

from minichinchilla.data.documents import Document

_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")  # all mean "new line"
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace except newline: tabs, NBSP, ...
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class CleanStats:
    """What `clean_documents` did, for a one-line report.

    Attributes:
        documents_in, documents_out: counts before and after.
        empty_dropped: documents with no text left after cleaning.
        duplicates_dropped: exact copies of an earlier (cleaned) document.
        changed: kept documents whose text cleaning altered.
        control_chars_removed: control characters deleted, over all documents.
        chars_in, chars_out: total characters (code points) before and after.
    """

    documents_in: int = 0
    documents_out: int = 0
    empty_dropped: int = 0
    duplicates_dropped: int = 0
    changed: int = 0
    control_chars_removed: int = 0
    chars_in: int = 0
    chars_out: int = 0

    def __str__(self) -> str:
        return (f"{self.documents_in} documents in, {self.documents_out} kept "
                f"({self.duplicates_dropped} duplicates, {self.empty_dropped} empty dropped; "
                f"{self.changed} changed, {self.control_chars_removed} control chars removed); "
                f"{self.chars_in} -> {self.chars_out} characters")


def _remove_control_chars(text: str) -> tuple[str, int]:
    kept = [c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc"]
    return "".join(kept), len(text) - len(kept)


def clean_text(text: str) -> str:
    """Normalise one text: NFC, newlines, control characters, spaces, blank lines.

    Inputs:
        text: any string.
    Returns:
        the cleaned string (may be ``""``).
    """
    return _clean(text)[0]


def _clean(text: str) -> tuple[str, int]:
    text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)  # before control chars: \x0b and \x0c are Cc too
    text, n_control = _remove_control_chars(text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    return text, n_control


def clean_documents(documents: list[Document]) -> tuple[list[Document], CleanStats]:
    """Clean every document, drop empty ones and exact duplicates (keeping the first).

    Inputs:
        documents: a list of `Document`.
    Returns:
        (cleaned documents in their original order, `CleanStats`).
    """
    stats = CleanStats(documents_in=len(documents))
    seen: set[str] = set()
    kept = []
    for doc in documents:
        text, n_control = _clean(doc.text)
        stats.chars_in += len(doc.text)
        stats.control_chars_removed += n_control
        if not text:
            stats.empty_dropped += 1
            continue
        if text in seen:
            stats.duplicates_dropped += 1
            continue
        seen.add(text)
        stats.changed += text != doc.text
        stats.chars_out += len(text)
        kept.append(replace(doc, text=text))
    stats.documents_out = len(kept)
    return kept, stats
