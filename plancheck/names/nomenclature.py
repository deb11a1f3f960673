"""Structure nomenclature data: the AAPM TG-263 table and plancheck's synonyms file.

Two data files travel with plancheck in the ``plancheck.constraints`` package:

``tg263_nomenclature.csv``
    The AAPM TG-263 nomenclature worksheet of 2017-08-15 as published with the
    report (AAPM Report 263; Mayo C et al., Int J Radiat Oncol Biol Phys 2018),
    copied unchanged (ASCII, one row per structure: target type, categories,
    anatomic group, TG-263 primary name, reverse-order name, description, FMA id).
    717 structures, including templated names whose lowercase ``x`` runs are
    digits to fill in (``SpinalCord_PRVxx`` → ``SpinalCord_PRV05``,
    ``Bolus_xxmm`` → ``Bolus_03mm``, ``E-PTV_xxxx`` → ``E-PTV_5000``).

``structure_synonyms.yaml``
    plancheck's own data: names seen in clinics for the structures that matter to
    its protocols (``Lung_Total`` → ``Lungs``, ``Cord`` → ``SpinalCord`` …), other
    TG-263 structures accepted in place of a missing one (``Body`` for
    ``External``), and the words used to read target names
    (see :func:`plancheck.names.targets.parse_target_name`).

This module reads and validates both; :mod:`plancheck.names.structures` does the
matching. The default files are parsed once per process (cached).

References
----------
AAPM Report 263, "Standardizing Nomenclatures in Radiation Oncology", 2018,
§7 (non-target structures) and §8 (targets); worksheet
``TG263_Nomenclature_Worksheet_20170815``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from plancheck.datafile import load_data_text
from plancheck.errors import ProtocolError

__all__ = ["TEMPLATE_PLACEHOLDER", 
    "TG263_FILE",
    "SYNONYMS_FILE",
    "Tg263Structure",
    "StructureSynonyms",
    "TargetNameWords",
    "SynonymsFile",
    "load_tg263_table",
    "load_synonyms",
    "default_tg263_table",
    "default_synonyms",
]

TG263_FILE = "tg263_nomenclature.csv"
SYNONYMS_FILE = "structure_synonyms.yaml"

_CSV_COLUMNS = (
    "Target Type",
    "Major Category",
    "Minor Category",
    "Anatomic Group",
    "N Characters",
    "TG263-Primary Name",
    "TG-263-Reverse Order Name",
    "Description",
    "FMAID",
)

# Lowercase x runs that stand for digits in templated TG-263 names: after PRV/PTV
# ("SpinalCord_PRVxx", "Colon_PTVxx"), as a whole "_xxxx" token ("E-PTV_xxxx") or
# before "mm" ("Bolus_xxmm", "xxmm_Bolus"). Real words containing x (Cervix,
# Larynx, Cortex) do not match.
TEMPLATE_PLACEHOLDER = re.compile(r"(?<=PRV)x+|(?<=PTV)x+|(?:(?<=_)|^)x+(?=mm|_|$)")


@dataclass(frozen=True)
class Tg263Structure:
    """One row of the TG-263 worksheet.

    Attributes
    ----------
    primary_name
        TG-263 primary name, e.g. ``Lung_L``; may be a template (``SpinalCord_PRVxx``).
    reverse_name
        TG-263 reverse-order name, e.g. ``L_Lung``.
    target_type
        ``Anatomic``, ``Target``, ``PRV``, ``Derived``, ``Non_Anatomic`` … as in the worksheet.
    major_category, minor_category, anatomic_group, description
        As in the worksheet (``None`` or empty where the worksheet has none).
    fma_id
        Foundational Model of Anatomy id, or ``None``.
    """

    primary_name: str
    reverse_name: str
    target_type: str
    major_category: str
    minor_category: str
    anatomic_group: str
    description: str
    fma_id: int | None

    @property
    def is_template(self) -> bool:
        """True for names with digits to fill in (``SpinalCord_PRVxx``)."""
        return TEMPLATE_PLACEHOLDER.search(self.primary_name) is not None

    def template_pattern(self, reverse: bool = False) -> re.Pattern[str] | None:
        """A case-insensitive regex for instances of a templated name, or ``None``.

        Each placeholder run of n ``x`` becomes a group of exactly n digits.
        """
        name = self.reverse_name if reverse else self.primary_name
        if TEMPLATE_PLACEHOLDER.search(name) is None:
            return None
        parts: list[str] = []
        pos = 0
        for m in TEMPLATE_PLACEHOLDER.finditer(name):
            parts.append(re.escape(name[pos : m.start()]))
            parts.append(rf"(\d{{{len(m.group(0))}}})")
            pos = m.end()
        parts.append(re.escape(name[pos:]))
        return re.compile("".join(parts), re.IGNORECASE)

    def fill_template(self, digits: Sequence[str], reverse: bool = False) -> str:
        """The name with its placeholders replaced by ``digits`` (one string per run)."""
        name = self.reverse_name if reverse else self.primary_name
        it = iter(digits)
        return TEMPLATE_PLACEHOLDER.sub(lambda m: next(it), name)


def _open_data(name: str, path: str | PathLike[str] | None) -> tuple[str, str]:
    """Read a data file: ``(text, where)`` with ``where`` naming it in messages."""
    if path is None:
        resource = files("plancheck.constraints").joinpath(name)
        where = f"plancheck.constraints/{name}"
        try:
            return resource.read_text(encoding="utf-8"), where
        except OSError as exc:
            raise ProtocolError(f"cannot read the built-in data file: {exc}", where) from exc
    where = str(path)
    try:
        return Path(path).read_text(encoding="utf-8"), where
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where) from exc
    except OSError as exc:
        raise ProtocolError(f"cannot read the file: {exc.strerror or exc}", where) from exc


def _none_if_blank(value: str) -> str:
    value = value.strip()
    return "" if value == "None" else value


def load_tg263_table(path: str | PathLike[str] | None = None) -> tuple[Tg263Structure, ...]:
    """Read the TG-263 worksheet (CSV with the worksheet's header row).

    Parameters
    ----------
    path
        A CSV file; the built-in ``tg263_nomenclature.csv`` when ``None``.

    Returns
    -------
    tuple of Tg263Structure
        In file order.

    Raises
    ------
    ProtocolError
        Missing columns, an empty or duplicated primary name, an FMA id that is
        not an integer; the message names the file and the row.
    """
    text, where = _open_data(TG263_FILE, path)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ProtocolError(f"column(s) {', '.join(repr(c) for c in missing)} missing from the header", where)
    out: list[Tg263Structure] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        name = (row["TG263-Primary Name"] or "").strip()
        if not name:
            raise ProtocolError(f"row {line}: 'TG263-Primary Name' is empty", where)
        if name in seen:
            raise ProtocolError(f"row {line}: 'TG263-Primary Name' {name!r} appears twice", where)
        seen.add(name)
        fma = _none_if_blank(row["FMAID"] or "")
        try:
            fma_id = int(fma) if fma else None
        except ValueError:
            raise ProtocolError(f"row {line}: 'FMAID' is {fma!r}, it must be an integer or None", where) from None
        out.append(
            Tg263Structure(
                primary_name=name,
                reverse_name=(row["TG-263-Reverse Order Name"] or "").strip() or name,
                target_type=(row["Target Type"] or "").strip(),
                major_category=_none_if_blank(row["Major Category"] or ""),
                minor_category=_none_if_blank(row["Minor Category"] or ""),
                anatomic_group=_none_if_blank(row["Anatomic Group"] or ""),
                description=_none_if_blank(row["Description"] or ""),
                fma_id=fma_id,
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- synonyms file

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _no_duplicates(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for v in values:
        if not v:
            raise ValueError("empty name")
        key = v.casefold()
        if key in seen:
            raise ValueError(f"{v!r} is listed twice")
        seen.add(key)
    return values


class StructureSynonyms(_Strict):
    """One entry of ``structures``: a standard name and what clinics call it.

    Attributes
    ----------
    standard
        A TG-263 primary name, or an instance of a templated one (``SpinalCord_PRV05``).
    synonyms
        Exported ROI names that mean exactly this structure. Case, spaces, ``_``
        and ``.`` do not matter when matching (see ``normalize_name``).
    stand_ins
        Other TG-263 structures accepted in its place when it is absent, at the
        lowest precedence and said so in the result (``External`` ← ``Body``).
    note
        Free text for the reader.
    """

    standard: str = Field(min_length=1, max_length=64)
    synonyms: list[str] = Field(default_factory=list)
    stand_ins: list[str] = Field(default_factory=list)
    note: str | None = None

    _dedupe = field_validator("synonyms", "stand_ins")(_no_duplicates)


class TargetNameWords(_Strict):
    """Words read in target names (``target_names`` in the synonyms file).

    Matching is case-insensitive and whole-token (tokens are separated by ``_``,
    spaces or ``-``; a token may end in digits, ``Met1`` = metastasis no. 1).
    Single-letter words (``T``, ``N``) count only directly after the target type
    (``GTV_T``, ``CTV-N``).
    """

    metastasis: list[str] = Field(min_length=1)
    primary: list[str] = Field(min_length=1)
    nodal: list[str] = Field(min_length=1)
    primary_sites: dict[str, list[str]] = Field(default_factory=dict)
    helper: list[str] = Field(default_factory=list)

    _dedupe = field_validator("metastasis", "primary", "nodal", "helper")(_no_duplicates)

    @field_validator("metastasis", "primary", "nodal", "helper")
    @classmethod
    def _letters_only(cls, values: list[str]) -> list[str]:
        for v in values:
            if not v.isalpha():
                raise ValueError(f"{v!r} must be letters only (digits after a word are read as its number)")
        return values

    @field_validator("primary_sites")
    @classmethod
    def _site_words(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for site, words in value.items():
            _no_duplicates(words)
            for w in words:
                if not w.isalpha():
                    raise ValueError(f"site {site!r}: {w!r} must be letters only")
        return value


class SynonymsFile(_Strict):
    """Schema of ``structure_synonyms.yaml`` (strict: unknown keys are errors)."""

    format_version: Literal[1]
    source: str = Field(min_length=1)
    structures: list[StructureSynonyms]
    target_names: TargetNameWords
    # words that mark an exported ROI as an expansion (PRV) of an organ whose name is not a
    # listed PRV name ("SC_PRV07", "Cord_exp"); see plancheck.names.structures.read_expansion
    prv_words: list[str] = Field(default_factory=lambda: ["PRV"])

    @field_validator("prv_words")
    @classmethod
    def _prv_words(cls, values: list[str]) -> list[str]:
        _no_duplicates(values)
        for v in values:
            if not v.isalpha():
                raise ValueError(f"{v!r} must be letters only (a margin after the word is read as its number)")
        return values

    _origin: str = PrivateAttr(default="synonyms file")

    @property
    def origin(self) -> str:
        """Where the file was read from (named in error messages)."""
        return self._origin


def _describe_loc(loc: tuple[Any, ...], raw: Any) -> str:
    """``structures[3] (SpinalCord).synonyms[2]`` from a pydantic error location."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            label = None
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("standard"), str):
                    label = node["standard"]
            else:
                node = None
            if label:
                out += f" ({label})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _validation_message(exc: ValidationError, raw: Any) -> str:
    lines = []
    for err in exc.errors():
        where = _describe_loc(tuple(err["loc"]), raw)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt?); allowed keys are listed in the file header"
        lines.append(f"{where}: {msg}")
    return "invalid synonyms file: " + "; ".join(lines)


