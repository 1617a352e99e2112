"""Byte-level BPE (byte-pair encoding), trained from scratch.

**Why bytes.** Every string is a sequence of UTF-8 bytes, and there are only 256
possible bytes. Start the vocabulary with all 256 and *any* text — emoji, Chinese, NUL,
a typo — can be spelled, so this tokenizer never needs ``<unk>`` and
``decode(encode(s)) == s`` for every string.

**Why merges.** Single bytes make sequences long. BPE repeatedly finds the most frequent
adjacent pair of tokens in the training text and adds their concatenation as a new token
(``"t" + "h" → "th"``, later ``"th" + "e" → "the"``). After k merges the vocabulary has
256 + k tokens and common words are one token while rare words fall back to pieces.

**Why pre-tokenise.** Text is first cut into words, numbers, punctuation runs and
whitespace (`PRETOKEN_RE`, the GPT-2 recipe) and merges never cross a cut. Otherwise
BPE would learn tokens like ``"e. T"`` from frequent word endings + sentence starts,
spending vocabulary on accidents of adjacency. A word keeps its leading space
(``" the"``), so spaces cost no extra tokens.

**Why training is fast.** A corpus of 2 MB has ~400k words but only ~30k *distinct* ones.
We count pairs once over distinct words weighted by frequency, then after each merge
update only the words that contain the merged pair, and keep a heap of pair counts
with lazy deletion instead of rescanning all pairs.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from typing import Any, Iterable

from minichinchilla.data.tokenizers.base import Tokenizer, iter_texts

ENDOFTEXT = "<|endoftext|>"
PRETOKEN_RE = re.compile(
    r"'(?:[sdmt]|ll|ve|re)"  # English contractions: 's 't 'd 'm 'll 've 're
    r"| ?[^\W\d_]+"  # an optional space, then letters (\w minus digits and underscore)
    r"| ?\d+"  # an optional space, then digits
    r"| ?(?:[^\s\w]|_)+"  # an optional space, then punctuation and symbols
    r"|\s+(?!\S)"  # whitespace, leaving its last space to start the next word
    r"|\s+"  # whitespace at the end of the text
)  # every character is whitespace, \w or neither, so the pieces always cover the text


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each non-overlapping occurrence of ``pair`` in ``ids``, left to right, by ``new_id``."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(words: list[list[int]], freqs: list[int], num_merges: int) -> list[tuple[int, int]]:
    """Greedy BPE: repeatedly merge the most frequent adjacent pair.

    Inputs:
        words: distinct pre-tokens as byte ids (modified in place into their final tokens).
        freqs: how often each word occurs.
        num_merges: how many merges to learn (fewer if no pairs are left).
    Returns:
        merges: the pairs in the order learned; merge i creates token id 256 + i.
    Ties between equally frequent pairs go to the smaller (left id, right id), so
    training is deterministic.
    """
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> words containing it
    for w, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(w)
    # A max-heap of (count, pair) via negated counts. When a count changes we push the new
    # entry and leave the old one; a popped entry whose count is out of date is skipped.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # stale entry
        new_id = 256 + len(merges)
        merges.append(pair)
        changed = set()
        for w in where.pop(pair):
            old = words[w]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):
                continue  # `where` is lazy too: the pair left this word in an earlier merge
            # Net change of this word's pairs: most pairs are far from the merge and
            # cancel out, so only the few around each merge site touch the global counts.
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for p in zip(old, old[1:]):
                delta[p] -= 1
            for p in zip(new, new[1:]):
                delta[p] += 1
            freq = freqs[w]
            for p, d in delta.items():
                if d:
                    pair_counts[p] += d * freq
                    changed.add(p)
                    if d > 0:
                        where[p].add(w)  # only pairs with the new token can be new here
            words[w] = new
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
    return merges


class ByteBPETokenizer(Tokenizer):
    """Byte-level BPE: lossless on any string, no ``<unk>``.

    Ids: 0–255 the raw bytes; 256 … 256+len(merges)-1 the merges in learned order; then
    the special tokens (by default ``<|endoftext|>``, also ``eos_id``, between documents).
    """

    type_name = "byte_bpe"

    def __init__(self, merges: list[tuple[int, int]],
                 special_tokens: Iterable[str] = (ENDOFTEXT,), pattern: str = PRETOKEN_RE.pattern):
        self.merges = [tuple(m) for m in merges]
        self.special_tokens = list(special_tokens)
        self.pattern = re.compile(pattern)
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}  # pair -> rank
        self.token_bytes = [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            if not (a < len(self.token_bytes) and b < len(self.token_bytes)):
                raise ValueError(f"merge {(a, b)} uses an id not yet defined")
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        first_special = len(self.token_bytes)
        self.special_ids = {s: first_special + k for k, s in enumerate(self.special_tokens)}
        self.token_bytes += [s.encode("utf-8") for s in self.special_tokens]
        self.eos_id = self.special_ids.get(ENDOFTEXT)
        self._cache: dict[str, list[int]] = {}  # pre-token -> ids: words repeat a lot

    @classmethod
    def train(cls, texts: Any, vocab_size: int,
              special_tokens: Iterable[str] = (ENDOFTEXT,)) -> "ByteBPETokenizer":
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from text.

        Inputs:
            texts: a string, or an iterable of strings or `Document`s.
            vocab_size: the total vocabulary size wanted (bytes + merges + specials).
            special_tokens: strings that get an id of their own after the merges.
        Returns:
            the tokenizer (with fewer merges if the text runs out of pairs).
        """
        special_tokens = list(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is smaller than 256 bytes + "
                             f"{len(special_tokens)} special tokens")
        counts: Counter = Counter()
        for text in iter_texts(texts):
            counts.update(PRETOKEN_RE.findall(text))
        words = [list(piece.encode("utf-8")) for piece in counts]
        merges = learn_merges(words, list(counts.values()), num_merges)
        return cls(merges, special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def _encode_piece(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        ids = list(piece.encode("utf-8"))
        # Apply merges in the order they were learned: always the lowest-ranked pair
        # present. That replays training exactly, so a training word encodes to the very
        # tokens training produced for it.
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            ids = merge_pair(ids, pair, 256 + self.ranks[pair])
        if len(self._cache) < 200_000:
            self._cache[piece] = ids
        return ids

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Text → ids. Any string works except one with lone surrogates (not valid Unicode text).

        Inputs:
            allow_special: if True, occurrences of a special token's text (e.g.
                ``"<|endoftext|>"``) become its id; if False (default) they are plain text,
                so user text can never inject a document boundary.
        """
        if allow_special and self.special_tokens:
            alternatives = "|".join(re.escape(s) for s in self.special_tokens)
            ids: list[int] = []
            for k, part in enumerate(re.split(f"({alternatives})", text)):
                ids.extend([self.special_ids[part]] if k % 2 else self.encode(part))
            return ids
        ids = []
        for piece in self.pattern.findall(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids → text. Ids from `encode` always give back the exact text; an arbitrary id
        sequence (e.g. sampled from a model) may cut a multi-byte character, and such bytes
        decode to U+FFFD."""
        try:
            data = b"".join(self.token_bytes[int(i)] for i in ids)
        except IndexError:
            bad = next(int(i) for i in ids if not 0 <= int(i) < self.vocab_size)
            raise ValueError(f"id {bad} is outside the vocabulary (vocab_size={self.vocab_size})") from None
        return data.decode("utf-8", errors="replace")

    def id_to_piece(self, i: int) -> str:
        """A readable form of one token (bytes that are not whole characters show as U+FFFD)."""
        return self.token_bytes[i].decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"merges": [list(m) for m in self.merges], "special_tokens": self.special_tokens,
                "pattern": self.pattern.pattern}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ByteBPETokenizer":
        return cls(data["merges"], data.get("special_tokens", ()), data.get("pattern", PRETOKEN_RE.pattern))
