"""``plancheck serve``: a DICOM node that checks every plan sent to it.

Runs until SIGINT or SIGTERM, then shuts down gracefully: no new associations, active ones
may finish (``--shutdown-timeout``), queued checks are completed. Logs (UIDs only, never
patient names) go to standard error or ``--log-file``.
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

__all__ = ["register", "run_serve"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="receive plans over DICOM (Storage SCP) and check each patient's treatment when complete",
        description="A DICOM Storage SCP: accepts RT Plan, RT Structure Set, RT Dose, CT and MR objects, "
                    "validates and stores them under --store and, when an association is released, checks every "
                    "treatment (all plans of a patient in one frame of reference) whose courses have their "
                    "structure set and dose(s), once per version, writing JSON and HTML reports under "
                    "--reports/<patient key>/<treatment id>/<time>_<version>/ and a line per check in checks.jsonl.",
    )
    p.add_argument("--port", type=int, default=11112, help="TCP port (default 11112; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="listening address (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--ae-title", default="PLANCHECK", help="this node's AE title (default PLANCHECK)")
    p.add_argument("--store", required=True, metavar="DIR", help="folder for received objects")
    p.add_argument("--reports", required=True, metavar="DIR", help="folder for reports")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="ID_OR_FILE",
                   help=f"protocol id or file (default {DEFAULT_PROTOCOL})")
    p.add_argument("--allow-calling-ae", action="append", default=[], metavar="AE",
                   help="accept associations only from this calling AE title (repeatable; default: any)")
    p.add_argument("--max-object-mb", type=float, default=1024.0, metavar="N",
                   help="refuse a single object larger than N MB (default 1024)")
    p.add_argument("--max-store-gb", type=float, default=50.0, metavar="N",
                   help="refuse objects once the store holds N GB (default 50)")
    p.add_argument("--min-free-mb", type=float, default=256.0, metavar="N",
                   help="refuse objects that would leave less than N MB free on the disk (default 256)")
    p.add_argument("--association-timeout", type=float, default=5.0, metavar="S",
                   help="close a connection that has not requested an association after S seconds (default 5)")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                   help="abort an association silent for S seconds (default 60)")
    p.add_argument("--max-pending-per-peer", type=int, default=4, metavar="N",
                   help="connections one address may hold open without sending anything; one more closes the "
                        "oldest of them (default 4)")
    p.add_argument("--parallel-checks", type=int, default=None, metavar="N",
                   help="checks run at the same time at most (default: the CPUs, at most 2)")
    p.add_argument("--no-html", action="store_true", help="write JSON reports only")
    p.add_argument("--log-file", metavar="FILE", help="append the log to FILE instead of standard error")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="S",
                   help="seconds active associations may take to finish at shutdown (default 30)")
    p.set_defaults(handler=run_serve)


class _PrintableFormatter(logging.Formatter):
    """Log lines with control characters from received data (ROI names in check errors)
    shown as visible escapes."""

    def format(self, record: logging.LogRecord) -> str:
        from plancheck.report.sanitize import printable

        return printable(super().format(record), keep_newlines=True)


def _configure_logging(args: argparse.Namespace) -> logging.Handler:
    handler: logging.Handler
    handler = logging.FileHandler(args.log_file, encoding="utf-8") if args.log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("plancheck")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    logger.propagate = False
    # pynetdicom's own log names peers and SOP classes; keep it to problems unless debugging.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    return handler


def run_serve(args: argparse.Namespace) -> int:
    from plancheck.net import Receiver, ReceiverConfig
    from plancheck.rules.runner import protocol_for_check

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: must be 0 to 65535")
    if args.parallel_checks is not None and args.parallel_checks < 1:
        raise UsageError("--parallel-checks must be at least 1")
    for name in ("max_object_mb", "max_store_gb"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    protocol = protocol_for_check(args.protocol)
    config = ReceiverConfig(
        store_dir=Path(args.store), reports_dir=Path(args.reports), protocol=protocol, ae_title=args.ae_title,
        bind=args.bind, port=args.port, allowed_calling_aes=tuple(args.allow_calling_ae),
        max_object_bytes=int(args.max_object_mb * 1e6), max_store_bytes=int(args.max_store_gb * 1e9),
        min_free_bytes=int(max(args.min_free_mb, 0) * 1e6),
        formats=("json",) if args.no_html else ("json", "html"),
        association_timeout_s=args.association_timeout, idle_timeout_s=args.idle_timeout,
        max_pending_per_peer=args.max_pending_per_peer, parallel_checks=args.parallel_checks,
    )
    handler = _configure_logging(args)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: stop.set())
    receiver = Receiver(config)
    try:
        receiver.start()
        logging.getLogger("plancheck.cli").info("protocol %s %s; press Ctrl+C to stop", protocol.id, protocol.version)
        while not stop.wait(0.5):
            pass
        logging.getLogger("plancheck.cli").info("shutting down")
    finally:
        receiver.stop(timeout=args.shutdown_timeout)
        for sig, old in previous.items():
            signal.signal(sig, old)
        logging.getLogger("plancheck").removeHandler(handler)
        handler.close()
    return ExitCode.OK
