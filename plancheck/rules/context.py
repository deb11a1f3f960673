"""Everything an evaluator needs, computed once per check and cached.

* structures: a protocol's standard name → the exported ROI (TG-263 names,
  synonyms, the protocol's and the user's mapping), or why not;
* courses: fractionation summary (prescription, fractions, regime) per course;
* targets: GTV/CTV/PTV grouped per lesion (primary or metastasis), each group
  with the course that treats it — from the case file where it names targets,
  else from naming conventions and the plans' dose references;
* DVHs: per (ROI, courses, dose kind, α/β), single course or voxel-wise composite;
* isodose volumes: per (ROI, course, dose), from a fine sampling of the ROI's part
  near the isodose (PIV of the conformity indices).
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from plancheck.dvh.clip import local_isodose_volume
from plancheck.dvh.dvh import DVH
from plancheck.dvh.engine import grid_uncovered_volume_cc, sample_for_grid, sample_for_grids
from plancheck.dvh.geometry import OutsideVolume, volume_fraction_below_x, volume_outside
from plancheck.dvh.metrics import MetricValue, evaluate_metric
from plancheck.dvh.sampling import RoiSampling
from plancheck.model.case import Case, CourseDeclaration
from plancheck.model.export import Course, PlanExport
from plancheck.model.structures import Roi
from plancheck.parallel import OnceCache
from plancheck.protocol.loader import Protocol
from plancheck.names.structures import MatchStatus, NameMatch, PrvName, StructureNameMatcher, normalize_name, prv_of
from plancheck.names.targets import TargetName, is_target_roi, parse_target_name
from plancheck.radiobiology import (
    AlphaBetaTable,
    DoseConversion,
    FractionationRegime,
    FractionationSummary,
    default_alpha_beta_table,
    summarize_fractionation,
)
from plancheck.radiobiology.course_dvh import composite_dvhs, course_dvh

__all__ = ["CheckContext", "StructureLookup", "TargetGroup", "CourseInfo", "ONE_SIDE_FRACTION", "structure_names",
           "unknown_mapping_keys"]

log = logging.getLogger(__name__)

# consensus §5.2: "a single 8 Gy palliative fraction is palliative, not SBRT, when the case file says so"
PALLIATIVE_SINGLE_FRACTION_GY = 8.0
# a both-sides structure (Lungs, Kidneys) with less than this fraction of its volume on one side of the
# body's midline is one organ of the pair: of both lungs, each side holds one lung (right ~55 %, left
# ~45 % of the volume); a single lung crosses the midline by a few % at most (anterior junction line)
ONE_SIDE_FRACTION = 0.10



def _refers_to(dvh_key: tuple, roi_numbers: set[int]) -> bool:
    """Whether a DVH cache key (``(roi number, plans, conversion)``, or ``("together", key, ...)``)
    is about one of ``roi_numbers``."""
    if dvh_key and dvh_key[0] == "together":
        return any(_refers_to(k, roi_numbers) for k in dvh_key[1:])
    return bool(dvh_key) and dvh_key[0] in roi_numbers


def _geometry_key(grid) -> tuple:
    """Grids with the same geometry (every axis position, to 0.1 µm) share one sampling of a structure."""
    return tuple(np.round(np.asarray(a, dtype=float), 4).tobytes() for a in (grid.x_mm, grid.y_mm, grid.z_mm))


@dataclass(frozen=True)
class StructureLookup:
    """A protocol structure found (``roi``) or not (``roi is None``, ``reason`` says why).
    ``defective`` is the exported ROI that matched but cannot be measured (``Roi.defects``):
    a caller must not fall back to another structure in its place."""

    standard_name: str
    roi: Roi | None
    match: NameMatch | None
    reason: str = ""
    defective: Roi | None = None


def structure_names(spec) -> list[str]:
    """Every structure name a rule field names: one name, each name of a list (a rule measures the
    first contoured), or each member of a combination and what it subtracts; ``[]`` for others."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, list):
        return [n for n in spec if isinstance(n, str)]
    parts = getattr(spec, "parts", None)
    if parts is None:
        return []
    return [n for part in parts for n in part] + list(getattr(spec, "minus", ()))


