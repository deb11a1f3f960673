"""Rule kinds made of several checks: one small model and one function per check.

The ``integrity`` and ``clinical`` kinds name in each rule which ``check`` it runs. Each check
is a pydantic model of its own — its fields, which of them are required, their types and
units — and an evaluator of its own, registered together::

    INTEGRITY = CheckKind("integrity", run=_run_per_course)

    class IntegrityCheck(CheckRule):
        kind: Literal["integrity"]
        check_kind: ClassVar[CheckKind] = INTEGRITY

    class GridSpacing(IntegrityCheck):
        check: Literal["grid_spacing"]
        limits_by_regime: LimitsByRegime

    @INTEGRITY.evaluator(GridSpacing)
    def _grid_spacing(rule: GridSpacing, ctx: CheckContext) -> list[Finding]: ...

    INTEGRITY_KIND = INTEGRITY.rule_kind()

The kind's protocol-file model is the discriminated union of its check models on ``check``,
nested in the protocol file's union on ``kind``: the JSON Schema (``plancheck protocols
--schema``) tells an editor which fields belong to which check, and a protocol file keeps its
shape (``kind: integrity`` and ``check: grid_spacing`` side by side in one rule). A field of
another check of the same kind is refused by name (``field 'allowed_mv' does not apply to check
'meterset' (it takes: limits_by_regime)``), a misspelt one as an unknown field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Union

from pydantic import Field, model_validator

from plancheck.protocol.kinds import RuleKind
from plancheck.protocol.schema import RuleBase
from plancheck.rules.findings import Finding

__all__ = ["CheckKind", "CheckRule"]


Evaluator = Callable[..., list[Finding]]
Run = Callable[[Evaluator, Any, Any], list[Finding]]


def _call(function: Evaluator, rule: Any, ctx: Any) -> list[Finding]:
    return function(rule, ctx)


class CheckKind:
    """The checks of one rule kind: each check's model and evaluator.

    Parameters
    ----------
    kind
        The rule kind (``kind:`` in a protocol file).
    run
        How the kind calls a check's function, ``run(function, rule, ctx) -> list[Finding]``
        (what every check of the kind shares: the clinical checks read the case file first);
        default ``function(rule, ctx)``.
    """

    def __init__(self, kind: str, *, run: Run = _call) -> None:
        self.kind = kind
        self._run = run
        self._evaluators: dict[type[CheckRule], Evaluator] = {}

    def evaluator(self, model: type[CheckRule]) -> Callable[[Evaluator], Evaluator]:
        """Register ``model`` (a check) with the decorated function that evaluates it."""
        def register(function: Evaluator) -> Evaluator:
            if model in self._evaluators:
                raise ValueError(f"check {model.check_name()!r} of kind {self.kind!r} is registered twice")
            self._evaluators[model] = function
            return function
        return register

    @property
    def models(self) -> tuple[type[CheckRule], ...]:
        """The check models, in registration order."""
        return tuple(self._evaluators)

    def fields_of_checks(self) -> dict[str, set[str]]:
        """Each check's own fields (beyond those every rule has): what it takes."""
        common = set(RuleBase.model_fields) | {"check"}
        return {m.check_name(): set(m.model_fields) - common for m in self._evaluators}

    def union(self) -> Any:
        """The kind's protocol-file model: its checks' models, discriminated by ``check``."""
        return Annotated[Union[self.models], Field(discriminator="check")]  # type: ignore[valid-type]

    def evaluate(self, rule: CheckRule, ctx: Any) -> list[Finding]:
        """Evaluate one rule with its check's function."""
        return self._run(self._evaluators[type(rule)], rule, ctx)

    def rule_kind(self) -> RuleKind:
        """The registry entry of this kind (:class:`plancheck.protocol.kinds.RuleKind`)."""
        return RuleKind(model=self.union(), evaluate=self.evaluate)


class CheckRule(RuleBase):
    """Base of the model of one check of a :class:`CheckKind`.

    Subclasses set ``kind: Literal[...]``, ``check: Literal[...]`` and ``check_kind``.
    """

    check: str
    check_kind: ClassVar[CheckKind]

    @classmethod
    def check_name(cls) -> str:
        return cls.model_fields["check"].annotation.__args__[0]  # type: ignore[union-attr]

    @model_validator(mode="before")
    @classmethod
    def _fields_of_other_checks(cls, data: Any) -> Any:
        """A field that belongs to another check of the kind is refused naming this check's
        fields (a misspelt field is left to ``extra="forbid"``: an unknown field)."""
        if not isinstance(data, dict) or not hasattr(cls, "check_kind"):
            return data
        taken = cls.check_kind.fields_of_checks()
        own = taken.get(cls.check_name(), set())
        others = set().union(*taken.values()) - own
        for name in data:
            if name in others:
                raise ValueError(f"field {name!r} does not apply to check {cls.check_name()!r} "
                                 f"(it takes: {', '.join(sorted(own)) or 'no fields'})")
        return data
