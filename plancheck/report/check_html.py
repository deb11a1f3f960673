"""The HTML report of ``plancheck check``: one self-contained file for people.

Everything is inline (CSS, SVG plots); the page loads nothing from the network
and runs no script. It shows the patient and plan header (the only report that
names the patient), summary badges, the fractionation of every course, the
results per category with their provenance, the rules that do not apply, and a
cumulative DVH plot per course for the structures with DVH findings, with the
protocol's limits drawn on it.

Every numeric cell carries ``data-field`` and ``data-value`` (the exact JSON
value) plus ``data-rule-id``/``data-result-index`` (results) or
``data-plan-label`` (fractionation), so a test can compare the page with the
JSON report. jinja2 is imported only here (the template engine's boundary).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from plancheck.dvh.metrics import parse_metric
from plancheck.errors import MetricSpecError
from plancheck.model.dose import dose_kind_label
from plancheck.radiobiology import DoseConversion, DoseKind
from plancheck.report.check_json import (
    CONFIDENCE_LEGEND,
    STATUS_ORDER,
    check_report_dict,
    group_by_category,
)
from plancheck.report.check_text import format_value, status_label, verdict
from plancheck.report.svg_plot import Curve, Marker, dvh_svg
from plancheck.rules.context import CourseInfo
from plancheck.rules.findings import Finding
from plancheck.rules.runner import CheckReport

__all__ = ["check_html", "DvhPlot", "dvh_plots", "limit_markers"]

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

def limit_markers(f: Finding, volume_cc: float, prescription_gy: float | None) -> list[Marker]:
    """Markers of a DVH finding's limits on a plot in relative volume (%).

    Parameters
    ----------
    f
        A finding whose ``details["metric"]`` is a TG-263 metric.
    volume_cc
        The structure's volume (to place cc limits on the % axis).
    prescription_gy
        The course prescription in the plot's dose kind (for ``[%]`` doses), or None.
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
        out.append(Marker(dose, vol, label + (" (acceptable)" if acceptable else ""), f.status.value, acceptable, f.rule_id))
    return out


# ---------------------------------------------------------------------------------- DVH plots

def _conversion(f: Finding) -> DoseConversion | None:
    label = str(f.details.get("dose_kind", "physical"))
    if label == "physical":
        return DoseConversion.physical()
    ab = f.details.get("alpha_beta_gy")
    for kind in (DoseKind.EQD2, DoseKind.BED):
        if label.startswith(kind.value) and isinstance(ab, (int, float)):
            return DoseConversion(kind, float(ab))
    return None


def _rx_in_kind(info: CourseInfo, conversion: DoseConversion) -> float | None:
    return conversion.convert_total_dose(info.prescription_gy, info.fractions)


def dvh_plots(report: CheckReport) -> list[DvhPlot]:
    """One plot per (course or composite, dose kind) with the structures that have DVH
    findings and their limits. A plot that cannot be drawn is left out with a log message."""
    ctx = report.context
    by_label = {c.label: c for c in ctx.courses}
    groups: dict[tuple[tuple[str, ...], str], list[tuple[Finding, DoseConversion]]] = {}
    for f in report.findings:
        if "metric" not in f.details or len(f.structures) != 1 or not f.courses:
            continue
        if any(c not in by_label for c in f.courses):
            continue
        conversion = _conversion(f)
        if conversion is None:
            continue
        groups.setdefault((tuple(f.courses), conversion.kind.value), []).append((f, conversion))
    order = {c.label: i for i, c in enumerate(ctx.courses)}
    keys = sorted(groups, key=lambda k: (len(k[0]) > 1, [order[c] for c in k[0]], k[1] != "physical", k[1]))
    plots = []
    for key in keys:
        labels, kind = key
        infos = [by_label[c] for c in labels]
        curves: list[Curve] = []
        markers: list[Marker] = []
        seen: dict[tuple[str, float | None], bool] = {}
        notes: list[str] = []
        for f, conversion in groups[key]:
            roi = ctx.roi_named(f.structures[0])
            if roi is None:
                continue
            try:
                dvh = ctx.dvh(roi, infos, conversion)
            except Exception as exc:  # a plot must never stop the report
                log.warning("no DVH plot of %s in %s: %s", roi.name, ", ".join(labels), exc)
                notes.append(f"{roi.name}: no curve ({type(exc).__name__}: {exc})")
                continue
            curve_key = (roi.name, conversion.alpha_beta_gy)
            if curve_key not in seen and not dvh.is_empty and dvh.volume_cc > 0:
                seen[curve_key] = True
                step = max(float(dvh.max_gy or 0.0) / 300.0, 1e-3)
                doses, volumes = dvh.cumulative(step)
                name = roi.name if conversion.alpha_beta_gy is None else f"{roi.name} (α/β {conversion.alpha_beta_gy:g} Gy)"
                curves.append(Curve(name, [float(d) for d in doses], [100.0 * float(v) / dvh.volume_cc for v in volumes]))
            rx = _rx_in_kind(infos[0], conversion) if len(infos) == 1 else None
            markers.extend(limit_markers(f, float(dvh.volume_cc), rx))
        if not curves:
            continue
        scope = labels[0] if len(labels) == 1 else f"composite of {', '.join(labels)}"
        weighted = any(i.course.dose.is_rbe_weighted for i in infos)  # Dose Type EFFECTIVE: say so
        kind_text = dose_kind_label("physical", "EFFECTIVE" if weighted else "PHYSICAL") + " dose" \
            if kind == "physical" else (f"{kind} of RBE-weighted dose" if weighted else kind)
        title = f"{scope}: {kind_text}"
        x_label = ("Dose [Gy(RBE)]" if weighted else "Dose [Gy]") if kind == "physical" else f"{kind} [Gy]"
        svg = dvh_svg(curves, markers, title=title, x_label=x_label)
        plots.append(DvhPlot(title, svg, labels, kind, tuple(dict.fromkeys(f.rule_id for f, _ in groups[key])), tuple(notes)))
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


def check_html(report: CheckReport, *, generated: dt.datetime | None = None) -> str:
    """The self-contained HTML report."""
    from markupsafe import Markup  # jinja2's own dependency: trusted SVG built by svg_plot

    doc = check_report_dict(report)
    indexed = [dict(r, index=i, status_label=status_label(f.status))
               for i, (r, f) in enumerate(zip(doc["results"], report.findings))]
    categories = group_by_category(indexed, category=lambda r: r["category"])
    try:
        plots = dvh_plots(report)
    except Exception as exc:  # plots are a help, not the check
        log.warning("DVH plots left out: %s", exc)
        plots = []
    export = report.export
    summary = doc["summary"]
    badges = [{"key": s.value.lower(), "label": status_label(s), "count": summary[s.value.lower()]} for s in STATUS_ORDER]
    template_text = (files("plancheck.report") / "templates" / _TEMPLATE).read_text(encoding="utf-8")
    template = _environment().from_string(template_text)
    plan_labels = ", ".join(p["label"] for p in doc["plans"]) or "no plan"
    generated = generated or dt.datetime.now().astimezone()
    return template.render(
        doc=doc,
        title=f"plancheck: {plan_labels} ({doc['protocol']['id']})",
        patient_id=export.patient_id,
        patient_name=_display_name(export.patient_name),
        badges=badges,
        verdict=verdict(report),
        categories=categories,
        plots=[{"title": p.title, "svg": Markup(p.svg), "rule_ids": p.rule_ids, "notes": p.notes} for p in plots],
        legend=CONFIDENCE_LEGEND,
        generated=generated.strftime("%Y-%m-%d %H:%M %Z").strip(),
    )

