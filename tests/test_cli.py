"""`python -m minichinchilla sample` and `eval` on a tiny trained run."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minichinchilla import evaluate, sample
from minichinchilla.__main__ import main as dispatch
from minichinchilla.checkpoint import load_run
from minichinchilla.data import ByteBPETokenizer
from minichinchilla.sample import StreamDecoder, generate_text
from minichinchilla.train import main as train_main, read_log

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat dog sat ran on under a mat table quickly slowly and then".split()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 30-step word-level run on generated sentences."""
    base = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)) + "." for _ in range(400)]
    (base / "text.txt").write_text("\n".join(lines) + "\n")
    out = base / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINICHINCHILLA_CACHE", str(base / "cache"))
        rc = train_main(["--data", str(base / "text.txt"), "--out", str(out), "--tokenizer", "word",
                         "--vocab-size", "100", "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
                         "--batch-size", "4", "--seq-len", "16", "--max-steps", "30", "--eval-interval",
                         "30", "--eval-batches", "2", "--lr", "1e-2", "--quiet", "--sample-tokens", "0"])
    assert rc == 0
    return out


def test_sample_same_seed_same_text(run, capsys):
    argv = ["sample", "--checkpoint", str(run), "--prompt", "the cat", "--max-new-tokens", "20", "--seed", "7"]
    assert dispatch(argv) == 0
    first = capsys.readouterr().out
    assert dispatch(argv) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("the cat ") and len(first.split()) > 10
    assert dispatch(argv[:-1] + ["8"]) == 0
    assert capsys.readouterr().out != first


def test_sample_streams_token_by_token(run):
    model, tok, _ = load_run(run)
    chunks = []
    text = generate_text(model, tok, "the dog", 12, temperature=1.0, top_k=None, seed=1, write=chunks.append)
    assert chunks[0] == "the dog" and len(chunks) >= 12  # the prompt, then one piece per token
    assert "".join(chunks[1:]) == text


def test_unknown_prompt_words_warn_and_map_to_unk(run, capsys):
    assert sample.main(["--checkpoint", str(run), "--prompt", "the zebra xylophones", "--max-new-tokens",
                        "5", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert "2 words of the prompt are not in the vocabulary" in captured.err
    assert "'zebra'" in captured.err and captured.out.startswith("the <unk> <unk>")


def test_stream_decoder_holds_back_partial_utf8():
    tok = ByteBPETokenizer([])  # bytes only: "é" is two tokens
    dec = StreamDecoder(tok, [tok.eos_id])
    first, second = "é".encode()
    assert dec.push([first]) == "" and dec.push([second]) == "é"
    assert dec.push([ord("!")]) == "!" and dec.flush() == ""


def test_eval_prints_loss_and_perplexity(run, capsys):
    assert dispatch(["eval", "--checkpoint", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("step 30: val loss ") and "perplexity" in out and "bits/byte" in out
    m = evaluate.evaluate_run(run, max_batches=2)
    assert m["val_loss"] == pytest.approx(read_log(run)[-1]["val_loss"], rel=1e-6)  # the log's estimate
    assert m["val_ppl"] == pytest.approx(np.exp(m["val_loss"]))


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_errors_for_missing_and_damaged_checkpoints(run, tmp_path, capsys, command):
    assert dispatch([command, "--checkpoint", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: run directory")
    damaged = tmp_path / "damaged"
    (damaged / "ckpt").mkdir(parents=True)
    for p in (run / "ckpt").iterdir():
        (damaged / "ckpt" / p.name).write_bytes(p.read_bytes())
    model_file = next((damaged / "ckpt").glob("model-*.npz"))
    model_file.write_bytes(model_file.read_bytes()[:-50])
    assert dispatch([command, "--checkpoint", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert model_file.name in err and "truncated or corrupted" in err


def test_sample_subprocess_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "minichinchilla", "sample", "--checkpoint", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no checkpoint")
    assert "Traceback" not in proc.stderr


def test_checkpoint_of_another_model_shape_is_refused(run, tmp_path, capsys):
    import json

    other = tmp_path / "other"
    (other / "ckpt").mkdir(parents=True)
    for p in (run / "ckpt").iterdir():
        (other / "ckpt" / p.name).write_bytes(p.read_bytes())
    state = json.loads((other / "ckpt" / "state.json").read_text())
    state["model_config"].update(d_model=64, d_ff=256)  # the arrays are still 32 wide
    state["train_config"]["d_model"] = 64
    (other / "ckpt" / "state.json").write_text(json.dumps(state))
    for command in ("sample", "eval"):
        assert dispatch([command, "--checkpoint", str(other)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: checkpoint") and "does not match the model shape" in err
        assert "shape mismatch" in err and "Traceback" not in err
