"""RT Plan (and RT Ion Plan) → :class:`plancheck.model.Plan`.

References
----------
DICOM PS3.3 C.8.8.9 (RT General Plan), C.8.8.10 (RT Prescription), C.8.8.12 (RT Patient
Setup), C.8.8.13 (RT Fraction Scheme), C.8.8.14 (RT Beams), C.8.8.25 (RT Ion Beams).
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import RTIonPlanStorage

from plancheck.dicom.read_common import (
    as_int, float_vector, optional_float, optional_int, optional_str, require, tag_text,
)
from plancheck.dicom.read_dose import MAX_PLAUSIBLE_DOSE_GY
from plancheck.errors import DicomConformanceError, UnsupportedInputError
from plancheck.model import Beam, DoseReference, FractionGroup, Plan

__all__ = ["plan_from_dataset", "format_date"]

logger = logging.getLogger(__name__)


def format_date(value: object) -> str:
    """DICOM DA ``YYYYMMDD`` (or ``YYYY.MM.DD``) as ``YYYY-MM-DD``; "" when absent or invalid."""
    text = str(value or "").strip().replace(".", "").replace("-", "")
    if len(text) != 8 or not text.isdigit():
        return ""
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def _fraction_groups(ds: Dataset, label: str) -> tuple[tuple[FractionGroup, ...], dict[int, float]]:
    groups = []
    meterset_mu: dict[int, float] = {}
    for index, item in enumerate(ds.get("FractionGroupSequence") or (), start=1):
        where = f" in item {index} of {tag_text('FractionGroupSequence')}"
        number = as_int(require(item, "FractionGroupNumber", label, where=where),
                        "FractionGroupNumber", label, where)
        fractions = optional_int(item, "NumberOfFractionsPlanned", label, where)
        if fractions is not None and fractions < 1:
            raise DicomConformanceError(
                f"{tag_text('NumberOfFractionsPlanned')}{where} value of {fractions} is invalid, it must be at "
                "least 1", label)
        beams = []
        for b_index, ref in enumerate(item.get("ReferencedBeamSequence") or (), start=1):
            b_where = f" in item {b_index} of {tag_text('ReferencedBeamSequence')}{where}"
            beam_number = as_int(require(ref, "ReferencedBeamNumber", label, where=b_where),
                                 "ReferencedBeamNumber", label, b_where)
            beams.append(beam_number)
            mu = optional_float(ref, "BeamMeterset", label, b_where)
            if mu is not None:
                meterset_mu.setdefault(beam_number, mu)
        groups.append(FractionGroup(number=number, fractions_planned=fractions, beam_numbers=tuple(beams)))
    return tuple(groups), meterset_mu


def _dose_references(ds: Dataset, label: str) -> tuple[DoseReference, ...]:
    references = []
    for index, item in enumerate(ds.get("DoseReferenceSequence") or (), start=1):
        where = f" in item {index} of {tag_text('DoseReferenceSequence')}"
        prescription = optional_float(item, "TargetPrescriptionDose", label, where)
        if prescription is not None and prescription <= 0 and \
                optional_str(item, "DoseReferenceType") in ("TARGET", ""):
            raise DicomConformanceError(
                f"{tag_text('TargetPrescriptionDose')}{where} value of {prescription:g} Gy is invalid, a target's "
                "prescription dose must be > 0 Gy", label)
        if prescription is not None and prescription > MAX_PLAUSIBLE_DOSE_GY:
            raise DicomConformanceError(
                f"{tag_text('TargetPrescriptionDose')}{where} value of {prescription:g} Gy is implausible (no plan "
                f"dose reaches {MAX_PLAUSIBLE_DOSE_GY:g} Gy; a value in cGy in a field in Gy?)", label)
        references.append(DoseReference(
            number=as_int(require(item, "DoseReferenceNumber", label, where=where),
                          "DoseReferenceNumber", label, where),
            structure_type=optional_str(item, "DoseReferenceStructureType"),
            dose_reference_type=optional_str(item, "DoseReferenceType"),
            description=optional_str(item, "DoseReferenceDescription"),
            referenced_roi_number=optional_int(item, "ReferencedROINumber", label, where),
            target_prescription_dose_gy=prescription,
        ))
    return tuple(references)


def _beams(ds: Dataset, label: str, meterset_mu: dict[int, float]) -> tuple[Beam, ...]:
    positions: dict[int, str] = {}
    for index, item in enumerate(ds.get("PatientSetupSequence") or (), start=1):
        where = f" in item {index} of {tag_text('PatientSetupSequence')}"
        number = optional_int(item, "PatientSetupNumber", label, where)
        if number is not None:
            positions[number] = optional_str(item, "PatientPosition")
    keyword = "BeamSequence" if "BeamSequence" in ds else "IonBeamSequence"
    beams = []
    for index, item in enumerate(ds.get(keyword) or (), start=1):
        where = f" in item {index} of {tag_text(keyword)}"
        number = as_int(require(item, "BeamNumber", label, where=where), "BeamNumber", label, where)
        control_points = item.get("ControlPointSequence" if keyword == "BeamSequence"
                                  else "IonControlPointSequence") or ()
        first = control_points[0] if len(control_points) else Dataset()
        cp_where = f" in the first control point{where}"
        energy = optional_float(first, "NominalBeamEnergy", label, cp_where)
        later_energies: set[float] = set()
        if keyword == "BeamSequence":  # an ion beam's energy changes layer by layer by design
            for cp_index, cp in enumerate(control_points[1:], start=2):
                later = optional_float(cp, "NominalBeamEnergy", label, f" in control point {cp_index}{where}")
                if later is not None and later != energy:
                    later_energies.add(later)
        technique = optional_str(item, "BeamType")
        if optional_str(first, "GantryRotationDirection") in ("CW", "CC"):
            technique = "ARC"
        isocenters: list[tuple[float, float, float]] = []
        for cp_index, cp in enumerate(control_points, start=1):
            if "IsocenterPosition" in cp and cp.IsocenterPosition not in (None, ""):
                iso = float_vector(cp, "IsocenterPosition", label, 3,
                                   where=f" in control point {cp_index}{where}")
                position = (float(iso[0]), float(iso[1]), float(iso[2]))
                if position not in isocenters:
                    isocenters.append(position)
        isocenter = isocenters[0] if isocenters else None
        setup = optional_int(item, "ReferencedPatientSetupNumber", label, where)
        n_cp = optional_int(item, "NumberOfControlPoints", label, where)
        beams.append(Beam(
            number=number,
            name=optional_str(item, "BeamName"),
            machine=optional_str(item, "TreatmentMachineName"),
            radiation_type=optional_str(item, "RadiationType"),
            energy_mev=energy,
            later_energies_mev=tuple(sorted(later_energies)),
            technique=technique,
            treatment_delivery_type=optional_str(item, "TreatmentDeliveryType", "TREATMENT"),
            meterset_mu=meterset_mu.get(number),
            isocenter_mm=isocenter,
            later_isocenters_mm=tuple(isocenters[1:]),
            patient_position=positions.get(setup, "") if setup is not None else "",
            number_of_control_points=n_cp if n_cp is not None else len(control_points),
        ))
    return tuple(beams)


def _refuse_brachytherapy(ds: Dataset, label: str) -> None:
    """Raise :class:`UnsupportedInputError` for a brachytherapy plan (RT Brachy Application
    Setups module, PS3.3 C.8.8.15): plancheck checks external-beam plans only."""
    setups = 0
    for item in ds.get("FractionGroupSequence") or ():
        try:
            setups += int(item.get("NumberOfBrachyApplicationSetups") or 0)
        except (TypeError, ValueError):
            pass
    try:
        has_setups = bool(ds.get("ApplicationSetupSequence"))
    except Exception:  # an undecodable sequence still says what the plan is
        has_setups = True
    if not (has_setups or setups or optional_str(ds, "BrachyTreatmentType")
            or optional_str(ds, "BrachyTreatmentTechnique")):
        return
    raise UnsupportedInputError(
        "is a brachytherapy plan (RT Brachy Application Setups module: (300A,0230) 'Application Setup "
        "Sequence'); plancheck checks external-beam photon and ion plans only — brachytherapy is not supported",
        label)


def plan_from_dataset(ds: Dataset, label: str) -> Plan:
    """Build a :class:`Plan` from an RT Plan or RT Ion Plan data set.

    Parameters
    ----------
    ds
        The RTPLAN data set (no pixel data needed).
    label
        The file name, used in messages and stored as ``Plan.path``.

    Returns
    -------
    Plan
        Label, name, date (``YYYY-MM-DD``), approval status, fraction groups, dose
        references (Target Prescription Dose in Gy), beams (machine, radiation type,
        first-control-point energy, technique refined to ``ARC`` when the first control
        point's Gantry Rotation Direction is CW/CC, meterset per fraction from the
        fraction group, isocenter, patient position via the referenced patient setup).

    Raises
    ------
    DicomConformanceError
        A required attribute is missing or has an invalid value (e.g. Number of
        Fractions Planned < 1, a target's Target Prescription Dose <= 0 Gy).
    UnsupportedInputError
        A brachytherapy plan.

    References
    ----------
    DICOM PS3.3 C.8.8.9, C.8.8.10, C.8.8.12, C.8.8.13, C.8.8.14, C.8.8.15, C.8.8.25.
    """
    sop_uid = str(require(ds, "SOPInstanceUID", label))
    _refuse_brachytherapy(ds, label)
    groups, meterset_mu = _fraction_groups(ds, label)
    referenced_rtss = ""
    for item in ds.get("ReferencedStructureSetSequence") or ():
        referenced_rtss = optional_str(item, "ReferencedSOPInstanceUID")
        if referenced_rtss:
            break
    plan = Plan(
        sop_instance_uid=sop_uid,
        label=optional_str(ds, "RTPlanLabel"),
        name=optional_str(ds, "RTPlanName"),
        date=format_date(ds.get("RTPlanDate")),
        approval_status=optional_str(ds, "ApprovalStatus"),
        frame_of_reference_uid=optional_str(ds, "FrameOfReferenceUID"),
        referenced_structure_set_uid=referenced_rtss,
        fraction_groups=groups,
        dose_references=_dose_references(ds, label),
        beams=_beams(ds, label, meterset_mu),
        path=label,
        is_ion="IonBeamSequence" in ds or optional_str(ds, "SOPClassUID") == RTIonPlanStorage,
    )
    logger.debug("plan %s: %d beams, %d fraction groups", sop_uid, len(plan.beams), len(groups))
    return plan
