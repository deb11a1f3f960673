"""The knobs of a synthetic case: :class:`CaseSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["CaseSpec", "COURSE_LABELS"]

#: Labels of the three courses, in plan order.
COURSE_LABELS: tuple[str, str, str] = ("C1_Eso", "C2_LungMet", "C3_VertMet")


@dataclass(frozen=True)
class CaseSpec:
    """Everything that determines a synthetic case; the same spec always gives
    the same case (and byte-identical files).

    Parameters
    ----------
    seed
        Seed of the random generator that jitters geometry and dose (only used
        when ``jitter > 0``; it also enters the UIDs).
    jitter
        Size of the case-to-case variation: 0 gives the canonical sample; 1 moves
        organs and targets by a few mm, scales target sizes by up to about ±15 %,
        the body by ±5 % and the dose normalisation by ±2 %.
    clinical_size
        A clinical-size export: 2 mm CT slices over 320 mm, 256 × 256 CT pixels,
        2 mm dose grids for all courses (over 3 million voxels), and 29 ROIs
        (adding kidneys, small bowel, duodenum and a PTV ring to the 26 of the
        sample).
    violations
        A plan that breaks the usual limits: C1 with two full arcs and wide fields
        (composite Lungs V20Gy about 40 %, heart mean about 28 Gy EQD2), the
        cranial 3 cm of PTVp under-dosed (V100% about 75 %, D95% about 93 %) and
        a posterior hot band (spinal cord max about 50 Gy); C3 with the vertebral
        lesion reaching the canal and no cord sparing (cord D0.03cc about 24 Gy,
        D0.35cc about 20 Gy in 3 fx). Its case file (six lesions, some untreated)
        is :func:`testkit.synthetic.case_file.case_context`.
    omit_courses
        Course labels (see :data:`COURSE_LABELS`) to leave out.
    omit_structures
        ROI names to leave out of the structure set (ROI numbers of the others
        do not change; a plan whose target is omitted keeps its dangling
        reference).
    include_ct
        Write a CT series with the case.
    ct_pixels
        CT matrix size (square); default 128 (256 for ``clinical_size``).
    ct_slice_mm
        CT slice spacing = contour plane spacing, mm; default 3 (2 for
        ``clinical_size``).
    dose_spacing_conventional_mm, dose_spacing_sbrt_mm
        Dose grid spacing of C1 and of C2/C3, mm; default 3 and 2 (2 and 2 for
        ``clinical_size``). Tests may coarsen them for speed.
    patient_id, patient_name
        Synthetic patient identity.
    date
        Study/plan/structure set date, ``YYYYMMDD``.
    outline_tolerance_mm
        How closely contour vertices follow the shapes, mm (see
        :func:`testkit.synthetic.shapes.star_polygon`); default exact (the
        sample). Tests pass about 0.01 mm: a fraction of the build time. Left out
        of ``repr`` so that the default keeps the sample's UIDs; :meth:`uid_key`
        adds it when set.
    """

    seed: int = 0
    jitter: float = 0.0
    clinical_size: bool = False
    violations: bool = False
    omit_courses: tuple[str, ...] = ()
    omit_structures: tuple[str, ...] = ()
    include_ct: bool = True
    ct_pixels: int | None = None
    ct_slice_mm: float | None = None
    dose_spacing_conventional_mm: float | None = None
    dose_spacing_sbrt_mm: float | None = None
    patient_id: str = "PC-SAMPLE-001"
    patient_name: str = "PLANCHECK^SAMPLE"
    date: str = field(default="20250602")
    outline_tolerance_mm: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.omit_courses) - set(COURSE_LABELS)
        if unknown:
            raise ValueError(f"omit_courses names unknown courses {sorted(unknown)}; known: {COURSE_LABELS}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")
        if self.outline_tolerance_mm is not None and not self.outline_tolerance_mm > 0:
            raise ValueError(f"outline_tolerance_mm must be > 0, got {self.outline_tolerance_mm}")

    # --- resolved defaults -------------------------------------------------------------
    @property
    def resolved_ct_pixels(self) -> int:
        return self.ct_pixels or (256 if self.clinical_size else 128)

    @property
    def resolved_ct_slice_mm(self) -> float:
        return self.ct_slice_mm or (2.0 if self.clinical_size else 3.0)

    @property
    def scan_range_mm(self) -> tuple[float, float]:
        """Nominal (z_first, z_last) of the CT, mm."""
        return (-170.0, 150.0) if self.clinical_size else (-135.0, 135.0)

    @property
    def resolved_dose_spacing_mm(self) -> dict[str, float]:
        conv = self.dose_spacing_conventional_mm or (2.0 if self.clinical_size else 3.0)
        sbrt = self.dose_spacing_sbrt_mm or 2.0
        return {"C1_Eso": conv, "C2_LungMet": sbrt, "C3_VertMet": sbrt}

    @classmethod
    def variant(cls, name: str, **overrides) -> CaseSpec:
        """A named variant: ``sample``, ``violations`` or ``clinical``."""
        presets = {
            "sample": {},
            "violations": {"violations": True},
            "clinical": {"clinical_size": True},
        }
        if name not in presets:
            raise ValueError(f"unknown variant {name!r}; known: {sorted(presets)}")
        return replace(cls(**presets[name]), **overrides)

    def uid_key(self) -> str:
        """A string that identifies the spec; UIDs are derived from it."""
        if self.outline_tolerance_mm is None:
            return repr(self)
        return f"{self!r}|outline_tolerance_mm={self.outline_tolerance_mm!r}"
