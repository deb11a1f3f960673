"""Build a complete synthetic case (CT, contours, three plans and their doses) as plain data.

:func:`build_case` is pure and deterministic: the same :class:`CaseSpec` gives
equal arrays. :func:`plancheck.dicom.write.write_case` turns the result into
DICOM files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from plancheck.synthetic.anatomy import Anatomy, build_anatomy
from plancheck.synthetic.dose_models import (
    arc_bath_2d,
    conventional_relative_dose,
    heterogeneity,
    logistic,
    normalise_to_coverage,
    sbrt_relative_dose,
    smooth_min,
)
from plancheck.synthetic.shapes import planar_contours
from plancheck.synthetic.spec import COURSE_LABELS, CaseSpec

__all__ = [
    "SyntheticStructure",
    "SyntheticBeam",
    "SyntheticCourse",
    "SyntheticImage",
    "SyntheticCase",
    "build_case",
]


@dataclass(frozen=True, eq=False)
class SyntheticStructure:
    """One ROI: identity and closed planar contours (``(N, 3)`` arrays, mm)."""

    number: int
    name: str
    interpreted_type: str
    color_rgb: tuple[int, int, int]
    contours: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class SyntheticBeam:
    """One treatment arc (or static beam when ``gantry_stop_deg`` is None)."""

    number: int
    name: str
    machine: str
    energy_mv: float
    gantry_start_deg: float
    gantry_stop_deg: float | None
    meterset_mu: float
    isocenter_mm: tuple[float, float, float]
    rotation_direction: str = "CW"
    fff: bool = False


@dataclass(frozen=True, eq=False)
class SyntheticCourse:
    """One course: plan parameters and its PLAN dose.

    Attributes
    ----------
    label, name
        RT Plan Label and Name.
    fractions
        Number of fractions planned.
    prescription_gy
        Target prescription dose for the whole course, Gy.
    target_roi_number, target_name
        The ROI the prescription refers to.
    beams
        The arcs.
    dose_gy
        ``(nz, ny, nx)`` dose of the whole course, Gy; 0 outside the External.
    origin_mm
        Centre (x, y, z) of the first voxel, mm.
    spacing_mm
        Voxel spacing (dx, dy, dz), mm.
    """

    label: str
    name: str
    fractions: int
    prescription_gy: float
    target_roi_number: int
    target_name: str
    beams: tuple[SyntheticBeam, ...]
    dose_gy: np.ndarray
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    description: str = ""


@dataclass(frozen=True, eq=False)
class SyntheticImage:
    """A CT volume in HU: ``hu[k, j, i]`` at ``origin + (i dx, j dy, k dz)``."""

    hu: np.ndarray
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """A complete synthetic case as plain data.

    Attributes
    ----------
    spec
        The knobs it was built from.
    uid_key
        Stable hex digest of the spec; UIDs of the written files derive from it.
    structures
        ROIs in structure-set order (``omit_structures`` removed).
    courses
        The courses (``omit_courses`` removed), in plan order.
    ct
        The CT, or None when ``spec.include_ct`` is False.
    anatomy
        The analytic ground truth (shapes), for tests that need exact masks.
    """

    spec: CaseSpec
    uid_key: str
    structures: tuple[SyntheticStructure, ...]
    courses: tuple[SyntheticCourse, ...]
    ct: SyntheticImage | None
    anatomy: Anatomy = field(repr=False)

    def structure(self, name: str) -> SyntheticStructure:
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(f"no synthetic structure named {name!r}")

    def course(self, label: str) -> SyntheticCourse:
        for c in self.courses:
            if c.label == label:
                return c
        raise KeyError(f"no synthetic course labelled {label!r}")


# --- grids -------------------------------------------------------------------------------

def _body_grid(anatomy: Anatomy, spacing_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre axes (mm) of a grid covering the External, centred on x = y = 0."""
    ext = anatomy.shape("External")
    a_max = ext.semi_axes_mm[0] + abs(ext.modulation_mm[0]) + 2.0  # type: ignore[attr-defined]
    b_max = ext.semi_axes_mm[1] + abs(ext.modulation_mm[1]) + 2.0  # type: ignore[attr-defined]
    nx = int(np.ceil(2 * a_max / spacing_mm)) + 1
    ny = int(np.ceil(2 * b_max / spacing_mm)) + 1
    x = np.round((np.arange(nx) - (nx - 1) / 2) * spacing_mm, 4)
    y = np.round((np.arange(ny) - (ny - 1) / 2) * spacing_mm, 4)
    z0, z1 = float(anatomy.z_planes_mm[0]), float(anatomy.z_planes_mm[-1])
    nz = int(np.floor((z1 - z0) / spacing_mm + 1e-6)) + 1
    z = np.round(z0 + spacing_mm * np.arange(nz), 4)
    return x, y, z


