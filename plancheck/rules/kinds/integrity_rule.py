"""Rule kind ``integrity``: is the export a coherent, plausible plan? (docs/clinical-basis.md, plan integrity)

Every plan, whatever the protocol, is first checked for integrity: one patient,
linked objects, dose units, dose summation, dose grid, heterogeneity correction,
prescription against dose, fractionation against the protocol, isocenter,
machine, energies and monitor units. Each rule names one ``check``; the fields
each check takes (all thresholds live in the protocol file, none in this code)::

    - id: INT-GRID-SPACING
      kind: integrity
      check: grid_spacing
      title: Dose grid spacing
      category: integrity
      course: all                     # all | conventional | sbrt | a course label (per-course checks)
      limits_by_regime:               # 'conventional' = every course that is not SBRT
        conventional: {unit: mm, upper: {per_protocol: 3}}
        sbrt: {unit: mm, upper: {per_protocol: 2}}
      provenance: {source: ..., section: ..., confidence: companion}

=============================  ==================================================================
check                          fields (R = required)
=============================  ==================================================================
same_patient                   —
references                     —
dose_units                     ``allowed_dose_types`` R: [PHYSICAL] and/or EFFECTIVE
dose_summation                 ``accepted_summation_types`` R: Dose Summation Types of the files
grid_covers                    ``structures``: ``evaluated`` (targets and every structure a rule
                               of the protocol names), ``all_contoured`` or a list of standard
                               names; ``exclude_external`` (default true); ``exclude_types``
                               (RT ROI Interpreted Types); ``limits`` R (unit %)
grid_spacing                   ``limits_by_regime`` R (unit mm)
heterogeneity                  ``disallowed`` R (e.g. [WATER]); ``only_if_structures`` (standard
                               names: the rule applies when one is contoured, e.g. the lungs
                               for a thoracic plan)
prescription_matches_dose      ``metric`` (default ``D95%[Gy]``); ``limits`` or
                               ``limits_by_regime`` R (unit %: the metric as % of the dose
                               reference's Target Prescription Dose)
fractions_match_protocol       ``regimes_by_role`` R: {primary|metastasis|nodal: {per_protocol:
                               [...], acceptable: [...]}} of regimes hyperfractionated,
                               conventional, moderately_hypofractionated, sbrt, other;
                               ``dose_per_fraction_by_role`` (Limits, unit Gy)
isocenter_in_body              ``body_structure`` (standard name, default External)
single_machine                 —
beam_energy                    ``allowed_mv`` (photon nominal energies); ``mixed_energies``
                               (pass | warn | fail, default warn)
meterset                       ``limits_by_regime`` R (unit MU/Gy: course MU / course Rx)
=============================  ==================================================================

Each check is a model of its own (its fields, which are required, their units) with its
evaluator (:mod:`plancheck.rules.checks`); a field that does not belong to the rule's check is
an error, so a misplaced threshold never goes unnoticed.

References
----------
DICOM PS3.3 C.8.8.3 (RT Dose: Dose Units, Dose Type, Dose Summation Type, Tissue
Heterogeneity Correction), C.8.8.10 (RT Prescription), C.8.8.13 (RT Fraction Scheme:
Beam Meterset), C.8.8.14 (RT Beams: Treatment Machine Name, Nominal Beam Energy,
Isocenter Position). AAPM TG-275 (physics plan and chart review, 2020); AAPM TG-101
(SBRT, 2010: dose grid ≤ 2 mm, heterogeneity correction).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from plancheck.dvh.engine import grid_coverage_pct
from plancheck.dvh.metrics import parse_metric
from plancheck.errors import MetricSpecError
from plancheck.model.structures import Roi
from plancheck.polygons import points_in_polygons
from plancheck.protocol.schema import StrictModel
from plancheck.radiobiology import FractionationRegime
from plancheck.rules.base import RuleNotApplicable, finding, not_evaluated
from plancheck.rules.checks import CheckKind, CheckRule
from plancheck.rules.context import CheckContext, CourseInfo, structure_names
from plancheck.rules.findings import Finding, Status, worst_status
from plancheck.rules.thresholds import Limits, grade, grade_interval

__all__ = [
    "IntegrityRule", "IntegrityCheck", "CourseCheck", "LimitsByRegime", "RegimeSet", "INTEGRITY", "INTEGRITY_KIND",
    "evaluate_integrity_rule", "coverage_pct",
    "SamePatient", "References", "DoseUnits", "DoseSummation", "GridCovers", "GridSpacing", "Heterogeneity", "PrescriptionMatchesDose", "FractionsMatchProtocol", "IsocenterInBody", "SingleMachine", "BeamEnergy", "Meterset",
]

RegimeName = Literal["hyperfractionated", "conventional", "moderately_hypofractionated", "sbrt", "other"]
Role = Literal["primary", "metastasis", "nodal"]

_REGIME_NAME = {
    FractionationRegime.HYPERFRACTIONATED: "hyperfractionated",
    FractionationRegime.CONVENTIONAL: "conventional",
    FractionationRegime.MODERATELY_HYPOFRACTIONATED: "moderately_hypofractionated",
    FractionationRegime.SBRT: "sbrt",
    FractionationRegime.OTHER: "other",
}
#: Treatment Machine Names that name no machine: planning systems write them into
#: placeholder beams (GammaPlan exports a beam on machine "BOGUS NAME" with energy 0).
_PLACEHOLDER_NAME = re.compile(r"\b(BOGUS|DUMMY|PLACEHOLDER|UNKNOWN)\b|^\s*(NONE|N/?A|TBD|-+)\s*$", re.IGNORECASE)
_SUMMATION_TYPES = Literal["PLAN", "BEAM", "FRACTION", "BEAM_SESSION", "FRACTION_SESSION"]


class LimitsByRegime(StrictModel):
    """Limits per fractionation regime: ``sbrt`` for SBRT courses, ``conventional`` for every other one."""

    conventional: Limits | None = None
    sbrt: Limits | None = None

    @model_validator(mode="after")
    def _check(self) -> LimitsByRegime:
        if self.conventional is None and self.sbrt is None:
            raise ValueError("give limits for 'conventional' and/or 'sbrt'")
        return self


class RegimeSet(StrictModel):
    """Regimes expected per protocol (PASS) and acceptable as a variation (WARN); any other: FAIL."""

    per_protocol: list[RegimeName] = Field(min_length=1)
    acceptable: list[RegimeName] = Field(default_factory=list)


def _run_per_course(function, rule: IntegrityCheck, ctx: CheckContext) -> list[Finding]:
    """A check of each course has nothing to check without one."""
    if isinstance(rule, CourseCheck) and not ctx.courses:
        return [not_evaluated(rule, "the export has no course with a dose")]
    return function(rule, ctx)


INTEGRITY = CheckKind("integrity", run=_run_per_course)
"""The integrity checks: one model (each above its evaluator) and one function each."""


class IntegrityCheck(CheckRule):
    """Fields of every integrity rule."""

    kind: Literal["integrity"]
    check_kind: ClassVar[CheckKind] = INTEGRITY


class CourseCheck(IntegrityCheck):
    """An integrity check of each course; ``course`` chooses which: ``all``, ``conventional``,
    ``sbrt`` or a course label."""

    course: str = "all"


def _limits_in(check: str, unit: str, limits: Iterable[Limits | None]) -> None:
    for lim in limits:
        if lim is not None and lim.unit != unit:
            raise ValueError(f"check {check!r} takes limits in {unit!r}, not {lim.unit!r}")


def _regime_sets(by_regime: LimitsByRegime | None) -> tuple[Limits | None, ...]:
    return () if by_regime is None else (by_regime.conventional, by_regime.sbrt)


# ---------------------------------------------------------------------- helpers
def _courses(rule: CourseCheck, ctx: CheckContext) -> list[CourseInfo]:
    chosen, unplaced = ctx.courses_matching(rule.course)
    if not chosen and not unplaced:
        raise RuleNotApplicable(f"no {rule.course} course in the export")
    return chosen + unplaced  # a course whose regime is unknown: the check grades it only where the regime does not matter


def _regime_limits(info: CourseInfo, by_regime: LimitsByRegime) -> tuple[list[Limits], str]:
    """The limits that apply to a course: one set when its regime is known, else every set
    given (the caller reports a grade only if they agree)."""
    if info.regime is None:
        options = [x for x in (by_regime.conventional, by_regime.sbrt) if x is not None]
        return options, "regime unknown (no prescription or fractions)"
    if info.is_sbrt is None:
        options = [x for x in (by_regime.conventional, by_regime.sbrt) if x is not None]
        return options, "regime unknown"
    lim = by_regime.sbrt if info.is_sbrt else by_regime.conventional
    name = "SBRT" if info.is_sbrt else "non-SBRT"
    return ([lim] if lim is not None else []), name


def _grade_options(value: float, options: list[Limits]) -> tuple[Status, str]:
    grades = {grade(value, lim) for lim in options}
    if len(grades) == 1:
        text = options[0].describe() if len(options) == 1 else " or ".join(o.describe() for o in options)
        return grades.pop(), text
    return Status.NOT_EVALUATED, " or ".join(o.describe() for o in options)


def _verdict(status: Status) -> str:
    return {Status.PASS: "within", Status.WARN: "outside per-protocol but within acceptable",
            Status.FAIL: "outside"}.get(status, "not graded against")


def _body_roi(ctx: CheckContext, name: str) -> tuple[Roi | None, str]:
    lookup = ctx.structure(name)
    if lookup.roi is not None:
        return lookup.roi, ""
    if lookup.defective is not None:  # the body was found but cannot be measured: no stand-in
        return None, f"{name}: {lookup.reason}"
    for roi in ctx.structure_set.rois:
        if roi.interpreted_type.upper() == "EXTERNAL" and not roi.is_empty and not roi.defects:
            return roi, ""
    return None, f"{name}: {lookup.reason}"


# ---------------------------------------------------------------------- checks
class SamePatient(IntegrityCheck):
    """Every RT file of the export has the plan's Patient ID."""

    check: Literal["same_patient"]


