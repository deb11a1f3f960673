"""Read a whole export and link it: RTDOSE → RTPLAN → RTSTRUCT, one patient, one frame.

Linking rules
-------------
* RTDOSE → RTPLAN by ReferencedRTPlanSequence (300C,0002); RTPLAN → RTSTRUCT by
  ReferencedStructureSetSequence (300C,0060). A dangling reference is an error.
* All RT objects share one FrameOfReferenceUID and all files one PatientID; otherwise an
  error names the files (never patient names or IDs). A CT/MR series in another frame
  (e.g. a registered MR) is only a warning: plancheck does not use image pixels.
* Each RT Plan becomes a :class:`plancheck.model.Course` (several plans may share one
  structure set), in order of RT Plan Date, then RT Plan Label. Plans that are not courses
  of the check (not selected, alternative plans: :mod:`plancheck.model.course_selection`) are
  left out with the reason, and their doses are not read.
* Doses of a plan, in order of preference:

  1. one ``PLAN`` dose, used as is (other doses of the plan are listed as skipped,
     "superseded by the PLAN dose");
  2. ``FRACTION`` / ``FRACTION_SESSION`` doses, one per fraction group, all groups needed
     (a dose of a fraction group the plan does not have is an error);
  3. ``BEAM`` / ``BEAM_SESSION`` doses, every treatment beam (with meterset > 0) of the
     plan's fraction groups needed exactly once.

  Doses of 2./3. are summed on the grid of the first file (sorted by name); grids of
  another geometry are resampled trilinearly onto it, and the sum is cropped to the region
  every grid covers: beyond a grid its dose is not known (see :mod:`plancheck.dicom.dose_sum`).
  A ``*_SESSION`` dose holds one session: it is multiplied by the referenced fraction
  group's Number of Fractions Planned. ``MULTI_PLAN``, ``PLAN_OVERVIEW``, ``RECORD``,
  ``CONTROL_POINT`` and brachy doses are refused (listed as skipped with the reason; a
  plan left without any other dose is an error saying so). A grid of Dose Type ``ERROR``
  (an error estimate, not a dose) is set aside the same way; a plan whose only dose it is
  gets the reader's error naming that file.

References
----------
DICOM PS3.3 C.8.8.3 (RT Dose: Dose Summation Type, Referenced RT Plan Sequence),
C.8.8.9 (RT General Plan: Referenced Structure Set Sequence), C.7.4.1 (Frame of Reference).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Callable, TypeVar

import numpy as np

from plancheck.model.course_selection import (
    AlternativesPolicy, LeftOutPlan, PlanFacts, PlanSelection, choose_courses,
)
from plancheck.dicom.classify import ClassifiedFile, classify, gather_sources
from plancheck.dicom.dose_sum import sum_grids
from plancheck.dicom.read_common import (
    IMAGE_SOP_CLASSES, check_not_truncated, is_damaged_reason, optional_float, optional_int, optional_str,
    read_full, same_object,
)
from plancheck.dicom.read_dose import (
    NOT_A_DOSE_TYPES, DoseHeader, check_dose_type, dose_grid_from_dataset, dose_header_from_dataset,
)
from plancheck.dicom.read_plan import plan_from_dataset
from plancheck.dicom.read_structures import structure_set_from_dataset, volume_model_of
from plancheck.dicom.roi_checks import slice_defects
from plancheck.errors import DicomConformanceError, DicomReadError, InputError, LinkError, UsageError
from plancheck.model.volume_model import VolumeModel, volume_model_named
from plancheck.model import (
    Course, DoseGrid, ImageSeries, Plan, PlanExport, PlanWithoutDose, SkippedFile, StructureSet,
)
from plancheck.model.dose import RBE_WEIGHTED
from plancheck.model.structures import ON_SLICE_TOLERANCE_MM

__all__ = ["read_export", "plan_facts"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_PLAN_KIND = ("PLAN",)
_FRACTION_KIND = ("FRACTION", "FRACTION_SESSION")
_BEAM_KIND = ("BEAM", "BEAM_SESSION")
_REFUSED = {
    "MULTI_PLAN": "a sum of several plans",
    "PLAN_OVERVIEW": "an overview of several plans",
    "RECORD": "a delivered (treatment record) dose",
    "CONTROL_POINT": "the dose of one control point",
    "BRACHY": "a brachytherapy dose",
    "BRACHY_SESSION": "a brachytherapy session dose",
}


def _name(label: str) -> str:
    """The file name of a label (``dir/RD.dcm`` → ``RD.dcm``, ``a.zip!x/RD.dcm`` → ``RD.dcm``)."""
    return PurePath(label.split("!")[-1]).name


def _parse(file: ClassifiedFile, parse: Callable[[], _T]) -> _T:
    """Run a parser, turning any unexpected exception into a DicomReadError naming the file."""
    try:
        return parse()
    except InputError:
        raise
    except Exception as exc:  # never let a pydicom/KeyError traceback through
        raise DicomReadError(f"cannot be interpreted: {type(exc).__name__}: {exc}", file.label) from exc


@dataclass
class _Doses:
    """Per-plan dose bookkeeping."""

    headers: list[tuple[DoseHeader, ClassifiedFile]] = field(default_factory=list)
    refused: list[tuple[DoseHeader, str]] = field(default_factory=list)
    not_doses: list[DoseHeader] = field(default_factory=list)  # Dose Type ERROR: set aside


def _check_one_patient(files: Sequence[ClassifiedFile]) -> None:
    """Every file is of one patient (by Patient ID, never shown). A file without a Patient ID
    among files with one is named as such (a header cut short loses it), not as a second patient."""
    first_of: dict[str, str] = {}
    for file in files:
        patient = optional_str(file.header, "PatientID")
        first_of.setdefault(patient, file.label)
    if "" in first_of and len(first_of) > 1:
        raise LinkError(
            "has no (0010,0020) 'Patient ID' while the other files have one: it cannot be told to be of the "
            "same patient (a file cut short in its header loses it; export it again)", first_of[""]
        )
    if len(first_of) > 1:
        examples = list(first_of.values())
        raise LinkError(
            f"the input holds files of {len(first_of)} different patients ((0010,0020) 'Patient ID' "
            f"differs), e.g. {examples[0]} and {examples[1]}; plancheck checks one patient at a time"
        )


def _check_one_frame(objects: Sequence[tuple[str, str]]) -> str:
    """The shared frame of reference of (label, FrameOfReferenceUID) pairs, or a LinkError."""
    reference_label, reference = next(((lab, uid) for lab, uid in objects if uid), ("", ""))
    for label, uid in objects:
        if uid and uid != reference:
            raise LinkError(
                f"(0020,0052) 'Frame of Reference UID' differs: {label} is in {uid} but "
                f"{reference_label} is in {reference}; plan, structures and dose must share one frame"
            )
    return reference


def _load_dose(file: ClassifiedFile, data: bytes) -> DoseGrid:
    """Parse an RTDOSE, pixels included, from its bytes (already checked for truncation)."""
    ds = read_full(file.source, data)
    return _parse(file, lambda: dose_grid_from_dataset(ds, file.label))


def _fraction_group_of(header: DoseHeader, plan: Plan) -> int:
    """The fraction group a FRACTION/SESSION dose belongs to.

    Raises
    ------
    LinkError
        The dose names a fraction group the plan does not have (summing it in would add a
        dose the plan does not deliver), or names none and the plan has several.
    """
    if header.fraction_group_numbers:
        number = header.fraction_group_numbers[0]
        if number not in {g.number for g in plan.fraction_groups}:
            raise LinkError(f"references fraction group {number} ((300C,0022) 'Referenced Fraction Group Number'), "
                            f"which the plan {plan.label or plan.sop_instance_uid!r} does not have", header.label)
        return number
    if header.beam_numbers:
        groups = [g.number for g in plan.fraction_groups if set(header.beam_numbers) <= set(g.beam_numbers)]
        if len(groups) == 1:
            return groups[0]
    if len(plan.fraction_groups) == 1:
        return plan.fraction_groups[0].number
    raise LinkError(
        f"{header.summation_type} dose does not say which fraction group it belongs to "
        "((300C,0022) 'Referenced Fraction Group Number' in (300C,0002) 'Referenced RT Plan Sequence') "
        f"and the plan has {len(plan.fraction_groups)} fraction groups", header.label
    )


def _fractions_of(group_number: int, plan: Plan, header: DoseHeader) -> int:
    for group in plan.fraction_groups:
        if group.number == group_number:
            if not group.fractions_planned:
                raise DicomConformanceError(
                    f"(300A,0078) 'Number of Fractions Planned' of fraction group {group_number} is "
                    f"missing; it is required to scale the per-session dose {_name(header.label)} to "
                    "the course", plan.path
                )
            return group.fractions_planned
    raise LinkError(f"references fraction group {group_number}, which the plan does not have",
                    header.label)


def _required_beams(plan: Plan) -> dict[int, str]:
    """Treatment beams that must have a dose: in a fraction group, meterset not 0."""
    in_groups = {n for g in plan.fraction_groups for n in g.beam_numbers}
    return {
        b.number: b.name for b in plan.treatment_beams
        if (not in_groups or b.number in in_groups) and b.meterset_mu != 0.0
    }


def _plan_dose(plan: Plan, doses: _Doses, dose_bytes: dict[str, bytes], skipped: list[SkippedFile],
               warnings: list[str]) -> tuple[DoseGrid, str]:
    """Choose, load and sum the doses of one plan. Returns the grid and the one-line summary."""
    by_kind = {
        kind: sorted([(h, f) for h, f in doses.headers if h.summation_type in kinds], key=lambda p: p[1].label)
        for kind, kinds in (("PLAN", _PLAN_KIND), ("FRACTION", _FRACTION_KIND), ("BEAM", _BEAM_KIND))
    }
    chosen_kind = next((k for k in ("PLAN", "FRACTION", "BEAM") if by_kind[k]), None)
    if chosen_kind is None and doses.not_doses:
        check_dose_type(doses.not_doses[0].dose_type, doses.not_doses[0].label)  # raises, naming the file
    if chosen_kind is None:
        detail = ""
        if doses.refused:
            detail = "; " + ", ".join(f"{_name(h.label)} is a {h.summation_type} dose ({why}), which "
                                      "plancheck refuses" for h, why in doses.refused)
        raise LinkError(
            f"RT Plan {plan.label or plan.sop_instance_uid!r} has no usable dose: no RTDOSE with "
            f"Dose Summation Type PLAN, FRACTION or BEAM references it{detail}; export the plan dose",
            plan.path,
        )
    chosen = by_kind[chosen_kind]
    for kind in ("PLAN", "FRACTION", "BEAM"):
        if kind != chosen_kind:
            for header, file in by_kind[kind]:
                skipped.append(SkippedFile(file.label, f"superseded by the {chosen_kind} dose"
                                                       f"{'s' if len(chosen) > 1 else ''} of the plan "
                                                       f"({_name(chosen[0][1].label)})"))

    factors: list[float] = []
    notes: list[str] = []
    if chosen_kind == "PLAN":
        if len(chosen) > 1:
            raise LinkError(
                f"{len(chosen)} PLAN doses reference RT Plan {plan.label or plan.sop_instance_uid!r}: "
                + ", ".join(f.label for _, f in chosen) + "; plancheck cannot tell which one to use",
                plan.path,
            )
        factors = [1.0]
    elif chosen_kind == "FRACTION":
        seen: dict[int, str] = {}
        for header, file in chosen:
            group = _fraction_group_of(header, plan)
            if group in seen:
                raise LinkError(f"fraction group {group} has two doses: {seen[group]} and {file.label}",
                                plan.path)
            seen[group] = file.label
            if header.summation_type == "FRACTION_SESSION":
                fractions = _fractions_of(group, plan, header)
                factors.append(float(fractions))
                notes.append(f"{_name(file.label)} × {fractions} fractions")
            else:
                factors.append(1.0)
        missing = [g.number for g in plan.fraction_groups if g.number not in seen]
        if missing:
            raise LinkError(
                f"the FRACTION doses of RT Plan {plan.label or plan.sop_instance_uid!r} cover fraction "
                f"group(s) {sorted(seen)} but not {missing}; every fraction group needs its dose", plan.path
            )
    else:
        required = _required_beams(plan)
        seen_beam: dict[int, str] = {}
        for header, file in chosen:
            beams = header.beam_numbers
            if not beams:
                if len(required) == 1 and len(chosen) == 1:
                    beams = tuple(required)
                else:
                    raise DicomConformanceError(
                        f"{header.summation_type} dose does not name its beams ((300C,0006) 'Referenced "
                        "Beam Number' in (300C,0004) 'Referenced Beam Sequence' of (300C,0002) "
                        "'Referenced RT Plan Sequence'); it is required to sum beam doses", file.label
                    )
            for beam in beams:
                if beam in seen_beam:
                    raise LinkError(f"beam {beam} has two doses: {seen_beam[beam]} and {file.label}", plan.path)
                seen_beam[beam] = file.label
            if header.summation_type == "BEAM_SESSION":
                fractions = _fractions_of(_fraction_group_of(header, plan), plan, header)
                factors.append(float(fractions))
                notes.append(f"{_name(file.label)} × {fractions} fractions")
            else:
                factors.append(1.0)
        missing_beams = [f"{n} {name!r}" for n, name in required.items() if n not in seen_beam]
        if missing_beams:
            raise LinkError(
                f"RT Plan {plan.label or plan.sop_instance_uid!r} has BEAM doses but none for treatment "
                f"beam(s) {', '.join(missing_beams)}; every treatment beam needs its dose", plan.path
            )

    grids = [_load_dose(file, dose_bytes.pop(file.label)) for _, file in chosen]
    dose_types = {g.dose_type or "PHYSICAL" for g in grids}  # an absent Dose Type is read as physical
    if len(dose_types) > 1:
        raise LinkError(f"the doses of RT Plan {plan.label or plan.sop_instance_uid!r} mix Dose Types "
                        f"{sorted(dose_types)}; they cannot be summed", plan.path)
    first = _name(chosen[0][1].label)
    types = "/".join(sorted({h.summation_type for h, _ in chosen}))
    if len(grids) == 1 and factors[0] == 1.0:
        grid = grids[0]
        summary = f"{types} dose {first} used as is"
        if chosen_kind != "PLAN":
            summary += " (it covers the whole plan)"
        summary += _dose_type_note(grid, grids)
        return DoseGrid(
            dose_gy=grid.dose_gy, x_mm=grid.x_mm, y_mm=grid.y_mm, z_mm=grid.z_mm,
            frame_of_reference_uid=grid.frame_of_reference_uid, dose_type=grid.dose_type,
            summation_type=grid.summation_type, heterogeneity_correction=grid.heterogeneity_correction,
            referenced_plan_uid=plan.sop_instance_uid, sources=grid.sources, description=summary,
        ), summary

    result = sum_grids(grids, factors)
    if len(grids) == 1:
        summary = f"{types} dose {first} multiplied by the fractions planned ({notes[0]})"
    else:
        summary = f"{len(grids)} {types} doses summed on the grid of {first}"
        if result.resampled:
            summary += f"; {len(result.resampled)} resampled trilinearly onto it (other grid geometry)"
        if notes:
            summary += f"; per-session doses scaled: {', '.join(notes)}"
    summary += _dose_type_note(grids[0], grids)
    if result.dose_gy.size == 0:
        raise LinkError(f"the {types} doses of RT Plan {plan.label or plan.sop_instance_uid!r} ("
                        + ", ".join(_name(f.label) for _, f in chosen) + ") share no region: they cannot be summed",
                        plan.path)
    if result.outside_voxels:
        summary += "; cropped to the region every dose covers"
    for index, count in result.outside_voxels.items():
        warnings.append(
            f"{chosen[index][1].label}: its grid does not cover {count} voxel(s) of the grid of {first}, where its "
            f"dose is not known: the sum for RT Plan {plan.label or plan.sop_instance_uid!r} is cropped to the "
            "region every dose covers (structures beyond it are not covered by the plan's dose)"
        )
    heterogeneity: list[str] = []
    for grid in grids:
        heterogeneity += [h for h in grid.heterogeneity_correction if h not in heterogeneity]
    reference = grids[0]
    return DoseGrid(
        dose_gy=result.dose_gy, x_mm=result.x_mm, y_mm=result.y_mm, z_mm=result.z_mm,
        frame_of_reference_uid=reference.frame_of_reference_uid,
        dose_type="" if any(not g.dose_type for g in grids) else reference.dose_type,
        summation_type="SUMMED", heterogeneity_correction=tuple(heterogeneity),
        referenced_plan_uid=plan.sop_instance_uid,
        sources=tuple(s for g in grids for s in g.sources), description=summary,
    ), summary


def _dose_type_note(grid: DoseGrid, grids: Sequence[DoseGrid]) -> str:
    """What the course's dose summary says about the Dose Type: an RBE-weighted dose, or a
    Dose Type absent from a file (Type 1; read as physical)."""
    if grid.is_rbe_weighted:
        return f"; Dose Type EFFECTIVE: {RBE_WEIGHTED.split(' (')[0]} dose, Gy(RBE)"
    absent = [_name(g.sources[0].path) for g in grids if not g.dose_type and g.sources]
    if absent:
        return f"; (3004,0004) 'Dose Type' absent from {', '.join(absent)}: read as physical dose"
    return ""


def _image_series(files: Sequence[ClassifiedFile]) -> tuple[ImageSeries, ...]:
    series: dict[str, dict] = {}
    for file in files:
        ds = file.header
        uid = optional_str(ds, "SeriesInstanceUID")
        entry = series.setdefault(uid, {
            "modality": optional_str(ds, "Modality") or IMAGE_SOP_CLASSES.get(optional_str(ds, "SOPClassUID"), ""),
            "frame": optional_str(ds, "FrameOfReferenceUID"), "count": 0,
            "thickness": _safe(lambda: optional_float(ds, "SliceThickness", file.label)),
        })
        entry["count"] += _safe(lambda: optional_int(ds, "NumberOfFrames", file.label)) or 1
    return tuple(
        ImageSeries(series_instance_uid=uid, modality=e["modality"], frame_of_reference_uid=e["frame"],
                    number_of_images=e["count"], slice_thickness_mm=e["thickness"])
        for uid, e in series.items()
    )


def _axial_images(files: Sequence[ClassifiedFile]) -> dict[str, list[tuple[str, float, float | None]]]:
    """(SOP Instance UID, z in mm, Slice Thickness) of every axial image, by Series Instance
    UID. Images with an oblique or missing geometry are left out."""
    by_series: dict[str, list[tuple[str, float, float | None]]] = {}
    for file in files:
        ds = file.header
        try:
            position = [float(v) for v in ds.get("ImagePositionPatient") or ()]
            orientation = [float(v) for v in ds.get("ImageOrientationPatient") or ()]
        except (TypeError, ValueError):
            continue
        uid = optional_str(ds, "SOPInstanceUID")
        if len(position) != 3 or len(orientation) != 6 or not uid:
            continue
        normal = (orientation[1] * orientation[5] - orientation[2] * orientation[4],
                  orientation[2] * orientation[3] - orientation[0] * orientation[5],
                  orientation[0] * orientation[4] - orientation[1] * orientation[3])
        if abs(abs(normal[2]) - 1.0) > 1e-3:
            continue
        thickness = _safe(lambda: optional_float(ds, "SliceThickness", file.label))
        by_series.setdefault(optional_str(ds, "SeriesInstanceUID"), []).append((uid, position[2], thickness))
    return by_series


def _slice_positions(by_series: Mapping[str, list[tuple[str, float, float | None]]]
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """z (mm) of every axial image (:func:`_axial_images`) by SOP Instance UID, and how far a
    contour may lie from it: half the slice spacing of its series (half the Slice Thickness,
    else 1 mm, for a single image)."""
    z_of: dict[str, float] = {}
    tolerance: dict[str, float] = {}
    slices = _series_slices(by_series)
    for series, images in by_series.items():
        zs = slices[series]
        gaps = [b - a for a, b in zip(zs, zs[1:])]
        for uid, z, thickness in images:
            if gaps:
                spacing = sorted(gaps)[len(gaps) // 2]
            else:
                spacing = thickness if thickness and thickness > 0 else 2.0
            z_of[uid] = z
            tolerance[uid] = spacing / 2.0
    return z_of, tolerance


def _series_slices(by_series: Mapping[str, list[tuple[str, float, float | None]]]) -> dict[str, tuple[float, ...]]:
    """The distinct slice positions (z, mm, rounded to 0.1 µm, ascending) of each axial series."""
    return {series: tuple(sorted({round(z, 4) for _, z, _ in images})) for series, images in by_series.items()}


def _with_image_slices(structure_set: StructureSet,
                       by_series: Mapping[str, list[tuple[str, float, float | None]]]) -> StructureSet:
    """The structure set with each ROI carrying the z of the slices of the image series it was
    contoured on (:attr:`Roi.image_slices_z_mm`): the series its contours reference, else the
    export's only axial series; only when every contour plane of the ROI lies on one of its
    slices (within :data:`plancheck.model.structures.ON_SLICE_TOLERANCE_MM`)."""
    if not by_series:
        return structure_set
    series_of = {uid: series for series, images in by_series.items() for uid, _, _ in images}
    slices = _series_slices(by_series)
    only = next(iter(slices)) if len(slices) == 1 else None
    rois = []
    for roi in structure_set.rois:
        referenced = {series_of.get(c.image_uid) for c in roi.contours if c.image_uid}
        series = referenced.pop() if len(referenced) == 1 else (only if not referenced else None)
        zs = slices.get(series, ()) if series is not None else ()
        if len(zs) >= 2 and roi.planes and _planes_on_slices(roi.planes, zs):
            roi = replace(roi, image_slices_z_mm=zs)
        rois.append(roi)
    return replace(structure_set, rois=tuple(rois))


def _planes_on_slices(planes: Mapping[float, object], slices: Sequence[float]) -> bool:
    """Whether every contour plane z lies on one of the (ascending) slice positions."""
    zs = np.asarray(slices, dtype=float)
    z = np.asarray(list(planes), dtype=float)
    i = np.clip(np.searchsorted(zs, z), 1, len(zs) - 1)
    nearest = np.minimum(np.abs(zs[i - 1] - z), np.abs(zs[i] - z))
    return bool(np.all(nearest <= ON_SLICE_TOLERANCE_MM))


def _with_slice_defects(structure_set: StructureSet, z_of: dict[str, float], tolerance: dict[str, float],
                        warnings: list[str]) -> StructureSet:
    """The structure set with each ROI's contours checked against the CT slices they reference."""
    if not z_of:
        return structure_set
    rois = []
    changed = False
    for roi in structure_set.rois:
        found = slice_defects(roi, z_of, tolerance)
        if found:
            changed = True
            roi = replace(roi, defects=roi.defects + found)
            warnings.append(f"{structure_set.path}: ROI {roi.number} {roi.name!r} cannot be measured: {'; '.join(found)}")
        rois.append(roi)
    return replace(structure_set, rois=tuple(rois)) if changed else structure_set


