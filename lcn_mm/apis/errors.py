"""Bad input -> one clear line on stderr and exit code 2, for the command-line tools.

The tools run their ``main`` through :func:`run_cli`. Errors raised by :class:`UserInputError`
and the usual suspects of bad input (missing/malformed configs, unknown norm types, group
counts that do not divide channels, unreadable images or checkpoints, non-finite values caught
by ``LCN(check_finite=True)``) are printed as ``error: <message>`` without a traceback;
``--debug`` or ``LCN_MM_DEBUG=1`` shows the traceback. Anything else (a bug, not bad input)
keeps its full traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, Optional

__all__ = ['UserInputError', 'run_cli', 'one_line', 'EXIT_BAD_INPUT']

#: Exit status for bad input (argparse uses 2 for bad arguments as well).
EXIT_BAD_INPUT = 2


class UserInputError(Exception):
    """Bad input (file, config, option) that the user can fix; reported without a traceback."""


#: Exception classes reported as bad input even when not wrapped in UserInputError.
_INPUT_ERRORS = (UserInputError, FileNotFoundError, IsADirectoryError, PermissionError,
                 FloatingPointError)


def _debug_requested(argv: Iterable[str]) -> bool:
    return '--debug' in argv or os.environ.get('LCN_MM_DEBUG', '') not in ('', '0')


def one_line(exc: BaseException, limit: int = 600) -> str:
    msg = ' '.join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError) and msg.startswith("'") and msg.endswith("'"):
        msg = msg[1:-1]  # KeyError reprs its message
    return msg if len(msg) <= limit else msg[:limit] + ' ...'


def run_cli(main: Callable[[], Any], argv: Optional[list] = None) -> None:
    """Call ``main()``; report bad input as one line and exit with :data:`EXIT_BAD_INPUT`."""
    argv = sys.argv[1:] if argv is None else argv
    if _debug_requested(argv):
        main()
        return
    try:
        main()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        raise SystemExit(130)
    except _INPUT_ERRORS as exc:
        print(f'error: {one_line(exc)}', file=sys.stderr)
        print('(rerun with --debug or LCN_MM_DEBUG=1 for the traceback)', file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
