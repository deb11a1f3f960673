"""plancheck's DVH engine: sample the ROI, interpolate the dose, histogram.

See :mod:`plancheck.dvh.sampling` for the geometric model and
:mod:`plancheck.dvh.interpolate` for the dose model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from plancheck.dvh.dvh import DVH
from plancheck.dvh.interpolate import ColumnInterpolator, PointColumns, columns_dose_and_gradient, trilinear_dose_and_gradient
from plancheck.dvh.sampling import DEFAULT_TARGET_SAMPLES, RoiSampling, sample_roi
from plancheck.model.dose import DoseGrid
from plancheck.model.structures import Roi

__all__ = ["MAX_STEP_IN_DOSE_SPACINGS", "DoseTransform", "PointDoseSource", "sample_for_grid", "compute_dvh", "dvh_from_sources"]

MAX_STEP_IN_DOSE_SPACINGS = 2.0
"""Coarsest lattice step, in units of the dose grid's smallest spacing."""

DoseTransform = Callable[[np.ndarray], np.ndarray]
"""Voxel-wise conversion of physical dose (Gy) to another dose kind (e.g. EQD2)."""


@dataclass(frozen=True)
class PointDoseSource:
    """One dose contribution at sample points: a grid and an optional voxel-wise transform."""

    grid: DoseGrid
    transform: DoseTransform | None = None


def sample_for_grid(
    roi: Roi, grid: DoseGrid, *, target_samples: int = DEFAULT_TARGET_SAMPLES, default_thickness_mm: float | None = None
) -> RoiSampling:
    """Sample an ROI for a dose grid: lattice step at most twice the grid's
    smallest spacing (large organs; the in-cell dose spread from the gradient
    keeps their DVHs within 0.5 % of a 1 mm lattice), cells split at the dose planes."""
    spacing = [s for s in grid.spacing_mm if s > 0]
    max_step = MAX_STEP_IN_DOSE_SPACINGS * min(spacing) if spacing else 3.0
    return sample_roi(
        roi,
        target_samples=target_samples,
        max_step_mm=max_step,
        default_thickness_mm=default_thickness_mm or (grid.spacing_mm[2] or None),
        split_z_mm=grid.z_mm,
    )


_DERIVATIVE_STEP_GY = 1e-3


