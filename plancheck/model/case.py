"""The case file: clinical context a plan check needs but DICOM does not carry.

A small YAML (or JSON) file, given with ``--case FILE`` or found as ``case.yaml``
next to the export::

    histology: squamous_cell_carcinoma       # or adenocarcinoma, other
    intent: curative                          # curative | palliative
    primary:
      diagnosis_date: 2025-01-06
      target: PTVp                            # the PTV treating the primary (optional)
    presentation: synchronous                 # synchronous | metachronous
    omd_type: de_novo                         # de_novo | repeat | induced (ESTRO/EORTC 2020)
    disease_free_interval_months: null        # metachronous: months from primary treatment to metastasis
    metastases:
      - organ: lung
        site: right lower lobe
        size_mm: 18
        detected_date: 2025-01-06
        target: PTV_Met_Lung                  # target structure that treats it (null: untreated)
      - organ: bone
        site: T8 vertebral body
        size_mm: 20
        target: PTV_Met_Vert
    extra_regional_node_stations: 0           # involved extra-regional lymph-node stations
    systemic_therapy:
      agents: [paclitaxel, cisplatin, camrelizumab]
      cycles: 4
      start_date: 2025-01-20
      end_date: 2025-04-10
      ongoing_during_rt: false
      response_at_restaging: PR               # CR | PR | SD | PD
    concurrent_chemotherapy: false
    concurrent_immunotherapy: false
    restaging:
      modality: FDG-PET/CT
      date: 2025-04-28
      progression: false
      new_lesions: 0
      brain_imaging: MRI
    courses:                                  # optional: the plans that are courses of this treatment
      - plan: C1_Eso                          # RT Plan Label (or SOP Instance UID)
        technique: conventional               # conventional | sbrt (SBRT/SABR/SRS: stereotactic)
        intent: curative                      # curative | palliative
      - plan: C2_LungMet
        technique: sbrt

``courses``: when given, only the listed plans are courses of the treatment (other
plans of the export, e.g. alternative plans, are left out and the report says so), and
each course's ``technique`` / ``intent`` adds to its numbers (consensus §5.2): a course
declared ``sbrt`` is SBRT whatever its numbers; every course of ≥ 4 Gy/fx in ≤ 12 fractions
is SBRT whatever its declaration, except a single 8 Gy fraction declared ``palliative``; a
declaration that contradicts the numbers is reported (INT-FRACTIONATION) and the SBRT limits
are graded. A course declared ``conventional`` without numbers in its plan is placed by the
declaration (:attr:`plancheck.rules.context.CourseInfo.is_sbrt`).

Unknown keys are errors; every field is optional where the clinic may not know
it, and rules that need a missing field report NOT_EVALUATED with the reason.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plancheck.datafile import load_data_text, read_data_text
from plancheck.errors import CaseFileError, ProtocolError
from plancheck.model.case_files import CASE_FILE_NAMES, find_case_file  # noqa: F401 - part of this module's API

__all__ = [
    "Case", "CourseDeclaration", "Lesion", "Primary", "SystemicTherapy", "Restaging", "load_case", "find_case_file",
    "case_from_text", "case_lines", "CASE_FILE_NAMES",
]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Lesion(_Strict):
    """One metastatic lesion."""

    organ: str = Field(min_length=1, description="organ, e.g. lung, liver, bone, brain, adrenal, non_regional_lymph_node")
    site: str = ""
    size_mm: float | None = Field(default=None, gt=0)
    detected_date: dt.date | None = None
    target: str | None = Field(default=None, description="target structure (ROI name) treating it; null if untreated")


class Primary(_Strict):
    diagnosis_date: dt.date | None = None
    target: str | None = None
    treatment_end_date: dt.date | None = None


class SystemicTherapy(_Strict):
    agents: list[str] = Field(default_factory=list)
    cycles: int | None = Field(default=None, ge=0)
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    ongoing_during_rt: bool | None = None
    response_at_restaging: Literal["CR", "PR", "SD", "PD"] | None = None


class Restaging(_Strict):
    modality: str | None = None
    date: dt.date | None = None
    progression: bool | None = None
    new_lesions: int | None = Field(default=None, ge=0)
    brain_imaging: str | None = None


class CourseDeclaration(_Strict):
    """One course of the treatment as the clinician declares it.

    Attributes
    ----------
    plan
        The RT Plan Label (300A,0002) or SOP Instance UID of the course's plan.
    technique
        ``sbrt`` (stereotactic: SBRT, SABR, SRS: SBRT limits whatever the numbers) or
        ``conventional`` (does not remove the SBRT limits from ≥ 4 Gy/fx in ≤ 12 fractions);
        None: placed by its numbers.
    intent
        ``curative`` or ``palliative``; only a palliative single 8 Gy fraction is exempt
        from the SBRT limits.
    """

    plan: str = Field(min_length=1)
    technique: Literal["sbrt", "conventional"] | None = None
    intent: Literal["curative", "palliative"] | None = None


class Case(_Strict):
    """Clinical context of one patient's radiotherapy (see the module docstring)."""

    histology: Literal["squamous_cell_carcinoma", "adenocarcinoma", "other"] | None = None
    intent: Literal["curative", "palliative"] | None = None
    primary: Primary | None = None
    presentation: Literal["synchronous", "metachronous"] | None = None
    omd_type: Literal["de_novo", "repeat", "induced"] | None = None
    disease_free_interval_months: float | None = Field(default=None, ge=0)
    metastases: list[Lesion] | None = None
    extra_regional_node_stations: int | None = Field(default=None, ge=0)
    systemic_therapy: SystemicTherapy | None = None
    concurrent_chemotherapy: bool | None = None
    concurrent_immunotherapy: bool | None = None
    restaging: Restaging | None = None
    courses: list[CourseDeclaration] | None = None

    def course_declaration(self, label: str, uid: str) -> CourseDeclaration | None:
        """The declaration of the plan with this RT Plan Label or SOP Instance UID, if any."""
        for course in self.courses or ():
            if course.plan in (label, uid):
                return course
        return None


