"""Trilinear dose interpolation at arbitrary points of the patient frame.

A dose grid value is the dose at its voxel centre; between centres the dose is
trilinear. Each voxel fills the box of half a spacing around its centre, so a
point in the outer half-voxel shell of the grid takes the value of the nearest
centre plane (constant extrapolation) and counts as covered; a point beyond
that shell is *not covered* and gets NaN.

The gradient of the trilinear field comes with the value at little extra cost
(the same eight corner values); the DVH engine uses it to spread each sample's
volume over the range of dose inside its cell.
"""

from __future__ import annotations

import numpy as np

from plancheck.model.dose import DoseGrid

__all__ = ["grid_extent_mm", "covered_by_grid", "trilinear_dose_gy", "trilinear_dose_and_gradient"]


def _half_extent(axis: np.ndarray) -> tuple[float, float]:
    if len(axis) == 1:
        return 0.5, 0.5
    return float(axis[1] - axis[0]) / 2, float(axis[-1] - axis[-2]) / 2


def grid_extent_mm(grid: DoseGrid) -> tuple[tuple[float, float], ...]:
    """``((xmin, xmax), (ymin, ymax), (zmin, zmax))`` of the region the grid covers, mm."""
    out = []
    for axis in (grid.x_mm, grid.y_mm, grid.z_mm):
        lo, hi = _half_extent(axis)
        out.append((float(axis[0]) - lo, float(axis[-1]) + hi))
    return tuple(out)


def covered_by_grid(grid: DoseGrid, points_mm: np.ndarray) -> np.ndarray:
    """Whether each ``(N, 3)`` point lies in the region the grid covers."""
    covered = np.ones(len(points_mm), dtype=bool)
    for dim, (lo, hi) in enumerate(grid_extent_mm(grid)):
        c = points_mm[:, dim]
        covered &= (c >= lo - 1e-6) & (c <= hi + 1e-6)
    return covered


def _fractional_index(axis: np.ndarray, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index, weight of the upper one (clamped to the axis) and
    the derivative of that weight with respect to the coordinate (1/mm; 0 outside)."""
    n = len(axis)
    if n == 1:
        zeros = np.zeros(len(coord), dtype=np.int64)
        return zeros, zeros, np.zeros(len(coord)), np.zeros(len(coord))
    steps = np.diff(axis)
    if np.allclose(steps, steps[0], rtol=1e-6, atol=1e-6):  # regular axis: arithmetic, no search
        step = float(steps[0])
        f = np.clip((coord - float(axis[0])) / step, 0.0, n - 1.0)
        i0 = np.minimum(f.astype(np.int64), n - 2)
        inside = (f > 0.0) & (f < n - 1.0)
        return i0, i0 + 1, f - i0, np.where(inside, 1.0 / step, 0.0)
    f = np.interp(coord, axis, np.arange(n, dtype=float))
    i0 = np.minimum(np.floor(f).astype(np.int64), n - 2)
    inside = (coord > axis[0]) & (coord < axis[-1])
    dfdc = np.where(inside, 1.0 / (axis[i0 + 1] - axis[i0]), 0.0)
    return i0, i0 + 1, f - i0, dfdc


_CHUNK = 65_536
"""Points per block: the temporaries of a block stay in cache (4-5x faster than one pass)."""


def trilinear_dose_and_gradient(
    grid: DoseGrid, points_mm: np.ndarray, dose: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dose (Gy) and its gradient (Gy/mm, ``(N, 3)``) at each ``(N, 3)`` point.

    Points the grid does not cover get NaN dose and zero gradient.
    """
    n = len(points_mm)
    if n <= _CHUNK:
        return _trilinear_block(grid, points_mm, dose)
    out = np.empty(n)
    grad = np.empty((n, 3))
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        out[start:stop], grad[start:stop] = _trilinear_block(grid, points_mm[start:stop], dose)
    return out, grad


def _trilinear_block(grid: DoseGrid, points_mm: np.ndarray, dose: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    values = grid.dose_gy if dose is None else dose
    flat = values.reshape(-1)
    nz, ny, nx = values.shape
    x0, x1, tx, dtx = _fractional_index(grid.x_mm, points_mm[:, 0])
    y0, y1, ty, dty = _fractional_index(grid.y_mm, points_mm[:, 1])
    z0, z1, tz, dtz = _fractional_index(grid.z_mm, points_mm[:, 2])
    # Blend along x on the four (z, y) rows, then along y, then z; gradients from the same values.
    rows = {}
    for kz, zi in ((0, z0), (1, z1)):
        for ky, yi in ((0, y0), (1, y1)):
            base = (zi * ny + yi) * nx
            f0 = flat[base + x0]
            f1 = flat[base + x1]
            rows[kz, ky] = (f0 + tx * (f1 - f0), f1 - f0)
    plane = {}
    for kz in (0, 1):
        (a0, d0), (a1, d1) = rows[kz, 0], rows[kz, 1]
        plane[kz] = (a0 + ty * (a1 - a0), d0 + ty * (d1 - d0), a1 - a0)  # value, d/dx (per index), d/dy
    (v0, gx0, gy0), (v1, gx1, gy1) = plane[0], plane[1]
    out = v0 + tz * (v1 - v0)
    gx = gx0 + tz * (gx1 - gx0)
    gy = gy0 + tz * (gy1 - gy0)
    gz = v1 - v0
    gx *= dtx
    gy *= dty
    gz *= dtz
    covered = covered_by_grid(grid, points_mm)
    out[~covered] = np.nan
    grad = np.column_stack([gx, gy, gz])
    grad[~covered] = 0.0
    return out, grad


def trilinear_dose_gy(grid: DoseGrid, points_mm: np.ndarray, dose: np.ndarray | None = None) -> np.ndarray:
    """Dose (Gy) at each ``(N, 3)`` point; NaN where the grid does not cover it."""
    return trilinear_dose_and_gradient(grid, points_mm, dose)[0]