def _dose_at(
    sources: Sequence[PointDoseSource],
    points: np.ndarray | None,
    columns: PointColumns | None = None,
    *,
    gradient: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Summed (transformed) dose and its gradient at the points (or at the points of
    ``columns``, interpolated column by column); NaN where any source does not cover
    a point. The gradient is None when not asked for."""
    total = None
    grad_total = None
    for src in sources:
        if columns is not None:
            d, g = columns_dose_and_gradient(src.grid, columns, gradient=gradient)
        else:
            d, g = trilinear_dose_and_gradient(src.grid, points)
            if not gradient:
                g = None
        if src.transform is not None:
            covered = ~np.isnan(d)
            phys = np.maximum(d[covered], 0.0)
            if gradient:
                h = _DERIVATIVE_STEP_GY
                slope = (src.transform(phys + h) - src.transform(np.maximum(phys - h, 0.0))) / (phys + h - np.maximum(phys - h, 0.0))
                g[covered] *= slope[:, None]
            d[covered] = src.transform(phys)
        if total is None:
            total, grad_total = d, g
        else:
            total += d  # NaN (not covered) in any source makes the sum NaN
            if gradient:
                grad_total += g
    if total is None:
        n = columns.number_of_points if columns is not None else len(points)
        return np.zeros(n), (np.zeros((n, 3)) if gradient else None)
    return total, grad_total


def _extreme_doses(sources: Sequence[PointDoseSource], sampling: RoiSampling) -> np.ndarray | None:
    if sampling.extreme_columns is not None:
        parts = [_dose_at(sources, None, c, gradient=False)[0] for c in sampling.extreme_columns if c.number_of_points]
        return np.concatenate(parts) if parts else None
    if not len(sampling.extreme_points_mm):
        return None
    return _dose_at(sources, sampling.extreme_points_mm, gradient=False)[0]


def _transformed(src: PointDoseSource, d: np.ndarray, gx: np.ndarray, gy: np.ndarray, gz: np.ndarray) -> None:
    """Apply a source's transform in place to dose and gradient (chain rule, finite-difference slope)."""
    covered = ~np.isnan(d)
    phys = np.maximum(d[covered], 0.0)
    h = _DERIVATIVE_STEP_GY
    slope = (src.transform(phys + h) - src.transform(np.maximum(phys - h, 0.0))) / (phys + h - np.maximum(phys - h, 0.0))
    d[covered] = src.transform(phys)
    gx[covered] *= slope
    gy[covered] *= slope
    gz[covered] *= slope


def _spread(gx: np.ndarray, gy: np.ndarray, gz: np.ndarray, step: float, heights: np.ndarray) -> np.ndarray:
    """Width of the uniform dose spread of each cell: sqrt(sum((g·s)^2)).

    A linear dose over a box of sides (sx, sy, sz) ranges over |g|·s per axis; the
    uniform spread with the same variance has that width (exact for a gradient
    along one axis)."""
    sx = gx * step
    sx *= sx
    sy = gy * step
    sy *= sy
    sz = gz * heights
    sz *= sz
    sx += sy
    sx += sz
    return np.sqrt(sx, out=sx)


def _cell_doses(sources: Sequence[PointDoseSource], sampling: RoiSampling) -> tuple[np.ndarray, np.ndarray]:
    """Dose and in-cell spread of every cell, interpolated column by column."""
    n = sampling.number_of_samples
    doses = np.empty(n)
    spread = np.empty(n)
    lazy = any(c.z_extent_mm is None for c in sampling.cell_columns)
    heights = sampling.heights_mm if lazy else None
    step = sampling.step_mm
    offset = 0
    for columns in sampling.cell_columns:
        interps = [ColumnInterpolator(src.grid, columns) for src in sources]
        if not interps:
            doses[offset:offset + columns.number_of_points] = 0.0
            spread[offset:offset + columns.number_of_points] = 0.0
            offset += columns.number_of_points
            continue
        starts, running = interps[0].slot_positions()
        for b0, b1 in interps[0].blocks():
            per_source = [interp.block(b0, b1) for interp in interps]
            for j, (sel, d, gx, gy, gz) in enumerate(per_source[0]):
                if len(d) == 0:
                    continue
                if sources[0].transform is not None:
                    _transformed(sources[0], d, gx, gy, gz)
                for src, other in zip(sources[1:], per_source[1:]):
                    _, d2, gx2, gy2, gz2 = other[j]
                    if src.transform is not None:
                        _transformed(src, d2, gx2, gy2, gz2)
                    d += d2  # NaN (not covered) in any source makes the sum NaN
                    gx += gx2
                    gy += gy2
                    gz += gz2
                first = offset + starts[j] + (b0 if running is None else running[j][b0])
                dest = slice(first, first + len(d))
                doses[dest] = d
                if columns.z_extent_mm is not None:
                    h = interps[0].slot_values(columns.z_extent_mm, b0, b1, j, sel)
                else:
                    h = heights[dest]
                spread[dest] = _spread(gx, gy, gz, step, h)
        offset += columns.number_of_points
    return doses, spread


def dvh_from_sources(
    roi: Roi,
    sampling: RoiSampling,
    sources: Sequence[PointDoseSource],
    *,
    dose_kind: str = "physical",
    notes: tuple[str, ...] = (),
) -> DVH:
    """DVH of the sum of several dose sources (each optionally transformed) at the
    ROI's sample points; a point not covered by every source is not covered."""
    if sampling.cell_columns is not None and sources:
        doses, spread = _cell_doses(sources, sampling)
    else:
        doses, gradient = _dose_at(sources, sampling.points_mm)
        spread = _spread(gradient[:, 0], gradient[:, 1], gradient[:, 2], sampling.step_mm, sampling.heights_mm)
    extremes = _extreme_doses(sources, sampling)
    return DVH.from_samples(
        roi.name,
        doses,
        sampling.weights_cc,
        volume_cc=sampling.volume_cc,
        extreme_doses_gy=extremes,
        dose_kind=dose_kind,
        engine="plancheck",
        notes=sampling.notes + notes,
        spread_gy=spread,
    )


def compute_dvh(
    roi: Roi,
    grid: DoseGrid,
    *,
    transform: DoseTransform | None = None,
    dose_kind: str = "physical",
    sampling: RoiSampling | None = None,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
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
    """
    if sampling is None:
        sampling = sample_for_grid(roi, grid, target_samples=target_samples)
    return dvh_from_sources(roi, sampling, [PointDoseSource(grid, transform)], dose_kind=dose_kind)
