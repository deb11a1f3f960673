"""Single-file readers: every model field filled from known datasets built in code.

The datasets are built with pydicom here (a minimal, conformant subset of each IOD) so
that every expected value is written next to the code that stores it. The builders are
also used by ``test_link.py`` and ``test_bad_input.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RTDoseStorage,
    RTImageStorage,
    RTPlanStorage,
    RTStructureSetStorage,
    generate_uid,
)

from plancheck.dicom import read_dose, read_plan, read_structure_set
from plancheck.dicom.dose_sum import resample_trilinear
from plancheck.errors import DicomConformanceError
from plancheck.model import DoseGrid

RT_PLAN = RTPlanStorage
RT_STRUCT = RTStructureSetStorage
RT_DOSE = RTDoseStorage
CT_IMAGE = CTImageStorage
RT_IMAGE = RTImageStorage

FRAME = "1.2.826.0.1.3680043.8.498.1"


# ------------------------------------------------------------------------------------ builders

def _base(sop_class: str, modality: str, patient_id: str = "PC-TEST-1", frame: str = FRAME,
          uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientName = "Test^Phantom"
    ds.PatientID = patient_id
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = generate_uid()
    if frame:
        ds.FrameOfReferenceUID = frame
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write a Part 10 file (preamble + meta)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def square(z_mm: float, half_mm: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return np.array([[cx - half_mm, cy - half_mm, z_mm], [cx + half_mm, cy - half_mm, z_mm],
                     [cx + half_mm, cy + half_mm, z_mm], [cx - half_mm, cy + half_mm, z_mm]])


def make_rtstruct(rois: Sequence[tuple[int, str, str, Sequence[np.ndarray]]], *, uid: str | None = None,
                  frame: str = FRAME, patient_id: str = "PC-TEST-1") -> Dataset:
    """rois: (number, name, interpreted type, contours as (N, 3) arrays)."""
    ds = _base(RT_STRUCT, "RTSTRUCT", patient_id, frame="", uid=uid)
    ds.StructureSetLabel = "RS1"
    ref_frame = Dataset()
    ref_frame.FrameOfReferenceUID = frame
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([ref_frame])
    roi_items, contour_items, obs_items = [], [], []
    for number, name, kind, contours in rois:
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = frame
        item.ROIName = name
        item.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(item)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ROIDisplayColor = [255, number % 256, 0]
        sequence = []
        for points in contours:
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.4f}" for v in np.asarray(points, dtype=float).ravel()]
            sequence.append(contour)
        if sequence:
            roi_contour.ContourSequence = DicomSequence(sequence)
        contour_items.append(roi_contour)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = kind
        obs.ROIInterpreter = ""
        obs_items.append(obs)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(obs_items)
    return ds


def make_rtplan(*, rtss_uid: str, beams: Sequence[tuple[int, str, float]] = ((1, "G0", 100.0),),
                fractions: int = 30, prescription_gy: float = 60.0, target_roi: int = 2,
                uid: str | None = None, frame: str = FRAME, label: str = "C1_Test",
                patient_id: str = "PC-TEST-1", arc: bool = False) -> Dataset:
    """beams: (number, name, meterset MU per fraction)."""
    ds = _base(RT_PLAN, "RTPLAN", patient_id, frame, uid)
    ds.RTPlanLabel = label
    ds.RTPlanName = label + " name"
    ds.RTPlanDate = "20240115"
    ds.RTPlanGeometry = "PATIENT"
    ds.ApprovalStatus = "UNAPPROVED"
    ref_ss = Dataset()
    ref_ss.ReferencedSOPClassUID = RT_STRUCT
    ref_ss.ReferencedSOPInstanceUID = rtss_uid
    ds.ReferencedStructureSetSequence = DicomSequence([ref_ss])
    dose_ref = Dataset()
    dose_ref.DoseReferenceNumber = 1
    dose_ref.DoseReferenceStructureType = "VOLUME"
    dose_ref.DoseReferenceDescription = "PTV"
    dose_ref.DoseReferenceType = "TARGET"
    dose_ref.ReferencedROINumber = target_roi
    dose_ref.TargetPrescriptionDose = prescription_gy
    ds.DoseReferenceSequence = DicomSequence([dose_ref])
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = "HFS"
    ds.PatientSetupSequence = DicomSequence([setup])
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = fractions
    group.NumberOfBeams = len(beams)
    group.NumberOfBrachyApplicationSetups = 0
    refs = []
    for number, _, mu in beams:
        ref = Dataset()
        ref.ReferencedBeamNumber = number
        ref.BeamMeterset = mu
        refs.append(ref)
    group.ReferencedBeamSequence = DicomSequence(refs)
    ds.FractionGroupSequence = DicomSequence([group])
    beam_items = []
    for number, name, _ in beams:
        beam = Dataset()
        beam.BeamNumber = number
        beam.BeamName = name
        beam.TreatmentMachineName = "TrueBeam1"
        beam.RadiationType = "PHOTON"
        beam.BeamType = "DYNAMIC" if arc else "STATIC"
        beam.TreatmentDeliveryType = "TREATMENT"
        beam.NumberOfControlPoints = 2
        beam.ReferencedPatientSetupNumber = 1
        cp0, cp1 = Dataset(), Dataset()
        cp0.ControlPointIndex, cp1.ControlPointIndex = 0, 1
        cp0.NominalBeamEnergy = 6
        cp0.GantryAngle = 180 if arc else 0
        cp0.GantryRotationDirection = "CW" if arc else "NONE"
        cp0.IsocenterPosition = [1.5, -2.0, 10.0]
        cp0.CumulativeMetersetWeight = 0
        cp1.CumulativeMetersetWeight = 1
        beam.ControlPointSequence = DicomSequence([cp0, cp1])
        beam_items.append(beam)
    ds.BeamSequence = DicomSequence(beam_items)
    return ds


def make_rtdose(dose_gy: np.ndarray, *, plan_uid: str | None, origin_mm=(-10.0, -20.0, -5.0),
                spacing_mm=(2.0, 2.5, 3.0), summation: str = "PLAN", beams: Sequence[int] = (),
                fraction_group: int | None = None, orientation=(1, 0, 0, 0, 1, 0),
                offsets_mm: Sequence[float] | None = None, uid: str | None = None,
                frame: str = FRAME, patient_id: str = "PC-TEST-1", bits: int = 32) -> Dataset:
    """dose_gy[k, j, i] on (frames, rows, columns); spacing_mm = (column step dx, row step dy, dz)."""
    ds = _base(RT_DOSE, "RTDOSE", patient_id, frame, uid)
    dose_gy = np.asarray(dose_gy, dtype=float)
    frames, rows, columns = dose_gy.shape
    scaling = max(float(dose_gy.max()), 1e-6) / (2 ** (bits - 1) - 1)
    pixels = np.round(dose_gy / scaling).astype(np.uint32 if bits == 32 else np.uint16)
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = summation
    ds.DoseGridScaling = f"{scaling:.10e}"
    ds.TissueHeterogeneityCorrection = ["IMAGE", "ROI_OVERRIDE"]
    ds.ImagePositionPatient = list(origin_mm)
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [spacing_mm[1], spacing_mm[0]]  # [row spacing (y), column spacing (x)]
    ds.GridFrameOffsetVector = list(offsets_mm) if offsets_mm is not None else [
        k * spacing_mm[2] for k in range(frames)]
    ds.FrameIncrementPointer = 0x3004000C
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    if plan_uid is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_PLAN
        ref.ReferencedSOPInstanceUID = plan_uid
        if fraction_group is not None or beams:
            group = Dataset()
            group.ReferencedFractionGroupNumber = fraction_group or 1
            if beams:
                refs = []
                for number in beams:
                    beam = Dataset()
                    beam.ReferencedBeamNumber = number
                    refs.append(beam)
                group.ReferencedBeamSequence = DicomSequence(refs)
            ref.ReferencedFractionGroupSequence = DicomSequence([group])
        ds.ReferencedRTPlanSequence = DicomSequence([ref])
    return ds


def make_ct(z_mm: float, *, series_uid: str, frame: str = FRAME, patient_id: str = "PC-TEST-1") -> Dataset:
    ds = _base(CT_IMAGE, "CT", patient_id, frame)
    ds.SeriesInstanceUID = series_uid
    ds.ImagePositionPatient = [-16.0, -16.0, z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 3.0
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = np.zeros((32, 32), dtype=np.int16).tobytes()
    return ds


def linear_dose(shape=(4, 5, 6)) -> np.ndarray:
    """A dose that encodes its own indices: 1 + i + 10 j + 100 k (Gy) at [k, j, i]."""
    k, j, i = np.indices(shape)
    return 1.0 + i + 10.0 * j + 100.0 * k


def write_export(folder: Path, *, n_beams: int = 1, summation: str = "PLAN", dose_factor: float = 1.0,
                 **plan_kw) -> dict[str, Path]:
    """A consistent export (RS, RP, RD, 3 CT slices); returns the paths by role. The dose is
    ``linear_dose() × dose_factor`` (beam n of BEAM/FRACTION doses: × n)."""
    rtss = make_rtstruct([(1, "BODY", "EXTERNAL", [square(z, 40) for z in (0, 3, 6)]),
                          (2, "PTV", "PTV", [square(z, 10) for z in (0, 3, 6)])])
    beams = [(n, f"B{n}", 100.0 + n) for n in range(1, n_beams + 1)]
    rtplan = make_rtplan(rtss_uid=rtss.SOPInstanceUID, beams=beams, **plan_kw)
    paths = {"rtss": save(rtss, folder / "RS.dcm"), "rtplan": save(rtplan, folder / "RP.dcm")}
    if summation == "PLAN":
        paths["rtdose"] = save(make_rtdose(linear_dose() * dose_factor, plan_uid=rtplan.SOPInstanceUID), folder / "RD.dcm")
    else:
        for number, _, _ in beams:
            paths[f"rtdose{number}"] = save(
                make_rtdose(linear_dose() * number * dose_factor, plan_uid=rtplan.SOPInstanceUID, summation=summation,
                            beams=[number], fraction_group=1), folder / f"RD_b{number}.dcm")
    series = generate_uid()
    for index, z in enumerate((0.0, 3.0, 6.0)):
        save(make_ct(z, series_uid=series), folder / "CT" / f"CT{index}.dcm")
    return paths


# ------------------------------------------------------------------------------------ tests

def test_read_dose_values_and_axes(tmp_path: Path) -> None:
    # dose[k, j, i] = 1 + i + 10 j + 100 k Gy; x = -10 + 2 i, y = -20 + 2.5 j, z = -5 + 3 k.
    path = save(make_rtdose(linear_dose(), plan_uid="1.2.3.4"), tmp_path / "RD.dcm")
    grid = read_dose(path)
    assert grid.shape == (4, 5, 6)
    np.testing.assert_allclose(grid.x_mm, -10 + 2 * np.arange(6))
    np.testing.assert_allclose(grid.y_mm, -20 + 2.5 * np.arange(5))
    np.testing.assert_allclose(grid.z_mm, -5 + 3 * np.arange(4))
    # 32-bit pixels, scaling = 356 / (2^31 - 1): quantisation < 1e-7 Gy; float32 storage adds < 4e-5 Gy.
    np.testing.assert_allclose(grid.dose_gy, linear_dose(), atol=1e-4)
    assert grid.dose_gy.dtype == np.float32
    assert grid.summation_type == "PLAN"
    assert grid.dose_type == "PHYSICAL"
    assert grid.heterogeneity_correction == ("IMAGE", "ROI_OVERRIDE")
    assert grid.referenced_plan_uid == "1.2.3.4"
    assert grid.frame_of_reference_uid == FRAME
    assert grid.sources[0].path == str(path)


def test_read_dose_16_bit_implicit_vr(tmp_path: Path) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3.4", bits=16)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    grid = read_dose(save(ds, tmp_path / "RD.dcm"))
    # 16-bit quantisation: scaling = 356 / 32767 ≈ 0.011 Gy, rounding error <= half of it.
    np.testing.assert_allclose(grid.dose_gy, linear_dose(), atol=0.0055)


def test_absolute_grid_frame_offsets(tmp_path: Path) -> None:
    # First offset equals the IPP z: the offsets are absolute z positions.
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3.4", offsets_mm=[-5.0, -2.0, 1.0, 4.0])
    grid = read_dose(save(ds, tmp_path / "RD.dcm"))
    np.testing.assert_allclose(grid.z_mm, [-5.0, -2.0, 1.0, 4.0])


@pytest.mark.parametrize("orientation, offsets", [
    ((-1, 0, 0, 0, -1, 0), None),           # x and y reversed (e.g. a head-first prone export)
    ((1, 0, 0, 0, 1, 0), [0, -3, -6, -9]),  # decreasing offsets: z reversed
    ((0, 1, 0, 1, 0, 0), None),             # rows along y, columns along x: transposed (normal -z)
])
def test_reversed_axes_are_flipped(tmp_path: Path, orientation, offsets) -> None:
    stored = linear_dose()
    ds = make_rtdose(stored, plan_uid="1.2.3.4", orientation=orientation, offsets_mm=offsets)
    grid = read_dose(save(ds, tmp_path / "RD.dcm"))
    for axis in (grid.x_mm, grid.y_mm, grid.z_mm):
        assert np.all(np.diff(axis) > 0)
    # Every stored voxel must be found again at its physical position.
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    z_offsets = np.array(offsets if offsets is not None else [0, 3, 6, 9], float)
    for k, j, i in [(0, 0, 0), (3, 4, 5), (1, 2, 3), (2, 0, 5)]:
        point = np.array([-10.0, -20.0, -5.0]) + i * 2.0 * row + j * 2.5 * col + z_offsets[k] * normal
        kk = int(np.argmin(np.abs(grid.z_mm - point[2])))
        jj = int(np.argmin(np.abs(grid.y_mm - point[1])))
        ii = int(np.argmin(np.abs(grid.x_mm - point[0])))
        assert (grid.x_mm[ii], grid.y_mm[jj], grid.z_mm[kk]) == pytest.approx(tuple(point))
        assert grid.dose_gy[kk, jj, ii] == pytest.approx(stored[k, j, i], abs=1e-4)


def test_oblique_dose_is_refused(tmp_path: Path) -> None:
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3.4", orientation=(c, s, 0, -s, c, 0))
    with pytest.raises(DicomConformanceError, match=r"RD\.dcm: \(0020,0037\) 'Image Orientation \(Patient\)'.*oblique"):
        read_dose(save(ds, tmp_path / "RD.dcm"))


def test_read_structure_set(tmp_path: Path) -> None:
    contours = [square(z, 10.0, cx=5.0) for z in (0.0, 3.0)]
    ds = make_rtstruct([(1, "BODY", "EXTERNAL", [square(0.0, 40.0)]), (7, "PTV_60", "PTV", contours)])
    rtss = read_structure_set(save(ds, tmp_path / "RS.dcm"))
    assert rtss.frame_of_reference_uid == FRAME
    assert rtss.label == "RS1"
    assert rtss.patient_id == "PC-TEST-1"
    assert [(r.number, r.name, r.interpreted_type) for r in rtss.rois] == [
        (1, "BODY", "EXTERNAL"), (7, "PTV_60", "PTV")]
    ptv = rtss.roi_by_number(7)
    assert ptv.color_rgb == (255, 7, 0)
    assert len(ptv.contours) == 2 and ptv.contours[0].is_closed_planar
    np.testing.assert_allclose(ptv.contours[1].points_mm, contours[1])
    assert ptv.contours[1].points_mm.shape == (4, 3)
    assert list(ptv.planes) == [0.0, 3.0]


def test_read_plan_fills_every_field(tmp_path: Path) -> None:
    ds = make_rtplan(rtss_uid="1.2.3.9", beams=[(1, "ARC1", 250.5), (2, "ARC2", 240.0)],
                     fractions=5, prescription_gy=40.0, target_roi=3, arc=True, label="C2_Lung")
    plan = read_plan(save(ds, tmp_path / "RP.dcm"))
    assert (plan.label, plan.name, plan.date, plan.approval_status) == (
        "C2_Lung", "C2_Lung name", "2024-01-15", "UNAPPROVED")
    assert plan.sop_instance_uid == ds.SOPInstanceUID
    assert plan.frame_of_reference_uid == FRAME
    assert plan.referenced_structure_set_uid == "1.2.3.9"
    assert plan.fractions_planned == 5
    assert plan.fraction_groups[0].beam_numbers == (1, 2)
    assert plan.prescription_dose_gy == 40.0
    assert plan.dose_references[0].referenced_roi_number == 3
    beam = plan.beams[0]
    assert (beam.number, beam.name, beam.machine, beam.radiation_type) == (1, "ARC1", "TrueBeam1", "PHOTON")
    assert beam.energy_mev == 6.0 and beam.later_energies_mev == ()
    assert beam.technique == "ARC"  # DYNAMIC refined by GantryRotationDirection CW
    assert beam.meterset_mu == 250.5
    assert beam.isocenter_mm == (1.5, -2.0, 10.0)
    assert beam.patient_position == "HFS"
    assert beam.number_of_control_points == 2
    assert plan.path == str(tmp_path / "RP.dcm")


def test_energy_restated_in_a_later_control_point_is_read(tmp_path: Path) -> None:
    # PS3.3 C.8.8.14.5: Nominal Beam Energy is given in the first control point and again only
    # where it changes; a beam whose second control point switches to 18 MV delivers 18 MV too.
    ds = make_rtplan(rtss_uid="1.2.3.9", beams=[(1, "ARC1", 250.5), (2, "ARC2", 240.0)])
    ds.BeamSequence[0].ControlPointSequence[1].NominalBeamEnergy = 18
    ds.BeamSequence[1].ControlPointSequence[1].NominalBeamEnergy = 6  # restated, unchanged
    plan = read_plan(save(ds, tmp_path / "RP.dcm"))
    assert (plan.beams[0].energy_mev, plan.beams[0].later_energies_mev) == (6.0, (18.0,))
    assert (plan.beams[1].energy_mev, plan.beams[1].later_energies_mev) == (6.0, ())


def test_isocenter_restated_in_a_later_control_point_is_read(tmp_path: Path) -> None:
    # PS3.3 C.8.8.14.5: Isocenter Position is restated only where it changes during the beam
    ds = make_rtplan(rtss_uid="1.2.3.9", beams=[(1, "ARC1", 250.5), (2, "ARC2", 240.0)])
    ds.BeamSequence[0].ControlPointSequence[1].IsocenterPosition = [1.5, 40.0, 10.0]
    ds.BeamSequence[1].ControlPointSequence[1].IsocenterPosition = [1.5, -2.0, 10.0]  # the same
    plan = read_plan(save(ds, tmp_path / "RP.dcm"))
    assert plan.beams[0].isocenter_mm == (1.5, -2.0, 10.0)
    assert plan.beams[0].later_isocenters_mm == ((1.5, 40.0, 10.0),)
    assert plan.beams[1].later_isocenters_mm == ()


def test_static_beam_technique(tmp_path: Path) -> None:
    plan = read_plan(save(make_rtplan(rtss_uid="1.2.3.9"), tmp_path / "RP.dcm"))
    assert plan.beams[0].technique == "STATIC"


def test_reader_refuses_other_sop_class(tmp_path: Path) -> None:
    path = save(make_rtplan(rtss_uid="1.2.3.9"), tmp_path / "RP.dcm")
    with pytest.raises(DicomConformanceError, match=r"RP\.dcm: \(0008,0016\) 'SOP Class UID' is RT Plan.*must be an RT Dose"):
        read_dose(path)


def test_trilinear_resampling_is_exact_for_linear_dose() -> None:
    # Trilinear interpolation reproduces a linear field exactly (to float32 rounding).
    x, y, z = np.arange(6) * 2.0, np.arange(5) * 2.5, np.arange(4) * 3.0
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    grid = DoseGrid(dose_gy=(1 + xx + 2 * yy + 3 * zz).astype(np.float32), x_mm=x, y_mm=y, z_mm=z,
                    frame_of_reference_uid=FRAME)
    tx, ty, tz = np.array([0.5, 3.3, 9.9]), np.array([1.0, 7.7]), np.array([0.1, 4.4, 8.9])
    values, outside = resample_trilinear(grid, tx, ty, tz)
    tzz, tyy, txx = np.meshgrid(tz, ty, tx, indexing="ij")
    np.testing.assert_allclose(values, 1 + txx + 2 * tyy + 3 * tzz, rtol=1e-6)
    assert outside == 0
    # Beyond half a voxel outside the grid: 0 Gy, and counted.
    values, outside = resample_trilinear(grid, np.array([-5.0, 0.0]), ty, tz)
    assert outside == len(ty) * len(tz)
    assert np.all(values[:, :, 0] == 0)


@settings(max_examples=50, deadline=None)
@given(coefficients=st.tuples(*[st.floats(-5, 5)] * 3),
       points=st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10), st.floats(0, 9)), min_size=1, max_size=5))
def test_trilinear_is_exact_for_any_linear_field(coefficients, points) -> None:
    # For f = 100 + a x + b y + c z, trilinear interpolation inside the grid equals f
    # (float32 storage: relative error ~1e-7 of values up to ~200 Gy → atol 1e-4 Gy).
    a, b, c = coefficients
    x, y, z = np.arange(6) * 2.0, np.arange(5) * 2.5, np.arange(4) * 3.0
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    grid = DoseGrid(dose_gy=(100 + a * xx + b * yy + c * zz).astype(np.float32), x_mm=x, y_mm=y, z_mm=z,
                    frame_of_reference_uid=FRAME)
    for px, py, pz in points:
        value, outside = resample_trilinear(grid, np.array([px]), np.array([py]), np.array([pz]))
        assert outside == 0
        assert value[0, 0, 0] == pytest.approx(100 + a * px + b * py + c * pz, abs=1e-4)