@INTEGRITY.evaluator(SamePatient)
def _same_patient(rule: SamePatient, ctx: CheckContext) -> list[Finding]:
    export = ctx.export
    if not export.patient_id:
        return [not_evaluated(rule, "(0010,0020) 'Patient ID' of the RT Plan is empty: the patient's identity cannot be confirmed")]
    others = [s.path or s.label for s in export.structure_sets if s.patient_id and s.patient_id != export.patient_id]
    n_files = len(export.courses) + len(export.structure_sets) + sum(len(c.dose.sources) for c in export.courses)
    if others:
        return [finding(rule, Status.FAIL, f"(0010,0020) 'Patient ID' of structure set(s) {', '.join(others)} differs from the plan's",
                        details={"files": n_files})]
    return [finding(rule, Status.PASS, f"all {n_files} RT files share one (0010,0020) 'Patient ID' (the reader refuses mixed patients)",
                    details={"files": n_files})]


class References(CourseCheck):
    """Plan → structure set and dose → plan references resolve; one frame of reference."""

    check: Literal["references"]


@INTEGRITY.evaluator(References)
def _references(rule: References, ctx: CheckContext) -> list[Finding]:
    frame = ctx.export.frame_of_reference_uid
    out = []
    for info in _courses(rule, ctx):
        plan, rtss, dose = info.course.plan, info.course.structure_set, info.course.dose
        problems, remarks = [], []
        if not plan.referenced_structure_set_uid:
            remarks.append("the plan has no (300C,0060) 'Referenced Structure Set Sequence' (linked to the only structure set)")
        elif plan.referenced_structure_set_uid != rtss.sop_instance_uid:
            problems.append(f"the plan references structure set {plan.referenced_structure_set_uid}, not {rtss.sop_instance_uid}")
        if dose.referenced_plan_uid and dose.referenced_plan_uid != plan.sop_instance_uid:
            problems.append(f"the dose references RT Plan {dose.referenced_plan_uid}, not {plan.sop_instance_uid}")
        frames = {"plan": plan.frame_of_reference_uid, "structure set": rtss.frame_of_reference_uid,
                  "dose": dose.frame_of_reference_uid}
        for what, uid in frames.items():
            if uid and uid != frame:
                problems.append(f"the {what} is in frame of reference {uid}, not {frame}")
        cts = [s for s in ctx.export.images if s.modality == "CT"]
        if cts and not any(s.frame_of_reference_uid == frame for s in cts):
            remarks.append("no CT series of the export is in the plan's frame of reference")
        details = {"frame_of_reference_uid": frame, "structure_set": rtss.sop_instance_uid,
                   "dose_files": [s.sop_instance_uid for s in dose.sources]}
        if problems:
            out.append(finding(rule, Status.FAIL, "; ".join(problems + remarks), courses=(info.label,), details=details))
        elif remarks:
            out.append(finding(rule, Status.WARN, "; ".join(remarks), courses=(info.label,), details=details))
        else:
            out.append(finding(rule, Status.PASS, "plan → structure set and dose → plan references resolve; plan, "
                               "structure set and dose share one frame of reference", courses=(info.label,), details=details))
    return out


