"""Rule kind ``conformity``: conformity and dose fall-off indices of a target's course.

Protocol-file fields::

    - id: COV-SBRT-CI
      kind: conformity
      title: SBRT conformity (Paddick)
      category: coverage
      target: {role: metastasis, regime: sbrt, volume: PTV}
      measure: paddick_ci          # paddick_ci | rtog_ci | gradient_index | r50
      body: External               # standard name of the body structure (default External)
      limits: {lower: {per_protocol: 0.8, acceptable: 0.7}}     # dimensionless: unit "" or omitted
      # or, for indices tabulated by target volume (RTOG 0813/0915 R50%):
      # limits_by_target_volume:
      #   - {max_cc: 1.8, limits: {upper: {per_protocol: 5.9, acceptable: 7.5}}}
      #   - {max_cc: 3.8, limits: {upper: {per_protocol: 5.5, acceptable: 6.5}}}
      # volume_interpolation: linear   # step (default): the first row whose max_cc ≥ the target
      #                                # volume; linear: rows are points, limits interpolated
      #                                # linearly between them (RTOG 0915 Table 1 note), NOT
      #                                # EVALUATED outside the table
      provenance: {source: AAPM TG-101; RTOG 0915, section: "§4 COV-SBRT", confidence: companion}

Definitions, for the course treating the target and its prescription dose Rx
(the target's own dose reference, else the plan's prescription):

* PIV (prescription isodose volume) = body volume receiving ≥ Rx = body V100%[cc];
  PIV50 = body V50%[cc];
* TV = target volume (the selector's volume, default PTV) = Volume[cc];
  TV_PIV = target volume receiving ≥ Rx = target V100%[cc];
* Paddick CI = TV_PIV² / (TV · PIV) (ideal 1; Paddick 2000);
* RTOG CI = PIV / TV (Shaw et al. 1993; RTOG 0813/0915 "ratio of prescription
  isodose volume to PTV");
* gradient index GI = PIV50 / PIV (Paddick & Lippitz 2006);
* R50% = PIV50 / TV (RTOG 0813, RTOG 0915).

TV and TV_PIV come from the target's physical-dose DVH for that course
(:meth:`CheckContext.metric`). PIV and PIV50 come from a *local* fine sampling of
the body (:meth:`CheckContext.isodose_volume`, :func:`plancheck.dvh.clip.local_isodose_volume`):
the body's DVH is sampled coarsely (a lattice up to twice the dose spacing), which
resolves a small SBRT isodose volume poorly (a few % on a ~15 cc PIV). Instead, for
each isodose (Rx for PIV, 50 % of Rx for PIV50) the box of the dose grid where the
dose reaches it is found from the dose array (the voxels ≥ the isodose, widened by
one voxel and half a voxel — outside it the trilinear dose is below the isodose), the
body's contours are clipped to that box (Sutherland–Hodgman in x/y, planes whose
slab misses the box dropped, the whole body's slab faces kept) and sampled finely
(~150 000 cells, typically a 0.5–1 mm lattice), and the volume ≥ the isodose of
that local DVH is the PIV: the body outside the box receives less by construction.
Where the local sampling cannot be made the body's DVH is used (``details``
``piv_method`` says how each was obtained).

When another target is treated by the same course, its high-dose volume is part of
PIV and PIV50, so the indices of each target are pessimistic; the message says so.
Where part of a structure is outside the dose grid a volume is known only within
bounds; the index is then graded only if its whole range grades the same.

References
----------
Paddick I. A simple scoring ratio to index the conformity of radiosurgical
treatment plans. J Neurosurg 2000;93(Suppl 3):219-222.
Paddick I, Lippitz B. A simple dose gradient measurement tool to complement the
conformity index. J Neurosurg 2006;105(Suppl):194-201.
Shaw E et al. Radiation Therapy Oncology Group: radiosurgery quality assurance
guidelines. Int J Radiat Oncol Biol Phys 1993;27:1231-1239.
RTOG 0813 and RTOG 0915 protocols, section 6 (conformality and R50%).
Benedict SH et al. AAPM TG-101. Med Phys 2010;37:4078-4101.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from plancheck.dvh.metrics import MetricValue
from plancheck.protocol.schema import RuleBase, StrictModel
from plancheck.rules.base import TargetSelector, finding, not_evaluated
from plancheck.rules.context import CheckContext, TargetGroup
from plancheck.rules.findings import Finding, Status
from plancheck.rules.kinds.dvh_rule import no_target_found, per_target, target_subjects
from plancheck.rules.kinds.prescription_rule import target_prescription
from plancheck.rules.registry import RuleKind
from plancheck.rules.thresholds import Bound, Limits, grade_interval

__all__ = ["ConformityRule", "VolumeRow", "CONFORMITY_KIND", "evaluate_conformity_rule", "conformity_indices"]

_NAMES = {"paddick_ci": "Paddick CI", "rtog_ci": "RTOG CI", "gradient_index": "GI", "r50": "R50%"}
_FORMULAS = {"paddick_ci": "TV_PIV²/(TV·PIV)", "rtog_ci": "PIV/TV", "gradient_index": "PIV50/PIV", "r50": "PIV50/TV"}
_VERDICT = {Status.PASS: "within", Status.WARN: "outside per-protocol but within acceptable", Status.FAIL: "outside"}

_FUNCTIONS: dict[str, Callable[[float, float, float, float], float]] = {
    # arguments: tv, tv_piv, piv, piv50
    "paddick_ci": lambda tv, tv_piv, piv, piv50: tv_piv * tv_piv / (tv * piv),
    "rtog_ci": lambda tv, tv_piv, piv, piv50: piv / tv,
    "gradient_index": lambda tv, tv_piv, piv, piv50: piv50 / piv,
    "r50": lambda tv, tv_piv, piv, piv50: piv50 / tv,
}


def conformity_indices(tv_cc: float, tv_piv_cc: float, piv_cc: float, piv50_cc: float) -> dict[str, float]:
    """The four indices from the four volumes (cc); ``nan`` where a denominator is 0.

    Examples
    --------
    >>> conformity_indices(10.0, 9.5, 12.0, 48.0)["r50"]
    4.8
    """
    out = {}
    for name, f in _FUNCTIONS.items():
        try:
            out[name] = float(f(tv_cc, tv_piv_cc, piv_cc, piv50_cc))
        except ZeroDivisionError:
            out[name] = math.nan
    return out


class VolumeRow(StrictModel):
    """Limits for targets up to ``max_cc`` (rows are tried in increasing ``max_cc``)."""

    max_cc: float = Field(gt=0)
    limits: Limits


class ConformityRule(RuleBase):
    kind: Literal["conformity"]
    target: TargetSelector = TargetSelector()
    measure: Literal["paddick_ci", "rtog_ci", "gradient_index", "r50"]
    body: str = "External"
    limits: Limits | None = None
    limits_by_target_volume: list[VolumeRow] | None = None
    volume_interpolation: Literal["step", "linear"] = "step"

    @model_validator(mode="after")
    def _check(self) -> ConformityRule:
        if (self.limits is None) == (self.limits_by_target_volume is None):
            raise ValueError("give exactly one of 'limits' or 'limits_by_target_volume'")
        rows = self.limits_by_target_volume or []
        for lim in [self.limits, *(r.limits for r in rows)]:
            if lim is not None and lim.unit:
                raise ValueError(f"{self.measure} is a ratio without unit: limits.unit must be empty, not {lim.unit!r}")
        sizes = [r.max_cc for r in rows]
        if sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("limits_by_target_volume: rows must be in strictly increasing max_cc")
        if self.volume_interpolation == "linear":
            shapes = {_shape(r.limits) for r in rows}
            if len(rows) < 2 or len(shapes) != 1:
                raise ValueError("volume_interpolation: linear needs at least two rows with the same sides and tiers")
        return self


def _shape(limits: Limits) -> tuple[bool, ...]:
    """Which sides and tiers a limit has (rows interpolated together must agree)."""
    return tuple(x for b in (limits.upper, limits.lower) for x in (b is not None, b is not None and b.acceptable is not None))


def _interpolated(rows: list[VolumeRow], tv_cc: float) -> tuple[Limits | None, str]:
    """Limits linearly interpolated in the target volume between the table's rows, or None
    (and why) for a volume outside the table."""
    lo_cc, hi_cc = rows[0].max_cc, rows[-1].max_cc
    if not lo_cc <= tv_cc <= hi_cc:
        return None, f"the table covers targets of {lo_cc:g}–{hi_cc:g} cc"
    k = next(i for i in range(1, len(rows)) if tv_cc <= rows[i].max_cc)
    a, b = rows[k - 1], rows[k]
    t = (tv_cc - a.max_cc) / (b.max_cc - a.max_cc)

    def mix(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else x + t * (y - x)

    def bound(x: Bound | None, y: Bound | None) -> Bound | None:
        if x is None or y is None:
            return None
        return Bound(per_protocol=mix(x.per_protocol, y.per_protocol), acceptable=mix(x.acceptable, y.acceptable))

    limits = Limits(unit=a.limits.unit, upper=bound(a.limits.upper, b.limits.upper), lower=bound(a.limits.lower, b.limits.lower))
    return limits, f"interpolated for a {tv_cc:.3g} cc target between the {a.max_cc:g} and {b.max_cc:g} cc rows"


def _bounds(value: MetricValue) -> tuple[float, float] | None:
    if value.value is not None:
        return value.value, value.value
    if value.lower is None or value.upper is None:
        return None
    return value.lower, value.upper


def _index_range(f, tv, tv_piv, piv, piv50) -> tuple[float, float]:
    """Range of an index monotone in each volume: its extremes lie at the corners."""
    values = []
    for combo in itertools.product(tv, tv_piv, piv, piv50):
        try:
            with_inf = float(f(*combo))
        except ZeroDivisionError:
            with_inf = math.nan
        values.append(with_inf)
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return min(values), max(values)


def _evaluate_group(rule: ConformityRule, ctx: CheckContext, roi, group: TargetGroup, body) -> Finding:
    info = group.course
    courses = (info.label,)  # type: ignore[union-attr]
    rx, why = target_prescription(group)
    if rx is None:
        return not_evaluated(rule, why, structures=(roi.name,), courses=courses)
    values = {
        "tv": ctx.metric("Volume[cc]", roi, [info]),  # type: ignore[list-item]
        "tv_piv": ctx.metric("V100%[cc]", roi, [info], None, rx.total_dose_gy),  # type: ignore[list-item]
        "piv": ctx.isodose_volume(body, info, 100.0, rx.total_dose_gy),  # type: ignore[arg-type]
        "piv50": ctx.isodose_volume(body, info, 50.0, rx.total_dose_gy),  # type: ignore[arg-type]
    }
    bounds = {k: _bounds(v) for k, v in values.items()}
    details = {"definition": f"{_NAMES[rule.measure]} = {_FORMULAS[rule.measure]}", "prescription_gy": rx.total_dose_gy,
               "prescription_source": rx.source, "body": body.name,
               **{f"{k}_cc": v.value for k, v in values.items()},
               **{f"{k}_bounds_cc": list(b) if b else None for k, b in bounds.items() if values[k].value is None},
               "piv_method": values["piv"].method, "piv50_method": values["piv50"].method}
    missing = [k for k, b in bounds.items() if b is None]
    if missing:
        reasons = "; ".join(f"{k.upper()}: {values[k].reason}" for k in missing)
        return not_evaluated(rule, f"{roi.name} {_NAMES[rule.measure]} in {courses[0]}: {reasons}",
                             structures=(roi.name, body.name), courses=courses, details=details)
    lo, hi = _index_range(_FUNCTIONS[rule.measure], *(bounds[k] for k in ("tv", "tv_piv", "piv", "piv50")))
    measured = lo if lo == hi else None
    tv = bounds["tv"][0]  # type: ignore[index]
    if rule.limits is not None:
        limits, limit_note = rule.limits, ""
    elif rule.volume_interpolation == "linear":
        interpolated, limit_note = _interpolated(rule.limits_by_target_volume or [], tv)
        if interpolated is None:
            return not_evaluated(rule, f"{roi.name} is {tv:.3g} cc: {limit_note}", measured=measured,
                                 structures=(roi.name,), courses=courses, details=details)
        limits = interpolated
        details["limit_note"] = limit_note
    else:
        row = next((r for r in rule.limits_by_target_volume or [] if tv <= r.max_cc), None)
        if row is None:
            top = rule.limits_by_target_volume[-1].max_cc  # type: ignore[index]
            return not_evaluated(rule, f"{roi.name} is {tv:.3g} cc: the table of {_NAMES[rule.measure]} limits ends at {top:g} cc",
                                 measured=measured, structures=(roi.name,), courses=courses, details=details)
        limits, limit_note = row.limits, f"limit for targets ≤ {row.max_cc:g} cc"
        details["limit_note"] = limit_note
    limit_text = limits.describe() + (f" ({limit_note})" if limit_note else "")
    shared = [g.label for g in ctx.targets if g is not group and g.course is not None and g.course.label == info.label]  # type: ignore[union-attr]
    if shared:
        details["other_targets_in_course"] = shared
    if math.isnan(lo):
        return not_evaluated(rule, f"{roi.name} {_NAMES[rule.measure]} in {courses[0]}: undefined (a volume in its denominator is 0 cc)",
                             structures=(roi.name, body.name), courses=courses, details=details)
    status = grade_interval(lo, hi, limits)
    shown = f"{lo:.3g}" if measured is not None else f"between {lo:.3g} and {hi:.3g}"
    if status is Status.NOT_EVALUATED:
        return not_evaluated(rule, f"{roi.name} {_NAMES[rule.measure]} in {courses[0]} is {shown} (part of a structure is "
                             f"outside the dose grid): cannot be graded against {limit_text}", limit=limit_text,
                             structures=(roi.name, body.name), courses=courses, details=details)
    v = values
    volumes = (f"TV {v['tv'].value:.3g} cc, TV_PIV {v['tv_piv'].value:.3g} cc, PIV {v['piv'].value:.3g} cc, PIV50 {v['piv50'].value:.3g} cc"
               if all(x.value is not None for x in v.values()) else "volumes partly outside the dose grid")
    message = (f"{roi.name} {_NAMES[rule.measure]} = {shown} in {courses[0]} (Rx {rx.total_dose_gy:g} Gy; {volumes}): "
               f"{_VERDICT[status]} {limit_text}")
    if shared:
        message += f"; PIV includes the dose to {', '.join(shared)}, treated by the same course"
    return finding(rule, status, message, measured=measured, unit="", limit=limit_text, structures=(roi.name, body.name),
                   courses=courses, details=details)


def evaluate_conformity_rule(rule: ConformityRule, ctx: CheckContext) -> list[Finding]:
    if not ctx.courses:
        return [not_evaluated(rule, "the export has no course with a dose")]
    subjects = target_subjects(rule, ctx, rule.target)
    if not subjects:
        return [no_target_found(rule, rule.target)]
    lookup = ctx.structure(rule.body)
    if lookup.roi is None:
        return [not_evaluated(rule, f"body structure {rule.body}: {lookup.reason}; PIV cannot be measured",
                              structures=tuple(g.label for _, _, g in subjects))]
    return per_target(rule, subjects, rule.target, lambda roi, course, group: _evaluate_group(rule, ctx, roi, group, lookup.roi))


CONFORMITY_KIND = RuleKind(model=ConformityRule, evaluate=evaluate_conformity_rule)
