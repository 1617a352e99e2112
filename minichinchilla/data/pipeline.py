"""The pretraining data pipeline, one function per stage (chapters/06-data-tokenisation.md).

    documents, origin = load_corpus(cfg.data)                      # built-in corpus or .txt files
    documents = clean_for_pretraining(documents, builtin=cfg.data is None)   # clean, hold out
    train_docs, val_docs, how = split_train_val(documents, cfg.val_fraction)
    tokenizer, note = train_tokenizer(cfg.tokenizer, cfg.vocab_size, train_docs)
    train_ids, val_ids = tokenize_splits(tokenizer, train_docs, val_docs)   # (N_train,), (N_val,)

`prepare_data(cfg)` runs them in that order and returns a `RunData`; the training command,
`eval` and the fine-tuning hold-out check (`minichinchilla.finetune.holdout`) all call these
same functions, so they see the same documents. `cfg` is anything with the `TrainConfig`
fields ``data, val_fraction, tokenizer, vocab_size, batch_size, seq_len``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .builtin_corpus import cache_dir, load_builtin_documents
from .cleaning import clean_documents
from .documents import Document, load_text_documents
from .heldout import exclude_heldout
from .split import split_documents
from .tokenizers import ByteBPETokenizer, CharTokenizer, WordTokenizer, encode_documents, load_tokenizer

SPLIT_SEED = 0  # the validation documents do not depend on the run's seed: runs stay comparable
MIN_DOCS_FOR_DOC_SPLIT = 10  # fewer documents (e.g. one .txt file) are split by position instead
WORD_MIN_FREQ = 2  # a word seen once is <unk> in the word tokenizer (it could not be learned)


@dataclass
class RunData:
    """What a run trains and validates on."""

    tokenizer: object
    train_ids: np.ndarray  # (N_train,) int64
    val_ids: np.ndarray  # (N_val,) int64
    fingerprint: str  # sha256 of the cleaned train and validation text
    description: str  # one line for the terminal
    tokenizer_note: str  # "trained", "cached PATH" or "from checkpoint"
    val_bytes: int = 0  # UTF-8 bytes of the validation text itself (for bits per byte)


# ---- the stages, in order -----------------------------------------------------------------
def load_corpus(data=None) -> tuple[list[Document], str]:
    """(documents, origin): the built-in corpus when `data` is None, else a .txt file or folder."""
    if data is None:
        return load_builtin_documents(), "built-in corpus"
    return load_text_documents(data), repr(data)


def clean_for_pretraining(documents, builtin: bool) -> list[Document]:
    """Clean; on the built-in corpus also drop the fine-tuning tasks' validation and test
    documents, so fine-tuning is measured on text the language model has never seen."""
    documents, _ = clean_documents(documents)
    return exclude_heldout(documents) if builtin else documents


def split_train_val(documents, val_fraction: float):
    """(train_docs, val_docs, how): whole documents held out, or — for fewer than
    `MIN_DOCS_FOR_DOC_SPLIT` documents — the last `val_fraction` of the text."""
    if len(documents) >= MIN_DOCS_FOR_DOC_SPLIT:
        train_docs, val_docs = split_documents(documents, val_fraction, seed=SPLIT_SEED)
        return train_docs, val_docs, f"{len(train_docs)} train / {len(val_docs)} val documents"
    train_docs, val_docs = _split_by_position(documents, val_fraction)
    return train_docs, val_docs, (f"{len(documents)} document(s), last {val_fraction:.0%} of the "
                                  f"text held out")


def train_tokenizer(kind: str, vocab_size: int, train_docs):
    """The tokenizer of `kind` trained on the training split, or loaded from the cache.

    The cache key is (kind, vocab_size, hash of the training text), so any change of corpus
    or settings trains a new one. Returns (tokenizer, note).
    """
    train_hash = corpus_hash(d.text for d in train_docs)
    path = cache_dir() / "tokenizers" / f"{kind}-{vocab_size}-{train_hash[:16]}.json"
    if path.exists():
        try:
            return load_tokenizer(path), f"cached {path}"
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache file: train again
    texts = [d.text for d in train_docs]
    if kind == "bpe":
        tokenizer = ByteBPETokenizer.train(texts, vocab_size=vocab_size)
    elif kind == "char":
        tokenizer = CharTokenizer.train(texts, max_size=vocab_size)
    else:
        tokenizer = WordTokenizer.train(texts, min_freq=WORD_MIN_FREQ, max_size=vocab_size)
    try:
        tokenizer.save(path)
    except OSError:
        pass  # a read-only cache must not stop training
    return tokenizer, "trained"


def tokenize_splits(tokenizer, train_docs, val_docs):
    """(train_ids, val_ids): each split as one token stream, documents ended by end-of-text."""
    train_ids = encode_documents(tokenizer, (d.text for d in train_docs))  # (N_train,)
    val_ids = encode_documents(tokenizer, (d.text for d in val_docs))  # (N_val,)
    return train_ids, val_ids


# ---- all of it ----------------------------------------------------------------------------
def prepare_data(cfg, tokenizer=None) -> RunData:
    """Load -> clean (and hold out) -> split -> tokenizer (trained unless given) -> token streams.

    Raises ValueError for a missing, empty, binary or non-UTF-8 data path (the message names
    the file and byte offset) and for splits too small for one batch.
    """
    documents, origin = load_corpus(cfg.data)
    documents = clean_for_pretraining(documents, builtin=cfg.data is None)
    if not documents:
        raise ValueError(f"data {origin} has no text left after cleaning")
    train_docs, val_docs, how = split_train_val(documents, cfg.val_fraction)
    note = "from checkpoint"
    if tokenizer is None:
        tokenizer, note = train_tokenizer(cfg.tokenizer, cfg.vocab_size, train_docs)
    train_ids, val_ids = tokenize_splits(tokenizer, train_docs, val_docs)
    _check_split_sizes(origin, len(train_ids), len(val_ids), cfg.batch_size, cfg.seq_len)
    fingerprint = corpus_hash([corpus_hash(d.text for d in train_docs)] + [d.text for d in val_docs])
    description = f"data: {origin}, {how}; {len(train_ids):,} train / {len(val_ids):,} val tokens"
    val_bytes = sum(len(d.text.encode("utf-8")) for d in val_docs)
    return RunData(tokenizer, train_ids, val_ids, fingerprint, description, note, val_bytes)


def corpus_hash(texts) -> str:
    """sha256 of the texts, each followed by a NUL (so ["ab", "c"] and ["a", "bc"] differ)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _split_by_position(documents, val_fraction):
    """Few documents (one file): hold out the last `val_fraction` of the text, cut at a line break."""
    text = "\n\n".join(d.text for d in documents)
    cut = int(len(text) * (1.0 - val_fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline if newline > 0 else cut
    train, val = text[:cut].strip(), text[cut:].strip()
    if not train or not val:
        raise ValueError(f"the data is too small to split into training and validation text "
                         f"({len(text)} characters)")
    source = documents[0].source
    return [Document(train, source)], [Document(val, source)]


def _check_split_sizes(origin, n_train, n_val, batch_size, seq_len):
    need = batch_size * seq_len + 1
    if n_train < need:
        raise ValueError(f"the training split of {origin} has {n_train} tokens, fewer than one "
                         f"batch needs (batch_size * seq_len + 1 = {need}); use more text or a smaller "
                         f"--batch-size / --seq-len")
    if n_val < seq_len + 1:
        raise ValueError(f"the validation split of {origin} has {n_val} tokens, fewer than one "
                         f"row needs (seq_len + 1 = {seq_len + 1}); use more text, a larger "
                         f"--val-fraction or a smaller --seq-len")
