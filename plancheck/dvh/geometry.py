"""Shape measures between two ROIs: how much of one lies outside another, and margins.

The geometric model is the one of the DVH engine (:mod:`plancheck.dvh.sampling`):
a contour plane at ``z_k`` stands for a slab between the mid-points to its
neighbouring planes (end slabs and slabs next to a gap extend half the nominal
contour spacing), and its cross-section is the even-odd region of the plane's
contours.

* **Volume outside** (:func:`volume_outside`): for every plane of the *inner*
  ROI, the outer ROI's cross-section is the one of the outer plane whose slab
  contains ``z`` (the same plane when both are contoured on the same slices);
  both are rasterised on one common fine lattice and the fraction of inner
  samples not inside the outer region is the plane's outside fraction. A plane
  where the inner ROI exists and no outer slab does counts as wholly outside.
  Each plane's fraction multiplies its exact (shoelace) area and slab thickness.
* **Cranio-caudal margins** (:func:`cranio_caudal_margins`): from the slab
  extents (first/last plane ∓ half the contour spacing); superior is +z in
  the DICOM patient coordinate system (PS3.3 C.7.6.2.1.1), whatever the
  patient position.
* **Radial margins** (:func:`radial_margins`): on every plane where both ROIs
  exist, the in-plane distance from points on the inner contours (vertices, and
  points along the edges no further apart than ``spacing_mm``) to the nearest
  edge of the outer contours (exact point-to-segment distance); negative when
  the point lies outside the outer region.

References
----------
ICRU Report 83 (2010), section 4: GTV ⊂ CTV ⊂ PTV, and the PTV as a margin
around the CTV.
DICOM PS3.3 C.8.8.6 (ROI Contour module): planar contours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plancheck.dvh.rasterize import PlaneLattice, even_odd_area_mm2, rasterize_planes
from plancheck.polygons import points_in_polygons
from plancheck.dvh.sampling import slab_bounds
from plancheck.model.structures import Roi

__all__ = [
    "OutsideVolume",
    "CranioCaudalMargins",
    "RadialMargins",
    "slab_extent_mm",
    "volume_outside",
    "volume_fraction_below_x",
    "cranio_caudal_margins",
    "radial_margins",
    "point_to_segments_distance_mm",
]

DEFAULT_LATTICE_SAMPLES = 400_000
"""Lattice points aimed for over all inner planes in :func:`volume_outside`."""

_MAX_MASK_CELLS = 64_000_000
"""Most lattice cells (all inner planes) :func:`volume_outside` marks in a boolean mask (64 MB);
beyond, it sorts the outer cells instead."""


def _require_planes(roi: Roi) -> None:
    if roi.is_empty:
        raise ValueError(f"ROI {roi.name!r} has no closed planar contours")


def _slabs(roi: Roi) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    z = np.array(list(roi.planes.keys()), dtype=float)
    lo, hi, thickness, _ = slab_bounds(z, None, image_slices_z_mm=roi.image_slices_z_mm)
    return z, lo, hi, thickness


def slab_extent_mm(roi: Roi) -> tuple[float, float]:
    """Inferior and superior z (mm) of the ROI's slab model.

    Raises
    ------
    ValueError
        For an ROI without closed planar contours.
    """
    _require_planes(roi)
    _, lo, hi, _ = _slabs(roi)
    return float(lo[0]), float(hi[-1])


def _outer_plane_for(z: np.ndarray, outer: Roi) -> np.ndarray:
    """For each z, the index of the outer plane whose slab contains it (-1: none)."""
    _, lo, hi, _ = _slabs(outer)
    idx = np.searchsorted(hi, z, side="left")
    found = np.full(len(z), -1, dtype=np.int64)
    ok = idx < len(hi)
    cand = np.where(ok, idx, 0)
    inside = ok & (lo[cand] <= z + 1e-6) & (z <= hi[cand] + 1e-6)
    found[inside] = cand[inside]
    return found


@dataclass(frozen=True)
class OutsideVolume:
    """How much of an inner ROI lies outside an outer ROI.

    Attributes
    ----------
    inner_volume_cc
        Volume of the inner ROI (slab model), cc.
    outside_cc
        Volume of the inner ROI outside the outer ROI, cc.
    planes_without_outer
        z (mm) of inner planes that lie in no slab of the outer ROI (counted wholly outside).
    step_mm
        Lattice step used, mm.
    """

    inner_volume_cc: float
    outside_cc: float
    planes_without_outer: tuple[float, ...]
    step_mm: float

    @property
    def outside_percent(self) -> float:
        """Outside volume as % of the inner volume."""
        return 100.0 * self.outside_cc / self.inner_volume_cc if self.inner_volume_cc > 0 else 0.0


def volume_outside(inner: Roi, outer: Roi, *, target_samples: int = DEFAULT_LATTICE_SAMPLES,
                   min_step_mm: float = 0.05, max_step_mm: float = 1.0) -> OutsideVolume:
    """Volume of ``inner`` that lies outside ``outer`` (see the module docstring).

    Parameters
    ----------
    inner, outer
        The ROIs (closed planar contours).
    target_samples
        Lattice points aimed for over all inner planes (sets the step).
    min_step_mm, max_step_mm
        Bounds of the lattice step, mm.

    Returns
    -------
    OutsideVolume

    Raises
    ------
    ValueError
        When either ROI has no closed planar contours.

    Notes
    -----
    The per-plane outside fraction is a lattice count; its error is at most the
    cells cut by the two boundaries, about ``step × perimeter`` of area per plane.
    """
    _require_planes(inner)
    _require_planes(outer)
    z, lo, hi, _ = _slabs(inner)
    polys = list(inner.planes.values())
    outer_polys = list(outer.planes.values())
    which = _outer_plane_for(z, outer)
    areas = []
    for pp in polys:
        a = even_odd_area_mm2(pp)
        areas.append(a)
    rough = np.array([a if a is not None else sum(_abs_area(p) for p in pp) for a, pp in zip(areas, polys)])
    total_area = float(rough.sum())
    step = (total_area / target_samples) ** 0.5 if total_area > 0 else min_step_mm
    step = float(min(max(step, min_step_mm), max_step_mm))
    all_xy = np.vstack([p for pp in polys for p in pp])
    x0 = math.floor(all_xy[:, 0].min() / step) * step - step
    y0 = math.floor(all_xy[:, 1].min() / step) * step - step
    nx = int(math.ceil((all_xy[:, 0].max() - x0) / step)) + 2
    ny = int(math.ceil((all_xy[:, 1].max() - y0) / step)) + 2
    lattice = PlaneLattice(x0, y0, step, nx, ny)
    p_in, i_in, j_in = rasterize_planes(polys, lattice)
    outer_planes = [outer_polys[k] if k >= 0 else () for k in which]
    p_out, i_out, j_out = rasterize_planes(outer_planes, lattice)
    cells = nx * ny
    key_in = p_in * cells + i_in * ny + j_in
    key_out = p_out * cells + i_out * ny + j_out
    if len(z) * cells <= _MAX_MASK_CELLS:  # a mask of the outer cells: one look-up per inner cell
        in_outer = np.zeros(len(z) * cells, dtype=bool)
        in_outer[key_out] = True
        outside = ~in_outer[key_in]
    else:  # the same answer by sorting, in memory that grows with the cells inside only
        outside = ~np.isin(key_in, key_out, assume_unique=False)
    n_in = np.bincount(p_in, minlength=len(z)).astype(float)
    n_outside = np.bincount(p_in[outside], minlength=len(z)).astype(float)
    frac = np.divide(n_outside, n_in, out=np.zeros(len(z)), where=n_in > 0)
    # a plane smaller than one lattice cell: inside or outside as its centroid is
    for k in np.flatnonzero(n_in == 0):
        if which[k] < 0:
            frac[k] = 1.0
        else:
            centroid = np.vstack(polys[k]).mean(axis=0)[None, :]
            frac[k] = 0.0 if points_in_polygons(centroid, outer_polys[which[k]])[0] else 1.0
    frac[which < 0] = 1.0
    area = np.array([a if a is not None else n_in[k] * step * step for k, a in enumerate(areas)])
    slab = hi - lo
    inner_cc = float(np.sum(area * slab) / 1000.0)
    outside_cc = float(np.sum(area * slab * frac) / 1000.0)
    return OutsideVolume(inner_cc, outside_cc, tuple(float(v) for v in z[which < 0]), step)


def volume_fraction_below_x(roi: Roi, x_mm: float, *, target_samples: int = 40_000) -> float:
    """Fraction (0..1) of ``roi``'s volume (slab model) at ``x < x_mm``, e.g. on one side of the
    patient's mid-sagittal plane.

    Each plane's even-odd region is sampled on a square lattice of about ``target_samples``
    points over all planes (error about ``step × plane height`` of area per plane); a plane's
    weight is its sample count times its slab thickness.

    Raises
    ------
    ValueError
        When the ROI has no closed planar contours.
    """
    _require_planes(roi)
    z, lo, hi, _ = _slabs(roi)
    polys = list(roi.planes.values())
    all_xy = np.vstack([p for pp in polys for p in pp])
    total_area = float(sum(_abs_area(p) for pp in polys for p in pp))
    step = float(min(max((total_area / target_samples) ** 0.5 if total_area > 0 else 0.05, 0.05), 2.0))
    x0 = math.floor(all_xy[:, 0].min() / step) * step - step
    y0 = math.floor(all_xy[:, 1].min() / step) * step - step
    nx = int(math.ceil((all_xy[:, 0].max() - x0) / step)) + 2
    ny = int(math.ceil((all_xy[:, 1].max() - y0) / step)) + 2
    p_in, i_in, _ = rasterize_planes(polys, PlaneLattice(x0, y0, step, nx, ny))
    weight = (hi - lo)[p_in]
    total = float(weight.sum())
    if total <= 0:
        return 0.0
    below = (x0 + (i_in + 0.5) * step) < x_mm
    return float(weight[below].sum()) / total


def _abs_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class CranioCaudalMargins:
    """Margins of an outer ROI around an inner one along z, mm (negative: the inner
    ROI extends beyond the outer on that side).

    Attributes
    ----------
    superior_mm
        Outer superior extent minus inner superior extent (+z is superior).
    inferior_mm
        Inner inferior extent minus outer inferior extent.
    """

    superior_mm: float
    inferior_mm: float

    @property
    def minimum_mm(self) -> float:
        return min(self.superior_mm, self.inferior_mm)


def cranio_caudal_margins(inner: Roi, outer: Roi) -> CranioCaudalMargins:
    """Superior and inferior margins (mm) from the slab extents of both ROIs.

    Raises
    ------
    ValueError
        When either ROI has no closed planar contours.
    """
    i_lo, i_hi = slab_extent_mm(inner)
    o_lo, o_hi = slab_extent_mm(outer)
    return CranioCaudalMargins(superior_mm=o_hi - i_hi, inferior_mm=i_lo - o_lo)


def point_to_segments_distance_mm(points: np.ndarray, segments: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Distance from each point to the nearest of a set of segments.

    Parameters
    ----------
    points
        ``(M, 2)`` mm.
    segments
        ``(E, 4)`` mm: x0, y0, x1, y1.
    chunk
        Unused (the distances are computed point by point in a compiled kernel, without
        temporaries); kept for callers that pass it.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` distances, mm (``inf`` when there are no segments).
    """
    if len(segments) == 0:
        return np.full(len(points), np.inf)
    from plancheck.kernels import segment_distances

    points = np.asarray(points, dtype=float)
    out = np.empty(len(points))
    segment_distances(np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1]),
                      np.ascontiguousarray(segments, dtype=float), out)
    return out


