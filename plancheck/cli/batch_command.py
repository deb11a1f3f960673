"""``plancheck batch``: check every treatment of an archive, in parallel, with a summary table.

A treatment is every plan of one patient in one frame of reference, checked once with all
its courses (as ``plancheck check`` checks an export). Exit codes (as ``plancheck check``,
over all treatments): 0 every treatment was checked and no rule FAILED or ERRORed; 1 a rule
FAILED or ERRORed in some treatment; 3 at least one treatment could not be checked at all
(its ERROR row says why) or no plan was found; 2 invalid options.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from plancheck.cli.defaults import DEFAULT_PROTOCOL
from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.plan_option import add_plan_option
from plancheck.errors import UsageError

__all__ = ["register", "run_batch_command"]

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "NOT_EVALUATED": "magenta", "ERROR": "bold red"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="check every patient's treatment under a folder in parallel; summary table as CSV and Parquet",
        description="Find every treatment under ROOT (every plan of one patient in one frame of reference; any "
                    "folder layout, any number of patients, .zip exports too; files are grouped by their DICOM "
                    "headers), check each with all its courses in a worker process of its own, and write "
                    "per-treatment reports under REPORTS/<patient key>/<treatment id>/ plus REPORTS/summary.csv "
                    "and summary.parquet (one row per treatment and rule, naming its plans; patients appear only "
                    "as a salted hash). Alternative plans of one case are checked as separate treatments. "
                    "Treatments whose reports are newer than their files are skipped unless --force.",
        epilog="exit codes: 0 all treatments checked, no rule failed; 1 a rule FAILED or ERRORed; 3 a treatment "
               "could not be checked or no plan found; 2 invalid options",
    )
    p.add_argument("root", metavar="ROOT", help="folder to search recursively")
    p.add_argument("--reports", required=True, metavar="DIR", help="output folder")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="ID_OR_FILE",
                   help=f"protocol id or file (default {DEFAULT_PROTOCOL})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes (default: one per CPU; 0 runs in this process)")
    p.add_argument("--html", action="store_true", help="also write an HTML report per treatment")
    p.add_argument("--force", action="store_true", help="check every treatment again, even if its reports are current")
    p.add_argument("--time-limit", type=float, default=600.0, metavar="S",
                   help="stop a treatment's check after S seconds and report it as ERROR (default 600; 0: no limit)")
    p.add_argument("--memory-limit", type=float, default=4096.0, metavar="MB",
                   help="stop a treatment's check when its worker holds more than MB of its own memory "
                        "(default 4096; 0: no limit)")
    add_plan_option(p, batch=True)
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask distributed scheduler, e.g. tcp://scheduler:8786 "
                                                     "(workers need the same paths)")
    p.set_defaults(handler=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from plancheck.batch import BatchOptions, JobLimits, run_batch
    from plancheck.batch.summary import SKIPPED_NAME
    from plancheck.report.sanitize import markup_safe
    from plancheck.rules.runner import protocol_for_check

    if args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 or more")
    for option, value in (("--time-limit", args.time_limit), ("--memory-limit", args.memory_limit)):
        if not value >= 0:
            raise UsageError(f"{option} {value:g}: give 0 (no limit) or more")
    protocol = protocol_for_check(args.protocol)
    limits = JobLimits(time_limit_s=args.time_limit or None, memory_limit_mb=args.memory_limit or None)
    options = BatchOptions(workers=args.workers, html=args.html, force=args.force, dask_address=args.dask,
                           worker_log_level=logging.DEBUG if args.debug else logging.ERROR, limits=limits,
                           plans=tuple(args.plan))
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]checking plans"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = None

    def on_start(found: int, todo: int) -> None:
        nonlocal task
        console.print(f"{found} treatment(s) found, {found - todo} with current reports, {todo} to check "
                      f"({'Dask ' + args.dask if args.dask else f'{args.workers} worker(s)'})")
        task = progress.add_task("check", total=found, last="")
        progress.start()

    def on_result(result) -> None:
        if task is not None:
            shown = "resumed" if result.skipped else result.status
            plans = " + ".join(result.plan_labels) or result.treatment_id[-12:]
            progress.update(task, advance=1, last=f"{plans}: {shown}")

    try:
        outcome = run_batch(args.root, args.reports, protocol, options, on_start=on_start, on_result=on_result)
    finally:
        progress.stop()

    table = Table(title=f"plancheck batch: {len(outcome.results)} treatment(s), protocol {protocol.id} {protocol.version}")
    for column in ("plans (courses)", "patient key", "status", "findings", "s"):
        table.add_column(column, justify="right" if column == "s" else "left")
    for r in outcome.results:
        counts = ", ".join(f"{v} {k}" for k, v in r.summary.items() if v) if r.summary else (r.error or "")[:80]
        table.add_row(markup_safe(" + ".join(r.plan_labels) or r.treatment_id), r.patient_key,
                      f"[{_STYLE.get(r.status, '')}]{r.status}[/]", markup_safe(counts),
                      "resumed" if r.skipped else f"{r.elapsed_s:.1f}")
    Console(file=sys.stdout).print(table)
    checked = outcome.checked + outcome.errors
    rate = 60.0 * checked / outcome.elapsed_s if outcome.elapsed_s > 0 and checked else 0.0
    console.print(f"checked {outcome.checked}, resumed {outcome.resumed}, could not check {outcome.errors} in "
                  f"{outcome.elapsed_s:.1f} s ({rate:.0f} treatments/min); summary: "
                  + ", ".join(str(p) for p in outcome.summary_files))
    if outcome.skipped:
        console.print(f"{len(outcome.skipped)} file(s) passed over, each with its reason in "
                      f"{markup_safe(Path(args.reports) / SKIPPED_NAME)}, e.g.:", highlight=False)
        for path, reason in outcome.skipped[:5]:
            console.print(f"  {markup_safe(path)}: {markup_safe(reason)}", highlight=False)
    if outcome.errors:
        return ExitCode.INPUT_ERROR
    if any(r.summary.get("fail") or r.summary.get("error") for r in outcome.results):
        return ExitCode.RULES_FAILED
    return ExitCode.OK
