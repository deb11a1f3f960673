"""``plancheck`` command line: a thin adapter over the library.

``main(argv) -> int`` is callable from tests; ``run()`` is the console entry point.

Start-up: this module imports only the standard library; the subcommands' modules are
imported when the parser is built (each keeps its own top-level imports light and imports
the library inside its handler), and ``plancheck --version`` answers before any of that.
A new subcommand is a module with ``register(subparsers)``, named in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from plancheck import __version__
from plancheck.cli.exit_codes import ExitCode
from plancheck.errors import InputError, ProtocolError, UsageError

__all__ = ["main", "run", "build_parser", "COMMAND_MODULES"]

COMMAND_MODULES = ("check_command", "case_command", "dvh_command", "fractionation_command", "protocols_command",
                   "serve_command", "batch_command")
"""The subcommands' modules in :mod:`plancheck.cli`, in the order ``--help`` lists them."""


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run plancheck with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    given = list(argv if argv is not None else sys.argv[1:])
    if given == ["--version"]:  # answered before the subcommands are imported
        print(f"plancheck {__version__}")
        return ExitCode.OK
    parser = build_parser()
    debug = "--debug" in given
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return ExitCode.USAGE_ERROR
        return int(args.handler(args))
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except UsageError as exc:
        print(f"plancheck: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except (InputError, ProtocolError) as exc:
        print(f"plancheck: unusable input: {exc}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except KeyboardInterrupt:
        print("plancheck: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if debug:
            traceback.print_exc()
        print(f"plancheck: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