def _mesh(x, y, z):
    return x[None, None, :], y[None, :, None], z[:, None, None]


def _target_extent(mask: np.ndarray, x, y, z, iso) -> tuple[float, float, float, float]:
    """Half-widths about the isocentre (x, y), centre and half-length (z) of a mask, mm.

    Half a voxel is added to each half-width so the result hardly depends on the grid."""
    xs = x[mask.any(axis=(0, 1))]
    ys = y[mask.any(axis=(0, 2))]
    zs = z[mask.any(axis=(1, 2))]
    half_voxel = 0.5 * float(x[1] - x[0])
    hx = float(max(abs(xs.max() - iso[0]), abs(xs.min() - iso[0]))) + half_voxel
    hy = float(max(abs(ys.max() - iso[1]), abs(ys.min() - iso[1]))) + half_voxel
    return hx, hy, float(0.5 * (zs.max() + zs.min())), float(0.5 * (zs.max() - zs.min())) + half_voxel


# --- dose per course -----------------------------------------------------------------------

def _cord_cap(anatomy: Anatomy, X, Y, Z, rel: np.ndarray, rx_gy: float, cap_gy: float,
              slope_gy_per_mm: float) -> np.ndarray:
    """Spare the spinal cord: a smooth cap rising from ``cap_gy`` at its surface."""
    d_cord = anatomy.shape("SpinalCord").sdf(X, Y, Z)
    cap = (cap_gy + slope_gy_per_mm * np.maximum(d_cord, -1.0)) / rx_gy
    return smooth_min(rel, cap, 0.01)


def _conventional_dose(anatomy: Anatomy, spec: CaseSpec, rng: np.random.Generator, spacing: float,
                       rx_gy: float, iso) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    x, y, z = _body_grid(anatomy, spacing)
    X, Y, Z = _mesh(x, y, z)
    sdf_ptv = anatomy.shape("PTVp").sdf(X, Y, Z)
    mask_ptv = sdf_ptv <= 0.0
    hx, hy, zc, hz = _target_extent(mask_ptv, x, y, z, iso)
    margin = 6.0 if spec.violations else 0.0
    gantry = np.arange(0.0, 360.0, 5.0)
    bath_xy = arc_bath_2d(X[0], Y[0], iso, half_widths_mm=(hx + margin, hy + margin), gantry_deg=gantry)
    z_profile = logistic((hz + 2.0 - np.abs(z - zc)) / 3.0) + 0.04 * np.exp(-np.maximum(np.abs(z - zc) - hz, 0) / 30.0)
    bath_weight = (1.5 if spec.violations else 1.25) * (1.0 + 0.05 * spec.jitter * rng.standard_normal())
    bath = bath_weight * bath_xy[None, :, :] * z_profile[:, None, None]
    modulation = heterogeneity(X, Y, Z, rng, 0.035)
    rel = conventional_relative_dose(sdf_ptv, bath, modulation)
    if not spec.violations:
        rel = _cord_cap(anatomy, X, Y, Z, rel, rx_gy, cap_gy=38.0, slope_gy_per_mm=2.0)
    coverage = 0.90 if spec.violations else 1.0 + 0.01 * spec.jitter * rng.standard_normal()
    rel = normalise_to_coverage(rel, mask_ptv, volume_percent=95.0, relative_dose=coverage)
    if spec.violations:
        # a posterior hot band through the cord: cord max about 50 Gy
        cord = anatomy.shape("SpinalCord")
        cx, _ = cord.center_xy(0.0)
        depth_from_back_mm = 120.0 - np.asarray(Y)
        band = (logistic((10.0 - np.abs(X - cx)) / 2.0) * logistic((hz - np.abs(Z - zc)) / 3.0)
                * np.exp(-0.0045 * depth_from_back_mm) * np.ones_like(rel))
        in_cord = cord.sdf(X, Y, Z) <= 0.0
        current = float(rel[in_cord].max())
        rel = rel + band * (50.0 / rx_gy - current) / float(band[in_cord].max())
    body = anatomy.shape("External").sdf(X, Y, Z) <= -1.0
    return np.where(body, rel * rx_gy, 0.0), (x, y, z)


