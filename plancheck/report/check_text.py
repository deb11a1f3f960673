"""The terminal report of ``plancheck check``: findings first, one screen for a typical plan.

Layout (default)::

    header            plans with their fractionation, protocol, case file, volume model
    Result: ...       the verdict and the counts
    FAIL (n)          every finding that needs attention, most urgent first (ERROR, FAIL,
    WARN (n)          WARN, NOT EVALUATED): rule, structure, course, measured value and
    NOT EVALUATED (n) limit on one line, the reason below; NOT EVALUATED findings with the
                      same reason once, with all their rule ids
    PASS (n)          a count per category
    hints             the missing case file, how to see every rule
    Summary: ...      the counts in a fixed form (scripts may read this line)

``all_rules=True`` (``plancheck check --all``) lists every finding per category instead,
with its source, and the rules that do not apply. Lines are wrapped at word boundaries
to ``width`` columns (never inside a word); colours (ANSI) only when asked. Text from the
export or a protocol passes through :func:`~plancheck.report.attention.clean` on its way
to the terminal.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from plancheck.model.dose import RBE_WEIGHTED
from plancheck.report.attention import (
    ATTENTION_ORDER,
    AttentionItem,
    attention_items,
    case_file_hint,
    clean,
    format_value,
    limit_text,
    measured_text,
    pass_counts,
    status_label,
    verdict,
)
from plancheck.report.check_json import CONFIDENCE_LEGEND, STATUS_ORDER, group_by_category
from plancheck.rules.findings import Finding, Status
from plancheck.rules.runner import CheckReport

__all__ = ["check_text", "format_value", "status_label", "verdict", "STATUS_STYLE", "plan_line", "DEFAULT_WIDTH"]

DEFAULT_WIDTH = 100
"""Columns of the report when the terminal's width is not known."""

STATUS_STYLE = {
    Status.PASS: "1;32",           # bold green
    Status.WARN: "1;33",           # bold yellow
    Status.FAIL: "1;31",           # bold red
    Status.NOT_EVALUATED: "1;35",  # bold magenta
    Status.ERROR: "1;37;41",       # bold white on red
}
"""ANSI SGR codes of each status."""

_NBSP = "\u00a0"
_VALUE_UNIT = re.compile(r"(?<=\d) (?=[^\s\d]\S{0,5}(?:[\s,;:)]|$))")
_SIGN_VALUE = re.compile(r"(?<=[≤≥<>=]) (?=[\d.-])")
_EQUALS = re.compile(r" (?==[ \u00a0]?[\d.-])")


_PHRASES = ("Result: NOT FULLY EVALUATED", "Result: FAILED", "Result: PASSED", "NOT FULLY EVALUATED", "NOT EVALUATED",
            "NOT APPLICABLE", "not applicable")


def _keep_together(text: str) -> str:
    """Non-breaking spaces inside ``60.34 %``, ``≤ 45 Gy``, ``α/β = 3 Gy`` and the status words:
    a value never wraps apart from its unit or sign, nor a status or the verdict in two."""
    for phrase in _PHRASES:
        text = text.replace(phrase, phrase.replace(" ", _NBSP))
    return _SIGN_VALUE.sub(_NBSP, _EQUALS.sub(_NBSP, _VALUE_UNIT.sub(_NBSP, text)))


_VERDICT_STYLE = {"FAILED": "1;31", "PASSED": "1;32", "NOT FULLY EVALUATED": "1;35"}
_INDENT = "    "


class _Writer:
    """Collects lines, wraps them at word boundaries and colours them when asked."""

    def __init__(self, width: int, color: bool) -> None:
        self.width = max(width, 40)
        self.color = color
        self.lines: list[str] = []

    def style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def raw(self, line: str = "") -> None:
        self.lines.append(line)

    def wrap(self, text: str, *, first: str = "", rest: str | None = None, styled_prefix: str | None = None) -> None:
        """``text`` wrapped after ``first`` (continuation lines indented by ``rest``, default
        the width of ``first``); ``styled_prefix`` replaces ``first`` on output (same width)."""
        rest = " " * len(first) if rest is None else rest
        lines = textwrap.wrap(_keep_together(text), width=self.width, initial_indent=first, subsequent_indent=rest,
                              break_long_words=False, break_on_hyphens=False) or [first.rstrip()]
        lines = [line.replace(_NBSP, " ") for line in lines]
        if styled_prefix is not None and lines[0].startswith(first):
            lines[0] = styled_prefix + lines[0][len(first):]
        self.lines.extend(lines)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines).rstrip("\n") + "\n"


