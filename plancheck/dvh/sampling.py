"""Volume model of an ROI: weighted sample points that fill it.

The geometric model (one model for volume and dose):

* Each contour plane at ``z_k`` stands for a slab whose faces lie half-way to
  the neighbouring planes; the first and last slabs (and slabs next to a gap in
  the stack) extend half the nominal contour spacing beyond their plane — the
  "½-slice end-cap" convention of most planning systems and of the Nelms 2015
  benchmark.
* In a slab the cross-section is the plane's even-odd region. It is sampled on
  a square lattice of side ``step_mm`` (super-sampling the dose grid); through
  the slab each lattice point becomes a column split at the dose planes, so
  every sample cell lies between two dose planes, where trilinear dose is
  linear in z. The DVH engine spreads each cell's volume over the range of
  dose inside it (from the local gradient), so dose is integrated through the
  slab — end-cap slabs included — rather than read at a few points.
* The weights of a plane's samples are scaled so that they add up to the
  exact polygon area (shoelace formula, even-odd nesting) times the slab
  thickness: the ROI volume is exact for the model, whatever the lattice step.
* Zero-weight *extreme points* (contour vertices and edge points on both slab
  faces, and the end-cap faces) let the minimum and maximum dose be found on
  the structure surface, where they lie for a smooth dose.

The lattice step adapts to the ROI so that about ``target_samples`` lattice
points are used over all planes, within ``[min_step_mm, max_step_mm]``: small
structures are sampled finely (≈0.05–0.2 mm), large ones no coarser than the
dose grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plancheck.dvh.rasterize import PlaneLattice, even_odd_area_mm2, rasterize_planes
from plancheck.model.structures import Roi

__all__ = ["RoiSampling", "sample_roi", "DEFAULT_TARGET_SAMPLES"]

DEFAULT_TARGET_SAMPLES = 150_000
"""Sample cells aimed for per ROI (lattice points x segments, before clipping the step)."""

_GAP_FACTOR = 1.5
"""Planes further apart than this many nominal spacings are a gap in the stack."""


@dataclass(frozen=True, eq=False)
class RoiSampling:
    """Weighted sample points filling an ROI.

    Attributes
    ----------
    points_mm
        ``(N, 3)`` x, y, z in mm of the centres of the sample cells.
    heights_mm
        ``(N,)`` height (z extent) of each cell, mm; its x and y extent is ``step_mm``.
    weights_cc
        ``(N,)`` volume represented by each sample, cc; sums to ``volume_cc``.
    extreme_points_mm
        ``(M, 3)`` surface points (zero weight) used for minimum and maximum dose.
    volume_cc
        Volume of the ROI in the slab model, cc.
    step_mm
        In-plane lattice step, mm.
    thickness_mm
        Nominal contour spacing used for end caps, mm.
    notes
        Remarks on the geometry (assumed thickness, non-nested contours ...).
    """

    points_mm: np.ndarray
    heights_mm: np.ndarray
    weights_cc: np.ndarray
    extreme_points_mm: np.ndarray
    volume_cc: float
    step_mm: float
    thickness_mm: float
    notes: tuple[str, ...] = ()

    @property
    def number_of_samples(self) -> int:
        return int(len(self.weights_cc))


def _slab_bounds(z: np.ndarray, default_thickness_mm: float | None) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Lower and upper face of each plane's slab, and the nominal spacing."""
    notes: list[str] = []
    if len(z) == 1:
        t = default_thickness_mm if default_thickness_mm and default_thickness_mm > 0 else 1.0
        notes.append(f"single contour plane: slab thickness {t:g} mm assumed")
        return z - t / 2, z + t / 2, t, notes
    gaps = np.diff(z)
    t = float(np.median(gaps))
    lo = np.empty_like(z)
    hi = np.empty_like(z)
    lo[0] = z[0] - t / 2
    hi[-1] = z[-1] + t / 2
    big = gaps > _GAP_FACTOR * t
    mid = (z[:-1] + z[1:]) / 2
    hi[:-1] = np.where(big, z[:-1] + t / 2, mid)
    lo[1:] = np.where(big, z[1:] - t / 2, mid)
    if big.any():
        notes.append(f"{int(big.sum())} gap(s) in the contour stack: slabs end half a spacing ({t / 2:g} mm) from the plane")
    return lo, hi, t, notes


