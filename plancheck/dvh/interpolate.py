"""Trilinear dose interpolation at arbitrary points of the patient frame.

A dose grid value is the dose at its voxel centre; between centres the dose is
trilinear. Each voxel fills the box of half a spacing around its centre, so a
point in the outer half-voxel shell of the grid takes the value of the nearest
centre plane (constant extrapolation) and counts as covered; a point beyond
that shell is *not covered* and gets NaN.

The gradient of the trilinear field comes with the value at little extra cost
(the same eight corner values); the DVH engine uses it to spread each sample's
volume over the range of dose inside its cell.

The fractional indices of the sample positions are computed here (numpy); the
loops over points, columns and lattice cells run compiled in :mod:`plancheck.kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from plancheck.model.dose import DoseGrid

__all__ = [
    "flat_dose",
    "grid_extent_mm",
    "covered_by_grid", "columns_covered_by_grid",
    "trilinear_dose_gy",
    "trilinear_dose_and_gradient",
    "PointColumns",
    "columns_dose",
    "lattice_dose",
    "columns_dose_and_gradient",
]


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


def _within(coord: np.ndarray, extent: tuple[float, float]) -> np.ndarray:
    """Whether each coordinate lies in ``extent`` (lower, upper; mm), 1e-6 mm tolerance."""
    lo, hi = extent
    return (coord >= lo - 1e-6) & (coord <= hi + 1e-6)


def covered_by_grid(grid: DoseGrid, points_mm: np.ndarray) -> np.ndarray:
    """Whether each ``(N, 3)`` point lies in the region the grid covers."""
    covered = np.ones(len(points_mm), dtype=bool)
    for dim, extent in enumerate(grid_extent_mm(grid)):
        covered &= _within(points_mm[:, dim], extent)
    return covered


def columns_covered_by_grid(grid: DoseGrid, columns: PointColumns) -> np.ndarray:
    """Whether each point of ``columns`` (in their order) lies in the region the grid covers:
    :func:`covered_by_grid` at ``columns.points_mm()`` (the same comparisons on the same
    coordinates), without building the ``(N, 3)`` coordinates (a body has a million cells)."""
    n = columns.number_of_points
    out = np.empty(n, dtype=bool)
    if n == 0:
        return out
    x_extent, y_extent, z_extent = grid_extent_mm(grid)
    xy = columns.positions_mm
    column_in = _within(xy[:, 0], x_extent) & _within(xy[:, 1], y_extent)
    z_in = _within(columns.z_mm, z_extent)
    start = 0
    for j, size in enumerate(columns.slot_sizes()):
        sel = columns.counts[columns.plane] > j
        out[start:start + size] = column_in[sel] & z_in[columns.plane[sel], j]
        start += size
    return out


def _fractional_index(axis: np.ndarray, coord: np.ndarray, step: float | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index, weight of the upper one (clamped to the axis) and
    the derivative of that weight with respect to the coordinate (1/mm; 0 outside).
    ``step`` is the axis's constant spacing (mm; :attr:`DoseGrid.regular_steps_mm`), or
    None when its spacings differ."""
    n = len(axis)
    if n == 1:
        zeros = np.zeros(len(coord), dtype=np.int64)
        return zeros, zeros, np.zeros(len(coord)), np.zeros(len(coord))
    if step is not None:  # regular axis: arithmetic, no search
        f = np.clip((coord - float(axis[0])) / step, 0.0, n - 1.0)
        i0 = np.minimum(f.astype(np.int64), n - 2)
        inside = (f > 0.0) & (f < n - 1.0)
        return i0, i0 + 1, f - i0, np.where(inside, 1.0 / step, 0.0)
    f = np.interp(coord, axis, np.arange(n, dtype=float))
    i0 = np.minimum(np.floor(f).astype(np.int64), n - 2)
    inside = (coord > axis[0]) & (coord < axis[-1])
    dfdc = np.where(inside, 1.0 / (axis[i0 + 1] - axis[i0]), 0.0)
    return i0, i0 + 1, f - i0, dfdc


