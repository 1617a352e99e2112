"""The data half of the pretraining pipeline, in the order it runs:

    documents = load_builtin_documents()            # or load_text_documents("my_texts/")
    documents, stats = clean_documents(documents)   # NFC, whitespace, dedup; print(stats)
    train_docs, val_docs = split_documents(documents, val_fraction=0.1, seed=0)
    tokenizer = ByteBPETokenizer.train(train_docs, vocab_size=4096)   # train split only
    train_ids = encode_documents(tokenizer, (d.text for d in train_docs))   # (N,) int64
    for x, y in lm_batches(train_ids, batch_size=8, seq_len=128, rng=rng): ...

`pipeline` runs these stages for a pretraining run (`prepare_data(cfg)`), one function per
stage; `heldout` names the built-in corpus's documents reserved for fine-tuning evaluation.

Modules: `documents` (Document, text files), `builtin_corpus` (pydoc topics + stdlib
docstrings), `cleaning`, `split`, `tokenizers` (word, char, byte BPE), `batching`
(LM windows, padding and ignore-index targets), `heldout`, `pipeline`.
"""
from minichinchilla.data.batching import (
    IGNORE_INDEX,
    TokenStream,
    lm_batches,
    lm_targets_with_ignore,
    pad_batch,
)
from minichinchilla.data.builtin_corpus import (
    build_builtin_documents,
    cache_dir,
    load_builtin_documents,
)
from minichinchilla.data.cleaning import CleanStats, clean_documents, clean_text
from minichinchilla.data.documents import Document, load_text_documents
from minichinchilla.data.heldout import exclude_heldout, heldout_texts
from minichinchilla.data.pipeline import (
    RunData,
    clean_for_pretraining,
    load_corpus,
    prepare_data,
    split_train_val,
    tokenize_splits,
    train_tokenizer,
)
from minichinchilla.data.split import split_documents
from minichinchilla.data.tokenizers import (
    ENDOFTEXT,
    SPECIAL_TOKENS,
    ByteBPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    bytes_per_token,
    encode_documents,
    load_tokenizer,
)

__all__ = [
    "Document", "load_text_documents", "load_builtin_documents", "build_builtin_documents",
    "cache_dir", "CleanStats", "clean_text", "clean_documents", "split_documents",
    "Tokenizer", "WordTokenizer", "CharTokenizer", "ByteBPETokenizer", "load_tokenizer",
    "encode_documents", "bytes_per_token", "SPECIAL_TOKENS", "ENDOFTEXT",
    "TokenStream", "lm_batches", "pad_batch", "lm_targets_with_ignore", "IGNORE_INDEX",
    "exclude_heldout", "heldout_texts", "RunData", "load_corpus", "clean_for_pretraining",
    "split_train_val", "train_tokenizer", "tokenize_splits", "prepare_data",
]
