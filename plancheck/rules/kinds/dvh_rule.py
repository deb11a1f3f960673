"""Rule kind ``dvh``: a TG-263 DVH metric of a structure or target against limits,
graded on the dose the limit was defined on.

Protocol-file fields::

    - id: OAR-CORD
      kind: dvh
      title: Spinal cord (PRV where contoured) maximum ≤ 45 Gy
      category: oar
      structure: [SpinalCord_PRV05, SpinalCord]  # a TG-263 standard name, or a list: the first
                                                 # that is contoured; or a combination:
      # structure: {union: [Trachea, Bronchus]}      # one volume made of several (overlap once)
      # structure: {union: [Esophagus], minus_targets: PTV}   # the organ outside every PTV
      # target: {role: primary, volume: PTV}     # ... or a target volume (then its own course)
      metric: "D0.03cc[Gy]"
      dose_basis: physical_conventional   # the dose the limit is defined on (required):
                                          #   physical | physical_conventional | eqd2 | bed
      alpha_beta_gy: 2                    # optional (eqd2/bed); default: protocol, then α/β table
      course: composite                   # all | conventional | sbrt | composite | a course label
      when: always                        # always | several_courses (composite limits of several courses,
                                          # or of a plan of several fraction groups)
      if_contoured: false                 # true: not applicable (stated) when the organ is not contoured
                                          # at all, e.g. brain organs on a thoracic plan
      limits: {unit: Gy, upper: {per_protocol: 45}}
      # or, for SBRT tables keyed by number of fractions (physical dose per course):
      # limits_by_fractions: {1: {...}, 3: {...}, 5: {...}, 8: {..., source: "LungTech (8 fx)"}}
      # metric_by_fractions: {1: "CV7Gy[cc]", 3: "CV11.6Gy[cc]", 5: "CV12.5Gy[cc]"}   # optional: a metric
      #                                   # per column where the threshold dose depends on the fractions
      # other_fractions: nearest_below    # the nearest tabulated number of fractions BELOW (stricter),
      #                                   # or not_evaluated; never an LQ-converted limit
      # stricter_if: {condition: concurrent_systemic_therapy, limits: {...}}
      provenance: {source: ..., section: ..., confidence: companion}

Dose bases
----------
``physical``
    Physical dose: per course, or the plain sum of the courses for ``course: composite``.
``physical_conventional``
    A limit derived from physical-dose DVHs of conventionally fractionated plans
    (QUANTEC and conventional practice). For one conventional course (1.8–2.2 Gy per
    fraction, not SBRT) it is graded on the physical dose. For several courses, or a
    course that is not conventional, it is graded on **both** the physical-dose sum and
    the voxel-wise composite EQD2 (α/β per organ), and the worse result counts: in an
    organ that receives less than 2 Gy per fraction EQD2 is lower than the physical dose,
    so EQD2 alone would loosen the limit; above 2 Gy per fraction it is the reverse.
``eqd2`` / ``bed``
    Voxel-wise EQD2 / BED (each course converted with its own number of fractions).

The finding keeps every measurement (:class:`plancheck.rules.findings.Measurement`);
its status is the worst of them (FAIL before NOT_EVALUATED before WARN before PASS): a
basis that could not be measured never lets the rule pass, but a certain violation on
another basis is still reported as FAIL.

Courses: ``sbrt`` selects the courses SBRT limits apply to
(:attr:`plancheck.rules.context.CourseInfo.is_sbrt`) and ``conventional`` the placed
non-SBRT courses; a course that cannot be placed (no prescription or fractions, no
case-file declaration) gives a NOT_EVALUATED finding for such rules, never a silent
"conventional". ``composite`` sums every course of the treatment voxel-wise.

Lists: the first listed structure that is contoured is measured, with two exceptions
(:func:`_no_fallback`), where the rule is NOT_EVALUATED with the reason instead of measuring
a later name: a listed structure that several ROIs could be (AMBIGUOUS), and a listed PRV
(``SpinalCord_PRV05``) that is not contoured while another PRV of the same organ is
(``SpinalCord_PRV03``, ``Cord_PRV``: any TG-263 PRV name or a synonym of one). The bare organ's
maximum is below its PRV's, and a PRV of a smaller or unstated margin can pass where the listed
one fails; a clinic whose limit applies to that PRV maps the listed name to it.

Combinations and partial combinations: when a member of a ``union`` is not contoured,
the rule is measured on the members that are; an upper limit on a metric that can only
grow with the volume (``D4cc``, the maximum, ``V20Gy[cc]``) violated there is a FAIL
(the full union can only be worse), anything else is NOT_EVALUATED with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field, model_validator

from plancheck.dvh.metrics import MetricValue, parse_metric
from plancheck.errors import MetricSpecError
from plancheck.model.dose import dose_kind_label
from plancheck.model.structures import Roi
from plancheck.names.structures import MatchStatus, prv_of
from plancheck.protocol.schema import RuleBase, StrictModel
from plancheck.radiobiology import DoseConversion, DoseKind
from plancheck.rules.base import RuleNotApplicable, TargetSelector, finding, not_evaluated
from plancheck.rules.context import CheckContext, CourseInfo
from plancheck.rules.findings import AppliedLimit, Finding, Measurement, Status, worst_status
from plancheck.rules.registry import RuleKind
from plancheck.rules.thresholds import Limits, grade, grade_interval

__all__ = [
    "no_target_found", "per_target", "DvhRule", "StricterIf", "StructureCombination", "DVH_KIND",
    "evaluate_dvh_rule", "target_subjects", "DoseBasis",
]

DoseBasis = Literal["physical", "physical_conventional", "eqd2", "bed"]

_VERDICT = {Status.PASS: "within", Status.WARN: "outside per-protocol but within acceptable", Status.FAIL: "outside"}


class StricterIf(StrictModel):
    """Stricter limits that apply when a clinical condition holds."""

    condition: Literal["concurrent_systemic_therapy", "concurrent_chemotherapy", "concurrent_immunotherapy"]
    limits: Limits


class StructureCombination(StrictModel):
    """One volume made of several structures (see :mod:`plancheck.dvh.combine`).

    ``union``: the parts whose volumes are joined (an overlap counts once); each part is a
    standard name, or a list of the names the part may be contoured as (every one of them
    that is contoured is joined; the part is missing only when none is); ``minus``:
    standard names removed from it; ``minus_targets``: every target volume of this kind
    (e.g. ``PTV``) removed; ``name``: how reports call it.
    """

    union: list[str | list[str]] = Field(min_length=1)
    minus: list[str] = Field(default_factory=list)
    minus_targets: Literal["GTV", "ITV", "CTV", "PTV"] | None = None
    name: str | None = None

    @property
    def parts(self) -> list[list[str]]:
        """The union's parts, each as the list of names it may be contoured as."""
        return [[p] if isinstance(p, str) else list(p) for p in self.union]

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        text = " ∪ ".join("/".join(p) for p in self.parts)
        removed = list(self.minus) + ([f"every {self.minus_targets}"] if self.minus_targets else [])
        return text + "".join(f" − {r}" for r in removed)