def _safe(function: Callable[[], _T]) -> _T | None:
    """Image attributes are informative only: an invalid value becomes None."""
    try:
        return function()
    except InputError:
        return None


def _choose_volume_models(structure_sets: list[StructureSet], rt_files: Sequence[ClassifiedFile],
                          override: VolumeModel | str | None) -> list[StructureSet]:
    """The volume model of each structure set: ``override`` if given; else the one its own
    Manufacturer names (set by the reader); else the one the Manufacturer of the export's
    RT Dose, then RT Plan names; else the slab model (see :mod:`plancheck.model.volume_model`)."""
    if override is not None:
        try:
            model = override if isinstance(override, VolumeModel) else volume_model_named(override)
        except KeyError as exc:
            raise UsageError(f"volume_model: {exc.args[0]}") from None
        return [s.with_volume_model(model, "volume_model given by the caller") for s in structure_sets]
    if all(not s.volume_model_source.startswith("default") for s in structure_sets):
        return structure_sets
    fallback = None
    for kind, what in (("RTDOSE", "RT Dose"), ("RTPLAN", "RT Plan")):
        for file in rt_files:
            if file.kind == kind:
                model, source = volume_model_of(file.header, what)
                if model is not None:
                    fallback = (model, f"{source} (the RT Structure Set's was not recognised)")
                    break
        if fallback:
            break
    if fallback is None:
        return structure_sets
    return [s.with_volume_model(*fallback) if s.volume_model_source.startswith("default") else s for s in structure_sets]


