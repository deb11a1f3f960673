"""RT Structure Set → :class:`plancheck.model.StructureSet`.

References
----------
DICOM PS3.3 C.8.8.5 (Structure Set module), C.8.8.6 (ROI Contour module),
C.8.8.8 (RT ROI Observations module).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset

from plancheck.dicom.fast_contours import read_roi_contours
from plancheck.dicom.read_common import (
    as_int, optional_str, require, tag_text,
)
from plancheck.dicom.roi_checks import contour_defects
from plancheck.errors import DicomConformanceError
from plancheck.model import Contour, Roi, StructureSet
from plancheck.model.volume_model import SLAB, VolumeModel, volume_model_for_manufacturer

__all__ = ["structure_set_from_dataset", "manufacturer_of", "volume_model_of"]

logger = logging.getLogger(__name__)

_CONTOUR_DATA = 0x30060050


def _contour_points(item: Dataset, label: str, where: str) -> np.ndarray:
    """ContourData as an ``(N, 3)`` float array (mm), parsed from the raw value when possible.

    Parsing the raw ``DS`` bytes with one split is ~10× faster than letting pydicom build
    a ``DSfloat`` per coordinate.

    Raises
    ------
    DicomConformanceError
        Contour Data missing, not numbers, not x/y/z triplets, or not finite (the caller
        records it as a defect of the ROI).
    """
    element = item.get_item(_CONTOUR_DATA)
    if element is None or element.value is None or len(element.value) == 0:
        raise DicomConformanceError(f"{tag_text('ContourData')}{where} is missing; it is required", label)
    value = element.value
    try:
        if isinstance(value, (bytes, bytearray)):
            flat = np.array(bytes(value).decode("ascii").split("\\"), dtype=float)
        elif isinstance(value, str):
            flat = np.array(value.split("\\"), dtype=float)
        else:
            flat = np.array([float(v) for v in value], dtype=float)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise DicomConformanceError(
            f"{tag_text('ContourData')}{where} holds a value that is not a number; it must be "
            "x\\y\\z triplets in mm", label
        ) from exc
    if flat.size % 3 != 0:
        raise DicomConformanceError(
            f"{tag_text('ContourData')}{where} has {flat.size} values, it must be a multiple of 3 "
            "(x\\y\\z triplets)", label
        )
    if not np.all(np.isfinite(flat)):
        raise DicomConformanceError(f"{tag_text('ContourData')}{where} holds a non-finite value", label)
    return flat.reshape(-1, 3)


def _image_uid(contour: Dataset) -> str:
    """Referenced SOP Instance UID of the first item of a contour's Contour Image Sequence."""
    try:
        images = contour.get("ContourImageSequence") or ()
        return optional_str(images[0], "ReferencedSOPInstanceUID") if len(images) else ""
    except Exception:  # an undecodable optional reference is treated as absent
        return ""