class DvhRule(RuleBase):
    kind: Literal["dvh"]
    structure: str | list[str] | StructureCombination | None = None
    target: TargetSelector | None = None
    metric: str
    dose_basis: DoseBasis
    alpha_beta_gy: float | None = Field(default=None, allow_inf_nan=False)
    course: str = "all"
    when: Literal["always", "several_courses"] = "always"
    if_contoured: bool = False
    limits: Limits | None = None
    limits_by_fractions: dict[int, Limits] | None = None
    metric_by_fractions: dict[int, str] | None = None
    other_fractions: Literal["nearest_below", "not_evaluated"] = "nearest_below"
    stricter_if: StricterIf | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "dose_kind" in data:
                raise ValueError("'dose_kind' is now 'dose_basis' (physical, physical_conventional, eqd2 or bed): "
                                 "say on which dose the limit was defined")
            if data.get("other_fractions") == "convert_eqd2":
                raise ValueError("other_fractions 'convert_eqd2' was removed: SBRT limits converted through the LQ "
                                 "model are looser than the published ones; tabulate the published limit for that "
                                 "number of fractions, or use nearest_below or not_evaluated")
        return data

    @model_validator(mode="after")
    def _check(self) -> DvhRule:
        if (self.structure is None) == (self.target is None):
            raise ValueError("give exactly one of 'structure' (a standard name) or 'target'")
        if isinstance(self.structure, list) and not self.structure:
            raise ValueError("'structure' lists no name")
        if (self.limits is None) == (self.limits_by_fractions is None):
            raise ValueError("give exactly one of 'limits' or 'limits_by_fractions'")
        if self.limits_by_fractions is not None and self.course == "composite":
            raise ValueError("limits_by_fractions apply to one course at a time, not to course 'composite'")
        if self.limits_by_fractions is not None and any(n < 1 for n in self.limits_by_fractions):
            raise ValueError("limits_by_fractions keys are numbers of fractions (≥ 1)")
        if self.metric_by_fractions is not None:
            if self.limits_by_fractions is None or set(self.metric_by_fractions) != set(self.limits_by_fractions):
                raise ValueError("metric_by_fractions needs limits_by_fractions with the same numbers of fractions")
        try:
            specs = {n: parse_metric(m) for n, m in {0: self.metric, **(self.metric_by_fractions or {})}.items()}
        except MetricSpecError as exc:
            raise ValueError(str(exc)) from exc
        if len({s.result_unit for s in specs.values()}) > 1:
            raise ValueError("metric_by_fractions must report in the unit of 'metric'")
        spec = specs[0]
        for lim in [self.limits, *(self.limits_by_fractions or {}).values(), self.stricter_if.limits if self.stricter_if else None]:
            if lim is not None and lim.unit and lim.unit != spec.result_unit:
                raise ValueError(f"limits are in {lim.unit!r} but {self.metric} is reported in {spec.result_unit!r}")
        if self.alpha_beta_gy is not None and self.alpha_beta_gy <= 0:
            raise ValueError("alpha_beta_gy must be > 0 Gy")
        if self.dose_basis == "physical" and self.alpha_beta_gy is not None:
            raise ValueError("alpha_beta_gy applies to dose_basis eqd2, bed or physical_conventional")
        if self.when == "several_courses" and self.course != "composite":
            raise ValueError("when: several_courses applies to course 'composite'")
        return self