class DoseUnits(CourseCheck):
    """Dose Type (3004,0004) is one of ``allowed_dose_types``."""

    check: Literal["dose_units"]
    allowed_dose_types: list[Literal["PHYSICAL", "EFFECTIVE"]]


@INTEGRITY.evaluator(DoseUnits)
def _dose_units(rule: DoseUnits, ctx: CheckContext) -> list[Finding]:
    allowed = rule.allowed_dose_types or []
    out = []
    for info in _courses(rule, ctx):
        dose_type = info.course.dose.dose_type.strip().upper()
        limit = f"Dose Units GY; Dose Type {' or '.join(allowed)}"
        if not dose_type:
            out.append(finding(rule, Status.WARN, "(3004,0004) 'Dose Type' is empty: plancheck treats the dose as PHYSICAL",
                               limit=limit, courses=(info.label,)))
        elif dose_type not in allowed:
            out.append(finding(rule, Status.FAIL, f"(3004,0004) 'Dose Type' is {dose_type!r}, the protocol expects "
                               f"{' or '.join(allowed)}", limit=limit, courses=(info.label,)))
        else:
            out.append(finding(rule, Status.PASS, f"dose in GY (the reader refuses other units), Dose Type {dose_type}",
                               limit=limit, courses=(info.label,)))
    return out


class DoseSummation(CourseCheck):
    """Dose Summation Type (3004,000A) of every dose file is accepted, BEAM doses hold every treatment beam."""

    check: Literal["dose_summation"]
    accepted_summation_types: list[_SUMMATION_TYPES]


@INTEGRITY.evaluator(DoseSummation)
def _dose_summation(rule: DoseSummation, ctx: CheckContext) -> list[Finding]:
    accepted = rule.accepted_summation_types or []
    out = []
    for info in _courses(rule, ctx):
        course = info.course
        types = [s.summation_type for s in course.dose.sources]
        details = {"dose_summary": course.dose_summary, "summation_types": types}
        bad = sorted({t for t in types if t not in accepted})
        limit = " or ".join(accepted)
        if not types:
            out.append(not_evaluated(rule, "the dose records no source file, so its Dose Summation Type is unknown",
                                     courses=(info.label,), details=details))
            continue
        if bad:
            out.append(finding(rule, Status.FAIL, f"(3004,000A) 'Dose Summation Type' {', '.join(bad)} is not accepted "
                               f"by the protocol ({limit}); {course.dose_summary}", limit=limit,
                               courses=(info.label,), details=details))
            continue
        beam_sources = [s for s in course.dose.sources if s.summation_type in ("BEAM", "BEAM_SESSION")]
        if beam_sources:
            beams = sorted(n for s in beam_sources for n in s.referenced_beam_numbers)
            wanted = sorted(b.number for b in course.plan.treatment_beams if b.meterset_mu != 0.0)
            if beams and beams != wanted:
                out.append(finding(rule, Status.FAIL, f"BEAM doses hold beams {beams} but the plan's treatment beams are "
                                   f"{wanted}; {course.dose_summary}", limit=limit, courses=(info.label,), details=details))
                continue
        out.append(finding(rule, Status.PASS, course.dose_summary or f"{'/'.join(types)} dose", limit=limit,
                           courses=(info.label,), details=details))
    return out


