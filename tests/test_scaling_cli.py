"""`python -m minichinchilla scaling plan`: output, shapes near N_opt, bad input → exit 2."""
import json

import numpy as np
import pytest

from minichinchilla.scaling import cli
from minichinchilla.scaling.parametric import EPOCH_FIT, PAPER_FIT
from minichinchilla.scaling.plan import plan, suggest_shape


def test_plan_prints_optimum_and_shape(capsys):
    assert cli.main(["plan", "--flops", "1e21"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    n_opt, d_opt = EPOCH_FIT.compute_optimal(1e21)
    assert f"{n_opt:.3e}" in out and f"{d_opt:.3e}" in out
    assert "tokens per parameter" in out and "n_layers=" in out and "n_heads=" in out
    assert "fit                    epoch (Besiroglu" in out  # which fit answered
    assert captured.err == ""


@pytest.mark.parametrize("flops, lo, hi", [(5.76e23, 60e9, 80e9), (1e21, 2.5e9, 3.2e9)])
def test_default_plan_gives_the_papers_answer(flops, lo, hi, capsys):
    """Table 3 of Hoffmann et al.: ~67-70B parameters at Gopher's 5.76e23 FLOPs; Appendix D.4:
    2.80-2.86B at 1e21 FLOPs. The printed eq. (10) constants answer 32B and 1.8B instead."""
    assert cli.main(["plan", "--flops", str(flops), "--json"]) == 0
    captured = capsys.readouterr()
    p = json.loads(captured.out)  # exactly one JSON object, nothing else on stdout
    assert p["fit"] == "epoch" and lo <= p["N_opt"] <= hi
    assert p["D_opt"] == pytest.approx(flops / (6 * p["N_opt"]))
    assert not lo <= PAPER_FIT.compute_optimal(flops)[0] <= hi  # the test can fail


def test_paper_fit_warns_on_stderr_only(capsys):
    assert cli.main(["plan", "--flops", "5.76e23", "--fit", "paper", "--json"]) == 0
    captured = capsys.readouterr()
    p = json.loads(captured.out)
    assert p["fit"] == "paper" and p["N_opt"] == pytest.approx(PAPER_FIT.compute_optimal(5.76e23)[0])
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "Table 3" in err[0]


def test_plan_json_epoch(capsys):
    assert cli.main(["plan", "--flops", "5.76e23", "--fit", "epoch", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    n_opt, _ = EPOCH_FIT.compute_optimal(5.76e23)
    assert p["N_opt"] == pytest.approx(n_opt)
    assert 15 < p["tokens_per_param"] < 25
    assert p["shape"]["N"] == pytest.approx(n_opt, rel=0.05)
    assert p["shape"]["d_model"] % p["shape"]["n_heads"] == 0


@pytest.mark.parametrize("C", [1e19, 1e21, 1e23])
def test_suggested_shape_is_close_and_well_proportioned(C):
    p = plan(C, vocab_size=32_000, seq_len=2048)
    assert p.shape.N == pytest.approx(p.N_opt, rel=0.05)
    assert 32 <= p.shape.aspect <= 256
    assert p.D_shape == pytest.approx(C / (6 * p.shape.N))


def test_tiny_budget_notes_that_no_shape_fits():
    p = plan(1e12)
    assert "note:" in p.report()
    s = suggest_shape(1e6, vocab_size=64, seq_len=128)
    assert s.N == pytest.approx(1e6, rel=0.1)


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
def test_bad_flops_exit_2_without_traceback(value, capsys):
    assert cli.main(["plan", f"--flops={value}"]) == 2
    err = capsys.readouterr().err
    assert "--flops" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    assert cli.main(["plan", "--flops", "abc"]) == 2
    assert cli.main(["plan"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["plan", "--flops", "1e20", "--seq-len", "0"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_registry_accepts_new_subcommands(capsys):
    seen = {}

    def add(p):
        p.add_argument("--n", type=int, default=3)

    def run(args):
        seen["n"] = args.n
        return 0

    cli.register_subcommand("sweep-test", "a test subcommand", add, run)
    try:
        assert cli.main(["sweep-test", "--n", "5"]) == 0
        assert seen == {"n": 5}
    finally:
        cli.SUBCOMMANDS.pop("sweep-test")


def test_table_a4_subcommand(capsys):
    assert cli.main(["table-a4"]) == 0
    out = capsys.readouterr().out
    assert "1.1B" in out and "printed" in out


def test_dispatcher_if_present(capsys):
    main_mod = pytest.importorskip("minichinchilla.__main__")
    assert main_mod.main(["scaling", "plan", "--flops", "1e20"]) == 0
    assert np.isfinite(float(capsys.readouterr().out.split()[3]))