# ------------------------------------------------------------------------------ targets

def target_subjects(rule, ctx: CheckContext, selector: TargetSelector):
    """(roi, course, group) for each target group matching the selector.

    Raises RuleNotApplicable when the export has no target of the asked regime and none
    whose regime is unknown. Groups without the asked volume or without an identified course
    are returned with roi/course None so the caller reports NOT_EVALUATED with the reason
    (also when the selector asks for a regime: a target no plan can be attributed to has no
    known regime); so is a group whose course cannot be placed.
    """
    groups = [g for g in ctx.targets if selector.role in ("any", g.role)]
    if selector.regime != "any":
        wanted = selector.regime == "sbrt"
        chosen = [g for g in groups if g.course is not None and g.course.is_sbrt is wanted]
        # a group whose course is not identified, or cannot be placed: its regime is not known; a
        # group a plan left out of this check treats is that plan's check's (not graded here)
        unplaced = [g for g in groups if (g.course is None and not g.left_out_plan)
                    or (g.course is not None and g.course.is_sbrt is None)]
        if not chosen and not unplaced:
            raise RuleNotApplicable(f"no {selector.role if selector.role != 'any' else ''} target treated with a {selector.regime} course".replace("  ", " "))
        return ([(g.volumes.get(selector.volume), g.course, g) for g in chosen]
                + [(g.volumes.get(selector.volume), None, _unplaced(g)) for g in unplaced])
    return [(g.volumes.get(selector.volume), g.course, g) for g in groups]


def _unplaced(group):
    """The group with no course, and why: its course, or its course's regime, is unknown."""
    if group.course is None:
        return replace(group, how=f"{group.how}, so its regime is not known; regime-specific limits not evaluated")
    return replace(group, course=None, how=f"{group.course.placement}; regime-specific limits not evaluated "
                                              f"(declare the course in the case file)")


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


# ------------------------------------------------------------------------------ subjects

@dataclass(frozen=True)
class _Subject:
    """What a rule measures: an exported ROI or a combination of ROIs.

    ``standard_name`` chooses the α/β; ``missing`` lists union members that are not
    contoured (the subject is then only part of the volume the limit is about).
    """

    roi: Roi | None
    standard_name: str
    how: str = ""
    missing: tuple[str, ...] = ()
    reason: str = ""
    not_contoured: bool = False  # no name of the subject is in the structure set at all


