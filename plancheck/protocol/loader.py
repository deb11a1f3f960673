"""Load protocol files: validate, resolve ``extends``, apply overrides, keep provenance.

Built-in protocols are ``plancheck/constraints/protocols/<id>.yaml`` (the
top-level ``constraints/protocols/`` folder of the repository). A protocol given
by path may extend built-in ones by id, or other files by relative path.

Resolution: the parents' rules come first (in ``extends`` order); a child rule
with the same id replaces the parent's; ``overrides`` are deep-merged into the
inherited rule and re-validated; ``disable`` removes rules. Every resolved rule
records which file defined it and which changed it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError, create_model

from plancheck.datafile import decode_utf8, load_data_file, load_data_text
from plancheck.errors import ProtocolError
from plancheck.protocol.kinds import rule_kinds
from plancheck.protocol.schema import ProtocolHeader, RuleBase

__all__ = [
    "ResolvedRule",
    "Protocol",
    "load_protocol",
    "builtin_protocol_ids",
    "protocol_file_model",
    "protocol_json_schema",
    "DEFAULT_PROTOCOL",
    "INTEGRITY_PROTOCOL",
]

DEFAULT_PROTOCOL = "esophagus-oligomet-2025"
INTEGRITY_PROTOCOL = "plan-integrity"


@dataclass(frozen=True)
class ResolvedRule:
    """A rule of a resolved protocol and where its values came from."""

    rule: RuleBase
    defined_in: str
    changed_by: tuple[str, ...] = ()

    @property
    def origin(self) -> str:
        text = self.defined_in
        if self.changed_by:
            text += f" (values overridden by {', '.join(self.changed_by)})"
        return text


@dataclass(frozen=True)
class Protocol:
    """A protocol with its parents resolved."""

    id: str
    title: str
    version: str
    description: str
    chain: tuple[str, ...]
    rules: tuple[ResolvedRule, ...]
    structure_mapping: Mapping[str, str]
    alpha_beta_gy: Mapping[str, float]
    path: str

    def rule(self, rule_id: str) -> ResolvedRule:
        for r in self.rules:
            if r.rule.id == rule_id:
                return r
        raise KeyError(rule_id)


def _builtin_dir():
    return files("plancheck.constraints") / "protocols"


def builtin_protocol_ids() -> list[str]:
    """Ids of the protocols shipped with plancheck."""
    return sorted(p.name[: -len(".yaml")] for p in _builtin_dir().iterdir() if p.name.endswith(".yaml"))


def _models() -> tuple[type, ...]:
    return tuple(k.model for k in rule_kinds().values())


def protocol_file_model() -> type:
    """The pydantic model of a protocol file, with the rule union of every registered kind
    (built once per set of kinds: a kind registered later is seen by the next load)."""
    return _protocol_file_model(_models())


def _rule_adapter() -> TypeAdapter:
    return _rule_adapter_for(_models())


@lru_cache(maxsize=8)
def _protocol_file_model(models: tuple[type, ...]) -> type:
    rule_type = Annotated[Union[models], Field(discriminator="kind")]  # type: ignore[valid-type]
    return create_model("ProtocolFile", __base__=ProtocolHeader, rules=(list[rule_type], Field(default_factory=list)))


@lru_cache(maxsize=8)
def _rule_adapter_for(models: tuple[type, ...]) -> TypeAdapter:
    return TypeAdapter(Annotated[Union[models], Field(discriminator="kind")])  # type: ignore[valid-type]


def protocol_json_schema() -> str:
    """JSON Schema of the protocol file format (for editors)."""
    return json.dumps(protocol_file_model().model_json_schema(), indent=2)




def _without_tags(rest: list[str], rule: Any) -> list[str]:
    """``rest`` without the discriminator tags pydantic inserts: the rule's kind, then (for a
    kind made of checks) its check."""
    for key in ("kind", "check"):
        tag = rule.get(key) if isinstance(rule, Mapping) else None
        if rest and tag is not None and rest[0] == str(tag):
            rest = rest[1:]
    return rest


def _describe(exc: ValidationError, data: Any, *, rule: Any = None) -> str:
    """The first errors of a validation, each naming the rule id and the field; ``rule``: the
    data of the one rule validated (an override), when not a whole protocol file."""
    lines = []
    for err in exc.errors()[:5]:
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if rule is not None:
            rest = _without_tags([str(p) for p in loc], rule)
            where = ".".join(rest)
        elif len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            try:
                rid = data["rules"][loc[1]].get("id", f"#{loc[1] + 1}")
            except (KeyError, IndexError, TypeError, AttributeError):
                rid = f"#{loc[1] + 1}"
            try:
                this = data["rules"][loc[1]]
            except (KeyError, IndexError, TypeError):
                this = None
            rest = _without_tags([str(p) for p in loc[2:]], this)
            where = f"rule {rid}" + (f", field {'.'.join(rest)}" if rest else "")
        lines.append(f"{where}: {err['msg']}" if where else err["msg"])
    more = len(exc.errors()) - len(lines)
    return "; ".join(lines) + (f"; and {more} more" if more > 0 else "")


def _locate(name_or_path: str, relative_to: Path | None) -> tuple[str, Any]:
    """(label, parsed YAML) of a protocol given by built-in id or path (read strictly:
    :mod:`plancheck.datafile`)."""
    candidate = Path(name_or_path)
    if relative_to is not None and not candidate.is_absolute():
        rel = relative_to / candidate
        if rel.exists():
            candidate = rel
    if candidate.suffix in (".yaml", ".yml", ".json") or candidate.exists():
        return str(candidate), load_data_file(candidate, what="protocol file")
    resource = _builtin_dir() / f"{name_or_path}.yaml"
    if not resource.is_file():
        known = ", ".join(builtin_protocol_ids())
        raise ProtocolError(f"no built-in protocol {name_or_path!r} and no such file (built-in: {known})")
    return name_or_path, load_data_text(decode_utf8(resource.read_bytes(), name_or_path, "protocol file"), name_or_path)


def _check_unique_ids(rules, label: str) -> None:
    """A rule id given twice in one file is an error (which one counts would be a guess)."""
    positions: dict[str, list[int]] = {}
    for i, rule in enumerate(rules, start=1):
        positions.setdefault(rule.id, []).append(i)
    twice = {rid: at for rid, at in positions.items() if len(at) > 1}
    if twice:
        listing = "; ".join(f"{rid} (rules #{', #'.join(map(str, at))})" for rid, at in twice.items())
        raise ProtocolError(f"rule ids must be unique in a protocol file: {listing}", label)


def _deep_merge(base: dict[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_protocol(name_or_path: str, *, _relative_to: Path | None = None, _seen: tuple[str, ...] = ()) -> Protocol:
    """Load and resolve a protocol by built-in id or file path.

    Raises
    ------
    ProtocolError
        Naming the file, the rule id and the field for any problem (YAML
        syntax, unknown key, wrong type, unknown rule in ``overrides``, cycle in
        ``extends``).
    """
    label, data = _locate(name_or_path, _relative_to)
    if label in _seen:
        raise ProtocolError(f"'extends' forms a cycle: {' -> '.join(_seen + (label,))}", label)
    if not isinstance(data, dict):
        raise ProtocolError("a protocol file must be a mapping with schema_version, id, title, version and rules", label)
    try:
        parsed = protocol_file_model().model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc, data), label) from exc
    _check_unique_ids(parsed.rules, label)
    here = Path(label).parent if Path(label).exists() else None

    resolved: dict[str, ResolvedRule] = {}
    mapping: dict[str, str] = {}
    alpha_beta: dict[str, float] = {}
    chain: list[str] = []
    for parent_name in parsed.extends:
        parent = load_protocol(parent_name, _relative_to=here, _seen=_seen + (label,))
        chain.extend(parent.chain)
        for r in parent.rules:
            resolved[r.rule.id] = r
        mapping.update(parent.structure_mapping)
        alpha_beta.update(parent.alpha_beta_gy)
    chain.append(parsed.id)
    for rule in parsed.rules:
        resolved[rule.id] = ResolvedRule(rule, parsed.id)
    for rule_id, change in parsed.overrides.items():
        if rule_id not in resolved:
            raise ProtocolError(f"overrides: no inherited rule {rule_id!r} to override", label)
        current = resolved[rule_id]
        merged = _deep_merge(current.rule.model_dump(mode="python", exclude_unset=False), change)
        try:
            new_rule = _rule_adapter().validate_python(merged)
        except ValidationError as exc:
            raise ProtocolError(f"overrides of rule {rule_id}: {_describe(exc, {}, rule=merged)}", label) from exc
        resolved[rule_id] = ResolvedRule(new_rule, current.defined_in, current.changed_by + (parsed.id,))
    for rule_id in parsed.disable:
        if rule_id not in resolved:
            raise ProtocolError(f"disable: no inherited rule {rule_id!r}", label)
        del resolved[rule_id]
    mapping.update(parsed.structure_mapping)
    alpha_beta.update(parsed.alpha_beta_gy)
    return Protocol(
        id=parsed.id,
        title=parsed.title,
        version=parsed.version,
        description=parsed.description,
        chain=tuple(dict.fromkeys(chain)),
        rules=tuple(resolved.values()),
        structure_mapping=mapping,
        alpha_beta_gy=alpha_beta,
        path=label,
    )
