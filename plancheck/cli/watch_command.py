"""``plancheck watch``: check each patient's treatment as a planning system exports it to a folder.

Runs until SIGINT or SIGTERM. Logs (UIDs and plan labels only, never patient names) go to
standard error or ``--log-file``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from plancheck.cli.exit_codes import ExitCode
from plancheck.errors import UsageError
from plancheck.cli.defaults import DEFAULT_PROTOCOL

__all__ = ["register", "run_watch"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="check each patient's treatment as it is exported to a folder",
        description="Watch DIR (the folder a planning system exports to) and check every patient's treatment "
                    "(all plans of one patient in one frame of reference) once its export is complete and "
                    "stable: each file unchanged for --settle seconds and whole, every course with its structure "
                    "set and dose. Reports go to REPORTS/<patient key>/<treatment id>/<time>_<version>/ with a "
                    "line per check in REPORTS/checks.jsonl; a version already checked is not checked again, also after a "
                    "restart. Use --poll on network file systems (SMB, NFS), where change events do not arrive.",
    )
    p.add_argument("folder", metavar="DIR", help="the export folder to watch (searched recursively)")
    p.add_argument("--reports", required=True, metavar="DIR", help="folder for reports (not inside DIR)")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="ID_OR_FILE",
                   help=f"protocol id or file (default {DEFAULT_PROTOCOL})")
    p.add_argument("--poll", action="store_true", help="poll the folder instead of waiting for change events "
                                                       "(network file systems)")
    p.add_argument("--poll-interval", type=float, default=2.0, metavar="S", help="seconds between polls (default 2)")
    p.add_argument("--settle", type=float, default=5.0, metavar="S",
                   help="seconds a file must stay unchanged before it is used (default 5)")
    p.add_argument("--incomplete-after", type=float, default=600.0, metavar="S",
                   help="record a treatment still incomplete after S quiet seconds as ERROR (default 600)")
    p.add_argument("--no-html", action="store_true", help="write JSON reports only")
    p.add_argument("--log-file", metavar="FILE", help="append the log to FILE instead of standard error")
    p.set_defaults(handler=run_watch)


def run_watch(args: argparse.Namespace) -> int:
    from plancheck.watch import WatchOptions, watch

    folder, reports = Path(args.folder), Path(args.reports)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    if reports.resolve().is_relative_to(folder.resolve()):
        raise UsageError(f"--reports {reports} is inside the watched folder {folder}; choose another folder")
    for option, value in (("--settle", args.settle), ("--poll-interval", args.poll_interval),
                          ("--incomplete-after", args.incomplete_after)):
        if not value > 0:
            raise UsageError(f"{option} {value:g}: must be > 0")
    from plancheck.rules.runner import protocol_for_check

    protocol = protocol_for_check(args.protocol)
    options = WatchOptions(settle_s=args.settle, incomplete_after_s=args.incomplete_after,
                           formats=("json",) if args.no_html else ("json", "html"))
    handler: logging.Handler = (logging.FileHandler(args.log_file, encoding="utf-8") if args.log_file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("plancheck")
    logger.addHandler(handler)
    level_before, propagate_before = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    logger.propagate = False
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        watch(folder, reports, protocol, options, stop=stop, poll=args.poll, poll_interval_s=args.poll_interval)
        logging.getLogger("plancheck.cli").info("stopped watching %s", folder)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        logger.removeHandler(handler)
        logger.setLevel(level_before)
        logger.propagate = propagate_before
        handler.close()
    return ExitCode.OK
