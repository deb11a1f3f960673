"""``plancheck`` command line: a thin adapter over the library.

``main(argv) -> int`` is callable from tests; ``run()`` is the console entry point.

A one-shot command (``check``, ``dvh``: ``set_defaults(one_shot=True)``) that has written
its output ends the process without the interpreter's teardown: output flushed and logging
shut down, then ``os._exit`` (freeing the hundreds of megabytes of objects a check leaves,
one by one, took 0.11-0.17 s of a 1.8 s ``plancheck check`` on the sample). The long-running
commands exit the usual way.

Start-up: this module imports only the standard library; the subcommands' modules are
imported when the parser is built (each keeps its own top-level imports light and imports
the library inside its handler), and ``plancheck --version`` answers before any of that.
A new subcommand is a module with ``register(subparsers)``, named in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from plancheck import __version__
from plancheck.cli.exit_codes import ExitCode
from plancheck.errors import InputError, ProtocolError, UsageError

__all__ = ["main", "run", "build_parser", "COMMAND_MODULES"]

COMMAND_MODULES = ("check_command", "case_command", "dvh_command", "fractionation_command", "protocols_command",
                   "serve_command", "batch_command", "watch_command")
"""The subcommands' modules in :mod:`plancheck.cli`, in the order ``--help`` lists them."""


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """:func:`plancheck.report.sanitize.printable`, imported on first use (start-up stays light)."""
    from plancheck.report.sanitize import printable as _printable

    return _printable(text, keep_newlines=keep_newlines)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 2 without printing a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plancheck", description="Check a radiotherapy plan export (DICOM RT) before approval.")
    parser.add_argument("--version", action="version", version=f"plancheck {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"plancheck.cli.{name}").register(sub)
    return parser


class _SafeFormatter(logging.Formatter):
    """Log lines for the terminal: control characters from the input (ROI names, file names)
    shown as visible escapes; tracebacks only with ``--debug``."""

    def __init__(self, debug: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.debug = debug

    def formatException(self, ei) -> str:  # type: ignore[override]
        return super().formatException(ei) if self.debug else ""

    def formatStack(self, stack_info: str) -> str:
        return super().formatStack(stack_info) if self.debug else ""

    def format(self, record: logging.LogRecord) -> str:
        if not self.debug:
            record.exc_text = None
        return printable(super().format(record).rstrip("\n"), keep_newlines=self.debug)


#: Libraries whose own log messages are shown only with ``--debug`` (plancheck's message says
#: what went wrong; theirs would bury it).
_QUIET_LOGGERS = ("pydicom", "numba", "numexpr", "matplotlib", "PIL", "distributed", "asyncio")


class _WithoutLibraries(logging.Filter):
    """Drops the records of the libraries in :data:`_QUIET_LOGGERS` (their levels alone are
    not enough: pydicom sets its logger's level when it is first imported, which the lazy
    start-up makes happen after the logging is configured)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] not in _QUIET_LOGGERS


def _configure_logging(debug: bool) -> list[tuple[logging.Logger, int]]:
    """Log to stderr through :class:`_SafeFormatter`; returns the library loggers' previous
    levels (restored after the command, so that :func:`main` leaves no trace in a test process)."""
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    for handler in root.handlers:
        if handler not in before:
            handler.setFormatter(_SafeFormatter(debug))
            if not debug:
                handler.addFilter(_WithoutLibraries())
    changed = []
    if not debug:
        for name in _QUIET_LOGGERS:
            logger = logging.getLogger(name)
            changed.append((logger, logger.level))
            logger.setLevel(logging.CRITICAL + 1)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Run plancheck with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Without ``--debug`` nothing but plancheck's own messages reaches stderr: no traceback,
    no warning of a library (pydicom, numpy, numba); every message shows control characters
    from the input as visible escapes (:func:`plancheck.report.sanitize.printable`).
    """
    _ONE_SHOT.clear()
    given = list(argv if argv is not None else sys.argv[1:])
    if given == ["--version"]:  # answered before the subcommands are imported
        print(f"plancheck {__version__}")
        return ExitCode.OK
    parser = build_parser()
    debug = "--debug" in given
    quiet = _configure_logging(debug)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            return _run(parser, argv, debug)
    finally:
        for logger, level in quiet:
            logger.setLevel(level)


def _say(text: str) -> None:
    print(printable(text, keep_newlines=True), file=sys.stderr)


_ONE_SHOT: list[bool] = []
"""Set (by :func:`_run`) when the command that ran is a one-shot command (see the module docstring)."""


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, debug: bool) -> int:
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return ExitCode.USAGE_ERROR
        if getattr(args, "one_shot", False):
            _ONE_SHOT.append(True)
        return int(args.handler(args))
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except UsageError as exc:
        _say(f"plancheck: error: {exc}")
        return ExitCode.USAGE_ERROR
    except (InputError, ProtocolError) as exc:
        _say(f"plancheck: unusable input: {exc}")
        return ExitCode.INPUT_ERROR
    except KeyboardInterrupt:
        _say("plancheck: interrupted")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if debug:
            traceback.print_exc()
        _say(f"plancheck: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details")
        return ExitCode.INTERNAL_ERROR


def run() -> None:
    """Console-script entry point."""
    code = main()
    if _ONE_SHOT:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """End a one-shot command's process without the interpreter's teardown (see the module
    docstring): its output is flushed first, and logging shut down (its own exit handler)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the usual exit would not write it either
            pass
    logging.shutdown()
    os._exit(code)
