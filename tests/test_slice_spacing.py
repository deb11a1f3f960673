"""Contour stacks on a CT whose slice spacing changes: a wider spacing is not a gap.

A CT may be reconstructed at 1 mm through the target and 2–3 mm elsewhere. A structure
contoured on every slice then has wider plane spacings where the CT's spacing changes; with the
image slices known (the CT in the export), plancheck calls a spacing a gap only when an image
slice lies between two contour planes (a slice without a contour), and the end slabs reach half
of the local slice spacing. Without the CT it keeps its heuristic (a spacing above 1.5 times the
median is a gap) and says so in a note.

Expected values are worked out by hand from the slab model (each slab reaches half-way to its
neighbouring planes; the end slabs half a slice spacing beyond their plane).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plancheck.dicom import read_export
from plancheck.dvh.engine import compute_dvh
from plancheck.dvh.metrics import evaluate_metric
from plancheck.dvh.sampling import slab_bounds
from testkit.write import (
    BeamSpec, PatientSpec, RoiSpec, ct_series_datasets, rtdose_dataset, rtplan_dataset, rtstruct_dataset, save_dataset,
)

FRAME = "1.2.826.0.1.3680043.8.498.4242"
SIDE_MM = 20.0  # the box's square cross-section: 400 mm²


# --- slab_bounds, by hand -----------------------------------------------------------------------


def test_spacing_change_is_not_a_gap_when_the_slices_are_known():
    z = np.array([0.0, 1, 2, 3, 4, 6, 8])
    lo, hi, _, notes = slab_bounds(z, None, 0.5, image_slices_z_mm=z)
    # faces half-way between planes; end caps half the local spacing: 0.5 mm below, 1 mm above
    assert lo == pytest.approx([-0.5, 0.5, 1.5, 2.5, 3.5, 5.0, 7.0])
    assert hi == pytest.approx([0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 9.0])
    assert notes == []


def test_a_slice_without_contour_is_a_gap():
    slices = np.arange(0.0, 9.0)  # 1 mm CT
    z = np.array([0.0, 1, 2, 3, 4, 6, 8])  # no contour on the slices at 5 and 7 mm
    lo, hi, _, notes = slab_bounds(z, None, 0.5, image_slices_z_mm=slices)
    assert lo == pytest.approx([-0.5, 0.5, 1.5, 2.5, 3.5, 5.5, 7.5])
    assert hi == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5, 6.5, 8.5])
    assert len(notes) == 1 and notes[0].startswith("2 gap(s) in the contour stack (image slices without a contour)")


def test_gap_at_a_spacing_change_reaches_half_the_local_spacing():
    slices = np.array([0.0, 1, 2, 3, 5, 7, 9])  # 1 mm, then 2 mm
    z = np.array([0.0, 1, 2, 3, 7, 9])  # no contour on the slice at 5 mm
    lo, hi, _, _ = slab_bounds(z, None, 0.5, image_slices_z_mm=slices)
    # the slab of 3 mm reaches half-way to the slice at 5 mm; that of 7 mm half-way to 5 mm
    assert hi[3] == pytest.approx(4.0)
    assert lo[4] == pytest.approx(6.0)
    assert hi[-1] == pytest.approx(10.0)  # end cap: half the series' last spacing (2 mm; no slice above 9 mm)


def test_without_the_slices_the_heuristic_is_kept():
    z = np.array([0.0, 1, 2, 3, 4, 6, 8])
    lo, hi, t, notes = slab_bounds(z, None, 0.5)
    assert t == 1.0
    # spacings of 2 mm exceed 1.5 × the median (1 mm): gaps, slabs end 0.5 mm from their plane
    assert hi[4] == pytest.approx(4.5) and lo[5] == pytest.approx(5.5)
    assert notes == ["2 gap(s) in the contour stack: slabs end 0.5 mm from the plane"]


def test_uniform_slices_give_the_same_slabs_as_before():
    z = np.arange(0.0, 30.0, 3.0)
    with_slices = slab_bounds(z, None, 0.5, image_slices_z_mm=np.arange(-9.0, 45.0, 3.0))
    without = slab_bounds(z, None, 0.5)
    np.testing.assert_allclose(with_slices[0], without[0])
    np.testing.assert_allclose(with_slices[1], without[1])


# --- a whole export: a box contoured on every slice of a CT with variable spacing -------------


def _export(out: Path, slice_z: list[float], contour_z: list[float], *, with_ct: bool = True) -> Path:
    """A box 20 × 20 mm contoured at ``contour_z`` on a CT with slices at ``slice_z``, dose
    ``40 Gy + 1 Gy/mm · z`` (linear: trilinear interpolation is exact)."""
    out.mkdir(parents=True, exist_ok=True)
    patient = PatientSpec("SLICES", "SLICES^TEST")
    z0 = min(slice_z)
    every_mm = ct_series_datasets(hu=np.zeros((int(max(slice_z) - z0) + 1, 31, 31), dtype=np.int16),
                                  origin_mm=(-15, -15, z0), spacing_mm=(1, 1, 1), frame_of_reference_uid=FRAME,
                                  patient=patient)
    cts = [c for c in every_mm if float(c.ImagePositionPatient[2]) in slice_z]
    for i, ct in enumerate(cts):
        ct.InstanceNumber = i + 1
        if with_ct:
            save_dataset(ct, out / f"CT{i:03d}.dcm")
    on_slices = [c for c in cts if float(c.ImagePositionPatient[2]) in contour_z]
    h = SIDE_MM / 2
    square = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    rs = rtstruct_dataset(rois=[RoiSpec(1, "Box", "ORGAN", [np.column_stack([square, np.full(4, z)]) for z in contour_z])],
                          frame_of_reference_uid=FRAME, patient=patient, referenced_images=on_slices)
    save_dataset(rs, out / "RS.dcm")
    rp = rtplan_dataset(label="P1", name="P1", date="20250602", approval_status="UNAPPROVED", fractions_planned=30,
                        prescriptions=[(1, 60.0, "rx")],
                        beams=[BeamSpec(1, "B1", "TrueBeam", 6.0, 0.0, None, 100.0, (0.0, 0.0, 0.0))],
                        structure_set_uid=rs.SOPInstanceUID, frame_of_reference_uid=FRAME, patient=patient)
    save_dataset(rp, out / "RP.dcm")
    xs = np.arange(-20.0, 20.1, 2.0)
    zs = np.arange(-6.0, 20.1, 2.0)
    dose = np.broadcast_to((40.0 + zs)[:, None, None], (len(zs), len(xs), len(xs))).copy()
    rd = rtdose_dataset(dose_gy=dose, origin_mm=(xs[0], xs[0], zs[0]), spacing_mm=(2, 2, 2),
                        frame_of_reference_uid=FRAME, referenced_plan_uid=rp.SOPInstanceUID, patient=patient,
                        bits_allocated=32)
    save_dataset(rd, out / "RD.dcm")
    return out


def _box_metrics(export_dir: Path) -> dict[str, float]:
    export = read_export(export_dir)
    roi = export.structure_sets[0].roi_by_name("Box")
    dvh = compute_dvh(roi, export.courses[0].dose)
    return {spec: evaluate_metric(spec, dvh).value for spec in ("Volume[cc]", "V45Gy[cc]", "Mean[Gy]")}


def test_box_on_a_ct_whose_spacing_changes(tmp_path):
    z = [0.0, 1, 2, 3, 4, 6, 8]
    got = _box_metrics(_export(tmp_path / "ct", z, z))
    # slabs [-0.5, 0.5] ... [3.5, 5], [5, 7], [7, 9]: 9.5 mm × 400 mm² = 3.8 cc
    assert got["Volume[cc]"] == pytest.approx(3.8, abs=1e-6)
    # 40 + z ≥ 45 Gy for z ≥ 5 mm: [5, 9], 4 mm × 400 mm² = 1.6 cc (dose stored in float32)
    assert got["V45Gy[cc]"] == pytest.approx(1.6, abs=1e-4)
    # mean of 40 + z over the slabs: 40 + Σ thickness·centre / Σ thickness = 40 + 40.375 / 9.5
    assert got["Mean[Gy]"] == pytest.approx(40 + 40.375 / 9.5, abs=1e-4)


def test_box_with_a_slice_left_uncontoured_keeps_the_gap(tmp_path):
    slices = [0.0, 1, 2, 3, 4, 5, 6]
    contours = [0.0, 1, 2, 4, 5, 6]  # none on the slice at 3 mm
    got = _box_metrics(_export(tmp_path / "gap", slices, contours))
    # slabs [-0.5, 2.5] and [3.5, 6.5]: 6 mm × 400 mm² = 2.4 cc
    assert got["Volume[cc]"] == pytest.approx(2.4, abs=1e-6)


def test_without_the_ct_the_wider_spacing_reads_as_a_gap(tmp_path):
    z = [0.0, 1, 2, 3, 4, 6, 8]
    export = read_export(_export(tmp_path / "noct", z, z, with_ct=False))
    roi = export.structure_sets[0].roi_by_name("Box")
    assert roi.image_slices_z_mm == ()
    dvh = compute_dvh(roi, export.courses[0].dose)
    # the heuristic: slabs end 0.5 mm from the planes beside the 2 mm spacings: 7 mm → 2.8 cc, with a note
    assert evaluate_metric("Volume[cc]", dvh).value == pytest.approx(2.8, abs=1e-6)
    assert any("gap(s) in the contour stack" in note for note in dvh.notes)
