"""Rule kinds for plug-in authors: a kind is a pydantic model of its protocol-file entry
plus an evaluator. The registry itself lives in :mod:`plancheck.protocol.kinds` (the
protocol layer validates files against the kinds' models without importing this layer);
this module is the public name of its API.
"""

from plancheck.protocol.kinds import ENTRY_POINT_GROUP, RuleKind, register_kind, rule_kinds

__all__ = ["RuleKind", "ENTRY_POINT_GROUP", "rule_kinds", "register_kind"]
