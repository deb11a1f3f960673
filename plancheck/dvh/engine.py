"""plancheck's DVH engine: sample the ROI, interpolate the dose, refine the hot tail, histogram.

See :mod:`plancheck.dvh.sampling` for the geometric model and
:mod:`plancheck.dvh.interpolate` for the dose model.

Hot-tail refinement
-------------------
A large organ is sampled on a lattice up to twice the dose spacing (a 4×4×2 mm
cell is 0.03 cc): its hottest 0.03 cc lies in a handful of cells, which the
in-cell linear spread resolves only to first order, and cells on the contour
stand for volume partly outside it (D0.03cc of lungs and chest wall next to a
PTV were off by 1–3 %). After the first pass :func:`dvh_from_sources` therefore

1. takes the cells that can reach the hot tail: dose + ``REACH_FACTOR`` × spread
   width at or above ``D_tail``, the dose above which the first pass holds
   ``max(HOT_TAIL_CC, min(HOT_TAIL_FRACTION × volume, HOT_TAIL_MAX_CC))``
   (0.3 cc = ten times 0.03 cc; 5 % covers D2 % and high-dose V metrics with a
   margin, since the first pass can misplace the tail by a few per cent; 10 cc
   caps the work on large organs and the body, whose D2 % the first pass already
   resolves: on the clinical-size case a cap of 10 cc and of 50 cc both keep every
   metric within 0.5 % / 0.05 Gy of a 0.1–1 mm reference, see benchmarks/README.md);
2. splits each into ``k × k`` sub-cells on the lattice of step ``step / k``
   (same origin; ``k ≥ 2``, the sub-step about ``REFINED_STEP_MM`` and at most the
   ROI's characteristic thickness / ``REFINED_THICKNESS_SAMPLES`` for thin rinds),
   together with the lattice neighbours of those cells that are not cells of
   the ROI (centre outside the contour, part inside: "ghosts"). Sub-cells whose
   centre is outside the plane's even-odd region are dropped (parents whose eight
   neighbours are all ROI cells are taken as wholly inside). A sub-cell's volume
   is the fine lattice's own (step² × height); a ghost's share is the fraction
   of its inside neighbours that are refined, since in the first pass its inside
   part is carried by those neighbours;
3. evaluates dose, gradient and spread of the sub-cells with the general
   trilinear path and every source's transform (EQD2/BED, composites) exactly
   like the first pass;
4. repeats 1–3 once on the sub-cells for the hottest ``HOT_TAIL_CC`` with a
   sub-step of about ``FINE_REFINED_STEP_MM`` (D0.03cc next to SBRT gradients
   needs ≈0.25 mm);
5. replaces the parents by the sub-cells in the histogram, keeping every
   plane's volume exact: the difference between the parents' first-pass volume
   and the sub-cells' fine volume (the first pass's boundary rounding) is shared
   by the plane's other cells in proportion.

Cells finer than ``MIN_REFINED_STEP_MM`` are not refined (small structures are
already sampled finely). Min and max still come from the extreme points and the
samples. No cold-tail refinement: D95 %/D98 %/Min of the measured cases were within
tolerance without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import math
import weakref

import numpy as np

from plancheck.dvh.dvh import DVH
from plancheck.dvh.interpolate import (
    PointColumns,
    columns_dose,
    columns_covered_by_grid,
    columns_dose_and_gradient,
    covered_by_grid,
    flat_dose,
    grid_extent_mm,
    lattice_dose,
    trilinear_dose_and_gradient,
)
from plancheck.dvh.rasterize import PolygonSet
from plancheck.dvh.sampling import DEFAULT_TARGET_SAMPLES, RoiSampling, sample_roi, slab_bounds
from plancheck.dvh.vertices import grid_points_inside
from plancheck.model.dose import DoseGrid
from plancheck.model.structures import Roi
from plancheck.model.volume_model import VolumeModel

__all__ = ["MAX_STEP_IN_DOSE_SPACINGS", "DoseTransform", "PointDoseSource", "sample_for_grid", "sample_for_grids", "compute_dvh", "dvh_from_sources", "dvhs_from_sources", "InterpolationMemo", "grid_coverage_pct", "grid_uncovered_volume_cc",
           "inside_grid_extent", "spread_widths", "voxel_table"]

MAX_STEP_IN_DOSE_SPACINGS = 2.0
"""Coarsest lattice step, in units of the dose grid's smallest spacing."""

SURFACE_STEP_IN_DOSE_SPACINGS = 0.25
"""Surface points (minimum and maximum dose) lie along the contours at most this many dose
spacings apart, or one lattice step where that is coarser (see :func:`plancheck.dvh.sampling.sample_roi`)."""

DoseTransform = Callable[[np.ndarray], np.ndarray]
"""Voxel-wise conversion of physical dose (Gy) to another dose kind (e.g. EQD2); increasing in
dose (the DVH extremes rely on it: :func:`_grid_point_extremes`)."""


@dataclass(frozen=True)
class PointDoseSource:
    """One dose contribution at sample points: a grid, an optional voxel-wise transform and
    optionally that transform's derivative (its slope at a physical dose, for the in-cell
    dose spread; a central finite difference of the transform when not given)."""

    grid: DoseGrid
    transform: DoseTransform | None = None
    derivative: DoseTransform | None = None


