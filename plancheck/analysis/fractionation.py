"""Fractionation summary of each course: prescription, fractions, dose per
fraction, BED₁₀, EQD2₁₀, regime — and where the plan contradicts itself.

The prescription is the plan's TARGET dose reference (Target Prescription Dose,
whole course); the number of fractions is the fraction group's Number of
Fractions Planned. plancheck says so when they cannot be found, when several
target prescriptions differ, and when the dose distribution does not match the
prescription: D95% of the referenced target ROI more than
``DOSE_MISMATCH_TOLERANCE_PCT`` away from it. (D95%, not the median: SBRT is
prescribed to the periphery, so its median dose is well above the prescription.)
"""

from __future__ import annotations

from dataclasses import dataclass

from plancheck.dvh.engine import compute_dvh
from plancheck.dvh.metrics import evaluate_metric
from plancheck.model.export import Course, PlanWithoutDose
from plancheck.radiobiology import FractionationSummary, summarize_fractionation

__all__ = ["CourseFractionation", "course_fractionation", "DOSE_MISMATCH_TOLERANCE_PCT"]

DOSE_MISMATCH_TOLERANCE_PCT = 10.0
"""Target D95% further than this (percent of the prescription) from the prescription is reported."""


@dataclass(frozen=True)
class CourseFractionation:
    """Fractionation of one course."""

    label: str
    sop_instance_uid: str
    prescription_gy: float | None
    fractions: int | None
    summary: FractionationSummary | None
    target_roi: str | None
    target_d95_gy: float | None
    remarks: tuple[str, ...]
    dose_type: str = "PHYSICAL"  # the dose's Dose Type (3004,0004); "" when the plan was read without its dose


def course_fractionation(course: Course | PlanWithoutDose) -> CourseFractionation:
    """Summarise one course, or a plan read without its dose or structure set (never raises
    for missing data: remarks say what is missing, and D95% is not computed without a dose)."""
    plan = course.plan
    remarks: list[str] = []
    dose = getattr(course, "dose", None)
    if dose is None:
        remarks.append(f"D95% not computed: {course.reason}")
    targets = plan.target_prescriptions
    rx = plan.prescription_dose_gy
    distinct = sorted({round(t.target_prescription_dose_gy, 4) for t in targets})  # type: ignore[arg-type]
    if len(distinct) > 1:
        remarks.append(f"the plan has {len(distinct)} different target prescriptions ({', '.join(f'{d:g}' for d in distinct)} Gy); the highest is used")
    if rx is None:
        remarks.append("no target prescription dose in the plan's dose references")
    n = plan.fractions_planned
    if n is None:
        remarks.append("no number of fractions planned in the plan's fraction group")
    if len(plan.dose_fraction_groups) > 1:
        remarks.append(f"{plan.fractions_unknown_reason.removeprefix('the plan has ')}, so the regime is not placed")
    elif len(plan.fraction_groups) > 1:
        remarks.append(f"{len(plan.fraction_groups)} fraction groups: the fractions of the one with treatment beams are used")
    dose_n = plan.dose_fractions  # the fractions the dose is delivered in (Plan.dose_fractions)
    summary = summarize_fractionation(rx, dose_n) if rx and dose_n else None
    target_name = d95 = None
    ref = next((t for t in targets if t.target_prescription_dose_gy == rx and t.referenced_roi_number is not None), None)
    if ref is not None and course.structure_set is None:
        remarks.append(f"the prescription refers to ROI number {ref.referenced_roi_number}, but the plan's structure "
                       "set is not in the input")
    elif ref is not None:
        try:
            roi = course.structure_set.roi_by_number(ref.referenced_roi_number)  # type: ignore[arg-type]
        except KeyError:
            roi = None
            remarks.append(f"the prescription refers to ROI number {ref.referenced_roi_number}, which is not in the structure set")
        else:
            target_name = roi.name
        if roi is not None and roi.defects:
            remarks.append(f"D95% of {roi.name} is not computed: {'; '.join(roi.defects)}")
        elif roi is not None and dose is not None:
            metric = evaluate_metric("D95%[Gy]", compute_dvh(roi, dose))
            d95 = metric.value
            if d95 is None:
                remarks.append(f"D95% of {roi.name} could not be computed: {metric.reason}")
            elif rx and abs(d95 - rx) / rx * 100 > DOSE_MISMATCH_TOLERANCE_PCT:
                remarks.append(
                    f"D95% of {roi.name} is {d95:.2f} Gy, {100 * (d95 - rx) / rx:+.1f}% from the prescription {rx:g} Gy: "
                    "dose and prescription disagree"
                )
    if dose is not None and dose.is_rbe_weighted:
        remarks.append("the dose is RBE-weighted (Dose Type EFFECTIVE): D95% is in Gy(RBE)")
    dose_type = (dose.dose_type or "PHYSICAL") if dose is not None else ""
    return CourseFractionation(course.label, plan.sop_instance_uid, rx, n, summary, target_name, d95, tuple(remarks),
                               dose_type)
