"""The HTML report of ``plancheck check``: one self-contained file for people.

Everything is inline (CSS, SVG plots); the page loads nothing from the network and runs
no script. It leads with what needs a decision:

1. the header (patient and plans: the only report that names the patient), the verdict
   with the counts, the missing-case-file hint and the export's warnings;
2. **Needs attention**: every ERROR, FAIL and WARN as a card — structure, course, the
   measured value on each dose basis it was graded on, the limit (from the limits as
   data), the reason, and for DVH rules a DVH plot per dose basis with the limit
   marked — then the NOT EVALUATED findings with their reasons;
3. the courses and their fractionation;
4. the passed rules, folded per category;
5. DVH panels: one per course and one per composite, in physical dose and in EQD2/BED
   where rules were graded on it, every DVH finding's limits drawn;
6. the rules that do not apply (folded) and a sign-off block (checked by, date).

Provenance (source, section, confidence, protocol file, the limits' dose basis and notes,
the finding's details) is one click away on every finding. In print (a browser's "Save as
PDF") the folded lists open, cards, plots and table rows are never cut across pages, table
headers repeat, and the sign-off block stays in one piece.

Every result appears once, and every numeric cell carries ``data-field`` and ``data-value``
(the exact JSON value) plus ``data-rule-id``/``data-result-index`` (results) or
``data-plan-label`` (fractionation), so a test can compare the page with the JSON report.
jinja2 is imported only here (the template engine's boundary).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from plancheck.dvh.metrics import parse_metric
from plancheck.errors import MetricSpecError
from plancheck.model.dose import dose_kind_label
from plancheck.radiobiology import DoseConversion, DoseKind
from plancheck.report.attention import (
    attention_items,
    case_file_hint,
    describe_limits,
    format_value,
    limit_text,
    measured_text,
    short_basis,
    status_label,
    verdict,
)
from plancheck.report.check_json import (
    CONFIDENCE_LEGEND,
    STATUS_ORDER,
    check_report_dict,
    group_by_category,
)
from plancheck.report.svg_plot import Curve, Marker, dvh_svg
from plancheck.rules.context import CourseInfo
from plancheck.rules.findings import Finding, Measurement, Status
from plancheck.rules.runner import CheckReport

__all__ = ["check_html", "DvhPlot", "dvh_plots", "finding_plots", "limit_markers"]

log = logging.getLogger(__name__)

_TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class DvhPlot:
    """One DVH figure: a course (or composite) in one dose kind, as SVG text."""

    title: str
    svg: str
    courses: tuple[str, ...]
    dose_kind: str
    rule_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------- limits → markers

def limit_markers(f: Finding, volume_cc: float, prescription_gy: float | None, *,
                  status: Status | None = None) -> list[Marker]:
    """Markers of a DVH finding's limits on a plot in relative volume (%).

    Parameters
    ----------
    f
        A finding whose ``details["metric"]`` is a TG-263 metric.
    volume_cc
        The structure's volume (to place cc limits on the % axis).
    prescription_gy
        The course prescription in the plot's dose kind (for ``[%]`` doses), or None.
    status
        The colour's status (default the finding's; a plot of one dose basis takes that
        measurement's grade).
    """
    try:
        spec = parse_metric(str(f.details.get("metric", "")))
    except MetricSpecError:
        return []
    if f.unit and f.unit != spec.result_unit:
        return []  # the limit is not in the metric's unit (e.g. a dose as % of prescription): no safe place
    out = []
    bounds = [(b.side, b.value, b.tier == "acceptable", limit.condition)
              for limit in f.limits if limit.applies is not False for b in limit.bounds]
    for side, value, acceptable, condition in bounds:
        sign = "≤" if side == "upper" else "≥"
        label = f"{f.rule_id} {spec.text} {sign} {value:g}" + (f" with {condition}" if condition else "")
        dose: float | None
        vol: float | None
        if spec.kind in ("V", "CV"):
            if spec.threshold_unit == "Gy":
                dose = spec.threshold
            elif prescription_gy:
                dose = spec.threshold * prescription_gy / 100.0  # type: ignore[operator]
            else:
                continue
            if spec.result_unit == "%":
                vol = value
            elif volume_cc > 0:
                vol = 100.0 * value / volume_cc
            else:
                continue
            if spec.kind == "CV":
                vol = 100.0 - vol
        elif spec.kind in ("D", "DC", "Mean", "Max", "Min"):
            if spec.result_unit == "Gy":
                dose = value
            elif spec.result_unit == "cGy":
                dose = value / 100.0
            elif prescription_gy:
                dose = value * prescription_gy / 100.0
            else:
                continue
            vol = None
            if spec.kind in ("D", "DC"):
                if spec.threshold_unit == "%":
                    vol = spec.threshold
                elif volume_cc > 0:
                    vol = 100.0 * spec.threshold / volume_cc  # type: ignore[operator]
                if vol is not None and spec.kind == "DC":
                    vol = 100.0 - vol
                if vol is not None and not 2.0 <= vol <= 99.0:
                    vol = None  # a near-point or near-whole volume: a vertical line reads better
        else:
            continue
        out.append(Marker(dose, vol, label + (" (acceptable)" if acceptable else ""), (status or f.status).value,
                          acceptable, f.rule_id))
    return out


# ---------------------------------------------------------------------------------- dose bases

def _conversion_of_label(label: str, alpha_beta: Any) -> DoseConversion | None:
    """``physical ...`` → physical; ``EQD2 ...`` / ``BED ...`` with the finding's α/β."""
    if label.startswith("physical"):
        return DoseConversion.physical()
    for kind in (DoseKind.EQD2, DoseKind.BED):
        if label.startswith(kind.value) and isinstance(alpha_beta, (int, float)):
            return DoseConversion(kind, float(alpha_beta))
    return None


