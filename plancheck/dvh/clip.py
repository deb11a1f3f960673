"""Clipping of planar contours to an axis-aligned box (pure numpy), and the volume
of a structure above an isodose from a fine sampling of its part near that isodose.

The clipping lets the DVH engine sample only the part of a large structure (the
External) that lies in a small region — the box of the dose grid where the dose
reaches an isodose — finely, instead of the whole structure coarsely
(:func:`local_isodose_volume`).

Each polygon is clipped on its own against the rectangle with the
Sutherland–Hodgman algorithm (the rectangle is convex, so the result is one
polygon, possibly with zero-width "bridges" along the rectangle's sides where a
concave polygon leaves and re-enters it; they enclose no area and are crossed an
even number of times by any scanline, so they change neither the shoelace area
nor the even-odd fill). For a point inside the rectangle, being inside the
clipped polygon is the same as being inside the original one, so the even-odd
combination of a plane's clipped contours is the plane's region intersected
with the rectangle: holes stay holes, islands stay islands.

A clipped hole that reaches the rectangle's side shares that side with the
clipped outer contour; :func:`plancheck.dvh.rasterize.plane_areas_mm2` then
cannot prove the nesting from the vertices and the sampler takes such a plane's
area from its raster (noted in the sampling).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from plancheck.model.dose import DoseGrid
from plancheck.model.structures import Contour, Roi

__all__ = [
    "Rect", "clip_polygon", "clip_polygons", "clip_planes", "clipped_roi", "polygon_area_mm2",
    "Box", "isodose_box", "LocalVolume", "local_isodose_volume",
]

Rect = tuple[float, float, float, float]
"""An axis-aligned rectangle ``(xmin, xmax, ymin, ymax)``, mm."""

_AREA_EPS_MM2 = 1e-9
"""Clipped polygons with less area than this are dropped (degenerate slivers)."""


def polygon_area_mm2(poly: np.ndarray) -> float:
    """Signed shoelace area of a polygon (counter-clockwise positive), mm²."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _clip_half_plane(poly: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """Sutherland–Hodgman step: the part of ``poly`` with ``coord >= bound`` (``keep_above``)
    or ``coord <= bound``; vectorised over the edges."""
    if len(poly) == 0:
        return poly
    s = poly[:, axis] - bound
    if not keep_above:
        s = -s
    inside = s >= 0
    if inside.all():
        return poly
    if not inside.any():
        return poly[:0]
    prev = np.roll(poly, 1, axis=0)
    s_prev = np.roll(s, 1)
    inside_prev = np.roll(inside, 1)
    crossing = inside != inside_prev
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crossing, s_prev / (s_prev - s), 0.0)
    inter = prev + t[:, None] * (poly - prev)
    inter[:, axis] = np.where(crossing, bound, inter[:, axis])  # exactly on the side
    # for the edge prev -> cur: the crossing point (if any), then cur (if inside)
    pts = np.stack([inter, poly], axis=1)
    keep = np.stack([crossing, inside], axis=1)
    return pts[keep]


def _dedupe(poly: np.ndarray) -> np.ndarray:
    """Drop consecutive repeated vertices (closing pair included)."""
    if len(poly) < 2:
        return poly
    same = np.all(poly == np.roll(poly, -1, axis=0), axis=1)
    return poly[~same] if same.any() else poly


def clip_polygon(poly: np.ndarray, rect: Rect) -> np.ndarray:
    """The polygon clipped to the rectangle, ``(M, 2)``; ``M == 0`` when nothing (of
    positive area) is left.

    Parameters
    ----------
    poly
        ``(N, 2)`` x, y in mm (closed implicitly, any orientation; concave allowed).
    rect
        ``(xmin, xmax, ymin, ymax)``, mm.

    Examples
    --------
    >>> sq = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=float)
    >>> polygon_area_mm2(clip_polygon(sq, (2, 10, -1, 3)))
    6.0
    """
    xmin, xmax, ymin, ymax = (float(v) for v in rect)
    p = np.asarray(poly, dtype=float).reshape(-1, 2)
    if len(p) < 3 or xmin >= xmax or ymin >= ymax:
        return p[:0]
    lo, hi = p.min(axis=0), p.max(axis=0)
    if lo[0] >= xmin and hi[0] <= xmax and lo[1] >= ymin and hi[1] <= ymax:
        return p  # wholly inside
    if hi[0] <= xmin or lo[0] >= xmax or hi[1] <= ymin or lo[1] >= ymax:
        return p[:0]  # wholly outside
    for axis, bound, above in ((0, xmin, True), (0, xmax, False), (1, ymin, True), (1, ymax, False)):
        p = _clip_half_plane(p, axis, bound, above)
        if len(p) == 0:
            return p
    p = _dedupe(p)
    if len(p) < 3 or abs(polygon_area_mm2(p)) <= _AREA_EPS_MM2:
        return p[:0]
    return p


def clip_polygons(polygons: Sequence[np.ndarray], rect: Rect) -> tuple[np.ndarray, ...]:
    """Clip every polygon of a plane; polygons with nothing left are dropped."""
    out = (clip_polygon(p, rect) for p in polygons)
    return tuple(p for p in out if len(p))


def clip_planes(planes: Mapping[float, Sequence[np.ndarray]], rect: Rect) -> dict[float, tuple[np.ndarray, ...]]:
    """``{z: polygons}`` clipped to the rectangle; planes with nothing left are dropped."""
    out = {}
    for z, polygons in planes.items():
        clipped = clip_polygons(polygons, rect)
        if clipped:
            out[z] = clipped
    return out


def clipped_roi(roi: Roi, rect: Rect, planes_z: Sequence[float] | None = None) -> Roi:
    """A copy of ``roi`` with its closed planar contours clipped to ``rect`` in x/y,
    keeping only the planes ``planes_z`` (keys of :attr:`Roi.planes`; all when None).
    Planes with nothing inside the rectangle are dropped."""
    planes = roi.planes
    if planes_z is not None:
        planes = {z: planes[z] for z in planes_z}
    contours = []
    for z, polygons in clip_planes(planes, rect).items():
        for poly in polygons:
            contours.append(Contour(np.column_stack([poly, np.full(len(poly), z)])))
    return Roi(roi.number, roi.name, roi.interpreted_type, tuple(contours), roi.color_rgb,
               image_slices_z_mm=roi.image_slices_z_mm)


# ---------------------------------------------------------------------------------------------
# Volume above an isodose from a local sampling

Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
"""An axis-aligned box ``((xmin, xmax), (ymin, ymax), (zmin, zmax))``, mm."""

_TOL_MM = 1e-6

_MIN_STEP_MM = 0.1
"""Finest lattice step of a local sampling, mm."""


def _face_below(axis: np.ndarray, i: int) -> float:
    """Lower face of voxel ``i`` (half a spacing below its centre; see DoseGrid)."""
    if len(axis) == 1:
        return float(axis[0]) - 0.5
    h = axis[i] - axis[i - 1] if i > 0 else axis[1] - axis[0]
    return float(axis[i] - h / 2)


def _face_above(axis: np.ndarray, i: int) -> float:
    if len(axis) == 1:
        return float(axis[0]) + 0.5
    h = axis[i + 1] - axis[i] if i < len(axis) - 1 else axis[-1] - axis[-2]
    return float(axis[i] + h / 2)


def isodose_box(grid: DoseGrid, dose_gy: float) -> Box | None:
    """The box of the dose grid outside which the interpolated dose is below ``dose_gy``.

    The voxels with dose ≥ ``dose_gy`` span index ranges ``[i0, i1]`` per axis; the
    box runs from the face of voxel ``i0 - 1`` to the far face of voxel ``i1 + 1``
    (one voxel plus half a voxel beyond the last such voxel centre), clipped to the
    region the grid covers. Trilinear dose in a cell is a convex combination of its
    eight corners, and a point in the grid's outer half-voxel shell takes the value
    of the nearest centre plane, so any covered point with dose ≥ ``dose_gy`` is at
    least half a voxel inside the box. None when no voxel reaches ``dose_gy``.
    """
    mask = np.asarray(grid.dose_gy) >= dose_gy
    if not mask.any():
        return None
    out = []
    for axis, other in ((np.asarray(grid.x_mm), (0, 1)), (np.asarray(grid.y_mm), (0, 2)), (np.asarray(grid.z_mm), (1, 2))):
        hit = np.flatnonzero(mask.any(axis=other))
        i0, i1 = int(hit[0]), int(hit[-1])
        out.append((_face_below(axis, max(i0 - 1, 0)), _face_above(axis, min(i1 + 1, len(axis) - 1))))
    return tuple(out)  # type: ignore[return-value]


def _grid_extent(grid: DoseGrid) -> Box:
    return tuple((_face_below(np.asarray(a), 0), _face_above(np.asarray(a), len(a) - 1))  # type: ignore[return-value]
                 for a in (grid.x_mm, grid.y_mm, grid.z_mm))


@dataclass(frozen=True)
class LocalVolume:
    """Volume of a structure receiving at least a dose, from a local fine sampling.

    Attributes
    ----------
    volume_cc
        Volume receiving ≥ the dose, cc; None when it could not be computed locally
        (``note`` says why; the caller falls back to the whole-structure DVH).
    box_mm
        The isodose box sampled (None when no voxel reaches the dose).
    step_mm
        In-plane lattice step of the local sampling, mm (0 when nothing was sampled).
    samples
        Sample cells in the box.
    sampled_cc
        Volume of the structure in the box, cc.
    inside_grid
        Whether the whole structure lies in the region the dose grid covers: when
        not, the part outside has unknown dose and the volume is a lower bound.
    note
        How the volume was obtained, or why it could not be.
    """

    volume_cc: float | None
    box_mm: Box | None
    step_mm: float
    samples: int
    sampled_cc: float
    inside_grid: bool
    note: str


def _inside(roi: Roi, lo: np.ndarray, hi: np.ndarray, box: Box) -> bool:
    (x0, x1), (y0, y1), (z0, z1) = box
    xy = np.vstack([p for polygons in roi.planes.values() for p in polygons])
    return bool(xy[:, 0].min() >= x0 - _TOL_MM and xy[:, 0].max() <= x1 + _TOL_MM and xy[:, 1].min() >= y0 - _TOL_MM
                and xy[:, 1].max() <= y1 + _TOL_MM and lo[0] >= z0 - _TOL_MM and hi[-1] <= z1 + _TOL_MM)


def local_isodose_volume(
    roi: Roi,
    grid: DoseGrid,
    dose_gy: float,
    *,
    target_samples: int | None = None,
    max_step_mm: float | None = None,
    default_thickness_mm: float | None = None,
) -> LocalVolume:
    """Volume of ``roi`` receiving at least ``dose_gy``, sampled finely in the isodose box.

    Outside :func:`isodose_box` the dose is below ``dose_gy``, so the volume of the
    whole structure above it is the volume of its part in the box above it. That
    part is sampled on its own — contours clipped to the box in x/y
    (:func:`clipped_roi`), planes whose slab misses the box dropped — with the
    default number of sample cells, which resolves a small box far more finely
    than a sampling of the whole structure.

    The slab model is the whole structure's: the slab faces come from all its
    planes (:func:`plancheck.dvh.sampling.slab_bounds`), the planes next to the box
    are sampled too so the kept boundary slabs get their true inner faces, the
    cells are split at the box faces and at the slab faces, and only cells inside
    the box and inside their plane's slab of the whole structure are counted — no
    end cap is made up at a box face.

    Parameters
    ----------
    target_samples
        Sample cells aimed for in the box (the sampler's default when None).
    max_step_mm
        Coarsest lattice step (default: the dose grid's smallest spacing).
    default_thickness_mm
        Slab thickness of a structure contoured on one plane (default: the dose
        grid's z spacing, as for the whole-structure DVH).
    """
    from plancheck.dvh.engine import PointDoseSource, dvh_from_sources
    from plancheck.dvh.sampling import DEFAULT_TARGET_SAMPLES, sample_roi, slab_bounds

    planes = roi.planes
    if not planes:
        return LocalVolume(None, None, 0.0, 0, 0.0, False, "the structure has no closed planar contours")
    spacing = [s for s in grid.spacing_mm if s > 0]
    thickness = default_thickness_mm or (grid.spacing_mm[2] or None)
    z_all = np.array(list(planes), dtype=float)
    lo, hi, _, _ = slab_bounds(z_all, thickness, image_slices_z_mm=roi.image_slices_z_mm)
    inside_grid = _inside(roi, lo, hi, _grid_extent(grid))
    box = isodose_box(grid, dose_gy)
    if box is None:
        return LocalVolume(0.0, None, 0.0, 0, 0.0, inside_grid,
                           f"no dose voxel reaches {dose_gy:.4g} Gy: the interpolated dose is below it everywhere")
    (x0, x1), (y0, y1), (zb0, zb1) = box
    kept = (hi > zb0 + _TOL_MM) & (lo < zb1 - _TOL_MM)
    # Lattice step for about target_samples cells in the box (the rectangle's area times the
    # cells of each kept slab in the box, split at the dose planes), and the rectangle widened
    # to multiples of it: the sampler's lattice (anchored at multiples of the step) then tiles
    # the rectangle exactly, so the cells along the box faces are whole cells and the sampler's
    # exact-area scaling of a plane's weights is not spread over the hot cells inside.
    grid_z = np.asarray(grid.z_mm, dtype=float)
    seg_lo, seg_hi = np.maximum(lo[kept], zb0), np.minimum(hi[kept], zb1)
    segments = np.searchsorted(grid_z, seg_hi - _TOL_MM) - np.searchsorted(grid_z, seg_lo + _TOL_MM, side="right") + 1
    cap = max_step_mm or (min(spacing) if spacing else 3.0)
    step = ((x1 - x0) * (y1 - y0) * max(int(segments.sum()), 1) / (target_samples or DEFAULT_TARGET_SAMPLES)) ** 0.5
    step = float(min(max(step, _MIN_STEP_MM), cap))
    x0, x1 = np.floor(x0 / step) * step, np.ceil(x1 / step) * step
    y0, y1 = np.floor(y0 / step) * step, np.ceil(y1 / step) * step
    box = ((float(x0), float(x1)), (float(y0), float(y1)), (zb0, zb1))
    box_text = f"box x {x0:.1f}..{x1:.1f}, y {y0:.1f}..{y1:.1f}, z {zb0:.1f}..{zb1:.1f} mm"
    if not kept.any():
        return LocalVolume(0.0, box, 0.0, 0, 0.0, inside_grid, f"no slab of the structure meets the isodose {box_text}")
    first, last = int(np.flatnonzero(kept)[0]), int(np.flatnonzero(kept)[-1])
    chosen = range(max(first - 1, 0), min(last + 1, len(z_all) - 1) + 1)  # kept planes and one guard each side
    sub = clipped_roi(roi, (x0, x1, y0, y1), [float(z_all[k]) for k in chosen])
    if sub.is_empty:
        return LocalVolume(0.0, box, 0.0, 0, 0.0, inside_grid, f"the structure does not meet the isodose {box_text}")
    z_sub = np.array(list(sub.planes), dtype=float)
    full = np.searchsorted(z_all, z_sub - 1e-3)  # index of each sampled plane in the whole structure
    if not np.allclose(z_all[np.minimum(full, len(z_all) - 1)], z_sub, atol=1e-3):
        return LocalVolume(None, box, 0.0, 0, 0.0, inside_grid, "clipped planes do not match the structure's planes")
    # the part of each sampled plane's slab (whole-structure model) that lies in the box
    want_lo = np.maximum(lo[full], zb0)
    want_hi = np.minimum(hi[full], zb1)
    counted = kept[full] & (want_hi > want_lo + _TOL_MM)
    sub_lo, sub_hi, _, _ = slab_bounds(z_sub, thickness, image_slices_z_mm=roi.image_slices_z_mm)
    short = counted & ((sub_lo > want_lo + _TOL_MM) | (sub_hi < want_hi - _TOL_MM))
    if short.any():
        return LocalVolume(None, box, 0.0, 0, 0.0, inside_grid,
                           "the slabs of the clipped planes do not cover the structure's slabs in the box")
    split = np.unique(np.concatenate([grid_z, [zb0, zb1], want_lo[counted], want_hi[counted]]))
    sampling = sample_roi(sub, min_step_mm=step, max_step_mm=step, default_thickness_mm=thickness, split_z_mm=split)
    if not sampling.cell_columns:
        return LocalVolume(None, box, 0.0, 0, 0.0, inside_grid, "the clipped structure could not be sampled")
    z_cells = sampling.cell_columns[0].z_mm  # (planes, S) cell centres, shared by all columns
    keep_table = (counted[:, None] & (z_cells > want_lo[:, None]) & (z_cells < want_hi[:, None])).astype(float)
    keep = np.concatenate([c.slot_major(keep_table) for c in sampling.cell_columns])
    weights = sampling.weights_cc * keep
    local = dataclasses.replace(sampling, points_mm=None, heights_mm=None, weights_cc=weights,
                                volume_cc=float(weights.sum()), extreme_points_mm=np.zeros((0, 3)), extreme_columns=None)
    dvh = dvh_from_sources(sub, local, [PointDoseSource(grid)])
    volume = dvh.covered_volume_at_dose_cc(dose_gy)
    n = int(np.count_nonzero(keep))
    return LocalVolume(volume, box, sampling.step_mm, n, local.volume_cc, inside_grid,
                       f"local sampling of the structure in the isodose {box_text} "
                       f"({n} cells, {sampling.step_mm:.2g} mm lattice)")