def sample_for_grids(
    roi: Roi, grids: Sequence[DoseGrid], *, target_samples: int = DEFAULT_TARGET_SAMPLES,
    default_thickness_mm: float | None = None, volume_model: VolumeModel | None = None,
) -> RoiSampling:
    """Sample an ROI for one or more dose grids (a composite samples all courses at the
    same points): lattice step at most twice the finest grid spacing (large organs; the
    in-cell dose spread from the gradient keeps their DVHs within 0.5 % of a 1 mm lattice),
    cells split at every grid's dose planes; a single-plane ROI is as thick as the finest
    z spacing unless ``default_thickness_mm`` says otherwise (times twice the model's end
    caps). ``volume_model`` overrides the ROI's own (:mod:`plancheck.model.volume_model`)."""
    spacing = [s for g in grids for s in g.spacing_mm if s > 0]
    z_spacing = [g.spacing_mm[2] for g in grids if g.spacing_mm[2] > 0]
    return sample_roi(
        roi,
        target_samples=target_samples,
        max_step_mm=MAX_STEP_IN_DOSE_SPACINGS * min(spacing) if spacing else 3.0,
        default_thickness_mm=default_thickness_mm or (min(z_spacing) if z_spacing else None),
        split_z_mm=np.unique(np.concatenate([g.z_mm for g in grids])),
        surface_step_mm=SURFACE_STEP_IN_DOSE_SPACINGS * min(spacing) if spacing else None,
        volume_model=volume_model,
    )


def sample_for_grid(
    roi: Roi, grid: DoseGrid, *, target_samples: int = DEFAULT_TARGET_SAMPLES, default_thickness_mm: float | None = None,
    volume_model: VolumeModel | None = None,
) -> RoiSampling:
    """Sample an ROI for one dose grid (see :func:`sample_for_grids`)."""
    return sample_for_grids(roi, [grid], target_samples=target_samples, default_thickness_mm=default_thickness_mm,
                            volume_model=volume_model)


_DERIVATIVE_STEP_GY = 1e-3

REFINED_STEP_MM = 1.0
"""In-plane step of the sub-cells of the hot-tail refinement, mm (cells already finer are not refined)."""

HOT_TAIL_CC = 0.3
"""The refined hot tail covers at least this volume (ten times 0.03 cc), cc."""

HOT_TAIL_FRACTION = 0.05
"""... and at least this fraction of the ROI volume (D2 %, high-dose V metrics, with margin)."""

HOT_TAIL_MAX_CC = 10.0
"""... but at most this volume, cc (the D2 % of a large organ is resolved by the first pass)."""

FINE_REFINED_STEP_MM = 0.25
"""In-plane step of the second refinement of the hottest ``HOT_TAIL_CC`` (D0.03cc), mm."""

MIN_REFINED_STEP_MM = 0.5
"""Cells finer than this are not refined; coarser ones are split at least 2 × 2."""

REFINED_THICKNESS_SAMPLES = 4.0
"""... and at most the ROI's characteristic thickness over this (thin rinds in steep gradients)."""

REACH_FACTOR = 0.5
"""A cell can reach the tail when its dose plus this many spread widths does."""

_TAIL_BINS = 2048


class InterpolationMemo:
    """The dose of each course's grid interpolated at a sampling's cells, kept for the length of
    one computation of several DVHs of the same ROI on the same sampling (e.g. the physical and
    EQD2 composites of an organ): each grid is interpolated once and every DVH reads the same
    arrays, kept read-only (:func:`_summed_sources` computes sums and conversions into new
    arrays). Keyed by object identity: the grids and columns must stay alive while the memo is
    used (they do: the caller holds them)."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, int, bool], tuple[np.ndarray, np.ndarray | None]] = {}

    def evaluator(self, columns: PointColumns) -> Callable[[DoseGrid, bool], tuple[np.ndarray, np.ndarray | None]]:
        """``evaluate(grid, gradient)`` for :func:`_summed_sources` at the points of ``columns``."""
        def evaluate(grid: DoseGrid, gradient: bool):
            key = (id(grid), id(columns), gradient)
            if key not in self._values:
                d, g = columns_dose_and_gradient(grid, columns, gradient=gradient)
                for a in (d, g):
                    if a is not None:
                        a.flags.writeable = False
                self._values[key] = (d, g)
            return self._values[key]
        return evaluate


def _columns_evaluator(columns: PointColumns, memo: InterpolationMemo | None
                       ) -> Callable[[DoseGrid, bool], tuple[np.ndarray, np.ndarray | None]]:
    if memo is not None:
        return memo.evaluator(columns)
    return lambda grid, grad: columns_dose_and_gradient(grid, columns, gradient=grad)


def _summed_sources(
    sources: Sequence[PointDoseSource],
    evaluate: Callable[[DoseGrid, bool], tuple[np.ndarray, np.ndarray | None]],
    n: int,
    *,
    gradient: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Sum over the sources of their dose at the same ``n`` points, each converted voxel-wise
    by its transform, and (when asked) of their gradient (chain rule with a finite-difference
    slope of the transform); NaN where any source does not cover a point.
    ``evaluate(grid, gradient)`` gives one grid's dose and ``(n, 3)`` gradient (or None); its
    arrays are only read (an :class:`InterpolationMemo` shares them between DVHs): conversions
    and sums go to new arrays. Returns the dose and the gradient's x, y, z components (None
    without ``gradient``), to be read, not changed (they may be ``evaluate``'s own arrays)."""
    total: list | None = None
    owned = False  # whether total's arrays were made here (and may be added to in place)
    for src in sources:
        d, g = evaluate(src.grid, gradient)
        part = [d, *((g[:, 0], g[:, 1], g[:, 2]) if gradient else (None, None, None))]
        if src.transform is not None:
            part = list(_transformed(src, *part))
        if total is None:
            total, owned = part, src.transform is not None
        elif owned:
            for acc, p in zip(total, part):
                if acc is not None:
                    acc += p  # NaN (not covered) in any source makes the sum NaN
        else:
            total = [acc + p if acc is not None else None for acc, p in zip(total, part)]
            owned = True
    if total is None:
        return np.zeros(n), *((np.zeros(n),) * 3 if gradient else (None, None, None))
    return total[0], total[1], total[2], total[3]


