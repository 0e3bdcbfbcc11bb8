"""The ``syncd`` command: the only place where exceptions become exit codes.

- :mod:`syncd.cli._commands`: the parser and the commands that act (validate, plan, apply, run,
  retry, adopt).
- :mod:`syncd.cli._reports`: the commands that only read the state and print it (status,
  failures, leavers, addresses).
"""

from syncd.cli._commands import build_parser, main

__all__ = ["build_parser", "main"]
