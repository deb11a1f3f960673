"""A case file drafted from an export, and a case file's check (``plancheck case init/check``).

DICOM carries the courses (plans, prescriptions, fractions, dates) and the targets, but not
the clinical context the definition and timing rules need (histology, every lesion — treated
or not —, systemic therapy, restaging). :func:`draft_case_file` writes what the export says,
marks every guess for the clinician to confirm, and leaves what only the clinician knows as
``null`` with a comment: a draft never makes a rule PASS on a guess — a field left ``null``
makes the rules that need it NOT EVALUATED.

* ``courses``: one entry per plan with a dose (RT Plan Label), its prescription, fractions and
  date as a comment, ``technique`` from the numbers (≥ 4 Gy per fraction in ≤ 12 fractions:
  ``sbrt``, else ``conventional``: the same numbers plancheck uses for an undeclared course),
  ``intent`` left for the clinician.
* ``primary.target``: the target whose name reads as the primary (e.g. ``PTVp``, ``PTV_Eso``).
* ``metastases``: ``null``, with the targets whose names read as metastases written out as a
  commented template: the plan shows only the treated lesions, and the count of lesions
  decides whether the disease is oligometastatic.

:func:`check_case_file` validates a case file (messages name the line) and lists the fields
still empty; with an export it also checks that the plans and targets it names exist.

References
----------
DICOM PS3.3 C.8.8.9 (RT General Plan: RT Plan Label, RT Plan Date), C.8.8.10 (RT Prescription),
C.8.8.13 (RT Fraction Scheme).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from plancheck.model.case import Case, case_lines, load_case
from plancheck.model.export import PlanExport
from plancheck.names.targets import TargetKind, TargetRole, parse_target_name
from plancheck.radiobiology import FractionationRegime, summarize_fractionation

__all__ = ["draft_case_file", "check_case_file", "CaseFileCheck", "CLINICIAN_FIELDS"]

CLINICIAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("histology", "squamous_cell_carcinoma | adenocarcinoma | other"),
    ("intent", "curative | palliative"),
    ("presentation", "synchronous | metachronous"),
    ("omd_type", "de_novo | repeat | induced (ESTRO/EORTC 2020)"),
    ("metastases", "every metastatic lesion, treated or not"),
    ("extra_regional_node_stations", "number of involved extra-regional lymph-node stations"),
    ("systemic_therapy", "agents, cycles, dates, response"),
    ("concurrent_chemotherapy", "true | false"),
    ("concurrent_immunotherapy", "true | false"),
    ("restaging", "modality, date, progression, new lesions"),
)
"""Top-level fields only the clinician can fill in, with what they take."""


def _yaml_text(value: str) -> str:
    """A YAML scalar for a name from DICOM: plain when safe, else double-quoted."""
    import json

    safe = value and all(c.isalnum() or c in "_-.+ " for c in value) and not value[0].isdigit() \
        and value.strip() == value and value.lower() not in ("null", "true", "false", "yes", "no", "on", "off", "~")
    return value if safe else json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    """Text from DICOM inside a YAML comment: one line, no control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


_ORGANS = {
    "lung": "lung", "pulm": "lung", "liver": "liver", "hep": "liver", "brain": "brain", "cereb": "brain",
    "adrenal": "adrenal", "adr": "adrenal", "bone": "bone", "vert": "bone", "spine": "bone", "rib": "bone",
    "pelvis": "bone", "sacrum": "bone", "femur": "bone", "node": "non_regional_lymph_node",
    "ln": "non_regional_lymph_node", "lymph": "non_regional_lymph_node",
}
"""Site words of target names → the case file's organ (a guess the clinician confirms)."""


def _organ(site: str | None) -> str:
    word = (site or "").casefold()
    return next((organ for key, organ in _ORGANS.items() if word.startswith(key)), "null")


def _date(text: str) -> str:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date().isoformat()
    except ValueError:
        return text


