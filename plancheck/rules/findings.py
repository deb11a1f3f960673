"""Findings: what one rule concluded about one plan (or course, or structure).

Statuses
--------
PASS            measured and within the per-protocol limit
WARN            measured and within the acceptable variation, outside per protocol
FAIL            measured and outside the acceptable variation (unacceptable deviation)
NOT_EVALUATED   could not be measured (missing structure, dose grid not covering it,
                no clinical context, unknown fractionation ...): never a pass
ERROR           the evaluator itself failed (a bug or an unexpected input); never a pass
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Status", "Provenance", "LimitBound", "AppliedLimit", "Measurement", "Finding", "worst_status"]


class Status(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    NOT_EVALUATED = "NOT_EVALUATED"
    ERROR = "ERROR"


_SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.NOT_EVALUATED: 2, Status.FAIL: 3, Status.ERROR: 4}


def worst_status(statuses: list[Status]) -> Status:
    """The most severe status (ERROR > FAIL > NOT_EVALUATED > WARN > PASS); PASS for none."""
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.PASS)


@dataclass(frozen=True)
class Provenance:
    """Where a rule and its thresholds come from.

    Attributes
    ----------
    source
        The document (e.g. the 2025 consensus, AAPM TG-101).
    section
        Section or table of that document.
    confidence
        ``consensus`` (stated by the consensus), ``companion`` (a document it
        builds on), ``provisional`` (common practice, to be confirmed) or
        ``institutional`` (set by a clinic's own protocol).
    protocol
        The protocol file that defined the rule, and any that overrode its
        values, e.g. ``"esophagus-oligomet-2025 (limits overridden by clinic-x)"``.
    """

    source: str
    section: str
    confidence: str
    protocol: str = ""


@dataclass(frozen=True)
class LimitBound:
    """One threshold of an applied limit.

    Attributes
    ----------
    side
        ``upper`` (the value must not exceed it) or ``lower`` (must not fall below it).
    value
        The threshold, in the limit's unit.
    tier
        ``per_protocol`` (beyond it: WARN or FAIL) or ``acceptable`` (the acceptable
        variation; beyond it: FAIL).
    """

    side: str
    value: float
    tier: str = "per_protocol"


@dataclass(frozen=True)
class AppliedLimit:
    """A limit as applied to a finding, as data (reports draw and print it from this).

    Attributes
    ----------
    unit
        Unit of the thresholds (``Gy``, ``%``, ``cc``, ``mm`` ...).
    bounds
        The thresholds (see :class:`LimitBound`).
    condition
        Empty for an unconditional limit; else the clinical condition under which it
        applies (e.g. ``concurrent systemic therapy``).
    applies
        ``True`` when the limit was applied to the grade; ``False`` for a conditional
        limit whose condition does not hold; ``None`` when the condition is not known.
    dose_basis
        The dose the limit is defined on (``physical``, ``EQD2 (α/β = 2 Gy)`` ...);
        empty where it is not a dose limit.
    note
        Where the values came from when not the rule's own table (e.g. the
        fraction-number row used).
    """

    unit: str
    bounds: tuple[LimitBound, ...]
    condition: str = ""
    applies: bool | None = True
    dose_basis: str = ""
    note: str = ""

    def side(self, side: str, tier: str) -> float | None:
        """The threshold of one side and tier, or None."""
        return next((b.value for b in self.bounds if b.side == side and b.tier == tier), None)

    def describe(self) -> str:
        """The thresholds in words: ``"≤ 45 Gy (acceptable ≤ 47 Gy)"``, ``"50–60 Gy (acceptable 40–66 Gy)"``."""
        u = f" {self.unit}" if self.unit else ""
        up, lo = self.side("upper", "per_protocol"), self.side("lower", "per_protocol")
        up_acc, lo_acc = self.side("upper", "acceptable"), self.side("lower", "acceptable")
        if up is not None and lo is not None:
            text = f"{lo:g}–{up:g}{u}"
            if lo_acc is not None or up_acc is not None:
                text += f" (acceptable {lo if lo_acc is None else lo_acc:g}–{up if up_acc is None else up_acc:g}{u})"
            return text
        if up is None and lo is None:
            return ""
        sign, value, acceptable = ("≤", up, up_acc) if up is not None else ("≥", lo, lo_acc)
        text = f"{sign} {value:g}{u}"
        if acceptable is not None:
            text += f" (acceptable {sign} {acceptable:g}{u})"
        return text


@dataclass(frozen=True)
class Measurement:
    """One measured value of a finding on one dose basis.

    A rule graded on several bases (e.g. the physical-dose sum and the composite
    EQD2 of several courses) has one measurement per basis; the finding's status is
    the worst of theirs.

    Attributes
    ----------
    basis
        What was measured, e.g. ``physical dose (sum of C1, C2)`` or
        ``EQD2 (α/β = 2 Gy), voxel-wise composite of C1, C2``.
    value
        The value in ``unit``; None when only bounds are known or nothing could be measured.
    unit
        Unit of ``value``.
    status
        The grade of this measurement against the finding's limits.
    lower, upper
        Bounds of the value when part of the structure has unknown dose (else equal to value).
    reason
        Why the value is missing or only bounded.
    """

    basis: str
    value: float | None
    unit: str
    status: "Status"
    lower: float | None = None
    upper: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Finding:
    """The result of one rule on one subject.

    Attributes
    ----------
    rule_id, title, category
        The rule (category: definition, timing, dose, target, oar, integrity ...).
    status
        :class:`Status`.
    measured
        The measured value in ``unit`` (None when not measured).
    unit
        ``Gy``, ``%``, ``cc``, ``mm``, ``fx``, ``""`` ...
    limit
        The limit in words, e.g. ``"≤ 45 Gy (acceptable ≤ 47 Gy)"``.
    structures, courses
        What the finding is about (exported ROI names, course labels).
    provenance
        Source, section, confidence, protocol.
    message
        One line a dosimetrist understands.
    details
        JSON-friendly extras (metric, dose kind, α/β, bounds, how a name was matched ...).
    limits
        The limits as data (:class:`AppliedLimit`); ``limit`` is their text.
    measurements
        The measured values per dose basis (:class:`Measurement`) where a rule measures
        on more than one; ``measured`` is the one that decided the grade.
    """

    rule_id: str
    title: str
    category: str
    status: Status
    measured: float | None
    unit: str
    limit: str
    structures: tuple[str, ...]
    courses: tuple[str, ...]
    provenance: Provenance
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    limits: tuple[AppliedLimit, ...] = ()
    measurements: tuple[Measurement, ...] = ()
