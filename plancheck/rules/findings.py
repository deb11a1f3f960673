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

__all__ = ["Status", "Provenance", "Finding", "worst_status"]


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
