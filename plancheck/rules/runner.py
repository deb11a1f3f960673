"""Run a protocol's rules on an export and collect the findings."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from plancheck import __version__
from plancheck.model.case import Case
from plancheck.model.export import PlanExport
from plancheck.parallel import map_in_threads
from plancheck.protocol.loader import INTEGRITY_PROTOCOL, Protocol, ResolvedRule, load_protocol
from plancheck.rules.base import RuleNotApplicable
from plancheck.rules.context import CheckContext
from plancheck.rules.findings import Finding, Provenance, Status
from plancheck.rules.registry import rule_kinds

__all__ = ["CheckReport", "NotApplicable", "run_check", "protocol_for_check", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"
"""Version of the JSON report format (bumped on incompatible changes)."""


@dataclass(frozen=True)
class NotApplicable:
    rule_id: str
    title: str
    reason: str


@dataclass(frozen=True, eq=False)
class CheckReport:
    """Everything a report renders."""

    protocol: Protocol
    findings: tuple[Finding, ...]
    not_applicable: tuple[NotApplicable, ...]
    context: CheckContext
    elapsed_s: float
    plancheck_version: str = __version__
    schema_version: str = SCHEMA_VERSION
    warnings: tuple[str, ...] = field(default=())

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(f.status for f in self.findings)
        return {s.value.lower(): counts.get(s, 0) for s in Status}

    @property
    def export(self) -> PlanExport:
        return self.context.export


def protocol_for_check(name_or_path: str) -> Protocol:
    """Load a protocol and, unless it already extends it, put the plan-integrity rules first."""
    protocol = load_protocol(name_or_path)
    if INTEGRITY_PROTOCOL in protocol.chain:
        return protocol
    integrity = load_protocol(INTEGRITY_PROTOCOL)
    ids = {r.rule.id for r in protocol.rules}
    rules = tuple(r for r in integrity.rules if r.rule.id not in ids) + protocol.rules
    return dataclasses.replace(protocol, rules=rules, chain=(INTEGRITY_PROTOCOL,) + protocol.chain)


def _error(resolved: ResolvedRule, message: str) -> Finding:
    rule = resolved.rule
    p = rule.provenance
    return Finding(rule.id, rule.title, rule.category, Status.ERROR, None, "", "", (), (),
                   Provenance(p.source, p.section, p.confidence, resolved.origin), message)


_KIND_COST = {"conformity": 3.0, "geometry": 2.0, "integrity": 1.0, "dvh": 1.0}
"""Relative work of a rule kind (a fine isodose sampling, surface distances, coverage of every
structure, a DVH): the costly kinds start first."""


def _start_priorities(rules: Sequence[ResolvedRule]) -> dict[int, float]:
    """Priority of each rule (by ``id``) for the threads: the first rule of every kind (costly
    kinds first), then the second of every kind, and so on. Rules of one kind share their
    intermediate results (the conformity indices one isodose volume, the DVH rules of an
    organ its DVH), so threads that started them together would wait on each other; taken
    kind by kind they work on different things (measured on the sample: ~7 % faster than
    all costly rules first)."""
    rank: dict[str, int] = {}
    priorities = {}
    for resolved in rules:
        kind = resolved.rule.kind
        priorities[id(resolved)] = _KIND_COST.get(kind, 0.0) - 10.0 * rank.get(kind, 0)
        rank[kind] = rank.get(kind, 0) + 1
    return priorities


def run_check(
    export: PlanExport,
    protocol: Protocol,
    *,
    case: Case | None = None,
    case_source: str | None = None,
    user_mapping: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> CheckReport:
    """Evaluate every rule of ``protocol``; an evaluator that crashes gives an ERROR
    finding for its rule and the check goes on. The rules are evaluated in up to
    ``threads`` threads (default: :func:`plancheck.parallel.default_threads`); the
    findings keep the protocol's order whatever the number."""
    start = time.perf_counter()
    ctx = CheckContext(export, protocol, case, case_source, dict(user_mapping or {}))
    kinds = rule_kinds()

    def evaluate(resolved: ResolvedRule) -> list[Finding] | NotApplicable:
        rule = resolved.rule
        kind = kinds.get(rule.kind)
        if kind is None:
            return [_error(resolved, f"no evaluator for rule kind {rule.kind!r}")]
        try:
            produced = kind.evaluate(rule, ctx)
        except RuleNotApplicable as exc:
            return NotApplicable(rule.id, rule.title, exc.reason)
        except Exception as exc:  # one broken rule must not hide the others
            log.exception("rule %s failed", rule.id)
            return [_error(resolved, f"the rule could not be evaluated: {type(exc).__name__}: {exc}")]
        if not produced:
            return [_error(resolved, "the evaluator returned no finding")]
        return [dataclasses.replace(f, provenance=dataclasses.replace(f.provenance, protocol=resolved.origin)) for f in produced]

    # rules in threads (their DVHs are computed once, in whichever rule asks first: see CheckContext);
    # the findings keep the protocol's order
    findings: list[Finding] = []
    not_applicable: list[NotApplicable] = []
    priorities = _start_priorities(protocol.rules)
    for outcome in map_in_threads(evaluate, protocol.rules, threads=threads, cost=lambda r: priorities[id(r)]):
        if isinstance(outcome, NotApplicable):
            not_applicable.append(outcome)
        else:
            findings.extend(outcome)
    return CheckReport(protocol, tuple(findings), tuple(not_applicable), ctx, time.perf_counter() - start,
                       warnings=tuple(export.warnings))
