"""The JSON report of ``plancheck check`` (documented in ``docs/report-json.md``).

The document is built once as plain data by :func:`check_report_dict`; the JSON
renderer dumps it and the HTML renderer shows the same values (its numeric cells
carry them in ``data-value`` attributes), so the two can never disagree.

The JSON report identifies plans by UID only: it holds no patient name or ID
(pipelines store and forward it; the HTML report is the one meant for people).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any, get_args

from plancheck.protocol.schema import Category
from plancheck.rules.findings import AppliedLimit, Finding, Measurement, Status
from plancheck.rules.runner import CheckReport

__all__ = [
    "check_report_dict",
    "check_json",
    "result_dict",
    "plan_dicts",
    "jsonable",
    "CATEGORY_ORDER",
    "STATUS_ORDER",
    "CONFIDENCE_LEGEND",
    "group_by_category",
]

CATEGORY_ORDER: tuple[str, ...] = ("integrity",) + tuple(c for c in get_args(Category) if c != "integrity")
"""Order in which categories are shown: plan integrity first, then the protocol's own."""

STATUS_ORDER: tuple[Status, ...] = (Status.PASS, Status.WARN, Status.FAIL, Status.NOT_EVALUATED, Status.ERROR)

CONFIDENCE_LEGEND: tuple[tuple[str, str], ...] = (
    ("consensus", "stated by the consensus document itself"),
    ("companion", "taken from a document the consensus builds on (e.g. AAPM TG-101, QUANTEC)"),
    ("provisional", "common practice, not stated by a source: to be confirmed by the clinic"),
    ("institutional", "set by the clinic's own protocol file"),
)
"""What each provenance confidence level means (shown in every report)."""


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: tuples as lists, enums by value, numpy scalars as
    Python numbers, non-finite floats (NaN, ±inf) as None, anything else as its text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy array
        return jsonable(value.tolist())
    return str(value)


def result_dict(f: Finding) -> dict[str, Any]:
    """One finding as the JSON ``results`` entry."""
    p = f.provenance
    return {
        "rule_id": f.rule_id,
        "title": f.title,
        "category": f.category,
        "status": f.status.value,
        "measured": jsonable(f.measured),
        "unit": f.unit,
        "limit": f.limit,
        "structures": list(f.structures),
        "courses": list(f.courses),
        "message": f.message,
        "provenance": {"source": p.source, "section": p.section, "confidence": p.confidence, "protocol": p.protocol},
        "details": jsonable(f.details),
        "limits": [limit_dict(a) for a in f.limits],
        "measurements": [measurement_dict(m) for m in f.measurements],
    }


def limit_dict(limit: AppliedLimit) -> dict[str, Any]:
    """An applied limit as data: unit, thresholds (side, tier, value), condition, dose basis."""
    return {
        "unit": limit.unit,
        "bounds": [{"side": b.side, "tier": b.tier, "value": jsonable(b.value)} for b in limit.bounds],
        "condition": limit.condition or None,
        "applies": limit.applies,
        "dose_basis": limit.dose_basis or None,
        "note": limit.note or None,
        "text": limit.describe(),
    }


def measurement_dict(m: Measurement) -> dict[str, Any]:
    """One measured value on one dose basis."""
    return {"basis": m.basis, "value": jsonable(m.value), "unit": m.unit, "status": m.status.value,
            "lower": jsonable(m.lower), "upper": jsonable(m.upper), "reason": m.reason or None}


def plan_dicts(report: CheckReport) -> list[dict[str, Any]]:
    """One entry per course (RT Plan) with its fractionation summary."""
    out = []
    for info in report.context.courses:
        plan, s = info.course.plan, info.summary
        out.append({
            "label": info.label,
            "sop_instance_uid": plan.sop_instance_uid,
            "date": plan.date or None,
            "approval_status": plan.approval_status or None,
            "fractions": plan.fractions_planned,
            "prescription_gy": jsonable(info.prescription_gy),
            "dose_per_fraction_gy": jsonable(s.dose_per_fraction_gy) if s else None,
            "bed10_gy": jsonable(s.bed10_gy) if s else None,
            "eqd2_10_gy": jsonable(s.eqd2_10_gy) if s else None,
            "regime": s.regime.value if s else None,
            "dose_summary": info.course.dose_summary or None,
            "dose_type": info.course.dose.dose_type or "PHYSICAL",
        })
    return out


def _identifying_strings(report: CheckReport) -> list[str]:
    export = report.export
    found = {export.patient_id or "", export.patient_name or ""}
    name = export.patient_name or ""
    found |= {name.replace("^", " ").strip(), " ".join(p for p in reversed(name.split("^")[:2]) if p)}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, "[patient]")
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    return value


def check_report_dict(report: CheckReport) -> dict[str, Any]:
    """The whole JSON document as plain data (see ``docs/report-json.md``).

    The patient's ID and name never appear: any text that would contain them
    (a file path named after the patient, say) shows ``[patient]`` instead.
    """
    return _redact(_report_dict(report), _identifying_strings(report))


def _report_dict(report: CheckReport) -> dict[str, Any]:
    protocol = report.protocol
    return {
        "schema_version": report.schema_version,
        "plancheck_version": report.plancheck_version,
        "protocol": {"id": protocol.id, "title": protocol.title, "version": protocol.version, "chain": list(protocol.chain)},
        "case_file": report.context.case_source,
        "plans": plan_dicts(report),
        "left_out_plans": [{"label": p.label or None, "sop_instance_uid": p.uid, "reason": p.reason}
                           for p in report.export.left_out],
        "volume_models": list(report.export.volume_model_descriptions),
        "summary": dict(report.summary),
        "results": [result_dict(f) for f in report.findings],
        "not_applicable": [{"rule_id": n.rule_id, "title": n.title, "reason": n.reason} for n in report.not_applicable],
        "warnings": list(report.warnings),
        "elapsed_s": round(float(report.elapsed_s), 3),
    }


def check_json(report: CheckReport) -> str:
    """The JSON report (UTF-8 text, indented, keys in the documented order)."""
    return json.dumps(check_report_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def group_by_category(items: list, category=lambda x: x.category) -> list[tuple[str, list]]:
    """``[(category, [items...]), ...]`` in :data:`CATEGORY_ORDER` (unknown categories last,
    alphabetically); the items keep their order."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(category(item), []).append(item)
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    return sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