def _edge_points(polygons: tuple[np.ndarray, ...], step_mm: float) -> np.ndarray:
    """Vertices plus points along each edge no further apart than ``step_mm``."""
    out = []
    for poly in polygons:
        nxt = np.roll(poly, -1, axis=0)
        length = np.hypot(*(nxt - poly).T)
        n = np.maximum(1, np.ceil(length / step_mm).astype(int))
        owner = np.repeat(np.arange(len(poly)), n)
        frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
        out.append(poly[owner] + (nxt - poly)[owner] * frac[:, None])
    return np.vstack(out)


def sample_roi(
    roi: Roi,
    *,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
    min_step_mm: float = 0.1,
    max_step_mm: float = 3.0,
    default_thickness_mm: float | None = None,
    split_z_mm: np.ndarray | None = None,
) -> RoiSampling:
    """Fill an ROI with weighted sample points (see the module docstring for the model).

    Parameters
    ----------
    roi
        The ROI; only its closed planar contours are used.
    target_samples
        Lattice points aimed for, over all planes.
    min_step_mm, max_step_mm
        Bounds of the lattice step, mm. Callers pass the dose grid's smallest
        spacing as ``max_step_mm`` so a large organ is never sampled coarser
        than its dose.
    default_thickness_mm
        Slab thickness for an ROI contoured on a single plane (e.g. the CT
        slice thickness or dose grid spacing); 1 mm when not given.
    split_z_mm
        z positions of the dose planes: cells are split there, and surface
        points are added there, so extremes between faces are not missed.

    Returns
    -------
    RoiSampling
        Empty (zero samples, zero volume) for an ROI without closed contours.
    """
    planes = roi.planes
    if not planes:
        empty = np.zeros((0, 3))
        return RoiSampling(empty, np.zeros(0), np.zeros(0), empty, 0.0, 0.0, 0.0, ("no closed planar contours",))
    z = np.array(list(planes.keys()), dtype=float)
    polys = list(planes.values())
    lo, hi, thickness, notes = _slab_bounds(z, default_thickness_mm)
    slab = hi - lo

    areas = []
    for k, plane_polys in enumerate(polys):
        area = even_odd_area_mm2(plane_polys)
        if area is None:
            notes.append(f"contours at z={z[k]:g} mm overlap without nesting: area from the raster")
        areas.append(area)
    rough_area = np.array([a if a is not None else sum(abs(_area(p)) for p in pp) for a, pp in zip(areas, polys)])
    split = np.unique(np.asarray(split_z_mm, dtype=float)) if split_z_mm is not None else np.zeros(0)
    seg_plane, seg_lo, seg_hi = _segments(lo, hi, split)
    seg_count = np.bincount(seg_plane, minlength=len(z))
    area_estimate = float(np.sum(rough_area * seg_count))  # lattice cells x segments, per mm^2 of step
    if area_estimate <= 0:
        empty = np.zeros((0, 3))
        return RoiSampling(empty, np.zeros(0), np.zeros(0), empty, 0.0, 0.0, thickness, tuple(notes + ["zero-area contours"]))
    step = (area_estimate / target_samples) ** 0.5
    step = float(min(max(step, min_step_mm), max_step_mm))

    all_xy = np.vstack([p for pp in polys for p in pp])
    x0 = math.floor(all_xy[:, 0].min() / step) * step - step
    y0 = math.floor(all_xy[:, 1].min() / step) * step - step
    nx = int(math.ceil((all_xy[:, 0].max() - x0) / step)) + 2
    ny = int(math.ceil((all_xy[:, 1].max() - y0) / step)) + 2
    lattice = PlaneLattice(x0, y0, step, nx, ny)
    plane_idx, col, row = rasterize_planes(polys, lattice)
    x = x0 + (col + 0.5) * step
    y = y0 + (row + 0.5) * step

    counts = np.bincount(plane_idx, minlength=len(z))
    area = np.array([a if a is not None else counts[k] * step * step for k, a in enumerate(areas)])
    # A plane whose polygons are smaller than one lattice cell: one sample at its centroid.
    tiny = np.flatnonzero((counts == 0) & (area > 0))
    if tiny.size:
        cx = [np.mean(np.vstack(polys[k])[:, 0]) for k in tiny]
        cy = [np.mean(np.vstack(polys[k])[:, 1]) for k in tiny]
        plane_idx = np.concatenate([plane_idx, tiny])
        x = np.concatenate([x, cx])
        y = np.concatenate([y, cy])
        counts = np.bincount(plane_idx, minlength=len(z))
    area_per_sample = np.divide(area, counts, out=np.zeros_like(area), where=counts > 0)

    # Columns through each slab, split at the dose planes.
    reps = seg_count[plane_idx]
    owner = np.repeat(np.arange(len(plane_idx)), reps)
    first_seg = np.cumsum(seg_count) - seg_count
    seg = np.repeat(first_seg[plane_idx], reps) + (np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps))
    heights = seg_hi[seg] - seg_lo[seg]
    zs = (seg_lo[seg] + seg_hi[seg]) / 2
    weights_mm3 = area_per_sample[plane_idx[owner]] * heights
    points = np.column_stack([x[owner], y[owner], zs])

    extremes = _extreme_points(polys, z, lo, hi, step, x, y, plane_idx, split)
    return RoiSampling(
        points_mm=points,
        heights_mm=heights,
        weights_cc=weights_mm3 / 1000.0,
        extreme_points_mm=extremes,
        volume_cc=float(np.sum(area * slab) / 1000.0),
        step_mm=step,
        thickness_mm=thickness,
        notes=tuple(notes),
    )