def _dose_at(
    sources: Sequence[PointDoseSource],
    points: np.ndarray | None,
    columns: PointColumns | None = None,
    *,
    gradient: bool = True,
    memo: InterpolationMemo | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Summed (transformed) dose and its ``(N, 3)`` gradient at the points (or at the points
    of ``columns``, interpolated column by column, through ``memo`` when given); NaN where
    any source does not cover a point. The gradient is None when not asked for."""
    if columns is not None:
        evaluate = _columns_evaluator(columns, memo)
        n = columns.number_of_points
    else:
        def evaluate(grid: DoseGrid, grad: bool):
            return trilinear_dose_and_gradient(grid, points, gradient=grad)
        n = len(points)
    d, gx, gy, gz = _summed_sources(sources, evaluate, n, gradient=gradient)
    return d, (np.column_stack([gx, gy, gz]) if gradient else None)


def _extreme_doses(sources: Sequence[PointDoseSource], sampling: RoiSampling,
                   memo: InterpolationMemo | None = None) -> np.ndarray | None:
    if sampling.extreme_columns is not None:
        parts = [_dose_at(sources, None, c, gradient=False, memo=memo)[0]
                 for c in sampling.extreme_columns if c.number_of_points]
        return np.concatenate(parts) if parts else None
    if not len(sampling.extreme_points_mm):
        return None
    return _dose_at(sources, sampling.extreme_points_mm, gradient=False)[0]


def _grid_point_extremes(roi: Roi, sampling: RoiSampling, sources: Sequence[PointDoseSource],
                         known: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Summed (transformed) dose at the dose-grid points inside the ROI that can hold its minimum
    or maximum (:mod:`plancheck.dvh.vertices`). With one source: the grid's own values there.
    With several: each source's grid points inside the ROI that could pass the extremes already
    ``known`` (cells, refined cells, surface points), interpolated there: first by plane (the
    source's own extremes on the plane plus the other sources' bounds on it over the ROI's box),
    then by point (its own value plus the other sources' bounds over the dose voxel holding it:
    the voxel's corner values); exact, since every bound holds.
    None under a volume model that takes the extremes at interior samples (``surface_extremes``
    False), or when there is nothing to add."""
    if not sources or not sampling.surface_extremes or sampling.slab_lo_mm is None:
        return None
    if len(sources) == 1:  # the transforms increase with dose: the extremes of the grid values
        src = sources[0]
        found = _points_inside(roi, sampling, src.grid)
        if found is None or not found.size:
            return None
        raw = src.grid.dose_gy.ravel()[found]
        return _transformed_values(src, np.array([raw.min(), raw.max()], dtype=float))
    seen = [a[~np.isnan(a)] for a in known if a is not None and len(a)]
    seen = [a for a in seen if a.size]
    if not seen:
        return None
    known_lo = min(float(a.min()) for a in seen)
    known_hi = max(float(a.max()) for a in seen)
    box = _roi_xy_box_mm(roi)
    kept = []
    for n, src in enumerate(sources):
        grid = src.grid
        found = _points_inside(roi, sampling, grid)
        if found is None:
            return None
        if not found.size:
            continue
        # 1. per dose plane of this grid: its own extremes there and the other sources' bounds on the
        #    plane (over the ROI's box); the planes that cannot pass the known extremes are dropped
        nz = grid.dose_gy.shape[0]
        plane = found // (grid.dose_gy.shape[1] * grid.dose_gy.shape[2])
        starts = np.searchsorted(plane, np.arange(nz + 1))  # found ascends: points plane after plane
        present = np.flatnonzero(starts[1:] > starts[:-1])
        raw = grid.dose_gy.ravel()[found]
        plane_hi = np.full(nz, -np.inf)
        plane_lo = np.full(nz, np.inf)
        plane_hi[present] = _transformed_values(src, np.maximum.reduceat(raw, starts[present]).astype(float))
        plane_lo[present] = _transformed_values(src, np.minimum.reduceat(raw, starts[present]).astype(float))
        for m, other in enumerate(sources):
            if m != n:
                hi_t, lo_t = _plane_bounds(other, box, grid.z_mm)
                plane_hi += hi_t
                plane_lo += lo_t
        wanted = present[(plane_hi[present] >= known_hi) | (plane_lo[present] <= known_lo)]  # NaN: not covered
        if not wanted.size:
            continue
        pick = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in wanted])
        found = found[pick]
        values = _transformed_values(src, raw[pick].astype(float))
        # 2. per point: the other sources' bounds over the dose voxel holding it
        upper, lower = values.copy(), values.copy()
        for m, other in enumerate(sources):
            if m != n:
                hi_t, lo_t = _voxel_bounds(other, grid, found)
                upper += hi_t
                lower += lo_t
        maybe = (upper >= known_hi) | (lower <= known_lo)
        k, j, i = np.unravel_index(found[maybe], grid.dose_gy.shape)
        kept.append(np.column_stack([grid.x_mm[i], grid.y_mm[j], grid.z_mm[k]]))
    if not kept:
        return None
    candidates = np.concatenate(kept)
    if not len(candidates):
        return None
    return _dose_at(sources, candidates, gradient=False)[0]


