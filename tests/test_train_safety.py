"""A bad day for `train`, `sample`, `eval` and `finetune` (issue 15): divergence, damaged or
edited checkpoints, absurd sizes, hostile data paths, two processes on one run, kill -9."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minichinchilla.__main__ import main as dispatch
from minichinchilla.checkpoint import load_run
from minichinchilla.runlock import LOCK_FILE, RunLock
from minichinchilla.train import main as train_main, read_log

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat dog sat ran on under a mat table quickly slowly and then".split()
TINY = ["--tokenizer", "word", "--vocab-size", "100", "--d-model", "32", "--n-layers", "1",
        "--n-heads", "2", "--batch-size", "4", "--seq-len", "16", "--eval-batches", "2",
        "--sample-tokens", "0", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    rng = np.random.default_rng(0)
    (base / "text.txt").write_text("\n".join(" ".join(rng.choice(WORDS, size=8)) + "."
                                             for _ in range(400)) + "\n")
    return base / "text.txt"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINICHINCHILLA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A finished 6-step run (checkpoint at step 6, optimiser moments saved)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINICHINCHILLA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert train_main(["--data", str(corpus), "--out", str(out), *TINY, "--max-steps", "6",
                           "--eval-interval", "3"]) == 0
    return out


def _copy(run, dest):
    shutil.copytree(run, dest)
    return dest


def _one_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _strict_json(line):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(line, parse_constant=refuse)


# ---- divergence ---------------------------------------------------------------------------------
def test_divergence_stops_before_a_nonfinite_log_line_or_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    rc = train_main(["--data", str(corpus), "--out", str(out), *TINY, "--max-steps", "30",
                     "--lr", "1e6", "--warmup-steps", "0", "--eval-interval", "1"])
    assert rc == 2
    line = _one_error(capsys, "nan", "last good checkpoint")
    entries = [_strict_json(x) for x in (out / "log.jsonl").read_text().splitlines()]  # strict JSON
    assert all(np.isfinite(e["val_loss"]) and np.isfinite(e["train_loss"]) for e in entries)
    state = json.loads((out / "ckpt" / "state.json").read_text())
    assert state["step"] == entries[-1]["step"] and f"(step {state['step']})" in line
    model, _, _ = load_run(out)  # the checkpoint left is finite and loads
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert dispatch(["sample", "--checkpoint", str(out), "--max-new-tokens", "3", "--seed", "0"]) == 0


# ---- sample and eval ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_sample_refuses_nonfinite_temperature(trained, capsys, value):
    assert dispatch(["sample", "--checkpoint", str(trained), f"--temperature={value}"]) == 2
    _one_error(capsys, "--temperature")


def test_nonfinite_checkpoint_is_refused_by_sample_eval_and_resume(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    state = json.loads((run / "ckpt" / "state.json").read_text())
    path = run / "ckpt" / state["files"]["model"]
    arrays = dict(np.load(path))
    first = sorted(arrays)[0]
    arrays[first] = np.full_like(arrays[first], np.nan)
    np.savez(path, **arrays)
    for argv in (["sample", "--checkpoint", str(run)], ["eval", "--checkpoint", str(run)],
                 ["train", "--resume", str(run)]):
        assert dispatch(argv) == 2, argv
        _one_error(capsys, "non-finite")


# ---- state.json and the optimiser file ----------------------------------------------------------
def _edit_state(run, edit):
    path = run / "ckpt" / "state.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))


STATE_EDITS = {
    "files is a list": (lambda s: s.update(files=[]), "'files' must be a JSON object"),
    "negative step": (lambda s: s.update(step=-5), "'step' must be a non-negative integer"),
    "step as text": (lambda s: s.update(step="3"), "'step' must be a non-negative integer"),
    "absolute model path": (lambda s: s["files"].update(model="/etc/passwd"), "files.model"),
    "model path outside": (lambda s: s["files"].update(model="../../other/ckpt/model.npz"), "files.model"),
    "config is a list": (lambda s: s.update(train_config=[]), "'train_config' must be a JSON object"),
    "no rng state": (lambda s: s.pop("rng_state"), "missing key(s) 'rng_state'"),
    "n_heads edited": (lambda s: s["model_config"].update(n_heads=4), "disagree on n_heads"),
}


@pytest.mark.parametrize("name", sorted(STATE_EDITS))
def test_edited_state_json_is_one_error_line(trained, tmp_path, capsys, name):
    edit, message = STATE_EDITS[name]
    run = _copy(trained, tmp_path / "run")
    _edit_state(run, edit)
    before = {p.name: p.read_bytes() for p in (run / "ckpt").iterdir()}
    for argv in (["sample", "--checkpoint", str(run)], ["train", "--resume", str(run)]):
        assert dispatch(argv) == 2, argv
        _one_error(capsys, message)
    assert {p.name: p.read_bytes() for p in (run / "ckpt").iterdir()} == before  # nothing touched


def test_resume_refuses_an_incomplete_optimizer_state(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    state = json.loads((run / "ckpt" / "state.json").read_text())
    path = run / "ckpt" / state["files"]["optimizer"]
    arrays = dict(np.load(path))
    assert len(arrays) > 2
    np.savez(path, **{k: arrays[k] for k in sorted(arrays)[:2]})  # cut to 2 arrays
    assert train_main(["--resume", str(run)]) == 2
    _one_error(capsys, "complete optimizer state", "missing")
    np.savez(path, **{k: (v[..., :1] if v.ndim else v) for k, v in arrays.items()})  # wrong shapes
    assert train_main(["--resume", str(run)]) == 2
    _one_error(capsys, "shape")


# ---- sizes and data -----------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value, named", [
    ("--n-layers", "1000000", "--n-layers"),
    ("--seq-len", "1000000000", "--seq-len"),
    ("--context-len", "1000000000", "--seq-len"),
    ("--d-model", "10000000", "--d-model"),
    ("--batch-size", "1000000000", "--batch-size"),
])
def test_absurd_sizes_are_refused_within_seconds(tmp_path, capsys, flag, value, named):
    t0 = time.perf_counter()
    assert train_main(["--out", str(tmp_path / "out"), flag, value, "--quiet"]) == 2
    assert time.perf_counter() - t0 < 10
    _one_error(capsys, named, "memory")
    assert not (tmp_path / "out").exists()


def test_dev_zero_is_refused_without_reading_it_whole(tmp_path, capsys):
    t0 = time.perf_counter()
    assert train_main(["--data", "/dev/zero", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert time.perf_counter() - t0 < 10
    _one_error(capsys, "/dev/zero", "binary")
    assert not (tmp_path / "out").exists()


def test_text_larger_than_free_memory_allows_is_refused(corpus, tmp_path, capsys, monkeypatch):
    import minichinchilla.data.documents as documents

    monkeypatch.setattr(documents, "available_memory_bytes", lambda: 16 * 1000)  # 1,000 bytes of text
    assert train_main(["--data", str(corpus), "--out", str(tmp_path / "out"), *TINY]) == 2
    _one_error(capsys, "too large", "text.txt")


def test_negative_seed_names_the_flag(tmp_path, capsys):
    assert train_main(["--seed", "-1", "--out", str(tmp_path / "out")]) == 2
    _one_error(capsys, "--seed")


# ---- threads ------------------------------------------------------------------------------------
def test_threads_are_in_the_header_and_not_in_the_log(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(corpus), "--out", str(out), *[a for a in TINY if a != "--quiet"],
            "--max-steps", "2", "--eval-interval", "2", "--threads", "1"]
    assert train_main(argv) == 0
    assert "threads: 1 (BLAS and kernels" in capsys.readouterr().out
    assert all("thread" not in key for e in read_log(out) for key in e)
    assert train_main(argv[:-1] + ["0", "--force"]) == 2
    _one_error(capsys, "--threads")


def test_limit_threads_caps_blas_and_restores_it():
    from threadpoolctl import threadpool_info

    from minichinchilla.resources import default_threads, limit_threads

    def blas_threads():
        return {m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"}

    before = blas_threads()
    with limit_threads(1):
        assert blas_threads() <= {1}
    assert blas_threads() == before

    class Shape:
        d_model = 128
    assert default_threads(Shape) == 1


# ---- two processes, kill -9 ---------------------------------------------------------------------
HOLDER = """
import sys, time
from minichinchilla.runlock import RunLock
RunLock(sys.argv[1], command="holder").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}


