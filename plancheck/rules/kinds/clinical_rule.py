"""Rule kind ``clinical``: definition and timing rules checked from the case file (docs/clinical-basis.md, definition and timing).

DICOM does not say how many metastases a patient has, when they were found or what
systemic therapy came first; the case file does (:mod:`plancheck.model.case`). Without
a case file every clinical rule is NOT_EVALUATED; a field a check needs but the case
file lacks gives NOT_EVALUATED naming the field. Each rule names one ``check``; all
thresholds are fields of the protocol file::

    - id: DEF-SCC
      kind: clinical
      check: definition_count
      title: Oligometastatic definition, squamous cell carcinoma
      category: definition
      by_histology:
        squamous_cell_carcinoma: {max_lesions: 5, max_organs: 3, max_per_organ: 3}
      on_violation: fail
      provenance: {source: ..., section: "§1 DEF-SCC", confidence: consensus}

========================  ==================================================================
check                     fields (R = required)
========================  ==================================================================
definition_count          ``by_histology`` R: {squamous_cell_carcinoma | adenocarcinoma:
                          {max_lesions, max_organs, max_per_organ, or_max_node_stations}};
                          ``on_violation`` R. A histology absent from ``by_histology``:
                          not applicable; ``other``: NOT_EVALUATED. Lesion organs are
                          read with :mod:`plancheck.model.organs` (one vocabulary: which
                          spellings are non-regional lymph nodes).
lesions_treated           ``on_violation`` R
classification            ``synchronous_max_months`` R (ESTRO/EORTC: 6); ``on_violation`` R
                          (declared presentation contradicts the dates)
restaging                 ``modalities`` R (accepted restaging modalities, matched ignoring
                          case and punctuation: "PET/CT" matches "FDG-PET/CT");
                          ``max_days_before_rt`` (optional); ``on_violation`` R
systemic_before_rt        ``min_cycles``, ``max_cycles`` R; ``agents_any_of`` (optional:
                          one of these agents, e.g. the PD-1 inhibitors); ``on_violation`` R
disease_free_interval     ``min_months_for_upfront`` R (OMEC-4: 24); ``on_violation`` R
progression               ``by_histology`` R (as definition_count);
                          ``on_violation`` R (beyond the definition);
                          ``on_progression_within_definition`` R
========================  ==================================================================

``on_violation`` (and ``on_progression_within_definition``) is ``warn`` or ``fail``.

Case-file conventions used here: ``metastases`` lists the lesions being treated;
``restaging.new_lesions`` counts lesions found at restaging that are *not* in that list;
the first RT date is the earliest RT Plan Date of the export.

References
----------
Guckenberger M et al. Characterisation and classification of oligometastatic disease:
a European Society for Radiotherapy and Oncology and European Organisation for Research
and Treatment of Cancer consensus recommendation. Lancet Oncol 2020;21:e18–e28.
Kroese TE et al. Definition, diagnosis and treatment of oligometastatic oesophagogastric
cancer: a Delphi consensus study in Europe (OMEC-1/-4). Eur J Cancer 2022/2023.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from plancheck.model.case import Case, Lesion
from plancheck.model.organs import canonical_organ, is_non_regional_node
from plancheck.protocol.schema import StrictModel
from plancheck.rules.base import RuleNotApplicable, finding, not_evaluated
from plancheck.rules.checks import CheckKind, CheckRule
from plancheck.rules.context import CheckContext
from plancheck.rules.findings import Finding, Status

__all__ = [
    "ClinicalRule", "ClinicalCheck", "DefinitionCheck", "DefinitionLimits", "CLINICAL", "CLINICAL_KIND",
    "evaluate_clinical_rule", "NO_CASE_FILE",
    "DefinitionCount", "LesionsTreated", "Classification", "Restaging", "SystemicBeforeRt", "DiseaseFreeInterval", "Progression",
]

NO_CASE_FILE = "no case file (give --case or put case.yaml next to the export)"

_DAYS_PER_MONTH = 365.25 / 12

Histology = Literal["squamous_cell_carcinoma", "adenocarcinoma"]
OnViolation = Literal["warn", "fail"]


class DefinitionLimits(StrictModel):
    """Counts of the oligometastatic definition for one histology.

    Within the definition when every given maximum holds (organ-based), or — with
    ``or_max_node_stations`` — when the disease is confined to extra-regional lymph
    nodes in at most that many stations (the OMEC alternative for adenocarcinoma).
    """

    max_lesions: int | None = Field(default=None, ge=0)
    max_organs: int | None = Field(default=None, ge=0)
    max_per_organ: int | None = Field(default=None, ge=0)
    or_max_node_stations: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DefinitionLimits:
        if all(v is None for v in (self.max_lesions, self.max_organs, self.max_per_organ)):
            raise ValueError("give at least one of max_lesions, max_organs, max_per_organ")
        return self


def _run_with_case(function, rule: ClinicalCheck, ctx: CheckContext) -> list[Finding]:
    """Every clinical check reads the case file: none makes the rule NOT_EVALUATED, a field the
    check needs but the case file lacks too (naming the field)."""
    case = ctx.case
    if case is None:
        return [not_evaluated(rule, NO_CASE_FILE)]
    try:
        result = function(rule, ctx, case)
    except _Missing as exc:
        where = f" ({ctx.case_source})" if ctx.case_source else ""
        return [not_evaluated(rule, f"the case file{where} does not give {exc.field}", details={"missing_field": exc.field})]
    except _NotEvaluated as exc:
        return [not_evaluated(rule, exc.reason)]
    if ctx.case_source:
        result.details.setdefault("case_file", ctx.case_source)
    return [result]


CLINICAL = CheckKind("clinical", run=_run_with_case)
"""The clinical checks: one model (each above its evaluator) and one function each."""

class ClinicalCheck(CheckRule):
    """Fields of every clinical rule: ``on_violation`` grades a breach (warn or fail)."""

    kind: Literal["clinical"]
    check_kind: ClassVar[CheckKind] = CLINICAL
    on_violation: OnViolation


class DefinitionCheck(ClinicalCheck):
    """A check against the oligometastatic definition, per histology."""

    by_histology: dict[Histology, DefinitionLimits]

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "nodal_organs" in data:
            raise ValueError("'nodal_organs' was removed: which lesion organs are extra-regional lymph nodes is "
                             "now one vocabulary for every rule (plancheck.model.organs: lymph_node, "
                             "non_regional_lymph_node, extra_regional_lymph_node, distant_lymph_node); delete the "
                             "field")
        return data

    @model_validator(mode="after")
    def _histologies(self) -> DefinitionCheck:
        if not self.by_histology:
            raise ValueError("by_histology needs at least one histology")
        return self


# ---------------------------------------------------------------------- helpers
_STATUS = {"warn": Status.WARN, "fail": Status.FAIL}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.casefold())


def _months(start: dt.date, end: dt.date) -> float:
    return (end - start).days / _DAYS_PER_MONTH


def _first_rt_date(ctx: CheckContext) -> dt.date | None:
    dates = []
    for c in ctx.export.courses:
        try:
            dates.append(dt.date.fromisoformat(c.plan.date))
        except ValueError:
            continue
    return min(dates) if dates else None


def _detection_date(case: Case) -> dt.date | None:
    dates = [m.detected_date for m in case.metastases or [] if m.detected_date is not None]
    return min(dates) if dates else None


_NODES = "extra-regional lymph nodes"
"""How the definition counts name the organ of non-regional lymph-node lesions."""


def _organ(lesion: Lesion) -> str:
    """The organ a lesion counts in (:mod:`plancheck.model.organs`: one vocabulary for every rule);
    a spelling that is not recognised counts as an organ of its own (never merged with another)."""
    if is_non_regional_node(lesion.organ):
        return _NODES
    return canonical_organ(lesion.organ) or lesion.organ.strip().casefold()


def _lesion_text(lesion: Lesion) -> str:
    return lesion.organ + (f" ({lesion.site})" if lesion.site else "") + (f" → {lesion.target}" if lesion.target else "")


def _definition_limits(rule: DefinitionCheck, case: Case) -> DefinitionLimits:
    """The limits for the case's histology, or NOT_EVALUATED / not applicable."""
    if case.histology is None:
        raise _Missing("histology")
    if case.histology == "other":
        raise _NotEvaluated("histology is 'other': the oligometastatic definition covers squamous cell carcinoma "
                            "and adenocarcinoma")
    limits = (rule.by_histology or {}).get(case.histology)  # type: ignore[call-overload]
    if limits is None:
        raise RuleNotApplicable(f"the rule is for {', '.join(rule.by_histology or {})}; the case is {case.histology}")
    return limits