def _missing(lookup) -> bool:
    """True when no ROI of the structure set is the structure (not merely empty or ambiguous)."""
    return lookup.roi is None and lookup.match is not None and lookup.match.status is MatchStatus.MISSING


def _found(rule: DvhRule, ctx: CheckContext) -> _Subject:
    """The rule's subject; a rule marked ``if_contoured`` does not apply when none of its
    structures is contoured (e.g. brain organs on a thoracic plan)."""
    subject = _subject(rule, ctx)
    if subject.roi is None and subject.not_contoured and rule.if_contoured:
        raise RuleNotApplicable(f"{subject.reason.split(':')[0]} is not contoured; this limit applies where it is")
    return subject


def _unknown_roi(lookup) -> bool:
    """True when the structure is in the structure set but it is not known which ROI it is: several
    ROIs could be it (AMBIGUOUS), or the user's mapping names an ROI the structure set lacks or
    has without contours. Such a member is never just left out of a combination."""
    match = lookup.match
    if lookup.roi is not None or match is None:
        return False
    return match.status is MatchStatus.AMBIGUOUS or match.how.startswith("user mapping")


def _no_fallback(ctx: CheckContext, name: str, lookup, spec: list[str]) -> str:
    """Why the structures listed after ``name`` must not be measured in its place (``""`` when
    they may): ``name`` is there but it is not known which ROI it is (AMBIGUOUS), the user's
    mapping names it but that ROI is absent or empty, its ROI is in the structure set without
    contours (a PRV named but never drawn), or ``name`` is a PRV that is not contoured while
    another PRV of the same organ is (``SpinalCord_PRV03``, ``Cord_PRV`` or an unlisted spelling
    read as a PRV such as ``SC_PRV07`` or ``Cord+7mm``, for ``SpinalCord_PRV05``). The limit is then NOT EVALUATED: not graded on the
    bare organ (its maximum is lower than any PRV's: a false PASS), nor on a PRV of another
    margin than the protocol's (a smaller or unstated margin can pass where the listed one
    fails); a clinic whose limit applies to that PRV says so with a mapping."""
    if lookup.roi is not None or lookup.match is None or name == spec[-1]:
        return ""
    rest = ", ".join(spec[spec.index(name) + 1:])
    if lookup.match.status is MatchStatus.AMBIGUOUS:
        return f"{name}: {lookup.reason}; {rest} not measured in its place"
    if lookup.match.how.startswith("user mapping"):  # the user said which ROI it is
        return (f"{name}: {lookup.reason}; {rest} not measured in its place (the mapping names the structure "
                f"the limit is on): correct the mapping or the structure set")
    if lookup.match.status is MatchStatus.MATCHED:  # the ROI is in the structure set, without contours
        return (f"{name}: {lookup.reason}; {rest} not measured in its place ({name} is named in the structure "
                f"set but not drawn, or not exported): contour {name}, or remove the empty structure "
                f"'{lookup.match.roi_name}' if {rest} is what the limit is on")
    others = ctx.other_prvs(name)
    if not others:
        return ""
    listed = prv_of(lookup.match.standard_name) or prv_of(name)
    found = "; ".join(f"'{roi.name}' ({prv.describe()})" for roi, prv in others)
    margin = f"{listed.margin_mm} mm" if listed and listed.margin_mm is not None else "its"
    return (f"{name} is not contoured, but another PRV of {listed.organ if listed else name} is: {found}. "
            f"The limit is defined on {name} ({margin} margin) and is not graded on a PRV of another "
            f"margin, nor on {', '.join(spec[spec.index(name) + 1:])} while a PRV is contoured; if the "
            f"clinic's limit applies to this PRV, map it (--map {name}=<ROI name>, or structure_mapping "
            f"in a protocol that extends this one)")