_INSIDE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The grid points inside a sampling's ROI, per sampling and grid (a sampling serves several DVHs)."""


def _points_inside(roi: Roi, sampling: RoiSampling, grid: DoseGrid):
    per_grid = _INSIDE.get(sampling)
    if per_grid is None:
        per_grid = _INSIDE.setdefault(sampling, {})
    key = id(grid)
    if key not in per_grid:  # the grid is kept alive by the entry (ids are not reused meanwhile)
        per_grid[key] = (grid, grid_points_inside(roi, sampling.slab_lo_mm, sampling.slab_hi_mm, grid))
    return per_grid[key][1]


def _transformed_values(src: PointDoseSource, physical: np.ndarray) -> np.ndarray:
    return physical if src.transform is None else np.asarray(src.transform(physical), dtype=float)


def voxel_table(axis_mm: np.ndarray, positions_mm: np.ndarray) -> np.ndarray:
    """For each position, the index of the voxel of an increasing axis holding it (the last axis
    point at or below it, at most the second last; 0 on a one-point axis); -1 beyond the axis
    (by more than 1e-6 mm)."""
    n = len(axis_mm)
    cell = np.clip(np.searchsorted(axis_mm, positions_mm, side="right") - 1, 0, max(n - 2, 0))
    outside = (positions_mm < axis_mm[0] - 1e-6) | (positions_mm > axis_mm[-1] + 1e-6)
    return np.where(outside, -1, cell).astype(np.int64)


def _roi_xy_box_mm(roi: Roi) -> tuple[float, float, float, float]:
    """x0, x1, y0, y1 (mm) of the ROI's contours."""
    xy = np.vstack([poly for polys in roi.planes.values() for poly in polys])
    return float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())


def _plane_bounds(src: PointDoseSource, box: tuple[float, float, float, float],
                  z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower bounds of a source's (transformed) dose on each plane ``z_mm`` (of another
    grid) inside the ROI's box: the largest and smallest value of the source's grid on its two
    dose planes around it, over the box widened by one voxel; NaN outside the source's grid."""
    grid = src.grid
    x0, x1, y0, y1 = box
    columns = slice(max(int(np.searchsorted(grid.x_mm, x0, side="right")) - 1, 0),
                    int(np.searchsorted(grid.x_mm, x1, side="left")) + 1)
    rows = slice(max(int(np.searchsorted(grid.y_mm, y0, side="right")) - 1, 0),
                 int(np.searchsorted(grid.y_mm, y1, side="left")) + 1)
    part = grid.dose_gy[:, rows, columns]
    nz = grid.dose_gy.shape[0]
    if part.size == 0:
        top = bottom = np.full(nz, np.nan)
    else:
        top = part.max(axis=(1, 2)).astype(float)
        bottom = part.min(axis=(1, 2)).astype(float)
    cell = voxel_table(grid.z_mm, np.asarray(z_mm, dtype=float))
    outside = cell < 0
    k0 = np.maximum(cell, 0)
    k1 = np.minimum(k0 + 1, nz - 1)
    upper = np.maximum(top[k0], top[k1])
    lower = np.minimum(bottom[k0], bottom[k1])
    upper = _transformed_values(src, np.where(outside, 0.0, upper))
    lower = _transformed_values(src, np.where(outside, 0.0, lower))
    upper[outside] = np.nan
    lower[outside] = np.nan
    return upper, lower


