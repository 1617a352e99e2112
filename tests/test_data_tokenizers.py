"""Tokenizers: round trips (hypothesis), save/load, unknowns, BPE training properties."""
import json
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minichinchilla.data import (
    ENDOFTEXT,
    ByteBPETokenizer,
    CharTokenizer,
    Document,
    WordTokenizer,
    bytes_per_token,
    clean_documents,
    encode_documents,
    load_tokenizer,
)
from minichinchilla.data.builtin_corpus import pydoc_topic_documents
from minichinchilla.data.tokenizers.bpe import PRETOKEN_RE, learn_merges, merge_pair

TEXT = ("The cat sat on the mat. The dog sat on the log, and the cat saw the dog!\n"
        "Don't panic: 42 cats, 3.14 dogs (roughly). max_size = 7")


@pytest.fixture(scope="module")
def pydoc_texts():
    docs, _ = clean_documents(pydoc_topic_documents())  # 0.5 MB of the built-in corpus
    return [d.text for d in docs]


@pytest.fixture(scope="module")
def bpe(pydoc_texts):
    return ByteBPETokenizer.train(pydoc_texts, vocab_size=600)


# ---------------------------------------------------------------- word tokenizer
def test_word_vocabulary_and_specials():
    tok = WordTokenizer.train(TEXT, min_freq=2)
    assert tok.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and tok.pad_id == 0
    assert tok.tokens[4] == "the"  # most frequent first ("The" is a different word)
    assert "mat" not in tok.token_to_id  # seen once < min_freq
    assert WordTokenizer.train(TEXT, min_freq=1, max_size=6).vocab_size == 6
    assert tok.encode("the cat", add_bos=True, add_eos=True)[::3] == [tok.bos_id, tok.eos_id]


def test_word_pre_tokenisation():
    tok = WordTokenizer.train(TEXT, min_freq=1)
    assert tok.split("Don't panic: 3.14 max_size.") == ["Don't", "panic", ":", "3.14", "max_size", "."]
    assert tok.split("``x`` -- wait... 3rd (a)") == ["``", "x", "``", "--", "wait", "...", "3", "rd", "(", "a", ")"]
    dots = WordTokenizer.train("wait... done", min_freq=1)
    assert dots.decode(dots.encode("wait...   done")) == "wait... done"
    assert WordTokenizer.train([Document(TEXT, "doc")], min_freq=1).tokens == tok.tokens


def test_word_unknowns_are_reported():
    tok = WordTokenizer.train(TEXT, min_freq=2)
    assert tok.out_of_vocabulary("the zebra sat on a mat") == ["zebra", "a", "mat"]
    with pytest.warns(UserWarning, match="contains 3 words not in the vocabulary, mapped to <unk>"):
        ids = tok.encode("the zebra sat on a mat", warn_unknown=True)
    assert ids.count(tok.unk_id) == 3
    assert tok.decode(ids) == "the <unk> sat on <unk> <unk>"


def test_word_decode_spacing():
    tok = WordTokenizer.train(TEXT, min_freq=1)
    assert tok.decode(tok.encode("the cat ( roughly ) sat , the dog ! ")) == "the cat (roughly) sat, the dog!"


_KNOWN = ["the", "cat", "sat", "on", "mat", "dog", "Don't", "max_size", "42", "3.14"]


@given(st.lists(st.lists(st.sampled_from(_KNOWN), min_size=1, max_size=8), min_size=1, max_size=4),
       st.sampled_from([".", "!", ",", ""]))
@settings(max_examples=100, deadline=None)
def test_word_round_trip_on_normalised_known_words(sentences, end):
    tok = WordTokenizer.train(TEXT, min_freq=1)
    text = " ".join(" ".join(words) + end for words in sentences)
    assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------- char tokenizer
_SEEN = "abcdefgh ijklmnopé€😀\n\t\x00."


@given(st.text(alphabet=_SEEN))
@settings(max_examples=100, deadline=None)
def test_char_round_trip_on_seen_characters(text):
    tok = CharTokenizer.train(_SEEN)
    assert tok.decode(tok.encode(text)) == text


def test_char_unknown():
    tok = CharTokenizer.train("abc")
    assert tok.vocab_size == 7
    assert tok.encode("abz") == [tok.token_to_id["a"], tok.token_to_id["b"], tok.unk_id]
    assert tok.out_of_vocabulary("xabz") == ["x", "z"]
    with pytest.warns(UserWarning, match="2 characters not in the vocabulary"):
        tok.encode("xabz", warn_unknown=True)


