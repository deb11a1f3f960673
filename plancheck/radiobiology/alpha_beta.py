"""The α/β table: which α/β ratio (Gy) applies to a structure, and why.

The table lives in ``constraints/alpha_beta.yaml`` (installed as
``plancheck.constraints``); its comments explain the format. A value is
chosen in this order:

1. an override passed by the caller (from a protocol or the user): an exact
   (case-insensitive) name match first, then the first matching glob;
2. the first table entry whose ``structures`` match the structure's standard
   (AAPM TG-263) name, case-insensitively, with :mod:`fnmatch` globs;
3. the default for targets or for normal tissue.

:class:`AlphaBetaChoice` records which of these gave the value and its source.

References
----------
.. [1] Mayo CS, Moran JM, Bosch W, et al. AAPM Task Group 263: standardizing
   nomenclatures in radiation oncology. Int J Radiat Oncol Biol Phys.
   2018;100:1057–1066.
.. [2] Joiner MC, van der Kogel AJ (eds). Basic Clinical Radiobiology, 4th ed.
   London: Hodder Arnold; 2009.
"""

from __future__ import annotations

from functools import lru_cache

import enum
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from os import PathLike
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from plancheck.datafile import decode_utf8, load_data_file, load_data_text
from plancheck.errors import ProtocolError, RadiobiologyError
from plancheck.radiobiology._checks import check_alpha_beta_gy

__all__ = [
    "default_alpha_beta_table",
    "AlphaBetaChoice",
    "AlphaBetaEntry",
    "AlphaBetaOrigin",
    "AlphaBetaTable",
    "DEFAULT_ALPHA_BETA_RESOURCE",
    "load_alpha_beta_table",
]

#: Name of the packaged table inside ``plancheck.constraints``.
DEFAULT_ALPHA_BETA_RESOURCE = "alpha_beta.yaml"

_Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
_AlphaBetaGy = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]


def _matches(name: str, pattern: str) -> bool:
    """Case-insensitive shell-style match of a structure name against a pattern."""
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


class AlphaBetaEntry(BaseModel):
    """One entry of the table: structures that share an α/β ratio.

    Attributes
    ----------
    structures
        TG-263 names or :mod:`fnmatch` globs (``SpinalCord_PRV*``), at least one.
    alpha_beta_gy
        α/β ratio, Gy (> 0).
    source
        The literature or consensus the value comes from (required).
    note
        Optional caveat (uncertainty, alternatives).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    structures: tuple[_Text, ...] = Field(min_length=1)
    alpha_beta_gy: _AlphaBetaGy
    source: _Text
    note: _Text | None = None

    def matching_pattern(self, structure_name: str) -> str | None:
        """The first pattern matching ``structure_name``, or None."""
        return next((p for p in self.structures if _matches(structure_name, p)), None)


class AlphaBetaOrigin(enum.Enum):
    """Where a chosen α/β value came from."""

    OVERRIDE = "override"
    TABLE = "table entry"
    DEFAULT_TARGET = "default for targets"
    DEFAULT_NORMAL_TISSUE = "default for normal tissue"


@dataclass(frozen=True)
class AlphaBetaChoice:
    """The α/β chosen for a structure and where it came from.

    Attributes
    ----------
    alpha_beta_gy
        α/β ratio, Gy.
    origin
        :class:`AlphaBetaOrigin`: override, table entry or default.
    source
        The literature source (table entries and defaults) or a description
        of the override.
    pattern
        The override key or table pattern that matched; None for defaults.
    """

    alpha_beta_gy: float
    origin: AlphaBetaOrigin
    source: str
    pattern: str | None = None

    def describe(self) -> str:
        """E.g. ``α/β = 2 Gy (table entry 'SpinalCord_PRV*'; source: ...)``."""
        matched = f" {self.pattern!r}" if self.pattern else ""
        return (
            f"α/β = {self.alpha_beta_gy:g} Gy ({self.origin.value}{matched}; "
            f"source: {self.source})"
        )


class AlphaBetaTable(BaseModel):
    """The α/β table (``constraints/alpha_beta.yaml``), validated strictly.

    Attributes
    ----------
    version
        Format version; only 1 exists.
    default_target_gy, default_target_source
        α/β (Gy) and its source for targets that match no entry.
    default_normal_tissue_gy, default_normal_tissue_source
        α/β (Gy) and its source for other structures that match no entry.
    entries
        Checked in file order; the first match wins.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: Literal[1]
    default_target_gy: _AlphaBetaGy
    default_target_source: _Text
    default_normal_tissue_gy: _AlphaBetaGy
    default_normal_tissue_source: _Text
    entries: tuple[AlphaBetaEntry, ...] = ()

    _path: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _patterns_unique(self) -> AlphaBetaTable:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.entries):
            for pattern in entry.structures:
                key = pattern.casefold()
                if key in seen:
                    raise ValueError(
                        f"structure pattern {pattern!r} appears in entries[{seen[key]}] and "
                        f"entries[{index}]; each pattern may appear only once"
                    )
                seen[key] = index
        return self

    @property
    def path(self) -> str | None:
        """The file the table was loaded from, if any."""
        return self._path

    def lookup(
        self,
        structure_name: str,
        is_target: bool,
        overrides: Mapping[str, float] | None = None,
    ) -> AlphaBetaChoice:
        """Choose the α/β ratio for a structure.

        Parameters
        ----------
        structure_name
            The structure's standard (TG-263) name, e.g. ``SpinalCord_PRV05``.
            Matching is case-insensitive.
        is_target
            Whether the structure is a target (decides the default only: a
            table entry that matches the name wins over it).
        overrides
            Structure name or glob → α/β (Gy), from a protocol or the user.
            An exact name match beats a glob; among globs the first in the
            mapping's order wins.

        Returns
        -------
        AlphaBetaChoice

        Raises
        ------
        RadiobiologyError
            For an empty structure name or an override value that is not a
            finite number > 0.
        """
        if not isinstance(structure_name, str) or not structure_name.strip():
            raise RadiobiologyError(
                f"A 'structure_name' value of {structure_name!r} is invalid, "
                "it must be a non-empty structure name"
            )
        name = structure_name.strip()
        override = _find_override(name, overrides or {})
        if override is not None:
            return override
        for entry in self.entries:
            pattern = entry.matching_pattern(name)
            if pattern is not None:
                return AlphaBetaChoice(
                    alpha_beta_gy=float(entry.alpha_beta_gy),
                    origin=AlphaBetaOrigin.TABLE,
                    source=entry.source,
                    pattern=pattern,
                )
        if is_target:
            return AlphaBetaChoice(
                float(self.default_target_gy), AlphaBetaOrigin.DEFAULT_TARGET, self.default_target_source
            )
        return AlphaBetaChoice(
            float(self.default_normal_tissue_gy),
            AlphaBetaOrigin.DEFAULT_NORMAL_TISSUE,
            self.default_normal_tissue_source,
        )