# rule fields that name structures (dvh/geometry ``structure``, conformity ``body``, integrity
# ``structures``/``only_if_structures``), and the structures looked up by name whatever the rules
STRUCTURE_FIELDS = ("structure", "body", "structures", "only_if_structures")
ALWAYS_LOOKED_UP = ("External",)


def unknown_mapping_keys(protocol: Protocol, mapping: Mapping[str, str]) -> list[str]:
    """Keys of a per-run mapping that name no structure the protocol's rules look up (``SpinalCord_PRV5mm``
    for ``SpinalCord_PRV05``): such a mapping would silently change nothing. Keys are compared as the
    matcher compares them (:func:`plancheck.names.structures.normalize_name`, TG-263 spelling)."""
    matcher = StructureNameMatcher()
    wanted = {normalize_name(n) for n in ALWAYS_LOOKED_UP}
    for resolved in protocol.rules:
        for field_name in STRUCTURE_FIELDS:
            for name in structure_names(getattr(resolved.rule, field_name, None)):
                wanted.add(normalize_name(matcher.canonical_name(name) or name))
    return [k for k in mapping if normalize_name(matcher.canonical_name(k) or k) not in wanted]


@dataclass(frozen=True)
class CourseInfo:
    """A course, its fractionation, and whether SBRT limits apply to it.

    Attributes
    ----------
    course
        The course (plan and dose).
    prescription_gy, fractions
        The plan's prescription and the number of fractions its dose is delivered in (None when
        the plan does not state them, and for a plan of several fraction groups:
        :attr:`plancheck.model.Plan.dose_fractions`).
    summary
        Dose per fraction, BED₁₀, EQD2₁₀ and the regime by numbers (None without prescription
        or fractions).
    declaration
        The case file's declaration of this course (technique, intent), if any.
    """

    course: Course
    prescription_gy: float | None
    fractions: int | None
    summary: FractionationSummary | None
    declaration: CourseDeclaration | None = None

    @property
    def label(self) -> str:
        return self.course.label

    @property
    def regime(self) -> FractionationRegime | None:
        """The regime by numbers (None when the plan does not state them)."""
        return self.summary.regime if self.summary else None

    @property
    def is_sbrt(self) -> bool | None:
        """Whether the SBRT limits apply (consensus §5.2, docs/clinical-basis.md "Which courses
        are SBRT"): to every course of ≥ 4 Gy per fraction in ≤ 12 fractions and to any course
        declared ``sbrt``; the one exemption is a single 8 Gy fraction declared palliative. A
        declaration (``conventional``, ``palliative``) never removes the SBRT limits from a
        course whose numbers call for them (:attr:`declaration_conflict` says so). Without
        numbers: a course declared ``sbrt`` or ``conventional`` is placed by its declaration;
        otherwise None (cannot be placed)."""
        d = self.declaration
        if d is not None and d.technique == "sbrt":
            return True
        if self.summary is None:
            return False if d is not None and d.technique == "conventional" else None
        if self.summary.regime is not FractionationRegime.SBRT:
            return False
        return not self.is_palliative_single_fraction

    @property
    def is_palliative_single_fraction(self) -> bool:
        """A single 8 Gy fraction that the case file declares palliative: "palliative, not SBRT,
        when the case file says so" (consensus §5.2) — the only exemption from the SBRT limits,
        as narrow as written (one fraction of 8 Gy, within 0.01 Gy)."""
        d, s = self.declaration, self.summary
        return (d is not None and d.intent == "palliative" and s is not None and s.fractions == 1
                and abs(s.dose_per_fraction_gy - PALLIATIVE_SINGLE_FRACTION_GY) <= 0.01)

    @property
    def declaration_conflict(self) -> str:
        """Why the case file's declaration of this course contradicts its numbers (``""`` when
        it does not): declared ``conventional`` or ``palliative`` while the numbers make it SBRT
        (and it is not the single 8 Gy palliative fraction). The SBRT limits are graded anyway."""
        d, s = self.declaration, self.summary
        if d is None or s is None or d.technique == "sbrt" or s.regime is not FractionationRegime.SBRT:
            return ""
        if self.is_palliative_single_fraction:
            return ""
        declared = ", ".join(x for x in (d.technique if d.technique == "conventional" else None,
                                         d.intent if d.intent == "palliative" else None) if x)
        if not declared:
            return ""
        return (f"{self.label} is declared {declared} in the case file, but {s.prescription_gy:g} Gy / {s.fractions} fx "
                f"({s.dose_per_fraction_gy:.4g} Gy/fx) is SBRT by its numbers (≥ 4 Gy per fraction in ≤ 12 fractions; "
                f"only a single 8 Gy palliative fraction is exempt): the SBRT limits are graded")

    @property
    def is_conventional(self) -> bool:
        """One conventionally fractionated course (1.8–2.2 Gy per fraction) not declared SBRT:
        limits derived from conventional plans are graded on its physical dose alone."""
        return self.is_sbrt is False and self.regime is FractionationRegime.CONVENTIONAL

    @property
    def placement(self) -> str:
        """How the course was placed, in words (for reports)."""
        d = self.declaration
        s = self.summary
        numbers = s.describe() if s else (self.course.plan.fractions_unknown_reason if self.prescription_gy
                                          else "prescription or number of fractions not stated in the plan")
        if d is not None and (d.technique or d.intent):
            declared = ", ".join(x for x in (d.technique, d.intent) if x)
            conflict = " (the declaration contradicts the numbers: SBRT limits graded)" if self.declaration_conflict else ""
            return f"{self.label}: declared {declared} in the case file; {numbers}{conflict}"
        if s is None:
            return f"{self.label}: {numbers}, so its regime cannot be placed"
        return f"{self.label}: {numbers}"


