"""Rule kind ``dvh``: a TG-263 DVH metric of a structure or target against limits.

Protocol-file fields::

    - id: OAR-CORD
      kind: dvh
      title: Spinal cord PRV maximum dose
      category: oar
      structure: SpinalCord_PRV05       # a TG-263 standard name ... or
      # target: {role: primary, volume: PTV}   # ... a target volume (then the target's own course)
      metric: "D0.03cc[Gy]"
      dose_kind: physical                # physical | eqd2 | bed (voxel-wise, α/β per structure)
      alpha_beta_gy: 2                   # optional; default: protocol alpha_beta_gy, then the α/β table
      course: conventional               # all | conventional | sbrt | composite | a course label
      limits: {unit: Gy, upper: {per_protocol: 45}}
      # or, for SBRT tables keyed by number of fractions (AAPM TG-101):
      # limits_by_fractions: {1: {...}, 3: {...}, 5: {...}}
      # other_fractions: convert_eqd2    # other fraction numbers: convert the nearest
      #                                  # tabulated limit through EQD2 (and say so), or not_evaluated
      # stricter_if: {condition: concurrent_systemic_therapy, limits: {...}}
      provenance: {source: ..., section: ..., confidence: companion}

``course: composite`` sums every course voxel-wise (EQD2/BED: each course with its
own number of fractions); otherwise one finding per matching course.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from plancheck.dvh.metrics import MetricValue, parse_metric
from plancheck.errors import MetricSpecError
from plancheck.model.dose import dose_kind_label
from plancheck.model.structures import Roi
from plancheck.protocol.schema import RuleBase, StrictModel
from plancheck.radiobiology import DoseConversion, DoseKind
from plancheck.radiobiology.lq import eqd2_gy, total_dose_for_eqd2_gy
from plancheck.rules.base import RuleNotApplicable, TargetSelector, finding, not_evaluated
from plancheck.rules.context import CheckContext, CourseInfo
from plancheck.rules.findings import Finding, Status, worst_status
from plancheck.rules.registry import RuleKind
from plancheck.rules.thresholds import Bound, Limits, grade, grade_interval

__all__ = ["no_target_found", "per_target", "DvhRule", "StricterIf", "DVH_KIND", "evaluate_dvh_rule", "target_subjects"]

_KINDS = {"physical": DoseKind.PHYSICAL, "eqd2": DoseKind.EQD2, "bed": DoseKind.BED}


class StricterIf(StrictModel):
    """Stricter limits that apply when a clinical condition holds."""

    condition: Literal["concurrent_systemic_therapy", "concurrent_chemotherapy", "concurrent_immunotherapy"]
    limits: Limits


class DvhRule(RuleBase):
    kind: Literal["dvh"]
    structure: str | None = None
    target: TargetSelector | None = None
    metric: str
    dose_kind: Literal["physical", "eqd2", "bed"] = "physical"
    alpha_beta_gy: float | None = None
    course: str = "all"
    limits: Limits | None = None
    limits_by_fractions: dict[int, Limits] | None = None
    other_fractions: Literal["convert_eqd2", "not_evaluated"] = "convert_eqd2"
    stricter_if: StricterIf | None = None

    @model_validator(mode="after")
    def _check(self) -> DvhRule:
        if (self.structure is None) == (self.target is None):
            raise ValueError("give exactly one of 'structure' (a standard name) or 'target'")
        if (self.limits is None) == (self.limits_by_fractions is None):
            raise ValueError("give exactly one of 'limits' or 'limits_by_fractions'")
        try:
            spec = parse_metric(self.metric)
        except MetricSpecError as exc:
            raise ValueError(str(exc)) from exc
        for lim in [self.limits, *(self.limits_by_fractions or {}).values(), self.stricter_if.limits if self.stricter_if else None]:
            if lim is not None and lim.unit and lim.unit != spec.result_unit:
                raise ValueError(f"limits are in {lim.unit!r} but {self.metric} is reported in {spec.result_unit!r}")
        if self.alpha_beta_gy is not None and self.alpha_beta_gy <= 0:
            raise ValueError("alpha_beta_gy must be > 0 Gy")
        if self.dose_kind == "physical" and self.alpha_beta_gy is not None:
            raise ValueError("alpha_beta_gy applies to dose_kind eqd2 or bed")
        return self


def target_subjects(rule, ctx: CheckContext, selector: TargetSelector):
    """(roi, course, group) for each target group matching the selector.

    Raises RuleNotApplicable when the export has no target of the asked regime.
    Groups without the asked volume or without an identified course are returned
    with roi/course None so the caller reports NOT_EVALUATED with the reason.
    """
    groups = [g for g in ctx.targets if selector.role in ("any", g.role)]
    if selector.regime != "any":
        chosen = [g for g in groups if g.course is not None and (g.course.is_sbrt == (selector.regime == "sbrt"))]
        if not chosen:
            raise RuleNotApplicable(f"no {selector.role if selector.role != 'any' else ''} target treated with a {selector.regime} course".replace("  ", " "))
        groups = chosen
    return [(g.volumes.get(selector.volume), g.course, g) for g in groups]


def per_target(rule, subjects, selector: TargetSelector, evaluate) -> list[Finding]:
    """One finding per ``(roi, course, group)`` of :func:`target_subjects`: NOT_EVALUATED
    with the reason when the group has no volume of the selector or no identified course,
    else ``evaluate(roi, course, group)``."""
    out = []
    for roi, course, group in subjects:
        if roi is None:
            out.append(not_evaluated(rule, group.missing(selector.volume), structures=(group.label,)))
        elif course is None:
            out.append(not_evaluated(rule, f"{roi.name}: {group.how}", structures=(roi.name,)))
        else:
            out.append(evaluate(roi, course, group))
    return out


def no_target_found(rule, selector: TargetSelector) -> Finding:
    """NOT_EVALUATED: the export has no target of the selector's role."""
    role = f"{selector.role} " if selector.role != "any" else ""
    return not_evaluated(rule, f"no {role}target found in the structure set (names or case file)")


