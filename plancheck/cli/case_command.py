"""``plancheck case init PATH`` (draft a case file from an export) and ``plancheck case
check FILE`` (validate one, naming the line of each problem).

Exit codes: 0 done / valid (fields left empty are listed, not errors); 2 usage (the case
file exists and ``--force`` was not given); 3 unusable input (an export that cannot be read,
a case file that does not validate, or one that names plans or structures the export given
with ``--export`` does not have).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from pathlib import Path

from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.output import write_all_atomically
from plancheck.errors import UsageError

__all__ = ["register", "run_case_init", "run_case_check", "default_case_path"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "case",
        help="write a case file (clinical context) from an export, or check one",
        description="The case file (case.yaml) holds what DICOM does not: histology, every lesion, systemic "
                    "therapy, restaging, and which plans are courses. 'case init' drafts one from an export; "
                    "'case check' validates one. Reference: docs/case-file.md.",
    )
    actions = p.add_subparsers(dest="case_action", metavar="ACTION", parser_class=type(p))  # usage errors exit 2
    init = actions.add_parser(
        "init", help="draft case.yaml from an export (plans, targets, dates), with placeholders for the clinician",
        description="Write a case file drafted from the export: the courses with their technique from the numbers, "
                    "the primary target, the targets named like metastases (as a commented template), and null "
                    "placeholders (marked FILL IN) for what only the clinician knows. Guesses are marked CONFIRM. "
                    "A null field makes the rules that need it NOT EVALUATED, never PASS.")
    init.add_argument("paths", nargs="+", metavar="PATH", help="export directory, DICOM files, or a .zip")
    init.add_argument("--output", metavar="FILE",
                      help="where to write it (default: case.yaml in the export folder, where 'plancheck check' "
                           "finds it); '-' prints it")
    init.add_argument("--force", action="store_true", help="replace an existing case file")
    init.set_defaults(handler=run_case_init)
    check = actions.add_parser(
        "check", help="validate a case file; list empty fields and lines still to confirm",
        description="Validate a case file: every problem with its line. Lists the fields still empty (the rules "
                    "that need them are NOT EVALUATED) and the lines still marked CONFIRM; with --export, checks "
                    "that the plans and structures it names are in the export.")
    check.add_argument("file", metavar="FILE", help="the case file (YAML or JSON)")
    check.add_argument("--export", nargs="+", metavar="PATH", help="the export it belongs to")
    check.set_defaults(handler=run_case_check)
    p.set_defaults(handler=lambda args: _no_action(p))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return ExitCode.USAGE_ERROR


def default_case_path(paths: list[str]) -> Path:
    """``case.yaml`` in the export folder (next to a file or zip): where ``plancheck check`` looks."""
    first = Path(paths[0])
    return (first if first.is_dir() else first.parent) / "case.yaml"


def run_case_init(args: argparse.Namespace) -> int:
    from plancheck.analysis.case_draft import draft_case_file
    from plancheck.dicom import read_export

    target = None if args.output == "-" else Path(args.output) if args.output else default_case_path(args.paths)
    if target is not None and target.exists() and not args.force:
        raise UsageError(f"{target} exists; give --force to replace it, or --output FILE")
    export = read_export(args.paths if len(args.paths) > 1 else args.paths[0])
    text = draft_case_file(export, source=shlex.join(args.paths))
    if target is None:
        sys.stdout.write(text)
        return ExitCode.OK
    write_all_atomically({target: text})
    fill = text.count("# FILL IN")
    confirm = sum(1 for line in text.splitlines() if "# CONFIRM" in line and not line.lstrip().startswith("#"))
    print(f"wrote {target}: {len(export.courses)} course(s); {confirm} value(s) to CONFIRM, {fill} to FILL IN.")
    print(f"Next: edit it, then  plancheck case check {shlex.quote(str(target))} --export {shlex.join(args.paths)}")
    return ExitCode.OK


def run_case_check(args: argparse.Namespace) -> int:
    from plancheck.analysis.case_draft import check_case_file
    from plancheck.dicom import read_export

    export = None
    if args.export:
        export = read_export(args.export if len(args.export) > 1 else args.export[0])
    result = check_case_file(args.file, export)
    if result.errors:
        for line, message in result.errors:
            where = f"{args.file}, line {line}" if line else args.file
            print(f"plancheck: case file {where}: {message}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    for problem in result.mismatches:
        print(f"plancheck: case file {args.file}, {problem}", file=sys.stderr)
    if result.mismatches:
        return ExitCode.INPUT_ERROR
    print(f"{args.file}: valid" + (" and consistent with the export" if export is not None else ""))
    if result.empty:
        print(textwrap.fill(f"still empty (the rules that need them are NOT EVALUATED): {', '.join(result.empty)}",
                            width=100, initial_indent="  ", subsequent_indent="    ", break_long_words=False))
    if result.to_confirm:
        print(f"  still marked CONFIRM: line(s) {', '.join(map(str, result.to_confirm))}")
    return ExitCode.OK
