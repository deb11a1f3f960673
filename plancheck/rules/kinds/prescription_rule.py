"""Rule kind ``prescription``: the dose and fractionation prescribed to each target.

Protocol-file fields::

    - id: DOS-PRIM
      kind: prescription
      title: Primary tumour, conventional fractionation, EQD2(10)
      category: dose
      target: {role: primary, regime: conventional}   # role, regime; 'volume' only for prescription_vs_dose
      measure: eqd2_10      # total_dose | dose_per_fraction | fractions | bed10 | eqd2_10
                            # | regime | reference_schedule | prescription_vs_dose
      limits: {unit: Gy, lower: {per_protocol: 50, acceptable: 40}, upper: {per_protocol: 60, acceptable: 66}}
      alpha_beta_gy: 10     # optional, bed10 / eqd2_10 / reference_schedule only (default 10 Gy, tumour)
      organ: [lung, liver]  # optional: only lesions of these organs (from the case file)
      provenance: {source: ..., section: "§3 DOS-PRIM", confidence: provisional}

    - id: DOS-REGIME
      kind: prescription
      ...
      measure: regime
      allowed: [conventional]                         # PASS
      acceptable: [moderately_hypofractionated]       # WARN (optional); anything else FAIL
      # regimes: hyperfractionated, conventional, moderately_hypofractionated, sbrt, other

    - id: DOS-SITE
      kind: prescription
      ...
      target: {role: metastasis, regime: sbrt}
      measure: reference_schedule
      match: exact          # exact (default) | bed10_not_lower
      reference_schedules:
        - {organ: lung, total_dose_gy: 54, fractions: 3, max_size_mm: 30, description: peripheral lung ≤ 3 cm}
        - {organ: bone, site: vertebra, total_dose_gy: 30, fractions: 3}

    - id: INT-RX-DOSE
      kind: prescription
      ...
      target: {role: any, volume: PTV}
      measure: prescription_vs_dose
      metric: "D50%[%]"     # a TG-263 dose metric in [%] of the target's prescription (default D50%[%])
      limits: {unit: "%", lower: {per_protocol: 98, acceptable: 95}, upper: {per_protocol: 108, acceptable: 112}}

How the prescription of a target is found: the course treating the target
(:attr:`TargetGroup.course`: a plan whose dose reference names one of the
target's ROIs, else the plan that covers it); the total dose is that dose
reference's Target Prescription Dose (3004,0026) when it names one of the
target's ROIs, else the plan's prescription; the fractions are the plan's
Number of Fractions Planned (300A,0078) over its fraction groups.

``reference_schedule``: the lesion's organ (and site and size) come from the
case file (:class:`plancheck.model.case.Lesion`), so without a case file naming
the lesion the rule is NOT_EVALUATED. The schedules of that organ are the
candidates (a schedule with ``site`` only where the lesion's site contains it;
with ``max_size_mm``/``min_size_mm`` only where the size is known and fits).
``match: exact``: PASS when total dose (± 0.01 Gy) and fractions equal a
candidate, else WARN naming them. ``match: bed10_not_lower``: PASS also when the
BED10 reaches the lowest BED10 among the candidates.

Organs (``organ`` and the schedules' ``organ``) are compared as
:mod:`plancheck.model.organs` reads them — the vocabulary the definition rules use too
(``extra_regional_lymph_node``, ``distant_lymph_node`` and ``lymph_node`` all mean
``non_regional_lymph_node``). A protocol organ the vocabulary does not know is an error
when the protocol is loaded; a lesion organ it does not know makes an ``organ``-filtered
rule NOT_EVALUATED for that target (never "not applicable").

Formulas: d = D/n; BED = D·(1 + d/(α/β)); EQD2 = BED/(1 + 2/(α/β)) (Fowler 1989; docs/clinical-basis.md).

References
----------
Fowler JF. The linear-quadratic formula and progress in fractionated
radiotherapy. Br J Radiol 1989;62:679-694.
Palma DA et al. SABR-COMET: Lancet 2019;393:2051-2058 (reference SBRT schedules by site).
DICOM PS3.3 C.8.8.10 (RT Prescription module), C.8.8.13 (RT Fraction Scheme module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from plancheck.dvh.metrics import parse_metric
from plancheck.errors import MetricSpecError
from plancheck.model.case import Lesion
from plancheck.model.organs import canonical_organ, recognised_organs
from plancheck.protocol.schema import RuleBase, StrictModel
from plancheck.radiobiology import FractionationRegime, TUMOUR_ALPHA_BETA_GY, classify_regime
from plancheck.radiobiology.lq import bed_gy, eqd2_gy
from plancheck.rules.base import RuleNotApplicable, TargetSelector, finding, not_evaluated
from plancheck.rules.context import CheckContext, TargetGroup
from plancheck.rules.findings import Finding, Status
from plancheck.rules.kinds.dvh_rule import no_target_found, target_subjects
from plancheck.rules.registry import RuleKind
from plancheck.rules.thresholds import Limits, grade, grade_interval

__all__ = ["target_prescription", "PrescriptionRule", "ReferenceSchedule", "PRESCRIPTION_KIND", "evaluate_prescription_rule", "TargetPrescription"]

Measure = Literal["total_dose", "dose_per_fraction", "fractions", "bed10", "eqd2_10", "regime",
                  "reference_schedule", "prescription_vs_dose"]
RegimeName = Literal["hyperfractionated", "conventional", "moderately_hypofractionated", "sbrt", "other"]

_REGIME_NAMES: dict[FractionationRegime, str] = {
    FractionationRegime.HYPERFRACTIONATED: "hyperfractionated",
    FractionationRegime.CONVENTIONAL: "conventional",
    FractionationRegime.MODERATELY_HYPOFRACTIONATED: "moderately_hypofractionated",
    FractionationRegime.SBRT: "sbrt",
    FractionationRegime.OTHER: "other",
}
_UNITS = {"total_dose": "Gy", "dose_per_fraction": "Gy", "fractions": "fx", "bed10": "Gy", "eqd2_10": "Gy",
          "prescription_vs_dose": "%"}
_VERDICT = {Status.PASS: "within", Status.WARN: "outside per-protocol but within acceptable", Status.FAIL: "outside"}
DOSE_TOLERANCE_GY = 0.01
"""Two schedules with the same fractions and total doses within this (Gy) are the same schedule."""


def _recognised(organ: str) -> str:
    """A protocol's organ name, refused unless the lesion-organ vocabulary knows it
    (:mod:`plancheck.model.organs`): a misspelt organ would silently match no lesion."""
    if canonical_organ(organ) is None:
        raise ValueError(f"organ {organ!r} is not a recognised organ name ({recognised_organs()}; "
                         "spellings: plancheck/model/organs.py)")
    return organ


def _same_organ(a: str, b: str) -> bool:
    """Two organ spellings mean the same organ (:func:`plancheck.model.organs.canonical_organ`)."""
    ca = canonical_organ(a)
    return ca is not None and ca == canonical_organ(b)


class ReferenceSchedule(StrictModel):
    """A reference schedule of a site (consensus §3 DOS-SITE)."""

    organ: str = Field(min_length=1)
    site: str | None = None
    total_dose_gy: float = Field(gt=0)
    fractions: int = Field(ge=1)
    min_size_mm: float | None = Field(default=None, ge=0)
    max_size_mm: float | None = Field(default=None, gt=0)
    description: str = ""

    @field_validator("organ")
    @classmethod
    def _known_organ(cls, organ: str) -> str:
        return _recognised(organ)

    @property
    def bed10_gy(self) -> float:
        return float(bed_gy(self.total_dose_gy, self.fractions, TUMOUR_ALPHA_BETA_GY))

    def describe(self) -> str:
        text = f"{self.total_dose_gy:g} Gy/{self.fractions} fx"
        return text + (f" ({self.description})" if self.description else "")


class PrescriptionRule(RuleBase):
    kind: Literal["prescription"]
    target: TargetSelector = TargetSelector()
    measure: Measure
    limits: Limits | None = None
    allowed: list[RegimeName] | None = None
    acceptable: list[RegimeName] | None = None
    alpha_beta_gy: float | None = None
    organ: str | list[str] | None = None
    reference_schedules: list[ReferenceSchedule] | None = None
    match: Literal["exact", "bed10_not_lower"] | None = None
    metric: str | None = None

    @field_validator("organ")
    @classmethod
    def _known_organs(cls, organ: str | list[str] | None) -> str | list[str] | None:
        if isinstance(organ, list):
            return [_recognised(o) for o in organ]
        return organ if organ is None else _recognised(organ)

    @model_validator(mode="after")
    def _check(self) -> PrescriptionRule:
        m = self.measure
        if m == "regime":
            if not self.allowed:
                raise ValueError("measure: regime needs 'allowed' (a list of regimes)")
            if self.limits is not None:
                raise ValueError("measure: regime is graded by 'allowed'/'acceptable', not 'limits'")
        elif self.allowed is not None or self.acceptable is not None:
            raise ValueError("'allowed' and 'acceptable' apply to measure: regime")
        if m == "reference_schedule":
            if not self.reference_schedules:
                raise ValueError("measure: reference_schedule needs 'reference_schedules'")
            if self.limits is not None:
                raise ValueError("measure: reference_schedule is graded against 'reference_schedules', not 'limits'")
        elif self.reference_schedules is not None or self.match is not None:
            raise ValueError("'reference_schedules' and 'match' apply to measure: reference_schedule")
        if m in _UNITS:
            if self.limits is None:
                raise ValueError(f"measure: {m} needs 'limits'")
            allowed_units = ("fx", "") if m == "fractions" else (_UNITS[m],)
            if self.limits.unit not in allowed_units:
                raise ValueError(f"measure: {m} is in {_UNITS[m]!r}: limits.unit must be {_UNITS[m]!r}, not {self.limits.unit!r}")
        if self.alpha_beta_gy is not None:
            if m not in ("bed10", "eqd2_10", "reference_schedule"):
                raise ValueError("alpha_beta_gy applies to measure bed10, eqd2_10 or reference_schedule")
            if self.alpha_beta_gy <= 0:
                raise ValueError("alpha_beta_gy must be > 0 Gy")
        if m == "prescription_vs_dose":
            try:
                spec = parse_metric(self.metric or "D50%[%]")
            except MetricSpecError as exc:
                raise ValueError(str(exc)) from exc
            if not (spec.is_dose and spec.result_unit == "%"):
                raise ValueError(f"metric {spec.text!r}: prescription_vs_dose needs a dose metric in [%] of the prescription, e.g. D50%[%] or D95%[%]")
        else:
            if self.metric is not None:
                raise ValueError("'metric' applies to measure: prescription_vs_dose")
            if "volume" in self.target.model_fields_set:
                raise ValueError("target.volume is used only by measure: prescription_vs_dose")
        return self

    @property
    def organs(self) -> tuple[str, ...]:
        """The organs the rule is for (empty: every organ)."""
        if self.organ is None:
            return ()
        return (self.organ,) if isinstance(self.organ, str) else tuple(self.organ)

    @property
    def alpha_beta(self) -> float:
        return self.alpha_beta_gy if self.alpha_beta_gy is not None else TUMOUR_ALPHA_BETA_GY


@dataclass(frozen=True)
class TargetPrescription:
    """A target's prescription: total dose, fractions and where they came from."""

    total_dose_gy: float
    fractions: int
    source: str

    @property
    def dose_per_fraction_gy(self) -> float:
        return self.total_dose_gy / self.fractions

    @property
    def regime(self) -> FractionationRegime:
        return classify_regime(self.dose_per_fraction_gy, self.fractions)

    def describe(self) -> str:
        return f"{self.total_dose_gy:g} Gy / {self.fractions} fx at {self.dose_per_fraction_gy:.3g} Gy/fx"