def _axis_tables(grid: DoseGrid, dim: int, coord: np.ndarray, extent: tuple[float, float]):
    """Fractional index tables of coordinates on the grid's axis ``dim`` (0 x, 1 y, 2 z; see
    :func:`_fractional_index`) and whether each coordinate is covered (within the extent,
    1e-6 mm tolerance)."""
    axis = (grid.x_mm, grid.y_mm, grid.z_mm)[dim]
    i0, i1, t, dt = _fractional_index(axis, coord, grid.regular_steps_mm[dim])
    return i0, i1, t, dt, _within(coord, extent)


def flat_dose(grid: DoseGrid, dose: np.ndarray | None) -> tuple[np.ndarray, int, int]:
    """The grid's dose (or ``dose`` of its shape) as a flat C-ordered array (``D[k, j, i]`` at
    ``k·nxy + j·nx + i``, the kernels' convention), with ``nx`` and ``nxy``."""
    values = grid.dose_gy if dose is None else dose
    nz, ny, nx = values.shape
    return np.ascontiguousarray(values).reshape(-1), nx, ny * nx


_EMPTY = np.zeros(0)


def trilinear_dose_and_gradient(
    grid: DoseGrid, points_mm: np.ndarray, dose: np.ndarray | None = None, *, gradient: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Dose (Gy) and its gradient (Gy/mm, ``(N, 3)``; None without ``gradient``) at each
    ``(N, 3)`` point.

    Points the grid does not cover get NaN dose and zero gradient.
    """
    from plancheck.kernels import point_cells

    points_mm = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    n = len(points_mm)
    flat, nx, nxy = flat_dose(grid, dose)
    extent = grid_extent_mm(grid)
    x = _axis_tables(grid, 0, points_mm[:, 0], extent[0])
    y = _axis_tables(grid, 1, points_mm[:, 1], extent[1])
    z = _axis_tables(grid, 2, points_mm[:, 2], extent[2])
    covered = x[4] & y[4] & z[4]
    out = np.empty(n)
    grad = np.empty((3, n)) if gradient else None
    gx, gy, gz = (grad[0], grad[1], grad[2]) if gradient else (_EMPTY, _EMPTY, _EMPTY)
    point_cells(flat, nx, nxy, *x[:4], *y[:4], *z[:4], covered, out, gx, gy, gz)
    return out, (grad.T if gradient else None)


def trilinear_dose_gy(grid: DoseGrid, points_mm: np.ndarray, dose: np.ndarray | None = None) -> np.ndarray:
    """Dose (Gy) at each ``(N, 3)`` point; NaN where the grid does not cover it."""
    return trilinear_dose_and_gradient(grid, points_mm, dose)[0]


# ---------------------------------------------------------------------------------------------
# Points stacked in columns: the same (x, y) at several z (sample cells, surface points).


@dataclass(frozen=True, eq=False)
class PointColumns:
    """Points arranged in columns: in-plane positions, each repeated at the z positions of its plane.

    Column ``p`` has its in-plane position at ``positions_mm[p]`` and belongs to plane
    ``plane[p]``; it holds a point at each ``z_mm[plane[p], j]`` for ``j < counts[plane[p]]``
    (rows of ``z_mm`` beyond a plane's count are padding: any z of the plane's range).
    Points are ordered *slot-major*: all columns' first points (``j = 0``, in column
    order), then the second points of the columns that have one, and so on.

    When the columns sit on a :class:`~plancheck.dvh.rasterize.PlaneLattice`
    (``lattice``, ``col``, ``row`` given; ``xy_mm`` may then be None), the dose is
    interpolated with per-lattice-column and per-row tables. In any case the in-plane
    (bilinear) part of the trilinear dose is computed once per column and dose plane
    and shared by the column's points.
    """

    xy_mm: np.ndarray | None
    """``(columns, 2)`` in-plane positions, mm; may be None for columns on a lattice
    (then computed from ``lattice``, ``col`` and ``row`` when needed: see :attr:`positions_mm`)."""
    plane: np.ndarray
    z_mm: np.ndarray
    counts: np.ndarray
    lattice: object | None = None
    col: np.ndarray | None = None
    row: np.ndarray | None = None
    z_extent_mm: np.ndarray | None = None
    """Optional ``(planes, S)`` z extent of the cell each point stands for (sample cells)."""

    @cached_property
    def positions_mm(self) -> np.ndarray:
        """``(columns, 2)`` in-plane positions, mm (``xy_mm``, or the lattice positions)."""
        if self.xy_mm is not None:
            return self.xy_mm
        lat = self.lattice
        return np.column_stack([lat.x0_mm + (self.col + 0.5) * lat.step_mm, lat.y0_mm + (self.row + 0.5) * lat.step_mm])

    @property
    def number_of_columns(self) -> int:
        return int(len(self.plane))

    @property
    def slots(self) -> int:
        return int(self.z_mm.shape[1]) if self.z_mm.ndim == 2 else 0

    @cached_property
    def columns_per_plane(self) -> np.ndarray:
        return np.bincount(self.plane, minlength=len(self.counts))

    @cached_property
    def _slot_sizes(self) -> np.ndarray:
        per_plane = self.columns_per_plane
        return np.array([int(per_plane[self.counts > k].sum()) for k in range(self.slots)], dtype=np.int64)

    def slot_sizes(self) -> np.ndarray:
        """Number of points in each slot ``j``."""
        return self._slot_sizes

    @cached_property
    def number_of_points(self) -> int:
        return int(np.dot(self.columns_per_plane, self.counts)) if len(self.plane) else 0

    @cached_property
    def uniform(self) -> bool:
        """Every column has a point in every slot."""
        return bool(np.all(self.counts[self.columns_per_plane > 0] == self.slots))

    def slot_major(self, table: np.ndarray) -> np.ndarray:
        """Values of a per-plane ``(planes, S)`` table at the points, in point order."""
        from plancheck.kernels import slot_major_values

        table = np.asarray(table)
        out = np.empty(self.number_of_points, dtype=table.dtype)
        if len(out):
            slot_major_values(np.asarray(self.plane, dtype=np.int64), np.asarray(self.counts, dtype=np.int64),
                              np.ascontiguousarray(table), out)
        return out

    def points_mm(self) -> np.ndarray:
        """``(N, 3)`` coordinates of the points, in order."""
        n = self.number_of_points
        out = np.empty((n, 3))
        if n == 0:
            return out
        sizes = self.slot_sizes()
        start = 0
        for j, size in enumerate(sizes):
            sel = self.counts[self.plane] > j
            out[start:start + size, 0] = self.positions_mm[sel, 0]
            out[start:start + size, 1] = self.positions_mm[sel, 1]
            out[start:start + size, 2] = self.z_mm[self.plane[sel], j]
            start += size
        return out


def _column_tables(grid: DoseGrid, columns: PointColumns):
    """Fractional-index tables of the columns' in-plane positions (per lattice column
    and row when the columns sit on a lattice) and of their z table."""
    extent = grid_extent_mm(grid)
    lat = columns.lattice
    if lat is not None and columns.col is not None:
        xc = lat.x0_mm + (np.arange(lat.nx) + 0.5) * lat.step_mm
        yc = lat.y0_mm + (np.arange(lat.ny) + 0.5) * lat.step_mm
        col, row = columns.col, columns.row
    else:
        xc = columns.positions_mm[:, 0]
        yc = columns.positions_mm[:, 1]
        col = row = np.arange(columns.number_of_columns)
    x = _axis_tables(grid, 0, xc, extent[0])
    y = _axis_tables(grid, 1, yc, extent[1])
    zt = np.ascontiguousarray(columns.z_mm, dtype=float)
    z = tuple(np.ascontiguousarray(a.reshape(zt.shape)) for a in _axis_tables(grid, 2, zt.reshape(-1), extent[2]))
    return x, y, np.asarray(col, dtype=np.int64), np.asarray(row, dtype=np.int64), z


def columns_dose(
    grid: DoseGrid,
    columns: PointColumns,
    dose: np.ndarray | None = None,
    *,
    gradient: bool = True,
    spread_step_mm: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Dose (Gy) at the points of ``columns``, in their order, with the gradient
    (Gy/mm, ``(N, 3)``) when ``gradient`` and the width of each cell's dose spread
    (Gy; cells ``spread_step_mm`` wide in x and y, ``columns.z_extent_mm`` high) when
    ``spread_step_mm`` is given: the numbers of :func:`trilinear_dose_and_gradient` at
    ``columns.points_mm()``, computed column by column in compiled code."""
    from plancheck.kernels import column_cells

    n = columns.number_of_points
    values = np.empty(n)
    grad = np.empty((3, n)) if gradient else None
    spread = np.empty(n) if spread_step_mm is not None else None
    if n == 0:
        return values, (grad.T if gradient else None), spread
    if spread is not None and columns.z_extent_mm is None:
        raise ValueError("the dose spread needs the cells' z extent (columns.z_extent_mm)")
    flat, nx, nxy = flat_dose(grid, dose)
    x, y, col, row, z = _column_tables(grid, columns)
    heights = np.ascontiguousarray(columns.z_extent_mm, dtype=float) if spread is not None else np.zeros((1, 1))
    gx, gy, gz = (grad[0], grad[1], grad[2]) if gradient else (_EMPTY, _EMPTY, _EMPTY)
    column_cells(flat, nx, nxy, *x, *y, col, row, np.asarray(columns.plane, dtype=np.int64),
                 np.asarray(columns.counts, dtype=np.int64), *z, heights, float(spread_step_mm or 0.0),
                 values, gx, gy, gz, spread if spread is not None else _EMPTY)
    return values, (grad.T if gradient else None), spread