def _structure_set_of(plan: Plan, structure_sets: Sequence[StructureSet], rtss_by_uid: dict[str, StructureSet],
                      warnings: list[str]) -> StructureSet:
    """The structure set of a plan: the one it references, else the only one (with a warning)."""
    if plan.referenced_structure_set_uid:
        rtss = rtss_by_uid.get(plan.referenced_structure_set_uid)
        if rtss is None:
            raise LinkError(
                f"references RT Structure Set {plan.referenced_structure_set_uid} "
                "((300C,0060) 'Referenced Structure Set Sequence'), which is not in the input", plan.path
            )
        return rtss
    if len(structure_sets) == 1:
        warnings.append(f"{plan.path}: no (300C,0060) 'Referenced Structure Set Sequence'; "
                        f"using the only structure set, {structure_sets[0].path}")
        return structure_sets[0]
    raise LinkError(
        "has no (300C,0060) 'Referenced Structure Set Sequence' and the input holds "
        f"{len(structure_sets)} structure sets; plancheck cannot tell which one belongs to the plan",
        plan.path,
    )


def plan_facts(plan: Plan, structure_set: StructureSet | None) -> PlanFacts:
    """What course selection needs to know about a plan (:mod:`plancheck.model.course_selection`)."""
    rois = sorted({r.referenced_roi_number for r in plan.dose_references
                   if r.dose_reference_type == "TARGET" and r.referenced_roi_number is not None})
    names: list[str] = []
    if structure_set is not None:
        for number in rois:
            try:
                names.append(structure_set.roi_by_number(number).name)
            except KeyError:
                names.append(f"ROI {number}")
    return PlanFacts(plan.sop_instance_uid, plan.label, plan.approval_status, plan.date,
                     structure_set.sop_instance_uid if structure_set is not None else plan.referenced_structure_set_uid,
                     frozenset(rois), tuple(names))