def draft_case_file(export: PlanExport, *, source: str = "", today: dt.date | None = None) -> str:
    """The text of a draft ``case.yaml`` for ``export`` (see the module docstring).

    Parameters
    ----------
    export
        The linked export.
    source
        How the export was named (written in the header comment).
    today
        The date written in the header (default: today).
    """
    today = today or dt.date.today()
    lines = [
        f"# Case file drafted by 'plancheck case init' from {_comment(source) or 'an export'} on {today.isoformat()}.",
        "# plancheck read the plans and the targets; everything else is for the clinician to fill in.",
        "#   CONFIRM   a value read or guessed from the export: check it, then delete the word CONFIRM",
        "#   FILL IN   only the clinician knows it; while it is null the rules that need it are NOT EVALUATED",
        "# Reference: docs/case-file.md. Check the file: plancheck case check case.yaml --export EXPORT",
        "",
    ]
    for name, what in CLINICIAN_FIELDS[:4]:
        lines.append(f"{name}: null".ljust(40) + f"# FILL IN: {what}")
    lines.append("")

    # targets as their names read
    targets = []
    structure_sets = [c.structure_set for c in export.courses] or list(export.structure_sets)
    seen: set[str] = set()
    for ss in structure_sets:
        for roi in ss.rois:
            if roi.name in seen:
                continue
            seen.add(roi.name)
            t = parse_target_name(roi.name, getattr(roi, "interpreted_type", ""))
            if t.kind is not None and not t.derived:
                targets.append(t)
    primary = [t for t in targets if t.role == TargetRole.PRIMARY and t.kind == TargetKind.PTV]
    metastases = [t for t in targets if t.role == TargetRole.METASTASIS and t.kind == TargetKind.PTV]
    if primary:
        lines += ["primary:",
                  "  diagnosis_date: null".ljust(40) + "# FILL IN: YYYY-MM-DD",
                  f"  target: {_yaml_text(primary[0].roi_name)}".ljust(40) + "# CONFIRM: the PTV of the primary (from its name)"]
        if len(primary) > 1:
            others = ", ".join(_comment(t.roi_name) for t in primary[1:])
            lines.append(f"  # other targets named like a primary: {others}")
    else:
        lines += ["primary:",
                  "  diagnosis_date: null".ljust(40) + "# FILL IN: YYYY-MM-DD",
                  "  target: null".ljust(40) + "# FILL IN: the PTV of the primary (none recognised by its name)"]
    lines.append("")
    lines.append("# Every metastatic lesion, treated or not (the plan shows only the treated ones).")
    if metastases:
        lines.append("# Targets in this export named like metastases (uncomment, complete, add untreated lesions):")
        for t in metastases:
            organ = _organ(t.site)
            lines += [f"#  - organ: {organ}".ljust(40) + f"# CONFIRM: guessed from the name {_comment(t.roi_name)}",
                      "#    site: null".ljust(40) + "# e.g. right upper lobe, T8 vertebral body",
                      "#    size_mm: null",
                      "#    detected_date: null".ljust(40) + "# YYYY-MM-DD",
                      f"#    target: {_comment(t.roi_name)}"]
    lines.append("metastases: null".ljust(40) + "# FILL IN: the list of lesions (see above)")
    for name, what in CLINICIAN_FIELDS[5:]:
        lines.append(f"{name}: null".ljust(40) + f"# FILL IN: {what}")
    lines.append("")

    lines.append("# The plans that are courses of this treatment (read from the export). A plan not listed")
    lines.append("# here (e.g. an alternative plan) is left out of the check.")
    if export.courses:
        lines.append("courses:")
        for course in export.courses:
            plan = course.plan
            rx, n = plan.prescription_dose_gy, plan.dose_fractions  # None for several fraction groups
            if rx and n:
                summary = summarize_fractionation(rx, n)
                technique = "sbrt" if summary.regime is FractionationRegime.SBRT else "conventional"
                numbers = f"{rx:g} Gy / {n} fx = {summary.dose_per_fraction_gy:.3g} Gy/fx"
                why = f"CONFIRM: from the numbers ({numbers}; ≥ 4 Gy/fx in ≤ 12 fx is sbrt)"
            elif rx and len(plan.dose_fraction_groups) > 1:
                technique = "null"
                why = f"FILL IN: sbrt | conventional ({plan.fractions_unknown_reason.removeprefix('the plan ')})"
            else:
                technique = "null"
                why = "FILL IN: sbrt | conventional (the plan states no prescription or fractions)"
            dated = f", dated {_date(plan.date)}" if plan.date else ""
            approval = f", {plan.approval_status.lower()}" if plan.approval_status else ""
            lines += [f"  - plan: {_yaml_text(course.label)}".ljust(40) + f"# RT Plan Label{dated}{_comment(approval)}",
                      f"    technique: {technique}".ljust(40) + f"# {why}",
                      "    intent: null".ljust(40) + "# FILL IN: curative | palliative"]
    else:
        lines.append("courses: null".ljust(40) + "# the export has no plan with a dose")
    return "\n".join(lines) + "\n"


