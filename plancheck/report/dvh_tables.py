"""Renderers of DVH tables (``plancheck dvh``): aligned text, JSON and CSV.

JSON shape (documented in the README)::

    {"plancheck_version": ..., "engine": ..., "plans": [
        {"label", "sop_instance_uid", "fractions", "prescription_gy", "dose_summary",
         "dose_type", "composite_of", "volume_model", "structures": [
            {"name", "roi_number", "volume_cc", "dose_coverage_pct", "dose_kind",
             "alpha_beta_gy", "alpha_beta_source",
             "metrics": {"Mean[Gy]": 12.3, "D95%[Gy]": null, ...},
             "undefined": {"D95%[Gy]": "why"}, "notes": [...], "not_computed": null}]}]}

``dose_type`` is the Dose Type of the plan's dose (``PHYSICAL`` or ``EFFECTIVE``); for an
EFFECTIVE (RBE-weighted) dose ``dose_kind`` says ``RBE-weighted (EFFECTIVE)`` (or e.g.
``EQD2(α/β=3 Gy) of RBE-weighted dose``). ``not_computed`` gives the reason when the
structure was read but cannot be measured (its volume, coverage and metrics are null).
Text and CSV output show control characters in names as visible escapes, and CSV cells
that a spreadsheet would run as a formula are prefixed with ``'``
(:mod:`plancheck.report.sanitize`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from plancheck import __version__
from plancheck.dvh.tables import CourseDVHs
from plancheck.model.dose import RBE_WEIGHTED
from plancheck.report.sanitize import csv_row, markup_safe

__all__ = ["dvh_json", "dvh_csv", "dvh_text", "dvh_curves_csv"]


def _volume(row) -> float | None:
    return None if row.dvh is None else row.dvh.volume_cc


def _coverage(row) -> float | None:
    return None if row.dvh is None else row.dvh.dose_coverage_pct


def _structure_dict(row) -> dict:
    return {
        "name": row.roi.name,
        "roi_number": row.roi.number,
        "volume_cc": _finite_or_none(_volume(row)),
        "dose_coverage_pct": _finite_or_none(_coverage(row)),
        "dose_kind": row.dose_kind,
        "alpha_beta_gy": row.alpha_beta_gy,
        "alpha_beta_source": row.alpha_beta_source or None,
        "metrics": {m.metric: _finite_or_none(m.value) for m in row.metrics},
        "undefined": {m.metric: m.reason for m in row.metrics if m.value is None},
        "notes": list(row.dvh.notes) if row.dvh is not None else [],
        "not_computed": row.not_computed or None,
    }


def dvh_json(tables: Sequence[CourseDVHs]) -> str:
    """The JSON document for pipelines."""
    doc = {
        "plancheck_version": __version__,
        "engine": tables[0].engine if tables else "plancheck",
        "plans": [
            {
                "label": t.label,
                "sop_instance_uid": t.sop_instance_uid,
                "fractions": t.fractions,
                "prescription_gy": t.prescription_gy,
                "dose_summary": t.dose_summary,
                "dose_type": t.dose_type,
                "composite_of": list(t.composite_of),
                "volume_model": t.volume_model or None,
                "structures": [_structure_dict(r) for r in t.structures],
            }
            for t in tables
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def dvh_csv(tables: Sequence[CourseDVHs]) -> str:
    """One row per plan, structure and metric."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["plan_label", "structure", "roi_number", "volume_cc", "dose_coverage_pct", "dose_kind", "alpha_beta_gy", "metric", "value", "unit", "note", "volume_model"])
    for t in tables:
        for r in t.structures:
            for m in r.metrics:
                writer.writerow(csv_row([
                    t.label, r.roi.name, r.roi.number, _fmt(_volume(r), 4), _fmt(_coverage(r), 2),
                    r.dose_kind, "" if r.alpha_beta_gy is None else f"{r.alpha_beta_gy:g}",
                    m.metric, _fmt(m.value, 4), m.unit, m.reason or "", t.volume_model.split(":", 1)[0],
                ]))
    return out.getvalue()