def _choose_courses(plans: list[Plan], plan_rtss: dict[str, StructureSet], *, selection: PlanSelection | None,
                    alternatives: AlternativesPolicy) -> tuple[list[Plan], list[LeftOutPlan], tuple[str, ...]]:
    """The plans that are courses, the plans left out (with the reason), and notes."""
    facts = [plan_facts(p, plan_rtss.get(p.sop_instance_uid)) for p in plans]
    if alternatives == "variants":
        raise UsageError("read_export checks one course set: give plans= for one variant of alternatives")
    choices = choose_courses(facts, selection, alternatives=alternatives)
    if not choices:
        assert selection is not None
        raise LinkError(f"none of the plans named by {selection.source} ({', '.join(selection.plans)}) is in the input")
    choice = choices[0]
    keep = set(choice.courses)
    return [p for p in plans if p.sop_instance_uid in keep], list(choice.left_out), choice.notes


def read_export(paths: str | Path | Sequence[str | Path], *, volume_model: VolumeModel | str | None = None,
                plans: PlanSelection | None = None, alternatives: AlternativesPolicy = "refuse",
                require_dose: bool = True) -> PlanExport:
    """Read and link a DICOM RT export.

    Parameters
    ----------
    paths
        A directory (searched recursively), a ``.zip`` file (members read in memory),
        a single file, or a sequence of files/directories/zips.
    volume_model
        The DVH volume model of every structure set (a :class:`~plancheck.model.VolumeModel`
        or its name, e.g. ``"slab"``, ``"eclipse"``). Default: chosen per structure set from
        the Manufacturer (0008,0070) of the RT Structure Set, else of the RT Dose, else of the
        RT Plan; the slab model when none is recognised (see :mod:`plancheck.model.volume_model`).
    plans
        The plans that are the courses (``--plan``, the case file's ``courses:``); the other
        plans are left out (``PlanExport.left_out``, with the reason) and their doses are
        not read. Default: every plan, alternatives handled by ``alternatives``.
    alternatives
        Without ``plans``, what to do with alternative plans of one case (same structure set,
        same targets; :mod:`plancheck.model.course_selection`): ``refuse`` (a LinkError naming them
        and how to select) or ``keep`` (all kept as courses, for views that sum nothing).
    require_dose
        False: a plan without a usable dose (or without its structure set) is kept in
        ``PlanExport.plans_without_dose`` with the reason instead of being an error
        (``plancheck fractionation`` works from the plan alone).

    Returns
    -------
    PlanExport
        One patient, one frame of reference, one :class:`Course` per RT Plan that is a
        course, with its structure set and its (summed) dose; image series; skipped files
        with reasons; warnings (e.g. an empty ROI, plans left out).

    Raises
    ------
    DicomReadError
        A file given explicitly is not DICOM; a file is truncated or unreadable; nothing
        usable was found.
    DicomConformanceError
        A required attribute is missing or invalid (Dose Units not GY, Dose Type ERROR as a
        plan's only dose, Dose Grid Scaling missing, oblique dose grid, a corrupt or absurd
        dose grid, nonsense fractionation, ...).
    UnsupportedInputError
        A brachytherapy plan.
    LinkError
        Several patients, several frames of reference, a dose referencing an absent
        plan, a plan referencing an absent structure set, a plan without dose,
        incomplete BEAM/FRACTION doses, refused summation types; alternative plans without a
        selection (``alternatives="refuse"``).
    UsageError, ProtocolError
        ``plans`` names a plan that is not in the export (ProtocolError naming the case
        file when the selection comes from it).

    References
    ----------
    DICOM PS3.3 C.8.8.3, C.8.8.9, C.7.4.1.
    """
    unreadable: list[SkippedFile] = []
    try:
        return _read_export(paths, unreadable, volume_model, plans, alternatives, require_dose)
    except LinkError as exc:
        if not unreadable:
            raise
        first = unreadable[0]
        raise LinkError(f"{exc.message} ({len(unreadable)} file(s) of the input could not be read and were skipped, "
                        f"e.g. {first.path}: {first.reason})", exc.path) from exc


