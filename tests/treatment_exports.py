"""Small DICOM exports of whole treatments whose doses are known by construction, for the
pipeline tests (check, batch, serve and watch must give the same verdicts).

Geometry (as :mod:`rt_cases`): every structure is a box contoured every 2.5 mm, and every
plan's dose grid (5 mm voxels, x -50..400, y -40..40, z -20..80 mm) holds a *uniform* dose
over bands of x. A box lies at least one voxel inside its band, so the dose anywhere in it is
exactly the band's dose (trilinear interpolation between voxel centres of equal dose), and
its D0.03cc is that dose.

``two_course_export`` — the case of issue 9 §3 where only the composite fails:

* ``PTV_A`` (x 0..30) and ``PTV_B`` (x 100..130), ``SpinalCord`` (x 200..230);
* course ``C_A`` prescribes 50 Gy / 25 fx to PTV_A and gives the cord 25 Gy;
* course ``C_B`` prescribes 30 Gy / 10 fx to PTV_B and gives the cord 25 Gy.

Cord D0.03cc: 25 Gy in each course (≤ 45 Gy: PASS per course); physical composite
25 + 25 = 50 Gy (> 45 Gy: FAIL). ``alternatives=True`` writes a third plan ``C_A_IMRT``
prescribing to PTV_A on the same structure set (an alternative of C_A, both unapproved),
whose cord dose is 40 Gy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testkit.write import (
    BeamSpec, PatientSpec, RoiSpec, deterministic_uid, rtdose_dataset, rtplan_dataset, rtstruct_dataset,
    save_dataset,
)

__all__ = ["two_course_export", "two_frame_export", "COMPOSITE_PROTOCOL", "write_composite_protocol"]

_VOXEL_MM = 5.0
_X = np.arange(-50.0, 400.0 + _VOXEL_MM, _VOXEL_MM)
_Y = np.arange(-40.0, 40.0 + _VOXEL_MM, _VOXEL_MM)
_Z = np.arange(-20.0, 80.0 + _VOXEL_MM, _VOXEL_MM)
_SLICE_MM = 2.5

#: x extent of each box, mm (y -10..10, z 0..30 for all).
BOXES = {"PTV_A": (0.0, 30.0), "PTV_B": (100.0, 130.0), "SpinalCord": (200.0, 230.0)}
#: Dose bands (x0, x1): every voxel centre with x0 <= x < x1 (one voxel beyond the box each side).
BANDS = {name: (x0 - 10.0, x1 + 15.0) for name, (x0, x1) in BOXES.items()}

#: A protocol whose cord limit is checked per course and on the physical composite.
COMPOSITE_PROTOCOL = """\
schema_version: 1
id: {protocol_id}
title: Cord per course and composite
version: "1"
rules:
  - id: CORD-COURSE
    kind: dvh
    title: Spinal cord maximum per course
    category: oar
    structure: SpinalCord
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    course: all
    limits: {{unit: Gy, upper: {{per_protocol: 45}}}}
    provenance: {{source: test, section: "1", confidence: institutional}}
  - id: CORD-COMPOSITE
    kind: dvh
    title: Spinal cord maximum, all courses summed
    category: oar
    structure: SpinalCord
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    course: composite
    limits: {{unit: Gy, upper: {{per_protocol: 45}}}}
    provenance: {{source: test, section: "2", confidence: institutional}}
