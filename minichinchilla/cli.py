"""One error convention for every command line in the package (``python -m minichinchilla ...``).

A command-line tool fails in two different ways, and they need different treatment:

* **The user's mistake**: no checkpoint at that path, a negative ``--temperature``, an output
  folder that is not empty. The fix is on the user's side, so the tool prints ONE line naming
  the problem (and, where there is one, the fix), ``error: <message>`` on stderr, and exits
  with code 2. No traceback: it would say "the program broke" and bury the line that matters.
  In the code, a user mistake is a ``ValueError`` (a bad value) or an ``OSError`` (a file that
  is missing or unreadable), raised with a message written for the user.
* **A bug**: anything else (``IndexError``, ``AttributeError``, ...). It is NOT caught: the
  traceback is exactly what whoever fixes the bug needs.

Two more rules:

* Ctrl-C prints ``interrupted`` and exits with 130, the shell's code for "stopped by SIGINT"
  (128 + signal number 2), instead of a traceback.
* argparse's own exits are kept: 0 after ``--help``, 2 after a malformed flag (argparse has
  printed the usage and the reason). They are *returned*, not raised, so ``main(argv)`` can be
  called from a test or a notebook and always hands back an exit code.

Exit codes, then: 0 done, 2 a user mistake, 130 interrupted (and 1 where the work itself
failed, e.g. ``book build`` on sources that do not build). Every entry point has this shape::

    def main(argv=None) -> int:
        return run_command(build_parser(), _run, argv)

    def _run(args) -> int:  # the command itself: raises ValueError on bad input
        ...
        return 0

    if __name__ == "__main__":
        sys.exit(main())

A command whose own exceptions also mean "bad input" names them, e.g.
``run_command(parser, _run, argv, user_errors=(TrainingDiverged,))``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .backend import get_backend

EXIT_USAGE = 2  # a user mistake (argparse uses 2 for a malformed flag too)
EXIT_INTERRUPTED = 130  # the shell convention for "stopped by SIGINT" (128 + 2)
USER_ERRORS = (ValueError, OSError)  # what every command treats as the user's mistake


def error(message) -> int:
    """Print ``error: <message>`` on stderr and return the exit code of a user mistake (2)."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_command(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], int | None],
                argv=None, *, user_errors: tuple = (), interrupted: str = "interrupted") -> int:
    """Parse `argv` with `parser`, run ``command(args)`` and return its exit code.

    ``--help`` and malformed flags return argparse's code; ``ValueError``, ``OSError`` and the
    `user_errors` become one ``error: ...`` line on stderr and 2; Ctrl-C prints `interrupted`
    on stderr and returns 130. Anything else is a bug and propagates with its traceback (so
    does a ``SystemExit`` raised by `command` itself). ``None`` from `command` means 0.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a malformed flag (argparse printed why)
        return _exit_code(exit_)
    try:
        get_backend()  # MINICHINCHILLA_BACKEND is read here, before any work: a bad one is one error line
        code = command(args)
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)  # \n: the cursor may be mid-line (progress, sample)
        return EXIT_INTERRUPTED
    except (*USER_ERRORS, *user_errors) as err:
        return error(err)
    return 0 if code is None else code


def _exit_code(exit_: SystemExit) -> int:
    """The process exit code a `SystemExit` stands for (argparse always uses 0 or 2)."""
    if exit_.code is None:
        return 0
    return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