SKIPPED_FILES_SHOWN = 6
"""How many skipped files the report's note names one by one (the rest are counted)."""


def skipped_files_note(skipped: Sequence[SkippedFile]) -> str:
    """One line for the report: the input files that were not used, each with its reason.

    Written when at least one skipped file is DICOM or damaged (a superseded or duplicate
    object, an RT Image, a file cut short): the files a physicist may have expected to be read.

    Files are named by their file name only (a folder name may carry the patient's name);
    the first :data:`SKIPPED_FILES_SHOWN` DICOM (or damaged) files are named with the reason,
    the rest counted, and files that are not DICOM at all (notes, the case file) only counted.
    """
    named = [s for s in skipped if _worth_naming(s)]
    plain = sum(s.reason.startswith("not a DICOM") for s in skipped)
    left_out = len(skipped) - len(named) - plain
    parts = [f"{_name(s.path)}: {s.reason}" for s in named[:SKIPPED_FILES_SHOWN]]
    if len(named) > SKIPPED_FILES_SHOWN:
        parts.append(f"{len(named) - SKIPPED_FILES_SHOWN} more")
    if left_out:
        parts.append(f"{left_out} dose file(s) of the plans left out")
    if plain:
        parts.append(f"{plain} file(s) that are not DICOM")
    return f"{len(skipped)} file(s) of the input were not used — {'; '.join(parts)}"


