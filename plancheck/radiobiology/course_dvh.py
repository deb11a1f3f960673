"""DVHs of a course's structures in a chosen dose kind, and composites of courses.

Physical dose is converted voxel by voxel — at each DVH sample point, with the
point's own total dose and the course's number of fractions — *before* it is
histogrammed. Converting a physical DVH with one dose per fraction would be
wrong wherever the dose is not uniform (Bentzen et al. 2012).

Composite of several courses (same frame of reference): each course's dose is
interpolated at the structure's sample points (the common grid: a lattice no
coarser than the finest course grid, split at every course's dose planes),
converted to EQD2/BED with that course's own number of fractions, and summed.
A point that any course's grid does not cover is not covered in the composite,
so a structure partly outside one course's grid gets undefined metrics instead
of a silently partial sum.

References
----------
Bentzen SM, Dörr W, Gahbauer R, et al. Bioeffect modeling and equieffective
dose concepts in radiation oncology. Radiother Oncol 2012;105:266-268.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


from plancheck.dvh.dvh import DVH
from plancheck.dvh.engine import PointDoseSource, dvh_from_sources, dvhs_from_sources, sample_for_grid, sample_for_grids
from plancheck.dvh.sampling import RoiSampling
from plancheck.errors import UsageError
from plancheck.model.export import Course
from plancheck.model.structures import Roi
from plancheck.radiobiology.conversion import DoseConversion, DoseKind

__all__ = ["course_dvh", "composite_dvh", "composite_dvhs", "CompositeDescription"]


def _fractions(course: Course) -> int:
    """The number of fractions each point's dose is delivered in (:attr:`Plan.dose_fractions`)."""
    n = course.plan.dose_fractions
    if not n:
        raise UsageError(
            f"plan {course.label!r} {course.plan.fractions_unknown_reason.removeprefix('the plan ')}; "
            "EQD2/BED cannot be computed for it"
        )
    return int(n)


def _source(course: Course, conversion: DoseConversion) -> PointDoseSource:
    if conversion.kind is DoseKind.PHYSICAL:
        return PointDoseSource(course.dose)
    n = _fractions(course)
    return PointDoseSource(course.dose, lambda d, c=conversion, n=n: c.apply(d, n),
                           lambda d, c=conversion, n=n: c.derivative(d, n))


def course_dvh(
    roi: Roi,
    course: Course,
    conversion: DoseConversion | None = None,
    *,
    sampling: RoiSampling | None = None,
) -> DVH:
    """DVH of one structure for one course, physical or converted voxel-wise.

    Raises
    ------
    UsageError
        If a conversion is asked for and the plan states no number of fractions or has several
        fraction groups (:attr:`plancheck.model.Plan.dose_fractions`).
    """
    conversion = conversion or DoseConversion.physical()
    sampling = sampling or sample_for_grid(roi, course.dose)
    return dvh_from_sources(roi, sampling, [_source(course, conversion)], dose_kind=conversion.label)


@dataclass(frozen=True)
class CompositeDescription:
    """What a composite is made of, for reports."""

    course_labels: tuple[str, ...]
    fractions: tuple[int | None, ...]
    dose_kind: str
    grid: str

    def describe(self) -> str:
        parts = ", ".join(f"{label} ({n} fx)" for label, n in zip(self.course_labels, self.fractions))
        return f"{self.dose_kind} sum of {parts}; {self.grid}"


def composite_dvh(
    roi: Roi,
    courses: Sequence[Course],
    conversion: DoseConversion,
    *,
    sampling: RoiSampling | None = None,
) -> tuple[DVH, CompositeDescription]:
    """DVH of the voxel-wise sum of several courses' doses.

    Parameters
    ----------
    roi
        The structure (from the shared structure set / frame of reference).
    courses
        The courses to sum; all must share one frame of reference.
    conversion
        EQD2 or BED with the structure's α/β (each course converted with its
        own number of fractions before summing), or physical (a plain sum of
        physical dose — meaningful only for courses of similar fractionation).

    Returns
    -------
    DVH, CompositeDescription
    """
    return composite_dvhs(roi, courses, [conversion], sampling=sampling)[0]


def composite_dvhs(
    roi: Roi,
    courses: Sequence[Course],
    conversions: Sequence[DoseConversion],
    *,
    sampling: RoiSampling | None = None,
) -> list[tuple[DVH, CompositeDescription]]:
    """:func:`composite_dvh` in several dose kinds at once (e.g. the physical sum and the EQD2
    composite): the same sample points, each course's dose interpolated at them once.

    Raises
    ------
    UsageError
        No course, courses in different frames of reference, or a conversion asked for a
        course that states no number of fractions or has several fraction groups.
    """
    if not courses:
        raise UsageError("a composite needs at least one course")
    frames = {c.dose.frame_of_reference_uid for c in courses}
    if len(frames) > 1:
        listing = "; ".join(f"{c.label}: {c.dose.frame_of_reference_uid}" for c in courses)
        raise UsageError(f"courses with different frames of reference cannot be summed ({listing})")
    grids = [c.dose for c in courses]
    sampling = sampling or sample_for_grids(roi, grids)
    descriptions = [CompositeDescription(
        course_labels=tuple(c.label for c in courses),
        fractions=tuple(c.plan.dose_fractions for c in courses),
        dose_kind=conversion.label,
        grid=f"sampled at {sampling.step_mm:.2g} mm in-plane, split at the dose planes of all {len(courses)} grids",
    ) for conversion in conversions]
    dvhs = dvhs_from_sources(roi, sampling, [[_source(c, conversion) for c in courses] for conversion in conversions],
                             dose_kinds=[c.label for c in conversions], notes=[(d.describe(),) for d in descriptions])
    return list(zip(dvhs, descriptions))
