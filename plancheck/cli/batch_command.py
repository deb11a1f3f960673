"""``plancheck batch``: check every plan of an archive, in parallel, with a summary table.

Exit codes (as ``plancheck check``, over all plans): 0 every plan was checked and no rule
FAILED or ERRORed; 1 a rule FAILED or ERRORed in some plan; 3 at least one plan could not be
checked at all (its ERROR row says why) or no plan was found; 2 invalid options.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from plancheck.cli.defaults import DEFAULT_PROTOCOL
from plancheck.cli.exit_codes import ExitCode
from plancheck.errors import UsageError

__all__ = ["register", "run_batch_command"]

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "NOT_EVALUATED": "magenta", "ERROR": "bold red"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="check every plan under a folder in parallel; summary table as CSV and Parquet",
        description="Find every RT Plan under ROOT (any folder layout, any number of patients; files are "
                    "grouped by their DICOM headers), check each in worker processes, and write per-plan "
                    "reports under REPORTS/<patient key>/<plan UID>/ plus REPORTS/summary.csv and "
                    "summary.parquet (one row per plan and rule; patients appear only as a salted hash). "
                    "Plans whose reports are newer than their files are skipped unless --force.",
        epilog="exit codes: 0 all plans checked, no rule failed; 1 a rule FAILED or ERRORed; 3 a plan could "
               "not be checked or no plan found; 2 invalid options",
    )
    p.add_argument("root", metavar="ROOT", help="folder to search recursively")
    p.add_argument("--reports", required=True, metavar="DIR", help="output folder")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="ID_OR_FILE",
                   help=f"protocol id or file (default {DEFAULT_PROTOCOL})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes (default: one per CPU; 0 runs in this process)")
    p.add_argument("--html", action="store_true", help="also write an HTML report per plan")
    p.add_argument("--force", action="store_true", help="check every plan again, even if its reports are current")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask distributed scheduler, e.g. tcp://scheduler:8786 "
                                                     "(workers need the same paths)")
    p.set_defaults(handler=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from plancheck.batch import BatchOptions, run_batch
    from plancheck.rules.runner import protocol_for_check

    if args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 or more")
    protocol = protocol_for_check(args.protocol)
    options = BatchOptions(workers=args.workers, html=args.html, force=args.force, dask_address=args.dask,
                           worker_log_level=logging.DEBUG if args.debug else logging.ERROR)
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]checking plans"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = None

    def on_start(found: int, todo: int) -> None:
        nonlocal task
        console.print(f"{found} plan(s) found, {found - todo} with current reports, {todo} to check "
                      f"({'Dask ' + args.dask if args.dask else f'{args.workers} worker(s)'})")
        task = progress.add_task("check", total=found, last="")
        progress.start()

    def on_result(result) -> None:
        if task is not None:
            shown = "resumed" if result.skipped else result.status
            progress.update(task, advance=1, last=f"{result.plan_label or result.plan_uid[-12:]}: {shown}")

    try:
        outcome = run_batch(args.root, args.reports, protocol, options, on_start=on_start, on_result=on_result)
    finally:
        progress.stop()

    table = Table(title=f"plancheck batch: {len(outcome.results)} plan(s), protocol {protocol.id} {protocol.version}")
    for column in ("plan", "patient key", "status", "findings", "s"):
        table.add_column(column, justify="right" if column == "s" else "left")
    for r in outcome.results:
        counts = ", ".join(f"{v} {k}" for k, v in r.summary.items() if v) if r.summary else (r.error or "")[:80]
        table.add_row(r.plan_label or r.plan_uid, r.patient_key, f"[{_STYLE.get(r.status, '')}]{r.status}[/]",
                      counts, "resumed" if r.skipped else f"{r.elapsed_s:.1f}")
    Console(file=sys.stdout).print(table)
    checked = outcome.checked + outcome.errors
    rate = 60.0 * checked / outcome.elapsed_s if outcome.elapsed_s > 0 and checked else 0.0
    console.print(f"checked {outcome.checked}, resumed {outcome.resumed}, could not check {outcome.errors} in "
                  f"{outcome.elapsed_s:.1f} s ({rate:.0f} plans/min); summary: "
                  + ", ".join(str(p) for p in outcome.summary_files))
    if outcome.errors:
        return ExitCode.INPUT_ERROR
    if any(r.summary.get("fail") or r.summary.get("error") for r in outcome.results):
        return ExitCode.RULES_FAILED
    return ExitCode.OK