def _find_override(name: str, overrides: Mapping[str, float]) -> AlphaBetaChoice | None:
    """The override for ``name``: exact (case-insensitive) key first, then the first glob."""
    exact = [key for key in overrides if key.casefold() == name.casefold()]
    globbed = [key for key in overrides if _matches(name, key)]
    for key in exact + globbed:
        value_gy = check_alpha_beta_gy(overrides[key], name=f"overrides[{key!r}]")
        return AlphaBetaChoice(
            alpha_beta_gy=value_gy,
            origin=AlphaBetaOrigin.OVERRIDE,
            source=f"override {key!r} = {value_gy:g} Gy given by the caller",
            pattern=key,
        )
    return None


# --------------------------------------------------------------------------- loading


def _format_loc(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _entry_hint(data: Any, loc: Sequence[int | str]) -> str:
    """`` (entry for [SpinalCord, ...])`` when the error is inside an entry."""
    if len(loc) >= 2 and loc[0] == "entries" and isinstance(loc[1], int):
        try:
            structures = data["entries"][loc[1]]["structures"]
        except (KeyError, IndexError, TypeError):
            return ""
        if isinstance(structures, list) and structures:
            return f" (the entry for {', '.join(map(str, structures))})"
    return ""


def _describe_validation_error(exc: ValidationError, data: Any) -> str:
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        where = f"'{_format_loc(loc)}'{_entry_hint(data, loc)}"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown field {where} (misspelled?); it is not allowed")
        elif error["type"] == "missing":
            problems.append(f"field {where} is missing; it is required")
        else:
            problems.append(f"field {where} = {error['input']!r}: {error['msg']}")
    return "invalid α/β table: " + "; ".join(problems)


def load_alpha_beta_table(path: str | PathLike[str] | None = None) -> AlphaBetaTable:
    """Load and validate an α/β table.

    Parameters
    ----------
    path
        A YAML file in the format of ``constraints/alpha_beta.yaml``; None for
        the packaged table
        (``importlib.resources.files("plancheck.constraints") / "alpha_beta.yaml"``).

    Returns
    -------
    AlphaBetaTable

    Raises
    ------
    ProtocolError
        If the file cannot be read, is not YAML, has duplicate keys, or does
        not validate; the message names the file and the field.
    """
    if path is None:
        resource = files("plancheck.constraints") / DEFAULT_ALPHA_BETA_RESOURCE
        label = str(resource)
        try:
            raw = resource.read_bytes()
        except OSError as exc:
            raise ProtocolError(f"cannot read the packaged α/β table: {exc}", label) from exc
        data = load_data_text(decode_utf8(raw, label, "α/β table"), label)
    else:
        label = str(path)
        data = load_data_file(path, what="α/β table")
    if not isinstance(data, dict):
        raise ProtocolError(
            f"the top level is a {type(data).__name__}; it must be a mapping with "
            "'version', 'default_target_gy', 'default_normal_tissue_gy', their sources "
            "and 'entries'",
            label,
        )
    try:
        table = AlphaBetaTable.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(_describe_validation_error(exc, data), label) from exc
    table._path = label
    return table


@lru_cache(maxsize=1)
def default_alpha_beta_table() -> AlphaBetaTable:
    """The packaged α/β table, loaded and validated once per process."""
    return load_alpha_beta_table()