def _segments(lo: np.ndarray, hi: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each slab ``[lo_k, hi_k]`` at the ``split`` positions strictly inside it.

    Returns the plane index, lower and upper z of every segment, ordered by plane.
    """
    seg_plane, seg_lo, seg_hi = [], [], []
    for k in range(len(lo)):
        inner = split[(split > lo[k] + 1e-6) & (split < hi[k] - 1e-6)]
        bounds = np.concatenate([[lo[k]], inner, [hi[k]]])
        seg_plane.append(np.full(len(bounds) - 1, k))
        seg_lo.append(bounds[:-1])
        seg_hi.append(bounds[1:])
    return np.concatenate(seg_plane), np.concatenate(seg_lo), np.concatenate(seg_hi)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _extreme_points(polys, z, lo, hi, step, x, y, plane_idx, extra) -> np.ndarray:
    """Surface points: contour edges on both slab faces (and at extra z inside the
    slab), and the interior samples on the outer faces of end slabs."""
    blocks = []
    for k, plane_polys in enumerate(polys):
        edge = _edge_points(plane_polys, step)
        zs = np.array([lo[k], hi[k]] + (extra[(extra > lo[k]) & (extra < hi[k])].tolist() if extra.size else []))
        block = np.empty((len(edge) * len(zs), 3))
        block[:, :2] = np.tile(edge, (len(zs), 1))
        block[:, 2] = np.repeat(zs, len(edge))
        blocks.append(block)
    # End caps: faces not shared with a neighbouring slab.
    shared_below = np.zeros(len(z), dtype=bool)
    shared_below[1:] = np.isclose(lo[1:], hi[:-1])
    shared_above = np.zeros(len(z), dtype=bool)
    shared_above[:-1] = shared_below[1:]
    for k in np.flatnonzero(~shared_below | ~shared_above):
        sel = plane_idx == k
        if not shared_below[k]:
            blocks.append(np.column_stack([x[sel], y[sel], np.full(sel.sum(), lo[k])]))
        if not shared_above[k]:
            blocks.append(np.column_stack([x[sel], y[sel], np.full(sel.sum(), hi[k])]))
    return np.vstack(blocks) if blocks else np.zeros((0, 3))