def _within_definition(case: Case, limits: DefinitionLimits, extra_lesions: int = 0) -> tuple[bool | None, str, dict]:
    """Whether the declared disease (plus ``extra_lesions`` new ones) is within the definition:
    True, False, or None when it cannot be told (the message says why).

    Involved extra-regional node stations (``extra_regional_node_stations``) hold at least one
    lesion each (consensus §1 counts *lesions*; a station is where nodal lesions are, not one
    lesion). When ``metastases`` lists fewer nodal lesions than there are stations, the nodal
    lesions are counted at their lower bound (one per station): a breach is then certain, but
    a count within the limits is not (a station can hold several involved nodes), so it is
    None, never within.
    """
    if case.metastases is None:
        raise _Missing("metastases")
    per_organ: dict[str, int] = {}
    for lesion in case.metastases:
        organ = _organ(lesion)
        per_organ[organ] = per_organ.get(organ, 0) + 1
    stations = case.extra_regional_node_stations
    listed_nodes = per_organ.get(_NODES, 0)
    unlisted_nodes = max(0, (stations or 0) - listed_nodes)  # at least one lesion per station
    if unlisted_nodes:
        per_organ[_NODES] = listed_nodes + unlisted_nodes
    n_lesions = len(case.metastases) + unlisted_nodes + extra_lesions
    counts = {"lesions": n_lesions, "organs": len(per_organ), "per_organ": per_organ,
              "extra_regional_node_stations": stations, "nodal_lesions_listed": listed_nodes,
              "lesion_count_is_lower_bound": bool(unlisted_nodes)}
    at_least = "at least " if unlisted_nodes else ""
    shown = (f"{at_least}{n_lesions} lesion(s)" + (f" ({extra_lesions} new at restaging)" if extra_lesions else "")
             + f" in {len(per_organ)} organ(s) (" + ", ".join(f"{o}: {n}" for o, n in per_organ.items()) + ")")
    if unlisted_nodes:
        shown += (f"; {stations} involved extra-regional node station(s) and {listed_nodes} nodal lesion(s) listed in "
                  f"metastases: each station counted as at least one lesion")
    breaches = []
    if limits.or_max_node_stations is not None and set(per_organ) == {_NODES}:
        # nodal-only disease: the station count decides (OMEC)
        if stations is None:
            raise _Missing("extra_regional_node_stations")
        if stations <= limits.or_max_node_stations and not extra_lesions:
            return True, f"{shown}: nodal disease in {stations} extra-regional station(s) (≤ {limits.or_max_node_stations})", counts
        breaches.append(f"nodal disease in {stations} extra-regional station(s)"
                        + (f" and {extra_lesions} new lesion(s)" if extra_lesions else "")
                        + f" (≤ {limits.or_max_node_stations} station(s) allowed)")
        return False, f"{shown}: {'; '.join(breaches)}", counts
    if limits.max_lesions is not None and n_lesions > limits.max_lesions:
        breaches.append(f"more than {limits.max_lesions} lesions")
    if limits.max_organs is not None and len(per_organ) > limits.max_organs:
        breaches.append(f"more than {limits.max_organs} organ(s)")
    if limits.max_per_organ is not None:
        over = [o for o, n in per_organ.items() if o != _NODES and n > limits.max_per_organ]
        if over:
            breaches.append(f"more than {limits.max_per_organ} in {', '.join(over)}")
    if breaches:
        return False, f"{shown}: {'; '.join(breaches)}", counts
    if unlisted_nodes:
        return None, (f"{shown}, so the number of lesions is not known (a station can hold several involved nodes); "
                      "list every nodal lesion in metastases (organ: non_regional_lymph_node)"), counts
    return True, shown, counts