def target_prescription(group: TargetGroup) -> tuple[TargetPrescription | None, str]:
    """The prescription of a target group, or None and why not."""
    info = group.course
    if info is None:
        return None, f"{group.label}: {group.how}"
    plan = info.course.plan
    numbers = {r.number: r.name for r in group.volumes.values()}
    own = [r for r in plan.target_prescriptions if r.referenced_roi_number in numbers]
    if own:
        ref = max(own, key=lambda r: r.target_prescription_dose_gy)
        dose, source = ref.target_prescription_dose_gy, f"dose reference {ref.number} of plan {info.label} ({numbers[ref.referenced_roi_number]})"
    else:
        dose, source = info.prescription_gy, f"prescription of plan {info.label}"
    n = info.fractions
    if not dose or dose <= 0:
        return None, f"{group.label}: plan {info.label} states no target prescription dose (RT Prescription module)"
    if not n:
        why = plan.fractions_unknown_reason.removeprefix("the plan ")
        return None, f"{group.label}: plan {info.label} {why} (RT Fraction Scheme module)"
    return TargetPrescription(float(dose), int(n), source), ""


def _lesion(ctx: CheckContext, group: TargetGroup) -> Lesion | None:
    if ctx.case is None or not ctx.case.metastases:
        return None
    names = {r.name for r in group.volumes.values()}
    return next((lesion for lesion in ctx.case.metastases if lesion.target in names), None)