def _conversion(f: Finding) -> DoseConversion | None:
    """The dose kind that decided the finding (``details["dose_kind"]``)."""
    return _conversion_of_label(str(f.details.get("dose_kind", "physical")), f.details.get("alpha_beta_gy"))


def _bases(f: Finding) -> list[tuple[DoseConversion, Status]]:
    """Each dose basis the finding was graded on, with that basis's grade: one per
    measurement when it has them, else the deciding one with the finding's status."""
    out: list[tuple[DoseConversion, Status]] = []
    for m in f.measurements:
        conversion = _conversion_of_label(m.basis, f.details.get("alpha_beta_gy"))
        if conversion is not None and all(conversion != c for c, _ in out):
            out.append((conversion, m.status))
    if not out:
        conversion = _conversion(f)
        if conversion is not None:
            out.append((conversion, f.status))
    return out


def _rx_in_kind(info: CourseInfo, conversion: DoseConversion) -> float | None:
    return conversion.convert_total_dose(info.prescription_gy, info.fractions)


def _kind_text(conversion: DoseConversion) -> str:
    if conversion.kind is DoseKind.PHYSICAL:
        return "physical dose"
    return f"{conversion.kind.value} (α/β {conversion.alpha_beta_gy:g} Gy)"


def _plottable(f: Finding, report: CheckReport) -> bool:
    by_label = {c.label for c in report.context.courses}
    return "metric" in f.details and len(f.structures) == 1 and bool(f.courses) and all(c in by_label for c in f.courses)


def _curve(report: CheckReport, f: Finding, conversion: DoseConversion):
    """(curve, DVH, course infos) of the finding's structure on one basis, or None."""
    ctx = report.context
    by_label = {c.label: c for c in ctx.courses}
    infos = [by_label[c] for c in f.courses]
    roi = ctx.roi_named(f.structures[0])
    if roi is None:
        return None
    dvh = ctx.dvh(roi, infos, conversion)  # computed by the check already: cached
    if dvh.is_empty or not dvh.volume_cc > 0:
        return None
    step = max(float(dvh.max_gy or 0.0) / 300.0, 1e-3)
    doses, volumes = dvh.cumulative(step)
    name = roi.name if conversion.alpha_beta_gy is None else f"{roi.name} (α/β {conversion.alpha_beta_gy:g} Gy)"
    return Curve(name, [float(d) for d in doses], [100.0 * float(v) / dvh.volume_cc for v in volumes]), dvh, infos


def _scope(labels: tuple[str, ...]) -> str:
    return labels[0] if len(labels) == 1 else f"composite of {', '.join(labels)}"


