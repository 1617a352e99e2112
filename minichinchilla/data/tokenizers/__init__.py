"""Tokenizers: word-level, character-level and byte-level BPE, one JSON format for all.

| tokenizer | vocabulary | unknown text | lossless? |
|---|---|---|---|
| `WordTokenizer` | words seen ≥ min_freq times | ``<unk>`` | no: spacing rebuilt, newlines lost |
| `CharTokenizer` | characters seen in training | ``<unk>`` | on seen characters |
| `ByteBPETokenizer` | 256 bytes + learned merges | impossible | yes, for every string |
"""
from minichinchilla.data.tokenizers.base import (
    Tokenizer,
    bytes_per_token,
    encode_documents,
    load_tokenizer,
)
from minichinchilla.data.tokenizers.bpe import ENDOFTEXT, PRETOKEN_RE, ByteBPETokenizer
from minichinchilla.data.tokenizers.char import CharTokenizer
from minichinchilla.data.tokenizers.vocab import SPECIAL_TOKENS
from minichinchilla.data.tokenizers.word import WORD_RE, WordTokenizer

__all__ = [
    "Tokenizer", "load_tokenizer", "encode_documents", "bytes_per_token",
    "WordTokenizer", "CharTokenizer", "ByteBPETokenizer",
    "SPECIAL_TOKENS", "ENDOFTEXT", "PRETOKEN_RE", "WORD_RE",
]
