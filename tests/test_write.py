"""Round-trip tests of testkit.write: build, save, read back with pydicom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from testkit.write import (
    CT_IMAGE_STORAGE,
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    BeamSpec,
    PatientSpec,
    RoiSpec,
    ct_series_datasets,
    deterministic_uid,
    rtdose_dataset,
    rtplan_dataset,
    rtstruct_dataset,
    save_dataset,
)

PATIENT = PatientSpec("PC-TEST-1", "TEST^PHANTOM")
FRAME = deterministic_uid("test", "frame")


def _square(z: float, half: float = 10.0) -> np.ndarray:
    return np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], float)


def _roundtrip(ds, tmp_path, name="x.dcm"):
    path = save_dataset(ds, tmp_path / name)
    return pydicom.dcmread(path)


def test_deterministic_uid_is_repeatable_and_distinct():
    assert deterministic_uid("a", 1) == deterministic_uid("a", 1)
    assert deterministic_uid("a", 1) != deterministic_uid("a", 2)
    assert pydicom.uid.UID(deterministic_uid("a")).is_valid


def test_rtstruct_roundtrip_with_hole_and_empty_roi(tmp_path):
    rois = [
        RoiSpec(1, "Ring", "ORGAN", [_square(0.0, 20.0), _square(0.0, 10.0)], color=(1, 2, 3)),
        RoiSpec(7, "Empty", "PTV", []),
    ]
    ds = _roundtrip(rtstruct_dataset(rois=rois, frame_of_reference_uid=FRAME, patient=PATIENT,
                                     sop_instance_uid="1.2.3.4", label="TEST"), tmp_path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == RT_STRUCTURE_SET_STORAGE and ds.Modality == "RTSTRUCT"
    assert ds.SOPInstanceUID == "1.2.3.4" and ds.StructureSetLabel == "TEST"
    assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == FRAME
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["Ring", "Empty"]
    assert [r.RTROIInterpretedType for r in ds.RTROIObservationsSequence] == ["ORGAN", "PTV"]
    ring, empty = ds.ROIContourSequence
    assert list(ring.ROIDisplayColor) == [1, 2, 3]
    assert len(ring.ContourSequence) == 2
    c = ring.ContourSequence[1]
    assert c.ContourGeometricType == "CLOSED_PLANAR" and c.NumberOfContourPoints == 4
    np.testing.assert_allclose(np.array(c.ContourData, float).reshape(-1, 3), _square(0.0, 10.0))
    assert empty.ReferencedROINumber == 7 and "ContourSequence" not in empty


def test_rtstruct_references_ct_images(tmp_path):
    cts = ct_series_datasets(hu=np.zeros((3, 4, 4), np.int16), origin_mm=(0, 0, -3), spacing_mm=(1, 1, 3),
                             frame_of_reference_uid=FRAME, patient=PATIENT, series_instance_uid="1.2.3.9")
    ds = rtstruct_dataset(rois=[RoiSpec(1, "A", "ORGAN", [_square(0.0), _square(3.0)])],
                          frame_of_reference_uid=FRAME, patient=PATIENT, referenced_images=cts)
    refs = [c.ContourImageSequence[0].ReferencedSOPInstanceUID for c in ds.ROIContourSequence[0].ContourSequence]
    assert refs == [cts[1].SOPInstanceUID, cts[2].SOPInstanceUID]
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == "1.2.3.9" and len(series.ContourImageSequence) == 3
    assert ds.StudyInstanceUID == cts[0].StudyInstanceUID == PATIENT.study_uid


def test_rtstruct_rejects_bad_contour_shape():
    with pytest.raises(ValueError, match=r"ROI 'Bad': a contour must be an \(N, 3\) array"):
        rtstruct_dataset(rois=[RoiSpec(1, "Bad", "ORGAN", [np.zeros((4, 2))])],
                         frame_of_reference_uid=FRAME, patient=PATIENT)


@pytest.mark.parametrize("bits", [16, 32])
def test_rtdose_roundtrip_reproduces_dose_within_scaling(tmp_path, bits):
    rng = np.random.default_rng(1)
    dose = rng.uniform(0.0, 61.3, size=(4, 5, 6))
    ds = _roundtrip(rtdose_dataset(dose_gy=dose, origin_mm=(-10.5, 20.25, -30.0), spacing_mm=(2.5, 3.0, 2.0),
                                   frame_of_reference_uid=FRAME, referenced_plan_uid="1.2.3.5", patient=PATIENT,
                                   bits_allocated=bits), tmp_path)
    assert ds.SOPClassUID == RT_DOSE_STORAGE
    assert (ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("GY", "PHYSICAL", "PLAN")
    assert list(ds.TissueHeterogeneityCorrection) == ["IMAGE"] or ds.TissueHeterogeneityCorrection == "IMAGE"
    assert [float(v) for v in ds.ImagePositionPatient] == [-10.5, 20.25, -30.0]
    assert [float(v) for v in ds.PixelSpacing] == [3.0, 2.5]  # row spacing (dy) first
    assert [float(v) for v in ds.GridFrameOffsetVector] == [0.0, 2.0, 4.0, 6.0]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert ds.BitsAllocated == bits and ds.PixelRepresentation == 0
    scaling = float(ds.DoseGridScaling)
    pixels = ds.pixel_array
    assert pixels.shape == (4, 5, 6) and pixels.max() <= 2**bits - 1
    assert pixels.max() > 0.99 * (2**bits - 1)  # the range is used
    # rounding to the nearest integer: error at most half a scaling step
    np.testing.assert_allclose(pixels * scaling, dose, atol=0.5 * scaling + 1e-12)
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == "1.2.3.5"


def test_rtdose_beam_dose_references_beam(tmp_path):
    ds = rtdose_dataset(dose_gy=np.ones((2, 2, 2)), origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1),
                        frame_of_reference_uid=FRAME, referenced_plan_uid="1.2.3.5", patient=PATIENT,
                        summation_type="BEAM", referenced_beam_number=2, heterogeneity_correction=None)
    group = ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence[0]
    assert group.ReferencedFractionGroupNumber == 1
    assert group.ReferencedBeamSequence[0].ReferencedBeamNumber == 2
    assert "TissueHeterogeneityCorrection" not in ds


def test_rtdose_errors_name_the_problem():
    with pytest.raises(ValueError, match="bits_allocated is 8, it must be 16 or 32"):
        rtdose_dataset(dose_gy=np.ones((1, 1, 1)), origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1),
                       frame_of_reference_uid=FRAME, referenced_plan_uid="1.2", patient=PATIENT, bits_allocated=8)
    with pytest.raises(ValueError, match="a BEAM dose needs referenced_beam_number"):
        rtdose_dataset(dose_gy=np.ones((1, 1, 1)), origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1),
                       frame_of_reference_uid=FRAME, referenced_plan_uid="1.2", patient=PATIENT,
                       summation_type="BEAM")
    with pytest.raises(ValueError, match="non-negative"):
        rtdose_dataset(dose_gy=-np.ones((1, 1, 1)), origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1),
                       frame_of_reference_uid=FRAME, referenced_plan_uid="1.2", patient=PATIENT)


def test_rtdose_all_zero_dose_is_writable(tmp_path):
    ds = _roundtrip(rtdose_dataset(dose_gy=np.zeros((2, 3, 3)), origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1),
                                   frame_of_reference_uid=FRAME, referenced_plan_uid="1.2", patient=PATIENT), tmp_path)
    assert float(ds.DoseGridScaling) > 0 and ds.pixel_array.max() == 0


def test_rtplan_roundtrip(tmp_path):
    beams = [
        BeamSpec(1, "ARC1", "TrueBeam1", 6, 181.0, 179.0, 120.5, (1.0, 2.0, 3.0)),
        BeamSpec(2, "ARC2", "TrueBeam1", 6, 179.0, 181.0, 130.0, (1.0, 2.0, 3.0), rotation_direction="CC", fff=True),
        BeamSpec(3, "AP", "TrueBeam1", 10, 0.0, None, 50.0, (1.0, 2.0, 3.0)),
    ]
    ds = _roundtrip(rtplan_dataset(label="C1", name="Course 1", date="20250602", approval_status="APPROVED",
                                   fractions_planned=30, prescriptions=[(14, 60.0, "PTV 60 Gy")], beams=beams,
                                   structure_set_uid="1.2.3.4", frame_of_reference_uid=FRAME, patient=PATIENT),
                    tmp_path)
    assert ds.SOPClassUID == RT_PLAN_STORAGE and ds.Modality == "RTPLAN"
    assert (ds.RTPlanLabel, ds.RTPlanName, ds.RTPlanDate, ds.RTPlanGeometry) == ("C1", "Course 1", "20250602", "PATIENT")
    assert ds.ApprovalStatus == "APPROVED" and ds.ReviewDate == "20250602"
    ref = ds.DoseReferenceSequence[0]
    assert (ref.DoseReferenceStructureType, ref.DoseReferenceType, ref.ReferencedROINumber) == ("VOLUME", "TARGET", 14)
    assert float(ref.TargetPrescriptionDose) == 60.0 and ref.DoseReferenceDescription == "PTV 60 Gy"
    group = ds.FractionGroupSequence[0]
    assert group.NumberOfFractionsPlanned == 30 and group.NumberOfBeams == 3
    assert [float(b.BeamMeterset) for b in group.ReferencedBeamSequence] == [120.5, 130.0, 50.0]
    assert group.ReferencedDoseReferenceSequence[0].ReferencedDoseReferenceNumber == 1
    arc1, arc2, static = ds.BeamSequence
    assert arc1.BeamType == "DYNAMIC" and static.BeamType == "STATIC"
    assert arc1.TreatmentMachineName == "TrueBeam1" and arc1.RadiationType == "PHOTON"
    cps = arc1.ControlPointSequence
    assert arc1.NumberOfControlPoints == len(cps) >= 2
    assert float(cps[0].GantryAngle) == 181.0 and float(cps[-1].GantryAngle) == 179.0
    assert cps[0].GantryRotationDirection == "CW" and arc2.ControlPointSequence[0].GantryRotationDirection == "CC"
    angles = [float(cp.GantryAngle) for cp in cps]
    assert angles[1] > angles[0]  # clockwise: increasing through 360 -> 0
    assert float(cps[0].NominalBeamEnergy) == 6.0
    assert [float(v) for v in cps[0].IsocenterPosition] == [1.0, 2.0, 3.0]
    assert float(cps[0].CumulativeMetersetWeight) == 0.0 and float(cps[-1].CumulativeMetersetWeight) == 1.0
    assert arc2.PrimaryFluenceModeSequence[0].FluenceModeID == "FFF"
    assert static.NumberOfControlPoints == 2 and float(static.ControlPointSequence[0].GantryAngle) == 0.0
    assert arc1.ReferencedPatientSetupNumber == ds.PatientSetupSequence[0].PatientSetupNumber == 1
    assert ds.PatientSetupSequence[0].PatientPosition == "HFS"
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert ds.FrameOfReferenceUID == FRAME


def test_rtplan_rejects_unknown_rotation():
    with pytest.raises(ValueError, match="rotation_direction is 'XX', it must be 'CW' or 'CC'"):
        rtplan_dataset(label="x", name="x", date="20250602", approval_status="UNAPPROVED", fractions_planned=1,
                       prescriptions=[], beams=[BeamSpec(1, "A", "M", 6, 0, 10, 1, (0, 0, 0), rotation_direction="XX")],
                       structure_set_uid=None, frame_of_reference_uid=FRAME, patient=PATIENT)


def test_ct_series_roundtrip(tmp_path):
    hu = np.array([[[-1000, 0], [40, 3000]], [[-1024, 10], [20, 30]]], np.int16)
    datasets = ct_series_datasets(hu=hu, origin_mm=(-1.5, -1.5, 10.0), spacing_mm=(3.0, 3.0, 2.0),
                                  frame_of_reference_uid=FRAME, patient=PATIENT)
    back = [_roundtrip(ds, tmp_path, f"ct{k}.dcm") for k, ds in enumerate(datasets)]
    assert [ds.SOPClassUID for ds in back] == [CT_IMAGE_STORAGE] * 2
    assert [float(ds.ImagePositionPatient[2]) for ds in back] == [10.0, 12.0]
    assert len({ds.SeriesInstanceUID for ds in back}) == 1 and len({ds.SOPInstanceUID for ds in back}) == 2
    for k, ds in enumerate(back):
        recovered = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(recovered, hu[k])
