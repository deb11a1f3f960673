"""One strict reader for every YAML data file plancheck loads: protocols, the α/β table,
the structure-name synonyms and case files.

A data file decides clinical limits, so nothing in it may change a value silently:

* a key given twice in one mapping is an error naming both lines (YAML itself would keep
  the last: ``upper`` written twice once turned 45 Gy into 450 Gy);
* a number that is not finite (``.inf``, ``.nan``, ``1e400``) is an error with its line;
* the file must be UTF-8 (a byte-order mark is allowed), at most :data:`MAX_BYTES` long,
  nested at most :data:`MAX_DEPTH` levels, and expand (through YAML aliases) to at most
  :data:`MAX_NODES` values;
* only plain data (mappings, lists, strings, numbers, booleans, null; dates as text where
  asked) — the safe loader never builds objects.

Every problem is a :class:`plancheck.errors.ProtocolError` ("FILE: line N: what is wrong"),
which the CLI reports with exit code 3.

References
----------
YAML 1.1 (PyYAML): mapping keys "must be unique" (spec §3.2.1.1), which PyYAML does not enforce.
"""

from __future__ import annotations

import math
import re
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from plancheck.errors import ProtocolError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "decode_utf8", "load_data_file", "load_data_text", "read_data_text"]

MAX_BYTES = 4 * 1024 * 1024
"""Largest data file read, bytes (the built-in consensus protocol is about 100 kB)."""

MAX_DEPTH = 40
"""Deepest nesting of mappings and lists accepted."""

MAX_NODES = 500_000
"""Most values a file may expand to, aliases included (a "billion laughs" file is refused)."""

_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BASE):  # type: ignore[misc, valid-type]
    """A safe loader that refuses duplicate keys and non-finite numbers (see the module docstring)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise _error(key_node, f"a mapping key must be plain text or a number, not {type(key).__name__}") from None
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _error(key_node, f"key {key!r} is given twice in one mapping (first at line {seen[key]}); "
                                       "remove one: YAML would silently keep the last")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_float(self, node):  # noqa: ANN001
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise _error(node, f"{node.value!r} is not a finite number")
        return value


class _StrictDateTextLoader(_StrictLoader):
    """The strict loader with dates left as text (pydantic parses them, naming the field)."""


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)
# YAML 1.1 reads 1e5 and 1.0e400 (no dot, or no exponent sign) as text; YAML 1.2 and people read numbers
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))
_StrictDateTextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _StrictLoader.yaml_implicit_resolvers.items()
}


class _DataFileError(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(message)


def _error(node, message: str) -> _DataFileError:  # noqa: ANN001
    mark = getattr(node, "start_mark", None)
    return _DataFileError(mark.line + 1 if mark is not None else None, message)


def _check_shape(data: Any, label: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH or expanding to more than MAX_NODES values."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ProtocolError(f"the file expands to more than {MAX_NODES} values (aliases?); not a data file", label)
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth >= MAX_DEPTH and children:
            raise ProtocolError(f"nested more than {MAX_DEPTH} levels deep; not a data file plancheck reads", label)
        stack.extend((child, depth + 1) for child in children)


def load_data_text(text: str, label: str, *, dates_as_text: bool = False) -> Any:
    """Parse YAML text of a data file strictly (see the module docstring).

    Parameters
    ----------
    text
        The file's text.
    label
        How the file is named in messages (its path).
    dates_as_text
        Keep ``2025-01-06`` as the string (case files: pydantic parses dates with the field name).

    Raises
    ------
    ProtocolError
        ``"<label>: line N: <problem>"``.
    """
    loader = _StrictDateTextLoader if dates_as_text else _StrictLoader
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except _DataFileError as exc:
        raise ProtocolError(exc.message, label, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        column = f" (column {mark.column + 1})" if mark is not None else ""
        problem = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        raise ProtocolError(f"not valid YAML{column}: {problem}", label,
                            line=mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"not valid YAML: {exc}", label) from None
    except RecursionError:
        raise ProtocolError(f"nested too deeply to read (more than {MAX_DEPTH} levels are refused)", label) from None
    _check_shape(data, label)
    return data


def read_data_text(path: str | PathLike[str], *, what: str = "data file") -> str:
    """The text of a data file: at most :data:`MAX_BYTES`, UTF-8 (see :func:`load_data_file`).

    Raises
    ------
    ProtocolError
        The file cannot be read, is too large, or is not UTF-8.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ProtocolError(f"cannot read {what}: {exc.strerror or exc}", p) from None
    if len(raw) > MAX_BYTES:
        raise ProtocolError(f"a {what} is at most {MAX_BYTES // (1024 * 1024)} MB; this one is larger", p)
    return decode_utf8(raw, str(p), what)


def load_data_file(path: str | PathLike[str], *, what: str = "data file", dates_as_text: bool = False) -> Any:
    """Read and parse a data file strictly.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for messages (``"protocol file"``, ``"case file"`` ...).
    dates_as_text
        See :func:`load_data_text`.

    Raises
    ------
    ProtocolError
        The file cannot be read, is too large, is not UTF-8, or does not parse strictly.
    """
    return load_data_text(read_data_text(path, what=what), str(path), dates_as_text=dates_as_text)


def decode_utf8(raw: bytes, label: str, what: str = "data file") -> str:
    """The text of a data file's bytes (UTF-8, optional byte-order mark), or a ProtocolError
    naming the line of the first invalid byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProtocolError(f"a {what} must be UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset "
                            f"{exc.start})", label, line=line) from None
