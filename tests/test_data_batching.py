"""LM windows, sequential evaluation, padding masks and ignore-index targets."""
import numpy as np
import pytest

from minichinchilla.data import IGNORE_INDEX, TokenStream, lm_batches, lm_targets_with_ignore, pad_batch


def test_random_batches_shapes_and_shift(rng):
    tokens = np.arange(1000)  # (N,) id == position, so a window shows where it came from
    x, y = TokenStream(tokens, batch_size=4, seq_len=16).sample_batch(rng)
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # y is x shifted by one
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(16))  # contiguous windows
    assert y.max() <= 999 and x.min() >= 0


def test_random_batches_reach_both_ends(rng):
    stream = TokenStream(np.arange(10), batch_size=1, seq_len=3)
    firsts = {int(stream.sample_batch(rng)[0][0, 0]) for _ in range(300)}
    assert firsts == set(range(7))  # starts 0 .. N - T - 1


def test_resume_from_saved_rng_state():
    tokens = np.arange(500)
    rng = np.random.default_rng(123)
    batches = lm_batches(tokens, 2, 8, rng)
    next(batches)
    state = rng.bit_generator.state  # what a checkpoint stores
    expected = [next(batches) for _ in range(3)]
    resumed = np.random.default_rng()
    resumed.bit_generator.state = state
    got = list(lm_batches(tokens, 2, 8, resumed, num_batches=3))
    for (xe, ye), (xg, yg) in zip(expected, got):
        np.testing.assert_array_equal(xe, xg)
        np.testing.assert_array_equal(ye, yg)


@pytest.mark.parametrize("n, batch_size, seq_len", [(33, 2, 8), (34, 2, 8), (100, 3, 7), (41, 4, 10)])
def test_sequential_batches_score_every_target_once(n, batch_size, seq_len):
    tokens = np.arange(n) * 10  # (N,)
    stream = TokenStream(tokens, batch_size, seq_len)
    scored = []
    for x, y in stream.sequential_batches():
        assert x.shape == y.shape and x.shape[0] <= batch_size and x.shape[1] == seq_len
        keep = y != IGNORE_INDEX
        np.testing.assert_array_equal(y[keep], (x + 10)[keep])
        scored.extend(y[keep].tolist())
    assert scored == tokens[1:].tolist()  # each target once, in order
    assert stream.num_sequential_targets() == n - 1
    no_tail = [y for _, y in stream.sequential_batches(cover_tail=False)]
    assert sum(y.size for y in no_tail) == stream.num_sequential_targets(cover_tail=False)


def test_stream_too_small_names_sizes():
    with pytest.raises(ValueError, match=r"has 32 tokens.*needs batch_size \* seq_len \+ 1 = 4 \* 8 \+ 1 = 33"):
        TokenStream(np.arange(32), batch_size=4, seq_len=8)
    TokenStream(np.arange(33), batch_size=4, seq_len=8)  # exactly one window is enough
    with pytest.raises(ValueError, match="1-D integer"):
        TokenStream(np.zeros((4, 40), dtype=np.int64), 1, 2)
    with pytest.raises(ValueError, match="1-D integer"):
        TokenStream(np.linspace(0, 1, 100), 1, 2)


def test_pad_batch_mask_and_lengths():
    ids, mask, lengths = pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [9, 10, 0]])
    np.testing.assert_array_equal(mask, [[False, False, False], [False, True, True], [False, False, True]])
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    assert ids.dtype == np.int64 and mask.dtype == np.bool_ and lengths.dtype == np.int64


def test_pad_batch_max_len_and_truncation():
    ids, mask, lengths = pad_batch([np.arange(1, 6), [7]], pad_id=-1, max_len=3)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [7, -1, -1]])
    np.testing.assert_array_equal(lengths, [3, 1])
    assert pad_batch([[1, 2]], pad_id=0, max_len=10)[0].shape == (1, 2)  # T = longest when shorter
    with pytest.raises(ValueError, match="sequence 0 has length 5 > max_len=3"):
        pad_batch([np.arange(1, 6), [7]], pad_id=0, max_len=3, truncate=False)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_batch([[1], []], pad_id=0)
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([], pad_id=0)


def test_targets_ignore_padding():
    ids, mask, _ = pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=0)
    targets = lm_targets_with_ignore(ids, mask)
    I = IGNORE_INDEX
    np.testing.assert_array_equal(targets, [[6, 7, I], [I, I, I], [10, I, I]])
    assert targets.dtype == np.int64
    # no padding id is ever a target, and nothing is predicted from a padded position
    assert not (targets[mask] != I).any()
    assert lm_targets_with_ignore(ids, mask, ignore_index=-1)[1, 0] == -1
    with pytest.raises(ValueError, match="same 2-D shape"):
        lm_targets_with_ignore(ids, mask[:, :2])
