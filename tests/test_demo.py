from minichinchilla.__main__ import main


def test_gradcheck_demo_passes_and_names_inputs(capsys):
    assert main(["gradcheck-demo"]) == 0
    out = capsys.readouterr().out
    assert "attention       Wqkv" in out and "all backwards agree" in out


def test_unknown_command_is_a_clear_error(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