def _point_to_segments_reference(points: np.ndarray, segments: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """The vectorised formulation of :func:`point_to_segments_distance_mm` (the compiled
    kernel computes the same, point by point; ``tests/test_kernels.py`` compares them)."""
    if len(segments) == 0:
        return np.full(len(points), np.inf)
    a = segments[:, :2][None, :, :]
    ab = (segments[:, 2:] - segments[:, :2])[None, :, :]
    ab2 = np.sum(ab * ab, axis=2)
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk][:, None, :]
        ap = p - a
        t = np.divide(np.sum(ap * ab, axis=2), ab2, out=np.zeros((p.shape[0], ab.shape[1])), where=ab2 > 0)
        t = np.clip(t, 0.0, 1.0)
        nearest = a + t[:, :, None] * ab
        out[s:s + chunk] = np.sqrt(np.min(np.sum((p - nearest) ** 2, axis=2), axis=1))
    return out


def _densify(polygons, spacing_mm: float) -> np.ndarray:
    out = []
    for poly in polygons:
        nxt = np.roll(poly, -1, axis=0)
        length = np.hypot(*(nxt - poly).T)
        n = np.maximum(1, np.ceil(length / spacing_mm).astype(int))
        owner = np.repeat(np.arange(len(poly)), n)
        frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
        out.append(poly[owner] + (nxt - poly)[owner] * frac[:, None])
    return np.vstack(out)