def _subject(rule: DvhRule, ctx: CheckContext) -> _Subject:
    spec = rule.structure
    if isinstance(spec, str):
        lookup = ctx.structure(spec)
        how = lookup.match.how if lookup.match else ""
        return _Subject(lookup.roi, spec, how, reason=f"{spec}: {lookup.reason}", not_contoured=_missing(lookup))
    if isinstance(spec, list):
        reasons = []
        absent = True
        for name in spec:
            lookup = ctx.structure(name)
            if lookup.defective is not None:  # never measure the next structure in its place
                return _Subject(None, name, reason=f"{name}: {lookup.reason}")
            blocked = _no_fallback(ctx, name, lookup, spec)
            if blocked:
                return _Subject(None, name, reason=blocked)
            absent = absent and _missing(lookup)
            if lookup.roi is not None:
                how = lookup.match.how if lookup.match else ""
                if len(spec) > 1:
                    how = (how + "; " if how and not how.startswith("exact") else "") + f"first contoured of {', '.join(spec)}"
                return _Subject(lookup.roi, name, how)
            reasons.append(f"{name}: {lookup.reason}")
        return _Subject(None, spec[0], reason="; ".join(reasons), not_contoured=absent)
    assert spec is not None
    found: list[tuple[str, Roi]] = []
    missing: list[str] = []
    reasons: list[str] = []
    for part in spec.parts:
        lookups = [(name, ctx.structure(name)) for name in part]
        broken = [f"{n}: {lk.reason}" for n, lk in lookups if lk.defective is not None or _unknown_roi(lk)]
        if broken:  # a member that cannot be measured, or is not known: the combination cannot be either
            return _Subject(None, spec.parts[0][0], reason="; ".join(broken))
        here = [(name, lk.roi) for name, lk in lookups if lk.roi is not None]
        found += here
        if not here:
            missing.append(part[0])
            reasons += [f"{n}: {lk.reason}" for n, lk in lookups]
    first = spec.parts[0][0]
    if not found:
        absent = all(_missing(ctx.structure(n)) for part in spec.parts for n in part)
        return _Subject(None, first, reason="; ".join(reasons), not_contoured=absent)
    removed: list[Roi] = []
    notes: list[str] = []
    for name in spec.minus:
        lookup = ctx.structure(name)
        if lookup.defective is not None:
            return _Subject(None, first, reason=f"{name} (to subtract): {lookup.reason}")
        if lookup.roi is None:
            notes.append(f"{name} not subtracted ({lookup.reason})")
        else:
            removed.append(lookup.roi)
    if spec.minus_targets:
        broken = [g.defective[spec.minus_targets].defect_text for g in ctx.targets if spec.minus_targets in g.defective]
        if broken:
            return _Subject(None, first, reason=f"{spec.minus_targets} to subtract: " + "; ".join(broken))
        targets = [g.volumes[spec.minus_targets] for g in ctx.targets if spec.minus_targets in g.volumes]
        removed += targets
        if not targets:
            notes.append(f"no {spec.minus_targets} found to subtract")
    roi = ctx.combined_roi(spec.display_name, [r for _, r in found], removed)
    described = [f"{name} = {r.name}" for name, r in found] + [f"minus {r.name}" for r in removed] + notes
    how = "combined: " + ", ".join(described)
    if roi.is_empty:
        return _Subject(None, first, how, tuple(missing), f"{spec.display_name}: nothing is left of the combination ({how})")
    return _Subject(roi, first, how, tuple(missing))


# ------------------------------------------------------------------------------ grading

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


def _shown(value: MetricValue) -> str:
    if value.value is not None:
        return f"{value.value:.4g} {value.unit}"
    if value.lower is not None and value.upper is not None:
        return f"between {value.lower:.4g} and {value.upper:.4g} {value.unit}"
    return "not computable"


