"""The shared command-line error convention (minichinchilla/cli.py), on fake commands."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from minichinchilla.cli import EXIT_INTERRUPTED, run_command

REPO = Path(__file__).resolve().parents[1]


def parser():
    p = argparse.ArgumentParser(prog="fake")
    p.add_argument("--n", type=int, default=1)
    return p


def raising(exc):
    def command(args):
        raise exc
    return command


def test_success_returns_the_commands_code_and_none_means_0(capsys):
    assert run_command(parser(), lambda args: 3 * args.n, ["--n", "1"]) == 3
    assert run_command(parser(), lambda args: None, []) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("exc", [ValueError("--n must be positive, got -1"),
                                 FileNotFoundError("no checkpoint in 'runs/x'")])
def test_user_mistake_is_one_error_line_and_exit_2(exc, capsys):
    assert run_command(parser(), raising(exc), []) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {exc}\n" and captured.out == ""
    assert "Traceback" not in captured.err


def test_extra_user_errors_are_named_by_the_command(capsys):
    class Diverged(RuntimeError):
        pass

    assert run_command(parser(), raising(Diverged("loss is nan")), [], user_errors=(Diverged,)) == 2
    assert capsys.readouterr().err == "error: loss is nan\n"
    with pytest.raises(Diverged):  # not named: a bug, so it keeps its traceback
        run_command(parser(), raising(Diverged("loss is nan")), [])


def test_ctrl_c_exits_130_with_a_short_message(capsys):
    assert run_command(parser(), raising(KeyboardInterrupt()), []) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "\ninterrupted\n"
    assert run_command(parser(), raising(KeyboardInterrupt()), [], interrupted="stopped, nothing saved") == 130
    assert capsys.readouterr().err == "\nstopped, nothing saved\n"


def test_bugs_still_raise():
    with pytest.raises(IndexError):
        run_command(parser(), raising(IndexError("list index out of range")), [])
    with pytest.raises(SystemExit) as info:  # the command's own sys.exit() is left alone
        run_command(parser(), raising(SystemExit(0)), [])
    assert info.value.code == 0


def test_argparse_exit_codes_are_returned(capsys):
    assert run_command(parser(), raising(AssertionError("not run")), ["--help"]) == 0
    assert "usage: fake" in capsys.readouterr().out
    assert run_command(parser(), raising(AssertionError("not run")), ["--n", "x"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_no_traceback_in_a_real_process():
    code = ("import sys, argparse\n"
            "from minichinchilla.cli import run_command\n"
            "def run(args): raise ValueError('the file ' + repr(args.path) + ' is empty')\n"
            "p = argparse.ArgumentParser(); p.add_argument('path')\n"
            "sys.exit(run_command(p, run))\n")
    proc = subprocess.run([sys.executable, "-c", code, "data.txt"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr == "error: the file 'data.txt' is empty\n" and proc.stdout == ""
