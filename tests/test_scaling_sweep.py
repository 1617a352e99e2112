"""IsoFLOP sweeps: the design grid, one run, resuming, failures, torn results files, the output
lock, Ctrl-C and kill -9 of the sweep (process pool here; the Dask executor in
tests/test_scaling_sweep_dask.py)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minichinchilla.scaling import cli
from minichinchilla.scaling.sweep import (DEFAULT_BUDGETS, DEFAULT_SHAPES, RunSpec, _OutputLock, default_grid,
                                          load_results, lr_for, run_one, run_sweep)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(seq_len=8, batch_size=8, n_evals=2, eval_windows=64, curve_windows=32)
QUIET = dict(log=lambda s: None)


def tiny(C=2e9, d=16, L=1, h=2, seed=0, lr=1e-2):
    return RunSpec(C, d, L, h, lr=lr, seed=seed, **TINY)


# ---- the design -------------------------------------------------------------------------------

def test_default_grid_meets_the_designs_rules():
    specs = default_grid()
    budgets = sorted({s.C_budget for s in specs})
    assert len(budgets) == 7 and budgets[-1] / budgets[0] >= 64
    assert budgets == sorted(DEFAULT_BUDGETS)
    for C in budgets:
        at = [s for s in specs if s.C_budget == C]
        sizes = sorted({s.params().total for s in at})
        # seven sizes, or every shape that still trains 400 steps at the smallest budgets
        fits = [sh for sh in DEFAULT_SHAPES if RunSpec(C, *sh, lr=0.0).steps() >= 400]
        assert len(sizes) == min(7, len(fits)) and len(sizes) >= 4
        assert all(sorted(s.seed for s in at if s.params().total == n) == [0, 1] for n in sizes)
        assert all(s.steps() >= 400 and s.eval_windows >= 2048 and s.grad_clip > 0 for s in at)
    first = {s.params().total for s in specs if s.C_budget == budgets[0]}
    last = {s.params().total for s in specs if s.C_budget == budgets[-1]}
    assert max(last) > max(first)  # the window slides with the budget
    # a learning rate per size, smaller for bigger models
    rates = {s.params().total: s.lr for s in specs}
    ns = sorted(rates)
    assert all(rates[a] >= rates[b] for a, b in zip(ns, ns[1:])) and rates[ns[0]] > rates[ns[-1]]
    assert rates[ns[0]] == pytest.approx(lr_for(ns[0]), rel=0.01)


def test_keys_are_unique_and_name_language_and_seed():
    specs = default_grid()
    assert len({s.key for s in specs}) == len(specs)
    assert all(s.key.startswith("hierarchical-C") and s.key.endswith(f"-s{s.seed}") for s in specs)


def test_budget_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="too small for the grid"):
        default_grid(budgets=(1e6,))
    with pytest.raises(ValueError, match="positive"):
        default_grid(budgets=(-1.0,))


def test_dry_run_lists_every_run_then_flops_and_time(capsys):
    assert cli.main(["sweep", "--dry-run", "--budgets", "1e11,2e11", "--sizes-per-budget", "5",
                     "--seeds", "0,1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    runs, total = lines[:-1], lines[-1]
    assert len(runs) == 2 * 5 * 2
    for line in runs:
        key, rest = line.split(maxsplit=1)
        assert key.startswith("hierarchical-C") and rest.startswith("N=")
    assert total.startswith("total: 20 runs,") and "FLOPs" in total and "core-hours" in total
    flops = float(total.split(",")[1].split()[0])
    assert flops == pytest.approx(5 * 2 * (1e11 + 2e11), rel=1e-3)


@pytest.mark.parametrize("argv, flag", [
    (["--budgets", "1e11,x"], "--budgets"), (["--budgets", "-5"], "--budgets"),
    (["--sizes-per-budget", "2"], "--sizes-per-budget"), (["--workers", "0"], "--workers"),
    (["--seeds", "-1"], "--seeds"), (["--language", "klingon"], "--language"),
    (["--lr", "nan"], "--lr"), (["--scheduler", "tcp://x:1"], "--scheduler"),
])
def test_bad_sweep_flags_are_one_error_line(argv, flag, capsys, tmp_path):
    out = tmp_path / "r.jsonl"
    assert cli.main(["sweep", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and flag in err[0]
    assert not out.exists()


# ---- one run, resuming, failures ----------------------------------------------------------------

def test_one_run_is_deterministic_and_records_floor_and_oracle():
    spec = tiny()
    a, b = run_one(spec), run_one(spec)
    assert a["status"] == "ok", a["error"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert a["C"] == pytest.approx(6 * a["N"] * a["D"])
    assert abs(a["C"] - spec.C_budget) / spec.C_budget < 0.05  # steps are rounded
    assert len(a["curve"]) == 2 and a["curve"][-1] == [a["D"], a["loss"]]
    assert a["N_nonembed"] < a["N"]
    from minichinchilla.scaling.synthetic import make_language

    lang = make_language("hierarchical")
    assert a["floor"] == pytest.approx(lang.eval_floor(8))
    assert abs(a["oracle_loss"] - a["floor"]) < 0.05  # 64 windows: close, not equal
    assert a["floor"] < a["loss"] < np.log(128)  # it learned something, and cannot beat the truth


def test_a_crash_is_recorded_and_the_sweep_goes_on(tmp_path):
    good, bad = tiny(), tiny(d=18, h=4)  # 18 is not divisible by 4 heads
    path = tmp_path / "r.jsonl"
    rows = run_sweep([good, bad], path, workers=1, **QUIET)
    status = {r["key"]: r["status"] for r in rows}
    assert status == {good.key: "ok", bad.key: "failed"}
    assert "divisible" in next(r for r in rows if r["status"] == "failed")["error"]
    # Resumable: the finished run is skipped, only the failed one is tried again.
    again = run_sweep([good, bad], path, workers=1, **QUIET)
    assert [r["key"] for r in again] == [bad.key]


def test_a_torn_last_line_is_dropped_and_its_run_redone(tmp_path):
    """A crash mid-write leaves a last line without its newline. Before: the sweep refused to
    run ("not valid JSON"). Now it is dropped with a warning, like train's log reader, the file
    is repaired and the run redone."""
    a, b = tiny(seed=0), tiny(seed=1)
    path = tmp_path / "r.jsonl"
    run_sweep([a], path, workers=1, **QUIET)
    good = path.read_text()
    path.write_text(good + json.dumps({"key": b.key, "status": "ok", "loss": 3.9})[:25])
    warnings = []
    assert [r["key"] for r in load_results(path, warn=warnings.append)] == [a.key]
    assert len(warnings) == 1 and "cut short" in warnings[0]
    rows = run_sweep([a, b], path, workers=1, **QUIET)
    assert [r["key"] for r in rows] == [b.key]
    lines = path.read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == [a.key, b.key]  # every line is JSON again


def test_a_damaged_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "x"}\nnot json\n{"key": "y"}\n')
    with pytest.raises(ValueError, match=r"r.jsonl:2: not valid JSON"):
        load_results(path)


# ---- one writer per output ----------------------------------------------------------------------

def test_a_second_sweep_on_the_same_output_is_refused(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    with _OutputLock(out):
        code = cli.main(["sweep", "--out", str(out), "--budgets", "2e11", "--sizes-per-budget", "3",
                         "--seeds", "0", "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error:") and "locked" in err[0] and f"pid {os.getpid()}" in err[0]
    assert not out.exists()
    # another output in the same folder is not blocked, and the lock is gone afterwards
    with _OutputLock(tmp_path / "other.jsonl"):
        pass
    assert run_sweep([tiny()], out, workers=1, **QUIET)[0]["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_a_lock_left_by_a_killed_sweep_is_taken_over(tmp_path):
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from minichinchilla.scaling.sweep import _OutputLock
        with _OutputLock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env=_env())
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match="locked"):
        run_sweep([tiny()], out, workers=1, **QUIET)
    holder.kill()
    holder.wait()
    assert run_sweep([tiny()], out, workers=1, **QUIET)[0]["status"] == "ok"


# ---- Ctrl-C and kill -9 (the driver is a sweep of one fast run and slow ones) -------------------

DRIVER = """
import sys
from minichinchilla.scaling.sweep import RunSpec, run_sweep
T = dict(seq_len=8, batch_size=8, n_evals=2, eval_windows=64, curve_windows=32)
slow = [RunSpec(C, 8, 1, 2, lr=1e-2, **T) for C in (4e11, 3e11, 2e11, 1e11)]  # minutes each
crash = RunSpec(1e13, 18, 1, 4, lr=1e-2, **T)  # biggest budget, so first; fails at once
try:
    run_sweep([crash] + slow, sys.argv[1], executor=sys.argv[2], workers=2)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _fresh_signals():
    """In the child before exec: Ctrl-C delivered and handled by default, whatever signal mask or
    SIGINT disposition the test process picked up from earlier tests (both are inherited)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _descendants(pid):
    """Pids of every live process below `pid` (Linux /proc)."""
    children = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pids):
    alive = []
    for p in pids:
        try:
            state = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(p)
    return alive


def _wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _start_driver(tmp_path, executor):
    out = tmp_path / "r.jsonl"
    run_sweep([tiny()], out, workers=1, **QUIET)  # a row finished before, by another sweep
    # The driver and its workers write to a file, not a pipe: nobody reads a pipe while the sweep
    # runs, and once its 64 KiB buffer fills every writer blocks, so the sweep could never exit.
    with open(tmp_path / "driver.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), executor], env=_env(),
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_fresh_signals)
    return proc, out


def _interrupt_after_first_row(tmp_path, executor):
    proc, out = _start_driver(tmp_path, executor)
    try:
        _wait_for(lambda: out.exists() and out.read_text().count("\n") >= 2, 180, "the first row")
        workers = _descendants(proc.pid)
        assert workers, "the sweep has no worker processes"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        stopped_in = time.monotonic() - t0
        _wait_for(lambda: not _alive(workers), 10, "the workers to end")
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = load_results(out)
    return code, stopped_in, rows, (tmp_path / "driver.log").read_text()


def _check_interrupt_keeps_finished_rows(tmp_path, executor, limit_s):
    """Ctrl-C once the first row is written: exit 130 within `limit_s`, and only the earlier row and
    the crashed run's row in the file (no slow run finished or was written)."""
    code, stopped_in, rows, output = _interrupt_after_first_row(tmp_path, executor)
    assert code == 130, output
    assert stopped_in < limit_s, stopped_in
    assert [(r["d_model"], r["status"]) for r in rows] == [(16, "ok"), (18, "failed")]


