"""Rule kinds: a pydantic model (the protocol-file schema of the kind) plus an evaluator.

Built-in kinds live in :mod:`plancheck.rules.kinds`. Other packages add kinds
through the entry-point group ``plancheck.rules``: each entry point loads a
:class:`RuleKind`, e.g. in the other package's ``pyproject.toml``::

    [project.entry-points."plancheck.rules"]
    max-heterogeneity = "my_package.rules:MAX_HETEROGENEITY"

where ``MAX_HETEROGENEITY = RuleKind(model=MaxHeterogeneityRule, evaluate=evaluate_fn)``,
``MaxHeterogeneityRule`` subclasses :class:`plancheck.protocol.schema.RuleBase` with
``kind: Literal["max-heterogeneity"]``, and ``evaluate_fn(rule, ctx) -> list[Finding]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from plancheck.protocol.schema import RuleBase

if TYPE_CHECKING:
    from plancheck.rules.context import CheckContext
    from plancheck.rules.findings import Finding

__all__ = ["RuleKind", "ENTRY_POINT_GROUP", "rule_kinds", "register_kind"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "plancheck.rules"

Evaluator = Callable[[Any, "CheckContext"], "list[Finding]"]


@dataclass(frozen=True)
class RuleKind:
    """A rule kind: its protocol-file model and its evaluator."""

    model: type[RuleBase]
    evaluate: Evaluator

    @property
    def name(self) -> str:
        return self.model.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]


_EXTRA: dict[str, RuleKind] = {}


def register_kind(kind: RuleKind) -> None:
    """Register a kind at run time (tests, embedding applications)."""
    _EXTRA[kind.name] = kind
    rule_kinds.cache_clear()


@lru_cache(maxsize=1)
def rule_kinds() -> dict[str, RuleKind]:
    """All rule kinds: built-in, then entry points, then run-time registrations."""
    from plancheck.rules.kinds import BUILTIN_KINDS

    kinds = {k.name: k for k in BUILTIN_KINDS}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            kind = ep.load()
        except Exception as exc:  # a broken plug-in must not stop plancheck
            log.warning("rule kind entry point %s could not be loaded: %s", ep.name, exc)
            continue
        if not isinstance(kind, RuleKind):
            log.warning("entry point %s is not a plancheck RuleKind; ignored", ep.name)
            continue
        kinds[kind.name] = kind
    kinds.update(_EXTRA)
    return kinds
