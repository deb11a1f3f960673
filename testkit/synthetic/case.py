"""Build a complete synthetic case (CT, contours, three plans and their doses) as plain data.

:func:`build_case` is pure and deterministic: the same :class:`CaseSpec` gives
equal arrays. :func:`testkit.write.write_case` turns the result into
DICOM files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from testkit.synthetic.anatomy import Anatomy, build_anatomy
from testkit.synthetic.dose_models import (
    arc_bath_2d,
    conventional_relative_dose,
    heterogeneity,
    logistic,
    normalise_to_coverage,
    sbrt_relative_dose,
    smooth_min,
)
from testkit.synthetic.shapes import planar_contours
from testkit.synthetic.spec import COURSE_LABELS, CaseSpec

__all__ = [
    "SyntheticStructure",
    "BeamSpec",
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
class BeamSpec:
    """One photon beam of an RT Plan (what the generator plans and :func:`testkit.write.rtplan_dataset` writes).

    Parameters
    ----------
    number, name
        Beam Number and Beam Name.
    machine
        Treatment Machine Name.
    energy_mv
        Nominal Beam Energy, MV.
    gantry_start_deg
        Gantry angle of the first control point, degrees.
    gantry_stop_deg
        Gantry angle of the last control point for an arc; None for a static beam.
    meterset_mu
        Beam Meterset per fraction, MU.
    isocenter_mm
        Isocenter Position (x, y, z), mm.
    rotation_direction
        ``CW`` or ``CC`` for arcs.
    number_of_control_points
        Control points of an arc (default: one per 10 degrees, at least 2).
    fff
        Flattening-filter-free: writes a Primary Fluence Mode ``NON_STANDARD``/``FFF``.
    radiation_type
        ``PHOTON`` by default.
    """

    number: int
    name: str
    machine: str
    energy_mv: float
    gantry_start_deg: float
    gantry_stop_deg: float | None
    meterset_mu: float
    isocenter_mm: tuple[float, float, float]
    rotation_direction: str = "CW"
    number_of_control_points: int | None = None
    fff: bool = False
    radiation_type: str = "PHOTON"


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
    beams: tuple[BeamSpec, ...]
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

def _organ_cap(anatomy: Anatomy, X, Y, Z, rx_gy: float, cap_gy: float, slope_gy_per_mm: float,
               organ: str = "SpinalCord") -> np.ndarray:
    """The relative dose an optimiser allows near ``organ``: ``cap_gy`` at its surface,
    rising by ``slope_gy_per_mm`` outside it (and falling by at most one mm's worth inside)."""
    d_organ = anatomy.shape(organ).sdf(X, Y, Z)
    return (cap_gy + slope_gy_per_mm * np.maximum(d_organ, -1.0)) / rx_gy


def _cord_cap(anatomy: Anatomy, X, Y, Z, rel: np.ndarray, rx_gy: float, cap_gy: float,
              slope_gy_per_mm: float, organ: str = "SpinalCord") -> np.ndarray:
    """Spare the spinal cord (or its PRV): a smooth cap rising from ``cap_gy`` at its surface."""
    cap = _organ_cap(anatomy, X, Y, Z, rx_gy, cap_gy, slope_gy_per_mm, organ)
    return smooth_min(rel, cap, 0.01)


def _contoured_mask(anatomy: Anatomy, name: str, X, Y, Z) -> np.ndarray:
    """The ROI as a planning system sees it: each contour plane's cross-section extruded
    half a plane spacing up and down (as plancheck's DVH engine does), not the analytic shape.

    Normalising coverage on this mask makes the coverage that plancheck measures on the
    written contours agree with the one the generator aimed at."""
    planes = np.asarray(anatomy.z_planes_mm, float)
    half = 0.5 * float(planes[1] - planes[0]) if len(planes) > 1 else 0.5
    z = np.asarray(Z, float)
    nearest = planes[np.clip(np.searchsorted(planes, z.ravel() - half), 0, len(planes) - 1)].reshape(z.shape)
    # searchsorted finds the first plane >= z - half: the plane whose slab holds z (ties go down)
    within = np.abs(z - nearest) <= half + 1e-9
    inside = anatomy.shape(name).sdf(X, Y, nearest) <= 0.0
    return np.broadcast_to(inside & within, np.broadcast_shapes(np.shape(X), np.shape(Y), np.shape(Z)))


def _roi_sample_points(anatomy: Anatomy, name: str, axes, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear interpolation stencils of lattice points (``step_mm``) filling the ROI as
    contoured (:func:`_contoured_mask`): the 8 flat voxel indices and weights per point, as a
    DVH engine that interpolates the dose grid sees the ROI."""
    x, y, z = axes
    spacing = np.array([x[1] - x[0], y[1] - y[0], z[1] - z[0]], float)
    X, Y, Z = _mesh(x, y, z)
    inside = _contoured_mask(anatomy, name, X, Y, Z)
    kk, jj, ii = np.nonzero(inside)
    lo = np.array([x[ii.min()], y[jj.min()], z[kk.min()]]) - spacing
    hi = np.array([x[ii.max()], y[jj.max()], z[kk.max()]]) + spacing
    px, py, pz = (np.arange(lo[a] + step_mm / 2, hi[a], step_mm) for a in range(3))
    PX, PY, PZ = px[None, None, :], py[None, :, None], pz[:, None, None]
    keep = _contoured_mask(anatomy, name, PX, PY, PZ)
    pts = np.column_stack([np.broadcast_to(a, keep.shape)[keep] for a in (PX, PY, PZ)])
    origin = np.array([x[0], y[0], z[0]])
    frac = (pts - origin) / spacing
    base = np.floor(frac).astype(int)
    t = frac - base
    shape = (len(z), len(y), len(x))
    index, weight = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                i = np.clip(base[:, 0] + dx, 0, shape[2] - 1)
                j = np.clip(base[:, 1] + dy, 0, shape[1] - 1)
                k = np.clip(base[:, 2] + dz, 0, shape[0] - 1)
                index.append(np.ravel_multi_index((k, j, i), shape))
                weight.append((t[:, 0] if dx else 1 - t[:, 0]) * (t[:, 1] if dy else 1 - t[:, 1])
                              * (t[:, 2] if dz else 1 - t[:, 2]))
    return np.stack(index, axis=1), np.stack(weight, axis=1)


def _scale_for_coverage(rel: np.ndarray, cap: np.ndarray | None, stencil: tuple[np.ndarray, np.ndarray], *,
                        volume_percent: float, relative_dose: float = 1.0) -> float:
    """The factor ``k`` such that ``volume_percent`` of the ROI (sampled by ``stencil``) receives
    at least ``relative_dose`` of ``min(k rel, cap)`` interpolated trilinearly (bisection; the
    cap, an organ-at-risk limit, is not scaled)."""
    index, weight = stencil
    used, inverse = np.unique(index, return_inverse=True)
    inverse = inverse.reshape(index.shape)
    rel_used = rel.ravel()[used]
    cap_used = None if cap is None else np.broadcast_to(cap, rel.shape).ravel()[used]
    lo, hi = 0.5, 2.0
    for _ in range(40):
        k = 0.5 * (lo + hi)
        grid = k * rel_used if cap_used is None else smooth_min(k * rel_used, cap_used, 0.01)
        values = np.sum(grid[inverse] * weight, axis=1)
        if 100.0 * float(np.mean(values >= relative_dose)) >= volume_percent:
            hi = k
        else:
            lo = k
    return hi


#: Arcs of the conventional course, ``(name, start, stop, direction)`` in IEC 61217 gantry
#: degrees. The sample's two partial arcs treat through an anterior (290-70) and a posterior
#: (230-130) sector only, so no beam enters through the lateral chest wall: the low-dose bath in the
#: lungs stays small (Lungs V5Gy about 50 % in EQD2, heart mean about 20 Gy).
C1_PARTIAL_ARCS: tuple[tuple[str, float, float, str], ...] = (
    ("ARC1", 290.0, 70.0, "CW"), ("ARC2", 230.0, 130.0, "CC"),
)
#: Two full arcs (the violations variant): a wide bath through both lungs.
C1_FULL_ARCS: tuple[tuple[str, float, float, str], ...] = (("ARC1", 181.0, 179.0, "CW"), ("ARC2", 179.0, 181.0, "CC"))


def arc_gantry_angles(arcs: tuple[tuple[str, float, float, str], ...], step_deg: float = 5.0) -> np.ndarray:
    """Gantry angles (degrees, 0-360) sampled every ``step_deg`` along each arc."""
    angles: list[np.ndarray] = []
    for _, start, stop, direction in arcs:
        span = (stop - start) % 360.0 if direction == "CW" else (start - stop) % 360.0
        sign = 1.0 if direction == "CW" else -1.0
        n = max(2, int(round(span / step_deg)) + 1)
        angles.append((start + sign * span * np.arange(n) / (n - 1)) % 360.0)
    return np.concatenate(angles)


def _conventional_dose(anatomy: Anatomy, spec: CaseSpec, rng: np.random.Generator, spacing: float,
                       rx_gy: float, iso, arcs) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    x, y, z = _body_grid(anatomy, spacing)
    X, Y, Z = _mesh(x, y, z)
    sdf_ptv = anatomy.shape("PTVp").sdf(X, Y, Z)
    mask_ptv = sdf_ptv <= 0.0
    hx, hy, zc, hz = _target_extent(mask_ptv, x, y, z, iso)
    # violations: fields 10 mm wider than the target and full arcs: lungs V20Gy about 40 %
    margin = 10.0 if spec.violations else 0.0
    bath_xy = arc_bath_2d(X[0], Y[0], iso, half_widths_mm=(hx + margin, hy + margin),
                          gantry_deg=arc_gantry_angles(arcs))
    z_profile = logistic((hz + 2.0 - np.abs(z - zc)) / 3.0) + 0.04 * np.exp(-np.maximum(np.abs(z - zc) - hz, 0) / 30.0)
    bath_weight = (1.5 if spec.violations else 1.15) * (1.0 + 0.05 * spec.jitter * rng.standard_normal())
    bath = bath_weight * bath_xy[None, :, :] * z_profile[:, None, None]
    modulation = heterogeneity(X, Y, Z, rng, 0.035)
    rel = conventional_relative_dose(sdf_ptv, bath, modulation)
    if not spec.violations:
        # the cord PRV kept at about 40 Gy (cord about 38 Gy) although the posterior arcs cross it
        rel = _cord_cap(anatomy, X, Y, Z, rel, rx_gy, cap_gy=40.0, slope_gy_per_mm=2.0, organ="SpinalCord_PRV05")
    # normalise on the PTV as contoured (V100% = 96.5 %, so D95% is a little above Rx)
    coverage = 1.0 + 0.01 * spec.jitter * rng.standard_normal()
    contoured = _contoured_mask(anatomy, "PTVp", X, Y, Z)
    rel = normalise_to_coverage(rel, contoured, volume_percent=96.5, relative_dose=coverage)
    if spec.violations:
        # the cranial 3 cm of the PTV under-dosed to about 92 % (coverage given up there):
        # V100% about 75 %, D95% about 93 % of the prescription
        rel = rel * (1.0 - 0.085 * logistic((Z - (zc + hz - 30.0)) / 1.5))
        # a posterior hot band through the cord: cord max about 50 Gy
        cord = anatomy.shape("SpinalCord")
        cx, _ = cord.center_xy(0.0)
        depth_from_back_mm = 120.0 - np.asarray(Y)
        behind_ptv = logistic((Y - (iso[1] + hy + 6.0)) / 2.0)
        band = (logistic((10.0 - np.abs(X - cx)) / 2.0) * logistic((hz - np.abs(Z - zc)) / 3.0)
                * np.exp(-0.0045 * depth_from_back_mm) * behind_ptv * np.ones_like(rel))
        in_cord = cord.sdf(X, Y, Z) <= 0.0
        current = float(rel[in_cord].max())
        rel = rel + band * (50.0 / rx_gy - current) / float(band[in_cord].max())
    body = anatomy.shape("External").sdf(X, Y, Z) <= -1.0
    return np.where(body, rel * rx_gy, 0.0), (x, y, z)


def _sbrt_dose(anatomy: Anatomy, spec: CaseSpec, rng: np.random.Generator, spacing: float, rx_gy: float,
               target: str, hot: float, spare: tuple[str, float, float] | None
               ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An SBRT course; ``spare = (organ, cap_gy, slope_gy_per_mm)`` is the organ-at-risk limit the
    optimiser kept (coverage is given up where it conflicts), None for no sparing."""
    x, y, z = _body_grid(anatomy, spacing)
    X, Y, Z = _mesh(x, y, z)
    sdf_ptv = anatomy.shape(target).sdf(X, Y, Z)
    mask_ptv = sdf_ptv <= 0.0
    volume_mm3 = float(mask_ptv.sum()) * spacing**3
    r_eq = (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    r50 = 4.1 + 0.3 * spec.jitter * rng.standard_normal()
    rel = sbrt_relative_dose(sdf_ptv, equivalent_radius_mm=r_eq, r50=r50, hot=hot)
    rel = rel * heterogeneity(X, Y, Z, rng, 0.012)
    cap = None if spare is None else _organ_cap(anatomy, X, Y, Z, rx_gy, spare[1], spare[2], spare[0])
    # normalise as a planning system does, on the PTV as contoured and with the dose
    # interpolated between voxels: V100% = 97 %, within the organ-at-risk cap
    stencil = _roi_sample_points(anatomy, target, (x, y, z), step_mm=0.5)
    k = _scale_for_coverage(rel, cap, stencil, volume_percent=97.0)
    rel = k * rel if cap is None else smooth_min(k * rel, cap, 0.01)
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
          fff: bool, rng: np.random.Generator, jitter: float) -> tuple[BeamSpec, ...]:
    beams = []
    weights = np.array([1.0 + 0.08 * jitter * rng.standard_normal() for _ in arcs]) if jitter else np.ones(len(arcs))
    weights = weights / weights.sum()
    for i, ((name, start, stop, direction), w) in enumerate(zip(arcs, weights), start=1):
        beams.append(BeamSpec(number=i, name=name, machine=machine, energy_mv=6.0,
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
                           color_rgb=r.color_rgb, contours=planar_contours(r.shape, anatomy.z_planes_mm,
                                                    outline_tolerance_mm=spec.outline_tolerance_mm))
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
            arcs = C1_FULL_ARCS if spec.violations else C1_PARTIAL_ARCS
            dose, axes = _conventional_dose(anatomy, spec, rng, spacing[label], rx, iso, arcs)
            beams = _arcs(iso, machine, 250.0 * (1 + 0.08 * jit * rng.standard_normal()), arcs, False, rng, jit)
            description = "Esophagus mid-thoracic 60 Gy / 30 fx"
        elif label == "C2_LungMet":
            rx, fx, target = 50.0, 5, "PTV_Met_Lung"
            dose, axes = _sbrt_dose(anatomy, spec, rng, spacing[label], rx, target, hot=1.30,
                                    spare=("SpinalCord", 13.0, 3.0))
            beams = _arcs(iso, machine, 10.0 * 100 * (3.0 + 0.3 * jit * rng.standard_normal()),
                          (("ARC1", 181.0, 10.0, "CW"), ("ARC2", 10.0, 181.0, "CC")), True, rng, jit)
            description = "SBRT lung metastasis right upper lobe 50 Gy / 5 fx"
        else:
            rx, fx, target = 30.0, 3, "PTV_Met_Vert"
            # the sample spares the cord PRV (about 17 Gy at its surface: cord max about 14 Gy,
            # composite EQD2(2) of the PRV below 45 Gy); the violations plan does not spare the cord
            spare = None if spec.violations else ("SpinalCord_PRV05", 17.0, 3.0)
            dose, axes = _sbrt_dose(anatomy, spec, rng, spacing[label], rx, target, hot=1.28, spare=spare)
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
