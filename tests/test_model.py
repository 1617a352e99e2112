"""The whole TransformerLM: every parameter's gradient by finite differences, generation, state."""
import numpy as np
import pytest

from minichinchilla.gradcheck import numerical_gradient, rel_error
from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.optim import AdamW


def tiny(**kw):
    base = dict(vocab_size=11, seq_len=6, d_model=8, n_layers=2, n_heads=2, dtype="float64")
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("kw", [
    {},
    dict(norm="rmsnorm", activation="relu", tie_embeddings=False, pos_encoding="rope"),
])
def test_every_parameter_gradient(rng, kw):
    model = TransformerLM(tiny(**kw), seed=1)
    # Scale the init up so gradients are not tiny relative to round-off.
    for p in model.parameters():
        p.data = p.data * 10 if p.ndim >= 2 else p.data + 0.1 * rng.standard_normal(p.shape)
    idx = rng.integers(0, 11, (2, 6))
    targets = rng.integers(0, 11, (2, 6))
    targets[1, 2] = -100  # an ignored position
    mask = np.zeros((2, 6), dtype=bool)
    mask[1, 4:] = True

    def loss_value():
        return model(idx, targets, key_padding_mask=mask)[1].data

    model.zero_grad()
    model(idx, targets, key_padding_mask=mask)[1].backward()
    for name, p in model.named_parameters():
        analytic = p.grad.copy()
        original = p.data

        def f(arr):
            p.data = arr
            return loss_value()
        numeric = numerical_gradient(f, original, np.float64(1.0))
        p.data = original
        err = rel_error(analytic, numeric)
        assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_tied_embedding_counted_once():
    cfg = tiny()
    model = TransformerLM(cfg)
    names = [n for n, _ in model.named_parameters()]
    assert names.count("tok_emb.weight") == 1 and len(names) == len(set(names))
    C, V, T, L, F = cfg.d_model, cfg.vocab_size, cfg.seq_len, cfg.n_layers, cfg.d_ff
    per_layer = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * F + F) + (F * C + C)
    expected = V * C + T * C + L * per_layer + 2 * C
    assert model.num_params() == expected
    assert model.num_params(non_embedding=True) == expected - V * C - T * C
    untied = TransformerLM(tiny(tie_embeddings=False))
    assert untied.num_params() == expected + C * V


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_cached_and_uncached_generation_agree(pos):
    model = TransformerLM(tiny(pos_encoding=pos, dtype="float32"), seed=3)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    # 10 new tokens with seq_len 6: the cache is used, then the window slides.
    a = model.generate(prompt, 10, temperature=1.0, top_k=5, seed=7)
    b = model.generate(prompt, 10, temperature=1.0, top_k=5, seed=7, use_cache=False)
    assert a.shape == (2, 13)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :3], prompt)
    c = model.generate(prompt, 10, temperature=1.0, top_k=5, seed=8)
    assert not np.array_equal(a, c)


def test_greedy_generation_is_deterministic():
    model = TransformerLM(tiny(dtype="float32"))
    out1 = model.generate(np.array([[1]]), 5, temperature=0)
    out2 = model.generate(np.array([[1]]), 5, temperature=0, seed=123)
    np.testing.assert_array_equal(out1, out2)


def test_overfits_a_sentence():
    """The stack learns: 150 AdamW steps memorise one short sequence."""
    cfg = ModelConfig(vocab_size=20, seq_len=12, d_model=32, n_layers=2, n_heads=4)
    model = TransformerLM(cfg, seed=0)
    seq = np.array([[3, 7, 1, 9, 4, 4, 12, 0, 5, 8, 2, 11, 6]])
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        model.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    out = model.generate(seq[:, :1], 11, temperature=0)
    np.testing.assert_array_equal(out, seq[:, :12])


