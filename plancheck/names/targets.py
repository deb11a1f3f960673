"""Target names: read a target ROI name (``PTVp1_6000``, ``GTV_Met_Lung``, ``PTV_Eso``) into
kind, role, site and dose (:func:`parse_target_name`), and tell a target from other ROIs
(:func:`is_target_roi`).

The role words (``Met``, ``Primary``, ``Node`` …) and primary sites are data, in the
``target_names`` section of ``structure_synonyms.yaml`` (:mod:`plancheck.names.nomenclature`).

References
----------
AAPM Report 263, "Standardizing Nomenclatures in Radiation Oncology" (Mayo C et
al., Int J Radiat Oncol Biol Phys 2018;100(4):1057-1066), §8 target nomenclature.
DICOM PS3.3 C.8.8.5 (ROI Name) and C.8.8.8 (RT ROI Interpreted Type).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from plancheck.names.nomenclature import TargetNameWords, default_synonyms

__all__ = ["TargetKind", "TargetRole", "TargetName", "parse_target_name", "is_target_roi"]

class TargetKind(StrEnum):
    """ICRU target volume type read from a name (IGTV and ICTV count as ITV)."""

    GTV = "GTV"
    CTV = "CTV"
    ITV = "ITV"
    PTV = "PTV"


class TargetRole(StrEnum):
    """What the target treats, as far as its name says."""

    PRIMARY = "primary"
    NODAL = "nodal"
    METASTASIS = "metastasis"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TargetName:
    """A target ROI name read into its parts (see :func:`parse_target_name`).

    Attributes
    ----------
    roi_name
        The name as exported.
    kind
        GTV, CTV, ITV or PTV; ``None`` when the name is not a target name.
    role
        primary, nodal, metastasis or unknown.
    site
        Free text for the anatomical site (``Lung``, ``Vert``, ``L4``) or the
        canonical primary site (``Esophagus`` for ``PTV_Eso``); ``None`` if absent.
    dose_gy
        Total dose written in the name, in Gy; ``None`` if absent or ambiguous.
    index
        The target's number (``PTVp2``, ``PTV_Met1`` → 2, 1), else ``None``.
    type_token
        The type as written in TG-263 terms: ``GTV``, ``CTV``, ``ITV``, ``IGTV``,
        ``ICTV``, ``PTV`` or ``PTV!`` (TG-263's PTV excluding higher-dose PTVs).
    classifier
        TG-263 classifier (``p``, ``n``, ``sb``, ``par``, ``v``, ``vas``) or
        plancheck's ``m``/``met``; lower case; ``None`` if absent.
    n_fractions
        Number of fractions when the name says ``20Gyx3``, else ``None``.
    dose_level
        ``High``, ``Mid``, ``Low`` … (TG-263 relative dose levels), else ``None``.
    derived
        True for a name with an operator (``PTV_6000-Rectum``, ``PTV1+PTV2``): an
        evaluation or optimisation structure built from targets.
    notes
        Why something was not read, or was read by a non-TG-263 convention.
    """

    roi_name: str
    kind: TargetKind | None = None
    role: TargetRole = TargetRole.UNKNOWN
    site: str | None = None
    dose_gy: float | None = None
    index: int | None = None
    type_token: str | None = None
    classifier: str | None = None
    n_fractions: int | None = None
    dose_level: str | None = None
    derived: bool = False
    notes: tuple[str, ...] = ()

    @property
    def is_target(self) -> bool:
        return self.kind is not None


_TYPE_HEAD = re.compile(r"(IGTV|ICTV|GTV|CTV|ITV|PTV!?)", re.IGNORECASE)
_KIND_OF_TYPE = {
    "GTV": TargetKind.GTV,
    "CTV": TargetKind.CTV,
    "ITV": TargetKind.ITV,
    "IGTV": TargetKind.ITV,
    "ICTV": TargetKind.ITV,
    "PTV": TargetKind.PTV,
    "PTV!": TargetKind.PTV,
}
# longest first; TG-263 §8: n, p, sb, par, v, vas; plancheck: m, met
_CLASSIFIERS = ("met", "vas", "par", "sb", "p", "n", "m", "v")
_ROLE_OF_CLASSIFIER = {
    "p": TargetRole.PRIMARY,
    "n": TargetRole.NODAL,
    "m": TargetRole.METASTASIS,
    "met": TargetRole.METASTASIS,
}
_DICOM_TARGET_TYPES = {"GTV": TargetKind.GTV, "CTV": TargetKind.CTV, "PTV": TargetKind.PTV, "ITV": TargetKind.ITV}
_NON_TARGET_TYPES = {
    "EXTERNAL", "ORGAN", "AVOIDANCE", "CONTROL", "SUPPORT", "FIXATION", "BOLUS", "MARKER",
    "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY", "DOSE_REGION", "DOSE_MEASUREMENT",
    "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD",
}
_DOSE_LEVEL = re.compile(r"(?:high|mid|low|intermediate)\d*")
_FRACTIONS = re.compile(r"^(\d+)(?:fx|fxs|fr|fractions?)$", re.IGNORECASE)
_QUALIFIERS = ("eval", "opt", "optimization", "total", "sum", "final")
_IMAGING = re.compile(r"^(?:(?:CT|MR|MRI|PET|CBCT|4DCT|SPECT|US)\d*)+$", re.IGNORECASE)
_WORD_NUMBER = re.compile(r"^([A-Za-z]+?)(\d+)$")
_GY = re.compile(r"^(\d+(?:\.\d+)?)(c?gy)$", re.IGNORECASE)
_GY_X_FX = re.compile(r"^(\d+(?:\.\d+)?)gyx(\d+)$", re.IGNORECASE)


@dataclass
class _Reading:
    roles: set[TargetRole] = field(default_factory=set)
    site: list[str] = field(default_factory=list)
    primary_site: str | None = None
    doses: list[tuple[float, int | None, str]] = field(default_factory=list)
    n_fractions: list[int] = field(default_factory=list)
    index: int | None = None
    dose_level: str | None = None
    notes: list[str] = field(default_factory=list)


def _read_number_as_dose(text: str, attached: bool, r: _Reading) -> None:
    """A bare number: a dose (cGy or Gy) or a target number, by TG-263 and plancheck rules."""
    if "." in text:
        r.doses.append((float(text), None, f"'{text}' read as Gy (a decimal number)"))
        return
    n = len(text)
    if n == 1:
        if r.index is None:
            r.index = int(text)
        else:
            r.notes.append(f"'{text}' not read (a second target number)")
    elif n == 2:
        r.doses.append((float(text), None, f"'{text}' read as Gy (two digits are not a plausible dose in cGy)"))
    elif n == 4 or (n == 3 and not attached):
        r.doses.append((int(text) / 100.0, None, ""))  # TG-263: dose in cGy by default
    else:
        r.notes.append(f"'{text}' not read: neither a target number nor a dose in a form plancheck accepts")


def _read_token(token: str, first: bool, words: TargetNameWords, r: _Reading) -> None:
    low = token.casefold()
    if not low:
        return
    m = _GY_X_FX.match(token)
    if m:
        per_fx, n_fx = float(m.group(1)), int(m.group(2))
        r.doses.append((per_fx * n_fx, n_fx, ""))
        return
    m = _GY.match(token)
    if m:
        value = float(m.group(1))
        r.doses.append((value / 100.0 if m.group(2).casefold() == "cgy" else value, None, ""))
        return
    if re.fullmatch(r"\d+(?:\.\d+)?", token):
        _read_number_as_dose(token, attached=False, r=r)
        return
    m = _FRACTIONS.match(token)
    if m:
        r.n_fractions.append(int(m.group(1)))
        return
    word, number = low, None
    m = _WORD_NUMBER.match(token)
    if m:
        word, number = m.group(1).casefold(), int(m.group(2))

    def is_word(options: Sequence[str]) -> bool:
        # single letters (T, N) only as the first token and without a number (T12 is a vertebra)
        return any(word == o.casefold() and (len(o) > 1 or (first and number is None)) for o in options)

    role = None
    if is_word(words.metastasis):
        role = TargetRole.METASTASIS
    elif is_word(words.nodal):
        role = TargetRole.NODAL
    elif is_word(words.primary):
        role = TargetRole.PRIMARY
    if role is not None:
        r.roles.add(role)
        if number is not None:
            if r.index is None:
                r.index = number
            else:
                r.notes.append(f"'{token}': a second target number, not read")
        return
    for site, site_words in words.primary_sites.items():
        if number is None and any(low == w.casefold() for w in site_words):
            r.roles.add(TargetRole.PRIMARY)
            r.primary_site = site
            return
    if _DOSE_LEVEL.fullmatch(low):
        r.dose_level = token
        return
    if low in _QUALIFIERS or _IMAGING.match(token):
        return
    if token[0].isdigit():
        r.notes.append(f"'{token}' not read (starts with a number but is not a dose form plancheck accepts)")
        return
    r.site.append(token)


# DICOM PS3.3 C.8.8.8: CONTROL "structure used in dose optimization", AVOIDANCE "region in which
# dose is to be minimized": helpers drawn around a target, never the target itself
_HELPER_TYPES = {"CONTROL", "AVOIDANCE"}


def _helper_word(token: str, words: TargetNameWords) -> bool:
    """``Ring``, ``Ring2``, ``Shell2cm``: a helper word, alone or followed by a number."""
    m = re.fullmatch(r"([^\W\d_]+)(\d.*)?", token)
    return m is not None and any(m.group(1).casefold() == w.casefold() for w in words.helper)


def parse_target_name(
    roi_name: str, interpreted_type: str = "", *, words: TargetNameWords | None = None
) -> TargetName:
    """Read a target ROI name: kind, role (primary / nodal / metastasis), site, dose.

    Accepted forms (case-insensitive; tokens separated by ``_``, spaces, or a ``-``
    directly after the type):

    * **type** first (TG-263 §8): ``GTV``, ``CTV``, ``ITV``, ``IGTV``, ``ICTV``,
      ``PTV``, ``PTV!``. A name not starting with one is not a target name, unless
      the RT ROI Interpreted Type is GTV/CTV/PTV (then the whole name is read as
      the rest, e.g. ``Met1_L4`` of type PTV).
    * **classifier** directly after the type: TG-263 ``p`` (primary), ``n``
      (nodal), ``sb``, ``par``, ``v``, ``vas`` (role unknown), and plancheck's
      ``m``/``met`` (metastasis): ``GTVp``, ``CTVn``, ``PTVm1``.
    * **number** directly after type/classifier: one digit is the target number
      (TG-263: ``PTV1``, ``GTVp2``); two digits are a dose in Gy (clinic usage,
      ``PTV60``; TG-263 would read a number here); four digits are cGy
      (``PTV5040`` = 50.4 Gy); three or five+ digits are not read.
    * **dose token** anywhere after an underscore: 3–4 digits = cGy (TG-263
      default unit: ``PTV_6000`` = 60 Gy, ``PTV_800`` = 8 Gy); ``60Gy``,
      ``50.4Gy``, ``5040cGy``; ``20Gyx3`` = 60 Gy in 3 fractions; a decimal
      ``50.4`` = Gy; two digits ``PTV_60`` = Gy (noted); one digit = target number.
      Two different doses in one name → dose not read.
    * **role words** (synonyms file ``target_names``): ``Met``, ``Mets``,
      ``Metastasis`` (``Met1`` = metastasis no. 1), ``Primary``, ``Prim``,
      ``Node``, ``LN``; ``T``/``N`` only right after the type and without a
      number (``GTV-T``; ``T12`` is a vertebra).
      Primary sites (``Eso``, ``Oesophagus`` …) make the role primary.
    * ``High``/``Mid``/``Low`` are TG-263 relative dose levels; ``Eval``/``Opt``
      and imaging tags (``CT1``, ``PET``) are ignored; ``3fx`` is a fraction
      number; other tokens starting with a letter form ``site`` (``Lung``,
      ``L4``), tokens starting with a digit that are no dose are noted and ignored.
    * ``-`` after the type's own tokens, or ``+``, mark a derived structure
      (``PTV_6000-Rectum``); ``-05`` (digits) is a crop margin and ignored.
    * a planning helper is not a target: an ROI of Interpreted Type ``CONTROL`` or
      ``AVOIDANCE``, or a name with a helper word (``target_names.helper``: ``PTV_Ring``,
      ``PTV_Shell2cm``); its ``kind`` is ``None`` and a note says why.

    Role is conservative: a name with no marker, or with markers that disagree
    (``PTVp_Met``), has role ``unknown``. A dose alone does not make a target
    primary (``PTV60`` and ``PTV_6000`` are ``unknown``): in an oligometastatic
    course a metastasis PTV is also named by its dose.

    Parameters
    ----------
    roi_name
        ROI Name (3006,0026).
    interpreted_type
        RT ROI Interpreted Type (3006,00A4), ``""`` if absent.
    words
        Role words; those of the built-in synonyms file when ``None``.

    Returns
    -------
    TargetName

    References
    ----------
    AAPM Report 263 (2018) §8, target nomenclature: target types, the classifiers
    n/p/sb/par/v/vas, spatially distinct targets numbered after type and
    classifier, dose last after an underscore in cGy unless a unit is given,
    relative levels High/Mid/Low, ``PTV!`` for a PTV excluding higher-dose PTVs.
    """
    words = words if words is not None else default_synonyms().target_names
    text = roi_name.strip()
    itype = interpreted_type.strip().upper()
    notes: list[str] = []
    if itype in _HELPER_TYPES:
        return TargetName(roi_name=roi_name, notes=(f"RT ROI Interpreted Type {itype}: a planning helper, not a target",))
    helper = next((t for t in re.split(r"[\s_\-+]+", text) if _helper_word(t, words)), None)
    if helper is not None and _TYPE_HEAD.match(text):
        return TargetName(roi_name=roi_name, notes=(f"'{helper}' names a planning helper (target_names.helper), not a target",))

    head = _TYPE_HEAD.match(text)
    if head is not None:
        type_token = head.group(1).upper()
        kind = _KIND_OF_TYPE[type_token]
        rest = text[head.end() :]
        if itype in _NON_TARGET_TYPES:
            notes.append(f"the name says {type_token} but RT ROI Interpreted Type is {itype}")
        elif itype in _DICOM_TARGET_TYPES and _DICOM_TARGET_TYPES[itype] is not kind:
            notes.append(f"the name says {type_token} but RT ROI Interpreted Type is {itype}; the name is used")
    elif itype in _DICOM_TARGET_TYPES:
        type_token = itype
        kind = _DICOM_TARGET_TYPES[itype]
        rest = "_" + text
        notes.append(f"kind from RT ROI Interpreted Type {itype} (the name has no target type)")
    else:
        return TargetName(roi_name=roi_name)

    r = _Reading(notes=notes)
    # classifier attached to the type
    classifier = None
    for c in _CLASSIFIERS:
        if rest[: len(c)].casefold() == c and (len(rest) == len(c) or not rest[len(c)].isalpha()):
            classifier = c
            rest = rest[len(c) :]
            break
    if classifier in _ROLE_OF_CLASSIFIER:
        r.roles.add(_ROLE_OF_CLASSIFIER[classifier])
    # number attached to type/classifier
    m = re.match(r"(\d+(?:\.\d+)?)(c?gy)?", rest, re.IGNORECASE)
    if m:
        if m.group(2):
            _read_token(m.group(0), first=False, words=words, r=r)
        else:
            _read_number_as_dose(m.group(1), attached=True, r=r)
        rest = rest[m.end() :]
    # a "-" straight after the head is a separator (PTV-Met1, GTV-T); later it is an operator
    if rest.startswith("-"):
        rest = "_" + rest[1:]
    derived = False
    op = re.search(r"[-+]", rest)
    main = rest
    if op is not None:
        main, after = rest[: op.start()], rest[op.end() :].strip()
        if op.group(0) == "-" and re.fullmatch(r"\d+", after):
            r.notes.append(f"'-{after}' read as a crop margin and ignored")
        else:
            derived = True
            r.notes.append(f"derived structure ('{op.group(0)}{after}' after the target's own name)")
    tokens = [t for t in re.split(r"[\s_]+", main) if t]
    for pos, tok in enumerate(tokens):
        _read_token(tok, first=(pos == 0), words=words, r=r)

    # role
    if len(r.roles) == 1:
        role = next(iter(r.roles))
    else:
        role = TargetRole.UNKNOWN
        if len(r.roles) > 1:
            r.notes.append("role markers disagree (" + ", ".join(sorted(x.value for x in r.roles)) + ")")
    # dose
    dose_gy = n_fx = None
    distinct = {round(d, 6) for d, _, _ in r.doses}
    if len(distinct) == 1:
        dose_gy, n_fx, how = r.doses[0]
        if how:
            r.notes.append(how)
    elif len(distinct) > 1:
        listed = ", ".join(f"{d:g} Gy" for d in sorted(distinct))
        r.notes.append(f"several doses in the name ({listed}); dose not read")
    if n_fx is None and len(set(r.n_fractions)) == 1:
        n_fx = r.n_fractions[0]
    elif len(set(r.n_fractions)) > 1 or (n_fx is not None and r.n_fractions and set(r.n_fractions) != {n_fx}):
        r.notes.append("several fraction numbers in the name; not read")
        n_fx = None
    if dose_gy is not None and not (0 < dose_gy <= 100):
        r.notes.append(f"{dose_gy:g} Gy is not a plausible target dose; dose not read")
        dose_gy = n_fx = None
    site = r.primary_site if r.primary_site and not r.site else ("_".join(r.site) or None)
    if r.primary_site and r.site:
        site = "_".join([r.primary_site, *r.site])
    return TargetName(
        roi_name=roi_name,
        kind=kind,
        role=role,
        site=site,
        dose_gy=dose_gy,
        index=r.index,
        type_token=type_token,
        classifier=classifier,
        n_fractions=n_fx,
        dose_level=r.dose_level,
        derived=derived,
        notes=tuple(r.notes),
    )


def is_target_roi(roi) -> bool:
    """True for a target volume (GTV/CTV/ITV/PTV) by its name or its RT ROI Interpreted Type.

    ``roi`` is anything with ``name`` and ``interpreted_type`` (a :class:`plancheck.model.Roi`).
    """
    return parse_target_name(roi.name, roi.interpreted_type).kind is not None