def dvh_curves_csv(tables: Sequence[CourseDVHs], step_gy: float = 0.1) -> str:
    """Cumulative DVH curves: plan, structure, dose kind, dose (Gy), volume (cc and %)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["plan_label", "structure", "dose_kind", "dose_gy", "volume_cc", "volume_pct"])
    for t in tables:
        for r in t.structures:
            if r.dvh is None:  # not computed (Roi.defects): no curve
                continue
            doses, volumes = r.dvh.cumulative(step_gy)
            total = r.dvh.volume_cc
            for d, v in zip(doses, volumes):
                writer.writerow(csv_row([t.label, r.roi.name, r.dose_kind, f"{d:.3f}", f"{v:.5g}",
                                         f"{100 * v / total:.4g}" if total else ""]))
    return out.getvalue()


def _fmt(x: float | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{x:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{x:.0f}"


def dvh_text(tables: Sequence[CourseDVHs], *, color: bool = False, width: int = 160) -> str:
    """Aligned tables, one per plan; undefined values shown as ``—`` with the reason below."""
    from rich.console import Console
    from rich.table import Table

    escape = markup_safe  # names and messages from the input: control characters shown, markup literal

    console = Console(record=True, width=width, color_system="standard" if color else None, force_terminal=color, file=io.StringIO())
    for t in tables:
        title = t.label if not t.composite_of else f"composite of {', '.join(t.composite_of)}"
        rx = f"{t.prescription_gy:g} Gy" if t.prescription_gy else "not stated"
        fractions = "per course" if t.composite_of else (t.fractions or "not stated")
        weighted = f"  dose: {RBE_WEIGHTED}" if t.dose_type.strip().upper() == "EFFECTIVE" else ""
        console.print(f"[bold]{escape(title)}[/bold]  fractions: {escape(fractions)}  prescription: {rx}  "
                      f"engine: {t.engine}{escape(weighted)}")
        if t.dose_summary:
            console.print(f"  dose: {escape(t.dose_summary)}")
        if t.volume_model:
            console.print(f"  volume model: {escape(t.volume_model)}")
        metric_names = [m.metric for m in t.structures[0].metrics] if t.structures else []
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        table.add_column("Structure")
        table.add_column(escape("Volume [cc]"), justify="right")
        table.add_column(escape("In grid [%]"), justify="right")
        kinds = {r.dose_kind for r in t.structures}
        if kinds != {"physical"}:
            table.add_column("Dose kind")
        for name in metric_names:
            if name != "Volume[cc]":
                table.add_column(escape(name), justify="right")
        footnotes = []
        for r in t.structures:
            if r.dvh is None:
                footnotes.append(f"{r.roi.name}: not computed: {'; '.join(r.roi.defects)}")
                cells = [escape(r.roi.name), "—", "—"] + ([escape(r.dose_kind)] if kinds != {"physical"} else [])
                table.add_row(*cells, *("—" for m in r.metrics if m.metric != "Volume[cc]"))
                continue
            cells = [escape(r.roi.name), f"{r.dvh.volume_cc:.2f}", f"{r.dvh.dose_coverage_pct:.1f}"]
            if kinds != {"physical"}:
                cells.append(escape(r.dose_kind))
            for m in r.metrics:
                if m.metric == "Volume[cc]":
                    continue
                if m.value is None:
                    footnotes.append(f"{r.roi.name} {m.metric}: {m.reason}")
                    cells.append("—")
                else:
                    cells.append(f"{m.value:.2f}")
            table.add_row(*cells)
        console.print(table)
        for note in footnotes:
            console.print(f"  — {escape(note)}", highlight=False)
        console.print()
    return console.export_text(styles=color)


def _finite_or_none(x: float | None) -> float | None:
    """JSON-friendly: None for None/NaN/inf."""
    return None if x is None or not math.isfinite(x) else float(x)
