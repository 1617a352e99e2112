"""Checkpoints: exact round trip, atomic commit, safe format, clear errors for damaged files."""
import json
import zipfile

import numpy as np
import pytest

from minichinchilla.checkpoint import (find_checkpoint, load_model_weights, load_optimizer_state, load_run,
                                       read_state, restore_rng, save_checkpoint)
from minichinchilla.config import TrainConfig
from minichinchilla.data import CharTokenizer
from minichinchilla.model import TransformerLM
from minichinchilla.optim import AdamW, param_groups_for_decay

TEXT = "the cat sat on the mat. the dog ran after the cat.\n" * 20


def _setup(seed=0, d_model=16):
    cfg = TrainConfig(d_model=d_model, n_layers=1, n_heads=2, seq_len=8, batch_size=2, seed=seed)
    tok = CharTokenizer.train(TEXT)
    model = TransformerLM(cfg.model_config(tok.vocab_size), seed=seed)
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-2)
    return cfg, tok, model, opt


def _train_steps(model, opt, rng, n, vocab):
    losses = []
    for _ in range(n):
        x = rng.integers(0, vocab, (2, 8))
        y = rng.integers(0, vocab, (2, 8))
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    return losses


def test_round_trip_model_optimizer_rng_continue_identically(tmp_path):
    cfg, tok, model, opt = _setup()
    rng = np.random.default_rng(123)
    _train_steps(model, opt, rng, 3, tok.vocab_size)
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=opt, step=3, rng=rng, train_config=cfg,
                    tokenizer=tok, extra={"elapsed": 1.5})
    expected = _train_steps(model, opt, rng, 3, tok.vocab_size)  # the uninterrupted continuation

    ckpt = find_checkpoint(tmp_path)
    state = read_state(ckpt)
    assert state["step"] == 3 and state["extra"]["elapsed"] == 1.5
    _, _, model2, opt2 = _setup(seed=99)  # different initial weights: all must come from the file
    load_model_weights(model2, ckpt, state)
    load_optimizer_state(opt2, ckpt, state)
    rng2 = restore_rng(state)
    assert _train_steps(model2, opt2, rng2, 3, tok.vocab_size) == expected  # bit for bit

    m, t, c = load_run(tmp_path)
    assert c == cfg and t.tokens == tok.tokens
    assert m.config == model.config


def test_safe_format_only_npz_and_json(tmp_path):
    cfg, tok, model, opt = _setup()
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=opt, step=0, rng=np.random.default_rng(0),
                    train_config=cfg, tokenizer=tok)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["model-000000.npz", "optim-000000.npz", "state.json", "tokenizer.json"]
    for name in files[:2]:
        with np.load(tmp_path / "ckpt" / name, allow_pickle=False) as npz:
            assert all(npz[k].dtype != object for k in npz.files)
    json.loads((tmp_path / "ckpt" / "state.json").read_text())


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """A crash after the new arrays are written but before state.json is committed."""
    import minichinchilla.checkpoint as ck

    cfg, tok, model, opt = _setup()
    rng = np.random.default_rng(0)
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=opt, step=0, rng=rng, train_config=cfg,
                    tokenizer=tok)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    _train_steps(model, opt, rng, 2, tok.vocab_size)

    def crash(*a, **k):
        raise KeyboardInterrupt  # the moment of the kill

    monkeypatch.setattr(ck, "write_json_atomically", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt", model=model, optimizer=opt, step=2, rng=rng, train_config=cfg,
                        tokenizer=tok)
    monkeypatch.undo()
    loaded, _, _ = load_run(tmp_path)
    assert read_state(tmp_path / "ckpt")["step"] == 0
    for k, v in loaded.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # the next successful save removes the orphaned arrays
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=opt, step=4, rng=rng, train_config=cfg,
                    tokenizer=tok)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.npz")) == ["model-000004.npz",
                                                                          "optim-000004.npz"]


@pytest.fixture
def saved(tmp_path):
    cfg, tok, model, opt = _setup()
    save_checkpoint(tmp_path / "run" / "ckpt", model=model, optimizer=opt, step=0,
                    rng=np.random.default_rng(0), train_config=cfg, tokenizer=tok)
    return tmp_path / "run"


def test_missing_run_and_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_run(tmp_path / "empty")


def test_truncated_npz_names_the_file(saved):
    path = saved / "ckpt" / "model-000000.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model-000000.npz.*truncated or corrupted"):
        load_run(saved)


def test_flipped_bytes_are_caught_by_the_zip_crc(saved):
    path = saved / "ckpt" / "model-000000.npz"
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    data = bytearray(path.read_bytes())
    k = info.header_offset + 30 + len(info.filename) + 200  # inside the first array's data
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model-000000.npz.*truncated or corrupted"):
        load_run(saved)


def test_truncated_state_json_names_the_file(saved):
    path = saved / "ckpt" / "state.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(ValueError, match="state.json.*truncated or corrupted"):
        load_run(saved)


def test_missing_array_file(saved):
    (saved / "ckpt" / "optim-000000.npz").unlink()
    (saved / "ckpt" / "model-000000.npz").unlink()
    with pytest.raises(FileNotFoundError, match="model-000000.npz.*missing"):
        load_run(saved)


def test_arrays_that_do_not_fit_the_model_shape(saved):
    path = saved / "ckpt" / "state.json"
    state = json.loads(path.read_text())
    state["model_config"].update(d_model=32, d_ff=128)
    state["train_config"]["d_model"] = 32  # both edited: the configs agree, the arrays do not
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"does not match the model shape(.|\n)*expected \(.*32\)"):
        load_run(saved)


def test_pickled_arrays_are_refused(saved):
    path = saved / "ckpt" / "model-000000.npz"
    np.savez(path, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="model-000000.npz"):
        load_run(saved)