def finding_plots(report: CheckReport, f: Finding) -> list[DvhPlot]:
    """The finding's structure alone, one plot per dose basis it was graded on, with its
    limits marked in that basis's grade (empty for findings that are not DVH metrics)."""
    if not _plottable(f, report):
        return []
    plots = []
    for conversion, status in _bases(f):
        try:
            got = _curve(report, f, conversion)
        except Exception as exc:  # a plot is a help, never the check
            log.warning("no DVH plot for %s (%s): %s", f.rule_id, _kind_text(conversion), exc)
            continue
        if got is None:
            continue
        curve, dvh, infos = got
        rx = _rx_in_kind(infos[0], conversion) if len(infos) == 1 else None
        title = f"{f.structures[0]}, {_scope(tuple(f.courses))}: {_kind_text(conversion)}"
        x_label = "Dose [Gy]" if conversion.kind is DoseKind.PHYSICAL else f"{conversion.kind.value} [Gy]"
        svg = dvh_svg([curve], limit_markers(f, float(dvh.volume_cc), rx, status=status), title=title,
                      x_label=x_label, width=620, height=330, legend_width=190)
        plots.append(DvhPlot(title, svg, tuple(f.courses), conversion.kind.value, (f.rule_id,)))
    return plots


def dvh_plots(report: CheckReport) -> list[DvhPlot]:
    """The DVH panels: one per course and one per composite of courses, in each dose kind
    a rule was graded on (physical, and EQD2/BED where graded: a conventional limit on several
    courses gives both), with the structures of those findings and every limit. A plot that
    cannot be drawn is left out with a log message."""
    ctx = report.context
    groups: dict[tuple[tuple[str, ...], str], list[tuple[Finding, DoseConversion, Status]]] = {}
    for f in report.findings:
        if not _plottable(f, report):
            continue
        for conversion, status in _bases(f):
            groups.setdefault((tuple(f.courses), conversion.kind.value), []).append((f, conversion, status))
    order = {c.label: i for i, c in enumerate(ctx.courses)}
    keys = sorted(groups, key=lambda k: (len(k[0]) > 1, [order[c] for c in k[0]], k[1] != "physical", k[1]))
    plots = []
    for labels, kind in keys:
        curves: list[Curve] = []
        markers: list[Marker] = []
        seen: set[tuple[str, float | None]] = set()
        notes: list[str] = []
        for f, conversion, status in groups[(labels, kind)]:
            try:
                got = _curve(report, f, conversion)
            except Exception as exc:  # a plot must never stop the report
                log.warning("no DVH plot of %s in %s: %s", f.structures[0], ", ".join(labels), exc)
                notes.append(f"{f.structures[0]}: no curve ({type(exc).__name__}: {exc})")
                continue
            if got is None:
                continue
            curve, dvh, infos = got
            if (f.structures[0], conversion.alpha_beta_gy) not in seen:
                seen.add((f.structures[0], conversion.alpha_beta_gy))
                curves.append(curve)
            rx = _rx_in_kind(infos[0], conversion) if len(infos) == 1 else None
            markers.extend(limit_markers(f, float(dvh.volume_cc), rx, status=status))
        if not curves:
            continue
        weighted = any(i.course.dose.is_rbe_weighted for i in infos)  # Dose Type EFFECTIVE: say so
        kind_text = dose_kind_label("physical", "EFFECTIVE" if weighted else "PHYSICAL") + " dose" \
            if kind == "physical" else (f"{kind} of RBE-weighted dose" if weighted else kind)
        title = f"{_scope(labels)}: {kind_text}"
        x_label = ("Dose [Gy(RBE)]" if weighted else "Dose [Gy]") if kind == "physical" else f"{kind} [Gy]"
        svg = dvh_svg(curves, markers, title=title, x_label=x_label)
        rule_ids = tuple(dict.fromkeys(f.rule_id for f, _, _ in groups[(labels, kind)]))
        plots.append(DvhPlot(title, svg, labels, kind, rule_ids, tuple(notes)))
    return plots


# ---------------------------------------------------------------------------------- page

def _display_name(dicom_name: str) -> str:
    parts = [p.strip() for p in (dicom_name or "").split("^")]
    if len(parts) >= 2 and parts[0] and parts[1]:
        rest = " ".join(p for p in parts[2:] if p)
        return f"{parts[0]}, {parts[1]}" + (f" {rest}" if rest else "")
    return " ".join(p for p in parts if p)


