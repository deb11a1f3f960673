"""Built-in rule kinds (each module: a pydantic model of the rule and its evaluator)."""

from plancheck.rules.kinds.clinical_rule import CLINICAL_KIND
from plancheck.rules.kinds.conformity_rule import CONFORMITY_KIND
from plancheck.rules.kinds.dvh_rule import DVH_KIND
from plancheck.rules.kinds.geometry_rule import GEOMETRY_KIND
from plancheck.rules.kinds.integrity_rule import INTEGRITY_KIND
from plancheck.rules.kinds.prescription_rule import PRESCRIPTION_KIND

BUILTIN_KINDS = (DVH_KIND, PRESCRIPTION_KIND, CONFORMITY_KIND, GEOMETRY_KIND, INTEGRITY_KIND, CLINICAL_KIND)

__all__ = ["BUILTIN_KINDS"]