@dataclass
class CaseFileCheck:
    """The outcome of :func:`check_case_file`.

    Attributes
    ----------
    case
        The validated case (None when invalid).
    errors
        Problems that make the file unusable: ``(line, message)`` (line 0: not known).
    empty
        Top-level fields still ``null`` or absent (the rules that need them are NOT EVALUATED).
    to_confirm
        Lines still marked ``CONFIRM``.
    mismatches
        With an export: plans and targets the file names that the export does not have.
    """

    case: Case | None
    errors: list[tuple[int, str]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    to_confirm: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def check_case_file(path: str | Path, export: PlanExport | None = None) -> CaseFileCheck:
    """Validate a case file; list what is still empty or unconfirmed; with ``export``, check
    that the plans and targets it names exist there.

    Never raises for the file's content: problems are returned (an unreadable file is one
    error with line 0).
    """
    from plancheck.errors import CaseFileError, ProtocolError

    p = Path(path)
    try:
        case = load_case(p)
    except CaseFileError as exc:
        return CaseFileCheck(None, errors=list(exc.problems))
    except ProtocolError as exc:
        return CaseFileCheck(None, errors=[(0, exc.message)])
    check = CaseFileCheck(case)
    data = case.model_dump()
    check.empty = [name for name, _ in CLINICIAN_FIELDS if data.get(name) is None]
    try:
        text = p.read_text(encoding="utf-8")
    except OSError:
        text = ""
    check.to_confirm = [i for i, line in enumerate(text.splitlines(), start=1) if "CONFIRM" in line.split("#", 1)[-1]
                        and "#" in line and not line.lstrip().startswith("#")]
    if export is not None:
        lines = case_lines(text)
        plans = {c.label for c in export.courses} | {c.plan.sop_instance_uid for c in export.courses}
        for i, course in enumerate(case.courses or ()):
            if course.plan not in plans:
                where = lines.get(("courses", i, "plan"), 0)
                check.mismatches.append(f"line {where}: courses[{i}].plan {course.plan!r} is not a plan of the export "
                                        f"(plans: {', '.join(sorted(c.label for c in export.courses)) or 'none'})")
        names = {roi.name for ss in export.structure_sets for roi in ss.rois}
        named: list[tuple[tuple, str]] = []
        if case.primary and case.primary.target:
            named.append((("primary", "target"), case.primary.target))
        for i, lesion in enumerate(case.metastases or ()):
            if lesion.target:
                named.append((("metastases", i, "target"), lesion.target))
        for loc, target in named:
            if target not in names:
                where = lines.get(loc, 0)
                dotted = ".".join(str(x) for x in loc)
                check.mismatches.append(f"line {where}: {dotted} {target!r} is not a structure of the export")
    return check