def _evaluated_rois(rule: GridCovers, ctx: CheckContext) -> tuple[list[Roi], list[str]]:
    """The ROIs whose coverage is checked, and the names asked for but not found."""
    rois: dict[int, Roi] = {}
    missing: list[str] = []
    if rule.structures == "all_contoured":
        for roi in ctx.structure_set.rois:
            if roi.defects:
                missing.append(f"{roi.name} (cannot be measured)")
            elif not roi.is_empty:
                rois[roi.number] = roi
    else:
        names = list(rule.structures) if isinstance(rule.structures, list) else []
        if rule.structures == "evaluated":
            for group in ctx.targets:
                for roi in group.volumes.values():
                    rois[roi.number] = roi
                missing += [f"{roi.name} (cannot be measured)" for roi in group.defective.values()]
            for resolved in ctx.protocol.rules:
                for name in structure_names(getattr(resolved.rule, "structure", None)):
                    if name not in names:
                        names.append(name)
        for name in names:
            lookup = ctx.structure(name)
            if lookup.roi is None:
                missing.append(name)
            else:
                rois[lookup.roi.number] = lookup.roi
    excluded_types = {t.upper() for t in rule.exclude_types}
    if rule.exclude_external:
        excluded_types.add("EXTERNAL")
    external, _ = _body_roi(ctx, "External") if rule.exclude_external else (None, "")
    kept = [r for r in rois.values() if r.interpreted_type.upper() not in excluded_types
            and not (external is not None and r.number == external.number)]
    return kept, missing


def coverage_pct(ctx: CheckContext, roi: Roi, info: CourseInfo) -> float:
    """Percentage of the ROI volume inside the course's dose grid: the DVH's
    ``dose_coverage_pct``, from the DVH engine's sample points (cached in the context)
    without interpolating the dose."""
    return grid_coverage_pct(roi, info.course.dose, lambda: ctx.sampling(roi, info))


class GridCovers(CourseCheck):
    """The dose grid covers the structures (% of each structure's volume inside the grid)."""

    check: Literal["grid_covers"]
    structures: Literal["evaluated", "all_contoured"] | list[str] = "evaluated"
    exclude_external: bool = True
    exclude_types: list[str] = Field(default_factory=list)
    limits: Limits

    @model_validator(mode="after")
    def _units(self) -> GridCovers:
        _limits_in(self.check, "%", [self.limits])
        return self


@INTEGRITY.evaluator(GridCovers)
def _grid_covers(rule: GridCovers, ctx: CheckContext) -> list[Finding]:
    limits = rule.limits
    rois, missing = _evaluated_rois(rule, ctx)
    if not rois:
        return [not_evaluated(rule, "no structure to check" + (f" (not found or not measurable: {', '.join(missing)})" if missing else ""))]
    out = []
    for info in _courses(rule, ctx):
        values = {roi.name: coverage_pct(ctx, roi, info) for roi in rois}
        statuses = {name: grade(v, limits) for name, v in values.items()}
        status = worst_status(list(statuses.values()))
        short = sorted((n for n, s in statuses.items() if s is not Status.PASS), key=values.__getitem__)
        worst = min(values.values())
        details = {"coverage_pct": {n: round(v, 2) for n, v in values.items()}}
        if missing:
            details["not_in_structure_set"] = missing
        if short:
            message = (f"the dose grid of {info.label} covers only "
                       + ", ".join(f"{values[n]:.1f}% of {n}" for n in short) + f" (limit {limits.describe()})")
        else:
            message = f"the dose grid of {info.label} covers all {len(values)} checked structures ({limits.describe()})"
        out.append(finding(rule, status, message, measured=worst, unit="%", limit=limits.describe(),
                           structures=tuple(short), courses=(info.label,), details=details))
    return out


class GridSpacing(CourseCheck):
    """The dose grid's largest spacing (mm), limits per regime."""

    check: Literal["grid_spacing"]
    limits_by_regime: LimitsByRegime

    @model_validator(mode="after")
    def _units(self) -> GridSpacing:
        _limits_in(self.check, "mm", _regime_sets(self.limits_by_regime))
        return self


@INTEGRITY.evaluator(GridSpacing)
def _grid_spacing(rule: GridSpacing, ctx: CheckContext) -> list[Finding]:
    out = []
    for info in _courses(rule, ctx):
        grid = info.course.dose
        steps = [float(np.max(np.diff(a))) if len(a) > 1 else 0.0 for a in (grid.x_mm, grid.y_mm, grid.z_mm)]
        largest = max(steps)
        options, regime = _regime_limits(info, rule.limits_by_regime)
        details = {"spacing_mm": {"x": steps[0], "y": steps[1], "z": steps[2]}, "regime": regime}
        shown = " × ".join(f"{s:g}" for s in steps) + " mm"
        if not options:
            raise RuleNotApplicable(f"no grid spacing limit for {regime} courses")
        status, limit = _grade_options(largest, options)
        if status is Status.NOT_EVALUATED:
            out.append(not_evaluated(rule, f"dose grid {shown}: the limit depends on the regime, which is unknown "
                                     "(no prescription or fractions)", measured=largest, unit="mm", limit=limit,
                                     courses=(info.label,), details=details))
            continue
        out.append(finding(rule, status, f"dose grid spacing {shown} ({regime} course): largest {largest:g} mm "
                           f"{_verdict(status)} {limit}", measured=largest, unit="mm", limit=limit,
                           courses=(info.label,), details=details))
    return out


class Heterogeneity(CourseCheck):
    """Tissue Heterogeneity Correction (3004,0014) is not only one of ``disallowed``."""

    check: Literal["heterogeneity"]
    disallowed: list[str]
    only_if_structures: list[str] | None = None