def _data_value(value: Any) -> str:
    """The JSON value as attribute text (``repr`` of a float equals its JSON form)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _gy(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") + " Gy"


def _environment():
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["data_value"] = _data_value
    env.filters["gy"] = _gy
    env.filters["value"] = format_value
    return env


def _measurement_row(m: Measurement) -> dict[str, Any]:
    if m.value is not None:
        shown = format_value(m.value, m.unit)
    elif m.lower is not None and m.upper is not None:
        shown = f"{format_value(m.lower)}–{format_value(m.upper, m.unit)}"
    else:
        shown = "—"
    return {"basis": m.basis, "short": short_basis(m), "value": m.value, "shown": shown, "status": m.status.value,
            "status_label": status_label(m.status), "reason": m.reason}


def _result_view(index: int, row: dict[str, Any], f: Finding, report: CheckReport, *, plots: bool) -> dict[str, Any]:
    """What the template shows of one result (``row`` is its JSON entry)."""
    view = dict(row)
    view.update(
        index=index,
        status_label=status_label(f.status),
        measured_text=measured_text(f) if len(f.measurements) < 2 else format_value(f.measured, f.unit),
        limit_text=limit_text(f) or "—",
        measurements=[_measurement_row(m) for m in f.measurements] if len(f.measurements) > 1 else [],
        limits_described=describe_limits(f.limits),
        plots=[],
    )
    if plots:
        try:
            view["plots"] = [{"title": p.title, "svg": p.svg} for p in finding_plots(report, f)]
        except Exception as exc:  # plots are a help, not the check
            log.warning("DVH plot of %s left out: %s", f.rule_id, exc)
    return view


def check_html(report: CheckReport, *, generated: dt.datetime | None = None,
               export_path: str | Sequence[str] | None = None) -> str:
    """The self-contained HTML report.

    Parameters
    ----------
    report
        The check.
    generated
        The time printed as the report's creation (default now).
    export_path
        The export as the user named it (completes the missing-case-file hint).
    """
    from markupsafe import Markup  # jinja2's own dependency: trusted SVG built by svg_plot

    doc = check_report_dict(report)
    attention: list[dict[str, Any]] = []
    passed: list[dict[str, Any]] = []
    views: dict[int, dict[str, Any]] = {}
    for i, (row, f) in enumerate(zip(doc["results"], report.findings)):
        if f.status in (Status.ERROR, Status.FAIL, Status.WARN):
            attention.append(_result_view(i, row, f, report, plots=True))
        else:
            views[i] = _result_view(i, row, f, report, plots=False)
            if f.status is Status.PASS:
                passed.append(views[i])
    # NOT EVALUATED findings with one reason (e.g. a structure several rules need) share a row
    not_evaluated = [{"members": [views[i] for i in item.indices], "first": views[item.indices[0]]}
                     for item in attention_items(report) if item.status is Status.NOT_EVALUATED]
    rank = {Status.ERROR.value: 0, Status.FAIL.value: 1, Status.WARN.value: 2}
    attention.sort(key=lambda r: (rank[r["status"]], r["index"]))
    for view in attention:
        view["plots"] = [dict(p, svg=Markup(p["svg"])) for p in view["plots"]]
    try:
        panels = dvh_plots(report)
    except Exception as exc:  # plots are a help, not the check
        log.warning("DVH plots left out: %s", exc)
        panels = []
    all_by_category = dict(group_by_category(list(report.findings)))
    categories = [{"name": name, "rows": rows, "total": len(all_by_category.get(name, ()))}
                  for name, rows in group_by_category(passed, category=lambda r: r["category"])]
    summary = doc["summary"]
    badges = [{"key": s.value.lower(), "label": status_label(s), "count": summary[s.value.lower()]}
              for s in (Status.FAIL, Status.ERROR, Status.WARN, Status.NOT_EVALUATED, Status.PASS)]
    template_text = (files("plancheck.report") / "templates" / _TEMPLATE).read_text(encoding="utf-8")
    template = _environment().from_string(template_text)
    plan_labels = ", ".join(p["label"] for p in doc["plans"]) or "no plan"
    generated = generated or dt.datetime.now().astimezone()
    return template.render(
        doc=doc,
        title=f"plancheck: {plan_labels} ({doc['protocol']['id']})",
        patient_id=report.export.patient_id,
        patient_name=_display_name(report.export.patient_name),
        badges=badges,
        verdict=verdict(report),
        hint=case_file_hint(report, export_path),
        attention=attention,
        not_evaluated=not_evaluated,
        not_evaluated_total=sum(len(g["members"]) for g in not_evaluated),
        categories=categories,
        passed_total=len(passed),
        plots=[{"title": p.title, "svg": Markup(p.svg), "rule_ids": p.rule_ids, "notes": p.notes} for p in panels],
        legend=CONFIDENCE_LEGEND,
        statuses=STATUS_ORDER,
        generated=generated.strftime("%Y-%m-%d %H:%M %Z").strip(),
    )
