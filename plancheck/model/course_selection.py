"""Which plans of a patient's treatment are its courses: selections, and alternatives told from courses.

A *treatment* is every plan of one patient in one frame of reference; its *courses* are the
plans that are delivered one after the other and whose doses add up ("composite" rules sum
them). Exports often hold plans that are not courses: **alternative plans** of one case
(a VMAT and an IMRT plan of the same targets, of which one will be chosen). Summing them
would double the dose, so plancheck tells them apart and never sums alternatives silently.

Alternatives
------------
Two plans are *alternatives* of one another when they

* reference the **same structure set**, and
* prescribe to the **same target ROIs** (the ROIs of their TARGET dose references, DICOM
  PS3.3 C.8.8.10), a non-empty set.

A sequential boost (phase 2 to a smaller PTV) or a second course to another lesion has other
targets and stays a course. Plans with the same targets on *another* structure set (a
re-plan on a new CT) are not called alternatives: nothing in the files says whether the
first one was delivered. Approval status (300E,0002) and plan dates are shown to the user
with every decision; a ``REJECTED`` plan that is an alternative of a plan that is not
rejected is left out (it will not be delivered). Plans whose dose references name no
target ROI cannot be told apart: they are summed as courses, and when several share a
structure set the report says that plancheck could not tell.

Selections
----------
``--plan LABEL|UID`` (repeatable) or the case file's ``courses:`` list name the courses
explicitly (:class:`PlanSelection`); the other plans are left out, each with the reason.

Without a selection, alternatives are handled by the caller's policy (:func:`choose_courses`):
``refuse`` (``plancheck check``: exit 3 naming the plans and how to select), ``variants``
(``batch``, ``serve``, ``watch``: each alternative checked as its own treatment with the other
courses, one report each), or ``keep`` (per-plan views that sum nothing: ``dvh`` without
``--composite``, ``fractionation``).

This module is pure Python (no DICOM): the DICOM layer describes plans as :class:`PlanFacts`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from plancheck.errors import LinkError, ProtocolError, UsageError

__all__ = [
    "PlanFacts", "PlanSelection", "LeftOutPlan", "CourseChoice", "AlternativesPolicy", "MAX_VARIANTS",
    "alternative_groups", "choose_courses", "selection_from",
]

AlternativesPolicy = Literal["refuse", "variants", "keep"]

#: Most combinations of alternatives checked as separate treatments (``variants``).
MAX_VARIANTS = 8


@dataclass(frozen=True)
class PlanFacts:
    """What course selection needs to know about one RT Plan.

    Attributes
    ----------
    uid
        SOP Instance UID.
    label
        RT Plan Label (300A,0002) ("" when absent).
    approval_status
        ``APPROVED``, ``UNAPPROVED``, ``REJECTED`` or "".
    date
        RT Plan Date as written ("" when absent).
    structure_set_uid
        The structure set it references ("" when none).
    target_rois
        ROI numbers of its TARGET dose references.
    target_names
        Names of those ROIs, for messages (may be empty when the structure set is unknown).
    """

    uid: str
    label: str = ""
    approval_status: str = ""
    date: str = ""
    structure_set_uid: str = ""
    target_rois: frozenset[int] = frozenset()
    target_names: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        """How messages name the plan: its label, else its UID."""
        return self.label or self.uid

    @property
    def status_text(self) -> str:
        """``UNAPPROVED, 2025-01-06`` (what the user needs to choose)."""
        parts = [self.approval_status or "approval status not stated"]
        if self.date:
            parts.append(f"dated {self.date}")
        return ", ".join(parts)

    @property
    def targets_text(self) -> str:
        if self.target_names:
            return ", ".join(self.target_names)
        return "ROI " + ", ".join(str(n) for n in sorted(self.target_rois))


@dataclass(frozen=True)
class PlanSelection:
    """Plans named as the courses of a treatment.

    Attributes
    ----------
    plans
        RT Plan Labels or SOP Instance UIDs.
    source
        Who named them, for messages: ``"--plan"``, ``"the case file's courses"``.
    path
        The case file, when the selection comes from one (errors name it).
    reasons
        ``(uid, reason)`` for plans left out, when the caller knows better than "not
        selected" (e.g. "alternative of X, checked in its own report").
    missing_ok
        A name that matches no plan is not an error (``batch --plan`` over many treatments).
    """

    plans: tuple[str, ...]
    source: str = "--plan"
    path: str | None = None
    reasons: tuple[tuple[str, str], ...] = ()
    missing_ok: bool = False

    def _error(self, message: str) -> Exception:
        if self.path:
            return ProtocolError(f"{self.source}: {message}", self.path)
        return UsageError(f"{self.source}: {message}")


def selection_from(plans: Sequence[str], declared: Sequence[str] | None, case_source: str | None
                   ) -> PlanSelection | None:
    """The courses to check: ``plans`` (``--plan``) if given, else the plans the case file
    ``case_source`` declares under ``courses:`` (``declared``), else None (every plan)."""
    if plans:
        return PlanSelection(tuple(plans), "--plan")
    if declared:
        return PlanSelection(tuple(declared), "the case file's 'courses:' list", path=case_source)
    return None


@dataclass(frozen=True)
class LeftOutPlan:
    """A plan of the treatment that is not one of its courses, and why.

    ``outside``: a plan of the same patient outside the treatment (in another frame of
    reference, i.e. planned on another image set), whose dose plancheck cannot add to the
    treatment's: a limit on the whole treatment is then not graded (unless the case file
    declares the courses). ``structure_set_uid`` and ``target_rois`` (the ROI numbers of its
    TARGET dose references): the targets this plan treats, which the check's target rules
    leave to the plan's own check.
    """

    uid: str
    label: str
    reason: str
    outside: bool = False
    structure_set_uid: str = ""
    target_rois: frozenset[int] = frozenset()

    @property
    def shown(self) -> str:
        return self.label or self.uid

    def describe(self) -> str:
        return f"plan {self.shown} is not a course of this check: {self.reason}"


@dataclass(frozen=True)
class CourseChoice:
    """The plans checked together as the courses of one treatment.

    Attributes
    ----------
    courses
        SOP Instance UIDs of the courses, in input order.
    left_out
        The other plans, each with its reason.
    notes
        What the user should know about the choice (e.g. plans plancheck could not tell
        apart); reports show them as warnings.
    variant
        0 for the only choice; 1, 2, ... for one of several combinations of alternatives.
    """

    courses: tuple[str, ...]
    left_out: tuple[LeftOutPlan, ...] = ()
    notes: tuple[str, ...] = ()
    variant: int = 0

    def as_selection(self, source: str) -> PlanSelection:
        """This choice as an explicit selection (what a batch worker is given)."""
        return PlanSelection(self.courses, source, reasons=tuple((p.uid, p.reason) for p in self.left_out))


def _same_case(a: PlanFacts, b: PlanFacts) -> bool:
    return bool(a.structure_set_uid and a.structure_set_uid == b.structure_set_uid
                and a.target_rois and a.target_rois == b.target_rois)


def alternative_groups(plans: Sequence[PlanFacts]) -> list[list[PlanFacts]]:
    """Groups of two or more plans that are alternatives of one another (same structure set,
    same non-empty set of target ROIs), in input order."""
    groups: list[list[PlanFacts]] = []
    for plan in plans:
        for group in groups:
            if _same_case(group[0], plan):
                group.append(plan)
                break
        else:
            groups.append([plan])
    return [g for g in groups if len(g) > 1]


def _resolve(selection: PlanSelection, plans: Sequence[PlanFacts]) -> list[PlanFacts]:
    chosen: list[PlanFacts] = []
    available = ", ".join(p.shown for p in plans)
    for name in selection.plans:
        by_uid = [p for p in plans if p.uid == name]
        matches = by_uid or [p for p in plans if p.label == name]
        if not matches:
            if selection.missing_ok:
                continue
            raise selection._error(f"no plan has the label or SOP Instance UID {name!r} (plans: {available})")
        if len(matches) > 1:
            raise selection._error(f"{len(matches)} plans have the label {name!r}; name one by its SOP Instance "
                                   "UID: " + ", ".join(p.uid for p in matches))
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _alternatives_text(group: Iterable[PlanFacts]) -> str:
    group = list(group)
    listed = "; ".join(f"{p.shown} ({p.status_text})" for p in group)
    return (f"plans {listed} are alternatives of one another: same structure set, same target(s) "
            f"{group[0].targets_text}")


def _undecidable_note(plans: Sequence[PlanFacts]) -> list[str]:
    by_rtss: dict[str, list[PlanFacts]] = {}
    for p in plans:
        if p.structure_set_uid:
            by_rtss.setdefault(p.structure_set_uid, []).append(p)
    notes = []
    for same in by_rtss.values():
        if len(same) > 1 and any(not p.target_rois for p in same):
            notes.append(
                "plans " + ", ".join(p.shown for p in same) + " share a structure set and not all name a target "
                "ROI in their dose references, so plancheck cannot tell courses from alternative plans: they are "
                "summed as courses; if they are alternatives, select the courses with --plan or the case file's "
                "'courses:' list")
    return notes


def choose_courses(plans: Sequence[PlanFacts], selection: PlanSelection | None = None, *,
                   alternatives: AlternativesPolicy = "refuse", max_variants: int = MAX_VARIANTS) -> list[CourseChoice]:
    """The course set(s) to check among a treatment's plans.

    Parameters
    ----------
    plans
        Every plan of the treatment, in input order.
    selection
        Plans named as the courses (``--plan``, the case file); the others are left out.
    alternatives
        What to do, without a selection, with plans that are alternatives of one another
        (see the module docstring): ``refuse``, ``variants`` or ``keep``.
    max_variants
        ``variants``: most combinations checked; more is an error asking for a selection.

    Returns
    -------
    list of CourseChoice
        One choice, or (``variants``) one per combination of alternatives; empty when a
        ``missing_ok`` selection names none of the plans.

    Raises
    ------
    UsageError, ProtocolError
        The selection names a plan that is not there, or a label several plans share
        (ProtocolError naming the case file when it comes from one).
    LinkError
        ``refuse``: plans are alternatives of one another; ``variants``: more than
        ``max_variants`` combinations.
    """
    if selection is not None:
        chosen = _resolve(selection, plans)
        if not chosen:
            return []
        reasons = dict(selection.reasons)
        left_out = tuple(LeftOutPlan(p.uid, p.label, reasons.get(p.uid, f"not selected by {selection.source}"),
                                     structure_set_uid=p.structure_set_uid, target_rois=p.target_rois)
                         for p in plans if p not in chosen)
        notes = [f"{_alternatives_text(g)}; they are summed as courses because {selection.source} names them all"
                 for g in alternative_groups(chosen)]
        ordered = tuple(p.uid for p in plans if p in chosen)
        return [CourseChoice(ordered, left_out, tuple(notes))]

    left_out: list[LeftOutPlan] = []
    candidates = list(plans)
    for group in alternative_groups(plans):
        kept = [p for p in group if p.approval_status != "REJECTED"]
        if kept and len(kept) < len(group):
            for p in group:
                if p not in kept:
                    left_out.append(LeftOutPlan(p.uid, p.label, "approval status REJECTED, and it is an alternative "
                                                f"of {', '.join(k.shown for k in kept)} (same structure set, same "
                                                f"target(s) {p.targets_text})",
                                                structure_set_uid=p.structure_set_uid, target_rois=p.target_rois))
                    candidates.remove(p)
    groups = alternative_groups(candidates)
    notes = _undecidable_note(candidates)
    if not groups or alternatives == "keep":
        if groups:
            notes += [f"{_alternatives_text(g)}; shown side by side, never summed" for g in groups]
        return [CourseChoice(tuple(p.uid for p in candidates), tuple(left_out), tuple(notes))]
    if alternatives == "refuse":
        listed = " and ".join(_alternatives_text(g) for g in groups)
        raise LinkError(f"{listed}. plancheck does not sum alternative plans as courses; choose the courses with "
                        "--plan LABEL (repeatable) or list them under 'courses:' in the case file")
    combinations = list(itertools.product(*groups))
    if len(combinations) > max_variants:
        raise LinkError(f"{' and '.join(_alternatives_text(g) for g in groups)}: {len(combinations)} combinations, "
                        f"more than the {max_variants} plancheck checks one by one; list the courses under "
                        "'courses:' in the case file")
    in_groups = {p.uid for g in groups for p in g}
    choices = []
    for k, combination in enumerate(combinations, start=1):
        picked = {p.uid for p in combination}
        courses = tuple(p.uid for p in candidates if p.uid not in in_groups or p.uid in picked)
        extra = []
        for group, pick in zip(groups, combination):
            for p in group:
                if p.uid != pick.uid:
                    extra.append(LeftOutPlan(p.uid, p.label, f"alternative of {pick.shown} (same structure set, same "
                                             f"target(s) {p.targets_text}); checked in its own report"))
        note = (f"alternative plans: combination {k} of {len(combinations)} "
                f"({', '.join(p.shown for p in combination)}); " + "; ".join(_alternatives_text(g) for g in groups))
        choices.append(CourseChoice(courses, tuple(left_out) + tuple(extra), tuple(notes) + (note,), variant=k))
    return choices
