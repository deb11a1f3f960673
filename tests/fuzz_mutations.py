"""Mutations of a small real-size export, for the fuzz tests and ``benchmarks/fuzz_inputs.py``.

The base case is the sample's first course (``RP_C1_Eso``, ``RD_C1_Eso``: a 3 mm dose grid)
with the sample's structure set cut to six ROIs (External, SpinalCord, Heart, GTVp, CTVp,
PTVp: ~300 contours), checked against :data:`FUZZ_PROTOCOL_YAML` (the plan-integrity rules
and three DVH rules), so one check takes a fraction of a second.

A mutation is a plain, picklable :class:`Mutation`; :func:`apply` writes the mutated export.
Kinds:

* ``tag`` — an element of an RT file (top level or inside a sequence item) deleted, emptied,
  or given another value (a number out of range, a non-number, NaN, a control sequence);
* ``sequence`` — a sequence item deleted or duplicated, or the sequence emptied;
* ``pixels`` — dose pixel data truncated, overwritten with random values, or made signed and
  negative;
* ``bytes`` — a file truncated or some of its bytes overwritten;
* ``contour`` — one ROI's contours corrupted (the ROI named in ``roi``): its points shuffled,
  its planes stacked at one z, a coordinate set to 1e9, its ROI Number given to another ROI,
  a contour duplicated, its geometric type replaced, every other contour made OPEN_PLANAR or
  POINT, its RT ROI Interpreted Type made MARKER and a contour duplicated, its Referenced
  Frame of Reference UID changed. Each of these makes the ROI unmeasurable,
  so a rule on it must never PASS (``corrupts`` names the ROIs).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

__all__ = [
    "SAMPLE", "BASE_ROIS", "FILES", "FUZZ_PROTOCOL_YAML", "Mutation", "build_base", "write_fuzz_protocol", "apply", "random_mutation",
    "CONTOUR_OPERATIONS", "TAG_VALUES", "FULL_FILES", "FULL_ROIS", "corrupted_rois",
]

SAMPLE = Path(__file__).parents[1] / "sample_dicom"
BASE_ROIS = ("External", "SpinalCord", "Heart", "GTVp", "CTVp", "PTVp")
FILES = ("RP.dcm", "RS.dcm", "RD.dcm")

FUZZ_PROTOCOL_YAML = """\
schema_version: 1
id: fuzz-protocol
title: Fuzz protocol (plan integrity and three DVH rules)
version: "1"
extends: [plan-integrity]
rules:
  - id: FUZZ-CORD-MAX
    kind: dvh
    title: Spinal cord maximum
    category: oar
    structure: SpinalCord
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 45}}
    provenance: {source: test, section: "1", confidence: institutional}
  - id: FUZZ-HEART-MEAN
    kind: dvh
    title: Heart mean dose
    category: oar
    structure: Heart
    metric: "Mean[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 45}}
    provenance: {source: test, section: "2", confidence: institutional}
  - id: FUZZ-PTV-D95
    kind: dvh
    title: PTV D95
    category: target
    structure: PTVp
    metric: "D95%[Gy]"
    dose_basis: physical
    limits: {unit: Gy, lower: {per_protocol: 50}}
    provenance: {source: test, section: "3", confidence: institutional}
