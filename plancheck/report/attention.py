"""What needs attention in a check, shared by the text and HTML reports.

A report for people leads with the verdict and the findings someone has to act on —
ERROR, FAIL, WARN, then NOT EVALUATED — and folds the PASS results into a count per
category. Everything here is computed from the findings' fields (status, measured value,
limits as data, measurements per dose basis, structures, courses, message), never per
rule id, so new rules and new fields appear without changes here.

NOT EVALUATED findings with the same reason (typically one missing structure that
several rules need) are shown once with all their rule ids.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from plancheck.report.check_json import group_by_category
from plancheck.report.sanitize import printable
from plancheck.rules.findings import AppliedLimit, Finding, Measurement, Status
from plancheck.rules.runner import CheckReport

__all__ = [
    "ATTENTION_ORDER",
    "AttentionItem",
    "attention_items",
    "pass_counts",
    "limit_text",
    "measured_text",
    "short_basis",
    "case_file_rules",
    "case_file_hint",
    "describe_limits",
    "clean",
    "format_value",
    "status_label",
    "verdict",
]

ATTENTION_ORDER: tuple[Status, ...] = (Status.ERROR, Status.FAIL, Status.WARN, Status.NOT_EVALUATED)
"""The statuses that need someone's attention, most urgent first."""



def clean(text: str) -> str:
    """Text from the export or a protocol, safe for a terminal: control and bidirectional
    characters (e.g. an escape sequence in an ROI name) are shown as visible escapes
    (:func:`plancheck.report.sanitize.printable`). Newlines are kept."""
    return printable(text, keep_newlines=True)


def status_label(status: Status) -> str:
    """``NOT EVALUATED`` rather than ``NOT_EVALUATED`` for people."""
    return status.value.replace("_", " ")


def format_value(value: float | None, unit: str = "") -> str:
    """A measured value for people: 2 decimals (none above 1000 or for a whole number
    of fractions, 3 significant digits below 1), with its unit; ``—`` when not measured."""
    import math

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


def limit_text(f: Finding) -> str:
    """The finding's limits in words, from its limits as data (``≤ 28 %; ≤ 25 % with
    concurrent systemic therapy (not known)``); its limit text when it has no structured
    limits (integrity and clinical rules state theirs in words)."""
    parts = []
    for limit in f.limits:
        words = limit.describe()
        if not words:
            continue
        if limit.condition:
            state = {True: "", False: " (does not apply)", None: " (not known whether it applies)"}[limit.applies]
            words += f" with {limit.condition}{state}"
        parts.append(words)
    return "; ".join(parts) if parts else f.limit


def short_basis(m: Measurement) -> str:
    """A measurement's basis without what it was summed over: ``physical dose``,
    ``EQD2 (α/β = 3 Gy)`` (the courses are shown with the finding)."""
    return m.basis.split(", ")[0]


def measured_text(f: Finding) -> str:
    """The measured value; with several dose bases, each with its grade
    (``60.34 % physical dose (FAIL), 49.76 % EQD2 (α/β = 3 Gy) (PASS)``)."""
    if len(f.measurements) > 1:
        return ", ".join(f"{_measurement_value(m)} {short_basis(m)} ({status_label(m.status)})" for m in f.measurements)
    return format_value(f.measured, f.unit)


def _measurement_value(m: Measurement) -> str:
    if m.value is not None:
        return format_value(m.value, m.unit)
    if m.lower is not None and m.upper is not None:
        return f"{format_value(m.lower)}–{format_value(m.upper, m.unit)}"
    return "—"


@dataclass(frozen=True)
class AttentionItem:
    """One entry of the "needs attention" list: a finding, or NOT EVALUATED findings that
    share their reason.

    Attributes
    ----------
    status
        The status of every finding in the item.
    findings
        The findings, with their index in ``report.findings``.
    """

    status: Status
    findings: tuple[tuple[int, Finding], ...]

    @property
    def first(self) -> Finding:
        return self.findings[0][1]

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.rule_id for _, f in self.findings))

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(i for i, _ in self.findings)


def attention_items(report: CheckReport) -> list[AttentionItem]:
    """ERROR, FAIL, WARN, NOT EVALUATED findings in that order (protocol order within a
    status); NOT EVALUATED findings with the same message, structures and courses are one
    item."""
    items: list[AttentionItem] = []
    indexed = list(enumerate(report.findings))
    for status in ATTENTION_ORDER:
        chosen = [(i, f) for i, f in indexed if f.status is status]
        if status is not Status.NOT_EVALUATED:
            items.extend(AttentionItem(status, ((i, f),)) for i, f in chosen)
            continue
        groups: dict[tuple, list[tuple[int, Finding]]] = {}
        for i, f in chosen:
            groups.setdefault((f.message, f.structures, f.courses), []).append((i, f))
        items.extend(AttentionItem(status, tuple(group)) for group in groups.values())
    return items


def pass_counts(report: CheckReport) -> list[tuple[str, int]]:
    """``[(category, number of PASS findings), ...]`` in the report's category order."""
    counts = Counter(f.category for f in report.findings if f.status is Status.PASS)
    return [(category, counts[category]) for category, _ in group_by_category(list(report.findings)) if counts[category]]


def case_file_rules(report: CheckReport) -> tuple[str, ...]:
    """The rules NOT EVALUATED because there is no case file (their reason says so)."""
    if report.context.case is not None:
        return ()
    return tuple(dict.fromkeys(f.rule_id for f in report.findings
                               if f.status is Status.NOT_EVALUATED and "case file" in f.message.casefold()))


def case_file_hint(report: CheckReport, export_path: str | Sequence[str] | None = None) -> str:
    """One line when rules need the missing case file: how many, and how to write one
    (the export path quoted for a shell); empty when there is a case file or no rule needs it."""
    rules = case_file_rules(report)
    if not rules:
        return ""
    if export_path is None:
        where = "EXPORT"
    elif isinstance(export_path, str):
        where = shlex.quote(export_path)
    else:
        where = shlex.join(export_path)
    need = "rule needs" if len(rules) == 1 else "rules need"
    return f"No case file: {len(rules)} {need} the clinical context. Write one: plancheck case init {where}"


def describe_limits(limits: tuple[AppliedLimit, ...]) -> list[str]:
    """Each applied limit as ``text (dose basis; note)`` for the provenance view."""
    out = []
    for limit in limits:
        extra = "; ".join(x for x in (limit.dose_basis, limit.note) if x)
        out.append(limit.describe() + (f" ({extra})" if extra else ""))
    return out
