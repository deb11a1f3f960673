"""Structure names: find a protocol's structures in an exported structure set.

A protocol names its structures with AAPM TG-263 standard names (``Lungs``,
``SpinalCord``, ``SpinalCord_PRV05``); an exported RT Structure Set uses whatever
the clinic typed (``LUNG_TOTAL``, ``Cord``, ``Lung L+R``). This module decides,
for one standard name, which exported ROI it is — or says why it cannot:

* :class:`StructureNameMatcher` matches by precedence (per-run user mapping >
  exact standard name > the name in other case/separators > TG-263 reverse-order
  name > a known synonym > a stand-in structure). Several ROIs at the best level
  give ``AMBIGUOUS``; plancheck never guesses between them.
* :func:`normalize_name` is the comparison key: case, spaces, ``_`` and ``.`` do
  not matter, ``-`` and ``+`` do (TG-263 uses them for "minus" and "plus").

Target names (``PTVp1_6000``) are read by :mod:`plancheck.names.targets`.

Data: the TG-263 worksheet of 2017-08-15 (AAPM Report 263, 2018), shipped
unchanged as ``plancheck/constraints/tg263_nomenclature.csv``, and plancheck's own
``structure_synonyms.yaml``; see :mod:`plancheck.names.nomenclature`. Both are
read once per process.

References
----------
AAPM Report 263, "Standardizing Nomenclatures in Radiation Oncology" (Mayo C et
al., Int J Radiat Oncol Biol Phys 2018;100(4):1057-1066), §7 non-target
nomenclature. DICOM PS3.3 C.8.8.5 (ROI Name) and C.8.8.8 (RT ROI Interpreted Type).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from plancheck.errors import ProtocolError, UsageError
from plancheck.names.nomenclature import TEMPLATE_PLACEHOLDER as _PLACEHOLDER_RUNS
from plancheck.names.nomenclature import (
    SynonymsFile,
    TargetNameWords,
    Tg263Structure,
    default_synonyms,
    default_tg263_table,
)

__all__ = [
    "normalize_name",
    "MatchStatus",
    "NameMatch",
    "PrvName",
    "prv_of",
    "Expansion",
    "read_expansion",
    "StructureNameMatcher",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- normalisation

_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
_SEPARATORS = re.compile(r"[\s_.]+")


def _canonical_number(text: str) -> str:
    whole, dot, frac = text.partition(".")
    return str(int(whole)) + dot + frac


@lru_cache(maxsize=8192)
def normalize_name(name: str) -> str:
    """The key under which two structure names are considered the same.

    * surrounding whitespace is ignored and case is folded (``casefold``);
    * spaces, ``_`` and ``.`` are removed (``Spinal Cord`` = ``SPINAL_CORD`` =
      ``SpinalCord``), except that a ``.`` between two digits is a decimal point
      (``0.5cm`` stays different from ``5cm``) and a separator between two numbers
      is kept as ``_`` (``Ev05_5000`` does not become ``ev55000``);
    * numbers lose leading zeros (``PRV05`` = ``PRV5``, ``Rib01_L`` = ``Rib1_L``);
    * ``-`` and ``+`` are kept: TG-263 uses them as operators (``Lungs-PTV`` is
      the lungs minus the PTV, not ``Lungs_PTV``).

    Distinct TG-263 structures keep distinct keys (``Lung_L`` → ``lungl``,
    ``Lungs`` → ``lungs``; ``SpinalCord_PRV05`` → ``spinalcordprv5``) with one
    exception in the 2017 worksheet, ``VB_S`` (sacral vertebra) and ``VBs``
    (vertebral bodies), which the matcher tells apart by their separators.

    Examples
    --------
    >>> normalize_name(" Lung L+R ")
    'lungl+r'
    >>> normalize_name("SpinalCord_PRV05") == normalize_name("spinal cord prv5")
    True
    """
    pieces = _NUMBER.split(name.strip().casefold())
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2:  # a number
            out.append(_canonical_number(piece))
            continue
        stripped = _SEPARATORS.sub("", piece)
        between_numbers = 0 < i < len(pieces) - 1
        if not stripped and piece and between_numbers:
            stripped = "_"
        out.append(stripped)
    return "".join(out)


def _strict_key(name: str) -> str:
    """Like :func:`normalize_name` but separators become one ``_`` (used only to tell
    apart names whose :func:`normalize_name` keys collide, e.g. ``VB_S``/``VBs``)."""
    pieces = _NUMBER.split(name.strip().casefold())
    return "".join(
        _canonical_number(p) if i % 2 else _SEPARATORS.sub("_", p) for i, p in enumerate(pieces)
    ).strip("_")


_SIDE_WORDS = {"l": ("L", "Lt", "Left"), "r": ("R", "Rt", "Right")}
_SIDE_OF_WORD = {w.casefold(): side for side, words in _SIDE_WORDS.items() for w in words}


def _laterality_variants(name: str, side: str) -> list[str]:
    """Other ways to write the side of ``name`` (``Lung_L`` → ``Left Lung``, ``Lung Lt`` …).

    Only a whole leading or trailing token is a side word; names without one give
    no variants, nor do names whose side word is the other side.
    """
    tokens = [t for t in _SEPARATORS.split(name.strip()) if t]
    if len(tokens) < 2:
        return []
    if _SIDE_OF_WORD.get(tokens[-1].casefold()) == side:
        base = tokens[:-1]
    elif _SIDE_OF_WORD.get(tokens[0].casefold()) == side:
        base = tokens[1:]
    else:
        return []
    out = []
    for word in _SIDE_WORDS[side]:
        out.append("_".join([*base, word]))
        out.append("_".join([word, *base]))
    return out


def _side_of_standard(name: str) -> str | None:
    m = re.search(r"_([LR])$", name)
    return m.group(1).lower() if m else None


# --------------------------------------------------------------------------- PRVs

# TG-263 PRV names: Organ_PRV, Organ_PRVxx (xx mm), Organ_PRVx, Organ_PRV_L, Organ_PRVxx_R
_PRV_NAME = re.compile(r"^(?P<organ>.+?)_PRV(?P<mm>\d*)(?P<side>_[LR])?$")


@dataclass(frozen=True)
class PrvName:
    """A TG-263 planning organ-at-risk volume name, read: the organ it expands (with its side,
    ``OpticNrv_L``) and the margin its name states (mm; ``None`` for ``SpinalCord_PRV``)."""

    name: str
    organ: str
    margin_mm: int | None

    def describe(self) -> str:
        margin = f"{self.margin_mm} mm margin" if self.margin_mm is not None else "margin not in its name"
        return f"{self.name}, a PRV of {self.organ} ({margin})"


def prv_of(standard_name: str) -> PrvName | None:
    """The PRV a TG-263 standard name denotes (``SpinalCord_PRV05`` → SpinalCord, 5 mm), or
    ``None`` when the name is not a PRV. Only standard names: an exported ROI name is first
    made one (:meth:`StructureNameMatcher.standard_name_of`: ``Cord_PRV`` → ``SpinalCord_PRV``).

    Examples
    --------
    >>> prv_of("SpinalCord_PRV05").margin_mm, prv_of("OpticNrv_PRV03_L").organ
    (5, 'OpticNrv_L')
    >>> prv_of("SpinalCord") is None
    True
    """
    m = _PRV_NAME.fullmatch(standard_name.strip())
    if m is None:
        return None
    return PrvName(standard_name.strip(), m["organ"] + (m["side"] or ""), int(m["mm"]) if m["mm"] else None)


_PLUS_MARGIN = re.compile(r"(?P<organ>.*?[^\s+])\s*\+\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>mm|cm)?")
_NAME_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:mm|cm)?|[^\W\d_]+|[^\w\s]+")
_MARGIN_TOKEN = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>mm|cm)?")


def _margin_mm(number: str, unit: str | None) -> int | float:
    value = float(number) * (10.0 if unit == "cm" else 1.0)
    return int(value) if value.is_integer() else value


@dataclass(frozen=True)
class Expansion:
    """An exported ROI name read as an expansion (PRV) of an organ, by :func:`read_expansion`.

    Attributes
    ----------
    organ
        The standard name of the organ when the rest of the name is exactly an organ's
        name or synonym (``SC_PRV07`` → ``SpinalCord``), else ``None``.
    mentioned
        Standard names of every organ some run of the name's words spells (``Cord`` in
        ``Cord_PRV_old``): the organs the ROI may be a PRV of.
    margin_mm
        The margin the name states (mm; ``Cord+0.7cm`` → 7), or ``None``.
    """

    organ: str | None
    mentioned: frozenset[str]
    margin_mm: int | float | None


def read_expansion(roi_name: str, prv_words: Sequence[str], organ_of) -> Expansion | None:
    """Read an ROI name as an organ expanded by a margin, or ``None`` when it is not one.

    An expansion is named by one of ``prv_words`` (``PRV``, ``exp`` …; as a word, or
    glued to an organ name: ``SCPRV07``) or by ``+`` and a number (``Cord+7mm``). A number
    after the word is the margin in mm (TG-263 ``SpinalCord_PRVxx``); elsewhere a margin
    needs its unit (``Cord 5mm PRV``, ``Cord+0.5cm``); ``Cord+7`` states no margin.
    ``organ_of`` reads a piece of the name as a standard name (or ``None``); a name none
    of whose pieces is an organ is not an expansion.
    """
    text = roi_name.strip().casefold()
    margin: int | float | None = None
    marked = True
    plus = _PLUS_MARGIN.fullmatch(text)
    if plus is not None:
        tokens = _NAME_TOKEN.findall(plus["organ"])
        if plus["unit"]:
            margin = _margin_mm(plus["n"], plus["unit"])
    else:
        tokens = []
        for token in _NAME_TOKEN.findall(text):
            if token in ("mm", "cm") and tokens and tokens[-1][-1].isdigit():
                tokens[-1] += token  # "5_mm"
                continue
            glued = next((w for w in prv_words if token != w and (token.endswith(w) or token.startswith(w))
                          and organ_of(token.removesuffix(w) if token.endswith(w) else token.removeprefix(w))), None)
            if glued is None:
                tokens.append(token)
            elif token.endswith(glued):
                tokens += [token.removesuffix(glued), glued]
            else:
                tokens += [glued, token.removeprefix(glued)]
        at = next((i for i, t in enumerate(tokens) if t in prv_words), None)
        if at is None:
            # no PRV word: a margin with its unit ("Cord_7mm") names an expansion; a bare
            # number ("SpinalCord_05") may (read only to keep the organ from being measured)
            numbers = [i for i, t in enumerate(tokens) if _MARGIN_TOKEN.fullmatch(t)]
            if len(numbers) != 1 or len(tokens) < 2:
                return None
            at = numbers[0]
            marked = bool(_MARGIN_TOKEN.fullmatch(tokens[at])["unit"])  # type: ignore[index]
            tokens.insert(at, "")
        del tokens[at]
        number = _MARGIN_TOKEN.fullmatch(tokens[at]) if at < len(tokens) else None
        if number is not None:
            margin = _margin_mm(number["n"], number["unit"] or "mm")
            del tokens[at]
        else:
            unit = next((i for i, t in enumerate(tokens) if (m := _MARGIN_TOKEN.fullmatch(t)) and m["unit"]), None)
            if unit is not None:
                m = _MARGIN_TOKEN.fullmatch(tokens.pop(unit))
                assert m is not None
                margin = _margin_mm(m["n"], m["unit"])
    words = [t for t in tokens if t.strip()]
    if not words:
        return None
    whole = organ_of("_".join(words))
    mentioned = set()
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            std = organ_of("_".join(words[i:j]))
            if std is not None and prv_of(std) is None:
                mentioned.add(std)
    if whole is not None and prv_of(whole) is not None:
        whole = None  # a PRV of a PRV is not read
    if not mentioned:
        return None
    return Expansion(whole if marked else None, frozenset(mentioned), margin if marked else None)


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class _Standard:
    """Everything known about one standard name."""

    name: str
    tg263: Tg263Structure | None  # None: not a TG-263 name
    reverse_name: str | None  # TG-263 reverse-order name, when different
    synonyms: Mapping[str, str]  # normalize_name(key) -> the synonym as written
    listed_synonyms: tuple[str, ...]  # the synonyms file's own list (for messages)
    stand_ins: tuple[str, ...]


@dataclass
class _Index:
    """Lookup tables built once from the TG-263 table and a synonyms file."""

    table: dict[str, Tg263Structure] = field(default_factory=dict)
    templates: list[tuple[Tg263Structure, re.Pattern[str], re.Pattern[str]]] = field(default_factory=list)
    standards: dict[str, _Standard] = field(default_factory=dict)
    # normalize_name key -> standard names whose name / reverse-order name has that key
    by_name: dict[str, set[str]] = field(default_factory=dict)
    by_reverse: dict[str, set[str]] = field(default_factory=dict)
    by_synonym: dict[str, str] = field(default_factory=dict)
    words: TargetNameWords | None = None
    prv_words: tuple[str, ...] = ()
    # keys two standards share at the same level (resolved by _strict_key), for tests/docs
    name_collisions: list[tuple[str, ...]] = field(default_factory=list)
    # generated laterality variants dropped because they belong to another structure
    dropped_variants: list[tuple[str, str]] = field(default_factory=list)

    # -- building -------------------------------------------------------------------

    @classmethod
    def build(cls, table: Sequence[Tg263Structure], synonyms: SynonymsFile, where: str) -> _Index:
        idx = cls(words=synonyms.target_names,
                  prv_words=tuple(sorted({w.casefold() for w in synonyms.prv_words}, key=len, reverse=True)))
        for row in table:
            idx.table[row.primary_name] = row
            if row.is_template:
                pat, rev = _template_key_regex(row, False), _template_key_regex(row, True)
                idx.templates.append((row, pat, rev))
        # 1. every concrete TG-263 name is a standard
        for row in table:
            if not row.is_template:
                idx._add_names(row.primary_name, row, row.reverse_name)
        # 2. the synonyms file: template instances become standards; synonyms attach
        seen: set[str] = set()
        for pos, entry in enumerate(synonyms.structures):
            label = f"structures[{pos}] ({entry.standard})"
            if entry.standard in seen:
                raise ProtocolError(f"{label}.standard: {entry.standard!r} has two entries; merge them", where)
            seen.add(entry.standard)
            row, reverse = idx._tg263_of(entry.standard)
            if row is None:
                hint = idx._closest_tg263(entry.standard)
                raise ProtocolError(
                    f"{label}.standard: {entry.standard!r} is not a TG-263 primary name"
                    + (f" (did you mean {hint!r}?)" if hint else ""),
                    where,
                )
            if entry.standard not in idx.by_name.get(normalize_name(entry.standard), ()):
                idx._add_names(entry.standard, row, reverse)
        for pos, entry in enumerate(synonyms.structures):
            label = f"structures[{pos}] ({entry.standard})"
            idx._attach(entry.standard, entry.synonyms, entry.stand_ins, label, where)
        # 3. laterality variants for every left/right standard
        for name in list(idx.standards):
            side = _side_of_standard(name)
            if side is None:
                continue
            std = idx.standards[name]
            sources = [name, *(std.reverse_name and [std.reverse_name] or []), *std.listed_synonyms]
            for src in sources:
                for variant in _laterality_variants(src, side):
                    idx._add_variant(name, variant)
        for key, names in idx.by_name.items():
            if len(names) > 1:
                idx.name_collisions.append(tuple(sorted(names)))
        return idx

    def _add_names(self, name: str, row: Tg263Structure | None, reverse: str | None) -> None:
        reverse = reverse if reverse and reverse != name else None
        self.standards[name] = _Standard(name, row, reverse, {}, (), ())
        self.by_name.setdefault(normalize_name(name), set()).add(name)
        if reverse:
            self.by_reverse.setdefault(normalize_name(reverse), set()).add(name)

    def _attach(self, name: str, synonyms: Iterable[str], stand_ins: Iterable[str], label: str, where: str) -> None:
        std = self.standards[name]
        own = normalize_name(name)
        keyed: dict[str, str] = dict(std.synonyms)
        listed: list[str] = []
        for i, syn in enumerate(synonyms):
            key = normalize_name(syn)
            if key == own:
                continue  # the standard name written differently: matched anyway
            other = self._owner(key, syn)
            if other is not None and other != name:
                raise ProtocolError(
                    f"{label}.synonyms[{i}]: {syn!r} is the TG-263 structure {other!r}, not {name!r}; "
                    f"remove it (a different structure is never a synonym; use stand_ins to accept it in its place)",
                    where,
                )
            claimed = self.by_synonym.get(key)
            if claimed is not None and claimed != name:
                raise ProtocolError(
                    f"{label}.synonyms[{i}]: {syn!r} is already a synonym of {claimed!r}; "
                    "a name can mean one structure only",
                    where,
                )
            self.by_synonym[key] = name
            keyed.setdefault(key, syn)
            listed.append(syn)
        checked_ins: list[str] = []
        for i, other in enumerate(stand_ins):
            canon = self.canonical(other)
            if canon is None:
                raise ProtocolError(f"{label}.stand_ins[{i}]: {other!r} is not a TG-263 name", where)
            if canon == name:
                raise ProtocolError(f"{label}.stand_ins[{i}]: {other!r} is the structure itself", where)
            checked_ins.append(canon)
        self.standards[name] = _Standard(
            name, std.tg263, std.reverse_name, keyed, tuple(listed), tuple(checked_ins)
        )

    def _add_variant(self, name: str, variant: str) -> None:
        key = normalize_name(variant)
        std = self.standards[name]
        if key == normalize_name(name) or key in std.synonyms:
            return
        other = self._owner(key, variant)
        claimed = self.by_synonym.get(key)
        if (other is not None and other != name) or (claimed is not None and claimed != name):
            self.dropped_variants.append((name, variant))
            return
        self.by_synonym[key] = name
        self.standards[name] = _Standard(
            name, std.tg263, std.reverse_name, {**std.synonyms, key: variant}, std.listed_synonyms, std.stand_ins
        )

    def _owner(self, key: str, raw: str) -> str | None:
        """The standard whose TG-263 name or reverse-order name has this key, if any."""
        for level in (self.by_name, self.by_reverse):
            names = level.get(key)
            if names:
                return self._pick(names, raw)
        return self._template_instance(raw)

    @staticmethod
    def _pick(names: set[str], raw: str) -> str | None:
        if len(names) == 1:
            return next(iter(names))
        strict = _strict_key(raw)
        hits = [n for n in names if _strict_key(n) == strict]
        return hits[0] if len(hits) == 1 else None

    # -- look-ups -----------------------------------------------------------------------

    def _tg263_of(self, name: str) -> tuple[Tg263Structure | None, str | None]:
        """The TG-263 row and reverse-order name of a primary name or template instance."""
        row = self.table.get(name)
        if row is not None and not row.is_template:
            return row, row.reverse_name
        for tmpl, _, _ in self.templates:
            pattern = tmpl.template_pattern()
            assert pattern is not None
            m = pattern.fullmatch(name)
            if m and tmpl.fill_template(m.groups()) == name:
                return tmpl, tmpl.fill_template(m.groups(), reverse=True)
        return None, None

    def _template_instance(self, raw: str) -> str | None:
        """``SpinalCord_PRV05`` for ``spinal cord prv5``, ``PRV05_SpinalCord`` …"""
        key = normalize_name(raw)
        if not any(ch.isdigit() for ch in key):
            return None
        for tmpl, primary, reverse in self.templates:
            for pattern in (primary, reverse):
                m = pattern.fullmatch(key)
                if m:
                    widths = [len(x.group(0)) for x in _PLACEHOLDER_RUNS.finditer(tmpl.primary_name)]
                    digits = [g.zfill(w) for g, w in zip(m.groups(), widths, strict=True)]
                    if all(len(d) == w for d, w in zip(digits, widths, strict=True)):
                        return tmpl.fill_template(digits)
        return None

    def canonical(self, name: str) -> str | None:
        """The standard name ``name`` spells (any case/separators), or ``None``."""
        names = self.by_name.get(normalize_name(name))
        if names:
            return self._pick(names, name)
        return self._template_instance(name)

    def standard(self, name: str) -> _Standard:
        """The standard record for ``name``; built on the fly for names not indexed
        (a template instance such as ``Brainstem_PRV03``, or a non-TG-263 name)."""
        std = self.standards.get(name)
        if std is not None:
            return std
        return _standard_on_the_fly(self, name)

    def closest(self, key: str, candidates: Iterable[str], n: int = 3) -> list[str]:
        return difflib.get_close_matches(key, list(candidates), n=n, cutoff=0.75)

    def _closest_tg263(self, name: str) -> str | None:
        keys = {normalize_name(r): r for r in self.table}
        hit = difflib.get_close_matches(normalize_name(name), list(keys), n=1, cutoff=0.7)
        return keys[hit[0]] if hit else None


def _template_key_regex(row: Tg263Structure, reverse: bool) -> re.Pattern[str]:
    """A regex over :func:`normalize_name` keys for instances of a templated name
    (``spinalcordprv5`` for ``SpinalCord_PRVxx``); leading zeros are already gone
    from the key, so each placeholder accepts 1..n digits."""
    name = row.reverse_name if reverse else row.primary_name
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER_RUNS.finditer(name):
        parts.append(re.escape(normalize_name(name[pos : m.start()])))
        parts.append(rf"_?(\d{{1,{len(m.group(0))}}})_?")
        pos = m.end()
    parts.append(re.escape(normalize_name(name[pos:])))
    return re.compile("".join(parts))


def _standard_on_the_fly(idx: _Index, name: str) -> _Standard:
    row, reverse = idx._tg263_of(name)
    variants: dict[str, str] = {}
    side = _side_of_standard(name)
    if side is not None:
        for src in [name, *([reverse] if reverse else [])]:
            for v in _laterality_variants(src, side):
                key = normalize_name(v)
                owner = idx._owner(key, v)
                if key != normalize_name(name) and owner in (None, name) and idx.by_synonym.get(key) in (None, name):
                    variants.setdefault(key, v)
    return _Standard(name, row, reverse if reverse != name else None, variants, (), ())


@lru_cache(maxsize=1)
def _default_index() -> _Index:
    synonyms = default_synonyms()
    return _Index.build(default_tg263_table(), synonyms, synonyms.origin)


# --------------------------------------------------------------------------- matching


class MatchStatus(StrEnum):
    """Outcome of looking for one standard structure in a structure set."""

    MATCHED = "MATCHED"
    MISSING = "MISSING"
    AMBIGUOUS = "AMBIGUOUS"


@dataclass(frozen=True)
class NameMatch:
    """Which exported ROI is a protocol's structure, and how that was decided.

    Attributes
    ----------
    standard_name
        The name asked for (``Lungs``).
    status
        MATCHED, MISSING or AMBIGUOUS.
    roi_name
        The exported ROI name when MATCHED, else ``None``.
    candidates
        The competing ROI names when AMBIGUOUS (in structure-set order), else ``()``.
    how
        How the ROI was recognised: ``"user mapping"``, ``"exact TG-263 name"``,
        ``"synonym 'Lung_Total'"`` …; for AMBIGUOUS the level the candidates share.
    reason
        For MISSING and AMBIGUOUS, a sentence a dosimetrist can act on; ``""`` when MATCHED.
    shadowed
        ROIs that also looked like the structure at a lower precedence and were not
        used (``Lungs`` matched exactly while ``Lung_Total`` is also present).
    """

    standard_name: str
    status: MatchStatus
    roi_name: str | None = None
    candidates: tuple[str, ...] = ()
    how: str = ""
    reason: str = ""
    shadowed: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return self.status is MatchStatus.MATCHED


def _quote_list(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (", …" if len(names) > limit else "")


class StructureNameMatcher:
    """Finds protocol structures (TG-263 names) among exported ROI names.

    Parameters
    ----------
    mapping
        Per-run overrides ``{standard_name: exported_roi_name}``; they take
        precedence over everything else and are never second-guessed.
    table
        TG-263 rows; the built-in worksheet when ``None``.
    synonyms
        A validated synonyms file; the built-in ``structure_synonyms.yaml`` when ``None``.

    Raises
    ------
    UsageError
        A mapping key or value that is not a non-empty string.
    ProtocolError
        A synonyms file whose standard names are not TG-263 names, or whose
        synonyms name another TG-263 structure or two structures.

    Notes
    -----
    Precedence, highest first (several ROIs at the best level → AMBIGUOUS):

    1. user mapping;
    2. the exact standard name (surrounding whitespace ignored);
    3. the standard name in other case or separators (:func:`normalize_name`);
    4. the TG-263 reverse-order name (``L_Lung`` for ``Lung_L``);
    5. a synonym from the synonyms file, or the side written differently
       (``Left Lung``, ``Lung_Lt``) for a left/right structure;
    6. a stand-in: another TG-263 structure the synonyms file accepts in its
       place (``Body`` for ``External``).

    Built-in data are indexed once per process; a matcher with a mapping shares them.
    """

    def __init__(
        self,
        mapping: Mapping[str, str] | None = None,
        *,
        table: Sequence[Tg263Structure] | None = None,
        synonyms: SynonymsFile | None = None,
    ) -> None:
        if table is None and synonyms is None:
            self._idx = _default_index()
        else:
            synonyms = synonyms if synonyms is not None else default_synonyms()
            self._idx = _Index.build(
                table if table is not None else default_tg263_table(), synonyms, synonyms.origin
            )
        self._expansions: dict[str, Expansion | None] = {}
        self._mapping: dict[str, str] = {}
        for key, value in (mapping or {}).items():
            if not isinstance(key, str) or not key.strip():
                raise UsageError(f"structure mapping: key {key!r} must be a structure name")
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"structure mapping: {key!r} maps to {value!r}; it must be an exported ROI name")
            self._mapping[key.strip()] = value

    # -- public ------------------------------------------------------------------------

    def canonical_name(self, name: str) -> str | None:
        """The TG-263 name that ``name`` spells in any case or separators
        (``"spinal cord"`` → ``SpinalCord``, ``"SpinalCord_PRV5"`` → ``SpinalCord_PRV05``),
        or ``None`` when it is not a TG-263 name."""
        return self._idx.canonical(name)

    def standard_name_of(self, roi_name: str) -> str | None:
        """Which standard structure an exported ROI name denotes, or ``None``.

        Looks at TG-263 names (any case/separators), TG-263 reverse-order names,
        templated names with digits (``Cord`` PRVs), synonyms and side variants;
        stand-ins are not used (``BODY`` is ``Body``, not ``External``) and the
        per-run mapping is consulted first.
        """
        for std, roi in self._mapping.items():
            if roi == roi_name or normalize_name(roi) == normalize_name(roi_name):
                return self._canon_or_self(std)
        key = normalize_name(roi_name)
        if not key:
            return None
        for level in (self._idx.by_name, self._idx.by_reverse):
            names = level.get(key)
            if names:
                return self._idx._pick(names, roi_name)
        inst = self._idx._template_instance(roi_name)
        if inst is not None:
            return inst
        return self._idx.by_synonym.get(key)

    def other_prvs(self, standard_name: str, roi_names: Sequence[str]) -> list[tuple[str, PrvName]]:
        """Exported ROIs that are a PRV of the same organ as the PRV ``standard_name`` but not
        that PRV (another margin, or a margin not in the name): ``[(roi name, PrvName)]`` in
        structure-set order; ``[]`` when ``standard_name`` is not a PRV.

        >>> StructureNameMatcher().other_prvs("SpinalCord_PRV05", ["SpinalCord", "Cord_PRV", "SpinalCord_PRV03"])[0][0]
        'Cord_PRV'
        """
        wanted = prv_of(self._canon_or_self(standard_name))
        if wanted is None:
            return []
        out = []
        for roi in roi_names:
            std = self.standard_name_of(roi)
            other = prv_of(std) if std else None
            if other is None and std is None:
                read = self.expansion_of(roi)
                if read is not None and wanted.organ in read.mentioned:
                    other = PrvName(roi.strip(), wanted.organ, read.margin_mm)
            if other is not None and other.organ == wanted.organ and other.name != wanted.name:
                out.append((roi, other))
        return out

    def paired_sides(self, standard_name: str) -> tuple[str, str] | None:
        """The TG-263 left and right structures of a paired organ's both-sides name
        (``Lungs`` → ``Lung_L``, ``Lung_R``; ``Kidneys``), or ``None``.

        >>> StructureNameMatcher().paired_sides("Lungs")
        ('Lung_L', 'Lung_R')
        """
        canon = self._canon_or_self(standard_name)
        if not canon.endswith("s"):
            return None
        left, right = canon[:-1] + "_L", canon[:-1] + "_R"
        return (left, right) if left in self._idx.table and right in self._idx.table else None

    def expansion_of(self, roi_name: str) -> Expansion | None:
        """An exported ROI name that is not a known structure name, read as a PRV of an organ
        (:func:`read_expansion`: ``SC_PRV07``, ``PRV_SC``, ``Cord+7mm``, ``Cord_exp``), or ``None``.

        >>> StructureNameMatcher().expansion_of("SC_PRV07").margin_mm
        7
        """
        if roi_name not in self._expansions:
            self._expansions[roi_name] = read_expansion(roi_name, self._idx.prv_words, self.standard_name_of)
        return self._expansions[roi_name]

    def match(self, standard_name: str, roi_names: Sequence[str]) -> NameMatch:
        """Find ``standard_name`` among the exported ``roi_names``.

        Parameters
        ----------
        standard_name
            A TG-263 name (``Lungs``, ``SpinalCord_PRV05``); other names are matched
            by exact name and case/separators only.
        roi_names
            ROI Name (3006,0026) of every ROI of the structure set, in order; a
            name present twice counts as two ROIs.

        Returns
        -------
        NameMatch
        """
        if isinstance(roi_names, str):
            raise UsageError("roi_names must be a sequence of ROI names, not one string")
        wanted = standard_name.strip()
        mapped = self._mapped(wanted)
        if mapped is not None:
            return self._match_mapping(wanted, mapped, roi_names)

        canon = self._canon_or_self(wanted)
        std = self._idx.standard(canon)
        is_tg263 = std.tg263 is not None
        own_key = normalize_name(canon)
        collision = len(self._idx.by_name.get(own_key, ())) > 1
        reverse_key = normalize_name(std.reverse_name) if std.reverse_name else None
        stand_ins = set(std.stand_ins)
        wanted_prv = prv_of(canon)

        # level -> list of (roi, description)
        levels: dict[int, list[tuple[str, str]]] = {}
        for roi in roi_names:
            text = roi.strip()
            key = normalize_name(roi)
            level = None
            desc = ""
            if text == canon:
                level, desc = 1, ("exact TG-263 name" if is_tg263 else "exact name")
            elif key == own_key and (not collision or _strict_key(roi) == _strict_key(canon)):
                level = 2
                desc = f"{'TG-263 ' if is_tg263 else ''}name in other case or separators ('{text}')"
            elif reverse_key is not None and key == reverse_key and (
                len(self._idx.by_reverse.get(key, ())) <= 1 or _strict_key(roi) == _strict_key(std.reverse_name or "")
            ):
                level, desc = 3, f"TG-263 reverse-order name '{text}'"
            elif std.tg263 is not None and std.tg263.is_template and self._idx._template_instance(roi) == canon:
                level, desc = 3, f"TG-263 name written differently ('{text}')"
            elif key in std.synonyms:
                written = std.synonyms[key]
                if written in std.listed_synonyms:
                    desc = f"synonym '{written}'"
                else:
                    desc = f"side written differently ('{text}')"
                level = 4
            elif wanted_prv is not None and self._reads_as(roi, wanted_prv):
                level = 4
                margin = f"a {wanted_prv.margin_mm} mm margin" if wanted_prv.margin_mm is not None else "no margin stated"
                desc = f"PRV name read as {wanted_prv.organ} with {margin} ('{text}')"
            elif stand_ins:
                other = self._idx.canonical(roi) or self._idx.by_synonym.get(key)
                if other in stand_ins:
                    level = 5
                    desc = f"stand-in: TG-263 structure {other} ('{text}') accepted in place of {canon}"
            if level is not None:
                levels.setdefault(level, []).append((roi, desc))

        if not levels:
            return NameMatch(canon, MatchStatus.MISSING, reason=self._missing_reason(canon, std, roi_names))
        best = min(levels)
        hits = levels[best]
        shadowed = tuple(roi for lvl in sorted(levels) if lvl != best for roi, _ in levels[lvl])
        if len(hits) == 1:
            roi, desc = hits[0]
            if shadowed:
                log.debug("%s: matched %r (%s); also similar: %s", canon, roi, desc, shadowed)
            return NameMatch(canon, MatchStatus.MATCHED, roi_name=roi, how=desc, shadowed=shadowed)
        names = tuple(roi for roi, _ in hits)
        level_text = {
            1: "all carry the exact name",
            2: "the name in different case or separators",
            3: "TG-263 reverse-order names",
            4: "known synonyms",
            5: "stand-ins",
        }[best]
        same = " (the same name more than once)" if len({r.strip() for r in names}) == 1 else ""
        reason = (
            f"{len(names)} structures could be {canon}: {_quote_list(names)}{same} — "
            f"add a mapping {canon}: <ROI name> to say which one"
        )
        return NameMatch(
            canon, MatchStatus.AMBIGUOUS, candidates=names, how=level_text, reason=reason, shadowed=shadowed
        )

    # -- helpers -----------------------------------------------------------------------

    def _reads_as(self, roi: str, prv: PrvName) -> bool:
        """True when ``roi`` is no known structure name and reads exactly as ``prv``: the
        organ's name or synonym with a PRV word and the same margin (``SpinalCord_PRV5mm``)."""
        if self.standard_name_of(roi) is not None:
            return False
        read = self.expansion_of(roi)
        return read is not None and read.organ == prv.organ and read.margin_mm == prv.margin_mm

    def _canon_or_self(self, name: str) -> str:
        return self._idx.canonical(name) or name.strip()

    def _mapped(self, wanted: str) -> str | None:
        if wanted in self._mapping:
            return self._mapping[wanted]
        key = normalize_name(wanted)
        hits = [v for k, v in self._mapping.items() if normalize_name(k) == key]
        return hits[0] if len(hits) == 1 else None

    def _match_mapping(self, wanted: str, mapped: str, roi_names: Sequence[str]) -> NameMatch:
        canon = self._canon_or_self(wanted)
        exact = [r for r in roi_names if r == mapped or r.strip() == mapped.strip()]
        if len(exact) == 1:
            return NameMatch(canon, MatchStatus.MATCHED, roi_name=exact[0], how="user mapping")
        loose = exact or [r for r in roi_names if normalize_name(r) == normalize_name(mapped)]
        if len(loose) == 1:
            return NameMatch(
                canon, MatchStatus.MATCHED, roi_name=loose[0], how=f"user mapping ('{mapped}' ≈ '{loose[0]}')"
            )
        if len(loose) > 1:
            return NameMatch(
                canon,
                MatchStatus.AMBIGUOUS,
                candidates=tuple(loose),
                how="user mapping",
                reason=(
                    f"the mapping says {canon} is '{mapped}', and {len(loose)} structures have that name: "
                    f"{_quote_list(loose)} — rename one of them in the structure set"
                ),
            )
        return NameMatch(
            canon,
            MatchStatus.MISSING,
            how="user mapping",
            reason=f"the mapping says {canon} is '{mapped}', but the structure set has no structure of that name",
        )

    def _missing_reason(self, canon: str, std: _Standard, roi_names: Sequence[str]) -> str:
        known = [*([std.reverse_name] if std.reverse_name else []), *std.listed_synonyms]
        if known:
            more = ", …" if len(known) > 5 else ""
            head = f"no structure named {canon} or a known synonym ({', '.join(known[:5])}{more})"
        else:
            head = f"no structure named {canon}"
        stand = f"; {' or '.join(std.stand_ins)} would also be accepted" if std.stand_ins else ""
        reason = f"{head} in the structure set{stand}"
        keys = {normalize_name(r): r for r in roi_names}
        own = normalize_name(canon)
        similar = [keys[k] for k in self._idx.closest(own, keys)]
        similar += [r for k, r in keys.items() if own and own in k and r not in similar]
        if similar:
            reason += (
                f"; similar names present: {_quote_list(similar[:3])} — if one of them is {canon}, "
                f"add a mapping {canon}: <ROI name>"
            )
        return reason