"""

#: Values a ``tag`` mutation writes (as text; pydicom stores them under the element's VR).
TAG_VALUES = ("", "0", "-1", "-30", "1e9", "-1e9", "nan", "inf", "abc", "3.5", "65536", "1\\2\\3",
              "\x1b[1A\x1b[2K", "=cmd|' /C calc'!A0", "BOGUS NAME", "999999999999")

CONTOUR_OPERATIONS = ("shuffle", "stack", "far_point", "steal_number", "duplicate", "geometric_type",
                      "open_planes", "marker_duplicate", "other_frame")


@dataclass(frozen=True)
class Mutation:
    """One corruption of the base export.

    Attributes
    ----------
    kind
        ``tag``, ``sequence``, ``pixels``, ``bytes`` or ``contour``.
    file
        ``RP.dcm``, ``RS.dcm`` or ``RD.dcm``.
    seed
        Chooses the element, item, bytes or points.
    operation
        What is done (kind-specific).
    value
        The value written by a ``tag`` mutation.
    roi
        The ROI a ``contour`` mutation corrupts.
    """

    kind: str
    file: str
    seed: int
    operation: str = ""
    value: str = ""
    roi: str = ""
    corrupts: tuple[str, ...] = field(default=())


#: The whole sample as a base (``build_base(full=True)``): its RT files by role.
FULL_FILES = ("RP_C1_Eso.dcm", "RP_C2_LungMet.dcm", "RP_C3_VertMet.dcm", "RS_sample.dcm", "RD_C1_Eso.dcm",
              "RD_C2_LungMet.dcm", "RD_C3_VertMet.dcm")
FULL_ROIS = ("External", "Lungs", "Heart", "SpinalCord", "SpinalCord_PRV05", "Esophagus", "PTVp", "PTV_Met_Lung",
             "PTV_Met_Vert", "GTV_Met_Vert")


def write_fuzz_protocol(folder: Path) -> Path:
    """Write :data:`FUZZ_PROTOCOL_YAML` as ``folder/fuzz-protocol.yaml``; returns its path."""
    path = folder / "fuzz-protocol.yaml"
    path.write_text(FUZZ_PROTOCOL_YAML, encoding="utf-8")
    return path


def build_base(folder: Path, *, full: bool = False) -> Path:
    """Write the base export (RP.dcm, RS.dcm, RD.dcm) into ``folder``; returns it. With
    ``full``, the whole sample (three courses, CT, case file) instead."""
    if full:
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(SAMPLE, folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE / "RP_C1_Eso.dcm", folder / "RP.dcm")
    shutil.copyfile(SAMPLE / "RD_C1_Eso.dcm", folder / "RD.dcm")
    ds = pydicom.dcmread(SAMPLE / "RS_sample.dcm")
    keep = {int(item.ROINumber) for item in ds.StructureSetROISequence if item.ROIName in BASE_ROIS}
    ds.StructureSetROISequence = DicomSequence([i for i in ds.StructureSetROISequence if int(i.ROINumber) in keep])
    ds.ROIContourSequence = DicomSequence([i for i in ds.ROIContourSequence if int(i.ReferencedROINumber) in keep])
    ds.RTROIObservationsSequence = DicomSequence(
        [i for i in ds.RTROIObservationsSequence if int(i.ReferencedROINumber) in keep])
    ds.save_as(folder / "RS.dcm", enforce_file_format=True)
    return folder


def _elements(ds: Dataset, depth: int = 0) -> list[tuple[Dataset, int]]:
    """(dataset, tag) of every element, sequences' items included (pixel data excluded)."""
    out = []
    for element in ds:
        if element.tag == 0x7FE00010:
            continue
        out.append((ds, element.tag))
        if element.VR == "SQ" and depth < 3:
            for item in element.value[:3]:
                out.extend(_elements(item, depth + 1))
    return out


def _sequences(ds: Dataset, depth: int = 0) -> list[tuple[Dataset, int]]:
    out = []
    for element in ds:
        if element.VR == "SQ":
            out.append((ds, element.tag))
            if depth < 2:
                for item in element.value[:3]:
                    out.extend(_sequences(item, depth + 1))
    return out


def _set_value(ds: Dataset, tag: int, value: str) -> None:
    element = ds[tag]
    if element.VR == "SQ":
        element.value = DicomSequence([]) if value == "" else element.value
        return
    try:
        if element.VR in ("US", "SS", "UL", "SL", "FL", "FD"):
            element.value = None if value == "" else float(value) if element.VR in ("FL", "FD") else int(float(value))
        elif element.VR in ("OB", "OW", "UN"):
            element.value = value.encode("latin-1")
        else:
            element.value = value
    except (ValueError, OverflowError, TypeError):
        element.value = None


def _mutate_tag(ds: Dataset, rng: random.Random, operation: str, value: str) -> None:
    elements = _elements(ds)
    holder, tag = elements[rng.randrange(len(elements))]
    if operation == "delete":
        del holder[tag]
    else:
        _set_value(holder, tag, value)


def _mutate_sequence(ds: Dataset, rng: random.Random, operation: str) -> None:
    sequences = _sequences(ds)
    if not sequences:
        return
    holder, tag = sequences[rng.randrange(len(sequences))]
    items = list(holder[tag].value)
    if operation == "empty" or not items:
        holder[tag].value = DicomSequence([])
    elif operation == "delete_item":
        del items[rng.randrange(len(items))]
        holder[tag].value = DicomSequence(items)
    else:  # duplicate_item
        items.append(items[rng.randrange(len(items))])
        holder[tag].value = DicomSequence(items)


def _mutate_pixels(ds: Dataset, rng: random.Random, operation: str) -> None:
    raw = bytes(ds.PixelData)
    if operation == "truncate":
        ds.PixelData = raw[: rng.randrange(len(raw))]
    elif operation == "negative":
        values = np.frombuffer(raw, dtype=np.uint16 if ds.BitsAllocated == 16 else np.uint32).astype(np.int64)
        values[rng.randrange(len(values))::97] *= -1
        ds.PixelRepresentation = 1
        ds.PixelData = values.astype(np.int16 if ds.BitsAllocated == 16 else np.int32).tobytes()
    else:  # noise
        data = bytearray(raw)
        start = rng.randrange(len(data))
        for i in range(start, min(len(data), start + 4096)):
            data[i] = rng.randrange(256)
        ds.PixelData = bytes(data)


def _roi_number(ds: Dataset, name: str) -> int:
    return next(int(i.ROINumber) for i in ds.StructureSetROISequence if i.ROIName == name)


def _contour_items(ds: Dataset, number: int) -> list[Dataset]:
    return [c for item in ds.ROIContourSequence if int(item.ReferencedROINumber) == number
            for c in (item.get("ContourSequence") or ())]


def _points(contour: Dataset) -> np.ndarray:
    return np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)


def _store(contour: Dataset, points: np.ndarray) -> None:
    contour.ContourData = [f"{v:.3f}" for v in points.ravel()]
    contour.NumberOfContourPoints = len(points)


