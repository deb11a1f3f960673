"""RT Dose → :class:`plancheck.model.DoseGrid` (dose in Gy on an increasing axis-aligned grid).

Conventions
-----------
* ``dose_gy = stored pixel value × DoseGridScaling`` as ``float32`` (12 MB for 3 million
  voxels instead of 24; the relative rounding of 6e-8 is far below any clinical tolerance).
* PixelSpacing (0028,0030) is ``[row spacing, column spacing]``: the first value is the
  distance between rows (along the column direction, normally y), the second the distance
  between columns (along the row direction, normally x).
* GridFrameOffsetVector (3004,000C): when its first value is 0 the offsets are *relative*
  to ImagePositionPatient, measured along the image plane normal (row × column
  direction); otherwise they are *absolute* z positions (PS3.3 C.8.8.3.2 allows this only
  for the orientation ``[1,0,0,0,1,0]``; plancheck checks that the first value equals the
  z of ImagePositionPatient).
* Axis-aligned axial orientations with reversed or swapped axes (e.g. ``[-1,0,0,0,-1,0]``,
  a decreasing offset vector) are flipped/transposed so that x, y and z increase; oblique
  or non-axial orientations are refused.

References
----------
DICOM PS3.3 C.8.8.3 (RT Dose module), C.7.6.2 (Image Plane module), C.7.6.6 (Multi-frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from plancheck.dicom.read_common import (
    as_float, as_int, float_vector, optional_int, optional_str, require, tag_text,
)
from plancheck.errors import DicomConformanceError, DicomReadError
from plancheck.model import DoseGrid, DoseSource

__all__ = ["MAX_PLAUSIBLE_DOSE_GY", "DoseHeader", "dose_header_from_dataset", "dose_grid_from_dataset", "check_dose_type",
           "NOT_A_DOSE_TYPES"]

logger = logging.getLogger(__name__)

_AXIS_TOLERANCE = 1e-4

#: Largest dose grid plancheck reads (voxels; 256 MB as float32: a 1 mm grid of 40 × 40 × 40 cm).
MAX_DOSE_VOXELS = 64_000_000
#: Dose grid spacing accepted along each axis (mm). Planning systems compute on 0.5–5 mm grids
#: (up to 8 mm at most); a coarser grid cannot resolve a DVH and makes the DVH engine's
#: refinement of the hot tail grow without bound (measured: 1.7 GB at 9 mm, > 24 GB at 30 mm).
MIN_DOSE_SPACING_MM, MAX_DOSE_SPACING_MM = 0.1, 10.0
#: Dose Types (3004,0004) of grids that are not a dose distribution, with what they hold.
NOT_A_DOSE_TYPES = {"ERROR": "the grid holds an estimate of the error of a dose"}
#: No plan dose reaches this (Gy); a larger value comes from a corrupt Dose Grid Scaling or pixel data.
MAX_PLAUSIBLE_DOSE_GY = 1000.0


@dataclass(frozen=True)
class DoseHeader:
    """What the linker needs to know about an RTDOSE before its pixels are read.

    Attributes
    ----------
    label
        The file.
    sop_instance_uid, frame_of_reference_uid
        Identity and frame.
    summation_type
        Dose Summation Type (3004,000A).
    dose_type
        Dose Type (3004,0004).
    plan_uids
        SOP Instance UIDs of the referenced RT Plan(s) (ReferencedRTPlanSequence).
    fraction_group_numbers
        Referenced Fraction Group Numbers (for FRACTION, BEAM and ``*_SESSION`` doses).
    beam_numbers
        Referenced Beam Numbers (for BEAM doses).
    """

    label: str
    sop_instance_uid: str
    frame_of_reference_uid: str
    summation_type: str
    dose_type: str
    plan_uids: tuple[str, ...]
    fraction_group_numbers: tuple[int, ...]
    beam_numbers: tuple[int, ...]


def dose_header_from_dataset(ds: Dataset, label: str) -> DoseHeader:
    """Read the references and summation type of an RTDOSE (no pixel data needed).

    Raises
    ------
    DicomConformanceError
        Dose Summation Type or the SOP Instance UID missing.

    References
    ----------
    DICOM PS3.3 C.8.8.3 (Dose Summation Type, Referenced RT Plan Sequence and its
    Referenced Fraction Group / Referenced Beam Sequences).
    """
    plans: list[str] = []
    groups: list[int] = []
    beams: list[int] = []
    for index, item in enumerate(ds.get("ReferencedRTPlanSequence") or (), start=1):
        where = f" in item {index} of {tag_text('ReferencedRTPlanSequence')}"
        uid = optional_str(item, "ReferencedSOPInstanceUID")
        if uid:
            plans.append(uid)
        for g_index, group in enumerate(item.get("ReferencedFractionGroupSequence") or (), start=1):
            g_where = f" in item {g_index} of {tag_text('ReferencedFractionGroupSequence')}{where}"
            number = optional_int(group, "ReferencedFractionGroupNumber", label, g_where)
            if number is not None:
                groups.append(number)
            for b_index, beam in enumerate(group.get("ReferencedBeamSequence") or (), start=1):
                b_where = f" in item {b_index} of {tag_text('ReferencedBeamSequence')}{g_where}"
                beam_number = optional_int(beam, "ReferencedBeamNumber", label, b_where)
                if beam_number is not None:
                    beams.append(beam_number)
    return DoseHeader(
        label=label,
        sop_instance_uid=str(require(ds, "SOPInstanceUID", label)),
        frame_of_reference_uid=optional_str(ds, "FrameOfReferenceUID"),
        summation_type=str(require(ds, "DoseSummationType", label,
                                   why="to know what the dose represents (PLAN, BEAM, FRACTION ...)")).strip(),
        dose_type=optional_str(ds, "DoseType"),
        plan_uids=tuple(plans),
        fraction_group_numbers=tuple(groups),
        beam_numbers=tuple(beams),
    )


def _axis_of(direction: np.ndarray, keyword: str, value: object, label: str) -> tuple[int, float]:
    """(0 for x, 1 for y, 2 for z; sign) of a unit direction that must lie along an axis."""
    axis = int(np.argmax(np.abs(direction)))
    if abs(abs(direction[axis]) - 1.0) > _AXIS_TOLERANCE or np.sum(np.abs(direction)) - 1.0 > 3 * _AXIS_TOLERANCE:
        raise DicomConformanceError(
            f"{tag_text(keyword)} value of {value} is oblique; plancheck needs an axis-aligned "
            "axial dose grid (row and column directions along x and y)", label
        )
    return axis, float(np.sign(direction[axis]))


def _stored_values(ds: Dataset, label: str, rows: int, columns: int, frames: int) -> np.ndarray:
    """The stored pixel values as an ``(frames, rows, columns)`` array."""
    bits = as_int(require(ds, "BitsAllocated", label), "BitsAllocated", label)
    if bits not in (16, 32):
        raise DicomConformanceError(
            f"{tag_text('BitsAllocated')} value of {bits} is invalid, it must be 16 or 32 for RT Dose", label
        )
    samples = optional_int(ds, "SamplesPerPixel", label)
    if samples not in (None, 1):
        raise DicomConformanceError(f"{tag_text('SamplesPerPixel')} value of {samples} is invalid, it must be 1",
                                    label)
    representation = optional_int(ds, "PixelRepresentation", label)
    if representation not in (None, 0, 1):
        raise DicomConformanceError(f"{tag_text('PixelRepresentation')} value of {representation} is invalid, it "
                                    "must be 0 (unsigned) or 1 (two's complement)", label)
    signed = representation == 1
    stored_bits = optional_int(ds, "BitsStored", label)
    if stored_bits is not None and not 1 <= stored_bits <= bits:
        raise DicomConformanceError(f"{tag_text('BitsStored')} value of {stored_bits} is invalid, it must be between "
                                    f"1 and {tag_text('BitsAllocated')} {bits}", label)
    if "PixelData" not in ds:
        raise DicomConformanceError(f"{tag_text('PixelData')} is missing; it is required (the dose values)",
                                    label)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    expected = rows * columns * frames * bits // 8
    if syntax is None or not syntax.is_compressed:
        raw = ds.PixelData
        if len(raw) < expected:
            raise DicomReadError(
                f"{tag_text('PixelData')} holds {len(raw)} bytes, but {tag_text('Rows')} {rows} × "
                f"{tag_text('Columns')} {columns} × {tag_text('NumberOfFrames')} {frames} × {bits // 8} "
                f"bytes = {expected} bytes are required: the file is truncated", label
            )
        little = syntax is None or syntax.is_little_endian
        dtype = np.dtype(f"{'<' if little else '>'}{'i' if signed else 'u'}{bits // 8}")
        values = np.frombuffer(raw, dtype=dtype, count=rows * columns * frames).reshape(frames, rows, columns)
    else:
        try:
            values = np.asarray(ds.pixel_array)
        except Exception as exc:
            raise DicomReadError(f"{tag_text('PixelData')} cannot be decoded ({syntax.name}): {exc}", label) from exc
        if values.size != rows * columns * frames:
            raise DicomReadError(f"{tag_text('PixelData')} decodes to {values.size} values, but {rows} × {columns} × "
                                 f"{frames} are required", label)
        values = values.reshape(frames, rows, columns)
    _check_stored_range(values, stored_bits or bits, signed, label)
    return values


def _check_stored_range(values: np.ndarray, stored_bits: int, signed: bool, label: str) -> None:
    """Refuse stored values a dose cannot have: negative (a dose is never below 0 Gy; they
    are never clipped to 0 silently), or beyond what Bits Stored allows (PS3.5 §8: the
    bits above Bits Stored must not carry the value)."""
    if values.size == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low < 0:
        count = int(np.count_nonzero(values < 0))
        raise DicomConformanceError(
            f"{tag_text('PixelData')} holds {count} negative dose value(s) (down to the stored value {low}); "
            f"a dose cannot be negative", label)
    limit = (1 << (stored_bits - 1)) - 1 if signed else (1 << stored_bits) - 1
    if high > limit:
        raise DicomConformanceError(
            f"{tag_text('PixelData')} holds stored values up to {high}, beyond the {limit} that "
            f"{tag_text('BitsStored')} {stored_bits} allows: the pixel data or Bits Stored is corrupt", label)


def _check_spacing(values: np.ndarray, what: str, label: str) -> None:
    """Refuse a dose grid spacing outside [MIN_DOSE_SPACING_MM, MAX_DOSE_SPACING_MM]."""
    if float(np.min(values)) < MIN_DOSE_SPACING_MM or float(np.max(values)) > MAX_DOSE_SPACING_MM:
        raise DicomConformanceError(
            f"{what} is outside {MIN_DOSE_SPACING_MM:g}–{MAX_DOSE_SPACING_MM:g} mm: no planning system computes "
            "dose on such a grid, and plancheck's DVHs are not reliable (nor bounded in work) on it", label)


def check_dose_type(dose_type: str, label: str) -> None:
    """Refuse a grid whose Dose Type (3004,0004) says it is not a dose distribution.

    ``ERROR`` (PS3.3 C.8.8.3) is an estimate of the error of a dose, not a dose: grading
    DVH limits on it is meaningless. ``PHYSICAL`` and ``EFFECTIVE`` are doses; an absent
    value is read as physical, and said so (the dose summary; INT-DOSE-UNITS warns).

    Raises
    ------
    DicomConformanceError
        Dose Type ``ERROR``.
    """
    if dose_type.strip().upper() in NOT_A_DOSE_TYPES:
        raise DicomConformanceError(
            f"{tag_text('DoseType')} is {dose_type.strip()!r}: {NOT_A_DOSE_TYPES[dose_type.strip().upper()]}, not a "
            "dose distribution; plancheck needs a PHYSICAL or EFFECTIVE dose", label
        )


def dose_grid_from_dataset(ds: Dataset, label: str) -> DoseGrid:
    """Build a :class:`DoseGrid` (Gy, increasing axes) from a complete RTDOSE data set.

    The file is taken as it is: a ``*_SESSION`` dose stays per session here (the
    linker in :func:`plancheck.dicom.read_export` scales it to the course).

    Parameters
    ----------
    ds
        The RTDOSE data set, pixel data included.
    label
        The file, named in messages and in ``DoseGrid.sources``.

    Returns
    -------
    DoseGrid

    Raises
    ------
    DicomConformanceError
        Dose Units not ``GY``, Dose Type ``ERROR`` (not a dose distribution), Dose Grid
        Scaling or a geometry attribute missing,
        oblique or non-axial orientation, offsets inconsistent; a grid of more than
        :data:`MAX_DOSE_VOXELS` voxels or a spacing outside
        :data:`MIN_DOSE_SPACING_MM`–:data:`MAX_DOSE_SPACING_MM` (refused before the pixels
        are read); negative stored values, values beyond Bits Stored, a largest dose that
        is not finite or above :data:`MAX_PLAUSIBLE_DOSE_GY` (never clipped silently).
    DicomReadError
        Pixel data truncated or not decodable.

    References
    ----------
    DICOM PS3.3 C.8.8.3 (Dose Units, Dose Type, Dose Grid Scaling, Grid Frame Offset Vector,
    Tissue Heterogeneity Correction), C.7.6.2 (Image Position/Orientation, Pixel Spacing).
    """
    header = dose_header_from_dataset(ds, label)
    units = str(require(ds, "DoseUnits", label, why="(GY for absolute dose)")).strip().upper()
    if units != "GY":
        raise DicomConformanceError(
            f"{tag_text('DoseUnits')} is {units!r}, plancheck needs absolute dose 'GY'", label
        )
    check_dose_type(header.dose_type, label)
    scaling = as_float(require(ds, "DoseGridScaling", label,
                               why="to convert the stored pixel values to Gy"), "DoseGridScaling", label)
    if scaling <= 0:
        raise DicomConformanceError(
            f"{tag_text('DoseGridScaling')} value of {scaling} is invalid, it must be > 0", label
        )
    frame = str(require(ds, "FrameOfReferenceUID", label, why="to place the dose in the patient"))
    rows = as_int(require(ds, "Rows", label), "Rows", label)
    columns = as_int(require(ds, "Columns", label), "Columns", label)
    frames = optional_int(ds, "NumberOfFrames", label) or 1
    if rows < 1 or columns < 1:
        raise DicomConformanceError(f"{tag_text('Rows')} × {tag_text('Columns')} is {rows} × {columns}, "
                                    "both must be at least 1", label)

    if rows * columns * frames > MAX_DOSE_VOXELS:
        raise DicomConformanceError(
            f"the dose grid has {rows} × {columns} × {frames} = {rows * columns * frames:,} voxels ({tag_text('Rows')}"
            f" × {tag_text('Columns')} × {tag_text('NumberOfFrames')}); plancheck reads at most {MAX_DOSE_VOXELS:,}",
            label)
    position = float_vector(ds, "ImagePositionPatient", label, 3, why="to place the dose grid")
    orientation = float_vector(ds, "ImageOrientationPatient", label, 6, why="to place the dose grid")
    spacing = float_vector(ds, "PixelSpacing", label, 2, why="to place the dose grid")
    if np.any(spacing <= 0):
        raise DicomConformanceError(f"{tag_text('PixelSpacing')} value of {list(spacing)} is invalid, "
                                    "it must be positive", label)
    _check_spacing(spacing, f"{tag_text('PixelSpacing')} value of [{spacing[0]:g}, {spacing[1]:g}] mm", label)
    row_dir, col_dir = orientation[:3], orientation[3:]
    shown = "[" + ", ".join(f"{v:g}" for v in orientation) + "]"
    row_axis, row_sign = _axis_of(row_dir, "ImageOrientationPatient", shown, label)
    col_axis, col_sign = _axis_of(col_dir, "ImageOrientationPatient", shown, label)
    if 2 in (row_axis, col_axis) or row_axis == col_axis:
        raise DicomConformanceError(
            f"{tag_text('ImageOrientationPatient')} value of {shown} is not axial; plancheck needs "
            "dose planes perpendicular to z (rows and columns along x and y)", label
        )
    normal_z = float(np.cross(row_dir, col_dir)[2])

    # Slice positions (z of each frame).
    if frames > 1 or "GridFrameOffsetVector" in ds:
        offsets = float_vector(ds, "GridFrameOffsetVector", label, frames,
                               why="for a multi-frame dose (the z of each frame)")
        if offsets[0] == 0.0:
            z_frames = position[2] + normal_z * offsets
        else:
            if abs(offsets[0] - position[2]) > 1e-2:
                raise DicomConformanceError(
                    f"{tag_text('GridFrameOffsetVector')} starts at {offsets[0]:g}: neither 0 (relative "
                    f"offsets) nor the z of {tag_text('ImagePositionPatient')} ({position[2]:g}) "
                    "(absolute positions)", label
                )
            z_frames = offsets.copy()
    else:
        z_frames = np.array([position[2]])

    values = _stored_values(ds, label, rows, columns, frames)
    # Array axes (frame, row j, column i): column index i moves along row_dir with the column
    # spacing PixelSpacing[1]; row index j moves along col_dir with the row spacing PixelSpacing[0].
    along_i = position[row_axis] + row_sign * spacing[1] * np.arange(columns)
    along_j = position[col_axis] + col_sign * spacing[0] * np.arange(rows)
    if row_axis == 0:
        x_mm, y_mm = along_i, along_j
    else:  # rows run along y: transpose to (frame, y, x)
        x_mm, y_mm = along_j, along_i
        values = values.transpose(0, 2, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        dose_gy = values.astype(np.float32) * np.float32(scaling)
    largest = float(np.max(dose_gy)) if dose_gy.size else 0.0
    if not np.isfinite(largest) or largest > MAX_PLAUSIBLE_DOSE_GY:
        raise DicomConformanceError(
            f"the largest dose is {largest:.4g} Gy (stored value {int(values.max())} × {tag_text('DoseGridScaling')} "
            f"{scaling:g}); no plan dose reaches {MAX_PLAUSIBLE_DOSE_GY:g} Gy: the scaling or pixel data are corrupt",
            label)

    flipped = []
    if x_mm.size > 1 and x_mm[1] < x_mm[0]:
        x_mm, dose_gy = x_mm[::-1], dose_gy[:, :, ::-1]
        flipped.append("x")
    if y_mm.size > 1 and y_mm[1] < y_mm[0]:
        y_mm, dose_gy = y_mm[::-1], dose_gy[:, ::-1, :]
        flipped.append("y")
    order = np.argsort(z_frames, kind="stable")
    if not np.array_equal(order, np.arange(frames)):
        z_frames, dose_gy = z_frames[order], dose_gy[order]
        flipped.append("z")
    if frames > 1 and not np.all(np.diff(z_frames) > 0):
        raise DicomConformanceError(
            f"{tag_text('GridFrameOffsetVector')} holds two frames at the same position; "
            "frame positions must differ", label
        )
    if frames > 1:
        gaps = np.diff(z_frames)
        _check_spacing(np.array([gaps.min(), gaps.max()]),
                       f"{tag_text('GridFrameOffsetVector')} spacing of {gaps.min():g} to {gaps.max():g} mm", label)
    if flipped:
        logger.debug("dose %s: axes %s reversed in the file, flipped to increase", header.sop_instance_uid,
                     ",".join(flipped))

    heterogeneity = ds.get("TissueHeterogeneityCorrection") or ()
    if isinstance(heterogeneity, str):
        heterogeneity = (heterogeneity,)
    return DoseGrid(
        dose_gy=np.ascontiguousarray(dose_gy),
        x_mm=np.ascontiguousarray(x_mm, dtype=float),
        y_mm=np.ascontiguousarray(y_mm, dtype=float),
        z_mm=np.ascontiguousarray(z_frames, dtype=float),
        frame_of_reference_uid=frame,
        dose_type=header.dose_type,  # "" when absent: read as physical
        summation_type=header.summation_type,
        heterogeneity_correction=tuple(str(v).strip() for v in heterogeneity),
        referenced_plan_uid=header.plan_uids[0] if header.plan_uids else "",
        sources=(DoseSource(path=label, sop_instance_uid=header.sop_instance_uid,
                            summation_type=header.summation_type,
                            referenced_beam_numbers=header.beam_numbers),),
        description=optional_str(ds, "DoseComment"),
    )