def _segments(polygons) -> np.ndarray:
    return np.vstack([np.hstack([p, np.roll(p, -1, axis=0)]) for p in polygons])


@dataclass(frozen=True)
class RadialMargins:
    """In-plane margins of an outer ROI around an inner one, mm.

    Attributes
    ----------
    minimum_mm, median_mm
        Over all points of the inner contours on planes where both ROIs exist
        (signed: negative where the inner contour lies outside the outer).
    planes_compared
        Number of inner planes with an outer cross-section.
    planes_without_outer
        z (mm) of inner planes without one (not part of the radial margin).
    number_of_points
        Inner contour points measured.
    minimum_at_mm
        x, y, z of the point with the smallest margin.
    """

    minimum_mm: float
    median_mm: float
    planes_compared: int
    planes_without_outer: tuple[float, ...]
    number_of_points: int
    minimum_at_mm: tuple[float, float, float]


def radial_margins(inner: Roi, outer: Roi, *, spacing_mm: float = 0.5) -> RadialMargins | None:
    """Signed in-plane distances from the inner contours to the outer contours.

    Parameters
    ----------
    inner, outer
        The ROIs.
    spacing_mm
        Points are taken at the inner contour vertices and along its edges at
        most this far apart, mm.

    Returns
    -------
    RadialMargins or None
        None when no plane of the inner ROI has an outer cross-section.

    Raises
    ------
    ValueError
        When either ROI has no closed planar contours.
    """
    _require_planes(inner)
    _require_planes(outer)
    z = np.array(list(inner.planes.keys()), dtype=float)
    polys = list(inner.planes.values())
    outer_polys = list(outer.planes.values())
    which = _outer_plane_for(z, outer)
    distances, where = [], []
    for k in np.flatnonzero(which >= 0):
        pts = _densify(polys[k], spacing_mm)
        region = outer_polys[which[k]]
        d = point_to_segments_distance_mm(pts, _segments(region))
        d = np.where(points_in_polygons(pts, region), d, -d)
        distances.append(d)
        where.append(np.column_stack([pts, np.full(len(pts), z[k])]))
    if not distances:
        return None
    d_all = np.concatenate(distances)
    at = np.vstack(where)[int(np.argmin(d_all))]
    return RadialMargins(
        minimum_mm=float(d_all.min()),
        median_mm=float(np.median(d_all)),
        planes_compared=len(distances),
        planes_without_outer=tuple(float(v) for v in z[which < 0]),
        number_of_points=int(len(d_all)),
        minimum_at_mm=(float(at[0]), float(at[1]), float(at[2])),
    )
