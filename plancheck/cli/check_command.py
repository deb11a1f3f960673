"""``plancheck check``: evaluate a protocol's rules on an export and report.

Exit codes (see :class:`plancheck.cli.exit_codes.ExitCode`): 0 nothing failed,
1 a rule FAILED or could not run (ERROR), 2 usage, 3 unusable input (export,
protocol or case file), 4 with ``--strict`` when nothing failed but a rule was
NOT EVALUATED.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import TYPE_CHECKING

from plancheck.cli.defaults import DEFAULT_PROTOCOL
from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.output import write_all_atomically
from plancheck.cli.plan_option import add_plan_option
from plancheck.cli.volume_model_option import add_volume_model_option
from plancheck.errors import UsageError

if TYPE_CHECKING:
    from plancheck.rules.runner import CheckReport

__all__ = ["register", "run_check_command", "exit_code_for", "parse_mapping"]

FORMATS = ("text", "json", "html", "junit")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check an export against a protocol (DVH limits, fractionation, integrity)",
        description=(
            "Evaluate every rule of a protocol (plus the plan-integrity rules) on a DICOM RT export and report "
            "PASS / WARN / FAIL / NOT EVALUATED per rule. Exit code: 0 nothing failed, 1 a rule failed, "
            "2 usage error, 3 unusable input, 4 (--strict) a rule could not be evaluated."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="export directory (searched recursively), DICOM files, or a .zip")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="NAME|FILE",
                   help=f"built-in protocol id or a protocol YAML file (default: {DEFAULT_PROTOCOL}; see 'plancheck protocols')")
    p.add_argument("--case", metavar="FILE", help="case file with the clinical context (default: case.yaml in the export "
                   "folder or .zip, else next to it, if any)")
    p.add_argument("--map", action="append", default=[], metavar="STANDARD=ROI",
                   help="use the exported ROI for a protocol structure, e.g. --map SpinalCord=Cord (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    p.add_argument("--output", metavar="FILE", help="write the report to FILE (atomically) instead of standard output")
    p.add_argument("--strict", action="store_true", help="exit with 4 when nothing failed but a rule was NOT EVALUATED")
    p.add_argument("--all", "-v", dest="all_rules", action="store_true",
                   help="text: every rule with its source (default: what needs attention, then a count of the passes)")
    add_volume_model_option(p)
    add_plan_option(p)
    p.set_defaults(handler=run_check_command, one_shot=True)  # exits without teardown (plancheck.cli.main)


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["SpinalCord=Cord", ...]`` → ``{"SpinalCord": "Cord"}``; UsageError on a bad item."""
    out: dict[str, str] = {}
    for item in items:
        standard, sep, roi = item.partition("=")
        if not sep or not standard.strip() or not roi.strip():
            raise UsageError(f"--map {item!r}: expected STANDARD=ROI, e.g. --map SpinalCord=Cord")
        if standard.strip() in out and out[standard.strip()] != roi.strip():
            raise UsageError(f"--map {standard.strip()} given twice ({out[standard.strip()]!r} and {roi.strip()!r})")
        out[standard.strip()] = roi.strip()
    return out


def exit_code_for(report: CheckReport, *, strict: bool = False) -> ExitCode:
    """1 if any rule FAILED or ERRORed; with ``strict``, 4 if none did but one was NOT EVALUATED; else 0."""
    s = report.summary
    if s["fail"] or s["error"]:
        return ExitCode.RULES_FAILED
    if strict and s["not_evaluated"]:
        return ExitCode.NOT_EVALUATED
    return ExitCode.OK


def text_width(stream=None) -> int:
    """Columns of the text report: the terminal's (60–160) on a terminal, else 100."""
    from plancheck.report.check_text import DEFAULT_WIDTH

    stream = stream or sys.stdout
    if not stream.isatty():
        return DEFAULT_WIDTH
    return min(max(shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns, 60), 160)


def run_check_command(args: argparse.Namespace) -> int:
    from plancheck.allocator import keep_freed_memory

    keep_freed_memory()  # a one-shot process (plancheck.allocator)
    from plancheck.analysis.read_ahead import ExportReadAhead
    from plancheck.model.case_files import find_case
    from plancheck.parallel import default_processes

    mapping = parse_mapping(args.map)
    processes = default_processes()
    paths = args.paths if len(args.paths) > 1 else args.paths[0]
    case_path = args.case if args.case else find_case(args.paths)
    # the export is read in a forked process while the protocol and the case file load here
    # (plancheck.analysis.read_ahead); a typo in either is reported without waiting for it
    with ExportReadAhead(paths, case_path, args.plan, enabled=processes > 1) as reading:
        from plancheck.analysis.check_treatment import check_export, read_case, selection_for
        from plancheck.report import FORMATS_WITH_DVH_PLOTS, render_report
        from plancheck.rules.runner import prepare_rules, protocol_for_check

        protocol = protocol_for_check(args.protocol)
        case = read_case(case_path) if case_path else None
        if reading.forked:
            prepare_rules()  # while the child still reads
        export = reading.export(selection_for(case, case_path, args.plan))
    report = check_export(export, protocol, case=case, case_source=str(case_path) if case_path else None,
                          user_mapping=mapping, volume_model=args.volume_model, processes=processes,
                          share_dvhs=args.format in FORMATS_WITH_DVH_PLOTS)
    to_terminal = args.output is None and sys.stdout.isatty()
    color = args.format == "text" and to_terminal
    text = render_report(report, args.format, color=color, all_rules=args.all_rules,
                         width=text_width() if args.output is None else None, export_path=args.paths)
    if args.output:
        write_all_atomically({args.output: text})
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return exit_code_for(report, strict=args.strict)