@INTEGRITY.evaluator(Heterogeneity)
def _heterogeneity(rule: Heterogeneity, ctx: CheckContext) -> list[Finding]:
    if rule.only_if_structures:
        lookups = [ctx.structure(n) for n in rule.only_if_structures]
        present = [lk for lk in lookups if lk.roi is not None or lk.defective is not None]  # contoured, even if damaged
        if not present:
            raise RuleNotApplicable(f"none of {', '.join(rule.only_if_structures)} is contoured")
    disallowed = {d.upper() for d in rule.disallowed or []}
    limit = f"not only {', '.join(sorted(disallowed))}"
    out = []
    for info in _courses(rule, ctx):
        values = tuple(v.strip().upper() for v in info.course.dose.heterogeneity_correction if v.strip())
        joined = "\\".join(values)
        if not values:
            out.append(not_evaluated(rule, "the dose has no (3004,0014) 'Tissue Heterogeneity Correction': "
                                     "whether it was corrected for tissue density is unknown", limit=limit,
                                     courses=(info.label,)))
        elif set(values) <= disallowed:
            out.append(finding(rule, Status.FAIL, f"(3004,0014) 'Tissue Heterogeneity Correction' is {joined}: "
                               "the dose was calculated without heterogeneity correction", limit=limit,
                               courses=(info.label,), details={"values": list(values)}))
        else:
            out.append(finding(rule, Status.PASS, f"(3004,0014) 'Tissue Heterogeneity Correction' is {joined}",
                               limit=limit, courses=(info.label,), details={"values": list(values)}))
    return out


class PrescriptionMatchesDose(CourseCheck):
    """A dose metric of each prescribed target in % of its Target Prescription Dose."""

    check: Literal["prescription_matches_dose"]
    metric: str = "D95%[Gy]"
    limits: Limits | None = None
    limits_by_regime: LimitsByRegime | None = None

    @model_validator(mode="after")
    def _limits_and_metric(self) -> PrescriptionMatchesDose:
        if (self.limits is None) == (self.limits_by_regime is None):
            raise ValueError("check 'prescription_matches_dose' needs exactly one of 'limits' or 'limits_by_regime'")
        try:
            spec = parse_metric(self.metric)
        except MetricSpecError as exc:
            raise ValueError(str(exc)) from exc
        if not (spec.is_dose and spec.result_unit == "Gy"):
            raise ValueError(f"metric {self.metric!r} must be a dose in Gy (e.g. 'D95%[Gy]' or 'Mean[Gy]')")
        _limits_in(self.check, "%", [self.limits, *_regime_sets(self.limits_by_regime)])
        return self


@INTEGRITY.evaluator(PrescriptionMatchesDose)
def _prescription_matches_dose(rule: PrescriptionMatchesDose, ctx: CheckContext) -> list[Finding]:
    out = []
    for info in _courses(rule, ctx):
        plan, rtss = info.course.plan, info.course.structure_set
        refs = [r for r in plan.target_prescriptions if r.referenced_roi_number is not None]
        subjects: list[tuple[Roi | None, float, str]] = []
        for ref in refs:
            try:
                roi: Roi | None = rtss.roi_by_number(ref.referenced_roi_number)  # type: ignore[arg-type]
            except KeyError:
                roi = None
            subjects.append((roi, ref.target_prescription_dose_gy, f"dose reference {ref.number} → ROI {ref.referenced_roi_number}"))  # type: ignore[arg-type]
        if not subjects and info.prescription_gy:
            for group in ctx.targets:
                if group.course is info and group.ptv is not None:
                    subjects.append((group.ptv, info.prescription_gy, f"PTV treated by the plan ({group.how})"))
        if not subjects:
            out.append(not_evaluated(rule, "the plan has no target prescription dose with an ROI and no target could be "
                                     "attributed to it", courses=(info.label,)))
            continue
        for roi, rx, how in subjects:
            if roi is not None and roi.defects:
                out.append(not_evaluated(rule, f"{how}: {roi.defect_text}", structures=(roi.name,),
                                         courses=(info.label,)))
                continue
            if roi is None or roi.is_empty:
                what = "is not in the structure set" if roi is None else f"({roi.name}) has no contours"
                out.append(not_evaluated(rule, f"{how} {what}", courses=(info.label,)))
                continue
            options = ([rule.limits] if rule.limits is not None else _regime_limits(info, rule.limits_by_regime)[0])  # type: ignore[arg-type]
            if not options:
                raise RuleNotApplicable("no limits for this regime")
            value = ctx.metric(rule.metric, roi, [info])
            details = {"metric": rule.metric, "prescription_gy": rx, "how": how, "dose_gy": value.value,
                       "method": getattr(value, "method", "")}
            if value.value is None:
                lo = None if value.lower is None else 100 * value.lower / rx
                hi = None if value.upper is None else 100 * value.upper / rx
                status = grade_interval(lo, hi, options[0]) if len(options) == 1 else Status.NOT_EVALUATED
                if status is Status.NOT_EVALUATED:
                    out.append(not_evaluated(rule, f"{roi.name} {rule.metric} in {info.label}: {value.reason}",
                                             structures=(roi.name,), courses=(info.label,), details=details))
                    continue
                pct, limit = None, options[0].describe()
                details["dose_interval_gy"] = [value.lower, value.upper]
                shown = f"is {_interval_text(value.lower, value.upper, 'Gy')} ({_interval_text(lo, hi, '%', 1)})"
                tail = f"; {value.reason}" if value.reason else ""
            else:
                pct = 100.0 * value.value / rx
                status, limit = _grade_options(pct, options)
                if status is Status.NOT_EVALUATED:
                    out.append(not_evaluated(rule, f"{roi.name} {rule.metric} = {pct:.1f}% of {rx:g} Gy: the tolerance "
                                             "depends on the regime, which is unknown", measured=pct, unit="%",
                                             limit=limit, structures=(roi.name,), courses=(info.label,), details=details))
                    continue
                shown, tail = f"= {value.value:.4g} Gy = {pct:.1f}%", ""
            out.append(finding(rule, status, f"{roi.name} {rule.metric} {shown} of the prescription {rx:g} Gy "
                               f"({how}): {_verdict(status)} {limit}{tail}", measured=pct, unit="%", limit=limit,
                               structures=(roi.name,), courses=(info.label,), details=details))
    return out