def plan_line(info) -> str:
    """``C1_Eso: 60 Gy / 30 fx (2 Gy/fx, conventional), BED10 72 Gy, EQD2(10) 60 Gy``
    (and ``; dose RBE-weighted (EFFECTIVE)`` for an RBE-weighted dose)."""
    weighted = f"; dose {RBE_WEIGHTED}" if info.course.dose.is_rbe_weighted else ""
    if info.summary is not None:
        return f"{info.label}: {info.summary.describe()}{weighted}"
    rx = f"{info.prescription_gy:g} Gy" if info.prescription_gy else "no prescription dose"
    groups = info.course.plan.dose_fraction_groups
    fx = (f"{info.fractions} fx" if info.fractions else "fractions not stated" if len(groups) < 2
          else f"{' + '.join(str(g.fractions_planned or '?') for g in groups)} fx in {len(groups)} fraction groups "
               "(dose per fraction not known)")
    return f"{info.label}: {rx} / {fx}{weighted}"


def _where(f: Finding) -> str:
    """``Lungs in C1_Eso, C2_LungMet`` / ``PTVp in C1_Eso`` / ``C1_Eso`` / ``""``."""
    structures = ", ".join(f.structures)
    courses = ", ".join(f.courses)
    if structures and courses:
        return f"{structures} in {courses}"
    return structures or courses


def _facts(f: Finding) -> str:
    """Structure and course, measured value(s), limit: the first line of an entry."""
    parts = []
    where = _where(f)
    measured = measured_text(f)
    limit = limit_text(f)
    if where:
        parts.append(where)
    if measured != "—":
        parts.append(f"measured {measured}")
    if limit:
        parts.append(f"limit {limit}")
    return "; ".join(parts)


def _source(f: Finding) -> str:
    return f"[{f.provenance.section}, {f.provenance.confidence}]"


def _header(out: _Writer, report: CheckReport) -> None:
    protocol = report.protocol
    out.raw(out.style(f"plancheck {report.plancheck_version}: plan check", "1"))
    courses = report.context.courses
    if courses:
        for k, info in enumerate(courses):
            out.wrap(clean(plan_line(info)), first="Plans:     " if k == 0 else " " * 11)
    else:
        out.raw("Plans:     none (the export has no plan with a dose)")
    out.wrap(clean(f"{protocol.id} version {protocol.version}: {protocol.title} (chain: {' → '.join(protocol.chain)})"),
             first="Protocol:  ")
    out.wrap(clean(f"{report.context.case_source or 'none'}"), first="Case file: ")
    for k, line in enumerate(report.export.volume_model_descriptions):
        out.wrap(clean(line), first="Volumes:   " if k == 0 else " " * 11)
    for w in report.warnings:
        out.wrap(clean(w), first="warning: ", rest=_INDENT, styled_prefix=out.style("warning: ", "33"))


def _result_line(out: _Writer, report: CheckReport) -> None:
    s = report.summary
    result = verdict(report)
    counts = [f"{s[st.value.lower()]} {status_label(st)}" for st in ATTENTION_ORDER if s[st.value.lower()]]
    counts.append(f"{s['pass']} PASS")
    na = len(report.not_applicable)
    tail = f"; {na} not applicable" if na else ""
    out.wrap(f"{result} — {', '.join(counts)}{tail}", first="Result: ")
    if out.color:
        out.lines[-1] = out.lines[-1].replace(result, out.style(result, _VERDICT_STYLE[result]), 1)


def _attention(out: _Writer, report: CheckReport) -> None:
    items = attention_items(report)
    for status in ATTENTION_ORDER:
        chosen = [item for item in items if item.status is status]
        if not chosen:
            continue
        n = sum(len(item.findings) for item in chosen)
        out.blank()
        out.raw(out.style(f"{status_label(status)} ({n})", STATUS_STYLE[status]))
        for item in chosen:
            _entry(out, item)


def _entry(out: _Writer, item: AttentionItem) -> None:
    f = item.first
    ids = clean(", ".join(item.rule_ids))
    facts = clean(_facts(f)) if len(item.findings) == 1 or f.structures or f.courses else ""
    head = f"{ids}  {facts}" if facts else ids
    out.wrap(head, first="  ", rest=_INDENT)
    out.wrap(clean(f"{f.message} {_source(f)}"), first=_INDENT)


