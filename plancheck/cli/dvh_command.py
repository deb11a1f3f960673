"""``plancheck dvh``: DVHs and TG-263 metrics of every structure of every plan."""

from __future__ import annotations

import argparse
import sys

from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.plan_option import add_plan_option
from plancheck.cli.volume_model_option import add_volume_model_option, apply_volume_model
from plancheck.cli.output import check_writable, write_all_atomically
from plancheck.errors import UsageError

__all__ = ["register", "run_dvh", "parse_alpha_beta_for"]

_KINDS = {"physical": "PHYSICAL", "eqd2": "EQD2", "bed": "BED"}  # option → DoseKind member


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dvh",
        help="DVHs and DVH metrics of every structure of every plan",
        description="Compute DVHs and AAPM TG-263 metrics (e.g. D95%%[Gy], V20Gy[%%], D0.03cc[Gy]) for an export.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="export directory (searched recursively), DICOM files, or a .zip")
    p.add_argument("--structure", action="append", metavar="NAME", help="report only this structure (repeatable)")
    p.add_argument("--metric", action="append", metavar="METRIC", help="TG-263 metric, e.g. 'D95%%[Gy]' (repeatable; default: a standard set)")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--output", metavar="FILE", help="write the table to FILE instead of standard output")
    p.add_argument("--engine", choices=("plancheck", "dicompyler"), default="plancheck", help="DVH engine (dicompyler: dicompyler-core's dvhcalc, for comparison)")
    p.add_argument("--curves", metavar="FILE.csv", help="also write the cumulative DVH curves to this CSV file")
    p.add_argument("--dose-kind", choices=tuple(_KINDS), default="physical", help="physical dose, or EQD2/BED converted voxel by voxel")
    p.add_argument("--alpha-beta", type=float, metavar="GY", help="α/β for every structure (default: the α/β table per structure)")
    p.add_argument("--alpha-beta-for", action="append", metavar="NAME=GY", default=[], help="α/β for one structure (repeatable)")
    p.add_argument("--composite", action="store_true", help="sum all courses voxel by voxel (EQD2/BED: each with its own fractions)")
    add_volume_model_option(p)
    add_plan_option(p)
    p.set_defaults(handler=run_dvh, one_shot=True)  # exits without teardown (plancheck.cli.main)


def parse_alpha_beta_for(items: list[str]) -> dict[str, float]:
    """``["SpinalCord=2", ...]`` → ``{"SpinalCord": 2.0}``; UsageError on a bad item."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            ab = float(value)
        except ValueError:
            ab = float("nan")
        if not sep or not name or not ab > 0:
            raise UsageError(f"--alpha-beta-for {item!r}: expected NAME=GY with a positive α/β, e.g. SpinalCord=2")
        out[name] = ab
    return out


def run_dvh(args: argparse.Namespace) -> int:
    from plancheck.allocator import keep_freed_memory

    keep_freed_memory()  # a one-shot process (plancheck.allocator)
    from plancheck.dicom import read_export
    from plancheck.analysis.dvh_tables import DoseKindRequest, dvh_tables
    from plancheck.analysis.check_treatment import selection_for
    from plancheck.radiobiology import DoseKind
    from plancheck.report.dvh_tables import dvh_csv, dvh_curves_csv, dvh_json, dvh_text

    kind = DoseKind[_KINDS[args.dose_kind]]
    if kind is DoseKind.PHYSICAL and (args.alpha_beta is not None or args.alpha_beta_for):
        raise UsageError("--alpha-beta applies to --dose-kind eqd2 or bed")
    if args.alpha_beta is not None and not args.alpha_beta > 0:
        raise UsageError(f"--alpha-beta {args.alpha_beta:g}: α/β must be > 0 Gy")
    per_structure = parse_alpha_beta_for(args.alpha_beta_for)
    for option, path in (("--output", args.output), ("--curves", args.curves)):
        if path:
            check_writable(path, option)
    # per course nothing is summed, so alternative plans are shown side by side; --composite refuses them
    export = apply_volume_model(read_export(args.paths if len(args.paths) > 1 else args.paths[0],
                                            plans=selection_for(None, None, args.plan),
                                            alternatives="refuse" if args.composite else "keep"), args.volume_model)
    per_structure = _resolve_structure_names(export, per_structure)
    request = DoseKindRequest(kind, args.alpha_beta, per_structure)
    tables = dvh_tables(
        export,
        structures=args.structure,
        metrics=args.metric,
        dose_kind=request,
        engine=args.engine,
        composite=args.composite,
    )
    if args.format == "json":
        text = dvh_json(tables) + "\n"
    elif args.format == "csv":
        text = dvh_csv(tables)
    else:
        text = dvh_text(tables, color=args.output is None and sys.stdout.isatty())
    files = {}
    if args.curves:
        files[args.curves] = dvh_curves_csv(tables)
    if args.output:
        files[args.output] = text
    write_all_atomically(files)
    if not args.output:
        sys.stdout.write(text)
    return ExitCode.OK


def _resolve_structure_names(export, per_structure: dict[str, float]) -> dict[str, float]:
    """Map ``--alpha-beta-for`` names to exported ROI names (exact, then ignoring case);
    a name that matches no structure is a usage error, never silently ignored."""
    names = {roi.name for ss in export.structure_sets for roi in ss.rois}
    out = {}
    for given, ab in per_structure.items():
        if given in names:
            out[given] = ab
            continue
        loose = [n for n in names if n.casefold() == given.casefold()]
        if len(loose) != 1:
            raise UsageError(f"--alpha-beta-for {given}: no such structure (available: {', '.join(sorted(names))})")
        out[loose[0]] = ab
    return out
