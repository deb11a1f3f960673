"""``plancheck fractionation``: each course's prescription, BED₁₀, EQD2₁₀ and regime."""

from __future__ import annotations

import argparse
import json
import sys

from plancheck import __version__
from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.plan_option import add_plan_option

__all__ = ["register", "run_fractionation"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fractionation", help="prescription, fractions, BED10, EQD2(10) and regime of each course")
    p.add_argument("paths", nargs="+", metavar="PATH", help="export directory, DICOM files, or a .zip")
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_plan_option(p)
    p.set_defaults(handler=run_fractionation)


def run_fractionation(args: argparse.Namespace) -> int:
    from plancheck.analysis.check_treatment import selection_for
    from plancheck.dicom import read_export
    from plancheck.analysis.fractionation import course_fractionation
    from plancheck.report.sanitize import markup_safe

    # the plan alone is enough: a plan without its dose (or structure set) is listed without D95%;
    # nothing is summed, so alternative plans are shown side by side
    export = read_export(args.paths if len(args.paths) > 1 else args.paths[0], require_dose=False,
                         alternatives="keep", plans=selection_for(None, None, args.plan))
    order = {p.sop_instance_uid: k for k, p in enumerate(
        sorted([c.plan for c in export.courses] + [p.plan for p in export.plans_without_dose], key=lambda p: p.path))}
    rows = sorted((course_fractionation(c) for c in (*export.courses, *export.plans_without_dose)),
                  key=lambda r: order.get(r.sop_instance_uid, 0))
    if args.format == "json":
        doc = {
            "plancheck_version": __version__,
            "alpha_beta_gy": 10.0,
            "courses": [
                {
                    "label": r.label,
                    "sop_instance_uid": r.sop_instance_uid,
                    "prescription_gy": r.prescription_gy,
                    "fractions": r.fractions,
                    "dose_per_fraction_gy": r.summary.dose_per_fraction_gy if r.summary else None,
                    "bed10_gy": r.summary.bed10_gy if r.summary else None,
                    "eqd2_10_gy": r.summary.eqd2_10_gy if r.summary else None,
                    "regime": r.summary.regime.value if r.summary else None,
                    "target": r.target_roi,
                    "target_d95_gy": r.target_d95_gy,
                    "dose_type": r.dose_type,
                    "remarks": list(r.remarks),
                }
                for r in rows
            ],
            "left_out": [{"label": p.label, "sop_instance_uid": p.uid, "reason": p.reason} for p in export.left_out],
            "notes": list(export.course_notes),
        }
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    console = Console(color_system=None if not sys.stdout.isatty() else "standard", width=140)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col, just in (("Course", "left"), ("Rx [Gy]", "right"), ("Fractions", "right"), ("Gy/fx", "right"),
                      ("BED10 [Gy]", "right"), ("EQD2(10) [Gy]", "right"), ("Regime", "left"), ("Target", "left"), ("D95% [Gy]", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        s = r.summary
        table.add_row(
            markup_safe(r.label), f"{r.prescription_gy:g}" if r.prescription_gy else "—", str(r.fractions or "—"),
            f"{s.dose_per_fraction_gy:.3g}" if s else "—", f"{s.bed10_gy:.2f}" if s else "—",
            f"{s.eqd2_10_gy:.2f}" if s else "—", s.regime.value if s else "—", markup_safe(r.target_roi or "—"),
            f"{r.target_d95_gy:.2f}" if r.target_d95_gy is not None else "—",
        )
    console.print(table)
    for r in rows:
        for remark in r.remarks:
            console.print(markup_safe(f"  {r.label}: {remark}"), highlight=False)
    for plan in export.left_out:
        console.print(markup_safe(f"  {plan.describe()}"), highlight=False)
    for note in export.course_notes:
        console.print(markup_safe(f"  note: {note}"), highlight=False)
    console.print("Regimes: conventional 1.8–2.2 Gy/fx; SBRT ≥4 Gy/fx in ≤12 fx (or declared in the case file); moderately hypofractionated >2.2–<5 Gy/fx otherwise. α/β = 10 Gy.", highlight=False)
    return ExitCode.OK