# ---------------------------------------------------------------- byte-level BPE
def test_pretokens_cover_text_and_keep_leading_spaces():
    text = "Hello world,  it's  42_x!\n\n  done\t"
    pieces = PRETOKEN_RE.findall(text)
    assert "".join(pieces) == text
    assert pieces[:4] == ["Hello", " world", ",", " "]


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_pretokens_cover_any_text(text):
    assert "".join(PRETOKEN_RE.findall(text)) == text


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200))  # Cs: surrogates
@settings(max_examples=300, deadline=None)
def test_bpe_round_trip_any_string(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


def test_bpe_round_trip_hard_cases(bpe):
    for text in ["", "\x00", "😀👍🏽 family: 👨‍👩‍👧", "日本語のテキスト", "e\u0301", "\ufeff\u200b", " \n\t "]:
        assert bpe.decode(bpe.encode(text)) == text


def test_bpe_merges_are_ordered_by_frequency():
    # pre-tokens "abc", " abc", " ab", " xy" x2. (a,b) occurs 3x and wins; then
    # (256,c), (sp,256), (sp,x), (x,y) all occur 2x and the smallest pair wins each tie.
    tok = ByteBPETokenizer.train(["abc abc ab xy xy"], vocab_size=256 + 3, special_tokens=())
    a, b, sp, x = map(ord, "ab x")
    assert tok.merges == [(a, b), (sp, x), (sp, 256)]
    assert [tok.id_to_piece(i) for i in (256, 257, 258)] == ["ab", " x", " ab"]
    assert tok.vocab_size == 259


def test_bpe_training_is_deterministic(pydoc_texts, bpe):
    assert ByteBPETokenizer.train(pydoc_texts, vocab_size=600).merges == bpe.merges


def test_bpe_encode_replays_training(pydoc_texts):
    """Encoding a training word gives exactly the tokens training ended with for it."""
    counts = Counter(p for t in pydoc_texts[:40] for p in PRETOKEN_RE.findall(t))
    words = [list(p.encode()) for p in counts]
    merges = learn_merges(words, list(counts.values()), 200)
    tok = ByteBPETokenizer(merges, special_tokens=())
    assert [tok.encode(p) for p in counts] == words


def test_bpe_incremental_counts_match_naive_recount(pydoc_texts):
    """Each merge is the most frequent pair of a from-scratch recount (smallest pair on ties)."""
    counts = Counter(p for t in pydoc_texts[:20] for p in PRETOKEN_RE.findall(t))
    words = [list(p.encode()) for p in counts]
    freqs = list(counts.values())
    merges = learn_merges([w[:] for w in words], freqs, 60)
    for k, merge in enumerate(merges):
        pairs = Counter()
        for w, f in zip(words, freqs):
            for p in zip(w, w[1:]):
                pairs[p] += f
        best = max(pairs.values())
        assert merge == min(p for p, c in pairs.items() if c == best)
        words = [merge_pair(w, merge, 256 + k) for w in words]


def test_bpe_special_token(bpe):
    assert bpe.eos_id == bpe.vocab_size - 1 and bpe.decode([bpe.eos_id]) == ENDOFTEXT
    text = f"one{ENDOFTEXT}two"
    assert bpe.eos_id not in bpe.encode(text)  # plain text by default
    ids = bpe.encode(text, allow_special=True)
    assert ids.count(bpe.eos_id) == 1 and bpe.decode(ids) == text


def test_bpe_compresses_and_trains_fast(pydoc_texts):
    start = time.perf_counter()
    tok = ByteBPETokenizer.train(pydoc_texts, vocab_size=1024)
    seconds = time.perf_counter() - start
    assert seconds < 15, f"training 767 merges on 0.5 MB took {seconds:.1f}s"
    assert bytes_per_token(tok, pydoc_texts[:50]) > 2.5


# ---------------------------------------------------------------- shared behaviour
def _trained(kind):
    if kind == "word":
        return WordTokenizer.train(TEXT, min_freq=1)
    if kind == "char":
        return CharTokenizer.train(TEXT)
    return ByteBPETokenizer.train(TEXT, vocab_size=300)


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_save_load_round_trip(kind, tmp_path):
    tok = _trained(kind)
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
    assert loaded.encode(TEXT) == tok.encode(TEXT)
    assert loaded.to_dict() == tok.to_dict()
    assert type(tok).load(path).to_dict() == tok.to_dict()
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == tok.type_name


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"type": "sentencepiece"}', encoding="utf-8")
    with pytest.raises(ValueError, match="known types"):
        load_tokenizer(tmp_path / "bad.json")
    _trained("char").save(tmp_path / "char.json")
    with pytest.raises(ValueError, match="not a WordTokenizer"):
        WordTokenizer.load(tmp_path / "char.json")


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_decode_rejects_ids_outside_vocab(kind):
    tok = _trained(kind)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_encode_documents_separates_with_eos():
    tok = _trained("bpe")
    docs = [Document("the cat", "a"), Document("the dog", "b")]
    ids = encode_documents(tok, (d.text for d in docs))
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert list(ids) == tok.encode("the cat") + [tok.eos_id] + tok.encode("the dog") + [tok.eos_id]


def test_bytes_per_token_orders_tokenizers():
    texts = [TEXT]
    char = bytes_per_token(_trained("char"), texts)
    assert char == pytest.approx(len(TEXT.encode()) / len(TEXT))
    assert bytes_per_token(_trained("word"), texts) > bytes_per_token(_trained("bpe"), texts) > char
    with pytest.raises(ValueError):
        bytes_per_token(_trained("char"), [""])