def _organ_unknown(ctx: CheckContext, group: TargetGroup) -> str:
    if ctx.case is None:
        return f"{group.label}: the organ of the lesion is not known without a case file"
    return f"{group.label}: the case file names no metastasis with this target, so its organ is not known"


def _graded(rule: PrescriptionRule, value: float, unit: str, text: str, rx: TargetPrescription, group: TargetGroup,
            details: dict) -> Finding:
    limits = rule.limits
    assert limits is not None
    status = grade(value, limits)
    limit = limits.describe()
    return finding(rule, status, f"{group.label} {text}: {_VERDICT[status]} {limit}", measured=value, unit=unit,
                   limit=limit, structures=(group.label,), courses=(group.course.label,), details=details)  # type: ignore[union-attr]


def _reference(rule: PrescriptionRule, ctx: CheckContext, group: TargetGroup, rx: TargetPrescription, details: dict) -> Finding:
    lesion = _lesion(ctx, group)
    organ = (lesion.organ if lesion else None) or group.organ
    courses = (group.course.label,)  # type: ignore[union-attr]
    if organ is None:
        return not_evaluated(rule, _organ_unknown(ctx, group), structures=(group.label,), courses=courses, details=details)
    site_text = (lesion.site if lesion else None) or group.site or ""
    site = site_text.casefold()
    size = lesion.size_mm if lesion else None
    notes = []
    candidates = []
    for ref in rule.reference_schedules or []:
        if not _same_organ(ref.organ, organ):
            continue
        if ref.site and ref.site.casefold() not in site:
            continue
        if ref.min_size_mm is not None or ref.max_size_mm is not None:
            if size is None:
                notes.append(f"{ref.describe()} kept: lesion size not in the case file")
            elif (ref.min_size_mm is not None and size < ref.min_size_mm) or (ref.max_size_mm is not None and size > ref.max_size_mm):
                continue
        candidates.append(ref)
    details.update(organ=organ, site=site_text or None, size_mm=size, candidates=[c.describe() for c in candidates])
    if notes:
        details["notes"] = notes
    if not candidates:
        return not_evaluated(rule, f"{group.label} ({organ}{', ' + site_text if site_text else ''}): no reference schedule for this site in the rule",
                             structures=(group.label,), courses=courses, details=details)
    ab = rule.alpha_beta
    bed = float(bed_gy(rx.total_dose_gy, rx.fractions, ab))
    details.update(alpha_beta_gy=ab, bed_gy=bed)
    refs = "; ".join(f"{c.describe()}, BED{ab:g} {float(bed_gy(c.total_dose_gy, c.fractions, ab)):.4g} Gy" for c in candidates)
    same = [c for c in candidates if c.fractions == rx.fractions and abs(c.total_dose_gy - rx.total_dose_gy) <= DOSE_TOLERANCE_GY]
    head = f"{group.label} ({organ}{', ' + site_text if site_text else ''}): {rx.describe()}, BED{ab:g} {bed:.4g} Gy"
    limit = f"reference schedules: {refs}"
    if same:
        return finding(rule, Status.PASS, f"{head}: matches the reference schedule {same[0].describe()}", measured=bed,
                       unit="Gy", limit=limit, structures=(group.label,), courses=courses, details=details)
    if rule.match == "bed10_not_lower":
        lowest = min(candidates, key=lambda c: float(bed_gy(c.total_dose_gy, c.fractions, ab)))
        ref_bed = float(bed_gy(lowest.total_dose_gy, lowest.fractions, ab))
        if bed >= ref_bed - 1e-9:
            return finding(rule, Status.PASS, f"{head}: not a reference schedule, but BED{ab:g} reaches that of {lowest.describe()} ({ref_bed:.4g} Gy)",
                           measured=bed, unit="Gy", limit=limit, structures=(group.label,), courses=courses, details=details)
    return finding(rule, Status.WARN, f"{head}: not a reference schedule for this site ({refs})", measured=bed, unit="Gy",
                   limit=limit, structures=(group.label,), courses=courses, details=details)