def _mutate_contours(ds: Dataset, rng: random.Random, operation: str, roi: str) -> None:
    number = _roi_number(ds, roi)
    contours = _contour_items(ds, number)
    if operation == "shuffle":
        # every contour's points in a new random order: its edges cross
        for contour in contours:
            points = _points(contour)
            order = list(range(len(points)))
            rng.shuffle(order)
            _store(contour, points[order])
    elif operation == "stack":
        z = _points(contours[rng.randrange(len(contours))])[0, 2]
        for contour in contours:
            points = _points(contour)
            points[:, 2] = z
            _store(contour, points)
    elif operation == "far_point":
        contour = contours[rng.randrange(len(contours))]
        points = _points(contour)
        points[rng.randrange(len(points)), rng.randrange(2)] = 1e9
        _store(contour, points)
    elif operation == "steal_number":
        other = next(i for i in ds.StructureSetROISequence if i.ROIName != roi)
        other_number = int(other.ROINumber)
        for item in ds.StructureSetROISequence:
            if item.ROIName == roi:
                item.ROINumber = other_number
        for item in list(ds.ROIContourSequence) + list(ds.RTROIObservationsSequence):
            if int(item.ReferencedROINumber) == number:
                item.ReferencedROINumber = other_number
    elif operation == "duplicate":
        item = next(i for i in ds.ROIContourSequence if int(i.ReferencedROINumber) == number)
        copy = Dataset()
        copy.update(contours[rng.randrange(len(contours))])
        item.ContourSequence = DicomSequence(list(item.ContourSequence) + [copy])
    elif operation == "open_planes":
        kind = rng.choice(("OPEN_PLANAR", "OPEN_NONPLANAR", "POINT"))
        for contour in contours[rng.randrange(2)::2]:
            contour.ContourGeometricType = kind
    elif operation == "marker_duplicate":
        for item in ds.RTROIObservationsSequence:
            if int(item.ReferencedROINumber) == number:
                item.RTROIInterpretedType = rng.choice(("MARKER", "ISOCENTER", "REGISTRATION"))
        _mutate_contours(ds, rng, "duplicate", roi)
    elif operation == "other_frame":
        for item in ds.StructureSetROISequence:
            if item.ROIName == roi:
                item.ReferencedFrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.99" + str(rng.randrange(10**6))
    else:  # geometric_type
        for contour in contours:
            contour.ContourGeometricType = "CLOSED_SPLINE"


def apply(mutation: Mutation, base: Path, out: Path) -> Path:
    """Write ``base`` mutated by ``mutation`` into ``out`` (created; replaced if present)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    rng = random.Random(mutation.seed)
    path = out / mutation.file
    if mutation.kind == "bytes":
        data = bytearray(path.read_bytes())
        if mutation.operation == "truncate":
            del data[rng.randrange(132, len(data)):]
        else:
            for _ in range(8):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        return out
    ds = pydicom.dcmread(path)
    if mutation.kind == "tag":
        _mutate_tag(ds, rng, mutation.operation, mutation.value)
    elif mutation.kind == "sequence":
        _mutate_sequence(ds, rng, mutation.operation)
    elif mutation.kind == "pixels":
        _mutate_pixels(ds, rng, mutation.operation)
    elif mutation.kind == "contour":
        _mutate_contours(ds, rng, mutation.operation, mutation.roi)
    try:
        ds.save_as(path, enforce_file_format=False)
    except Exception:  # a value pydicom refuses to write: the file stays as it was written so far
        path.write_bytes(b"")
    return out


def random_mutation(rng: random.Random, *, full: bool = False) -> Mutation:
    """A mutation drawn by a seeded random generator (the benchmark's sampler), of the small
    base or (``full``) of the whole sample."""
    files, rois = (FULL_FILES, FULL_ROIS) if full else (FILES, BASE_ROIS)
    structures = next(f for f in files if f.startswith("RS"))
    kind = rng.choice(("tag", "tag", "tag", "sequence", "pixels", "bytes", "contour"))
    seed = rng.randrange(2**31)
    if kind == "contour":
        roi = rng.choice(rois)
        operation = rng.choice(CONTOUR_OPERATIONS)
        return Mutation(kind, structures, seed, operation, roi=roi, corrupts=corrupted_rois(operation, roi))
    file = rng.choice([f for f in files if f.startswith("RD")]) if kind == "pixels" else rng.choice(files)
    operation = {"tag": rng.choice(("delete", "set", "set", "set")),
                 "sequence": rng.choice(("empty", "delete_item", "duplicate_item")),
                 "pixels": rng.choice(("truncate", "negative", "noise")),
                 "bytes": rng.choice(("truncate", "flip"))}[kind]
    return Mutation(kind, file, seed, operation, value=rng.choice(TAG_VALUES) if kind == "tag" else "")


def corrupted_rois(operation: str, roi: str) -> tuple[str, ...]:
    """The ROIs a contour operation makes unmeasurable (``steal_number`` corrupts the ROI
    whose number it takes too, which :func:`apply` decides; the test checks the named one)."""
    return (roi,)