def case_lines(text: str) -> dict[tuple, int]:
    """The line (1-based) of every key and list item of a case file's YAML, by its path
    (``("metastases", 0, "size_mm")``); empty when the text is not YAML."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # noqa: S506 - composes nodes, builds no object
    except yaml.YAMLError:
        return {}
    lines: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = path + (key.value,)
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if root is not None:
        walk(root, ())
    return lines


def _line_of(lines: dict[tuple, int], loc: tuple) -> int:
    """The line of ``loc``, else of its nearest parent that has one (0: not known)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 0


def load_case(path: str | Path) -> Case:
    """Read and validate a case file.

    Raises
    ------
    ProtocolError
        For a file that cannot be read.
    CaseFileError
        Naming the file and, for each problem, its line and field: YAML that does not parse,
        or content that does not validate (a misspelt field, a wrong value).
    """
    p = Path(path)
    return case_from_text(read_data_text(p, what="case file"), p)


def case_from_text(text: str, source: str | Path) -> Case:
    """Validate the text of a case file (e.g. a member of a zip export) as strictly as
    :func:`load_case`; ``source`` names it in errors.

    Raises
    ------
    CaseFileError
        Naming ``source`` and, for each problem, its line and field.
    """
    try:
        data = load_data_text(text, str(source), dates_as_text=True) or {}
    except ProtocolError as exc:  # strict reading: a duplicate key, a non-finite number, bad YAML
        raise CaseFileError([(exc.line or 0, exc.message)], source) from None
    if not isinstance(data, dict):
        raise CaseFileError([(1, "a case file must be a mapping of fields (histology, metastases, ...)")], source)
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        lines = case_lines(text)
        problems = []
        for err in exc.errors()[:10]:
            loc = tuple(err["loc"])
            where = ".".join(str(x) for x in loc)
            problems.append((_line_of(lines, loc), f"field {where}: {err['msg']}"))
        problems.sort(key=lambda item: item[0])
        raise CaseFileError(problems, source) from exc
