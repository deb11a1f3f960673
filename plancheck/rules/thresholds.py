"""Grading a measured value against per-protocol / acceptable limits.

A limit has up to two sides. For an upper limit ``≤ P (acceptable ≤ A)``:
value ≤ P → PASS; P < value ≤ A → WARN; value > A → FAIL (no A: value > P → FAIL).
A lower limit mirrors it. With both sides the worse grade wins.

When a value is only known to lie in an interval ``[lower, upper]`` (part of a
structure outside the dose grid) the grade is given only if the whole interval
grades the same; otherwise the rule is NOT_EVALUATED.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, model_validator

from plancheck.rules.findings import AppliedLimit, LimitBound, Status, worst_status

__all__ = ["Bound", "Limits", "grade", "grade_interval"]


class Bound(BaseModel):
    """One side of a limit: the per-protocol value and, optionally, the acceptable variation."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    per_protocol: float
    acceptable: float | None = None


class Limits(BaseModel):
    """Upper and/or lower limit with a unit (``Gy``, ``%``, ``cc``, ``mm``, ``fx``, ``""``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    unit: str = ""
    upper: Bound | None = None
    lower: Bound | None = None
    source: str = ""
    """Where these values come from, when not from the rule's own provenance (e.g. the
    publication of one column of a fraction-number table)."""

    @model_validator(mode="after")
    def _check(self) -> Limits:
        if self.upper is None and self.lower is None:
            raise ValueError("a limit needs 'upper' and/or 'lower'")
        if self.upper and self.upper.acceptable is not None and self.upper.acceptable < self.upper.per_protocol:
            raise ValueError(f"upper.acceptable ({self.upper.acceptable:g}) must be ≥ upper.per_protocol ({self.upper.per_protocol:g})")
        if self.lower and self.lower.acceptable is not None and self.lower.acceptable > self.lower.per_protocol:
            raise ValueError(f"lower.acceptable ({self.lower.acceptable:g}) must be ≤ lower.per_protocol ({self.lower.per_protocol:g})")
        return self

    def applied(self, *, condition: str = "", applies: bool | None = True, dose_basis: str = "",
                note: str = "") -> AppliedLimit:
        """These limits as data for a finding (see :class:`plancheck.rules.findings.AppliedLimit`)."""
        bounds = []
        for side, bound in (("lower", self.lower), ("upper", self.upper)):
            if bound is not None:
                bounds.append(LimitBound(side, bound.per_protocol, "per_protocol"))
                if bound.acceptable is not None:
                    bounds.append(LimitBound(side, bound.acceptable, "acceptable"))
        return AppliedLimit(self.unit, tuple(bounds), condition, applies, dose_basis, note)

    def describe(self) -> str:
        """E.g. ``"≤ 45 Gy (acceptable ≤ 47 Gy)"`` or ``"50–60 Gy (acceptable 40–66 Gy)"``."""
        return self.applied().describe()


def _grade_side(value: float, bound: Bound, upper: bool) -> Status:
    ok = value <= bound.per_protocol if upper else value >= bound.per_protocol
    if ok:
        return Status.PASS
    if bound.acceptable is not None:
        within = value <= bound.acceptable if upper else value >= bound.acceptable
        if within:
            return Status.WARN
    return Status.FAIL


def grade(value: float, limits: Limits, tolerance: float = 1e-9) -> Status:
    """PASS / WARN / FAIL of a measured value (a tiny tolerance absorbs rounding)."""
    statuses = []
    if limits.upper is not None:
        statuses.append(_grade_side(value - tolerance, limits.upper, True))
    if limits.lower is not None:
        statuses.append(_grade_side(value + tolerance, limits.lower, False))
    return worst_status(statuses)


def grade_interval(lower: float | None, upper: float | None, limits: Limits) -> Status:
    """Grade of a value known only to lie in ``[lower, upper]``: the grade if every
    value of the interval grades the same (checked at its ends and at every
    limit value inside it), else NOT_EVALUATED."""
    if lower is None or upper is None or math.isnan(lower) or math.isnan(upper):
        return Status.NOT_EVALUATED
    hi = upper if math.isfinite(upper) else 1e300
    points = [lower, hi]
    for bound in (limits.upper, limits.lower):
        if bound is not None:
            points += [v for v in (bound.per_protocol, bound.acceptable) if v is not None and lower < v < hi]
    grades = {grade(v, limits) for v in points}
    return grades.pop() if len(grades) == 1 else Status.NOT_EVALUATED