@dataclass(frozen=True)
class _LimitSet:
    """The limits of one finding: the base limits and an optional conditional stricter set."""

    base: Limits
    metric: str
    note: str = ""
    stricter: Limits | None = None
    condition: str = ""
    holds: bool | None = None

    def grade(self, value: MetricValue) -> tuple[Status, str]:
        """Grade of a value, and a reason when it is NOT_EVALUATED because the condition of
        the stricter limit is unknown and would change the grade."""
        status = _grade_value(value, self.base)
        if self.stricter is None or self.holds is False:
            return status, ""
        both = worst_status([status, _grade_value(value, self.stricter)])
        if self.holds is True or both == status:
            return both, ""
        return Status.NOT_EVALUATED, (f"the limit is {self.base.describe()}, and {self.stricter.describe()} with "
                                      f"{self.condition}, which is not known (no case file or field)")

    def applied(self, basis: str) -> tuple[AppliedLimit, ...]:
        note = " ".join(x for x in (self.note, f"({self.base.source})" if self.base.source else "") if x)
        out = [self.base.applied(dose_basis=basis, note=note)]
        if self.stricter is not None:
            out.append(self.stricter.applied(condition=self.condition, applies=self.holds, dose_basis=basis))
        return tuple(out)

    def text(self) -> str:
        text = self.base.describe()
        if self.stricter is not None:
            state = {True: "applies", False: "does not apply", None: "not known"}[self.holds]
            text += f"; {self.stricter.describe()} with {self.condition} ({state})"
        return text


def _limit_set(rule: DvhRule, ctx: CheckContext, info: CourseInfo | None) -> tuple[_LimitSet | None, str]:
    """The limits that apply to one subject, or None and the reason."""
    stricter = rule.stricter_if
    extra: dict[str, Any] = {}
    if stricter is not None:
        extra = {"stricter": stricter.limits, "condition": stricter.condition.replace("_", " "),
                 "holds": _condition(ctx, stricter.condition)}
    if rule.limits is not None:
        return _LimitSet(rule.limits, rule.metric, **extra), ""
    table = rule.limits_by_fractions or {}
    n = info.fractions if info else None
    tabulated = ", ".join(map(str, sorted(table)))
    if n is None:
        return None, "the number of fractions is not known, so the fraction-dependent limit cannot be chosen"
    metrics = rule.metric_by_fractions or {}
    if n in table:
        return _LimitSet(table[n], metrics.get(n, rule.metric), f"limit for {n} fractions", **extra), ""
    below = [k for k in table if k < n]
    if rule.other_fractions == "not_evaluated" or not below:
        why = "none for fewer fractions" if not below else "the protocol asks for a tabulated number"
        return None, f"no limit is tabulated for {n} fractions ({tabulated} are; {why})"
    ref = max(below)
    return _LimitSet(table[ref], metrics.get(ref, rule.metric), f"{n} fractions: the {ref}-fraction limit is used "
                     f"(nearest tabulated number below, the stricter; no LQ conversion)", **extra), ""


# ------------------------------------------------------------------------------ measuring

@dataclass(frozen=True)
class _Basis:
    conversion: DoseConversion
    label: str  # e.g. "physical dose", "EQD2 (α/β = 2 Gy)"
    alpha_beta_source: str = ""


def _bases(rule: DvhRule, ctx: CheckContext, subject: _Subject, courses: list[CourseInfo]) -> tuple[list[_Basis], str]:
    """The dose bases to grade on, and why (for the report)."""
    basis = rule.dose_basis
    if basis == "physical":
        return [_Basis(DoseConversion.physical(), "physical dose")], ""
    ab, source = ctx.alpha_beta(subject.standard_name, subject.roi, rule.alpha_beta_gy)  # type: ignore[arg-type]
    if basis in ("eqd2", "bed"):
        kind = DoseKind.EQD2 if basis == "eqd2" else DoseKind.BED
        return [_Basis(DoseConversion(kind, ab), f"{kind.value} (α/β = {ab:g} Gy)", source)], ""
    if len(courses) == 1 and courses[0].is_conventional:
        return [_Basis(DoseConversion.physical(), "physical dose")], "one conventional course: graded on physical dose"
    why = ("several courses" if len(courses) > 1 else f"{courses[0].placement}, not one conventional course")
    return ([_Basis(DoseConversion.physical(), "physical dose"),
             _Basis(DoseConversion(DoseKind.EQD2, ab), f"EQD2 (α/β = {ab:g} Gy)", source)],
            f"{why}: graded on the worse of the physical dose and EQD2")


def _rbe_label(basis: _Basis) -> str:
    """A basis label for an RBE-weighted (Dose Type EFFECTIVE) dose: ``RBE-weighted
    (EFFECTIVE) dose``, ``EQD2 (α/β = 2 Gy) of RBE-weighted dose``."""
    if basis.conversion.kind is DoseKind.PHYSICAL:
        return dose_kind_label("physical", "EFFECTIVE") + " dose"
    return dose_kind_label(basis.label, "EFFECTIVE")