def test_second_process_on_a_locked_run_is_refused(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE,
                              text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        for argv in (["train", "--resume", str(run)], ["train", "--out", str(run), "--force", *TINY]):
            assert dispatch(argv) == 2, argv
            _one_error(capsys, "locked", "in use by another process", f"pid {holder.pid}")
        assert (run / "log.jsonl").read_bytes() == (trained / "log.jsonl").read_bytes()
    finally:
        holder.kill()
        holder.wait()


def test_finetune_refuses_a_locked_or_used_output(trained, tmp_path, capsys):
    out = tmp_path / "ft"
    out.mkdir()
    (out / "finetune.jsonl").write_text('{"type": "run"}\n')
    argv = ["finetune", "--checkpoint", str(trained), "--out", str(out), "--steps", "1"]
    assert dispatch(argv) == 2
    _one_error(capsys, "finetune.jsonl", "--force")
    assert (out / "finetune.jsonl").read_text() == '{"type": "run"}\n'  # not overwritten
    with RunLock(out):
        assert dispatch(argv + ["--force"]) == 2
        _one_error(capsys, "locked", f"pid {os.getpid()}")


def test_kill_9_then_resume_takes_over_the_stale_lock(corpus, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "minichinchilla", "train", "--data", str(corpus), "--out", str(run),
           *TINY, "--max-steps", "100000", "--eval-interval", "5"]
    env = {**_env(), "MINICHINCHILLA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (run / "ckpt" / "state.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    second = subprocess.run([*cmd[:-4], "--max-steps", "10", "--force"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2 and f"pid {proc.pid}" in second.stderr  # a live run is refused
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_FILE).exists()  # kill -9 left the lock file
    resumed = subprocess.Popen([sys.executable, "-m", "minichinchilla", "train", "--resume", str(run),
                                "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert "taking the lock over" in resumed.stderr.readline()
        saved = json.loads((run / "ckpt" / "state.json").read_text())["step"]
        while json.loads((run / "ckpt" / "state.json").read_text())["step"] == saved:
            assert resumed.poll() is None and time.time() < deadline + 60
            time.sleep(0.05)  # the resumed run trains on and checkpoints
        resumed.send_signal(signal.SIGINT)  # Ctrl-C: save and exit 130
        assert resumed.wait(timeout=60) == 130
    finally:
        resumed.kill()
    steps = [e["step"] for e in read_log(run)]
    assert steps == sorted(set(steps))  # each evaluation once, in order
    assert not (run / LOCK_FILE).exists()  # released on the way out