def _interval_text(lower: float | None, upper: float | None, unit: str, decimals: int | None = None) -> str:
    """``lower–upper unit`` for a value known only within bounds (either may be unknown)."""
    def num(v: float) -> str:
        return f"{v:.{decimals}f}" if decimals is not None else f"{v:.4g}"
    if lower is not None and upper is not None:
        return f"between {num(lower)} and {num(upper)} {unit}"
    if lower is not None:
        return f"at least {num(lower)} {unit}"
    return f"at most {num(upper)} {unit}" if upper is not None else "unknown"


class FractionsMatchProtocol(CourseCheck):
    """Each course's fractionation regime is one the protocol expects for what it treats."""

    check: Literal["fractions_match_protocol"]
    regimes_by_role: dict[Role, RegimeSet]
    dose_per_fraction_by_role: dict[Role, Limits] | None = None

    @model_validator(mode="after")
    def _units(self) -> FractionsMatchProtocol:
        for role, lim in (self.dose_per_fraction_by_role or {}).items():
            if lim.unit != "Gy":
                raise ValueError(f"dose_per_fraction_by_role.{role} must be in 'Gy', not {lim.unit!r}")
        return self


@INTEGRITY.evaluator(FractionsMatchProtocol)
def _fractions_match_protocol(rule: FractionsMatchProtocol, ctx: CheckContext) -> list[Finding]:
    by_role = rule.regimes_by_role or {}
    out = []
    for info in _courses(rule, ctx):
        roles = sorted({g.role for g in ctx.targets if g.course is info})
        if info.summary is None:
            why = info.course.plan.fractions_unknown_reason if info.prescription_gy else ""
            out.append(not_evaluated(rule, why or "the plan states no prescription dose and number of fractions",
                                     courses=(info.label,)))
            continue
        regime = _REGIME_NAME[info.summary.regime]
        conflict = info.declaration_conflict  # a declaration that the numbers contradict: WARN
        known = [r for r in roles if r in by_role]
        if not known:
            why = f"it treats {', '.join(roles)}" if roles else "no target could be attributed to it"
            out.append(not_evaluated(rule, f"{info.summary.describe()}: the expected regime depends on what the course "
                                     f"treats, and {why} (expected regimes are given for {', '.join(by_role)})"
                                     + (f"; {conflict}" if conflict else ""),
                                     courses=(info.label,), details={"declaration_conflict": conflict} if conflict else None))
            continue
        statuses, parts = ([Status.WARN], [conflict]) if conflict else ([], [])
        for role in known:
            spec = by_role[role]  # type: ignore[index]
            if regime in spec.per_protocol:
                s = Status.PASS
            elif regime in spec.acceptable:
                s = Status.WARN
            else:
                s = Status.FAIL
            statuses.append(s)
            allowed = ", ".join(spec.per_protocol) + (f" (acceptable: {', '.join(spec.acceptable)})" if spec.acceptable else "")
            parts.append(f"{role}: {regime} {'is' if s is Status.PASS else 'is acceptable but not' if s is Status.WARN else 'is not'} "
                         f"expected ({allowed})")
            lim = (rule.dose_per_fraction_by_role or {}).get(role)  # type: ignore[call-overload]
            if lim is not None:
                d = info.summary.dose_per_fraction_gy
                sd = grade(d, lim)
                statuses.append(sd)
                parts.append(f"{role}: {d:.4g} Gy per fraction {_verdict(sd)} {lim.describe()}")
        status = worst_status(statuses)
        out.append(finding(rule, status, f"{info.summary.describe()}; " + "; ".join(parts),
                           measured=float(info.summary.fractions), unit="fx", courses=(info.label,),
                           details={"regime": regime, "roles": roles,
                                    "dose_per_fraction_gy": info.summary.dose_per_fraction_gy,
                                    **({"declaration_conflict": conflict} if conflict else {})}))
    return out


def _inside_body(body: Roi, point: tuple[float, float, float]) -> tuple[bool, str]:
    planes = body.planes
    zs = np.array(list(planes))
    x, y, z = point
    if z < zs.min() - 1e-3 or z > zs.max() + 1e-3:
        return False, f"z = {z:g} mm is outside the {body.name} contours (z {zs.min():g} to {zs.max():g} mm)"
    nearest = float(zs[np.argmin(np.abs(zs - z))])
    inside = bool(points_in_polygons(np.array([[x, y]]), planes[nearest])[0])
    where = f"on the {body.name} plane z = {nearest:g} mm"
    return inside, ("inside" if inside else "outside") + f" the contour {where}"


class IsocenterInBody(CourseCheck):
    """Every beam's isocenter lies inside the body contour (``body_structure``)."""

    check: Literal["isocenter_in_body"]
    body_structure: str = "External"


