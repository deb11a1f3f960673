"""Even-odd scanline rasterisation of planar contours onto a regular sample lattice.

All contours of one plane are filled together with the even-odd rule: a point
is inside when a horizontal ray from it crosses the plane's contour edges an
odd number of times. Holes (a contour inside another) and several islands on
one plane therefore come out right without knowing which contour is which.

Sample points are the centres of square cells of side ``step_mm``; an edge
from ``y_a`` to ``y_b`` is crossed by the rows whose centre ``y`` lies in the
half-open interval ``[min, max)``, so every row meets an even number of
crossings and a vertex on a row is never counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PlaneLattice", "rasterize_planes", "even_odd_area_mm2", "points_in_polygons"]


@dataclass(frozen=True)
class PlaneLattice:
    """A square sample lattice in one or more planes.

    Sample ``(i, j)`` sits at ``x = x0_mm + (i + 0.5) * step_mm``,
    ``y = y0_mm + (j + 0.5) * step_mm``.
    """

    x0_mm: float
    y0_mm: float
    step_mm: float
    nx: int
    ny: int


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[start, start + count)`` return (owner index, value) of every member."""
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(counts)), counts)
    if total == 0:
        return owner, np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    within = np.arange(total) - np.repeat(offsets, counts)
    return owner, np.repeat(starts, counts) + within


def _edges(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """All closing edges of the polygons as an ``(E, 4)`` array of x0, y0, x1, y1."""
    parts = []
    for poly in polygons:
        nxt = np.roll(poly, -1, axis=0)
        parts.append(np.hstack([poly, nxt]))
    return np.vstack(parts) if parts else np.zeros((0, 4))


def rasterize_planes(
    planes: Sequence[Sequence[np.ndarray]], lattice: PlaneLattice
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find the lattice samples inside each plane's contours (even-odd rule).

    Parameters
    ----------
    planes
        For each plane, its polygons as ``(N, 2)`` arrays of x, y in mm.
    lattice
        The sample lattice (shared by all planes).

    Returns
    -------
    plane_index, i, j
        Integer arrays, one entry per inside sample: which plane, and the
        lattice column and row.
    """
    edge_blocks = []
    plane_of_edge = []
    for p, polygons in enumerate(planes):
        e = _edges(polygons)
        edge_blocks.append(e)
        plane_of_edge.append(np.full(len(e), p, dtype=np.int64))
    if not edge_blocks:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    edges = np.vstack(edge_blocks)
    edge_plane = np.concatenate(plane_of_edge)
    x0, y0, x1, y1 = edges.T
    keep = y0 != y1
    x0, y0, x1, y1, edge_plane = x0[keep], y0[keep], x1[keep], y1[keep], edge_plane[keep]

    step = lattice.step_mm
    ymin = np.minimum(y0, y1)
    ymax = np.maximum(y0, y1)
    # rows whose centre y_c = y0 + (j + .5) step satisfies ymin <= y_c < ymax
    j_lo = np.ceil((ymin - lattice.y0_mm) / step - 0.5).astype(np.int64)
    j_hi = np.ceil((ymax - lattice.y0_mm) / step - 0.5).astype(np.int64)
    j_lo = np.clip(j_lo, 0, lattice.ny)
    j_hi = np.clip(j_hi, 0, lattice.ny)
    counts = np.maximum(j_hi - j_lo, 0)
    edge_idx, rows = _expand_ranges(j_lo, counts)
    if rows.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    y_c = lattice.y0_mm + (rows + 0.5) * step
    ex0, ey0, ex1, ey1 = x0[edge_idx], y0[edge_idx], x1[edge_idx], y1[edge_idx]
    x_cross = ex0 + (y_c - ey0) * (ex1 - ex0) / (ey1 - ey0)
    row_key = edge_plane[edge_idx] * lattice.ny + rows
    order = np.lexsort((x_cross, row_key))
    row_key = row_key[order].reshape(-1, 2)
    x_cross = x_cross[order].reshape(-1, 2)
    # Each (plane,row) has an even number of crossings, so consecutive pairs never straddle rows.
    key = row_key[:, 0]
    i_lo = np.ceil((x_cross[:, 0] - lattice.x0_mm) / step - 0.5).astype(np.int64)
    i_hi = np.ceil((x_cross[:, 1] - lattice.x0_mm) / step - 0.5).astype(np.int64)
    i_lo = np.clip(i_lo, 0, lattice.nx)
    i_hi = np.clip(i_hi, 0, lattice.nx)
    span = np.maximum(i_hi - i_lo, 0)
    interval, cols = _expand_ranges(i_lo, span)
    keys = key[interval]
    return keys // lattice.ny, cols, keys % lattice.ny


def points_in_polygons(points: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Even-odd inside test of arbitrary points against a plane's polygons.

    Parameters
    ----------
    points
        ``(M, 2)`` x, y in mm.
    polygons
        The plane's polygons, ``(N, 2)`` each.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` bool.
    """
    inside = np.zeros(len(points), dtype=bool)
    px = points[:, 0][:, None]
    py = points[:, 1][:, None]
    for poly in polygons:
        x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
        nxt = np.roll(poly, -1, axis=0)
        x1, y1 = nxt[:, 0][None, :], nxt[:, 1][None, :]
        straddles = (y0 <= py) != (y1 <= py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        crossings = np.count_nonzero(straddles & (px < x_cross), axis=1)
        inside ^= (crossings % 2).astype(bool)
    return inside


def _shoelace_mm2(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def even_odd_area_mm2(polygons: Sequence[np.ndarray]) -> float | None:
    """Exact area (mm²) of the even-odd union of properly nested polygons.

    Each polygon's area is added or subtracted by the parity of how many other
    polygons of the plane contain it (a hole inside an island is subtracted, an
    island inside a hole added). Returns None when the polygons are not
    properly nested (a vertex of one is inside and another outside a second
    polygon), in which case the caller should use the rasterised area.
    """
    if len(polygons) == 1:
        return _shoelace_mm2(polygons[0])
    total = 0.0
    for k, poly in enumerate(polygons):
        others = [p for m, p in enumerate(polygons) if m != k]
        depth = 0
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        for other in others:
            olo, ohi = other.min(axis=0), other.max(axis=0)
            if np.any(hi < olo) or np.any(lo > ohi):
                continue  # bounding boxes apart: neither contains the other
            inside = points_in_polygons(poly, [other])
            if inside.all():
                depth += 1
            elif inside.any():
                return None
        total += _shoelace_mm2(poly) * (-1 if depth % 2 else 1)
    return total