def _duplicates(declared: list[tuple[int, str]]) -> dict[int, str]:
    """Defects of ROIs that share an ROI Number or an ROI Name with another ROI, by list index."""
    defects: dict[int, str] = {}
    by_number: dict[int, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for index, (number, name) in enumerate(declared):
        by_number.setdefault(number, []).append(index)
        by_name.setdefault(name, []).append(index)
    for number, indices in by_number.items():
        if len(indices) > 1:
            names = ", ".join(repr(declared[i][1]) for i in indices)
            for i in indices:
                defects[i] = (f"(3006,0022) 'ROI Number' {number} is used by {len(indices)} ROIs ({names}): "
                              "their contours cannot be told apart")
    for name, indices in by_name.items():
        if len(indices) > 1 and name:
            numbers = ", ".join(str(declared[i][0]) for i in indices)
            for i in indices:
                defects.setdefault(i, f"(3006,0026) 'ROI Name' {name!r} is used by {len(indices)} ROIs (numbers "
                                      f"{numbers}): which one a rule means is ambiguous")
    return defects


def _main_frame(frames: list[str], roi_frames: list[str]) -> str:
    """The structure set's frame of reference: the one most of its ROIs are declared in
    (ties: the first declared), else the first of its Referenced Frame of Reference Sequence.
    One ROI drawn on a registered image does not move the others out of the plan's frame."""
    counts = {f: roi_frames.count(f) for f in frames}
    return max(frames, key=lambda f: counts[f])  # max keeps the first of equal counts


def _other_frame_defect(roi_frame: str, frame: str) -> str:
    """The defect of an ROI declared in another frame of reference than the structure set's
    (``frame``, which the linker checks is the plan's and the dose's): its coordinates are
    in another patient coordinate system (e.g. a registered MR's), which plancheck does not
    register, so they cannot be placed in the dose grid."""
    return (f"it is defined in another frame of reference ({tag_text('ReferencedFrameOfReferenceUID')} {roi_frame}, "
            f"not {frame}): it cannot be placed in the dose grid")


def manufacturer_of(ds: Dataset) -> tuple[str, str]:
    """Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090) of a data set,
    printable characters only (64 at most each; empty when absent)."""
    def clean(keyword: str) -> str:
        text = optional_str(ds, keyword)
        return "".join(c for c in text if c.isprintable())[:64].strip()
    return clean("Manufacturer"), clean("ManufacturerModelName")


def volume_model_of(ds: Dataset, what: str) -> tuple[VolumeModel | None, str]:
    """The volume model of the planning system that wrote ``ds`` (None if not recognised)
    and a phrase saying why, e.g. ``"Manufacturer 'ADAC' / 'Pinnacle3' of the RT Structure Set"``."""
    maker, product = manufacturer_of(ds)
    shown = " / ".join(repr(t) for t in (maker, product) if t) or "(absent)"
    model = volume_model_for_manufacturer(maker, product)
    return model, f"Manufacturer {shown} of the {what}"


def structure_set_from_dataset(ds: Dataset, label: str) -> tuple[StructureSet, list[str]]:
    """Build a :class:`StructureSet` from an RTSTRUCT data set.

    Parameters
    ----------
    ds
        The RT Structure Set data set.
    label
        The file name, used in messages and stored as ``StructureSet.path``.

    Returns
    -------
    structure_set, warnings
        The structure set, and conformance remarks that did not stop the reading
        (an ROI without contours, contours of an undeclared ROI, defective ROIs).
        ROIs that cannot be measured reliably carry their reasons in ``Roi.defects``
        (see :mod:`plancheck.dicom.roi_checks` and ``docs/input-validation.md``): two
        ROIs sharing an ROI Number or Name, an ROI whose (3006,0024) 'Referenced Frame of
        Reference UID' is not the structure set's (the one most ROIs are declared in), a contour whose
        data are missing, not numbers
        or disagree with its Number of Contour Points, crossing, degenerate or stacked
        contours, an unknown Contour Geometric Type, a corrupt coordinate.

    Raises
    ------
    DicomConformanceError
        A required attribute of the structure set as a whole is missing or invalid (no
        Structure Set ROI Sequence, an ROI without ROI Number, an ROI Contour item
        without Referenced ROI Number, no frame of reference).

    References
    ----------
    DICOM PS3.3 C.8.8.5, C.8.8.6 (Contour Geometric Type, Number of Contour Points,
    Contour Data, Contour Image Sequence), C.8.8.8 (RT ROI Interpreted Type).
    """
    warnings: list[str] = []
    sop_uid = str(require(ds, "SOPInstanceUID", label))

    # Structure Set module: declared ROIs and their frame of reference.
    roi_items = require(ds, "StructureSetROISequence", label,
                        why="by the Structure Set module (PS3.3 C.8.8.5)")
    declared: list[tuple[int, str]] = []
    roi_frames: list[str] = []  # per declared ROI: its Referenced Frame of Reference UID ("" when absent)
    frames: list[str] = []
    for index, item in enumerate(roi_items, start=1):
        where = f" in item {index} of {tag_text('StructureSetROISequence')}"
        number = as_int(require(item, "ROINumber", label, where=where), "ROINumber", label, where)
        declared.append((number, optional_str(item, "ROIName")))
        frame = optional_str(item, "ReferencedFrameOfReferenceUID")
        roi_frames.append(frame)
        if frame and frame not in frames:
            frames.append(frame)
    for item in ds.get("ReferencedFrameOfReferenceSequence") or ():
        frame = optional_str(item, "FrameOfReferenceUID")
        if frame and frame not in frames:
            frames.append(frame)
    if not frames:
        raise DicomConformanceError(
            f"{tag_text('ReferencedFrameOfReferenceUID')} is missing from every item of "
            f"{tag_text('StructureSetROISequence')}; it is required to place the contours", label
        )
    frame = _main_frame(frames, roi_frames)
    if len(frames) > 1:
        warnings.append(f"{label}: the structure set refers to {len(frames)} frames of reference; plancheck "
                        f"places its contours in {frame}, and ROIs declared in another one cannot be measured")
    names = {number: name for number, name in declared}
    duplicate_defects = _duplicates(declared)
    ambiguous_numbers = {declared[i][0] for i, text in duplicate_defects.items() if "'ROI Number'" in text}

    # RT ROI Observations module: interpreted types.
    types: dict[int, str] = {}
    for index, item in enumerate(ds.get("RTROIObservationsSequence") or (), start=1):
        where = f" in item {index} of {tag_text('RTROIObservationsSequence')}"
        ref = item.get("ReferencedROINumber")
        if ref is None or ref == "":
            continue
        types.setdefault(as_int(ref, "ReferencedROINumber", label, where), optional_str(item, "RTROIInterpretedType"))

    # ROI Contour module: from the raw bytes when the data are well-formed (fast), else
    # through pydicom (which also words every conformance problem).
    contours: dict[int, list[Contour]] = {number: [] for number in names}
    colours: dict[int, tuple[int, int, int]] = {}
    read_defects: dict[int, list[str]] = {}
    fast = read_roi_contours(ds, names)
    for number, colour, roi_contours in fast or ():
        if colour is not None:
            colours[number] = colour
        contours[number].extend(Contour(points_mm=points, geometric_type=geometric_type, image_uid=image)
                                for geometric_type, points, image in roi_contours)
    for index, item in enumerate((ds.get("ROIContourSequence") or ()) if fast is None else (), start=1):
        where = f" in item {index} of {tag_text('ROIContourSequence')}"
        number = as_int(require(item, "ReferencedROINumber", label, where=where),
                        "ReferencedROINumber", label, where)
        if number not in names:
            count = len(item.get("ContourSequence") or ())
            warnings.append(f"{label}: {tag_text('ROIContourSequence')} item {index} references "
                            f"ROI number {number}, which is not declared; its {count} contour(s) are ignored")
            continue
        colour = item.get("ROIDisplayColor")
        if colour is not None and len(colour) == 3:
            try:
                colours[number] = tuple(int(c) for c in colour)  # type: ignore[assignment]
            except (TypeError, ValueError):
                pass
        roi_text = f"ROI {number} {names[number]!r}"
        for c_index, contour in enumerate(item.get("ContourSequence") or (), start=1):
            c_where = f" of contour {c_index} of {roi_text}"
            try:
                geometric_type = str(require(contour, "ContourGeometricType", label, where=c_where)).strip()
                points = _contour_points(contour, label, c_where)
                declared_points = contour.get("NumberOfContourPoints")
                if declared_points not in (None, "") and \
                        as_int(declared_points, "NumberOfContourPoints", label, c_where) != len(points):
                    raise DicomConformanceError(
                        f"{tag_text('NumberOfContourPoints')}{c_where} is {declared_points} but "
                        f"{tag_text('ContourData')} holds {len(points)} points; they must agree", label
                    )
            except DicomConformanceError as exc:
                read_defects.setdefault(number, []).append(exc.message)
                continue
            contours[number].append(Contour(points_mm=points, geometric_type=geometric_type,
                                            image_uid=_image_uid(contour)))

    model, source = volume_model_of(ds, "RT Structure Set")
    if model is None:
        model, source = SLAB, f"default: {source} not recognised"
    rois = []
    for index, (number, name) in enumerate(declared):
        own = tuple(contours[number]) if number not in ambiguous_numbers else ()
        roi = Roi(number=number, name=name, interpreted_type=types.get(number, ""),
                  contours=own, color_rgb=colours.get(number), volume_model=model)
        defects: list[str] = []
        if index in duplicate_defects:
            defects.append(duplicate_defects[index])
        if roi_frames[index] and roi_frames[index] != frame:
            defects.append(_other_frame_defect(roi_frames[index], frame))
        found = read_defects.get(number, [])
        if found:
            defects.append(f"{len(found)} contour(s) cannot be read, e.g. {found[0]}")
        defects += contour_defects(roi)
        if defects:
            roi = replace(roi, defects=tuple(defects))
            warnings.append(f"{label}: ROI {number} {name!r} cannot be measured: {'; '.join(defects)}")
        elif not roi.contours:
            warnings.append(f"{label}: ROI {number} {name!r} has no contours (empty structure)")
        rois.append(roi)

    structure_set = StructureSet(
        sop_instance_uid=sop_uid,
        frame_of_reference_uid=frame,
        label=optional_str(ds, "StructureSetLabel"),
        rois=tuple(rois),
        path=label,
        patient_id=optional_str(ds, "PatientID"),
        manufacturer=" / ".join(t for t in manufacturer_of(ds) if t),
        volume_model=model,
        volume_model_source=source,
    )
    logger.debug("structure set %s: %d ROIs, %d contours", sop_uid, len(rois),
                 sum(len(r.contours) for r in rois))
    return structure_set, warnings