@INTEGRITY.evaluator(IsocenterInBody)
def _isocenter_in_body(rule: IsocenterInBody, ctx: CheckContext) -> list[Finding]:
    body, reason = _body_roi(ctx, rule.body_structure)
    if body is None:
        return [not_evaluated(rule, f"no body contour: {reason}")]
    out = []
    for info in _courses(rule, ctx):
        beams = info.course.plan.treatment_beams
        no_iso = [b.name or str(b.number) for b in beams if b.isocenter_mm is None]
        isos: dict[tuple[float, float, float], list[str]] = {}
        for b in beams:
            if b.isocenter_mm is not None:
                for position in (b.isocenter_mm, *b.later_isocenters_mm):
                    names = isos.setdefault(tuple(round(v, 2) for v in position), [])  # type: ignore[arg-type]
                    names.append(b.name or str(b.number))
        if not isos:
            out.append(not_evaluated(rule, "no treatment beam states its (300A,012C) 'Isocenter Position'",
                                     courses=(info.label,)))
            continue
        outside, texts = [], []
        for iso, names in isos.items():
            inside, text = _inside_body(body, iso)
            shown = f"isocenter ({iso[0]:g}, {iso[1]:g}, {iso[2]:g}) mm of {', '.join(names)}: {text}"
            texts.append(shown)
            if not inside:
                outside.append(shown)
        details = {"isocenters_mm": [list(i) for i in isos], "body": body.name}
        if outside:
            out.append(finding(rule, Status.FAIL, "; ".join(outside), structures=(body.name,), courses=(info.label,),
                               details=details))
        elif no_iso:
            out.append(not_evaluated(rule, f"beam(s) {', '.join(no_iso)} state no isocenter; " + "; ".join(texts),
                                     structures=(body.name,), courses=(info.label,), details=details))
        else:
            out.append(finding(rule, Status.PASS, "; ".join(texts), structures=(body.name,), courses=(info.label,),
                               details=details))
    return out


def _placeholder_machine(name: str) -> bool:
    """A Treatment Machine Name that names no machine (e.g. GammaPlan's ``BOGUS NAME``)."""
    return bool(_PLACEHOLDER_NAME.search(name))


class SingleMachine(CourseCheck):
    """All treatment beams of a course are on one named machine."""

    check: Literal["single_machine"]


@INTEGRITY.evaluator(SingleMachine)
def _single_machine(rule: SingleMachine, ctx: CheckContext) -> list[Finding]:
    out = []
    for info in _courses(rule, ctx):
        beams = info.course.plan.treatment_beams
        machines = sorted({b.machine for b in beams if b.machine})
        unnamed = [b.name or str(b.number) for b in beams if not b.machine]
        placeholders = [m for m in machines if _placeholder_machine(m)]
        if placeholders:
            out.append(not_evaluated(rule, f"(300A,00B2) 'Treatment Machine Name' {', '.join(map(repr, placeholders))} is a "
                                     "placeholder, not a machine (a placeholder beam of the planning system)",
                                     courses=(info.label,), details={"machines": machines}))
            continue
        if len(machines) > 1:
            out.append(finding(rule, Status.FAIL, f"treatment beams use {len(machines)} machines: {', '.join(machines)}",
                               courses=(info.label,), details={"machines": machines}))
        elif unnamed or not machines:
            out.append(not_evaluated(rule, f"beam(s) {', '.join(unnamed) or '-'} have no (300A,00B2) 'Treatment Machine Name'",
                                     courses=(info.label,), details={"machines": machines}))
        else:
            out.append(finding(rule, Status.PASS, f"all {len(beams)} treatment beams on {machines[0]}",
                               courses=(info.label,), details={"machines": machines}))
    return out


class BeamEnergy(CourseCheck):
    """Photon nominal energies are allowed (``allowed_mv``); mixed energies graded by ``mixed_energies``."""

    check: Literal["beam_energy"]
    allowed_mv: list[float] | None = None
    mixed_energies: Literal["pass", "warn", "fail"] = "warn"

    @model_validator(mode="after")
    def _energies(self) -> BeamEnergy:
        if self.allowed_mv is not None and (not self.allowed_mv or min(self.allowed_mv) <= 0):
            raise ValueError("allowed_mv must list energies > 0 MV")
        return self


