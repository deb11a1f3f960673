"""RT Plan model: prescription, fractionation and beams.

References
----------
DICOM PS3.3 C.8.8.9 (RT General Plan), C.8.8.10 (RT Prescription),
C.8.8.13 (RT Fraction Scheme), C.8.8.14 (RT Beams), C.8.8.12 (RT Patient Setup).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Beam", "FractionGroup", "DoseReference", "Plan"]


@dataclass(frozen=True)
class Beam:
    """A treatment beam.

    Attributes
    ----------
    number, name
        Beam Number and Beam Name.
    machine
        Treatment Machine Name.
    radiation_type
        ``PHOTON``, ``ELECTRON``, ``PROTON`` ...
    energy_mev
        Nominal Beam Energy of the first control point (MV for photons), or None.
    later_energies_mev
        Other Nominal Beam Energies stated by later control points (PS3.3 C.8.8.14.5: the
        energy is restated only where it changes), sorted, without ``energy_mev``; () for
        ion beams, whose energy changes layer by layer by design.
    technique
        ``STATIC``, ``DYNAMIC`` (Beam Type) refined to ``ARC`` when the gantry rotates.
    treatment_delivery_type
        ``TREATMENT`` or ``SETUP`` etc.
    meterset_mu
        Beam Meterset from the fraction group (MU per fraction), or None.
    isocenter_mm
        Isocenter Position (x, y, z) in mm of the first control point stating one, or None.
    later_isocenters_mm
        Other Isocenter Positions stated by later control points (PS3.3 C.8.8.14.5: restated
        only where the isocenter changes during the beam), in order, without ``isocenter_mm``.
    patient_position
        From the Patient Setup the beam references (e.g. ``HFS``), or "".
    """

    number: int
    name: str = ""
    machine: str = ""
    radiation_type: str = ""
    energy_mev: float | None = None
    later_energies_mev: tuple[float, ...] = ()
    technique: str = ""
    treatment_delivery_type: str = "TREATMENT"
    meterset_mu: float | None = None
    isocenter_mm: tuple[float, float, float] | None = None
    later_isocenters_mm: tuple[tuple[float, float, float], ...] = ()
    patient_position: str = ""
    number_of_control_points: int = 0


@dataclass(frozen=True)
class FractionGroup:
    """A fraction group: how many fractions and which beams with what meterset."""

    number: int
    fractions_planned: int | None
    beam_numbers: tuple[int, ...] = ()


@dataclass(frozen=True)
class DoseReference:
    """A dose reference of the RT Prescription module.

    Attributes
    ----------
    number
        Dose Reference Number.
    structure_type
        ``POINT``, ``VOLUME``, ``COORDINATES``, ``SITE``.
    dose_reference_type
        ``TARGET`` or ``ORGAN_AT_RISK``.
    description
        Dose Reference Description.
    referenced_roi_number
        ROI the reference applies to, if given.
    target_prescription_dose_gy
        Target Prescription Dose (Gy, whole course), if given.
    """

    number: int
    structure_type: str = ""
    dose_reference_type: str = ""
    description: str = ""
    referenced_roi_number: int | None = None
    target_prescription_dose_gy: float | None = None


@dataclass(frozen=True)
class Plan:
    """An RT Plan (one course of treatment).

    Attributes
    ----------
    sop_instance_uid
        The plan's SOP Instance UID.
    label, name
        RT Plan Label and RT Plan Name.
    date
        RT Plan Date as ``YYYY-MM-DD`` (or "" when absent).
    approval_status
        ``APPROVED``, ``UNAPPROVED`` or ``REJECTED`` ("" when absent).
    frame_of_reference_uid
        Frame of reference of the plan.
    referenced_structure_set_uid
        SOP Instance UID of the structure set the plan references ("" if none).
    fraction_groups, dose_references, beams
        The plan's fraction scheme, prescription and beams.
    path
        The file it was read from.
    is_ion
        True for an RT Ion Plan (protons, carbon ions: Ion Beam Sequence), whose beams'
        energies are in MeV per nucleon and whose meterset is not photon MU.
    """

    sop_instance_uid: str
    label: str = ""
    name: str = ""
    date: str = ""
    approval_status: str = ""
    frame_of_reference_uid: str = ""
    referenced_structure_set_uid: str = ""
    fraction_groups: tuple[FractionGroup, ...] = ()
    dose_references: tuple[DoseReference, ...] = ()
    beams: tuple[Beam, ...] = ()
    path: str = ""
    is_ion: bool = False

    @property
    def fractions_planned(self) -> int | None:
        """Total number of fractions planned over all fraction groups (None if unknown); the
        dose per fraction of the plan's dose divides by :attr:`dose_fractions`, not by this."""
        counts = [g.fractions_planned for g in self.fraction_groups]
        if not counts or any(c is None for c in counts):
            return None
        return int(sum(counts))  # type: ignore[arg-type]

    @property
    def dose_fractions(self) -> int | None:
        """The number of fractions in which every point of the plan's dose is delivered: the
        Number of Fractions Planned of its one fraction group; the dose per fraction of a point
        (BED, EQD2, the regime) is its dose divided by it.

        None when the plan does not state it, and for a plan of several fraction groups
        (:attr:`fractions_unknown_reason`): its dose is the sum of the groups', and how much of a
        point's dose each group gives (e.g. 25 fractions to a primary and a 3-fraction SBRT boost)
        is not known from the sum. Dividing by all the fractions together would spread a boost's
        8 Gy fractions over 28 and give an EQD2 far too low (a false PASS). A fraction group of
        setup beams only gives no dose and does not count (:attr:`dose_fraction_groups`)."""
        groups = self.dose_fraction_groups
        if len(groups) != 1:
            return None
        return groups[0].fractions_planned

    @property
    def dose_fraction_groups(self) -> tuple[FractionGroup, ...]:
        """The fraction groups that give the plan's dose: those that reference a treatment beam
        (all of them when none names one)."""
        treatment = {b.number for b in self.treatment_beams}
        giving = tuple(g for g in self.fraction_groups if treatment & set(g.beam_numbers))
        return giving or self.fraction_groups

    @property
    def fractions_unknown_reason(self) -> str:
        """Why :attr:`dose_fractions` is None, in words (``""`` when it is known)."""
        groups = self.dose_fraction_groups
        if len(groups) > 1:
            counts = " + ".join(f"{g.fractions_planned if g.fractions_planned else '?'}" for g in groups)
            return (f"the plan has {len(groups)} fraction groups ({counts} fx) whose doses are summed: "
                    "the dose per fraction of each point is not known")
        if not self.dose_fractions:
            return "the plan states no number of fractions planned"
        return ""

    @property
    def target_prescriptions(self) -> tuple[DoseReference, ...]:
        """Dose references of type TARGET that carry a prescription dose."""
        return tuple(
            r for r in self.dose_references
            if r.target_prescription_dose_gy is not None and r.dose_reference_type in ("TARGET", "")
        )

    @property
    def prescription_dose_gy(self) -> float | None:
        """The highest target prescription dose (Gy, whole course), or None if the
        plan states none."""
        doses = [r.target_prescription_dose_gy for r in self.target_prescriptions]
        return max(doses) if doses else None  # type: ignore[type-var]

    @property
    def treatment_beams(self) -> tuple[Beam, ...]:
        return tuple(b for b in self.beams if b.treatment_delivery_type in ("TREATMENT", ""))