"""


def write_composite_protocol(folder: Path, protocol_id: str = "test-composite") -> Path:
    path = folder / f"{protocol_id}.yaml"
    path.write_text(COMPOSITE_PROTOCOL.format(protocol_id=protocol_id), encoding="utf-8")
    return path


def _box_contours(x0: float, x1: float) -> list[np.ndarray]:
    return [np.array([[x0, -10.0, z], [x1, -10.0, z], [x1, 10.0, z], [x0, 10.0, z]])
            for z in np.arange(_SLICE_MM / 2, 30.0, _SLICE_MM)]


def _banded(doses: dict[str, float]) -> np.ndarray:
    line = np.zeros(len(_X))
    for name, dose_gy in doses.items():
        x0, x1 = BANDS[name]
        line[(_X >= x0) & (_X < x1)] = dose_gy
    return np.broadcast_to(line, (len(_Z), len(_Y), len(_X))).copy()


def two_course_export(out: Path, *, key: str = "two-course", patient_id: str = "MRN-424242",
                      patient_name: str = "COMPOSITE^CASE", alternatives: bool = False,
                      approval: str = "UNAPPROVED") -> dict[str, Path]:
    """Write the export described in the module docstring into ``out``; returns the files by name."""
    out.mkdir(parents=True, exist_ok=True)
    patient = PatientSpec(patient_id, patient_name, study_instance_uid=deterministic_uid(key, "study"))
    frame = deterministic_uid(key, "frame")
    rtss_uid = deterministic_uid(key, "rtss")
    rois = [RoiSpec(1, "PTV_A", "PTV", _box_contours(*BOXES["PTV_A"])),
            RoiSpec(2, "PTV_B", "PTV", _box_contours(*BOXES["PTV_B"])),
            RoiSpec(3, "SpinalCord", "ORGAN", _box_contours(*BOXES["SpinalCord"]))]
    files = {"RS": save_dataset(rtstruct_dataset(rois=rois, frame_of_reference_uid=frame, patient=patient,
                                                 sop_instance_uid=rtss_uid), out / "RS.dcm")}
    courses = [("C_A", 1, 50.0, 25, {"PTV_A": 50.0, "SpinalCord": 25.0}),
               ("C_B", 2, 30.0, 10, {"PTV_B": 30.0, "SpinalCord": 25.0})]
    if alternatives:
        courses.append(("C_A_IMRT", 1, 50.0, 25, {"PTV_A": 50.0, "SpinalCord": 40.0}))
    for label, target, rx_gy, fractions, doses in courses:
        plan_uid = deterministic_uid(key, "plan", label)
        beam = BeamSpec(1, "B1", "LINAC", 6.0, 0.0, None, 100.0, (15.0, 0.0, 15.0))
        plan = rtplan_dataset(label=label, name=label, date="20250602", approval_status=approval,
                              fractions_planned=fractions, prescriptions=[(target, rx_gy, f"{label} target")],
                              beams=[beam], structure_set_uid=rtss_uid, frame_of_reference_uid=frame, patient=patient,
                              sop_instance_uid=plan_uid)
        files[f"RP_{label}"] = save_dataset(plan, out / f"RP_{label}.dcm")
        dose = rtdose_dataset(dose_gy=_banded(doses), origin_mm=(_X[0], _Y[0], _Z[0]),
                              spacing_mm=(_VOXEL_MM, _VOXEL_MM, _VOXEL_MM), frame_of_reference_uid=frame,
                              referenced_plan_uid=plan_uid, patient=patient,
                              sop_instance_uid=deterministic_uid(key, "dose", label))
        files[f"RD_{label}"] = save_dataset(dose, out / f"RD_{label}.dcm")
    return files


def two_frame_export(out: Path, *, key: str = "two-frame", patient_id: str = "MRN-434343",
                     patient_name: str = "SPLIT^CASE", courses: tuple[str, ...] = ("C_A", "C_B"),
                     orphan_dose: bool = False, frame_uid: str | None = None) -> dict[str, Path]:
    """The two courses of :func:`two_course_export`, each planned on its own image set: C_A with
    its own structure set in frame A (folder ``out/A``), C_B in frame B (``out/B``); the
    geometry and doses as there (cord 25 Gy in each course). ``courses`` chooses which are
    written. ``orphan_dose``: also the dose of a third course C_X in frame A (cord 25 Gy)
    whose plan is not written (``out/A/RD_C_X.dcm``). ``frame_uid``: one frame of reference UID for
    every course (e.g. two patients on one template CT)."""
    patient = PatientSpec(patient_id, patient_name, study_instance_uid=deterministic_uid(key, "study"))
    rois = [RoiSpec(1, "PTV_A", "PTV", _box_contours(*BOXES["PTV_A"])),
            RoiSpec(2, "PTV_B", "PTV", _box_contours(*BOXES["PTV_B"])),
            RoiSpec(3, "SpinalCord", "ORGAN", _box_contours(*BOXES["SpinalCord"]))]
    specs = {"C_A": ("A", 1, 50.0, 25, {"PTV_A": 50.0, "SpinalCord": 25.0}),
             "C_B": ("B", 2, 30.0, 10, {"PTV_B": 30.0, "SpinalCord": 25.0})}
    files: dict[str, Path] = {}
    for label in courses:
        place, target, rx_gy, fractions, doses = specs[label]
        folder, rtss_uid = out / place, deterministic_uid(key, "rtss", place)
        frame = frame_uid or deterministic_uid(key, "frame", place)
        files[f"RS_{place}"] = save_dataset(rtstruct_dataset(rois=rois, frame_of_reference_uid=frame, patient=patient,
                                                             sop_instance_uid=rtss_uid), folder / "RS.dcm")
        plan_uid = deterministic_uid(key, "plan", label)
        beam = BeamSpec(1, "B1", "LINAC", 6.0, 0.0, None, 100.0, (15.0, 0.0, 15.0))
        plan = rtplan_dataset(label=label, name=label, date="20250602", approval_status="UNAPPROVED",
                              fractions_planned=fractions, prescriptions=[(target, rx_gy, f"{label} target")],
                              beams=[beam], structure_set_uid=rtss_uid, frame_of_reference_uid=frame, patient=patient,
                              sop_instance_uid=plan_uid)
        files[f"RP_{label}"] = save_dataset(plan, folder / f"RP_{label}.dcm")
        files[f"RD_{label}"] = save_dataset(rtdose_dataset(
            dose_gy=_banded(doses), origin_mm=(_X[0], _Y[0], _Z[0]), spacing_mm=(_VOXEL_MM, _VOXEL_MM, _VOXEL_MM),
            frame_of_reference_uid=frame, referenced_plan_uid=plan_uid, patient=patient,
            sop_instance_uid=deterministic_uid(key, "dose", label)), folder / f"RD_{label}.dcm")
    if orphan_dose:
        files["RD_C_X"] = save_dataset(rtdose_dataset(
            dose_gy=_banded({"SpinalCord": 25.0}), origin_mm=(_X[0], _Y[0], _Z[0]),
            spacing_mm=(_VOXEL_MM, _VOXEL_MM, _VOXEL_MM), frame_of_reference_uid=deterministic_uid(key, "frame", "A"),
            referenced_plan_uid=deterministic_uid(key, "plan", "C_X"), patient=patient,
            sop_instance_uid=deterministic_uid(key, "dose", "C_X")), out / "A" / "RD_C_X.dcm")
    return files


class WatchedFolder:
    """``plancheck watch`` on ``root`` driven by a test clock: :meth:`settle` scans and steps
    three times, 2 s apart (past the 1 s settle time), and returns the records checked."""

    def __init__(self, root: Path, reports: Path, protocol) -> None:
        from plancheck.watch import ExportFolder, WatchOptions

        self.folder = ExportFolder(root, reports, protocol,
                                   WatchOptions(settle_s=1.0, incomplete_after_s=30.0, formats=("json",),
                                                isolate=False))
        self.now = 0.0

    def settle(self, steps: int = 3) -> list:
        out = []
        for _ in range(steps):
            self.folder.scan()
            out += self.folder.step(now=self.now)
            self.now += 2.0
        return out


@pytest.fixture(scope="module")
def protocol_file(tmp_path_factory) -> Path:
    """The composite protocol (:func:`write_composite_protocol`) written once per test module."""
    return write_composite_protocol(tmp_path_factory.mktemp("protocol"))


@pytest.fixture(scope="module")
def protocol(protocol_file):
    """The composite protocol, loaded (a test module imports both fixtures to use them)."""
    from plancheck.protocol.loader import load_protocol

    return load_protocol(str(protocol_file))