@INTEGRITY.evaluator(BeamEnergy)
def _beam_energy(rule: BeamEnergy, ctx: CheckContext) -> list[Finding]:
    courses = _courses(rule, ctx)
    ions = [info.label for info in courses if info.course.plan.is_ion]
    if ions and len(ions) == len(courses):
        raise RuleNotApplicable(f"{', '.join(ions)} {'is an RT Ion Plan' if len(ions) == 1 else 'are RT Ion Plans'}: "
                                "the beam-energy check is for photon beams (nominal energies in MV)")
    out = []
    for info in courses:
        beams = info.course.plan.treatment_beams
        if info.course.plan.is_ion:
            out.append(not_evaluated(rule, "an RT Ion Plan: the beam-energy check is for photon beams (nominal "
                                     "energies in MV)", courses=(info.label,)))
            continue
        zero = [b.name or str(b.number) for b in beams if b.energy_mev is not None and b.energy_mev <= 0]
        if zero:
            out.append(not_evaluated(rule, f"beam(s) {', '.join(zero)} state a (300A,0114) 'Nominal Beam Energy' of "
                                     "0 or less, which is no beam energy (a placeholder beam)", courses=(info.label,)))
            continue
        unknown = [b.name or str(b.number) for b in beams if b.energy_mev is None]
        energies = sorted({(b.radiation_type or "?", float(e)) for b in beams if b.energy_mev is not None
                           for e in (b.energy_mev, *b.later_energies_mev)})
        shown = ", ".join(f"{e:g} {'MV' if t == 'PHOTON' else 'MeV'} {t.lower()}" for t, e in energies)
        details = {"energies": [list(e) for e in energies]}
        if not beams:
            out.append(not_evaluated(rule, "the plan has no treatment beam", courses=(info.label,)))
            continue
        if unknown:
            out.append(not_evaluated(rule, f"beam(s) {', '.join(unknown)} state no (300A,0114) 'Nominal Beam Energy'",
                                     courses=(info.label,), details=details))
            continue
        problems, status = [], Status.PASS
        if rule.allowed_mv is not None:
            bad = [f"{e:g} {'MV' if t == 'PHOTON' else 'MeV'} {t.lower()}" for t, e in energies
                   if t != "PHOTON" or not any(abs(e - a) < 1e-6 for a in rule.allowed_mv)]
            if bad:
                status = Status.FAIL
                problems.append(f"{', '.join(bad)} not among the allowed photon energies "
                                f"{', '.join(f'{a:g}' for a in rule.allowed_mv)} MV")
        if len(energies) > 1:
            mixed = {"pass": Status.PASS, "warn": Status.WARN, "fail": Status.FAIL}[rule.mixed_energies]
            status = worst_status([status, mixed])
            if mixed is not Status.PASS:
                problems.append(f"the plan mixes energies ({shown})")
        message = "; ".join(problems) if problems else f"treatment beams at {shown}"
        out.append(finding(rule, status, message, courses=(info.label,), details=details))
    return out


class Meterset(CourseCheck):
    """Monitor units per Gy of each course (course MU / course prescription), limits per regime."""

    check: Literal["meterset"]
    limits_by_regime: LimitsByRegime

    @model_validator(mode="after")
    def _units(self) -> Meterset:
        _limits_in(self.check, "MU/Gy", _regime_sets(self.limits_by_regime))
        return self


@INTEGRITY.evaluator(Meterset)
def _meterset(rule: Meterset, ctx: CheckContext) -> list[Finding]:
    courses = _courses(rule, ctx)
    ions = [info.label for info in courses if info.course.plan.is_ion]
    if ions and len(ions) == len(courses):
        raise RuleNotApplicable(f"{', '.join(ions)} {'is an RT Ion Plan' if len(ions) == 1 else 'are RT Ion Plans'}: "
                                "the MU per Gy ranges are for photon beams")
    out = []
    for info in courses:
        plan = info.course.plan
        if plan.is_ion:
            out.append(not_evaluated(rule, "an RT Ion Plan: the MU per Gy ranges are for photon beams",
                                     courses=(info.label,)))
            continue
        beams = {b.number: b for b in plan.treatment_beams}
        unknown = [b.name or str(b.number) for b in beams.values() if b.meterset_mu is None]
        zero = [b.name or str(b.number) for b in beams.values() if b.meterset_mu is not None and b.meterset_mu <= 0]
        if zero:
            out.append(finding(rule, Status.FAIL, f"treatment beam(s) {', '.join(zero)} have a (300B,0086) 'Beam Meterset' "
                               "≤ 0 MU", courses=(info.label,)))
            continue
        if unknown or not beams:
            out.append(not_evaluated(rule, f"beam(s) {', '.join(unknown) or '-'} have no (300B,0086) 'Beam Meterset'",
                                     courses=(info.label,)))
            continue
        if not info.prescription_gy or not plan.fraction_groups or any(g.fractions_planned is None for g in plan.fraction_groups):
            out.append(not_evaluated(rule, "MU per Gy needs the prescription dose and every fraction group's number of fractions",
                                     courses=(info.label,)))
            continue
        course_mu = 0.0
        for group in plan.fraction_groups:
            numbers = group.beam_numbers or tuple(beams)
            course_mu += group.fractions_planned * sum(beams[n].meterset_mu for n in numbers if n in beams)  # type: ignore[operator,misc]
        mu_per_gy = course_mu / info.prescription_gy
        options, regime = _regime_limits(info, rule.limits_by_regime)
        if not options:
            raise RuleNotApplicable(f"no MU/Gy limit for {regime} courses")
        status, limit = _grade_options(mu_per_gy, options)
        per_fraction = course_mu / info.fractions if info.fractions else None
        details = {"course_mu": course_mu, "mu_per_fraction": per_fraction, "regime": regime,
                   "beam_mu": {b.name or str(b.number): b.meterset_mu for b in beams.values()}}
        if status is Status.NOT_EVALUATED:
            out.append(not_evaluated(rule, f"{mu_per_gy:.0f} MU/Gy: the range depends on the regime, which is unknown",
                                     measured=mu_per_gy, unit="MU/Gy", limit=limit, courses=(info.label,), details=details))
            continue
        out.append(finding(rule, status, f"{course_mu:.0f} MU for {info.prescription_gy:g} Gy = {mu_per_gy:.0f} MU/Gy "
                           f"({regime} course; {len(beams)} beams, all > 0 MU): {_verdict(status)} {limit}",
                           measured=mu_per_gy, unit="MU/Gy", limit=limit, courses=(info.label,), details=details))
    return out


IntegrityRule = INTEGRITY.union()
"""An integrity rule: one of the check models above, chosen by ``check``."""

evaluate_integrity_rule = INTEGRITY.evaluate
"""Evaluate one integrity rule (one finding per course for per-course checks)."""

INTEGRITY_KIND = INTEGRITY.rule_kind()
