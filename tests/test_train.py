"""The training run: logging, exact resume (in-process, after SIGINT, after SIGKILL), run
directories, bad input, divergence, and one short run on the built-in corpus."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minichinchilla import train as train_mod
from minichinchilla.checkpoint import load_run, read_state
from minichinchilla.train import main, read_log

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the a model token layer attention cat dog runs jumps over under quickly slowly small "
         "large data python function returns value list of").split()
TINY = ["--tokenizer", "char", "--d-model", "32", "--n-layers", "2", "--n-heads", "2",
        "--batch-size", "4", "--seq-len", "32", "--warmup-steps", "5", "--eval-batches", "4",
        "--sample-tokens", "0", "--quiet"]
LONG = 120  # steps of the runs that a subprocess test interrupts


def make_text(path, n_lines=600, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(5, 12))).capitalize() + "." for _ in range(n_lines)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINICHINCHILLA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return make_text(tmp_path_factory.mktemp("data") / "tiny.txt")


def tiny(text, out, steps=40, interval=10, *extra):
    return ["--data", str(text), *TINY, "--max-steps", str(steps), "--eval-interval", str(interval),
            "--out", str(out), *extra]


def losses(run):
    return {e["step"]: (e["train_loss"], e["val_loss"]) for e in read_log(run)}


def assert_same_losses(a, b):
    assert sorted(a) == sorted(b)
    for step in a:
        np.testing.assert_allclose(a[step], b[step], rtol=1e-5, err_msg=f"step {step}")


@pytest.fixture(scope="module")
def reference(text, tmp_path_factory):
    """An uninterrupted 40-step run."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(tiny(text, out)) == 0
    return out


# ---- one run: what it writes ------------------------------------------------------------
def test_run_writes_log_checkpoint_plot_and_lowers_the_loss(reference):
    log = read_log(reference)
    assert [e["step"] for e in log] == [0, 10, 20, 30, 40]
    for e in log:
        assert {"step", "train_loss", "val_loss", "val_ppl", "lr", "tokens", "elapsed"} <= set(e)
        assert e["val_ppl"] == pytest.approx(np.exp(e["val_loss"]))
        assert e["tokens"] == e["step"] * 4 * 32
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.5
    assert log[-1]["lr"] == pytest.approx(0.1 * 3e-3)  # cosine ends at 10 % exactly at the horizon
    assert read_state(reference / "ckpt")["step"] == 40
    assert (reference / "loss.png").read_bytes()[:4] == b"\x89PNG"
    model, tok, cfg = load_run(reference)
    assert cfg.max_steps == 40 and model.config.vocab_size == tok.vocab_size


def test_schedule_warmup_then_cosine_over_the_horizon(text, tmp_path, monkeypatch):
    seen = []
    original = train_mod.cosine_lr
    monkeypatch.setattr(train_mod, "cosine_lr", lambda *a: seen.append(a) or original(*a))
    assert main(tiny(text, tmp_path / "r", 20, 20)) == 0
    steps = [a[0] for a in seen if a[0] < 20]
    assert sorted(set(steps)) == list(range(20))
    assert all(a[1:] == (20, 3e-3, 5, 0.1) for a in seen)


def test_prints_progress_and_a_sample(text, tmp_path, capsys):
    argv = [a for a in tiny(text, tmp_path / "r", 10, 5) if a not in ("--quiet",)]
    argv[argv.index("--sample-tokens") + 1] = "30"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "step      0 | train" in out and "step     10 |" in out and "tok/s" in out
    assert "parameters" in out and "sample (seed 0" in out and "done: val loss" in out


