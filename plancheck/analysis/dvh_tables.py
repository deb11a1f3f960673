"""DVH tables for an export: every (selected) structure of every course, in a
chosen dose kind, with TG-263 metrics — the library behind ``plancheck dvh``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter

from plancheck.dvh.dvh import DVH
from plancheck.dvh.engine import grid_coverage_pct, sample_for_grid
from plancheck.dvh.metrics import DEFAULT_METRICS, MetricSpec, MetricValue, evaluate_metric, parse_metric
from plancheck.dvh.tables import CourseDVHs, StructureDVH
from plancheck.errors import UsageError
from plancheck.model.dose import dose_kind_label
from plancheck.model.export import Course, PlanExport
from plancheck.model.structures import Roi, StructureSet
from plancheck.parallel import map_in_threads
from plancheck.names.structures import StructureNameMatcher
from plancheck.names.targets import is_target_roi
from plancheck.radiobiology import DoseConversion, DoseKind, default_alpha_beta_table
from plancheck.radiobiology.course_dvh import composite_dvh, course_dvh

__all__ = ["DoseKindRequest", "select_rois", "dvh_tables"]

_BY_POINTS = attrgetter("number_of_points")
"""Work estimate of a structure (its contour points): large ones start first in the threads."""


@dataclass(frozen=True)
class DoseKindRequest:
    """Which dose kind to report and which α/β to use.

    Attributes
    ----------
    kind
        PHYSICAL, EQD2 or BED.
    alpha_beta_gy
        One α/β for every structure (overrides the table), or None to use the
        α/β table (``constraints/alpha_beta.yaml``) per structure.
    per_structure_gy
        α/β for named structures (exported ROI names), highest precedence.
    """

    kind: DoseKind = DoseKind.PHYSICAL
    alpha_beta_gy: float | None = None
    per_structure_gy: Mapping[str, float] = field(default_factory=dict)


def _not_computed(roi: Roi, specs: Sequence[MetricSpec], dose_kind: str) -> StructureDVH:
    """The row of a defective structure: no DVH, every metric undefined with its defects."""
    reason = roi.defect_text
    metrics = tuple(MetricValue(spec.text, None, spec.result_unit, reason=reason) for spec in specs)
    return StructureDVH(roi, None, metrics, dose_kind, not_computed=reason)


def select_rois(structure_set: StructureSet, names: Sequence[str] | None) -> list[Roi]:
    """The ROIs to report: all with contours, or those named (exact, then case-insensitive).

    Raises
    ------
    UsageError
        For a name that matches no ROI (the message lists the available names).
    """
    if not names:
        return list(structure_set.rois)
    chosen = []
    for name in names:
        exact = [r for r in structure_set.rois if r.name == name]
        loose = [r for r in structure_set.rois if r.name.casefold() == name.casefold()]
        match = exact or loose
        if len(match) != 1:
            available = ", ".join(sorted(r.name for r in structure_set.rois))
            problem = "matches several structures" if match else "is not in the structure set"
            raise UsageError(f"structure {name!r} {problem}; available: {available}")
        chosen.append(match[0])
    return chosen


def _conversion_for(roi: Roi, request: DoseKindRequest) -> tuple[DoseConversion, float | None, str]:
    if request.kind is DoseKind.PHYSICAL:
        return DoseConversion.physical(), None, ""
    if roi.name in request.per_structure_gy:
        ab, source = request.per_structure_gy[roi.name], "given for this structure on the command line"
    elif request.alpha_beta_gy is not None:
        ab, source = request.alpha_beta_gy, "given on the command line"
    else:
        # by the ROI's standard (TG-263) name, as the check does: "Cord" gets the spinal cord's α/β
        names = _standard_names()
        table = default_alpha_beta_table()
        standard = names.standard_name_of(roi.name) or roi.name
        choice = table.lookup(standard, is_target=is_target_roi(roi))
        ab, source = choice.alpha_beta_gy, choice.describe()
        expansion = names.expansion_of(roi.name) if choice.pattern is None else None
        if expansion is not None and expansion.organ is not None:
            # a PRV spelt as no table lists ("SC_PRV07"): its organ's α/β, not the default
            choice = table.lookup(expansion.organ, is_target=is_target_roi(roi))
            ab, source = choice.alpha_beta_gy, f"{roi.name} is a PRV of {expansion.organ}; {choice.describe()}"
        elif standard != roi.name:
            source = f"{roi.name} is {standard}; {source}"
    return DoseConversion(request.kind, ab), ab, source


@lru_cache(maxsize=1)
def _standard_names() -> StructureNameMatcher:
    return StructureNameMatcher({})


def _prescription_in_kind(course: Course, conversion: DoseConversion) -> float | None:
    return conversion.convert_total_dose(course.plan.prescription_dose_gy, course.plan.dose_fractions)


def _metrics(specs: Sequence[MetricSpec], dvh: DVH, rx: float | None) -> tuple[MetricValue, ...]:
    return tuple(evaluate_metric(s, dvh, rx) for s in specs)


def dvh_tables(
    export: PlanExport,
    *,
    structures: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    dose_kind: DoseKindRequest | None = None,
    engine: str = "plancheck",
    composite: bool = False,
) -> list[CourseDVHs]:
    """DVHs and metrics for every course of an export (or their composite).

    Parameters
    ----------
    export
        A linked export.
    structures
        ROI names to report (default: all).
    metrics
        TG-263 metric strings (default: :data:`DEFAULT_METRICS`).
    dose_kind
        Physical (default), EQD2 or BED with α/β per structure.
    engine
        ``plancheck`` or ``dicompyler`` (dicompyler-core's dvhcalc; physical
        dose of a single RTDOSE file only).
    composite
        Sum all courses (voxel-wise, each converted with its own fractions).

    Raises
    ------
    UsageError, MetricSpecError
        For an unknown structure or engine, an unparsable metric, or a request
        the engine cannot do.
    """
    specs = [parse_metric(m) for m in (metrics or DEFAULT_METRICS)]
    request = dose_kind or DoseKindRequest()
    if engine not in ("plancheck", "dicompyler"):
        raise UsageError(f"unknown engine {engine!r}: use 'plancheck' or 'dicompyler'")
    if engine == "dicompyler" and (request.kind is not DoseKind.PHYSICAL or composite):
        raise UsageError("the dicompyler engine computes physical DVHs of single courses only")
    if composite:
        return [_composite_table(export, structures, specs, request)]
    return [_course_table(course, structures, specs, request, engine) for course in export.courses]


def _course_table(course: Course, names, specs, request: DoseKindRequest, engine: str) -> CourseDVHs:
    def row(roi: Roi) -> StructureDVH:
        conversion, ab, ab_source = _conversion_for(roi, request)
        if roi.defects:
            return _not_computed(roi, specs, dose_kind_label(conversion.label, course.dose.dose_type))
        if engine == "dicompyler":
            dvh = _dicompyler(roi, course)
        else:
            dvh = course_dvh(roi, course, conversion, sampling=sample_for_grid(roi, course.dose))
        rx = _prescription_in_kind(course, conversion)
        return StructureDVH(roi, dvh, _metrics(specs, dvh, rx), dose_kind_label(conversion.label, course.dose.dose_type),
                            ab, ab_source, rx)

    rois = select_rois(course.structure_set, names)
    # dicompyler-core's pure-Python loops hold the GIL: threads would only add overhead
    rows = map_in_threads(row, rois, threads=1 if engine == "dicompyler" else None, cost=_BY_POINTS)
    return CourseDVHs(
        label=course.label,
        sop_instance_uid=course.plan.sop_instance_uid,
        fractions=course.plan.fractions_planned,
        prescription_gy=course.plan.prescription_dose_gy,
        dose_summary=course.dose_summary,
        structures=tuple(rows),
        engine="dicompyler-core" if engine == "dicompyler" else "plancheck",
        volume_model=("dicompyler-core's own (dose voxel centres inside the contours, no end caps)"
                      if engine == "dicompyler" else course.structure_set.volume_model_description),
        dose_type=course.dose.dose_type or "PHYSICAL",
    )


def _dicompyler(roi: Roi, course: Course) -> DVH:
    from plancheck.dvh.dicompyler_adapter import dicompyler_dvh

    sources = course.dose.sources
    if len(sources) != 1:
        raise UsageError(f"the dicompyler engine needs a single RTDOSE file; plan {course.label!r} has {len(sources)}")
    fraction = grid_coverage_pct(roi, course.dose) / 100.0 if not roi.is_empty else 1.0
    return dicompyler_dvh(course.structure_set.path, sources[0].path, roi.number, name=roi.name, covered_fraction=fraction)


def _composite_table(export: PlanExport, names, specs, request: DoseKindRequest) -> CourseDVHs:
    courses = list(export.courses)
    structure_set = courses[0].structure_set
    weighted = {c.dose.is_rbe_weighted for c in courses}
    if len(weighted) > 1:
        kinds = ", ".join(f"{c.label} ({'RBE-weighted' if c.dose.is_rbe_weighted else 'physical'})" for c in courses)
        raise UsageError(f"--composite: the courses mix RBE-weighted (Dose Type EFFECTIVE) and physical doses "
                         f"({kinds}); their sum has no meaning")
    dose_type = courses[0].dose.dose_type or "PHYSICAL"

    def row(roi: Roi) -> StructureDVH:
        conversion, ab, ab_source = _conversion_for(roi, request)
        kind = dose_kind_label(conversion.label, dose_type)
        if roi.defects:
            return _not_computed(roi, specs, kind)
        dvh, _ = composite_dvh(roi, courses, conversion)
        return StructureDVH(roi, dvh, _metrics(specs, dvh, None), kind, ab, ab_source, None)

    rows = map_in_threads(row, select_rois(structure_set, names), cost=_BY_POINTS)
    parts = ", ".join(f"{c.label} ({c.plan.fractions_planned} fx)" for c in courses)
    kind = request.kind.value
    summary = f"voxel-wise {kind} sum of {parts}" + ("" if request.kind is DoseKind.PHYSICAL else "; α/β per structure (Dose kind column)")
    summary += f"; each structure sampled at the same points for all {len(courses)} grids"
    if weighted == {True}:
        summary += "; Dose Type EFFECTIVE: RBE-weighted dose, Gy(RBE)"
    return CourseDVHs(
        label="composite",
        sop_instance_uid="",
        fractions=None,  # several regimens: composite_of and dose_summary say which
        prescription_gy=None,
        dose_summary=summary,
        structures=tuple(rows),
        engine="plancheck",
        composite_of=tuple(c.label for c in courses),
        volume_model=structure_set.volume_model_description,
        dose_type=dose_type,
    )
