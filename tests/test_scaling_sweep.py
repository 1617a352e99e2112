"""IsoFLOP sweeps: the grid, one run, restartability, failures, and the committed results."""
import dataclasses
import json
import pathlib

import pytest

from minichinchilla.scaling.sweep import RunSpec, default_grid, load_results, run_one, run_sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "isoflop-sweep.jsonl"
TINY = dict(vocab_size=16, seq_len=8, batch_size=4, n_evals=2, eval_sequences=8)


def test_grid_slides_with_the_budget():
    specs = default_grid()
    budgets = sorted({s.C_budget for s in specs})
    assert len(budgets) == 5 and len(specs) == 25
    for C in budgets:
        sizes = [s.params().total for s in specs if s.C_budget == C]
        assert len(sizes) == 5 and sizes == sorted(sizes)
        assert all(s.steps() >= 150 for s in specs if s.C_budget == C)
    small = [s.params().total for s in specs if s.C_budget == budgets[0]]
    large = [s.params().total for s in specs if s.C_budget == budgets[-1]]
    assert max(large) > max(small)  # bigger budgets get bigger models


def test_budget_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="too small for any model"):
        default_grid(budgets=(1e6,))
    with pytest.raises(ValueError, match="positive"):
        default_grid(budgets=(-1.0,))


def test_one_run_is_deterministic_and_matches_its_budget():
    spec = RunSpec(2e8, 16, 1, 2, **TINY)
    a, b = run_one(spec), run_one(spec)
    assert a["status"] == "ok", a["error"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert a["C"] == pytest.approx(6 * a["N"] * a["D"])
    assert abs(a["C"] - spec.C_budget) / spec.C_budget < 0.05  # steps are rounded
    assert len(a["curve"]) == 2 and a["curve"][-1][1] == a["loss"]
    assert a["loss"] < a["curve"][0][1] + 1e-9 or a["loss"] < 2.8  # it learned something


def test_a_crash_is_recorded_and_the_sweep_goes_on(tmp_path):
    good = RunSpec(2e8, 16, 1, 2, **TINY)
    bad = RunSpec(2e8, 18, 1, 4, **TINY)  # 18 is not divisible by 4 heads
    path = tmp_path / "r.jsonl"
    rows = run_sweep([good, bad], str(path), workers=1, log=lambda s: None)
    status = {r["key"]: r["status"] for r in rows}
    assert status == {good.key: "ok", bad.key: "failed"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert "divisible" in failed["error"]
    # Restartable: the finished run is skipped, only the failed one is tried again.
    again = run_sweep([good, bad], str(path), workers=1, log=lambda s: None)
    assert [r["key"] for r in again] == [bad.key]


def test_dask_executor_runs_the_same_interface(tmp_path):
    pytest.importorskip("dask.distributed")
    spec = RunSpec(2e8, 16, 1, 2, **TINY)
    rows = run_sweep([spec], str(tmp_path / "r.jsonl"), executor="dask", workers=1, log=lambda s: None)
    assert rows[0]["status"] == "ok"
    assert rows[0]["loss"] == pytest.approx(run_one(spec)["loss"], rel=1e-6)


def committed_rows():
    rows = [r for r in load_results(COMMITTED) if r["status"] == "ok"]
    if not rows:
        pytest.skip("no committed sweep results yet")
    return rows


def test_committed_sweep_has_enough_finished_runs_with_interior_minima():
    rows = committed_rows()
    from minichinchilla.scaling.approaches import approach2

    assert len(rows) >= 25
    result = approach2(rows)
    inside = [b for b in result.budgets if b.inside]
    assert len(inside) >= 3, "at least 3 budgets need their IsoFLOP minimum inside the grid"


@pytest.mark.slow
def test_cheapest_committed_run_reproduces():
    rows = committed_rows()
    cheapest = min(rows, key=lambda r: (r["C_budget"], r["elapsed_s"]))  # least compute, then time
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    spec = RunSpec(**{k: cheapest[k] for k in fields})
    again = run_one(spec)
    assert again["status"] == "ok"
    assert again["loss"] == pytest.approx(cheapest["loss"], rel=0.01), json.dumps(cheapest)[:300]