def _sbrt_dose(anatomy: Anatomy, spec: CaseSpec, rng: np.random.Generator, spacing: float, rx_gy: float,
               target: str, hot: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    x, y, z = _body_grid(anatomy, spacing)
    X, Y, Z = _mesh(x, y, z)
    sdf_ptv = anatomy.shape(target).sdf(X, Y, Z)
    mask_ptv = sdf_ptv <= 0.0
    volume_mm3 = float(mask_ptv.sum()) * spacing**3
    r_eq = (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    r50 = 4.4 + 0.3 * spec.jitter * rng.standard_normal()
    rel = sbrt_relative_dose(sdf_ptv, equivalent_radius_mm=r_eq, r50=r50, hot=hot)
    rel = rel * heterogeneity(X, Y, Z, rng, 0.012)
    # a per-fraction cord tolerance of 3 fx SBRT (TG-101: max 21.9 Gy) with margin
    rel = _cord_cap(anatomy, X, Y, Z, rel, rx_gy, cap_gy=13.0, slope_gy_per_mm=3.0)
    rel = normalise_to_coverage(rel, mask_ptv, volume_percent=98.5, relative_dose=1.0)
    body = anatomy.shape("External").sdf(X, Y, Z) <= -1.0
    return np.where(body, rel * rx_gy, 0.0), (x, y, z)


# --- CT ------------------------------------------------------------------------------------

def _ct(anatomy: Anatomy, spec: CaseSpec, rng: np.random.Generator) -> SyntheticImage:
    n = spec.resolved_ct_pixels
    pixel = 400.0 / n
    x = np.round(-200.0 + pixel / 2 + pixel * np.arange(n), 4)
    y = x.copy()
    z = anatomy.z_planes_mm
    X, Y, Z = _mesh(x, y, z)
    hu = np.full((len(z), n, n), -1000.0)
    def paint(name_or_shape, value):
        shape = anatomy.shape(name_or_shape) if isinstance(name_or_shape, str) else name_or_shape
        hu[np.broadcast_to(shape.contains(X, Y, Z), hu.shape)] = value
    paint("External", 20.0)
    for name, value in (("Lung_L", -820.0), ("Lung_R", -820.0), ("Heart", 40.0), ("Liver", 60.0),
                        ("Stomach", 10.0), ("Esophagus", 35.0)):
        paint(name, value)
    for bone in anatomy.bone:
        paint(bone, 700.0)
    paint("SpinalCord", 30.0)
    trachea = anatomy.shape("Trachea")
    paint(trachea.outer, 30.0)  # type: ignore[attr-defined]
    paint(trachea.inner, -1000.0)  # type: ignore[attr-defined]
    body = anatomy.shape("External").contains(X, Y, Z)
    noise = rng.normal(0.0, 12.0, size=hu.shape)
    hu = np.where(np.broadcast_to(body, hu.shape), hu + noise, hu)
    hu = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    return SyntheticImage(hu=hu, origin_mm=(float(x[0]), float(y[0]), float(z[0])),
                          spacing_mm=(pixel, pixel, spec.resolved_ct_slice_mm))


# --- plans ---------------------------------------------------------------------------------

def _arcs(iso, machine: str, mu_total: float, arcs: tuple[tuple[str, float, float, str], ...],
          fff: bool, rng: np.random.Generator, jitter: float) -> tuple[SyntheticBeam, ...]:
    beams = []
    weights = np.array([1.0 + 0.08 * jitter * rng.standard_normal() for _ in arcs]) if jitter else np.ones(len(arcs))
    weights = weights / weights.sum()
    for i, ((name, start, stop, direction), w) in enumerate(zip(arcs, weights), start=1):
        beams.append(SyntheticBeam(number=i, name=name, machine=machine, energy_mv=6.0,
                                   gantry_start_deg=start, gantry_stop_deg=stop,
                                   meterset_mu=round(float(mu_total * w), 1), isocenter_mm=iso,
                                   rotation_direction=direction, fff=fff))
    return tuple(beams)


def build_case(spec: CaseSpec | None = None) -> SyntheticCase:
    """Build the synthetic case described by ``spec``.

    Parameters
    ----------
    spec
        The knobs; the default is the canonical sample case.

    Returns
    -------
    SyntheticCase
        Contours on the CT planes, three courses (minus ``omit_courses``) with
        doses in Gy, and the CT.
    """
    spec = spec or CaseSpec()
    anatomy = build_anatomy(spec)
    uid_key = hashlib.sha256(spec.uid_key().encode()).hexdigest()[:32]

    structures = tuple(
        SyntheticStructure(number=r.number, name=r.name, interpreted_type=r.interpreted_type,
                           color_rgb=r.color_rgb, contours=planar_contours(r.shape, anatomy.z_planes_mm))
        for r in anatomy.rois if r.name not in spec.omit_structures
    )
    numbers = {r.name: r.number for r in anatomy.rois}
    spacing = spec.resolved_dose_spacing_mm
    machine = "TrueBeam1"
    courses: list[SyntheticCourse] = []
    for index, label in enumerate(COURSE_LABELS):
        if label in spec.omit_courses:
            continue
        rng = np.random.default_rng([spec.seed, index + 1])
        iso = anatomy.isocenters_mm[label]
        jit = spec.jitter
        if label == "C1_Eso":
            rx, fx, target = 60.0, 30, "PTVp"
            dose, axes = _conventional_dose(anatomy, spec, rng, spacing[label], rx, iso)
            beams = _arcs(iso, machine, 250.0 * (1 + 0.08 * jit * rng.standard_normal()),
                          (("ARC1", 181.0, 179.0, "CW"), ("ARC2", 179.0, 181.0, "CC")), False, rng, jit)
            description = "Esophagus mid-thoracic 60 Gy / 30 fx"
        elif label == "C2_LungMet":
            rx, fx, target = 50.0, 5, "PTV_Met_Lung"
            dose, axes = _sbrt_dose(anatomy, spec, rng, spacing[label], rx, target, hot=1.30)
            beams = _arcs(iso, machine, 10.0 * 100 * (3.0 + 0.3 * jit * rng.standard_normal()),
                          (("ARC1", 181.0, 10.0, "CW"), ("ARC2", 10.0, 181.0, "CC")), True, rng, jit)
            description = "SBRT lung metastasis right upper lobe 50 Gy / 5 fx"
        else:
            rx, fx, target = 30.0, 3, "PTV_Met_Vert"
            dose, axes = _sbrt_dose(anatomy, spec, rng, spacing[label], rx, target, hot=1.28)
            beams = _arcs(iso, machine, 10.0 * 100 * (3.2 + 0.3 * jit * rng.standard_normal()),
                          (("ARC1", 100.0, 260.0, "CW"), ("ARC2", 260.0, 100.0, "CC")), True, rng, jit)
            description = "SBRT vertebral metastasis 30 Gy / 3 fx"
        x, y, z = axes
        s = spacing[label]
        courses.append(SyntheticCourse(
            label=label, name=label.replace("_", " "), fractions=fx, prescription_gy=rx,
            target_roi_number=numbers[target], target_name=target, beams=beams,
            dose_gy=dose.astype(np.float32), origin_mm=(float(x[0]), float(y[0]), float(z[0])),
            spacing_mm=(s, s, s), description=description))

    ct = _ct(anatomy, spec, np.random.default_rng([spec.seed, 99])) if spec.include_ct else None
    return SyntheticCase(spec=spec, uid_key=uid_key, structures=structures, courses=tuple(courses),
                         ct=ct, anatomy=anatomy)
