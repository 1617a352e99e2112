"""TrainConfig: defaults, JSON/TOML files, command-line overrides, and clear errors."""
import json

import pytest

from minichinchilla.config import DEFAULT_MAX_STEPS, TrainConfig, load_config
from minichinchilla.train import build_parser, main
from minichinchilla.config import overrides_from_args


def test_defaults_are_valid_and_model_config_follows():
    cfg = TrainConfig()
    assert cfg.horizon == DEFAULT_MAX_STEPS
    mc = cfg.model_config(vocab_size=1024)
    assert (mc.vocab_size, mc.seq_len, mc.d_model, mc.n_layers) == (1024, cfg.seq_len, cfg.d_model, cfg.n_layers)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_warmup_is_capped_at_half_the_run():
    assert TrainConfig(max_steps=10, warmup_steps=30).warmup == 5
    assert TrainConfig(max_steps=1000, warmup_steps=30).warmup == 30


def test_token_budget_sets_the_horizon():
    cfg = TrainConfig(batch_size=4, seq_len=8, token_budget=100)
    assert cfg.horizon == 4  # ceil(100 / 32)
    assert TrainConfig(batch_size=4, seq_len=8, token_budget=100, max_steps=4).horizon == 4
    with pytest.raises(ValueError, match="max_steps or token_budget"):
        TrainConfig(batch_size=4, seq_len=8, token_budget=100, max_steps=10)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_file_then_overrides(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"lr": 0.01, "d_model": 64, "tokenizer": "char", "data": "x.txt"}))
    else:
        path.write_text('lr = 0.01\nd_model = 64\ntokenizer = "char"\ndata = "x.txt"\n')
    cfg = load_config(path, {"lr": 0.002})
    assert (cfg.lr, cfg.d_model, cfg.tokenizer, cfg.data) == (0.002, 64, "char", "x.txt")


def test_int_accepted_for_float_but_not_bool_for_int():
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)
    with pytest.raises(TypeError, match="'batch_size' \\(--batch-size\\) must be int"):
        TrainConfig(batch_size=True)


@pytest.mark.parametrize("data, exc, match", [
    ({"learning_rate": 0.1}, ValueError, "unknown key.*'learning_rate'"),
    ({"lr": "fast"}, TypeError, "'lr' \\(--lr\\) must be float"),
    ({"d_model": 64.5}, TypeError, "'d_model' \\(--d-model\\) must be int"),
    ({"tokenizer": "sentencepiece"}, ValueError, "'tokenizer' \\(--tokenizer\\) must be one of"),
    ({"lr": -1.0}, ValueError, "'lr' \\(--lr\\) must be a positive"),
    ({"d_model": 30, "n_heads": 4}, ValueError, "divisible"),
    ({"seq_len": 64, "context_len": 32}, ValueError, "deprecated alias of seq_len"),
    ({"warmup_steps": -1}, ValueError, "'warmup_steps' \\(--warmup-steps\\) must be >= 0"),
    ({"data": ""}, ValueError, "empty path"),
    ({"seed": -1}, ValueError, r"'seed' \(--seed\) must be >= 0"),
])
def test_bad_values_name_the_key(data, exc, match):
    with pytest.raises(exc, match=match):
        TrainConfig.from_dict(data)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    yaml = tmp_path / "run.yaml"
    yaml.write_text("lr: 1")
    with pytest.raises(ValueError, match=".json or .toml"):
        load_config(yaml)
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(TypeError, match="JSON object"):
        load_config(arr)


def test_command_line_flags_override_only_what_is_given():
    args = build_parser().parse_args(["--lr", "1e-3", "--max-steps", "7", "--d-ff", "none",
                                      "--tie-embeddings", "false", "--data", "corpus.txt"])
    assert overrides_from_args(args) == {"lr": 1e-3, "max_steps": 7, "d_ff": None,
                                         "tie_embeddings": False, "data": "corpus.txt"}


@pytest.mark.parametrize("argv, match", [
    (["--lr", "abc"], "invalid float value"),
    (["--batch-size", "2.5"], "invalid int value"),
    (["--tokenizer", "bytes"], "invalid choice"),
    (["--no-such-flag", "1"], "unrecognized arguments"),
])
def test_cli_type_errors(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_cli_config_file_errors(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('lr = 0.01\nbatchsize = 4\n')
    assert main(["--config", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'batchsize'" in err and str(cfg) in err
    cfg.write_text('lr = "big"\n')
    assert main(["--config", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "'lr' (--lr) must be float" in capsys.readouterr().err
    assert main(["--seq-len", "64", "--context-len", "32", "--out", str(tmp_path / "out")]) == 2
    assert "deprecated alias of --seq-len" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was created