@dataclass(frozen=True)
class TargetGroup:
    """The target volumes of one lesion and the course that treats it.

    Attributes
    ----------
    role
        ``primary``, ``metastasis``, ``nodal`` or ``unknown``.
    key
        Grouping key (role, site, index) — members share it.
    volumes
        ``{"GTV": Roi, "CTV": Roi, "PTV": Roi, ...}`` as present.
    course
        The course treating it (None when none could be identified).
    how
        How the course was identified.
    organ, site
        From the case file's lesion where it names this target, else from the name.
    defective
        Target volumes of the lesion that were read but cannot be measured
        (``Roi.defects``), by kind; they are not in ``volumes``.
    left_out_plan
        When no course treats it but a plan left out of this check does (``--plan``, a rejected
        alternative): that plan's label; its regime-specific target rules are that plan's
        check's, not this one's. "" otherwise.
    """

    role: str
    key: tuple
    volumes: Mapping[str, Roi]
    course: CourseInfo | None
    how: str
    organ: str | None = None
    site: str | None = None
    defective: Mapping[str, Roi] = field(default_factory=dict)
    left_out_plan: str = ""

    @property
    def ptv(self) -> Roi | None:
        return self.volumes.get("PTV")

    @property
    def label(self) -> str:
        roi = self.ptv or next(iter(self.volumes.values()), None) or next(iter(self.defective.values()), None)
        return roi.name if roi else "?"

    def missing(self, kind: str) -> str:
        """Why the group has no measurable ``kind`` volume (its defects, or that it has none)."""
        roi = self.defective.get(kind)
        return roi.defect_text if roi is not None else f"target {self.label} has no {kind}"