def _describe_limits(limits: DefinitionLimits) -> str:
    parts = []
    if limits.max_lesions is not None:
        parts.append(f"≤ {limits.max_lesions} lesions")
    if limits.max_organs is not None:
        parts.append(f"≤ {limits.max_organs} organ(s)")
    if limits.max_per_organ is not None:
        parts.append(f"≤ {limits.max_per_organ} per organ")
    text = ", ".join(parts)
    if limits.or_max_node_stations is not None:
        text += f", or ≤ {limits.or_max_node_stations} extra-regional node station(s)"
    return text


class _Missing(Exception):
    """A case-file field the check needs is missing."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(field)


class _NotEvaluated(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _presentation(case: Case, max_months: float | None) -> tuple[str | None, str]:
    """Presentation derived from the dates when possible, else declared."""
    diagnosis = case.primary.diagnosis_date if case.primary else None
    detected = _detection_date(case)
    if diagnosis is not None and detected is not None and max_months is not None:
        months = _months(diagnosis, detected)
        derived = "synchronous" if months <= max_months else "metachronous"
        return derived, f"{derived} (metastasis found {months:.1f} months after the primary diagnosis)"
    if case.presentation is not None:
        return case.presentation, f"{case.presentation} (declared)"
    return None, ""


# ---------------------------------------------------------------------- checks
class DefinitionCount(DefinitionCheck):
    """The declared metastases are within the definition (lesions, organs, per organ)."""

    check: Literal["definition_count"]


@CLINICAL.evaluator(DefinitionCount)
def _definition_count(rule: DefinitionCount, ctx: CheckContext, case: Case) -> Finding:
    limits = _definition_limits(rule, case)
    if case.metastases is not None and not case.metastases:
        return not_evaluated(rule, "the case file declares no metastasis (metastases: [])")
    within, shown, counts = _within_definition(case, limits)
    limit = _describe_limits(limits)
    label = case.histology.replace("_", " ")  # type: ignore[union-attr]
    if within is None:
        return not_evaluated(rule, f"{shown} ({limit})", limit=limit, details=counts)
    if within:
        return finding(rule, Status.PASS, f"{shown}: within the oligometastatic definition for {label} ({limit})",
                       measured=float(counts["lesions"]), unit="lesions", limit=limit, details=counts)
    return finding(rule, _STATUS[rule.on_violation], f"{shown}: no longer oligometastatic by the definition for {label} ({limit})",
                   measured=float(counts["lesions"]), unit="lesions", limit=limit, details=counts)


class LesionsTreated(ClinicalCheck):
    """Every declared metastasis names a target that is in the structure set."""

    check: Literal["lesions_treated"]


@CLINICAL.evaluator(LesionsTreated)
def _lesions_treated(rule: LesionsTreated, ctx: CheckContext, case: Case) -> Finding:
    if case.metastases is None:
        raise _Missing("metastases")
    if not case.metastases:
        raise RuleNotApplicable("the case file declares no metastasis")
    untreated, treated, unmeasurable = [], [], []
    for lesion in case.metastases:
        text = _lesion_text(lesion)
        if not lesion.target:
            untreated.append(f"{text}: no target declared")
            continue
        roi = ctx.roi_named(lesion.target)
        if roi is not None and roi.defects:  # read but not measurable (Roi.defects): never a PASS on it
            unmeasurable.append(f"{text}: {roi.defect_text}")
            continue
        if roi is None or roi.is_empty:
            untreated.append(f"{text}: {'no structure of that name' if roi is None else 'the structure has no contours'}")
            continue
        course = None
        for group in ctx.targets:
            if any(r.name == roi.name for r in group.volumes.values()) and group.course is not None:
                course = group.course
                break
        if course is None:
            course = next((c for c in ctx.courses for ref in c.course.plan.target_prescriptions
                           if ref.referenced_roi_number == roi.number), None)
        if course is None or not course.prescription_gy:
            untreated.append(f"{text}: no course with a prescription treats it")
            continue
        treated.append(f"{text} by {course.label} ({course.prescription_gy:g} Gy)")
    structures = tuple(m.target for m in case.metastases if m.target)
    details = {"treated": treated, "untreated": untreated}
    if unmeasurable and not untreated:
        return not_evaluated(rule, "; ".join(unmeasurable), structures=structures, details=details)
    if untreated:
        return finding(rule, _STATUS[rule.on_violation], f"{len(untreated)} of {len(case.metastases)} declared lesion(s) "
                       f"not treated: {'; '.join(untreated)}", structures=structures, details=details)
    return finding(rule, Status.PASS, f"all {len(treated)} declared lesion(s) treated: {'; '.join(treated)}",
                   structures=structures, details=details)


class Classification(ClinicalCheck):
    """The declared presentation (synchronous / metachronous) agrees with the dates."""

    check: Literal["classification"]
    synchronous_max_months: float = Field(gt=0)


@CLINICAL.evaluator(Classification)
def _classification(rule: Classification, ctx: CheckContext, case: Case) -> Finding:
    derived, how = _presentation(case, rule.synchronous_max_months)
    details: dict = {"derived_presentation": derived, "declared_presentation": case.presentation,
                     "omd_type": case.omd_type}
    contradiction = ""
    if derived is not None and case.presentation is not None and derived != case.presentation and "declared" not in how:
        contradiction = (f"the case file declares {case.presentation} but the dates give {how} "
                         f"(synchronous: ≤ {rule.synchronous_max_months:g} months)")
    if derived is None:
        missing = "presentation (or primary.diagnosis_date and metastases[].detected_date)"
        return not_evaluated(rule, f"classification undeterminable: case-file field {missing} missing", details=details)
    if case.omd_type is None:
        reason = f"presentation {how}; de novo / repeat / induced unknown: case-file field omd_type missing"
        if contradiction:
            return finding(rule, _STATUS[rule.on_violation], contradiction + "; " + reason, details=details)
        return not_evaluated(rule, reason, details=details)
    omd = case.omd_type.replace("_", " ")
    if case.omd_type == "de_novo" and derived == "synchronous":
        cls = "de novo synchronous oligometastatic disease"
    else:
        sub, why = _metachronous_subclass(case)
        if sub is None:
            text = f"{omd} {derived} oligometastatic disease; {why}"
            if contradiction:
                return finding(rule, _STATUS[rule.on_violation], contradiction + "; " + text, details=details)
            return not_evaluated(rule, f"subclass undeterminable: {text}", details=details)
        prefix = "metachronous" if case.omd_type == "de_novo" else omd
        cls = f"{prefix} {sub}"
        how += f"; {why}"
    details["class"] = cls
    if contradiction:
        return finding(rule, _STATUS[rule.on_violation], f"{contradiction}; class: {cls}", details=details)
    return finding(rule, Status.PASS, f"class (ESTRO/EORTC 2020): {cls} — {how}", details=details)


def _metachronous_subclass(case: Case) -> tuple[str | None, str]:
    """oligorecurrence / oligoprogression / oligopersistence from the systemic therapy at detection."""
    therapy = case.systemic_therapy
    detected = _detection_date(case)
    if therapy is None:
        return None, "case-file field systemic_therapy missing (active therapy at detection unknown)"
    if not therapy.cycles and therapy.start_date is None:
        return "oligorecurrence", "no systemic therapy"
    if detected is None or therapy.start_date is None:
        return None, "case-file field metastases[].detected_date or systemic_therapy.start_date missing"
    ended = therapy.end_date is not None and therapy.end_date < detected
    if detected < therapy.start_date or ended:
        return "oligorecurrence", "no active systemic therapy when the metastases were found"
    progressing = (case.restaging is not None and case.restaging.progression) or therapy.response_at_restaging == "PD"
    if progressing:
        return "oligoprogression", "progression on active systemic therapy"
    if therapy.response_at_restaging is None and (case.restaging is None or case.restaging.progression is None):
        return None, "case-file field systemic_therapy.response_at_restaging or restaging.progression missing"
    return "oligopersistence", "lesions persisting on active systemic therapy without progression"


class Restaging(ClinicalCheck):
    """Restaging before RT with an accepted modality (``max_days_before_rt`` before the first RT date)."""

    check: Literal["restaging"]
    modalities: list[str]
    max_days_before_rt: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some_modality(self) -> Restaging:
        if not [m for m in self.modalities if _norm(m)]:
            raise ValueError("modalities needs at least one modality, e.g. 'PET/CT'")
        return self


@CLINICAL.evaluator(Restaging)
def _restaging(rule: Restaging, ctx: CheckContext, case: Case) -> Finding:
    r = case.restaging
    if r is None:
        raise _Missing("restaging")
    if not r.modality:
        raise _Missing("restaging.modality")
    if r.date is None:
        raise _Missing("restaging.date")
    problems, unknown = [], []
    wanted = [_norm(m) for m in rule.modalities or []]
    if not any(w and w in _norm(r.modality) for w in wanted):
        problems.append(f"restaging by {r.modality}, not {' or '.join(rule.modalities or [])}")
    therapy = case.systemic_therapy
    if therapy is not None and therapy.end_date is not None and r.date < therapy.end_date:
        problems.append(f"restaging ({r.date}) before the end of systemic therapy ({therapy.end_date})")
    elif therapy is None:
        unknown.append("systemic_therapy")
    elif therapy.end_date is None and therapy.cycles:
        unknown.append("systemic_therapy.end_date")
    rt = _first_rt_date(ctx)
    if rt is None:
        unknown.append("RT Plan Date (300A,0006)")
    else:
        if r.date > rt:
            problems.append(f"restaging ({r.date}) after the first RT plan date ({rt})")
        elif rule.max_days_before_rt is not None and (rt - r.date).days > rule.max_days_before_rt:
            problems.append(f"restaging {(rt - r.date).days} days before RT (> {rule.max_days_before_rt} days)")
    details = {"modality": r.modality, "date": str(r.date), "first_rt_date": str(rt) if rt else None,
               "brain_imaging": r.brain_imaging}
    if problems:
        return finding(rule, _STATUS[rule.on_violation], "; ".join(problems), details=details)
    if unknown:
        return not_evaluated(rule, f"restaging by {r.modality} on {r.date}: case-file/plan field(s) {', '.join(unknown)} missing",
                             details=details)
    days = f", {(rt - r.date).days} days before the first RT plan" if rt else ""
    end = f" after systemic therapy ended ({therapy.end_date})" if therapy and therapy.end_date else ""
    return finding(rule, Status.PASS, f"restaging by {r.modality} on {r.date}{end}{days}", details=details)


class SystemicBeforeRt(ClinicalCheck):
    """Systemic therapy before RT: cycles within [min_cycles, max_cycles], an agent of ``agents_any_of``."""

    check: Literal["systemic_before_rt"]
    min_cycles: int = Field(ge=0)
    max_cycles: int = Field(ge=0)
    agents_any_of: list[str] | None = None

    @model_validator(mode="after")
    def _cycles(self) -> SystemicBeforeRt:
        if self.min_cycles > self.max_cycles:
            raise ValueError(f"min_cycles ({self.min_cycles}) must be ≤ max_cycles ({self.max_cycles})")
        return self


@CLINICAL.evaluator(SystemicBeforeRt)
def _systemic_before_rt(rule: SystemicBeforeRt, ctx: CheckContext, case: Case) -> Finding:
    if case.presentation is None:
        raise _Missing("presentation")
    if case.presentation != "synchronous":
        raise RuleNotApplicable(f"presentation is {case.presentation}; the rule is for synchronous OMD")
    therapy = case.systemic_therapy
    if therapy is None:
        raise _Missing("systemic_therapy")
    problems, unknown = [], []
    limit = f"{rule.min_cycles}–{rule.max_cycles} cycles before RT, no progression at restaging"
    if therapy.cycles is None:
        unknown.append("systemic_therapy.cycles")
    elif not rule.min_cycles <= therapy.cycles <= rule.max_cycles:
        problems.append(f"{therapy.cycles} cycle(s) of systemic therapy, expected {rule.min_cycles}–{rule.max_cycles}")
    if rule.agents_any_of:
        wanted = {_norm(a) for a in rule.agents_any_of}
        if not therapy.agents:
            unknown.append("systemic_therapy.agents")
        elif not wanted & {_norm(a) for a in therapy.agents}:
            problems.append(f"agents {', '.join(therapy.agents)} include none of {', '.join(rule.agents_any_of)}")
    rt = _first_rt_date(ctx)
    if therapy.end_date is not None and rt is not None and therapy.end_date > rt:
        problems.append(f"systemic therapy ended {therapy.end_date}, after the first RT plan date {rt}")
    progression = case.restaging.progression if case.restaging else None
    if progression or therapy.response_at_restaging == "PD":
        problems.append("progression at restaging")
    elif progression is None and therapy.response_at_restaging is None:
        unknown.append("restaging.progression")
    details = {"cycles": therapy.cycles, "agents": therapy.agents, "response": therapy.response_at_restaging}
    if problems:
        return finding(rule, _STATUS[rule.on_violation], "; ".join(problems), measured=therapy.cycles, unit="cycles",
                       limit=limit, details=details)
    if unknown:
        return not_evaluated(rule, f"case-file field(s) {', '.join(unknown)} missing", measured=therapy.cycles,
                             unit="cycles", limit=limit, details=details)
    response = f", response {therapy.response_at_restaging}" if therapy.response_at_restaging else ""
    return finding(rule, Status.PASS, f"{therapy.cycles} cycles of {', '.join(therapy.agents) or 'systemic therapy'} "
                   f"before RT{response}, no progression at restaging", measured=therapy.cycles, unit="cycles",
                   limit=limit, details=details)


class DiseaseFreeInterval(ClinicalCheck):
    """Metachronous disease: upfront local therapy only after ``min_months_for_upfront`` disease-free months."""

    check: Literal["disease_free_interval"]
    min_months_for_upfront: float = Field(ge=0)


@CLINICAL.evaluator(DiseaseFreeInterval)
def _disease_free_interval(rule: DiseaseFreeInterval, ctx: CheckContext, case: Case) -> Finding:
    if case.presentation is None:
        raise _Missing("presentation")
    if case.presentation != "metachronous":
        raise RuleNotApplicable(f"presentation is {case.presentation}; the rule is for metachronous OMD")
    dfi, how = case.disease_free_interval_months, "declared"
    if dfi is None:
        end = case.primary.treatment_end_date if case.primary else None
        detected = _detection_date(case)
        if end is None or detected is None:
            raise _Missing("disease_free_interval_months (or primary.treatment_end_date and metastases[].detected_date)")
        dfi, how = _months(end, detected), "from primary.treatment_end_date to the first detected metastasis"
    limit = f"> {rule.min_months_for_upfront:g} months for upfront local treatment, else systemic therapy first"
    if dfi > rule.min_months_for_upfront:
        return finding(rule, Status.PASS, f"disease-free interval {dfi:.1f} months ({how}): upfront local treatment acceptable",
                       measured=dfi, unit="months", limit=limit)
    therapy = case.systemic_therapy
    if therapy is None:
        raise _Missing("systemic_therapy")
    rt = _first_rt_date(ctx)
    given_first = bool(therapy.cycles) and (therapy.start_date is None or rt is None or therapy.start_date < rt)
    if given_first:
        return finding(rule, Status.PASS, f"disease-free interval {dfi:.1f} months ({how}) and systemic therapy given first "
                       f"({therapy.cycles} cycles)", measured=dfi, unit="months", limit=limit)
    return finding(rule, _STATUS[rule.on_violation], f"disease-free interval {dfi:.1f} months ({how}) ≤ "
                   f"{rule.min_months_for_upfront:g} and no systemic therapy before RT", measured=dfi, unit="months", limit=limit)


class Progression(DefinitionCheck):
    """Progression at restaging: beyond the definition (``on_violation``) or within it
    (``on_progression_within_definition``)."""

    check: Literal["progression"]
    on_progression_within_definition: OnViolation


@CLINICAL.evaluator(Progression)
def _progression(rule: Progression, ctx: CheckContext, case: Case) -> Finding:
    if case.intent is None:
        raise _Missing("intent")
    if case.intent != "curative":
        raise RuleNotApplicable(f"intent is {case.intent}; the rule restricts curative-intent radiotherapy")
    r = case.restaging
    if r is None:
        raise _Missing("restaging")
    response = case.systemic_therapy.response_at_restaging if case.systemic_therapy else None
    progressed = r.progression or response == "PD" or bool(r.new_lesions)
    if not progressed:
        if r.progression is None and r.new_lesions is None and response is None:
            raise _Missing("restaging.progression")
        return finding(rule, Status.PASS, "no progression and no new lesion at restaging", measured=0.0, unit="new lesions")
    limits = _definition_limits(rule, case)
    within, shown, counts = _within_definition(case, limits, r.new_lesions or 0)
    limit = _describe_limits(limits)
    if within is None:
        return not_evaluated(rule, f"progression at restaging; whether it is beyond the definition is not known: {shown} "
                             f"({limit})", limit=limit, details=counts)
    if within:
        return finding(rule, _STATUS[rule.on_progression_within_definition],
                       f"progression at restaging, still within the definition: {shown} ({limit}); curative intent "
                       "needs confirmation", measured=float(r.new_lesions or 0), unit="new lesions", limit=limit, details=counts)
    return finding(rule, _STATUS[rule.on_violation], f"progression at restaging beyond the definition: {shown} ({limit}): "
                   "no longer oligometastatic, curative-intent radiotherapy is not per protocol",
                   measured=float(r.new_lesions or 0), unit="new lesions", limit=limit, details=counts)


ClinicalRule = CLINICAL.union()
"""A clinical rule: one of the check models above, chosen by ``check``."""

evaluate_clinical_rule = CLINICAL.evaluate
"""Evaluate one clinical rule from the case file (one finding)."""

CLINICAL_KIND = CLINICAL.rule_kind()