def _conversion(rule: DvhRule, ctx: CheckContext, standard_name: str, roi: Roi) -> tuple[DoseConversion, float | None, str]:
    kind = _KINDS[rule.dose_kind]
    if kind is DoseKind.PHYSICAL:
        return DoseConversion.physical(), None, ""
    ab, source = ctx.alpha_beta(standard_name, roi, rule.alpha_beta_gy)
    return DoseConversion(kind, ab), ab, source


def _rx_in_kind(info: CourseInfo, conversion: DoseConversion) -> float | None:
    return conversion.convert_total_dose(info.prescription_gy, info.fractions)


def _limits_for(rule: DvhRule, info: CourseInfo | None, ab: float | None, ctx, standard_name, roi) -> tuple[Limits | None, str]:
    if rule.limits is not None:
        return rule.limits, ""
    table = rule.limits_by_fractions or {}
    n = info.fractions if info else None
    if n is None:
        return None, "the number of fractions is not known, so the fraction-dependent limit cannot be chosen"
    if n in table:
        return table[n], f"limit for {n} fractions"
    if rule.other_fractions == "not_evaluated":
        return None, f"no limit is tabulated for {n} fractions ({', '.join(map(str, sorted(table)))} are)"
    below = [k for k in table if k <= n]
    ref = max(below) if below else min(table)
    if ab is None:
        ab, _ = ctx.alpha_beta(standard_name, roi, None)
    spec = parse_metric(rule.metric)
    base = table[ref]
    if not (spec.is_dose and spec.result_unit == "Gy"):
        return base, f"limit of the {ref}-fraction table used for {n} fractions"

    def conv(v: float | None) -> float | None:
        return None if v is None else float(total_dose_for_eqd2_gy(eqd2_gy(v, ref, ab), n, ab))

    def conv_bound(b: Bound | None) -> Bound | None:
        return None if b is None else Bound(per_protocol=conv(b.per_protocol), acceptable=conv(b.acceptable))

    converted = Limits(unit=base.unit, upper=conv_bound(base.upper), lower=conv_bound(base.lower))
    return converted, f"{n}-fraction limit converted from the {ref}-fraction limit through EQD2 with α/β = {ab:g} Gy"


def _condition(ctx: CheckContext, condition: str) -> bool | None:
    case = ctx.case
    if case is None:
        return None
    chemo, immuno = case.concurrent_chemotherapy, case.concurrent_immunotherapy
    if condition == "concurrent_chemotherapy":
        return chemo
    if condition == "concurrent_immunotherapy":
        return immuno
    if chemo or immuno:
        return True
    if chemo is False and immuno is False:
        return False
    return None


def _grade_value(value: MetricValue, limits: Limits) -> Status:
    if value.value is not None:
        return grade(value.value, limits)
    return grade_interval(value.lower, value.upper, limits)


def _shown(value: MetricValue, unit: str) -> str:
    if value.value is not None:
        return f"{value.value:.4g} {unit}"
    if value.lower is not None and value.upper is not None:
        return f"between {value.lower:.4g} and {value.upper:.4g} {unit}"
    return "not computable"