def _evaluate_group(rule: PrescriptionRule, ctx: CheckContext, roi, group: TargetGroup) -> Finding:
    rx, why = target_prescription(group)
    if rx is None:
        courses = (group.course.label,) if group.course else ()
        return not_evaluated(rule, why, structures=(group.label,), courses=courses)
    details = {"prescription_source": rx.source, "total_dose_gy": rx.total_dose_gy, "fractions": rx.fractions,
               "course_identified_by": group.how}
    m = rule.measure
    if m == "total_dose":
        return _graded(rule, rx.total_dose_gy, "Gy", f"prescription {rx.describe()}", rx, group, details)
    if m == "dose_per_fraction":
        return _graded(rule, rx.dose_per_fraction_gy, "Gy", f"dose per fraction {rx.dose_per_fraction_gy:.4g} Gy ({rx.describe()})",
                       rx, group, details)
    if m == "fractions":
        return _graded(rule, float(rx.fractions), "fx", f"{rx.fractions} fractions ({rx.describe()})", rx, group, details)
    if m in ("bed10", "eqd2_10"):
        ab = rule.alpha_beta
        f, name = (bed_gy, "BED") if m == "bed10" else (eqd2_gy, "EQD2")
        value = float(f(rx.total_dose_gy, rx.fractions, ab))
        details.update(alpha_beta_gy=ab, formula="BED = D(1 + d/(α/β))" + ("" if m == "bed10" else "; EQD2 = BED/(1 + 2/(α/β))"))
        return _graded(rule, value, "Gy", f"{name}(α/β={ab:g} Gy) {value:.4g} Gy ({rx.describe()})", rx, group, details)
    if m == "regime":
        regime = _REGIME_NAMES[rx.regime]
        details["regime"] = regime
        allowed = list(rule.allowed or [])
        acceptable = list(rule.acceptable or [])
        status = Status.PASS if regime in allowed else Status.WARN if regime in acceptable else Status.FAIL
        limit = "regime " + " or ".join(allowed) + (f" (acceptable: {' or '.join(acceptable)})" if acceptable else "")
        verdict = {Status.PASS: "allowed", Status.WARN: "acceptable variation", Status.FAIL: "not allowed"}[status]
        return finding(rule, status, f"{group.label} {rx.describe()} is {rx.regime.value}: {verdict} ({limit})", unit="",
                       limit=limit, structures=(group.label,), courses=(group.course.label,), details=details)  # type: ignore[union-attr]
    if m == "reference_schedule":
        return _reference(rule, ctx, group, rx, details)
    # prescription_vs_dose
    metric = rule.metric or "D50%[%]"
    courses = (group.course.label,)  # type: ignore[union-attr]
    if roi is None:
        return not_evaluated(rule, f"target {group.label} has no {rule.target.volume}", structures=(group.label,), courses=courses)
    value = ctx.metric(metric, roi, [group.course], None, rx.total_dose_gy)  # type: ignore[list-item]
    details.update(metric=metric, lower=value.lower, upper=value.upper, method=value.method)
    limits = rule.limits
    assert limits is not None
    limit = limits.describe()
    if value.value is not None:
        status = grade(value.value, limits)
        shown = f"{value.value:.4g} %"
    else:
        status = grade_interval(value.lower, value.upper, limits)
        if status is Status.NOT_EVALUATED:
            return not_evaluated(rule, f"{roi.name} {metric} in {courses[0]}: {value.reason}", unit="%", limit=limit,
                                 structures=(roi.name,), courses=courses, details=details)
        shown = f"between {value.lower:.4g} and {value.upper:.4g} %"
    message = f"{roi.name} {metric} = {shown} of the prescription {rx.describe()} in {courses[0]}: {_VERDICT[status]} {limit}"
    return finding(rule, status, message, measured=value.value, unit="%", limit=limit, structures=(roi.name,),
                   courses=courses, details=details)