def columns_dose_and_gradient(
    grid: DoseGrid, columns: PointColumns, dose: np.ndarray | None = None, *, gradient: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Dose (Gy) and gradient (Gy/mm, ``(N, 3)``; None when ``gradient`` is False) at the
    points of ``columns``, in their order (see :func:`columns_dose`)."""
    values, grad, _ = columns_dose(grid, columns, dose, gradient=gradient)
    return values, grad


def lattice_dose(
    grid: DoseGrid,
    x0_mm: float,
    y0_mm: float,
    step_mm: float,
    col: np.ndarray,
    row: np.ndarray,
    z_table_mm: np.ndarray,
    zcode: np.ndarray,
    heights_mm: np.ndarray | None = None,
    *,
    gradient: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Dose (Gy) at cells of a lattice (centre ``x0 + (col + ½)·step``, ``y0 + (row + ½)·step``,
    z = ``z_table_mm.flat[zcode]``), with the gradient (Gy/mm, ``(N, 3)``) when asked and the
    width of each cell's dose spread (Gy; cells ``step`` wide, ``heights_mm`` high) when
    ``heights_mm`` is given: the numbers of :func:`trilinear_dose_and_gradient` at the centres."""
    from plancheck.kernels import lattice_cells

    n = len(col)
    values = np.empty(n)
    grad = np.empty((3, n)) if gradient else None
    spread = np.empty(n) if heights_mm is not None else None
    if n == 0:
        return values, (grad.T if gradient else None), spread
    flat, nx, nxy = flat_dose(grid, None)
    extent = grid_extent_mm(grid)
    c0, c1 = int(col.min()), int(col.max())
    r0, r1 = int(row.min()), int(row.max())
    x = _axis_tables(grid, 0, x0_mm + (np.arange(c0, c1 + 1) + 0.5) * step_mm, extent[0])
    y = _axis_tables(grid, 1, y0_mm + (np.arange(r0, r1 + 1) + 0.5) * step_mm, extent[1])
    z = _axis_tables(grid, 2, np.ascontiguousarray(z_table_mm, dtype=float).reshape(-1), extent[2])
    gx, gy, gz = (grad[0], grad[1], grad[2]) if gradient else (_EMPTY, _EMPTY, _EMPTY)
    lattice_cells(flat, nx, nxy, *x, c0, *y, r0, *z,
                  np.asarray(col, dtype=np.int64), np.asarray(row, dtype=np.int64), np.asarray(zcode, dtype=np.int64),
                  np.asarray(heights_mm, dtype=float) if heights_mm is not None else _EMPTY, float(step_mm),
                  values, gx, gy, gz, spread if spread is not None else _EMPTY)
    return values, (grad.T if gradient else None), spread