def load_synonyms(path: str | PathLike[str] | None = None) -> SynonymsFile:
    """Read and validate a structure synonyms file.

    Only the schema is checked here; that every ``standard`` is a TG-263 name and
    that no synonym names a different structure is checked when a
    :class:`~plancheck.names.structures.StructureNameMatcher` is built from it.

    Parameters
    ----------
    path
        A YAML file; the built-in ``structure_synonyms.yaml`` when ``None``.

    Raises
    ------
    ProtocolError
        YAML syntax errors (with line and column), unknown keys, missing or
        ill-typed fields; the message names the file and the field, e.g.
        ``structures[3] (SpinalCord).synonyms[1]: ...``.
    """
    text, where = _open_data(SYNONYMS_FILE, path)
    raw = load_data_text(text, where)
    if not isinstance(raw, dict):
        raise ProtocolError(
            "the file must be a mapping with keys format_version, source, structures, target_names", where
        )
    try:
        model = SynonymsFile.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(_validation_message(exc, raw), where) from None
    model._origin = where
    return model


@lru_cache(maxsize=1)
def default_tg263_table() -> tuple[Tg263Structure, ...]:
    """The built-in TG-263 table, read once per process."""
    return load_tg263_table()


@lru_cache(maxsize=1)
def default_synonyms() -> SynonymsFile:
    """The built-in synonyms file, read once per process."""
    return load_synonyms()
