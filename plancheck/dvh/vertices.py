"""Dose-grid points inside a structure: where its dose takes an interior extreme.

Trilinear dose is linear along each axis inside a dose voxel, so on any part of a voxel its
largest and smallest value lie on that part's boundary; going down from faces to edges to
corners, the extremes of the dose over a structure lie on the structure's surface or at dose-grid
points (voxel centres) inside it. The sampling's surface points cover the surface
(:mod:`plancheck.dvh.sampling`); the sample cells' centres lie between the dose planes and miss
the grid points, so a hot or cold spot peaking at a voxel centre inside a structure would be
missed by up to the dose's curvature over half a voxel (an audit measured −9 Gy for a 40 Gy peak
of 2.5 mm width on a 3 mm grid). :func:`grid_points_inside` finds those grid points; the DVH engine
adds the dose there to the extreme points (:func:`plancheck.dvh.engine.dvh_from_sources`).

Inside means inside the ROI's slab model: the dose plane lies in a contour plane's slab (faces
included) and the point in that plane's even-odd region (the sample lattice's rasteriser, on a
lattice whose points are the grid's points).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from plancheck.dvh.rasterize import PlaneLattice, PolygonSet, expand_ranges, rasterize_polygon_set
from plancheck.model.dose import DoseGrid
from plancheck.model.structures import Roi

__all__ = ["grid_points_inside"]

_FACE_TOLERANCE_MM = 1e-6
"""A dose plane this close to a slab face belongs to the slab."""


def grid_points_inside(roi: Roi, slab_lo_mm: np.ndarray, slab_hi_mm: np.ndarray,
                       grid: DoseGrid) -> np.ndarray | None:
    """Flat indices ``k · ny · nx + j · nx + i`` (into ``grid.dose_gy.ravel()``, which is
    ``dose_gy[k, j, i]``) of the grid points inside the ROI, ascending.

    Parameters
    ----------
    roi
        The structure (its closed planar contours, :attr:`Roi.planes`).
    slab_lo_mm, slab_hi_mm
        The lower and upper face (mm) of each contour plane's slab, in the order of
        ``roi.planes`` (:attr:`plancheck.dvh.sampling.RoiSampling.slab_lo_mm`).
    grid
        The dose grid.

    Returns
    -------
    int64 array, or None when the grid's x or y spacing is not constant or it has one voxel
    along x or y (:attr:`DoseGrid.regular_steps_mm`; the grid points are then not looked for).
    """
    dx, dy, _ = grid.regular_steps_mm  # axes increase (DoseGrid)
    empty = np.zeros(0, dtype=np.int64)
    if dx is None or dy is None:
        return None
    planes = roi.planes
    if not planes:
        return empty
    lo = np.asarray(slab_lo_mm, dtype=float)
    hi = np.asarray(slab_hi_mm, dtype=float)
    zg = np.asarray(grid.z_mm, dtype=float)
    # the contour plane whose slab holds each dose plane (slabs ascend and do not overlap)
    plane = np.searchsorted(hi, zg - _FACE_TOLERANCE_MM, side="left")
    inside = plane < len(hi)
    plane = np.minimum(plane, len(hi) - 1)
    inside &= lo[plane] <= zg + _FACE_TOLERANCE_MM
    dose_planes = np.flatnonzero(inside)
    if dose_planes.size == 0:
        return empty
    used = np.unique(plane[dose_planes])
    polygons = list(planes.values())
    x0, y0 = float(grid.x_mm[0]), float(grid.y_mm[0])
    # grid point (i, j) is lattice point (i, j) of a unit lattice in grid-index coordinates
    pset = PolygonSet.from_planes([polygons[p] for p in used])
    scaled = replace(pset, vertices=(pset.vertices - (x0, y0)) / (dx, dy))
    lattice = PlaneLattice(-0.5, -0.5, 1.0, len(grid.x_mm), len(grid.y_mm))
    where, col, row = rasterize_polygon_set(scaled, lattice)
    starts = np.searchsorted(where, np.arange(len(used) + 1))  # points come plane after plane
    slot = np.searchsorted(used, plane[dose_planes])
    owner, pick = expand_ranges(starts[slot], starts[slot + 1] - starts[slot])
    nx = len(grid.x_mm)
    return (dose_planes[owner] * (len(grid.y_mm) * nx) + row[pick] * nx + col[pick]).astype(np.int64)
