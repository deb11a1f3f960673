"""Built-in rule kinds (each module: a pydantic model of the rule and its evaluator)."""

from plancheck.rules.kinds.dvh_rule import DVH_KIND

BUILTIN_KINDS = (DVH_KIND,)

__all__ = ["BUILTIN_KINDS"]