_LEFT_OUT_DOSE = "which is not a course of this check"
"""In the reason a dose of a plan left out is skipped with (the plan's own warning explains it)."""


def _worth_naming(skipped: SkippedFile) -> bool:
    """A skipped file the report names: DICOM (or damaged) and not the dose of a plan left out."""
    return not skipped.reason.startswith("not a DICOM") and _LEFT_OUT_DOSE not in skipped.reason


def _read_export(paths: str | Path | Sequence[str | Path], unreadable: list[SkippedFile],
                 volume_model: VolumeModel | str | None, selection: PlanSelection | None,
                 alternatives: AlternativesPolicy, require_dose: bool) -> PlanExport:
    """:func:`read_export`; fills ``unreadable`` with the files skipped as unreadable junk."""
    started = time.perf_counter()
    sources, skipped = gather_sources(paths)
    classified = classify(sources)
    unreadable += [s for s in skipped if is_damaged_reason(s.reason)]
    unreadable += [s for s in classified.skipped if not s.reason.startswith(("not a DICOM", "SOP class"))]
    skipped += classified.skipped
    shown_input = str(paths) if isinstance(paths, (str, Path)) else f"{len(sources)} input files"

    # Drop duplicate instances (the same object exported twice); refuse two different objects
    # under one SOP Instance UID (which one is current cannot be told).
    files: list[ClassifiedFile] = []
    seen_uid: dict[str, ClassifiedFile] = {}
    for file in classified.files:
        uid = optional_str(file.header, "SOPInstanceUID")
        if uid and uid in seen_uid and file.kind != "IMAGE":
            first = seen_uid[uid]
            if not same_object(first.source, file.source):
                raise LinkError(f"{file.label} and {first.label} have the same SOP Instance UID but different "
                                "contents: plancheck cannot tell which one is current; remove the outdated file "
                                "from the export", file.label)
            skipped.append(SkippedFile(file.label, f"duplicate of {_name(first.label)} (same SOP Instance UID)"))
            continue
        seen_uid.setdefault(uid, file)
        files.append(file)

    rt_files = [f for f in files if f.kind != "IMAGE"]
    if not any(f.kind == "RTPLAN" for f in rt_files):
        found = ", ".join(f"{sum(f.kind == k for f in files)} {k}" for k in ("RTSTRUCT", "RTDOSE", "IMAGE"))
        other = len(classified.skipped) - classified.not_dicom - classified.unreadable
        unread = f"{classified.unreadable} unreadable, " if classified.unreadable else ""
        raise DicomReadError(
            f"no RT Plan found among {len(sources)} file(s) ({classified.not_dicom} not DICOM, {unread}"
            f"{other} of other SOP classes; found {found}); "
            "plancheck needs an RT Plan with its structure set and dose", shown_input
        )
    _check_one_patient(files)

    warnings: list[str] = []
    structure_sets: list[StructureSet] = []
    plans: list[Plan] = []
    dose_headers: list[tuple[DoseHeader, ClassifiedFile]] = []
    dose_bytes: dict[str, bytes] = {}
    for file in rt_files:
        data = file.source.read_bytes()
        check_not_truncated(data, file.header, file.label)
        if file.kind == "RTDOSE":
            dose_headers.append((_parse(file, lambda: dose_header_from_dataset(file.header, file.label)), file))
            dose_bytes[file.label] = data
            continue
        if file.kind == "RTSTRUCT":
            rtss, ss_warnings = _parse(file, lambda: structure_set_from_dataset(file.header, file.label))
            structure_sets.append(rtss)
            warnings += ss_warnings
        else:
            plans.append(_parse(file, lambda: plan_from_dataset(file.header, file.label)))

    structure_sets = _choose_volume_models(structure_sets, rt_files, volume_model)
    frame = _check_one_frame(
        [(s.path, s.frame_of_reference_uid) for s in structure_sets]
        + [(p.path, p.frame_of_reference_uid) for p in plans]
        + [(h.label, h.frame_of_reference_uid) for h, _ in dose_headers]
    )
    image_files = [f for f in files if f.kind == "IMAGE"]
    images = _image_series(image_files)
    axial = _axial_images(image_files)
    z_of, tolerance = _slice_positions(axial)
    structure_sets = [_with_image_slices(_with_slice_defects(s, z_of, tolerance, warnings), axial)
                      for s in structure_sets]
    for series in images:
        if series.frame_of_reference_uid and series.frame_of_reference_uid != frame:
            warnings.append(f"{series.modality} series {series.series_instance_uid} is in frame of reference "
                            f"{series.frame_of_reference_uid}, not in the plan's frame {frame}")

    # RTPLAN → RTSTRUCT
    rtss_by_uid = {s.sop_instance_uid: s for s in structure_sets}
    plan_rtss: dict[str, StructureSet] = {}
    unlinked: dict[str, str] = {}  # plan UID -> why it has no structure set (require_dose=False)
    for plan in plans:
        try:
            plan_rtss[plan.sop_instance_uid] = _structure_set_of(plan, structure_sets, rtss_by_uid, warnings)
        except LinkError as exc:
            if require_dose:
                raise
            unlinked[plan.sop_instance_uid] = exc.message
    # courses in the order they were planned (RT Plan Date), then by label: the same order however
    # the files are named or were sent
    plans.sort(key=lambda p: (p.date or "9999", p.label, p.sop_instance_uid))
    plans, left_out, course_notes = _choose_courses(plans, plan_rtss, selection=selection,
                                                    alternatives=alternatives)
    left_out_uids = {p.uid: p for p in left_out}
    # The Frame of Reference module is optional in an RT Plan: take the frame of its structure set.
    plans = [p if p.frame_of_reference_uid else replace(p, frame_of_reference_uid=frame) for p in plans]

    # RTDOSE → RTPLAN
    plan_by_uid = {p.sop_instance_uid: p for p in plans}
    doses: dict[str, _Doses] = {p.sop_instance_uid: _Doses() for p in plans}
    for header, file in dose_headers:
        owner = next((left_out_uids[u] for u in header.plan_uids if u in left_out_uids), None)
        if owner is not None:
            skipped.append(SkippedFile(file.label, f"dose of plan {owner.shown}, {_LEFT_OUT_DOSE} "
                                                   f"check ({owner.reason})"))
            dose_bytes.pop(file.label, None)
            continue
        refused = _REFUSED.get(header.summation_type)
        if refused is not None:
            reason = (f"Dose Summation Type {header.summation_type} ({refused}) is refused: plancheck "
                      "checks each plan with its own PLAN, FRACTION or BEAM dose")
            skipped.append(SkippedFile(file.label, reason))
            warnings.append(f"{file.label}: {reason}")
            for uid in header.plan_uids:
                if uid in doses:
                    doses[uid].refused.append((header, refused))
            continue
        if header.summation_type not in _PLAN_KIND + _FRACTION_KIND + _BEAM_KIND:
            raise DicomConformanceError(
                f"(3004,000A) 'Dose Summation Type' is {header.summation_type!r}, it must be PLAN, FRACTION, "
                "BEAM, FRACTION_SESSION or BEAM_SESSION", file.label
            )
        if not header.plan_uids:
            if len(plans) == 1 and not left_out:
                uid = plans[0].sop_instance_uid
                warnings.append(f"{file.label}: no (300C,0002) 'Referenced RT Plan Sequence'; "
                                f"assigned to the only plan, {plans[0].path}")
            else:
                raise LinkError(
                    "has no (300C,0002) 'Referenced RT Plan Sequence' and the input holds "
                    f"{len(plans) + len(left_out)} plans; plancheck cannot tell which plan the dose belongs to",
                    file.label
                )
        elif len(set(header.plan_uids)) > 1:
            raise LinkError(f"a {header.summation_type} dose references {len(set(header.plan_uids))} RT Plans; "
                            "it must reference one", file.label)
        else:
            uid = header.plan_uids[0]
        if uid not in plan_by_uid:
            raise LinkError(
                f"references RT Plan {uid} ((300C,0002) 'Referenced RT Plan Sequence'), which is not in "
                "the input", file.label
            )
        what = NOT_A_DOSE_TYPES.get(header.dose_type.strip().upper())
        if what is not None:
            reason = f"(3004,0004) 'Dose Type' {header.dose_type.strip()}: {what}, not a dose distribution"
            skipped.append(SkippedFile(file.label, reason))
            warnings.append(f"{file.label}: {reason}; plancheck does not use it")
            dose_bytes.pop(file.label, None)
            doses[uid].not_doses.append(header)
            continue
        doses[uid].headers.append((header, file))

    courses = []
    without_dose: list[PlanWithoutDose] = []
    for plan in plans:
        if plan.sop_instance_uid in unlinked:
            without_dose.append(PlanWithoutDose(plan, None, unlinked[plan.sop_instance_uid]))
            continue
        try:
            grid, summary = _plan_dose(plan, doses[plan.sop_instance_uid], dose_bytes, skipped, warnings)
        except InputError as exc:
            if require_dose:
                raise
            without_dose.append(PlanWithoutDose(plan, plan_rtss[plan.sop_instance_uid], exc.message))
            continue
        courses.append(Course(plan=plan, structure_set=plan_rtss[plan.sop_instance_uid], dose=grid,
                              dose_summary=summary))
        logger.info("plan %s: %s", plan.sop_instance_uid, summary)

    for warning in warnings:
        logger.warning("%s", warning)
    if any(_worth_naming(s) for s in skipped):
        warnings.append(skipped_files_note(skipped))
        logger.info("%s", warnings[-1])
    for note in [p.describe() for p in left_out] + list(course_notes):
        logger.info("%s", note)
        warnings.append(note)
    first_plan = next(f for f in rt_files if f.kind == "RTPLAN").header
    export = PlanExport(
        patient_id=optional_str(first_plan, "PatientID"),
        patient_name=optional_str(first_plan, "PatientName"),
        frame_of_reference_uid=frame,
        structure_sets=tuple(structure_sets),
        courses=tuple(courses),
        images=images,
        skipped=tuple(skipped),
        warnings=tuple(warnings),
        left_out=tuple(left_out),
        course_notes=tuple(course_notes),
        plans_without_dose=tuple(without_dose),
    )
    logger.info("read export in frame %s: %d plan(s), %d structure set(s), %d dose file(s), %d image "
                "series, %d skipped, %.3f s", frame, len(plans), len(structure_sets), len(dose_headers),
                len(images), len(skipped), time.perf_counter() - started)
    return export
