"""The sweep on Dask: a tiny sweep on a 2-worker LocalCluster gives the same rows as the local
pool, resumes, and meets the same Ctrl-C, kill -9 and lock behaviour (CI phase 2 installs
dask[distributed])."""
import sys

import pytest

pytestmark = pytest.mark.dask

from test_scaling_sweep import (QUIET, _check_interrupt_keeps_finished_rows, _kill_9_while_running,  # noqa: E402
                                tiny)

from minichinchilla.scaling.sweep import _OutputLock, load_results, run_one, run_sweep  # noqa: E402


def test_two_run_sweep_on_a_two_worker_local_cluster_resumes(tmp_path):
    pytest.importorskip("dask.distributed")
    specs = [tiny(seed=0), tiny(seed=1)]
    out = tmp_path / "r.jsonl"
    rows = run_sweep(specs, out, executor="dask", workers=2, **QUIET)
    assert sorted(r["key"] for r in rows) == sorted(s.key for s in specs)
    assert all(r["status"] == "ok" for r in rows)
    by_key = {r["key"]: r for r in load_results(out)}
    assert by_key[specs[0].key]["loss"] == pytest.approx(run_one(specs[0])["loss"], rel=1e-6)
    assert run_sweep(specs, out, executor="dask", workers=2, **QUIET) == []  # all finished


def test_dask_sweep_respects_the_output_lock(tmp_path):
    pytest.importorskip("dask.distributed")
    out = tmp_path / "r.jsonl"
    with _OutputLock(out):
        with pytest.raises(ValueError, match="locked"):
            run_sweep([tiny()], out, executor="dask", workers=1, **QUIET)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_a_dask_sweep_within_seconds(tmp_path):
    pytest.importorskip("dask.distributed")
    _check_interrupt_keeps_finished_rows(tmp_path, "dask", limit_s=15)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_dask_workers_die_with_a_killed_sweep(tmp_path):
    pytest.importorskip("dask.distributed")
    _kill_9_while_running(tmp_path, "dask")
