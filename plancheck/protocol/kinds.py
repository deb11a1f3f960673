"""The registry of rule kinds: for each kind, its protocol-file model and its evaluator.

The protocol layer validates protocol files against the models of the kinds registered
here; the rules layer evaluates them. Kinds arrive the same way whatever their origin,
so the protocol layer never imports the rules layer:

* the built-in kinds, from ``plancheck.rules.kinds:BUILTIN_KINDS`` (named, like an entry
  point, by a string and loaded on first use);
* other packages' kinds, from the entry-point group :data:`ENTRY_POINT_GROUP`, e.g. in
  the other package's ``pyproject.toml``::

      [project.entry-points."plancheck.rules"]
      max-heterogeneity = "my_package.rules:MAX_HETEROGENEITY"

  where ``MAX_HETEROGENEITY = RuleKind(model=MaxHeterogeneityRule, evaluate=evaluate_fn)``,
  ``MaxHeterogeneityRule`` subclasses :class:`plancheck.protocol.schema.RuleBase` with
  ``kind: Literal["max-heterogeneity"]``, and ``evaluate_fn(rule, ctx) -> list[Finding]``;
* kinds registered at run time with :func:`register_kind` (tests, embedding applications),
  which every later protocol load sees.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Any, get_args, get_origin

from plancheck.protocol.schema import RuleBase

__all__ = ["RuleKind", "ENTRY_POINT_GROUP", "BUILTIN_KINDS_REF", "rule_kinds", "register_kind"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "plancheck.rules"

BUILTIN_KINDS_REF = "plancheck.rules.kinds:BUILTIN_KINDS"
"""Where the built-in kinds are (``module:attribute``), loaded like an entry point."""

Evaluator = Callable[[Any, Any], list]
"""``evaluate(rule, ctx) -> list[Finding]`` (ctx: :class:`plancheck.rules.context.CheckContext`)."""


@dataclass(frozen=True)
class RuleKind:
    """A rule kind: its protocol-file model and its evaluator.

    ``model`` is a :class:`~plancheck.protocol.schema.RuleBase` subclass with ``kind:
    Literal[...]``, or, for a kind made of several checks, the discriminated union of one such
    model per check (:class:`plancheck.rules.checks.CheckKind`).
    """

    model: Any
    evaluate: Evaluator

    @property
    def models(self) -> tuple[type[RuleBase], ...]:
        """The model classes: ``model`` itself, or the members of its union."""
        if isinstance(self.model, type):
            return (self.model,)
        union = get_args(self.model)[0] if get_origin(self.model) is Annotated else self.model
        return tuple(get_args(union))

    @property
    def name(self) -> str:
        return self.models[0].model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]


_lock = threading.Lock()
_loaded: dict[str, RuleKind] | None = None
_extra: dict[str, RuleKind] = {}


def _load(ref: str) -> Any:
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _discover() -> dict[str, RuleKind]:
    kinds = {k.name: k for k in _load(BUILTIN_KINDS_REF)}
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
    return kinds


def rule_kinds() -> dict[str, RuleKind]:
    """All rule kinds: built-in, then entry points (both discovered once per process), then
    run-time registrations (:func:`register_kind`), later ones replacing earlier ones."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _discover()
        return {**_loaded, **_extra}


def register_kind(kind: RuleKind) -> None:
    """Register a kind at run time; protocols loaded afterwards may use it."""
    with _lock:
        _extra[kind.name] = kind


def forget_discovered_kinds() -> None:
    """Discover the built-in and entry-point kinds again on next use (tests of plug-ins)."""
    global _loaded
    with _lock:
        _loaded = None