def evaluate_prescription_rule(rule: PrescriptionRule, ctx: CheckContext) -> list[Finding]:
    if not ctx.courses:
        return [not_evaluated(rule, "the export has no course with a dose")]
    subjects = target_subjects(rule, ctx, rule.target)
    if not subjects:
        return [no_target_found(rule, rule.target)]
    out: list[Finding] = []
    skipped = 0
    for roi, _, group in subjects:
        if rule.organs:
            lesion = _lesion(ctx, group)
            organ = (lesion.organ if lesion else None) or group.organ
            if organ is None:
                out.append(not_evaluated(rule, _organ_unknown(ctx, group) + f" (the rule is for {', '.join(rule.organs)} "
                                         "lesions)", structures=(group.label,)))
                continue
            canonical = canonical_organ(organ)
            if canonical is None:  # not "not applicable": the rule may well be for this lesion
                out.append(not_evaluated(rule, f"{group.label}: the case file gives the lesion's organ as {organ!r}, "
                                         f"which is not a recognised organ name ({recognised_organs()}); whether "
                                         f"this rule for {', '.join(rule.organs)} lesions applies is not known",
                                         structures=(group.label,), details={"organ": organ}))
                continue
            if canonical not in {canonical_organ(o) for o in rule.organs}:
                skipped += 1
                continue
        out.append(_evaluate_group(rule, ctx, roi, group))
    if not out:
        raise RuleNotApplicable(f"no target of a {' or '.join(rule.organs)} lesion ({skipped} target(s) of other organs)")
    return out


PRESCRIPTION_KIND = RuleKind(model=PrescriptionRule, evaluate=evaluate_prescription_rule)