def _computable(basis: _Basis, courses: list[CourseInfo]) -> bool:
    """The basis's DVH can be computed: physical dose, or every course states its fractions."""
    return basis.conversion.kind is DoseKind.PHYSICAL or all(c.fractions for c in courses)


def _measure(ctx: CheckContext, metric: str, roi: Roi, courses: list[CourseInfo], basis: _Basis,
             rx_course: CourseInfo | None) -> MetricValue:
    if not _computable(basis, courses):
        lacking = "; ".join(f"{c.label} {c.course.plan.fractions_unknown_reason.removeprefix('the plan ')}"
                            for c in courses if not c.fractions)
        return MetricValue(metric, None, parse_metric(metric).result_unit,
                           reason=f"{lacking}, so {basis.conversion.kind.value} cannot be computed")
    rx = basis.conversion.convert_total_dose(rx_course.prescription_gy, rx_course.fractions) if rx_course else None
    return ctx.metric(metric, roi, courses, basis.conversion, rx)


def _evaluate_subject(rule: DvhRule, ctx: CheckContext, subject: _Subject, courses: list[CourseInfo],
                      rx_course: CourseInfo | None) -> Finding:
    roi = subject.roi
    assert roi is not None
    labels = tuple(c.label for c in courses)
    scope = (f"sum of {', '.join(labels)}" if len(courses) > 1 else labels[0])
    where = roi.name + (f" ({subject.how})" if subject.how and not subject.how.startswith("exact") else "")
    limit_set, limit_reason = _limit_set(rule, ctx, courses[0] if len(courses) == 1 else None)
    bases, basis_note = _bases(rule, ctx, subject, courses)
    details: dict[str, Any] = {"metric": rule.metric, "dose_basis": rule.dose_basis, "structure_match": subject.how}
    if any(c.course.dose.is_rbe_weighted for c in courses):  # the dose measured is RBE-weighted: say so
        bases = [replace(b, label=_rbe_label(b)) for b in bases]
        details["dose_type"] = "EFFECTIVE"
    if basis_note:
        details["basis_note"] = basis_note
    if len(courses) > 1:
        details["composite_of"] = list(labels)
    converted = [b for b in bases if b.conversion.kind is not DoseKind.PHYSICAL]
    if converted:
        details.update(alpha_beta_gy=converted[0].conversion.alpha_beta_gy, alpha_beta_source=converted[0].alpha_beta_source)
    if limit_set is None:
        details["dose_kind"] = bases[0].conversion.label
        return not_evaluated(rule, f"{where} {rule.metric} in {scope}: {limit_reason}", structures=(roi.name,),
                             courses=labels, details=details)
    details["limit_note"] = limit_set.note
    metric = details["metric"] = limit_set.metric
    measurements: list[Measurement] = []
    reasons: list[str] = []
    values: list[MetricValue] = []
    # a composite in both physical dose and EQD2: computed together (each course's dose interpolated once)
    ctx.prepare_composites(roi, courses, [b.conversion for b in bases if _computable(b, courses)])
    for basis in bases:
        value = _measure(ctx, metric, roi, courses, basis, rx_course)
        status, why = limit_set.grade(value)
        reason = why or (value.reason or "" if status is Status.NOT_EVALUATED else "")
        label = basis.label + (f", {scope}" if len(courses) > 1 else "")
        measurements.append(Measurement(label, value.value, value.unit, status, value.lower, value.upper, reason))
        values.append(value)
        if reason:
            reasons.append(f"{basis.label}: {reason}")
    status = worst_status([m.status for m in measurements])
    decisive = next(i for i, m in enumerate(measurements) if m.status is status)
    details["dose_kind"] = bases[decisive].conversion.label
    details["lower"], details["upper"] = values[decisive].lower, values[decisive].upper
    limit_text = limit_set.text()
    applied = limit_set.applied(bases[decisive].label if len(bases) == 1 else " and ".join(b.label for b in bases) + " (the worse)")
    if len(measurements) == 1:
        shown = f"{bases[0].label} = {_shown(values[0])}"
    else:
        shown = "; ".join(f"{b.label}: {_shown(v)} ({m.status.value})" for b, v, m in zip(bases, values, measurements))
    head = f"{where} {metric} in {scope}: {shown}"
    unit = values[decisive].unit
    if subject.missing:
        spec = parse_metric(metric)
        certain = (status is Status.FAIL and spec.never_lower_on_a_larger_volume
                   and limit_set.base.lower is None and limit_set.stricter is None)
        missing = ", ".join(subject.missing)
        if not certain:
            return not_evaluated(rule, f"{head}, but {missing} is not contoured and the limit applies to the whole "
                                 f"combination", measured=values[decisive].value, unit=unit, structures=(roi.name,),
                                 courses=labels, details=details, limits=applied, measurements=tuple(measurements))
        head += f" (on the contoured part only: {missing} is not contoured; the whole can only be higher)"
    if status is Status.NOT_EVALUATED:
        return not_evaluated(rule, f"{head}: cannot be graded against {limit_text} ({'; '.join(reasons)})",
                             measured=values[decisive].value, unit=unit, limit=limit_text, structures=(roi.name,),
                             courses=labels, details=details, limits=applied, measurements=tuple(measurements))
    message = f"{head}: {_VERDICT[status]} {limit_text}"
    notes = [n for n in (limit_set.note, basis_note) if n]
    if notes:
        message += f" ({'; '.join(notes)})"
    return finding(rule, status, message, measured=values[decisive].value, unit=unit, limit=limit_text,
                   structures=(roi.name,), courses=labels, details=details, limits=applied,
                   measurements=tuple(measurements))


