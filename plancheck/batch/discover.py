"""Find every treatment under a folder (any layout, any number of patients) and make its jobs.

A treatment is every plan of one patient in one frame of reference
(:func:`plancheck.dicom.store.group_treatments`), checked once with all its courses, as
``plancheck check`` checks an export. Alternative plans of one case (same structure set,
same targets) are never summed: each combination is checked as its own treatment
(:func:`plancheck.dicom.store.treatment_checks`), and every report lists the plans left out.
``.zip`` exports under the folder are indexed member by member and read as they are; a
``case.yaml`` inside the archive is their case file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from plancheck.analysis.patient_keys import SALT_FILE, patient_keyer
from plancheck.batch.job import TreatmentJob
from plancheck.analysis.check_treatment import read_case, selection_for
from plancheck.model.case_files import find_treatment_case
from plancheck.model.course_selection import LeftOutPlan, PlanSelection
from plancheck.dicom.store import (
    IndexResult, TreatmentCheck, TreatmentGroup, group_treatments, index_archive, index_objects, treatment_checks,
)
from plancheck.errors import PlancheckError
from plancheck.protocol.loader import Protocol

__all__ = ["Discovery", "discover_treatments", "patient_keyer", "protocol_fingerprint", "data_fingerprint",
           "SALT_FILE"]


@dataclass
class Discovery:
    """The jobs found under a root folder, and the files passed over."""

    jobs: list[TreatmentJob] = field(default_factory=list)
    treatments: list[TreatmentGroup] = field(default_factory=list)
    checks: list[TreatmentCheck] = field(default_factory=list)
    index: IndexResult = field(default_factory=IndexResult)
    not_selected: int = 0


def data_fingerprint() -> str:
    """A hash of plancheck's data tables (α/β table, synonyms, TG-263 nomenclature,
    built-in protocols): a new table changes results, so reports made with the old one are
    not current."""
    h = hashlib.sha256()
    root = resources.files("plancheck.constraints")
    for entry in sorted(_walk(root), key=lambda e: e[0]):
        h.update(entry[0].encode())
        h.update(entry[1])
    return h.hexdigest()[:32]


def _walk(root, prefix: str = ""):
    for item in root.iterdir():
        name = f"{prefix}{item.name}"
        if item.is_dir():
            if item.name != "__pycache__":
                yield from _walk(item, name + "/")
        elif not item.name.endswith((".pyc", ".py")):
            yield name, item.read_bytes()


def protocol_fingerprint(protocol: Protocol, formats: tuple[str, ...]) -> str:
    """A hash of the resolved rules, mapping, α/β overrides, data tables and report formats."""
    from plancheck import __version__

    data = {
        "version": __version__,
        "protocol": [protocol.id, protocol.version, list(protocol.chain)],
        "rules": [r.rule.model_dump(mode="json") for r in protocol.rules],
        "mapping": dict(protocol.structure_mapping),
        "alpha_beta": dict(protocol.alpha_beta_gy),
        "data": data_fingerprint(),
        "formats": sorted(formats),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _case_bytes(source: str) -> bytes:
    """The case file's content (for the fingerprint); b"" when it cannot be read (the job
    then reports the error)."""
    try:
        archive, sep, member = source.partition("!")
        if sep and archive.lower().endswith(".zip"):
            import zipfile

            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        return Path(source).read_bytes()
    except (OSError, KeyError, ValueError, RuntimeError):
        return b""


def _job_fingerprint(base: str, case_file: str | None, selection: PlanSelection | None,
                     outside: tuple[LeftOutPlan, ...] = ()) -> str:
    h = hashlib.sha256(base.encode())
    h.update(b"\ncase:" + (_case_bytes(case_file) if case_file else b"-"))
    h.update(b"\nselection:" + repr(selection).encode())
    if outside:  # a plan of the patient added in another frame makes the composite limits NOT EVALUATED
        h.update(b"\noutside:" + ",".join(sorted(p.uid for p in outside)).encode())
    return h.hexdigest()[:32]


def _case_of(treatment: TreatmentGroup) -> tuple[str | None, str | None]:
    """The treatment's case file (next to its plans, or inside their .zip), and an error when
    its plans sit next to different case files."""
    found = find_treatment_case([g.plan.path for g in treatment.plans], _treatment_paths(treatment))
    if len(found) > 1:
        return None, f"its plans lie next to {len(found)} different case files ({', '.join(found)}); keep one"
    return (found[0] if found else None), None


def _treatment_paths(treatment: TreatmentGroup) -> list[Path]:
    """Every file of the treatment (its plans, structure sets, doses, images)."""
    return [o.path for g in treatment.plans for o in (g.plan, *g.structure_sets, *g.doses)] + [
        o.path for o in (*treatment.structure_sets, *treatment.unplaced_doses, *treatment.images)]


def discover_treatments(root: str | os.PathLike[str], reports_dir: str | os.PathLike[str], protocol: Protocol,
                        *, formats: tuple[str, ...] = ("json",), plans: tuple[str, ...] = ()) -> Discovery:
    """Index every file under ``root`` and make one :class:`TreatmentJob` per treatment (per
    combination of alternative plans).

    Files are grouped by their headers (patient, frame of reference, UID references), not by
    folder; ``.zip`` archives are indexed member by member. Reports go to
    ``reports_dir/<patient key>/<treatment id>/``.

    Parameters
    ----------
    plans
        ``--plan``: in every treatment only plans with these labels or UIDs are courses;
        treatments with none of them are not checked (counted in ``not_selected``).
    """
    root_path = Path(root)
    reports = Path(reports_dir)
    index = index_objects(root_path)
    archives = [p for p, reason in index.skipped if p.suffix.lower() == ".zip" and p.is_file()]
    if root_path.is_file() and root_path.suffix.lower() == ".zip":
        archives = [root_path]
    for archive in archives:
        found = index_archive(archive)
        index.objects.extend(found.objects)
        index.skipped = [(p, r) for p, r in index.skipped if p != archive] + found.skipped
    keyer = patient_keyer(reports)
    base = protocol_fingerprint(protocol, formats)
    discovery = Discovery(index=index, treatments=group_treatments(index.objects))
    for treatment in discovery.treatments:
        key = keyer(treatment.patient_id)
        case_file, case_error = _case_of(treatment)
        selection = PlanSelection(tuple(plans), "--plan", missing_ok=True) if plans else None
        if selection is None and case_file and case_error is None:
            try:
                selection = selection_for(read_case(case_file), case_file)
            except PlancheckError as exc:
                case_error = str(exc)
        checks = treatment_checks(treatment, selection, alternatives="variants")
        if not checks:
            discovery.not_selected += 1
            continue
        for check in checks:
            discovery.checks.append(check)
            choice = check.choice
            labels_by_uid = {g.plan.sop_instance_uid: g.plan.label for g in treatment.plans}
            courses = choice.courses if choice else tuple(labels_by_uid)
            # the worker is told the courses when they are not what `check` would choose by itself
            explicit = None
            if choice is not None and (plans or choice.variant):
                source = "--plan" if plans else f"batch: combination {choice.variant} of alternative plans"
                explicit = choice.as_selection(source)
            discovery.jobs.append(TreatmentJob(
                treatment_id=check.check_id, patient_key=key, study_uid=treatment.study_uid,
                plan_uids=tuple(courses), plan_labels=tuple(labels_by_uid.get(u, "") for u in courses),
                files=tuple(str(p) for p in check.files), out_dir=str(reports / key / check.check_id),
                left_out=tuple((p.uid, p.label, p.reason) for p in (choice.left_out if choice else ())),
                formats=formats, case_file=case_file, selection=explicit,
                fingerprint=_job_fingerprint(base, case_file, explicit, check.outside_plans),
                error=case_error or check.error,
                secrets=(treatment.patient_id, treatment.patient_name), outside=check.outside_plans,
            ))
    _list_unused(discovery)
    return discovery


def _list_unused(discovery: Discovery) -> None:
    """Add to ``discovery.index.skipped`` every indexed object that no job reads (a structure
    set, dose or image with no plan of its patient in its frame of reference, or of a
    treatment ``--plan`` left out), so that no file under the root is passed over unsaid."""
    read = {(str(o.path), o.member) for c in discovery.checks for o in c.objects}
    checked = {c.treatment.key for c in discovery.checks}
    places = {(t.patient_id, t.frame_of_reference_uid): t.key for t in discovery.treatments}
    for o in discovery.index.objects:
        if (str(o.path), o.member) in read:
            continue
        label = Path(f"{o.path}!{o.member}") if o.member else o.path
        place = places.get((o.patient_id, o.frame_of_reference_uid))
        if place is not None and place not in checked:
            reason = "its treatment has none of the plans named by --plan"
        else:
            reason = (f"no RT Plan of its patient in its frame of reference ({o.frame_of_reference_uid or 'none'}) "
                      f"uses this {_KIND_NAMES.get(o.kind, o.kind)}")
        discovery.index.skipped.append((label, reason))


_KIND_NAMES = {"RTSTRUCT": "RT Structure Set", "RTDOSE": "RT Dose", "IMAGE": "image"}
