"""The committed toy-Chinchilla analysis is of exactly the committed runs, and chapter 10 and the
README state exactly its numbers (they are generated from it by scripts/toy_chinchilla_analysis.py)."""
import importlib.util
import json
import pathlib

import pytest

from minichinchilla.scaling.approaches import approach2, seed_means
from minichinchilla.scaling.sweep import load_results

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "toy-chinchilla.jsonl"
ANALYSIS = ROOT / "results" / "toy-chinchilla-analysis.json"


def _script():
    spec = importlib.util.spec_from_file_location("toy_analysis", ROOT / "scripts" / "toy_chinchilla_analysis.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def committed():
    if not ANALYSIS.exists():
        pytest.skip("no committed analysis")
    runs = [r for r in load_results(RUNS) if r["status"] == "ok"]
    return runs, json.loads(ANALYSIS.read_text(encoding="utf-8"))


def test_analysis_is_of_exactly_the_committed_runs(committed):
    runs, an = committed
    assert an["n_runs"] == len(runs)
    assert an["budgets"] == sorted({r["C_budget"] for r in runs})
    assert an["floor"] == runs[0]["floor"] and an["oracle_loss"] == runs[0]["oracle_loss"]
    keys, groups = seed_means(runs)
    table = {"N": [k[1] for k in keys], "C_budget": [k[0] for k in keys], "loss": [g.mean() for g in groups]}
    assert approach2(table).a == pytest.approx(an["approach2_N"]["a"], abs=1e-12)


def test_chapter_and_readme_state_the_analysis_numbers(committed):
    _, an = committed
    mod = _script()
    chapter = (ROOT / "chapters" / "10-scaling-laws.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert mod.results_markdown(an) in chapter
    assert mod.readme_markdown(an) in readme


@pytest.mark.slow
def test_the_cheapest_committed_run_reproduces(committed):
    import dataclasses

    from minichinchilla.scaling.sweep import RunSpec, run_one

    runs, _ = committed
    cheapest = min(runs, key=lambda r: r["elapsed_s"])
    spec = RunSpec(**{f.name: cheapest[f.name] for f in dataclasses.fields(RunSpec)})
    assert spec.key == cheapest["key"]
    again = run_one(spec)
    assert again["status"] == "ok" and again["N"] == cheapest["N"] and again["D"] == cheapest["D"]
    assert again["loss"] == pytest.approx(cheapest["loss"], abs=2e-3), cheapest["key"]


def test_chapter_states_the_designs_numbers():
    from minichinchilla.scaling import sweep

    design = json.loads((ROOT / "results" / "toy-chinchilla-design.json").read_text(encoding="utf-8"))
    chapter = (ROOT / "chapters" / "10-scaling-laws.md").read_text(encoding="utf-8")
    sims = design["simulation"]
    main = sims["pilot law (a = 0.5)"]
    assert f"was {main['width2']:.3f} (Approach 2) and {main['width3']:.3f} (Approach 3)" in chapter
    worst = max(max(v["width2"], v["width3"]) for v in sims.values())
    assert f"at most {worst:.3f}\n  if the true $a$ were 0.35 or 0.65" in chapter
    assert f"{sweep.LR_AT_10K:.5f}".rstrip("0") in chapter and f"{sweep.LR_EXPONENT:.2f}" in chapter
    specs = sweep.default_grid()
    assert f"({len(specs)} runs, ${sum(s.C_budget for s in specs) / 1e13:.1f} \\times 10^{{13}}$ FLOPs" in chapter
