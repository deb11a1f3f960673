"""The terminal report of ``plancheck check``: aligned tables per category (rich).

Layout: a header (plans, protocol, case file), the export's warnings, one table
per category (rule, status, measured, limit, structures, courses, message), the
rules that do not apply, a summary line and the confidence legend. Colours mark
the statuses only when asked (the CLI asks only on a terminal).
"""

from __future__ import annotations

import io
import math

from plancheck.model.dose import RBE_WEIGHTED
from plancheck.report.check_json import CONFIDENCE_LEGEND, STATUS_ORDER, group_by_category
from plancheck.report.sanitize import markup_safe, printable
from plancheck.rules.findings import Status
from plancheck.rules.runner import CheckReport

__all__ = ["check_text", "format_value", "status_label", "verdict", "STATUS_STYLE", "plan_line"]

STATUS_STYLE = {
    Status.PASS: "bold green",
    Status.WARN: "bold yellow",
    Status.FAIL: "bold red",
    Status.NOT_EVALUATED: "bold magenta",
    Status.ERROR: "bold white on red",
}


def status_label(status: Status) -> str:
    """``NOT EVALUATED`` rather than ``NOT_EVALUATED`` for people."""
    return status.value.replace("_", " ")


def format_value(value: float | None, unit: str = "") -> str:
    """A measured value for people: 2 decimals (none above 1000 or for a whole number
    of fractions, 3 significant digits below 1), with its unit; ``—`` when not measured."""
    if value is None or not math.isfinite(value):
        return "—"
    a = abs(value)
    if unit == "fx" and value == int(value):
        text = f"{value:.0f}"
    elif a >= 1000:
        text = f"{value:.0f}"
    elif a >= 1 or value == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip() if unit else text


def verdict(report: CheckReport) -> str:
    """``FAILED``, ``NOT FULLY EVALUATED`` or ``PASSED`` (WARNs do not fail a plan)."""
    s = report.summary
    if s["fail"] or s["error"]:
        return "FAILED"
    if s["not_evaluated"]:
        return "NOT FULLY EVALUATED"
    return "PASSED"


def plan_line(info) -> str:
    """``C1_Eso: 60 Gy / 30 fx (2 Gy/fx, conventional), BED10 72 Gy, EQD2(10) 60 Gy``
    (and ``; dose RBE-weighted (EFFECTIVE)`` for an RBE-weighted dose)."""
    weighted = f"; dose {RBE_WEIGHTED}" if info.course.dose.is_rbe_weighted else ""
    if info.summary is not None:
        return f"{info.label}: {info.summary.describe()}{weighted}"
    rx = f"{info.prescription_gy:g} Gy" if info.prescription_gy else "no prescription dose"
    fx = f"{info.fractions} fx" if info.fractions else "fractions not stated"
    return f"{info.label}: {rx} / {fx}{weighted}"


def check_text(report: CheckReport, *, color: bool = False, width: int = 180) -> str:
    """The report as text (with ANSI colours when ``color``)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    escape = markup_safe  # every value from the input: control characters shown, markup literal

    console = Console(record=True, width=width, color_system="standard" if color else None, force_terminal=color,
                      file=io.StringIO(), highlight=False)
    protocol = report.protocol
    console.print(Text(f"plancheck {report.plancheck_version}: plan check", style="bold"))
    courses = report.context.courses
    if courses:
        console.print(Text("Plans:     " + printable(plan_line(courses[0]))))
        for info in courses[1:]:
            console.print(Text("           " + printable(plan_line(info))))
    else:
        console.print(Text("Plans:     none (the export has no plan with a dose)"))
    console.print(Text(printable(f"Protocol:  {protocol.id} version {protocol.version}: {protocol.title}")))
    console.print(Text(printable(f"           chain: {' → '.join(protocol.chain)}")))
    console.print(Text(printable(f"Case file: {report.context.case_source or 'none'}")))
    for k, line in enumerate(report.export.volume_model_descriptions):
        console.print(Text(("Volumes:   " if k == 0 else "           ") + printable(line)))
    for w in report.warnings:
        console.print(Text(printable(f"warning: {w}"), style="yellow" if color else ""))
    console.print()

    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", expand=False)
    table.add_column("Rule", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Measured", justify="right", no_wrap=True)
    table.add_column("Limit", max_width=34)
    table.add_column("Structure(s)", max_width=24)
    table.add_column("Course(s)", max_width=24)
    table.add_column("Source", max_width=26)
    table.add_column("Message", ratio=1, min_width=30)
    for i, (category, findings) in enumerate(group_by_category(list(report.findings))):
        if i:
            table.add_row()
        table.add_row(Text(category.upper(), style="bold underline" if color else ""))
        for f in findings:
            table.add_row(
                escape(f.rule_id),
                Text(status_label(f.status), style=STATUS_STYLE[f.status] if color else ""),
                escape(format_value(f.measured, f.unit)),
                escape(f.limit or "—"),
                escape(", ".join(f.structures) or "—"),
                escape(", ".join(f.courses) or "—"),
                escape(f"{f.provenance.section} ({f.provenance.confidence})"),
                escape(f.message),
            )
    if report.findings:
        console.print(table)
    else:
        console.print(Text("The protocol produced no results."))
    console.print()

    if report.not_applicable:
        console.print(Text("NOT APPLICABLE", style="bold"))
        table = Table(box=None, show_edge=False, pad_edge=False, show_header=False)
        table.add_column("Rule", no_wrap=True)
        table.add_column("Reason", ratio=1)
        for n in report.not_applicable:
            table.add_row(escape(n.rule_id), escape(n.reason))
        console.print(table)
        console.print()

    summary = report.summary
    line = Text("Summary: ")
    for i, status in enumerate(STATUS_ORDER):
        if i:
            line.append(", ")
        line.append(f"{summary[status.value.lower()]} {status_label(status)}",
                    style=STATUS_STYLE[status] if color and summary[status.value.lower()] else "")
    line.append(f"; {len(report.not_applicable)} not applicable. Result: ")
    result = verdict(report)
    style = {"FAILED": "bold red", "PASSED": "bold green"}.get(result, "bold magenta")
    line.append(result, style=style if color else "")
    console.print(line)
    console.print(Text("Confidence of each rule's source:"))
    for level, meaning in CONFIDENCE_LEGEND:
        console.print(Text(f"  {level:<13} {meaning}"))
    text = console.export_text(styles=color)
    if not color:
        text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    return text
