"""Cleaning (NFC, whitespace, control characters, duplicates) and the document split."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minichinchilla.data import CleanStats, Document, clean_documents, clean_text, split_documents


def test_nfc_makes_equal_looking_text_equal():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed
    assert clean_text(decomposed) == composed


def test_whitespace_and_control_characters():
    raw = "  Hello,\t\tworld\x00!\u00a0 \r\nsecond\x1b[0m  line \r\n\r\n\r\n\n\nnew   paragraph  \x07"
    assert clean_text(raw) == "Hello, world!\nsecond[0m line\n\nnew paragraph"


def test_clean_documents_counts():
    docs = [
        Document("Same text.", "a"),
        Document("Same   text.\n", "b"),  # a duplicate once cleaned
        Document(" \x00\x01 \n\n", "c"),  # nothing left
        Document("Bell\x07 here", "d"),
        Document("Untouched.", "e"),
    ]
    kept, stats = clean_documents(docs)
    assert [d.source for d in kept] == ["a", "d", "e"]
    assert [d.text for d in kept] == ["Same text.", "Bell here", "Untouched."]
    assert stats == CleanStats(documents_in=5, documents_out=3, empty_dropped=1,
                               duplicates_dropped=1, changed=1, control_chars_removed=3,
                               chars_in=sum(len(d.text) for d in docs), chars_out=29)
    assert "1 duplicates" in str(stats)


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_cleaning_is_idempotent_and_leaves_no_noise(text):
    once = clean_text(text)
    assert clean_text(once) == once
    assert "  " not in once and "\n\n\n" not in once and "\r" not in once
    assert once == once.strip()


def test_split_is_deterministic_and_disjoint():
    docs = [Document(f"doc {i}", str(i)) for i in range(103)]
    train, val = split_documents(docs, val_fraction=0.1, seed=0)
    assert (train, val) == split_documents(docs, val_fraction=0.1, seed=0)
    assert len(val) == 10 and len(train) == 93
    assert not {d.source for d in train} & {d.source for d in val}
    assert sorted(train + val, key=lambda d: int(d.source)) == docs
    assert train == sorted(train, key=lambda d: int(d.source))  # original order kept
    assert split_documents(docs, 0.1, seed=1)[1] != val


def test_split_edge_cases():
    docs = list(range(5))
    assert split_documents(docs, val_fraction=0.0) == (docs, [])
    assert len(split_documents(docs, val_fraction=0.01)[1]) == 1  # at least one
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(docs, val_fraction=1.0)
    with pytest.raises(ValueError, match="training would be empty"):
        split_documents([Document("only", "x")], val_fraction=0.5)
