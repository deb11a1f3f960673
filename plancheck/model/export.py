"""What one export holds once read and linked: patient, structure sets, courses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from plancheck.model.dose import DoseGrid
from plancheck.model.plan import Plan
from plancheck.model.structures import StructureSet
from plancheck.model.volume_model import VolumeModel

if TYPE_CHECKING:
    from plancheck.model.course_selection import LeftOutPlan

__all__ = ["ImageSeries", "SkippedFile", "Course", "PlanExport", "PlanWithoutDose"]


@dataclass(frozen=True)
class ImageSeries:
    """A CT/MR series (only what plancheck needs: identity and geometry summary)."""

    series_instance_uid: str
    modality: str
    frame_of_reference_uid: str
    number_of_images: int
    slice_thickness_mm: float | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file found in the input that plancheck did not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True, eq=False)
class Course:
    """One course of treatment: a plan, its structure set and its dose.

    Attributes
    ----------
    plan
        The RT Plan.
    structure_set
        The structure set the plan references.
    dose
        The plan's dose in Gy (several RTDOSE files already summed; see
        ``dose.sources`` and ``dose_summary``).
    dose_summary
        One line saying how the dose was obtained, e.g. ``"PLAN dose used as is"``
        or ``"3 BEAM doses summed"``.
    """

    plan: Plan
    structure_set: StructureSet
    dose: DoseGrid
    dose_summary: str = ""

    @property
    def label(self) -> str:
        return self.plan.label or self.plan.name or self.plan.sop_instance_uid


@dataclass(frozen=True, eq=False)
class PlanWithoutDose:
    """A plan read without a usable dose (only when the caller did not require one, e.g.
    ``plancheck fractionation``): its prescription and fractions are known, its DVHs are not.

    Attributes
    ----------
    structure_set
        The structure set it references, if present.
    reason
        Why it has no dose (or no structure set).
    """

    plan: Plan
    structure_set: StructureSet | None
    reason: str

    @property
    def label(self) -> str:
        return self.plan.label or self.plan.name or self.plan.sop_instance_uid


@dataclass(frozen=True, eq=False)
class PlanExport:
    """A linked export: one patient, one frame of reference, one or more courses.

    Attributes
    ----------
    patient_id, patient_name
        For report headers only; never logged.
    frame_of_reference_uid
        The shared frame of reference.
    structure_sets
        All structure sets found.
    courses
        One per RT Plan, each with its structure set and (summed) dose.
    images
        CT/MR series found.
    skipped
        Files that were not used, with the reason.
    warnings
        Conformance remarks that did not stop the reading (e.g. an empty ROI); also every
        plan left out and every note on the choice of courses.
    left_out
        Plans of the export that are not courses of this check (not selected, alternative
        plans, rejected alternatives), each with the reason
        (:class:`plancheck.model.course_selection.LeftOutPlan`).
    course_notes
        What the user should know about how the courses were chosen.
    plans_without_dose
        Plans read without a usable dose (only when the reader was told not to require
        one); never courses.
    """

    patient_id: str
    patient_name: str
    frame_of_reference_uid: str
    structure_sets: tuple[StructureSet, ...]
    courses: tuple[Course, ...]
    images: tuple[ImageSeries, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    left_out: tuple[LeftOutPlan, ...] = ()
    course_notes: tuple[str, ...] = ()
    plans_without_dose: tuple[PlanWithoutDose, ...] = ()

    @property
    def volume_model_descriptions(self) -> tuple[str, ...]:
        """The DVH volume model of each structure set the courses use (all structure sets
        when there is no course), with why it was chosen; one entry per distinct text."""
        sets = [c.structure_set for c in self.courses] or list(self.structure_sets)
        return tuple(dict.fromkeys(s.volume_model_description for s in sets))

    def with_volume_model(self, model: VolumeModel, source: str = "--volume-model") -> PlanExport:
        """A copy whose structure sets (also those of the courses) carry ``model``.

        Parameters
        ----------
        model
            The volume model every DVH of the copy uses (see :mod:`plancheck.model.volume_model`).
        source
            Why, for the reports (default ``"--volume-model"``).
        """
        mapped = {id(s): s.with_volume_model(model, source) for s in self.structure_sets}
        for course in self.courses:
            if id(course.structure_set) not in mapped:
                mapped[id(course.structure_set)] = course.structure_set.with_volume_model(model, source)
        courses = tuple(replace(c, structure_set=mapped[id(c.structure_set)]) for c in self.courses)
        return replace(self, structure_sets=tuple(mapped[id(s)] for s in self.structure_sets), courses=courses)