def _voxel_bounds(src: PointDoseSource, grid: DoseGrid, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower bounds of a source's (transformed) dose at points of another ``grid``
    given by their flat indices there (:func:`plancheck.dvh.vertices.grid_points_inside`): the
    largest and smallest corner value of the source's dose voxel holding each point (compiled:
    :func:`plancheck.kernels.voxel_corner_bounds`); NaN outside the source's grid. The transforms
    are increasing in dose, so they keep the bounds."""
    from plancheck.kernels import voxel_corner_bounds

    own = src.grid
    flat, nx, nxy = flat_dose(own, None)
    tables = (voxel_table(own.z_mm, grid.z_mm), voxel_table(own.y_mm, grid.y_mm), voxel_table(own.x_mm, grid.x_mm))
    upper = np.empty(len(points))
    lower = np.empty(len(points))
    voxel_corner_bounds(flat, nx, nxy, np.ascontiguousarray(points, dtype=np.int64), len(grid.x_mm),
                        len(grid.x_mm) * len(grid.y_mm), *tables, upper, lower)
    inside = ~np.isnan(upper)
    upper[inside] = _transformed_values(src, upper[inside])
    lower[inside] = _transformed_values(src, lower[inside])
    return upper, lower


def _transformed(src: PointDoseSource, d: np.ndarray, gx: np.ndarray | None, gy: np.ndarray | None,
                 gz: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """A source's transform applied to dose and (when given) gradient (chain rule with the
    source's derivative, else a finite-difference slope), as new arrays (the inputs are only
    read); NaN (not covered) stays NaN."""
    covered = ~np.isnan(d)
    whole = bool(covered.all())  # the usual case: no masked copies
    phys = np.maximum(d if whole else d[covered], 0.0)
    grads: tuple[np.ndarray | None, ...] = (None, None, None)
    if gx is not None:
        if src.derivative is not None:
            slope = src.derivative(phys)
        else:
            h = _DERIVATIVE_STEP_GY
            slope = (src.transform(phys + h) - src.transform(np.maximum(phys - h, 0.0))) / (phys + h - np.maximum(phys - h, 0.0))
        if whole:
            grads = tuple(g * slope for g in (gx, gy, gz))
        else:
            grads = tuple(g.copy() for g in (gx, gy, gz))
            for g in grads:
                g[covered] *= slope
    if whole:
        out = np.asarray(src.transform(phys), dtype=float)
        if not (out.flags.writeable and out.flags.owndata):  # summed into in place later
            out = out.copy()
    else:
        out = d.copy()
        out[covered] = src.transform(phys)
    return out, *grads


def spread_widths(gx: np.ndarray, gy: np.ndarray, gz: np.ndarray, step_mm: float, heights_mm: np.ndarray) -> np.ndarray:
    """Width (Gy) of the uniform dose spread of each cell: ``sqrt(Σ (g·s)²)``.

    A linear dose over a box of sides (sx, sy, sz) ranges over |g|·s per axis; the
    uniform spread with the same variance has that width (exact for a gradient
    along one axis). Cells are ``step_mm`` wide in x and y and ``heights_mm`` high; the
    gradient is in Gy/mm. Computed by the kernel that also spreads the cells interpolated in
    compiled code (:func:`plancheck.kernels.spread_widths`): one formula."""
    from plancheck.kernels import spread_widths as kernel

    out = np.empty(len(gx))
    heights = np.asarray(heights_mm, dtype=float)
    if heights.ndim == 0:
        heights = np.full(out.shape, float(heights))
    # the compiled variant takes writeable C-contiguous float64 arrays (a gradient column is strided)
    gx, gy, gz, heights = (np.require(a, dtype=float, requirements=("C", "A", "W")) for a in (gx, gy, gz, heights))
    kernel(gx, gy, gz, float(step_mm), heights, out)
    return out


def _cell_doses(sources: Sequence[PointDoseSource], sampling: RoiSampling,
                memo: InterpolationMemo | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dose and in-cell spread of every cell, interpolated column by column (compiled; through
    ``memo`` when given, except a single untransformed source, whose spread is computed with
    its interpolation)."""
    n = sampling.number_of_samples
    doses = np.empty(n)
    spread = np.empty(n)
    step = sampling.step_mm
    offset = 0
    for columns in sampling.cell_columns:
        dest = slice(offset, offset + columns.number_of_points)
        offset += columns.number_of_points
        if not sources:
            doses[dest] = 0.0
            spread[dest] = 0.0
            continue
        if len(sources) == 1 and sources[0].transform is None and columns.z_extent_mm is not None:
            d, _, w = columns_dose(sources[0].grid, columns, gradient=False, spread_step_mm=step)
            doses[dest] = d
            spread[dest] = w
            continue
        d, gx, gy, gz = _summed_sources(sources, _columns_evaluator(columns, memo), columns.number_of_points)
        if columns.z_extent_mm is not None:
            h = columns.slot_major(columns.z_extent_mm)
        else:
            h = sampling.heights_mm[dest]
        doses[dest] = d
        spread[dest] = spread_widths(gx, gy, gz, step, h)
    return doses, spread


def _cell_geometry(sampling: RoiSampling, cells: np.ndarray):
    """Lattice position, segment and plane of the given cells (global indices in point
    order) of the lattice columns of a sampling; cells of other columns are left out.
    Returns (columns, cells, col, row, slot, plane) or None."""
    offset = 0
    for columns in sampling.cell_columns:
        n = columns.number_of_points
        if columns.lattice is None or columns.col is None:
            offset += n
            continue
        local = cells[(cells >= offset) & (cells < offset + n)] - offset
        if local.size == 0:
            return None
        sizes = columns.slot_sizes()
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        slot = np.searchsorted(starts, local, side="right") - 1
        column = np.empty(len(local), dtype=np.int64)
        per_column = columns.counts[columns.plane]
        for j in np.unique(slot):
            sel = slot == j
            rank = local[sel] - starts[j]
            column[sel] = rank if sizes[j] == columns.number_of_columns else np.flatnonzero(per_column > j)[rank]
        return columns, local + offset, columns.col[column], columns.row[column], slot, columns.plane[column]
    return None


@dataclass
class _Cells:
    """Cells on a lattice (origin x0, y0; step): plane, segment slot, lattice column and row,
    centre z, height and the fraction of the fine-lattice volume they stand for."""

    plane: np.ndarray
    slot: np.ndarray
    col: np.ndarray
    row: np.ndarray
    z: np.ndarray
    height: np.ndarray
    fraction: np.ndarray

    def take(self, index: np.ndarray) -> "_Cells":
        return _Cells(*(getattr(self, f)[index] for f in ("plane", "slot", "col", "row", "z", "height", "fraction")))


