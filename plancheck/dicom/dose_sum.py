"""Summing several dose grids of one plan (BEAM / FRACTION doses) onto one grid.

Grids with the same geometry are added voxel by voxel. A grid with another geometry is
resampled with trilinear interpolation onto the voxel centres of the first (reference)
grid; reference voxels within half a voxel outside the other grid's outermost centres take
the edge value (each voxel fills half a spacing around its centre, see
:class:`plancheck.model.DoseGrid`). The dose a grid gives beyond its region is not known
(not 0 Gy): the sum is cropped to the reference voxels every grid covers (a box: each grid's
region is one), and the caller is told how many voxels each grid did not cover. A structure
beyond the cropped grid is then not covered by the plan's dose (its metrics are undefined or
bounded), instead of being graded on a sum that lacks a beam's dose.

This module does not import pydicom: it works on :class:`plancheck.model.DoseGrid` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plancheck.model import DoseGrid

__all__ = ["same_geometry", "resample_trilinear", "SumResult", "sum_grids"]


def same_geometry(a: DoseGrid, b: DoseGrid, tolerance_mm: float = 1e-3) -> bool:
    """True when both grids have the same voxel centres (within ``tolerance_mm``)."""
    return all(
        len(p) == len(q) and bool(np.all(np.abs(np.asarray(p) - np.asarray(q)) <= tolerance_mm))
        for p, q in ((a.x_mm, b.x_mm), (a.y_mm, b.y_mm), (a.z_mm, b.z_mm))
    )


def _axis_weights(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index, upper weight and inside-mask of ``target`` points on ``source``."""
    source = np.asarray(source, dtype=float)
    target = np.asarray(target, dtype=float)
    n = source.size
    if n == 1:
        half = 0.5  # a single plane: take it as 1 mm thick around its centre
        inside = np.abs(target - source[0]) <= half + 1e-6
        zeros = np.zeros(target.size, dtype=np.intp)
        return zeros, zeros, np.zeros(target.size), inside
    lo_edge = source[0] - (source[1] - source[0]) / 2
    hi_edge = source[-1] + (source[-1] - source[-2]) / 2
    inside = (target >= lo_edge - 1e-6) & (target <= hi_edge + 1e-6)
    clamped = np.clip(target, source[0], source[-1])
    upper = np.clip(np.searchsorted(source, clamped, side="right"), 1, n - 1)
    lower = upper - 1
    weight = (clamped - source[lower]) / (source[upper] - source[lower])
    return lower, upper, np.clip(weight, 0.0, 1.0), inside


def resample_trilinear(grid: DoseGrid, x_mm: np.ndarray, y_mm: np.ndarray,
                       z_mm: np.ndarray) -> tuple[np.ndarray, int]:
    """Dose of ``grid`` at the voxel centres ``(x_mm[i], y_mm[j], z_mm[k])``, trilinear.

    Parameters
    ----------
    grid
        The grid to sample.
    x_mm, y_mm, z_mm
        Increasing target coordinates, mm.

    Returns
    -------
    dose_gy, outside
        ``(len(z), len(y), len(x))`` float32 array, and the number of target voxels
        outside ``grid`` (set to 0 Gy).
    """
    xl, xu, xw, xin = _axis_weights(grid.x_mm, x_mm)
    yl, yu, yw, yin = _axis_weights(grid.y_mm, y_mm)
    zl, zu, zw, zin = _axis_weights(grid.z_mm, z_mm)
    dose = grid.dose_gy
    # Interpolate one axis at a time (separable): x, then y, then z.
    dx = dose[:, :, xl] * (1 - xw).astype(np.float32) + dose[:, :, xu] * xw.astype(np.float32)
    dy = dx[:, yl, :] * (1 - yw).astype(np.float32)[:, None] + dx[:, yu, :] * yw.astype(np.float32)[:, None]
    dz = dy[zl] * (1 - zw).astype(np.float32)[:, None, None] + dy[zu] * zw.astype(np.float32)[:, None, None]
    mask = zin[:, None, None] & yin[None, :, None] & xin[None, None, :]
    outside = int(mask.size - np.count_nonzero(mask))
    if outside:
        dz = np.where(mask, dz, np.float32(0))
    return dz.astype(np.float32, copy=False), outside


def _covered_axes(grid: DoseGrid, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per axis, which target coordinates lie in ``grid``'s region (``x``, ``y``, ``z`` masks)."""
    return tuple(_axis_weights(source, target)[3]
                 for source, target in ((grid.x_mm, x_mm), (grid.y_mm, y_mm), (grid.z_mm, z_mm)))


@dataclass(frozen=True)
class SumResult:
    """The summed dose and what was done to get it.

    Attributes
    ----------
    dose_gy
        The sum, Gy, on ``(z_mm, y_mm, x_mm)``; empty when the grids share no voxel.
    x_mm, y_mm, z_mm
        Its axes: the reference grid's, cropped to the voxels every grid covers.
    resampled
        Indices of the grids that were resampled.
    outside_voxels
        Per resampled grid, the number of reference voxels it did not cover (left out of the sum).
    """

    dose_gy: np.ndarray
    resampled: tuple[int, ...]
    outside_voxels: dict[int, int]
    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray


def sum_grids(grids: Sequence[DoseGrid], factors: Sequence[float]) -> SumResult:
    """``Σ factor_n × dose_n`` on the grid of ``grids[0]``.

    Parameters
    ----------
    grids
        At least one grid; the first is the reference geometry.
    factors
        A multiplier per grid (1, or the number of fractions for a per-session dose).

    Returns
    -------
    SumResult
        The summed array (float32, Gy) on the reference grid cropped to the voxels every grid
        covers, its axes, the indices of the grids that were resampled, and per resampled grid
        the number of reference voxels it did not cover.
    """
    reference = grids[0]
    axes = (reference.x_mm, reference.y_mm, reference.z_mm)
    total = reference.dose_gy.astype(np.float32) * np.float32(factors[0])
    keep = [np.ones(len(a), dtype=bool) for a in axes]
    resampled: list[int] = []
    outside: dict[int, int] = {}
    for index in range(1, len(grids)):
        grid, factor = grids[index], np.float32(factors[index])
        if same_geometry(reference, grid):
            total += grid.dose_gy * factor
        else:
            values, n_out = resample_trilinear(grid, *axes)
            total += values * factor
            resampled.append(index)
            if n_out:
                outside[index] = n_out
                keep = [k & c for k, c in zip(keep, _covered_axes(grid, *axes))]
    kx, ky, kz = keep
    if not all(k.all() for k in keep):
        total = total[np.ix_(kz, ky, kx)]
    return SumResult(dose_gy=total, resampled=tuple(resampled), outside_voxels=outside,
                     x_mm=np.asarray(axes[0])[kx], y_mm=np.asarray(axes[1])[ky], z_mm=np.asarray(axes[2])[kz])