def evaluate_dvh_rule(rule: DvhRule, ctx: CheckContext) -> list[Finding]:
    if not ctx.courses:
        return [not_evaluated(rule, "the export has no course with a dose")]
    if rule.target is not None:
        subjects = target_subjects(rule, ctx, rule.target)
        if not subjects:
            return [no_target_found(rule, rule.target)]
        return per_target(rule, subjects, rule.target,
                          lambda roi, course, group: _evaluate_subject(rule, ctx, _Subject(roi, roi.name), [course], course))
    if rule.course == "composite":
        courses = list(ctx.courses)
        missing = ctx.declared_courses_left_out
        if missing:
            them = "it" if len(missing) == 1 else "them"
            return [not_evaluated(rule, f"the case file declares {', '.join(missing)} as course(s) of this treatment, "
                                        f"but this check leaves {them} out: a limit on the whole treatment is not "
                                        "graded on part of it (check every course, or list only the checked ones in "
                                        "the case file)")]
        outside = ctx.courses_outside
        if outside:
            return [not_evaluated(rule, f"the patient also has plan(s) {', '.join(outside)} in another frame of "
                                        "reference (another image set), whose dose plancheck cannot add to this "
                                        "treatment's: a limit on the whole treatment is not graded on part of it "
                                        "(declare the courses in the case file if those plans are not part of it)")]
        # a plan of several fraction groups (e.g. a primary and an SBRT boost) is several courses in one
        if rule.when == "several_courses" and len(courses) < 2 and (
                not courses or len(courses[0].course.plan.dose_fraction_groups) < 2):
            raise RuleNotApplicable("one course: this limit applies to the sum of several courses")
        subject = _found(rule, ctx)
        if subject.roi is None:
            return [not_evaluated(rule, subject.reason)]
        return [_evaluate_subject(rule, ctx, subject, courses, courses[0] if len(courses) == 1 else None)]
    chosen, unplaced = ctx.courses_matching(rule.course)
    if not chosen and not unplaced:
        raise RuleNotApplicable(f"no {rule.course} course in the export")
    subject = _found(rule, ctx)
    if subject.roi is None:
        return [not_evaluated(rule, subject.reason)]
    out = [_evaluate_subject(rule, ctx, subject, [c], c) for c in chosen]
    out += [not_evaluated(rule, f"{subject.roi.name} {rule.metric}: {c.placement}, so whether the {rule.course} "
                                f"limits apply is not known (declare the course in the case file)",
                          structures=(subject.roi.name,), courses=(c.label,)) for c in unplaced]
    return out


DVH_KIND = RuleKind(model=DvhRule, evaluate=evaluate_dvh_rule)