def _passes(out: _Writer, report: CheckReport) -> None:
    counts = pass_counts(report)
    total = sum(n for _, n in counts)
    out.blank()
    label = out.style(f"PASS ({total})", STATUS_STYLE[Status.PASS]) if total else f"PASS ({total})"
    if counts:
        out.wrap(", ".join(f"{category} {n}" for category, n in counts), first="PASS (%d): " % total, rest=_INDENT,
                 styled_prefix=label + ": ")
    else:
        out.raw(label)


def _all_findings(out: _Writer, report: CheckReport) -> None:
    width = max((len(status_label(f.status)) for f in report.findings), default=4)
    for category, findings in group_by_category(list(report.findings)):
        out.blank()
        out.raw(out.style(category.upper(), "1;4"))
        for f in findings:
            label = status_label(f.status)
            prefix = f"  {label:<{width}}  "
            facts = clean(_facts(f))
            out.wrap(f"{clean(f.rule_id)}" + (f"  {facts}" if facts else ""), first=prefix, rest=_INDENT,
                     styled_prefix="  " + out.style(f"{label:<{width}}", STATUS_STYLE[f.status]) + "  ")
            out.wrap(clean(f"{f.message} {_source(f)}"), first=_INDENT)
    if not report.findings:
        out.raw("The protocol produced no results.")
    if report.not_applicable:
        out.blank()
        out.raw(out.style("NOT APPLICABLE", "1"))
        for n in report.not_applicable:
            out.wrap(clean(f"{n.rule_id}: {n.reason}"), first="  ", rest=_INDENT)


def _summary_line(out: _Writer, report: CheckReport) -> None:
    summary = report.summary
    parts = []
    for status in STATUS_ORDER:
        n = summary[status.value.lower()]
        text = f"{n} {status_label(status)}"
        parts.append(out.style(text, STATUS_STYLE[status]) if n else text)
    result = verdict(report)
    plain = [f"{summary[s.value.lower()]} {status_label(s)}" for s in STATUS_ORDER]
    out.wrap(f"Summary: {', '.join(plain)}; {len(report.not_applicable)} not applicable. Result: {result}", first="",
             rest=_INDENT)
    if out.color:  # colour the counts and the verdict where they landed
        start = len(out.lines) - 1
        while not out.lines[start].startswith("Summary: "):
            start -= 1
        for text, styled in [*zip(plain, parts), (f"Result: {result}", f"Result: {out.style(result, _VERDICT_STYLE[result])}")]:
            for k in range(start, len(out.lines)):
                if text in out.lines[k]:
                    out.lines[k] = out.lines[k].replace(text, styled, 1)
                    break


def check_text(report: CheckReport, *, color: bool = False, width: int = DEFAULT_WIDTH, all_rules: bool = False,
               export_path: str | Sequence[str] | None = None) -> str:
    """The report as text.

    Parameters
    ----------
    report
        The check.
    color
        ANSI colours for statuses and the verdict.
    width
        Columns to wrap at (at word boundaries; a single word longer than a line is not broken).
    all_rules
        Every finding per category with its source, and the rules that do not apply,
        instead of the findings that need attention and a count of the others.
    export_path
        The export as the user named it (a path, or the paths given), for the command in the
        missing-case-file hint.
    """
    out = _Writer(width, color)
    _header(out, report)
    out.blank()
    _result_line(out, report)
    if all_rules:
        _all_findings(out, report)
    else:
        if not report.findings:
            out.blank()
            out.raw("The protocol produced no results.")
        _attention(out, report)
        if report.findings:
            _passes(out, report)
    hint = case_file_hint(report, export_path)
    out.blank()
    if hint:  # the command is never broken across lines (it may move whole to the next one)
        words, sep, command = clean(hint).partition("plancheck case init")
        out.wrap(words + (sep + command).replace(" ", _NBSP), first="", rest=_INDENT)
    if not all_rules:
        if report.summary["not_evaluated"]:
            out.wrap("A structure named differently in the export: --map STANDARD=ROI (repeatable).", first="")
        out.wrap("Every rule with its source: add --all; one rule in full: plancheck explain RULE_ID.", first="")
    else:
        out.raw("Confidence of each rule's source:")
        for level, meaning in CONFIDENCE_LEGEND:
            out.wrap(meaning, first=f"  {level:<13} ")
    _summary_line(out, report)
    return out.text()