# ---- resuming -------------------------------------------------------------------------------
def test_resume_matches_the_uninterrupted_run(text, tmp_path, reference):
    out = tmp_path / "r"
    cfg = train_mod.load_config(None, train_mod.overrides_from_args(
        train_mod.build_parser().parse_args(tiny(text, out)[:-2])))
    result = train_mod.run_training(cfg, out, quiet=True, stop_at_step=17)
    assert result.interrupted and read_state(out / "ckpt")["step"] == 17
    # a log line written after the checkpoint (as after a crash) is dropped on resume
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 20, "train_loss": 0.0, "val_loss": 0.0}) + "\n{\"step\": 3")
    assert main(["--resume", str(out), "--quiet"]) == 0
    assert_same_losses(losses(out), losses(reference))
    # resuming a finished run changes nothing
    before = (out / "log.jsonl").read_text()
    assert main(["--resume", str(out), "--quiet", "--out", str(out)]) == 0
    assert (out / "log.jsonl").read_text() == before


def test_resume_refuses_changes_and_other_out(reference, tmp_path, capsys):
    assert main(["--resume", str(reference), "--lr", "0.1"]) == 2
    assert "cannot change 'lr' when resuming" in capsys.readouterr().err
    assert main(["--resume", str(reference), "--d-model", "64"]) == 2
    assert "cannot change 'd_model'" in capsys.readouterr().err
    assert main(["--resume", str(reference), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "name different directories" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _subprocess_env(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["MINICHINCHILLA_CACHE"] = str(tmp_path / "cache")
    return env


@pytest.fixture(scope="module")
def long_reference(text, tmp_path_factory):
    """An uninterrupted 120-step run: long enough to interrupt a subprocess in the middle."""
    out = tmp_path_factory.mktemp("longref") / "run"
    assert main(tiny(text, out, LONG, 20)) == 0
    return out


def _start_and_wait_for_checkpoint(text, out, tmp_path, min_step=20):
    proc = subprocess.Popen([sys.executable, "-m", "minichinchilla", "train", *tiny(text, out, LONG, 20)],
                            cwd=tmp_path, env=_subprocess_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = out / "ckpt" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= min_step:
                return proc
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no checkpoint at step >= {min_step} appeared: {proc.communicate()}")


def test_sigint_saves_exits_130_and_resumes_exactly(text, tmp_path, long_reference):
    out = tmp_path / "r"
    proc = _start_and_wait_for_checkpoint(text, out, tmp_path)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    step = read_state(out / "ckpt")["step"]
    assert 20 <= step < LONG and f"stopped at step {step}/{LONG}; checkpoint saved to {out / 'ckpt'}" in stdout
    assert main(["--resume", str(out), "--quiet"]) == 0
    assert_same_losses(losses(out), losses(long_reference))


def test_sigkill_then_resume_ends_with_the_same_losses(text, tmp_path, long_reference):
    out = tmp_path / "r"
    proc = _start_and_wait_for_checkpoint(text, out, tmp_path)
    proc.kill()  # SIGKILL: no handler runs, the process may be in the middle of a save
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert main(["--resume", str(out), "--quiet"]) == 0
    assert_same_losses(losses(out), losses(long_reference))


# ---- run directories --------------------------------------------------------------------------
def test_out_must_be_new_or_empty_unless_force(text, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(tiny(text, out, 4, 2)) == 2
    assert "is not empty; use --force" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(tiny(text, out, 4, 2, "--force")) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces only run files
    assert [e["step"] for e in read_log(out)] == [0, 2, 4]
    assert main(tiny(text, out, 2, 2, "--force")) == 0
    assert [e["step"] for e in read_log(out)] == [0, 2]


def test_default_out_is_runs_timestamp(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = tiny(text, "x", 2, 2)[:-2]
    assert main(argv) == 0 and main(argv) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "ckpt" / "state.json").exists() for r in runs)


# ---- bad input: one error line, exit code 2, nothing written -------------------------------------
def _bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "binary.txt").write_bytes(b"hello\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 ol\u00e9\n".encode("latin-1"))
    (tmp_path / "small.txt").write_text("a tiny corpus.\n" * 5)
    (tmp_path / "folder").mkdir()
    return [
        (["--data", str(tmp_path / "missing.txt")], "does not exist"),
        (["--data", str(tmp_path / "empty.txt")], "is empty"),
        (["--data", str(tmp_path / "binary.txt")], "binary file, not text: NUL byte at byte offset 5"),
        (["--data", str(tmp_path / "latin1.txt")], "not valid UTF-8: byte 0xe9 at byte offset 3"),
        (["--data", str(tmp_path / "folder")], "contains no .txt files"),
        (["--data", str(tmp_path / "small.txt")], "fewer than one batch needs"),
        (["--data", str(tmp_path / "small.txt"), "--seq-len", "64", "--context-len", "32"],
         "is a deprecated alias of --seq-len 64"),
        (["--data", str(tmp_path / "small.txt"), "--tokenizer", "bpe", "--vocab-size", "100"],
         "vocab_size=100 is smaller than 256"),
    ]


def test_bad_inputs_give_one_clear_error(tmp_path, capsys):
    for extra, message in _bad_inputs(tmp_path):
        out = tmp_path / "out"
        argv = [*TINY, "--max-steps", "4", "--out", str(out), *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (extra, err)
        assert not out.exists(), extra  # nothing written


def test_bad_input_in_a_real_subprocess_has_no_traceback(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    proc = subprocess.run([sys.executable, "-m", "minichinchilla", "train", "--data",
                           str(tmp_path / "binary.txt"), "--out", str(tmp_path / "out")],
                          cwd=tmp_path, env=_subprocess_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "byte offset" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_resume_of_a_damaged_checkpoint_names_the_file(text, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(tiny(text, out, 4, 2)) == 0
    npz = out / "ckpt" / "optim-000004.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    log_before = (out / "log.jsonl").read_text()
    assert main(["--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "optim-000004.npz" in err and "truncated or corrupted" in err
    assert (out / "log.jsonl").read_text() == log_before  # nothing overwritten


def test_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(text, tmp_path, capsys, monkeypatch):
    class Exploding(train_mod.TransformerLM):
        calls = 0

        def forward(self, idx, targets=None, **kw):
            logits, loss = super().forward(idx, targets, **kw)
            if self.training and targets is not None:
                Exploding.calls += 1
                if Exploding.calls > 13:  # the 14th training step is step 13
                    loss = loss * float("nan")
            return logits, loss

    monkeypatch.setattr(train_mod, "TransformerLM", Exploding)
    out = tmp_path / "r"
    assert main(tiny(text, out, 40, 10)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: training loss is nan at step 13")
    assert f"last good checkpoint is {out / 'ckpt'} (step 10)" in err
    assert read_state(out / "ckpt")["step"] == 10


# ---- the built-in corpus, end to end ---------------------------------------------------------
def test_short_run_on_the_builtin_corpus_learns(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICHINCHILLA_CACHE")  # the real cache: the corpus is built only once
    out = tmp_path / "r"
    rc = main(["--out", str(out), "--quiet", "--d-model", "64", "--n-layers", "2", "--n-heads", "2",
               "--batch-size", "8", "--seq-len", "64", "--max-steps", "60", "--eval-interval", "60",
               "--eval-batches", "4", "--lr", "1e-2", "--warmup-steps", "10", "--sample-tokens", "0"])
    assert rc == 0
    log = read_log(out)
    assert log[0]["val_loss"] > 6.8  # ~ln(1024) = 6.93 at initialisation
    assert log[-1]["val_loss"] < 6.2, log  # 60 steps of 512 tokens lower it by ~0.95 nats (to ~5.98)


def test_the_training_loop_reads_top_to_bottom():
    """Issue 11: `run_training` fits about a screen (<= 80 lines) and no closure rebinds the
    loop's state (no `nonlocal` anywhere in train.py)."""
    import ast
    import inspect

    source = inspect.getsource(train_mod)
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "run_training")
    assert fn.end_lineno - fn.lineno + 1 <= 80
    assert not any(isinstance(n, ast.Nonlocal) for n in ast.walk(ast.parse(source)))