def _subdivide(pset: PolygonSet, x0: float, y0: float, step: float, k: int, parents: _Cells, slots: int) -> _Cells | None:
    """Split the parent cells, and their lattice neighbours that are not cells of the ROI
    (centre outside the contour, "ghosts"), into k × k sub-cells on the lattice of step
    ``step / k`` (same origin); keep the sub-cells whose centre is inside the plane's
    even-odd region. A ghost's inside part is represented in the coarser pass by its
    inside neighbours, so its sub-cells take the share of those neighbours that are parents
    (compiled: :func:`plancheck.kernels.subdivide_cells`)."""
    from plancheck.kernels import subdivide_cells

    if len(parents.plane) == 0 or len(pset.vertices) == 0:
        return None
    ex0, ey0, ex1, ey1, edge_start = pset.plane_edges
    owner, col, row, fraction = subdivide_cells(
        ex0, ey0, ex1, ey1, edge_start, pset.number_of_planes, float(x0), float(y0), float(step), int(k),
        np.ascontiguousarray(parents.plane, dtype=np.int64), np.ascontiguousarray(parents.slot, dtype=np.int64),
        np.ascontiguousarray(parents.col, dtype=np.int64), np.ascontiguousarray(parents.row, dtype=np.int64),
        np.ascontiguousarray(parents.fraction, dtype=float), int(slots),
    )
    if owner.size == 0:
        return None
    return _Cells(parents.plane[owner], parents.slot[owner], col, row, parents.z[owner], parents.height[owner], fraction)


def _evaluate(sources: Sequence[PointDoseSource], cells: _Cells, x0: float, y0: float, step: float, z_table: np.ndarray):
    """Dose, spread and volume (cc) of cells on a lattice of the given step (cell z from
    ``z_table[plane, slot]``), in compiled code."""
    zcode = cells.plane * z_table.shape[1] + cells.slot
    if len(sources) == 1 and sources[0].transform is None:
        dose, _, spread = lattice_dose(sources[0].grid, x0, y0, step, cells.col, cells.row, z_table, zcode, cells.height)
    else:
        def evaluate(grid: DoseGrid, grad: bool):
            return lattice_dose(grid, x0, y0, step, cells.col, cells.row, z_table, zcode, gradient=grad)[:2]

        dose, gx, gy, gz = _summed_sources(sources, evaluate, len(cells.col))
        spread = spread_widths(gx, gy, gz, step, cells.height)
    weight = step * step / 1000.0 * cells.height * cells.fraction
    return dose, spread, weight


def _select_tail(doses: np.ndarray, spread: np.ndarray, weights: np.ndarray, volume_cc: float) -> np.ndarray:
    """Cells whose dose plus ``REACH_FACTOR`` spread widths reaches the dose above which the
    cells hold ``volume_cc`` (that dose found on a histogram of ``_TAIL_BINS`` bins over the
    covered range, rounded down to a bin edge: conservative), in ascending order
    (compiled: :func:`plancheck.kernels.tail_cells`)."""
    from plancheck.kernels import tail_cells

    cells, _ = tail_cells(np.ascontiguousarray(doses, dtype=float), np.ascontiguousarray(spread, dtype=float),
                          np.ascontiguousarray(weights, dtype=float), float(volume_cc), REACH_FACTOR, _TAIL_BINS)
    return cells


MAX_REFINED_CELLS = 1_000_000
"""At most this many sub-cells per refinement level: where every cell can reach the tail (a
dose grid far coarser than the structure's lattice), only the hottest parents are refined,
so the work stays bounded (without it a 9 mm grid took 1.7 GB for a heart)."""


def _hottest(cells: np.ndarray, doses: np.ndarray, spread: np.ndarray, limit: int) -> np.ndarray:
    """``cells`` (ascending), or its ``limit`` ones that can reach highest, in ascending order."""
    if cells.size <= limit:
        return cells
    reach = doses[cells] + REACH_FACTOR * spread[cells]
    return np.sort(cells[np.argpartition(reach, cells.size - limit)[cells.size - limit:]])