def _evaluate_subject(rule: DvhRule, ctx: CheckContext, standard_name: str, roi: Roi, courses: list[CourseInfo],
                      how: str, rx_course: CourseInfo | None) -> Finding:
    labels = tuple(c.label for c in courses)
    conversion, ab, ab_source = _conversion(rule, ctx, standard_name, roi)
    rx = _rx_in_kind(rx_course, conversion) if rx_course is not None else None
    value = ctx.metric(rule.metric, roi, courses, conversion, rx)
    limits, limit_note = _limits_for(rule, courses[0] if len(courses) == 1 else None, ab, ctx, standard_name, roi)
    details = {"metric": rule.metric, "dose_kind": conversion.label, "structure_match": how,
               "lower": value.lower, "upper": value.upper}
    if ab is not None:
        details.update(alpha_beta_gy=ab, alpha_beta_source=ab_source)
    if len(courses) > 1:
        details["composite_of"] = list(labels)
    if limit_note:
        details["limit_note"] = limit_note
    unit = value.unit
    where = f"{roi.name}" + (f" ({how})" if how and not how.startswith("exact") else "")
    dose_types = {c.course.dose.dose_type for c in courses}
    kind_label = dose_kind_label(conversion.label, "EFFECTIVE" if any(c.course.dose.is_rbe_weighted for c in courses) else "")
    if len(dose_types) == 1 and kind_label != conversion.label:
        details["dose_type"] = "EFFECTIVE"
    kind_text = "" if kind_label == "physical" else f" [{kind_label}]"
    scope = f"composite of {', '.join(labels)}" if len(courses) > 1 else labels[0]
    if limits is None:
        return not_evaluated(rule, f"{where} {rule.metric}{kind_text} in {scope}: {limit_note}", measured=value.value,
                             unit=unit, structures=(roi.name,), courses=labels, details=details)
    limit_text = limits.describe()
    status = _grade_value(value, limits)
    if rule.stricter_if is not None:
        # The stricter limit applies *in addition* when the condition holds: the worse grade
        # wins, so an institution that tightened the base limit is never loosened by it.
        holds = _condition(ctx, rule.stricter_if.condition)
        strict = rule.stricter_if.limits
        cond = rule.stricter_if.condition.replace("_", " ")
        both = worst_status([status, _grade_value(value, strict)])
        if holds is True:
            status, limit_text = both, f"{limits.describe()} and {strict.describe()} ({cond})"
        elif holds is None:
            if both != status:
                return not_evaluated(
                    rule, f"{where} {rule.metric}{kind_text} = {_shown(value, unit)} in {scope}: the limit is "
                    f"{limits.describe()}, and {strict.describe()} with {cond}, which is not known (no case file or field)",
                    measured=value.value, unit=unit, limit=f"{limits.describe()}; {strict.describe()} with {cond}",
                    structures=(roi.name,), courses=labels, details=details)
            limit_text = f"{limits.describe()} ({strict.describe()} with {cond}; same result)"
    if value.value is None and status is Status.NOT_EVALUATED:
        return not_evaluated(rule, f"{where} {rule.metric}{kind_text} in {scope}: {value.reason}", unit=unit,
                             limit=limit_text, structures=(roi.name,), courses=labels, details=details)
    shown = _shown(value, unit)
    verdict = {Status.PASS: "within", Status.WARN: "outside per-protocol but within acceptable", Status.FAIL: "outside"}[status]
    message = f"{where} {rule.metric}{kind_text} = {shown} in {scope}: {verdict} {limit_text}"
    if limit_note:
        message += f" ({limit_note})"
    return finding(rule, status, message, measured=value.value, unit=unit, limit=limit_text,
                   structures=(roi.name,), courses=labels, details=details)


def evaluate_dvh_rule(rule: DvhRule, ctx: CheckContext) -> list[Finding]:
    if not ctx.courses:
        return [not_evaluated(rule, "the export has no course with a dose")]
    if rule.target is not None:
        subjects = target_subjects(rule, ctx, rule.target)
        if not subjects:
            return [no_target_found(rule, rule.target)]
        return per_target(rule, subjects, rule.target,
                          lambda roi, course, group: _evaluate_subject(rule, ctx, roi.name, roi, [course], "", course))
    lookup = ctx.structure(rule.structure)  # type: ignore[arg-type]
    if lookup.roi is None:
        return [not_evaluated(rule, f"{rule.structure}: {lookup.reason}")]
    how = lookup.match.how if lookup.match else ""
    if rule.course == "composite":
        courses = list(ctx.courses)
        return [_evaluate_subject(rule, ctx, rule.structure, lookup.roi, courses, how, courses[0] if len(courses) == 1 else None)]
    chosen = ctx.courses_matching(rule.course)
    if not chosen:
        raise RuleNotApplicable(f"no {rule.course} course in the export")
    return [_evaluate_subject(rule, ctx, rule.structure, lookup.roi, [c], how, c) for c in chosen]  # type: ignore[arg-type]


DVH_KIND = RuleKind(model=DvhRule, evaluate=evaluate_dvh_rule)
