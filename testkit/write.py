"""Build and save DICOM RT datasets (RTSTRUCT, RTDOSE, RTPLAN, CT) from plain Python/numpy input.

The writers are for tests, benchmarks and the synthetic sample case: they
produce small but conformant objects (explicit VR little endian, file meta,
proper SOP classes) from plain inputs, so any test in the project can make the
DICOM it needs in a few lines::

    patient = PatientSpec("PC-TEST", "TEST^PHANTOM")
    rtss = rtstruct_dataset(rois=[RoiSpec(1, "PTV", "PTV", [square])],
                            frame_of_reference_uid=frame, patient=patient)
    save_dataset(rtss, tmp_path / "RS.dcm")

UIDs are random unless given; :func:`deterministic_uid` derives repeatable ones
(``generate_uid(entropy_srcs=...)``) so regenerated files are byte-identical.

References
----------
DICOM PS3.3 A.19 (RT Structure Set IOD), A.18 (RT Dose IOD), A.20 (RT Plan IOD),
A.3 (CT Image IOD); C.7.1.1 Patient, C.7.2.1 General Study, C.8.8.1 RT Series,
C.8.8.3 RT Dose, C.8.8.5-8 Structure Set / ROI Contour / RT ROI Observations,
C.8.8.9-14 RT General Plan, Prescription, Patient Setup, Fraction Scheme, Beams.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    RTDoseStorage,
    RTPlanStorage,
    RTStructureSetStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from testkit.synthetic.case import BeamSpec  # one beam description for the writer and the generator

if TYPE_CHECKING:  # pragma: no cover
    from testkit.synthetic.case import SyntheticCase

__all__ = [
    "CT_IMAGE_STORAGE",
    "RT_DOSE_STORAGE",
    "RT_STRUCTURE_SET_STORAGE",
    "RT_PLAN_STORAGE",
    "PatientSpec",
    "RoiSpec",
    "BeamSpec",
    "deterministic_uid",
    "rtstruct_dataset",
    "rtdose_dataset",
    "rtplan_dataset",
    "ct_series_datasets",
    "save_dataset",
    "write_case",
]

CT_IMAGE_STORAGE = CTImageStorage
RT_DOSE_STORAGE = RTDoseStorage
RT_STRUCTURE_SET_STORAGE = RTStructureSetStorage
RT_PLAN_STORAGE = RTPlanStorage

#: Detached Study Management SOP Class (retired; customary in RT Referenced Study Sequences; not named by pydicom).
_DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
_DEFAULT_DATE = "20250602"
_DEFAULT_TIME = "120000"
_MANUFACTURER = "plancheck synthetic"


def deterministic_uid(*parts: object) -> str:
    """A UID derived only from ``parts`` (same parts, same UID).

    Uses ``pydicom.uid.generate_uid(entropy_srcs=...)`` under pydicom's root.
    """
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters for ``value``."""
    value = float(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format_number_as_ds(value)


def _ds_list(values: Iterable[float]) -> list[str]:
    return [_ds(v) for v in values]


@dataclass(frozen=True)
class PatientSpec:
    """Patient and study identity shared by all datasets of one export.

    Parameters
    ----------
    patient_id, patient_name
        Patient ID (0010,0020) and Patient's Name (0010,0010), e.g. ``"DOE^JANE"``.
    birth_date
        ``YYYYMMDD`` or "".
    sex
        ``M``, ``F``, ``O`` or "".
    study_instance_uid
        Shared Study Instance UID; by default derived from the patient ID and
        name, so every dataset built with the same PatientSpec is in one study.
    study_date
        Study Date ``YYYYMMDD`` (also the default content date of the datasets).
    """

    patient_id: str
    patient_name: str
    birth_date: str = ""
    sex: str = ""
    study_instance_uid: str = ""
    study_date: str = _DEFAULT_DATE

    @property
    def study_uid(self) -> str:
        """The Study Instance UID to use."""
        return self.study_instance_uid or deterministic_uid("study", self.patient_id, self.patient_name)


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write into an RT Structure Set.

    Parameters
    ----------
    number
        ROI Number (3006,0022).
    name
        ROI Name (3006,0026).
    interpreted_type
        RT ROI Interpreted Type (3006,00A4): ``EXTERNAL``, ``PTV``, ``ORGAN``...;
        "" writes an empty value.
    contours
        Closed planar contours as ``(N, 3)`` arrays of x, y, z in mm; holes and
        islands are further contours on the same plane. May be empty.
    color
        ROI Display Color (r, g, b).
    """

    number: int
    name: str
    interpreted_type: str
    contours: Sequence[np.ndarray] = ()
    color: tuple[int, int, int] = (255, 0, 0)


# --- common modules ------------------------------------------------------------------------

def _base_dataset(*, sop_class_uid: str, sop_instance_uid: str, modality: str, patient: PatientSpec,
                  series_instance_uid: str, series_number: int, content_date: str,
                  series_description: str = "") -> Dataset:
    """Patient, General Study, Series, General Equipment and SOP Common modules."""
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = sop_class_uid
    file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = file_meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = content_date
    ds.InstanceCreationTime = _DEFAULT_TIME
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = patient.study_date
    ds.StudyTime = _DEFAULT_TIME
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = _MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.StationName = "PLANCHECK"
    if series_description:
        ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "plancheck.dicom.write"  # the model name the sample was written with (keeps its bytes)
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.SoftwareVersions = "plancheck"
    ds.StudyInstanceUID = patient.study_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    return ds


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


# --- RT Structure Set ----------------------------------------------------------------------

def rtstruct_dataset(*, rois: Sequence[RoiSpec], frame_of_reference_uid: str, patient: PatientSpec,
                     sop_instance_uid: str | None = None, label: str = "plancheck",
                     name: str = "", date: str | None = None,
                     referenced_images: Sequence[Dataset] | None = None,
                     series_instance_uid: str | None = None, decimals: int = 2) -> Dataset:
    """An RT Structure Set.

    Parameters
    ----------
    rois
        The ROIs; an ROI without contours is written with an ROI Contour item
        but no Contour Sequence (an "empty structure").
    frame_of_reference_uid
        Frame of reference of all contours.
    patient
        Patient/study identity.
    sop_instance_uid
        SOP Instance UID (random if None).
    label, name
        Structure Set Label and Name.
    date
        Structure Set Date ``YYYYMMDD`` (default: the study date).
    referenced_images
        CT image datasets (e.g. from :func:`ct_series_datasets`); when given,
        each contour references the image on its plane (Contour Image Sequence)
        and the series is referenced in the Referenced Frame of Reference Sequence.
    series_instance_uid
        Series Instance UID (derived from the SOP Instance UID if None).
    decimals
        Decimals written for contour coordinates (mm).

    Returns
    -------
    pydicom.dataset.Dataset
    """
    sop_instance_uid = sop_instance_uid or generate_uid()
    date = date or patient.study_date
    ds = _base_dataset(sop_class_uid=RT_STRUCTURE_SET_STORAGE, sop_instance_uid=sop_instance_uid,
                       modality="RTSTRUCT", patient=patient, content_date=date, series_number=2,
                       series_instance_uid=series_instance_uid or deterministic_uid("series", sop_instance_uid))
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.StructureSetLabel = label
    if name:
        ds.StructureSetName = name
    ds.StructureSetDate = date
    ds.StructureSetTime = _DEFAULT_TIME

    images = list(referenced_images or [])
    image_z = np.array([float(im.ImagePositionPatient[2]) for im in images])
    frame_item = _item(FrameOfReferenceUID=frame_of_reference_uid)
    if images:
        image_items = [_item(ReferencedSOPClassUID=im.SOPClassUID, ReferencedSOPInstanceUID=im.SOPInstanceUID)
                       for im in images]
        series_item = _item(SeriesInstanceUID=images[0].SeriesInstanceUID,
                            ContourImageSequence=DicomSequence(image_items))
        study_item = _item(ReferencedSOPClassUID=_DETACHED_STUDY_MANAGEMENT,
                           ReferencedSOPInstanceUID=images[0].StudyInstanceUID,
                           RTReferencedSeriesSequence=DicomSequence([series_item]))
        frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])

    ds.StructureSetROISequence = DicomSequence([
        _item(ROINumber=roi.number, ReferencedFrameOfReferenceUID=frame_of_reference_uid,
              ROIName=roi.name, ROIGenerationAlgorithm="MANUAL")
        for roi in rois
    ])
    fmt = f"{{:.{decimals}f}}"
    roi_contours = []
    for roi in rois:
        item = _item(ROIDisplayColor=[int(c) for c in roi.color], ReferencedROINumber=roi.number)
        contour_items = []
        for index, points in enumerate(roi.contours, start=1):
            points = np.asarray(points, dtype=float)
            if points.ndim != 2 or points.shape[1] != 3:
                raise ValueError(f"ROI {roi.name!r}: a contour must be an (N, 3) array, got shape {points.shape}")
            contour = Dataset()
            if images:
                nearest = int(np.argmin(np.abs(image_z - points[0, 2])))
                if abs(image_z[nearest] - points[0, 2]) < 0.5:
                    contour.ContourImageSequence = DicomSequence([_item(
                        ReferencedSOPClassUID=images[nearest].SOPClassUID,
                        ReferencedSOPInstanceUID=images[nearest].SOPInstanceUID)])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourNumber = index
            contour.ContourData = [fmt.format(v) for v in points.ravel()]
            contour_items.append(contour)
        if contour_items:
            item.ContourSequence = DicomSequence(contour_items)
        roi_contours.append(item)
    ds.ROIContourSequence = DicomSequence(roi_contours)
    ds.RTROIObservationsSequence = DicomSequence([
        _item(ObservationNumber=roi.number, ReferencedROINumber=roi.number,
              RTROIInterpretedType=roi.interpreted_type, ROIInterpreter="")
        for roi in rois
    ])
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


# --- RT Dose -------------------------------------------------------------------------------

def _dose_grid_scaling(max_gy: float, max_int: int) -> float:
    """The smallest short decimal scaling with ``max_gy / scaling <= max_int``."""
    if max_gy <= 0:
        return 1.0
    scaling = float(f"{max_gy / max_int:.8g}")
    while max_gy / scaling > max_int:
        scaling = float(f"{scaling * (1 + 1e-7):.8g}")
    return scaling


def rtdose_dataset(*, dose_gy: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
                   frame_of_reference_uid: str, referenced_plan_uid: str, patient: PatientSpec,
                   summation_type: str = "PLAN", dose_type: str = "PHYSICAL", dose_units: str = "GY",
                   heterogeneity_correction: Sequence[str] | None = ("IMAGE",),
                   referenced_beam_number: int | None = None, referenced_fraction_group_number: int = 1,
                   bits_allocated: int = 16, sop_instance_uid: str | None = None,
                   series_instance_uid: str | None = None, date: str | None = None,
                   comment: str = "") -> Dataset:
    """An RT Dose on an axial grid.

    Parameters
    ----------
    dose_gy
        ``(nz, ny, nx)`` dose, Gy (non-negative); frame k is at
        ``z = origin_mm[2] + k * spacing_mm[2]``.
    origin_mm
        (x, y, z) of the centre of the first voxel, mm (Image Position Patient).
    spacing_mm
        (dx, dy, dz) voxel spacing, mm; written as Pixel Spacing ``[dy, dx]`` and a
        Grid Frame Offset Vector ``0, dz, 2 dz, ...``.
    frame_of_reference_uid
        Frame of reference.
    referenced_plan_uid
        SOP Instance UID of the RT Plan (Referenced RT Plan Sequence).
    patient
        Patient/study identity.
    summation_type, dose_type, dose_units
        Dose Summation Type, Dose Type, Dose Units.
    heterogeneity_correction
        Tissue Heterogeneity Correction values; None or empty to omit.
    referenced_beam_number
        For ``BEAM`` doses: the beam (written in Referenced Fraction Group /
        Referenced Beam Sequence).
    referenced_fraction_group_number
        Fraction group referenced by BEAM and FRACTION doses.
    bits_allocated
        16 or 32; pixels are unsigned and Dose Grid Scaling is chosen so the
        maximum fills the integer range.
    sop_instance_uid, series_instance_uid
        UIDs (random / derived if None).
    date
        Content date (default: the study date).
    comment
        Dose Comment.

    Returns
    -------
    pydicom.dataset.Dataset
    """
    dose = np.asarray(dose_gy, dtype=float)
    if dose.ndim != 3:
        raise ValueError(f"dose_gy must be a (nz, ny, nx) array, got shape {dose.shape}")
    if np.any(~np.isfinite(dose)) or dose.min() < 0:
        raise ValueError("dose_gy must be finite and non-negative")
    if bits_allocated not in (16, 32):
        raise ValueError(f"bits_allocated is {bits_allocated}, it must be 16 or 32")
    sop_instance_uid = sop_instance_uid or generate_uid()
    date = date or patient.study_date
    ds = _base_dataset(sop_class_uid=RT_DOSE_STORAGE, sop_instance_uid=sop_instance_uid, modality="RTDOSE",
                       patient=patient, content_date=date, series_number=4,
                       series_instance_uid=series_instance_uid or deterministic_uid("series", sop_instance_uid))
    nz, ny, nx = dose.shape
    dx, dy, dz = (float(s) for s in spacing_mm)
    ds.ContentDate = date
    ds.ContentTime = _DEFAULT_TIME
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = _ds_list(origin_mm)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceThickness = _ds(dz) if nz > 1 else ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = Tag("GridFrameOffsetVector")
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_allocated
    ds.HighBit = bits_allocated - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits = dose_units
    ds.DoseType = dose_type
    ds.DoseSummationType = summation_type
    if comment:
        ds.DoseComment = comment
    ds.GridFrameOffsetVector = _ds_list(np.round(np.arange(nz) * dz, 6))
    max_int = 2**bits_allocated - 1
    scaling = _dose_grid_scaling(float(dose.max()), max_int)
    ds.DoseGridScaling = _ds(scaling)
    if heterogeneity_correction:
        ds.TissueHeterogeneityCorrection = list(heterogeneity_correction)
    plan_item = _item(ReferencedSOPClassUID=RT_PLAN_STORAGE, ReferencedSOPInstanceUID=referenced_plan_uid)
    if summation_type in ("BEAM", "FRACTION", "CONTROL_POINT"):
        group = _item(ReferencedFractionGroupNumber=referenced_fraction_group_number)
        if summation_type == "BEAM" or referenced_beam_number is not None:
            if referenced_beam_number is None:
                raise ValueError("a BEAM dose needs referenced_beam_number")
            group.ReferencedBeamSequence = DicomSequence([_item(ReferencedBeamNumber=referenced_beam_number)])
        plan_item.ReferencedFractionGroupSequence = DicomSequence([group])
    ds.ReferencedRTPlanSequence = DicomSequence([plan_item])
    pixels = np.clip(np.rint(dose / float(ds.DoseGridScaling)), 0, max_int)
    ds.PixelData = np.ascontiguousarray(pixels.astype(f"<u{bits_allocated // 8}")).tobytes()
    return ds


# --- RT Plan -------------------------------------------------------------------------------

def _gantry_angles(beam: BeamSpec) -> list[float]:
    if beam.gantry_stop_deg is None:
        return [beam.gantry_start_deg % 360.0]
    if beam.rotation_direction == "CW":
        span = (beam.gantry_stop_deg - beam.gantry_start_deg) % 360.0
        sign = 1.0
    elif beam.rotation_direction == "CC":
        span = (beam.gantry_start_deg - beam.gantry_stop_deg) % 360.0
        sign = -1.0
    else:
        raise ValueError(f"beam {beam.number}: rotation_direction is {beam.rotation_direction!r}, "
                         "it must be 'CW' or 'CC'")
    n = beam.number_of_control_points or max(2, int(np.ceil(span / 10.0)) + 1)
    return [round((beam.gantry_start_deg + sign * span * i / (n - 1)) % 360.0, 1) for i in range(n)]


def _beam_item(beam: BeamSpec) -> Dataset:
    angles = _gantry_angles(beam)
    is_arc = beam.gantry_stop_deg is not None
    item = Dataset()
    item.BeamNumber = beam.number
    item.BeamName = beam.name
    item.BeamType = "DYNAMIC" if is_arc else "STATIC"
    item.RadiationType = beam.radiation_type
    item.TreatmentMachineName = beam.machine
    item.PrimaryDosimeterUnit = "MU"
    item.SourceAxisDistance = "1000"
    if beam.fff:
        item.PrimaryFluenceModeSequence = DicomSequence([_item(FluenceMode="NON_STANDARD", FluenceModeID="FFF")])
    else:
        item.PrimaryFluenceModeSequence = DicomSequence([_item(FluenceMode="STANDARD")])
    item.BeamLimitingDeviceSequence = DicomSequence([
        _item(RTBeamLimitingDeviceType="ASYMX", NumberOfLeafJawPairs=1),
        _item(RTBeamLimitingDeviceType="ASYMY", NumberOfLeafJawPairs=1),
    ])
    item.TreatmentDeliveryType = "TREATMENT"
    item.NumberOfWedges = 0
    item.NumberOfCompensators = 0
    item.NumberOfBoli = 0
    item.NumberOfBlocks = 0
    item.FinalCumulativeMetersetWeight = "1"
    item.NumberOfControlPoints = len(angles) if is_arc else 2
    direction = beam.rotation_direction if is_arc else "NONE"
    control_points = []
    for index in range(item.NumberOfControlPoints):
        cp = Dataset()
        cp.ControlPointIndex = index
        last = index == item.NumberOfControlPoints - 1
        if index == 0:
            cp.NominalBeamEnergy = _ds(beam.energy_mv)
            cp.DoseRateSet = "1400" if beam.fff else "600"
            cp.BeamLimitingDevicePositionSequence = DicomSequence([
                _item(RTBeamLimitingDeviceType="ASYMX", LeafJawPositions=["-50", "50"]),
                _item(RTBeamLimitingDeviceType="ASYMY", LeafJawPositions=["-60", "60"]),
            ])
        if index == 0 or is_arc:
            cp.GantryAngle = _ds(angles[index] if is_arc else angles[0])
            cp.GantryRotationDirection = "NONE" if (last or not is_arc) else direction
        if index == 0:
            cp.BeamLimitingDeviceAngle = "0"
            cp.BeamLimitingDeviceRotationDirection = "NONE"
            cp.PatientSupportAngle = "0"
            cp.PatientSupportRotationDirection = "NONE"
            cp.TableTopEccentricAngle = "0"
            cp.TableTopEccentricRotationDirection = "NONE"
            cp.IsocenterPosition = _ds_list(beam.isocenter_mm)
        cp.CumulativeMetersetWeight = _ds(round(index / (item.NumberOfControlPoints - 1), 6))
        control_points.append(cp)
    item.ControlPointSequence = DicomSequence(control_points)
    item.ReferencedPatientSetupNumber = 1
    return item


def rtplan_dataset(*, label: str, name: str, date: str, approval_status: str, fractions_planned: int,
                   prescriptions: Sequence[tuple[int | None, float, str]], beams: Sequence[BeamSpec],
                   structure_set_uid: str | None, frame_of_reference_uid: str, patient: PatientSpec,
                   patient_position: str = "HFS", sop_instance_uid: str | None = None,
                   series_instance_uid: str | None = None, reviewer_name: str = "PHYSICIST^SYNTHETIC",
                   beam_dose_gy: Sequence[float] | None = None) -> Dataset:
    """An RT Plan with one fraction group.

    Parameters
    ----------
    label, name
        RT Plan Label and RT Plan Name.
    date
        RT Plan Date ``YYYYMMDD``.
    approval_status
        ``APPROVED``, ``UNAPPROVED`` or ``REJECTED`` (review date/time/name are
        written for APPROVED and REJECTED).
    fractions_planned
        Number of Fractions Planned.
    prescriptions
        ``(roi_number, dose_gy, description)`` per target: a Dose Reference
        (VOLUME, TARGET) with Target Prescription Dose in Gy for the whole
        course; ``roi_number`` None omits Referenced ROI Number.
    beams
        The treatment beams.
    structure_set_uid
        SOP Instance UID of the RT Structure Set (None omits the reference).
    frame_of_reference_uid
        Frame of reference.
    patient
        Patient/study identity.
    patient_position
        Patient Setup position, e.g. ``HFS``.
    sop_instance_uid, series_instance_uid
        UIDs (random / derived if None).
    reviewer_name
        Reviewer Name written for approved plans.
    beam_dose_gy
        Optional Beam Dose per beam (Gy per fraction) in the fraction group.

    Returns
    -------
    pydicom.dataset.Dataset
    """
    sop_instance_uid = sop_instance_uid or generate_uid()
    ds = _base_dataset(sop_class_uid=RT_PLAN_STORAGE, sop_instance_uid=sop_instance_uid, modality="RTPLAN",
                       patient=patient, content_date=date, series_number=3,
                       series_instance_uid=series_instance_uid or deterministic_uid("series", sop_instance_uid))
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = label
    ds.RTPlanName = name
    ds.RTPlanDate = date
    ds.RTPlanTime = _DEFAULT_TIME
    ds.RTPlanGeometry = "PATIENT"
    if structure_set_uid:
        ds.ReferencedStructureSetSequence = DicomSequence([
            _item(ReferencedSOPClassUID=RT_STRUCTURE_SET_STORAGE, ReferencedSOPInstanceUID=structure_set_uid)])
    dose_references = []
    for number, (roi_number, dose, description) in enumerate(prescriptions, start=1):
        ref = Dataset()
        ref.DoseReferenceNumber = number
        ref.DoseReferenceUID = deterministic_uid("dose reference", sop_instance_uid, number)
        ref.DoseReferenceStructureType = "VOLUME"
        ref.DoseReferenceDescription = description
        if roi_number is not None:
            ref.ReferencedROINumber = roi_number
        ref.DoseReferenceType = "TARGET"
        ref.TargetPrescriptionDose = _ds(dose)
        dose_references.append(ref)
    ds.DoseReferenceSequence = DicomSequence(dose_references)
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = fractions_planned
    group.NumberOfBeams = len(beams)
    group.NumberOfBrachyApplicationSetups = 0
    referenced_beams = []
    for index, beam in enumerate(beams):
        ref_beam = _item(ReferencedBeamNumber=beam.number)
        if beam_dose_gy is not None:
            ref_beam.BeamDose = _ds(beam_dose_gy[index])
        ref_beam.BeamMeterset = _ds(beam.meterset_mu)
        referenced_beams.append(ref_beam)
    group.ReferencedBeamSequence = DicomSequence(referenced_beams)
    group.ReferencedDoseReferenceSequence = DicomSequence([
        _item(ReferencedDoseReferenceNumber=r.DoseReferenceNumber) for r in dose_references])
    ds.FractionGroupSequence = DicomSequence([group])
    ds.BeamSequence = DicomSequence([_beam_item(b) for b in beams])
    ds.PatientSetupSequence = DicomSequence([
        _item(PatientSetupNumber=1, PatientPosition=patient_position, SetupTechnique="ISOCENTRIC")])
    ds.ApprovalStatus = approval_status
    if approval_status in ("APPROVED", "REJECTED"):
        ds.ReviewDate = date
        ds.ReviewTime = _DEFAULT_TIME
        ds.ReviewerName = reviewer_name
    return ds


# --- CT ------------------------------------------------------------------------------------

def ct_series_datasets(*, hu: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
                       frame_of_reference_uid: str, patient: PatientSpec,
                       series_instance_uid: str | None = None, sop_instance_uids: Sequence[str] | None = None,
                       date: str | None = None, patient_position: str = "HFS") -> list[Dataset]:
    """A CT series, one dataset per axial slice.

    Parameters
    ----------
    hu
        ``(nz, ny, nx)`` Hounsfield units (clipped to -1024..3071), stored as
        ``HU + 1024`` with Rescale Intercept -1024 and slope 1.
    origin_mm
        (x, y, z) of the centre of the first voxel, mm.
    spacing_mm
        (dx, dy, dz), mm.
    frame_of_reference_uid
        Frame of reference.
    patient
        Patient/study identity.
    series_instance_uid
        Series UID (random if None).
    sop_instance_uids
        One UID per slice (derived from the series UID if None).
    date
        Content date (default: the study date).
    patient_position
        Patient Position, e.g. ``HFS``.

    Returns
    -------
    list of pydicom.dataset.Dataset
        In slice order (increasing z), Instance Number from 1.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must be a (nz, ny, nx) array, got shape {hu.shape}")
    series_instance_uid = series_instance_uid or generate_uid()
    date = date or patient.study_date
    nz, ny, nx = hu.shape
    dx, dy, dz = (float(s) for s in spacing_mm)
    stored = (np.clip(np.rint(hu), -1024, 3071).astype(np.int32) + 1024).astype("<u2")
    out = []
    for k in range(nz):
        uid = sop_instance_uids[k] if sop_instance_uids else deterministic_uid(series_instance_uid, "image", k)
        ds = _base_dataset(sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid=uid, modality="CT",
                           patient=patient, content_date=date, series_number=1,
                           series_instance_uid=series_instance_uid)
        z = float(origin_mm[2]) + k * dz
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ContentDate = date
        ds.ContentTime = _DEFAULT_TIME
        ds.PatientPosition = patient_position
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = _ds_list([origin_mm[0], origin_mm[1], round(z, 6)])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [_ds(dy), _ds(dx)]
        ds.SliceThickness = _ds(dz)
        ds.SliceLocation = _ds(round(z, 6))
        ds.KVP = "120"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        out.append(ds)
    return out


# --- files ---------------------------------------------------------------------------------

def save_dataset(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta, explicit VR LE).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_case(case: SyntheticCase, out_dir: str | os.PathLike[str], *, name: str = "sample") -> list[Path]:
    """Write a :class:`testkit.synthetic.case.SyntheticCase` as DICOM files.

    Files: ``CT_001.dcm`` ... (if the case has a CT), ``RS_<name>.dcm``, and per
    course ``RP_<label>.dcm`` and ``RD_<label>.dcm``. All UIDs derive from the
    case's ``uid_key``, so writing the same case twice gives identical bytes.

    Parameters
    ----------
    case
        The synthetic case.
    out_dir
        Output directory (created if needed). Existing files of the same names
        are overwritten; other files are left alone.
    name
        Used in the structure-set file name and label.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = case.uid_key
    spec = case.spec
    patient = PatientSpec(spec.patient_id, spec.patient_name, birth_date="19600101", sex="M",
                          study_instance_uid=deterministic_uid(key, "study"), study_date=spec.date)
    frame = deterministic_uid(key, "frame of reference")
    written: list[Path] = []

    ct_datasets: list[Dataset] = []
    if case.ct is not None:
        ct_datasets = ct_series_datasets(hu=case.ct.hu, origin_mm=case.ct.origin_mm, spacing_mm=case.ct.spacing_mm,
                                         frame_of_reference_uid=frame, patient=patient,
                                         series_instance_uid=deterministic_uid(key, "ct series"))
        width = max(3, len(str(len(ct_datasets))))
        for k, ds in enumerate(ct_datasets, start=1):
            written.append(save_dataset(ds, out / f"CT_{k:0{width}d}.dcm"))

    rtss_uid = deterministic_uid(key, "rtstruct")
    rois = [RoiSpec(s.number, s.name, s.interpreted_type, s.contours, s.color_rgb) for s in case.structures]
    rtss = rtstruct_dataset(rois=rois, frame_of_reference_uid=frame, patient=patient, sop_instance_uid=rtss_uid,
                            label=name, name=f"plancheck synthetic {name}", referenced_images=ct_datasets or None,
                            series_instance_uid=deterministic_uid(key, "rtstruct series"))
    written.append(save_dataset(rtss, out / f"RS_{name}.dcm"))

    for course in case.courses:
        plan_uid = deterministic_uid(key, "rtplan", course.label)
        beams = list(course.beams)
        total_mu = sum(b.meterset_mu for b in course.beams)
        per_fraction_gy = course.prescription_gy / course.fractions
        rtplan = rtplan_dataset(
            label=course.label, name=course.name, date=spec.date, approval_status="APPROVED",
            fractions_planned=course.fractions,
            prescriptions=[(course.target_roi_number, course.prescription_gy, course.description)],
            beams=beams, structure_set_uid=rtss_uid, frame_of_reference_uid=frame, patient=patient,
            sop_instance_uid=plan_uid, series_instance_uid=deterministic_uid(key, "rtplan series", course.label),
            beam_dose_gy=[round(per_fraction_gy * b.meterset_mu / total_mu, 4) for b in course.beams])
        written.append(save_dataset(rtplan, out / f"RP_{course.label}.dcm"))
        rtdose = rtdose_dataset(
            dose_gy=course.dose_gy, origin_mm=course.origin_mm, spacing_mm=course.spacing_mm,
            frame_of_reference_uid=frame, referenced_plan_uid=plan_uid, patient=patient,
            sop_instance_uid=deterministic_uid(key, "rtdose", course.label),
            series_instance_uid=deterministic_uid(key, "rtdose series", course.label),
            comment=f"{course.label} plan dose")
        written.append(save_dataset(rtdose, out / f"RD_{course.label}.dcm"))
    return written