def _kill_9_while_running(tmp_path, executor):
    proc, out = _start_driver(tmp_path, executor)
    try:
        _wait_for(lambda: out.exists() and out.read_text().count("\n") >= 2, 180, "the first row")
        workers = _descendants(proc.pid)
        assert workers
        proc.kill()
        proc.wait()
        _wait_for(lambda: not _alive(workers), 15, f"orphaned workers {_alive(workers)} to die")
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_cancels_queued_runs_stops_workers_and_keeps_finished_rows(tmp_path):
    """Before: shutdown(wait=True) waited for every queued run (minutes here). Now the two
    running workers are killed, the two queued runs cancelled, the rows written so far kept."""
    _check_interrupt_keeps_finished_rows(tmp_path, "process", limit_s=10)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_sweep(tmp_path):
    """Before: after kill -9 of the sweep a worker was orphaned, finished its run and blocked on
    a pipe forever."""
    _kill_9_while_running(tmp_path, "process")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_on_the_command_line_exits_130_within_seconds(tmp_path):
    """The CLI path: `scaling sweep` on real design runs (minutes each), interrupted once its
    workers run: exit 130, 'interrupted' on stderr, no worker left, the lock released."""
    out = tmp_path / "r.jsonl"
    with open(tmp_path / "err.log", "w") as err:  # a file: an unread pipe could block the sweep
        proc = subprocess.Popen([sys.executable, "-m", "minichinchilla", "scaling", "sweep", "--budgets", "2e11",
                                 "--sizes-per-budget", "3", "--seeds", "0", "--workers", "2", "--out", str(out)],
                                env=_env(), stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=_fresh_signals)
    try:
        _wait_for(lambda: len(_descendants(proc.pid)) >= 3, 60, "two workers")  # + the resource tracker
        time.sleep(2)
        workers = _descendants(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        assert time.monotonic() - t0 < 10
        _wait_for(lambda: not _alive(workers), 10, "the workers to end")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130 and "interrupted" in (tmp_path / "err.log").read_text()
    with _OutputLock(out):  # released
        pass