def _refine_hot_tail(
    roi: Roi, sampling: RoiSampling, sources: Sequence[PointDoseSource], doses: np.ndarray, spread: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Sub-cells replacing the first-pass cells that can reach the hot tail (module docstring).

    Returns (parent cells, sub-cell doses, weights, spreads, planes), or None when nothing
    is refined."""
    step = sampling.step_mm
    if step < MIN_REFINED_STEP_MM or not sources or doses.size == 0:
        return None
    volume = float(sampling.volume_cc)
    cells = _select_tail(doses, spread, sampling.weights_cc, max(HOT_TAIL_CC, min(HOT_TAIL_FRACTION * volume, HOT_TAIL_MAX_CC)))
    target = min(REFINED_STEP_MM, sampling.characteristic_thickness_mm / REFINED_THICKNESS_SAMPLES)
    k = max(2, int(math.ceil(step / max(target, FINE_REFINED_STEP_MM) - 1e-9)))
    cells = _hottest(cells, doses, spread, MAX_REFINED_CELLS // (k * k))
    if cells.size == 0:
        return None
    geometry = _cell_geometry(sampling, cells)
    if geometry is None:
        return None
    columns, cells, col, row, slot, plane = geometry
    lattice = columns.lattice
    x0, y0 = lattice.x0_mm, lattice.y0_mm
    z = columns.z_mm[plane, slot]
    height = columns.z_extent_mm[plane, slot] if columns.z_extent_mm is not None else sampling.heights_mm[cells]
    # a cell of zero weight (e.g. masked out of a local sampling) stays without volume
    parents = _Cells(plane, slot, col, row, z, height, (sampling.weights_cc[cells] > 0).astype(float))
    pset = PolygonSet.from_planes(list(roi.planes.values()))
    # level 1: the tail region on a lattice of about REFINED_STEP_MM
    subs = _subdivide(pset, x0, y0, step, k, parents, columns.slots)
    if subs is None:
        return None
    step1 = step / k
    dose1, spread1, weight1 = _evaluate(sources, subs, x0, y0, step1, columns.z_mm)
    # level 2: the hottest HOT_TAIL_CC (D0.03cc) again, on a lattice of about FINE_REFINED_STEP_MM
    k2 = int(math.ceil(step1 / FINE_REFINED_STEP_MM - 1e-9))
    if k2 >= 2:
        hot = _hottest(_select_tail(dose1, spread1, weight1, HOT_TAIL_CC), dose1, spread1, MAX_REFINED_CELLS // (k2 * k2))
        if hot.size:
            fine = _subdivide(pset, x0, y0, step1, k2, subs.take(hot), columns.slots)
            if fine is not None:
                dose2, spread2, weight2 = _evaluate(sources, fine, x0, y0, step1 / k2, columns.z_mm)
                keep = np.ones(len(dose1), dtype=bool)
                keep[hot] = False
                dose1 = np.concatenate([dose1[keep], dose2])
                spread1 = np.concatenate([spread1[keep], spread2])
                weight1 = np.concatenate([weight1[keep], weight2])
                subs = _Cells(*(np.concatenate([getattr(subs, f)[keep], getattr(fine, f)])
                                for f in ("plane", "slot", "col", "row", "z", "height", "fraction")))
    return cells, dose1, weight1, spread1, subs.plane


def _cell_planes(sampling: RoiSampling) -> np.ndarray:
    """Plane index of every cell, in point order."""
    parts = []
    for columns in sampling.cell_columns:
        table = np.broadcast_to(np.arange(columns.z_mm.shape[0])[:, None], columns.z_mm.shape)
        parts.append(columns.slot_major(np.ascontiguousarray(table)))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _replace_weights(
    sampling: RoiSampling, parents: np.ndarray, sub_weight: np.ndarray, sub_plane: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the first-pass cells (refined parents set to 0) and of the sub-cells, with
    every plane's volume kept exact: the refined region keeps its fine-lattice volume and the
    difference to its parents' volume (the first pass's boundary rounding) is shared by the
    plane's other cells in proportion (or, when they are too few, absorbed by the sub-cells)."""
    from plancheck.kernels import replace_plane_weights

    cell_plane = _cell_planes(sampling)
    n_planes = int(max(cell_plane.max(initial=-1), sub_plane.max(initial=-1))) + 1
    return replace_plane_weights(np.ascontiguousarray(sampling.weights_cc, dtype=float), cell_plane,
                                 np.asarray(parents, dtype=np.int64), np.ascontiguousarray(sub_weight, dtype=float),
                                 np.asarray(sub_plane, dtype=np.int64), n_planes)


def dvh_from_sources(
    roi: Roi,
    sampling: RoiSampling,
    sources: Sequence[PointDoseSource],
    *,
    dose_kind: str = "physical",
    notes: tuple[str, ...] = (),
    memo: InterpolationMemo | None = None,
) -> DVH:
    """DVH of the sum of several dose sources (each optionally transformed) at the
    ROI's sample points; a point not covered by every source is not covered.
    The cells that can reach the hot tail are refined (see the module docstring).
    ``memo`` shares the first pass's interpolation with other DVHs of the same sampling
    (:func:`dvhs_from_sources`); the numbers are the same with or without it."""
    weights = sampling.weights_cc
    more: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if sampling.cell_columns is not None and sources:
        doses, spread = _cell_doses(sources, sampling, memo)
        refinement = _refine_hot_tail(roi, sampling, sources, doses, spread) if roi.planes else None
        if refinement is not None:
            parents, sub_dose, sub_weight, sub_spread, sub_plane = refinement
            weights, sub_weight = _replace_weights(sampling, parents, sub_weight, sub_plane)
            more = [(sub_dose, sub_weight, sub_spread)]
    else:
        doses, gradient = _dose_at(sources, sampling.points_mm)
        spread = spread_widths(gradient[:, 0], gradient[:, 1], gradient[:, 2], sampling.step_mm, sampling.heights_mm)
    extremes = _extreme_doses(sources, sampling, memo)
    inner = _grid_point_extremes(roi, sampling, sources, [doses, extremes, *(d for d, _, _ in more)])
    if inner is not None:
        extremes = inner if extremes is None else np.concatenate([extremes, inner])
    return DVH.from_samples(
        roi.name,
        doses,
        weights,
        volume_cc=sampling.volume_cc,
        extreme_doses_gy=extremes,
        dose_kind=dose_kind,
        engine="plancheck",
        notes=sampling.notes + notes,
        spread_gy=spread,
        more_samples=more,
    )


def dvhs_from_sources(
    roi: Roi,
    sampling: RoiSampling,
    source_sets: Sequence[Sequence[PointDoseSource]],
    *,
    dose_kinds: Sequence[str],
    notes: Sequence[tuple[str, ...]] | None = None,
) -> list[DVH]:
    """:func:`dvh_from_sources` for several source sets on one sampling (e.g. the physical and
    the EQD2 composite of an organ over the same courses), each grid interpolated at the cells
    once for all of them. The same DVHs as one call each."""
    memo = InterpolationMemo()
    notes = notes if notes is not None else [()] * len(source_sets)
    return [dvh_from_sources(roi, sampling, sources, dose_kind=kind, notes=n, memo=memo)
            for sources, kind, n in zip(source_sets, dose_kinds, notes, strict=True)]


def compute_dvh(
    roi: Roi,
    grid: DoseGrid,
    *,
    transform: DoseTransform | None = None,
    dose_kind: str = "physical",
    sampling: RoiSampling | None = None,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
    volume_model: VolumeModel | None = None,
) -> DVH:
    """DVH of one ROI on one dose grid.

    Parameters
    ----------
    roi
        The structure.
    grid
        Dose in Gy.
    transform
        Optional voxel-wise conversion applied to each sample's physical dose
        before histogramming (e.g. EQD2 with the course's fraction number).
    dose_kind
        Label of the resulting dose kind.
    sampling
        A sampling of the ROI to reuse (e.g. for several dose kinds).
    volume_model
        How the contours become a volume (end caps, surface extremes; see
        :mod:`plancheck.model.volume_model`), e.g. ``plancheck.model.volume_model.ECLIPSE``;
        default: the ROI's own (chosen from the export's Manufacturer when read).
        Ignored when ``sampling`` is given.
    """
    if sampling is None:
        sampling = sample_for_grid(roi, grid, target_samples=target_samples, volume_model=volume_model)
    return dvh_from_sources(roi, sampling, [PointDoseSource(grid, transform)], dose_kind=dose_kind)


def inside_grid_extent(roi: Roi, grid: DoseGrid) -> bool:
    """True when the ROI's bounding box (contour x/y extents, slab faces in z with its volume
    model's end caps) lies inside the region the dose grid covers: then every sample of the
    ROI is covered and its DVH has no uncovered volume (no sampling needed to know it)."""
    planes = roi.planes
    if not planes:
        return False
    rx0, rx1, ry0, ry1 = _roi_xy_box_mm(roi)
    lo, hi, _, _ = slab_bounds(np.array(list(planes), dtype=float), grid.spacing_mm[2] or None,
                               roi.volume_model.end_cap_spacings, roi.image_slices_z_mm)
    (x0, x1), (y0, y1), (z0, z1) = grid_extent_mm(grid)
    tol = 1e-6
    return bool(rx0 >= x0 - tol and rx1 <= x1 + tol and ry0 >= y0 - tol
                and ry1 <= y1 + tol and lo.min() >= z0 - tol and hi.max() <= z1 + tol)


def _uncovered_cc(grid: DoseGrid, sampling: RoiSampling) -> float:
    """Volume of a sampling's cells (volume > 0) outside the region the grid covers, cc; the
    rounding of :attr:`DVH.uncovered_volume_cc` (below 1e-6 of the volume: 0)."""
    if sampling.cell_columns is not None:  # the cells' coordinates are not built for this
        covered = np.concatenate([columns_covered_by_grid(grid, c) for c in sampling.cell_columns]) \
            if sampling.cell_columns else np.zeros(0, dtype=bool)
    else:
        covered = covered_by_grid(grid, sampling.points_mm)
    uncovered = sampling.volume_cc - float(np.sum(sampling.weights_cc[covered]))
    return uncovered if uncovered > 1e-6 * sampling.volume_cc else 0.0


def grid_uncovered_volume_cc(roi: Roi, grid: DoseGrid, sample: Callable[[], RoiSampling] | None = None) -> float:
    """Volume of the ROI (its volume model) outside the region the dose grid covers, cc; the
    DVH's ``uncovered_volume_cc`` (the same sample points and weights, the same rounding to 0)
    without interpolating the dose.

    A ROI whose bounding box (contour x/y extents, slab faces in z) lies inside that region
    has none, without sampling; otherwise the sample points and weights the DVH uses are
    counted (``sample`` supplies them, e.g. from a cache; default: :func:`sample_for_grid`).
    """
    if not roi.planes or inside_grid_extent(roi, grid):
        return 0.0
    sampling = sample() if sample is not None else sample_for_grid(roi, grid)
    return _uncovered_cc(grid, sampling) if sampling.volume_cc > 0 else 0.0


def grid_coverage_pct(roi: Roi, grid: DoseGrid, sample: Callable[[], RoiSampling] | None = None) -> float:
    """Percentage of the ROI volume (its volume model) inside the region the dose grid covers
    (see :func:`grid_uncovered_volume_cc`); 0 for a ROI without contours or volume."""
    if not roi.planes:
        return 0.0
    if inside_grid_extent(roi, grid):
        return 100.0
    sampling = sample() if sample is not None else sample_for_grid(roi, grid)
    if sampling.volume_cc <= 0:
        return 0.0
    return 100.0 * (1.0 - _uncovered_cc(grid, sampling) / sampling.volume_cc)