def test_float32_stays_float32(rng):
    model = TransformerLM(tiny(dtype="float32"))
    logits, loss = model(rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6)))
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_state_dict_round_trip_and_all_or_nothing():
    a, b = TransformerLM(tiny(), seed=0), TransformerLM(tiny(), seed=1)
    b.load_state_dict(a.state_dict())
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    before = {n: p.data.copy() for n, p in b.named_parameters()}
    bad = TransformerLM(tiny(), seed=2).state_dict()
    bad["blocks.0.attn.qkv_weight"] = bad["blocks.0.attn.qkv_weight"][:, :5]
    del bad["norm_f.bias"]
    bad["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as e:
        b.load_state_dict(bad)
    msg = str(e.value)
    assert "missing keys: norm_f.bias" in msg and "extra.weight" in msg and "blocks.0.attn.qkv_weight" in msg
    for n, p in b.named_parameters():  # nothing was loaded
        np.testing.assert_array_equal(p.data, before[n])


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(vocab_size=10, seq_len=4, d_model=10, n_layers=1, n_heads=3)
    with pytest.raises(ValueError, match="pos_encoding"):
        tiny(pos_encoding="sinusoid")
    for bad in (0, -8, 2.5):
        with pytest.raises(ValueError, match="d_ff"):
            tiny(d_ff=bad)
    model = TransformerLM(tiny())
    with pytest.raises(ValueError, match="exceeds"):
        model(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        model(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="targets"):
        model(np.zeros((1, 3), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_attention_maps_are_the_layers_weights(pos):
    """model.attention_maps gives one (B, NH, T, T) causal distribution per layer, computed on the
    same hidden states the forward uses, and builds no graph."""
    from minichinchilla.functional import attention_weights

    cfg = ModelConfig(vocab_size=11, d_model=8, n_layers=2, n_heads=2, seq_len=6, pos_encoding=pos,
                      dtype="float64")
    model = TransformerLM(cfg, seed=1)
    idx = np.random.default_rng(0).integers(0, 11, (2, 5))
    maps = model.attention_maps(idx)
    assert len(maps) == 2 and all(P.shape == (2, 2, 5, 5) for P in maps)
    for P in maps:
        np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-12)
        assert (P[..., np.triu_indices(5, k=1)[0], np.triu_indices(5, k=1)[1]] == 0).all()
    # Layer 0's map from its own input: embeddings (+ positions), then the first norm.
    x = model.tok_emb.weight.data[idx] + (model.pos_emb.data[:5] if model.pos_emb is not None else 0)
    h = model.blocks[0].norm1(x).data
    a = model.blocks[0].attn
    expected = attention_weights(h, a.qkv_weight.data, a.qkv_bias.data, 2, rope_base=a.rope_base)
    assert rel_error(maps[0], expected) < 1e-12
    # The second layer's map differs: it reads the first block's output.
    assert rel_error(maps[1], maps[0]) > 1e-3


def test_block_is_built_from_the_config():
    """A Block reads every shape from the ModelConfig; the model's blocks are exactly such Blocks."""
    from minichinchilla.nn import Block, FeedForward

    cfg = tiny(norm="rmsnorm", activation="relu", pos_encoding="rope", d_ff=12)
    blk = Block(cfg, rng=np.random.default_rng(0))
    assert isinstance(blk.ffn, FeedForward) and blk.ffn.activation == "relu"
    assert blk.ffn.up_weight.shape == (8, 12) and blk.attn.n_heads == 2
    assert blk.attn.rope_base is not None and blk.norm1.weight.dtype == np.float64
    model = TransformerLM(cfg, seed=0)
    fresh = Block(cfg, rng=np.random.default_rng(0))
    for (n, p), (m, q) in zip(fresh.named_parameters(), model.blocks[0].named_parameters()):
        assert n == m and p.shape == q.shape


def test_one_registry_of_feed_forwards():
    """ModelConfig, Block and the training config all read the variants from nn.FEED_FORWARDS."""
    from minichinchilla.config import CHOICES
    from minichinchilla.nn import FEED_FORWARDS

    assert CHOICES["activation"] == tuple(FEED_FORWARDS)
    for name, kind in FEED_FORWARDS.items():
        cfg = tiny(activation=name)
        assert cfg.d_ff == kind.default_d_ff(cfg.d_model)
    with pytest.raises(ValueError, match="activation must be one of"):
        tiny(activation="tanh")


def test_parameter_names_follow_one_scheme():
    """`weight`/`bias` in a one-matrix module, `<role>_weight`/`<role>_bias` in a module with several."""
    import re

    for kw in ({}, dict(norm="rmsnorm", tie_embeddings=False, pos_encoding="rope")):
        for name, _ in TransformerLM(tiny(**kw)).named_parameters():
            assert name == "pos_emb" or re.fullmatch(r".*\.([a-z]+_)?(weight|bias)", name), name
    names = dict(TransformerLM(tiny()).named_parameters())
    assert {"blocks.0.attn.qkv_weight", "blocks.0.attn.proj_bias", "blocks.1.ffn.up_weight",
            "blocks.1.ffn.down_bias"} <= set(names)


def test_checkpoints_with_the_old_parameter_names_still_load():
    """Keys written before the naming scheme (attn.qkv, ffn.w1, ...) load under the new names;
    an unknown key is still refused."""
    from minichinchilla.nn import LEGACY_KEYS

    a, b = TransformerLM(tiny(), seed=0), TransformerLM(tiny(), seed=1)
    new_to_old = {new: old for old, new in LEGACY_KEYS.items()}
    old_state = {}
    for k, v in a.state_dict().items():
        suffix = next((n for n in new_to_old if k.endswith("." + n)), None)
        old_state[k[:len(k) - len(suffix)] + new_to_old[suffix] if suffix else k] = v
    assert "blocks.1.ffn.w2" in old_state and "blocks.1.ffn.down_weight" not in old_state
    b.load_state_dict(old_state)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    old_state["blocks.0.ffn.w3"] = old_state.pop("blocks.0.ffn.w1")
    with pytest.raises(ValueError, match="blocks.0.ffn.w3"):
        b.load_state_dict(old_state)