@dataclass
class CheckContext:
    """Shared, cached state of one check run.

    Parameters
    ----------
    export
        The linked export.
    protocol
        The resolved protocol.
    case
        Clinical context, or None when no case file was given or found.
    case_source
        Where the case came from (for reports).
    user_mapping
        ``{standard_name: roi_name}`` from the command line (wins over the protocol's).
    """

    export: PlanExport
    protocol: Protocol
    case: Case | None = None
    case_source: str | None = None
    user_mapping: Mapping[str, str] = field(default_factory=dict)
    # computed once per key, also when rules are evaluated in threads (see plancheck.parallel)
    _dvh_cache: OnceCache = field(default_factory=OnceCache, repr=False)
    _sampling_cache: OnceCache = field(default_factory=OnceCache, repr=False)
    _isodose_cache: OnceCache = field(default_factory=OnceCache, repr=False)
    _outside_cache: OnceCache = field(default_factory=OnceCache, repr=False)
    _combined: dict[tuple, Roi] = field(default_factory=dict, repr=False)
    _combined_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _lookups: dict[str, StructureLookup] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ structures
    @cached_property
    def structure_set(self):
        return self.export.courses[0].structure_set if self.export.courses else self.export.structure_sets[0]

    @cached_property
    def matcher(self) -> StructureNameMatcher:
        mapping = dict(self.protocol.structure_mapping)
        mapping.update(self.user_mapping)
        return StructureNameMatcher(mapping)

    @cached_property
    def roi_names(self) -> list[str]:
        return [r.name for r in self.structure_set.rois]

    def structure(self, standard_name: str) -> StructureLookup:
        """Find a protocol structure in the structure set (once per name: the names, the
        mapping and the structure set do not change during a check)."""
        found = self._lookups.get(standard_name)
        if found is None:
            found = self._lookups[standard_name] = self._look_up(standard_name)
        return found

    def _look_up(self, standard_name: str) -> StructureLookup:
        match = self.matcher.match(standard_name, self.roi_names)
        if match.status is not MatchStatus.MATCHED or match.roi_name is None:
            return StructureLookup(standard_name, None, match, match.reason)
        roi = self.structure_set.roi_by_name(match.roi_name)
        if roi.defects:
            return StructureLookup(standard_name, None, match, roi.defect_text, defective=roi)
        if roi.is_empty:
            return StructureLookup(standard_name, None, match, f"structure {roi.name!r} has no contours")
        one_side = self._one_side_only(standard_name, roi, match)
        if one_side:
            return StructureLookup(standard_name, None, match, one_side, defective=roi)
        return StructureLookup(standard_name, roi, match)

    @cached_property
    def _body_midline_x_mm(self) -> float | None:
        """x (mm) of the body's mid-sagittal plane: the middle of the External's (or Body's) x extent;
        ``None`` without a measurable body contour."""
        body = self.structure("External").roi
        if body is None:
            return None
        xs = np.concatenate([c.points_mm[:, 0] for c in body.contours if len(c.points_mm)])
        return float((xs.min() + xs.max()) / 2.0) if len(xs) else None

    def _one_side_only(self, standard_name: str, roi: Roi, match: NameMatch) -> str:
        """Why a both-sides structure (``Lungs``, ``Kidneys``) cannot be measured: its ROI lies on one
        side of the body's midline (less than :data:`ONE_SIDE_FRACTION` of its volume on the other),
        so it is one lung, not both; ``""`` when it is not such a structure, it has both sides, there
        is no body contour, or the user's mapping named the ROI (a single remaining lung)."""
        sides = self.matcher.paired_sides(standard_name)
        if sides is None or match.how.startswith("user mapping"):
            return ""
        mid = self._body_midline_x_mm
        if mid is None:
            return ""
        below = volume_fraction_below_x(roi, mid)
        other = min(below, 1.0 - below)
        if other >= ONE_SIDE_FRACTION:
            return ""
        return (f"structure {roi.name!r} lies on one side of the body's midline ({100 * other:.1f} % of its "
                f"volume on the other side): it is one of {sides[0]}, {sides[1]}, not both, and the limits on "
                f"{match.standard_name} are for both together; contour both, or, if one is all there is "
                f"(e.g. after a pneumonectomy), say so with a mapping (--map {match.standard_name}={roi.name})")

    @property
    def declared_courses_left_out(self) -> tuple[str, ...]:
        """Plans the case file declares as courses of the treatment (``courses:``) that this check
        leaves out (e.g. by ``--plan``), by label: a limit on the whole treatment (``course:
        composite``) is not graded on part of it."""
        if self.case is None or not self.case.courses:
            return ()
        declared = {c.plan for c in self.case.courses}
        return tuple(p.shown for p in self.export.left_out if p.label in declared or p.uid in declared)

    @property
    def courses_outside(self) -> tuple[str, ...]:
        """The patient's plans outside this treatment (another frame of reference: another
        image set), by label, unless the case file declares the courses: their doses cannot
        be added, so a limit on the whole treatment (``course: composite``) is not graded."""
        if self.case is not None and self.case.courses:
            return ()
        return tuple(p.shown for p in self.export.left_out if p.outside)

    def other_prvs(self, standard_name: str) -> list[tuple[Roi, PrvName]]:
        """Contoured ROIs (or ROIs read but not measurable) that are a PRV of the same organ as
        the PRV ``standard_name`` and not that PRV (``SpinalCord_PRV03`` or ``Cord_PRV`` for
        ``SpinalCord_PRV05``): a rule that lists the PRV must not measure the bare organ in its
        place (:meth:`StructureNameMatcher.other_prvs`)."""
        out = []
        for name, prv in self.matcher.other_prvs(standard_name, self.roi_names):
            roi = self.structure_set.roi_by_name(name)
            if roi.defects or not roi.is_empty:
                out.append((roi, prv))
        return out

    def roi_named(self, name: str) -> Roi | None:
        """An exported ROI by its exact name (case files and mappings name ROIs directly),
        or a combined structure a rule made (:meth:`combined_roi`)."""
        for roi in self.structure_set.rois:
            if roi.name == name:
                return roi
        return next((r for r in self._combined.values() if r.name == name), None)

    def combined_roi(self, name: str, union: Sequence[Roi], minus: Sequence[Roi] = ()) -> Roi:
        """One ROI made of ``union`` minus ``minus`` (:func:`plancheck.dvh.combine.combine_rois`),
        built once per combination; its ROI number is negative (never an exported one)."""
        key = (tuple(r.number for r in union), tuple(r.number for r in minus))
        with self._combined_lock:
            if key not in self._combined:
                from plancheck.dvh.combine import combine_rois

                self._combined[key] = combine_rois(name, self._combined_number(key), union, minus)
            return self._combined[key]

    def _combined_number(self, key: tuple) -> int:
        """A combination's ROI number: negative, from the combination itself (not from the
        order rules ask for it), so that processes forked from one check number it alike."""
        number = -1 - (zlib.crc32(repr(key).encode()) & 0x7FFFFFFF)
        used = {r.number for r in self._combined.values()}
        while number in used:  # another combination has it (crc32 collision): the next free one
            number -= 1
        return number

    # ------------------------------------------------------------------ courses
    @cached_property
    def courses(self) -> tuple[CourseInfo, ...]:
        out = []
        for c in self.export.courses:
            rx, n = c.plan.prescription_dose_gy, c.plan.dose_fractions  # None for several fraction groups
            summary = summarize_fractionation(rx, n) if rx and n else None
            declaration = self.case.course_declaration(c.label, c.plan.sop_instance_uid) if self.case else None
            out.append(CourseInfo(c, rx, n, summary, declaration))
        return tuple(out)

    def courses_matching(self, selector: str) -> tuple[list[CourseInfo], list[CourseInfo]]:
        """Courses for a rule's ``course`` selector — ``all``, ``sbrt`` (SBRT limits apply),
        ``conventional`` (placed, not SBRT) or a course label — and, for ``sbrt`` and
        ``conventional``, the courses that cannot be placed (their rules are NOT EVALUATED,
        never assumed conventional)."""
        if selector == "all":
            return list(self.courses), []
        if selector in ("sbrt", "conventional"):
            wanted = selector == "sbrt"
            return ([c for c in self.courses if c.is_sbrt is wanted],
                    [c for c in self.courses if c.is_sbrt is None])
        return [c for c in self.courses if c.label == selector], []

    # ------------------------------------------------------------------ α/β
    @cached_property
    def alpha_beta_table(self) -> AlphaBetaTable:
        return default_alpha_beta_table()

    def alpha_beta(self, standard_name: str, roi: Roi, explicit_gy: float | None = None) -> tuple[float, str]:
        """α/β (Gy) for a structure and where it came from: the rule's own value,
        the protocol's ``alpha_beta_gy`` (for a PRV, the protocol's value of its organ:
        ``SpinalCord_PRV05`` takes ``SpinalCord``'s), else the α/β table."""
        if explicit_gy is not None:
            return explicit_gy, "set by the rule"
        if standard_name in self.protocol.alpha_beta_gy:
            return self.protocol.alpha_beta_gy[standard_name], f"set by protocol {self.protocol.id}"
        prv = prv_of(standard_name) if standard_name else None
        if prv is not None and prv.organ in self.protocol.alpha_beta_gy:
            return (self.protocol.alpha_beta_gy[prv.organ],
                    f"set by protocol {self.protocol.id} for {prv.organ}, the organ of the PRV {standard_name}")
        choice = self.alpha_beta_table.lookup(standard_name or roi.name, is_target=is_target_roi(roi))
        return choice.alpha_beta_gy, choice.describe()

    # ------------------------------------------------------------------ processes
    def prepare_shared(self) -> None:
        """Compute what nearly every rule uses (the name matcher, the courses, the target
        groups) now: before the rules are split among forked processes, so that each does not
        compute it again (:func:`plancheck.rules.runner.run_check`). An error here is left to
        the rules, which report it as they would have."""
        for name in ("matcher", "courses", "targets"):
            try:
                getattr(self, name)
            except Exception:  # noqa: BLE001 - raised again, and reported, by the rules that need it
                log.debug("preparing %s failed; the rules will report it", name, exc_info=True)

    def contour_points(self, standard_name: str) -> int:
        """Contour points of the structure a protocol name finds (0 when none): a measure of
        the work its DVHs take."""
        roi = self.structure(standard_name).roi
        return roi.number_of_points if roi is not None else 0

    def mark(self) -> tuple[set, set]:
        """What has been computed so far, for :meth:`computed_since`."""
        with self._combined_lock:
            return self._dvh_cache.keys(), set(self._combined)

    def computed_since(self, mark: tuple[set, set]) -> tuple[dict, dict]:
        """What the reports need of what was computed since ``mark``: the DVHs and the combined
        structures (picklable: sent back from a forked process for the reports' plots)."""
        with self._combined_lock:
            combined = {k: r for k, r in self._combined.items() if k not in mark[1]}
        return self._dvh_cache.items_since(mark[0]), combined

    def adopt(self, computed: tuple[dict, dict]) -> None:
        """Take what another process computed (its :meth:`computed_since`); values already
        here are kept. A combined structure whose number means another combination here (and
        its DVHs) is left out: the reports would compute it again if they need it."""
        dvhs, combined = computed
        refused: set[int] = set()
        with self._combined_lock:
            numbers = {r.number: k for k, r in self._combined.items()}
            for key, roi in combined.items():
                mine = self._combined.get(key)
                if mine is None and numbers.get(roi.number, key) == key:
                    self._combined[key] = roi
                    numbers[roi.number] = key
                elif mine is None or mine.number != roi.number:
                    refused.add(roi.number)
        self._dvh_cache.adopt({k: v for k, v in dvhs.items() if not _refers_to(k, refused)})

    # ------------------------------------------------------------------ DVHs
    def sampling(self, roi: Roi, info: CourseInfo) -> RoiSampling:
        """The ROI's sample points for one course's dose grid (cached; shared with :meth:`dvh`)."""
        key = (roi.number, (_geometry_key(info.course.dose),))
        return self._sampling_cache.get(key, lambda: sample_for_grid(roi, info.course.dose))

    def uncovered_volume_cc(self, roi: Roi, info: CourseInfo) -> float:
        """Volume of ``roi`` outside one course's dose grid, cc: its DVH's ``uncovered_volume_cc``
        from the cached sample points, without interpolating the dose."""
        return grid_uncovered_volume_cc(roi, info.course.dose, lambda: self.sampling(roi, info))

    def dvh(self, roi: Roi, courses: Sequence[CourseInfo], conversion: DoseConversion | None = None) -> DVH:
        """DVH of ``roi`` for one course, or the voxel-wise composite of several."""
        conversion = conversion or DoseConversion.physical()
        return self._dvh_cache.get(self._dvh_key(roi, courses, conversion),
                                   lambda: self._compute_dvh(roi, courses, conversion))

    def prepare_composites(self, roi: Roi, courses: Sequence[CourseInfo], conversions: Sequence[DoseConversion]) -> None:
        """Compute the composites of ``roi`` over ``courses`` in the dose kinds a rule is about to
        ask :meth:`dvh` for (e.g. physical sum and EQD2) together: each course's dose is then
        interpolated at the sample points once (:func:`plancheck.radiobiology.course_dvh.composite_dvhs`).
        The same DVHs as asked one by one; nothing to do for one course or one dose kind."""
        if len(courses) < 2:
            return
        wanted = list(dict.fromkeys(c for c in conversions if self._dvh_key(roi, courses, c) not in self._dvh_cache))
        if len(wanted) < 2:
            return
        key = ("together",) + tuple(self._dvh_key(roi, courses, c) for c in wanted)
        together = self._dvh_cache.get(key, lambda: dict(zip(wanted, self._compute_composites(roi, courses, wanted))))
        for conversion in wanted:
            self._dvh_cache.get(self._dvh_key(roi, courses, conversion), lambda c=conversion: together[c])

    @staticmethod
    def _dvh_key(roi: Roi, courses: Sequence[CourseInfo], conversion: DoseConversion) -> tuple:
        return (roi.number, tuple(c.course.plan.sop_instance_uid for c in courses), conversion)

    def _composite_sampling(self, roi: Roi, courses: Sequence[CourseInfo]) -> RoiSampling:
        grids_key = (roi.number, tuple(_geometry_key(c.course.dose) for c in courses))
        return self._sampling_cache.get(grids_key, lambda: sample_for_grids(roi, [c.course.dose for c in courses]))

    def _compute_composites(self, roi: Roi, courses: Sequence[CourseInfo], conversions: Sequence[DoseConversion]) -> list[DVH]:
        pairs = composite_dvhs(roi, [c.course for c in courses], conversions, sampling=self._composite_sampling(roi, courses))
        return [dvh for dvh, _ in pairs]

    def _compute_dvh(self, roi: Roi, courses: Sequence[CourseInfo], conversion: DoseConversion) -> DVH:
        if len(courses) == 1:
            return course_dvh(roi, courses[0].course, conversion, sampling=self.sampling(roi, courses[0]))
        return self._compute_composites(roi, courses, [conversion])[0]

    def metric(self, spec: str, roi: Roi, courses: Sequence[CourseInfo], conversion: DoseConversion | None = None,
               prescription_gy: float | None = None) -> MetricValue:
        return evaluate_metric(spec, self.dvh(roi, courses, conversion), prescription_gy)

    def isodose_volume(self, roi: Roi, info: CourseInfo, percent: float, prescription_gy: float) -> MetricValue:
        """``V{percent}%[cc]`` of ``roi`` for one course's physical dose, from a fine sampling
        of the ROI's part in the box of the dose grid that reaches that isodose
        (:func:`plancheck.dvh.clip.local_isodose_volume`; cached per ROI, course and dose).

        Where the ROI extends beyond the dose grid, the part outside has unknown dose:
        the value is then bounded by the local volume and that plus the ROI's volume
        outside the grid (as :meth:`metric` bounds it). Where the local sampling cannot
        be made, this is :meth:`metric` on the ROI's DVH. ``method`` says which.
        """
        spec = f"V{percent:g}%[cc]"
        dose = percent / 100.0 * prescription_gy
        key = (roi.number, info.course.plan.sop_instance_uid, round(dose, 9))
        return self._isodose_cache.get(key, lambda: self._isodose_volume(roi, info, spec, dose, prescription_gy))

    def _isodose_volume(self, roi: Roi, info: CourseInfo, spec: str, dose: float, prescription_gy: float) -> MetricValue:
        local = local_isodose_volume(roi, info.course.dose, dose)
        if local.volume_cc is None:
            whole = self.metric(spec, roi, [info], None, prescription_gy)
            return MetricValue(whole.metric, whole.value, whole.unit, whole.lower, whole.upper, whole.reason,
                               f"{whole.method} of the whole structure ({local.note})")
        v = local.volume_cc
        # the volume outside the grid from the ROI's sample points (as its DVH counts it), without its DVH
        outside = 0.0 if local.inside_grid else self.uncovered_volume_cc(roi, info)
        if outside == 0.0:
            return MetricValue(spec, v, "cc", v, v, method=local.note)
        coverage_pct = 100.0 * (1.0 - outside / self.sampling(roi, info).volume_cc)
        reason = (f"{coverage_pct:.1f}% of the structure is inside the dose grid; {spec} depends on "
                  f"the {outside:.3g} cc outside it (between {v:.4g} and {v + outside:.4g} cc)")
        return MetricValue(spec, None, "cc", v, v + outside, reason, local.note)

    def outside_volume(self, inner: Roi, outer: Roi) -> OutsideVolume:
        """How much of ``inner`` lies outside ``outer`` (:func:`plancheck.dvh.geometry.volume_outside`;
        cached per pair of ROIs: the containment rules of one target group often ask for the same pair)."""
        got = self._outside_cache.get((id(inner), id(outer)), lambda: (inner, outer, volume_outside(inner, outer)))
        return got[2]  # the ROIs are kept with the value, so that their ids stay theirs

    # ------------------------------------------------------------------ targets
    @cached_property
    def targets(self) -> tuple[TargetGroup, ...]:
        """Target groups (one per lesion), with the course that treats each."""
        parsed: dict[str, TargetName] = {}
        defective: dict[tuple, dict[str, Roi]] = {}
        for roi in self.structure_set.rois:
            t = parse_target_name(roi.name, roi.interpreted_type)
            if t.kind is not None and not t.derived and (roi.defects or not roi.is_empty):
                parsed.setdefault(roi.name, t)
        groups: dict[tuple, dict[str, Roi]] = {}
        for name, t in parsed.items():
            key = (t.role.value if hasattr(t.role, "value") else str(t.role), (t.site or "").casefold(), t.index)
            kind = "ITV" if str(t.kind) in ("ITV", "IGTV", "ICTV") else str(t.kind)
            roi = self.structure_set.roi_by_name(name)
            groups.setdefault(key, {})
            if roi.defects:  # read but not measurable: not found, with the reason (Roi.defects)
                defective.setdefault(key, {}).setdefault(kind, roi)
            elif kind not in groups[key]:
                groups[key][kind] = roi
        lesion_by_target = {}
        if self.case and self.case.metastases:
            for lesion in self.case.metastases:
                if lesion.target:
                    lesion_by_target[lesion.target] = lesion
        primary_target = self.case.primary.target if self.case and self.case.primary else None
        out = []
        for key, volumes in groups.items():
            role = key[0]
            names = {r.name for r in volumes.values()}
            lesion = next((lesion_by_target[n] for n in names if n in lesion_by_target), None)
            if lesion is not None:
                role = "metastasis"
            elif primary_target and primary_target in names:
                role = "primary"
            course, how = self._course_for(volumes) if volumes else (None, "no measurable target volume")
            left_out = self._left_out_plan_for(volumes) if course is None and volumes else None
            if left_out is not None:
                how = f"plan {left_out.shown} prescribes to it, and it is not a course of this check"
            out.append(TargetGroup(
                role=role, key=key, volumes=volumes, course=course, how=how,
                organ=lesion.organ if lesion else None,
                site=(lesion.site if lesion else None) or (key[1] or None),
                defective=defective.get(key, {}),
                left_out_plan=left_out.shown if left_out is not None else "",
            ))
        return tuple(out)

    def _left_out_plan_for(self, volumes: Mapping[str, Roi]):
        """The plan left out of this check (:attr:`PlanExport.left_out`) that prescribes to one of
        ``volumes`` in this structure set, or None."""
        numbers = {r.number for r in volumes.values()}
        uid = self.structure_set.sop_instance_uid
        return next((p for p in self.export.left_out
                     if not p.outside and p.structure_set_uid == uid and p.target_rois & numbers), None)

    def _course_for(self, volumes: Mapping[str, Roi]) -> tuple[CourseInfo | None, str]:
        numbers = {r.number for r in volumes.values()}
        for info in self.courses:
            for ref in info.course.plan.target_prescriptions:
                if ref.referenced_roi_number in numbers:
                    return info, f"plan {info.label} prescribes to ROI {ref.referenced_roi_number}"
        ptv = volumes.get("PTV") or next(iter(volumes.values()))
        best, best_ratio = None, 0.0
        for info in self.courses:
            if not info.prescription_gy:
                continue
            value = self.metric("D50%[Gy]", ptv, [info]).value
            if value is not None and value / info.prescription_gy > best_ratio:
                best, best_ratio = info, value / info.prescription_gy
        if best is not None and best_ratio >= 0.8:
            return best, f"plan {best.label} gives {ptv.name} a median dose of {100 * best_ratio:.0f}% of its prescription"
        return None, f"no plan prescribes to or covers {ptv.name}"
