"""plancheck's DVH engine: sample the ROI, interpolate the dose, histogram.

See :mod:`plancheck.dvh.sampling` for the geometric model and
:mod:`plancheck.dvh.interpolate` for the dose model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from plancheck.dvh.dvh import DVH
from plancheck.dvh.interpolate import trilinear_dose_and_gradient
from plancheck.dvh.sampling import DEFAULT_TARGET_SAMPLES, RoiSampling, sample_roi
from plancheck.model.dose import DoseGrid
from plancheck.model.structures import Roi

__all__ = ["DoseTransform", "PointDoseSource", "sample_for_grid", "compute_dvh", "dvh_from_sources"]

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


def _dose_at(sources: Sequence[PointDoseSource], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed (transformed) dose and its gradient at the points; NaN where any
    source does not cover a point."""
    total = np.zeros(len(points))
    gradient = np.zeros((len(points), 3))
    for src in sources:
        d, g = trilinear_dose_and_gradient(src.grid, points)
        if src.transform is not None:
            covered = ~np.isnan(d)
            phys = np.maximum(d[covered], 0.0)
            h = _DERIVATIVE_STEP_GY
            slope = (src.transform(phys + h) - src.transform(np.maximum(phys - h, 0.0))) / (phys + h - np.maximum(phys - h, 0.0))
            d[covered] = src.transform(phys)
            g[covered] *= slope[:, None]
        total += d  # NaN (not covered) in any source makes the sum NaN
        gradient += g
    return total, gradient


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
    doses, gradient = _dose_at(sources, sampling.points_mm)
    cell = np.column_stack([np.full(len(doses), sampling.step_mm), np.full(len(doses), sampling.step_mm), sampling.heights_mm])
    # A linear dose over a box of sides (sx, sy, sz) ranges over |g|·s per axis; the
    # uniform spread with the same variance has width sqrt(sum((g·s)^2)) (exact for
    # a gradient along one axis).
    spread = np.sqrt(np.sum((gradient * cell) ** 2, axis=1))
    extremes = _dose_at(sources, sampling.extreme_points_mm)[0] if len(sampling.extreme_points_mm) else None
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
