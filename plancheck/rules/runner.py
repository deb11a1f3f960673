"""Run a protocol's rules on an export and collect the findings."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from plancheck import __version__
from plancheck.model.case import Case
from plancheck.model.export import PlanExport
from plancheck.parallel import can_fork, default_threads, map_in_forks, map_in_threads
from plancheck.protocol.loader import INTEGRITY_PROTOCOL, Protocol, ResolvedRule, load_protocol
from plancheck.rules.base import RuleNotApplicable
from plancheck.errors import UsageError
from plancheck.rules.context import CheckContext, unknown_mapping_keys
from plancheck.rules.findings import Finding, Provenance, Status
from plancheck.rules.registry import rule_kinds

__all__ = ["CheckReport", "NotApplicable", "run_check", "prepare_rules", "protocol_for_check", "structure_names",
           "work_groups", "work_key", "POINTS_PER_COST_UNIT", "SCHEMA_VERSION"]

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


def prepare_rules() -> None:
    """Load now what the rules load on first use and what does not depend on the export: the
    structure-name index (about 35 ms), the library of the combined structures (shapely), and
    numpy's masked arrays (numpy imports them on the first ``np.unique``). ``plancheck check``
    calls it while a forked process reads the export
    (:class:`plancheck.analysis.read_ahead.ExportReadAhead`), so that the rules start sooner.
    A failure is left to the rules, which report it as they would have."""
    try:
        import numpy.ma  # noqa: F401

        import plancheck.dvh.combine  # noqa: F401
        from plancheck.names.structures import StructureNameMatcher

        StructureNameMatcher()
    except Exception:  # noqa: BLE001 - the rules that need it report it
        log.debug("preparing the rules failed; the rules will report it", exc_info=True)


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


def work_key(rule) -> tuple:
    """What a rule shares its intermediate results with (its structure's samplings and DVHs;
    the targets' isodose volumes and DVHs): the rules of one key are evaluated together, in
    one process (:func:`work_groups`). From the rule's fields, so that plug-in kinds get one
    too: its ``structure`` when it names one, the targets when it selects a ``target``, else
    its kind."""
    structure = getattr(rule, "structure", None)
    if structure is not None:
        dump = structure.model_dump(mode="json") if hasattr(structure, "model_dump") else structure
        return ("structure", repr(dump))
    if getattr(rule, "target", None) is not None:
        return ("targets",)
    return ("kind", rule.kind)


def _rule_cost(rule) -> float:
    """Estimated relative work of a rule, to start the costly groups first: its kind's
    :data:`_KIND_COST` (other kinds: 0.25), twice that for a DVH rule on a composite of courses."""
    cost = _KIND_COST.get(rule.kind, 0.25)
    return 2.0 * cost if getattr(rule, "course", None) == "composite" else cost


POINTS_PER_COST_UNIT = 10_000
"""Contour points of a rule's structure that double its estimated work (a DVH's work grows
with the structure's size and surface: on the sample, the skin's 41 000 points took about
twice the time of the heart's 4 000, per rule)."""


def structure_names(spec) -> list[str]:
    """Every structure name in a rule's ``structure`` (a name, alternatives, or a union)."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, (list, tuple)):
        return [name for part in spec for name in structure_names(part)]
    union = getattr(spec, "union", None)
    return structure_names(union) if union is not None else []


def work_groups(rules: Sequence[ResolvedRule], contour_points: Callable[[str], int] = lambda name: 0
                ) -> list[tuple[list[int], float]]:
    """The rules (by index, in protocol order) grouped by :func:`work_key`, each group with
    its estimated relative work (by kind, :func:`_rule_cost`, and by the size of the
    structure: ``contour_points(name)`` of each of its names, see
    :data:`POINTS_PER_COST_UNIT`), in the order of their first rule."""
    groups: dict[tuple, list[int]] = {}
    for i, resolved in enumerate(rules):
        groups.setdefault(work_key(resolved.rule), []).append(i)

    def cost(rule) -> float:
        points = sum(contour_points(n) for n in structure_names(getattr(rule, "structure", None)))
        return _rule_cost(rule) * (1.0 + points / POINTS_PER_COST_UNIT)

    return [(members, sum(cost(rules[i].rule) for i in members)) for members in groups.values()]


def run_check(
    export: PlanExport,
    protocol: Protocol,
    *,
    case: Case | None = None,
    case_source: str | None = None,
    user_mapping: Mapping[str, str] | None = None,
    threads: int | None = None,
    processes: int = 1,
    share_dvhs: bool = True,
) -> CheckReport:
    """Evaluate every rule of ``protocol``; an evaluator that crashes gives an ERROR
    finding for its rule and the check goes on. The rules are evaluated in up to
    ``threads`` threads (default: :func:`plancheck.parallel.default_threads`). With
    ``processes`` > 1 (and where :func:`plancheck.parallel.can_fork`), this process and
    ``processes - 1`` forked from it take the :func:`work_groups` one by one, costly groups
    first, the threads divided among them (:func:`plancheck.parallel.map_in_forks`); the DVHs
    the other processes computed come back with their findings, for the reports' plots
    (``share_dvhs`` False: not sent, for a report without plots; the report's context then
    computes a DVH again if asked). The findings are the same and keep the protocol's order
    whatever the numbers."""
    start = time.perf_counter()
    unknown = unknown_mapping_keys(protocol, user_mapping or {})
    if unknown:
        raise UsageError(f"structure mapping: {', '.join(repr(k) for k in unknown)} is no structure that a rule of "
                         f"protocol {protocol.id!r} looks up, so the mapping would change nothing; use the "
                         f"protocol's name (e.g. SpinalCord_PRV05; 'plancheck explain RULE_ID' shows a rule's structure)")
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

    # rules in threads (their DVHs are computed once, in whichever rule asks first: see CheckContext)
    rules = protocol.rules
    priorities = _start_priorities(rules)
    if processes <= 1 or not can_fork():
        outcomes = map_in_threads(evaluate, rules, threads=threads, cost=lambda r: priorities[id(r)])
    else:
        ctx.prepare_shared()  # once here rather than once in every process
        per_process = max(1, (threads if threads is not None else default_threads()) // processes)

        def evaluate_group(group: tuple[list[int], float]):
            mark = ctx.mark()
            got = map_in_threads(evaluate, [rules[i] for i in group[0]], threads=per_process,
                                 cost=lambda r: priorities[id(r)])
            return got, (ctx.computed_since(mark) if share_dvhs else None)  # a forked process's DVHs

        groups = work_groups(rules, ctx.contour_points)
        outcomes = [None] * len(rules)
        for (members, _), (got, computed) in zip(groups, map_in_forks(evaluate_group, groups, processes=processes,
                                                                        cost=lambda g: g[1])):
            if computed is not None:
                ctx.adopt(computed)
            for i, outcome in zip(members, got):
                outcomes[i] = outcome
    # the findings keep the protocol's order
    findings: list[Finding] = []
    not_applicable: list[NotApplicable] = []
    for outcome in outcomes:
        if isinstance(outcome, NotApplicable):
            not_applicable.append(outcome)
        else:
            findings.extend(outcome)
    return CheckReport(protocol, tuple(findings), tuple(not_applicable), ctx, time.perf_counter() - start,
                       warnings=tuple(export.warnings))
