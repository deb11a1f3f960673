"""Helpers every rule kind uses: building findings, saying a rule does not apply,
and the common target/course selectors of protocol files."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from plancheck.protocol.schema import RuleBase, StrictModel
from plancheck.rules.findings import AppliedLimit, Finding, Measurement, Provenance, Status

__all__ = ["RuleNotApplicable", "finding", "not_evaluated", "TargetSelector"]


class RuleNotApplicable(Exception):
    """Raised by an evaluator when its rule does not apply to this export (e.g. an
    SBRT constraint and no SBRT course). Reported as 'not applicable' with the
    reason, distinct from NOT_EVALUATED (which means: applies, but could not be measured)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TargetSelector(StrictModel):
    """Which target volumes a rule applies to.

    ``role``: primary, metastasis, nodal or any; ``volume``: GTV, ITV, CTV or PTV;
    ``regime``: restrict to targets whose course is SBRT or not (conventional).
    """

    role: Literal["primary", "metastasis", "nodal", "any"] = "any"
    volume: Literal["GTV", "ITV", "CTV", "PTV"] = "PTV"
    regime: Literal["any", "sbrt", "conventional"] = "any"


def finding(
    rule: RuleBase,
    status: Status,
    message: str,
    *,
    measured: float | None = None,
    unit: str = "",
    limit: str = "",
    structures: tuple[str, ...] = (),
    courses: tuple[str, ...] = (),
    details: dict[str, Any] | None = None,
    limits: tuple[AppliedLimit, ...] = (),
    measurements: tuple[Measurement, ...] = (),
) -> Finding:
    """A finding of ``rule`` (the runner adds which protocol defined it). Without a
    ``limit`` text, the text is made from ``limits``."""
    if not limit and limits:
        limit = "; ".join(_limit_text(a) for a in limits if a.describe())
    p = rule.provenance
    return Finding(
        rule_id=rule.id,
        title=rule.title,
        category=rule.category,
        status=status,
        measured=measured,
        unit=unit,
        limit=limit,
        structures=structures,
        courses=courses,
        provenance=Provenance(p.source, p.section, p.confidence),
        message=message,
        details=dict(details or {}),
        limits=tuple(limits),
        measurements=tuple(measurements),
    )


def _limit_text(limit: AppliedLimit) -> str:
    text = limit.describe()
    if limit.condition:
        text += f" with {limit.condition}"
    return text


def not_evaluated(rule: RuleBase, reason: str, **kwargs: Any) -> Finding:
    """A NOT_EVALUATED finding with its reason as the message."""
    return finding(rule, Status.NOT_EVALUATED, reason, **kwargs)


_ = Field  # re-exported for kinds that build models next to these helpers
