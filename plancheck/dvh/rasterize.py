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
from functools import cached_property

import numpy as np

__all__ = [
    "PlaneLattice",
    "PolygonSet",
    "rasterize_planes",
    "rasterize_polygon_set",
    "even_odd_area_mm2",
    "plane_areas_mm2",
    "expand_ranges",
]



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


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[start, start + count)`` return (owner index, value) of every member."""
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(counts)), counts)
    if total == 0:
        return owner, np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    within = np.arange(total) - np.repeat(offsets, counts)
    return owner, np.repeat(starts, counts) + within


@dataclass(frozen=True, eq=False)
class PolygonSet:
    """All polygons of several planes, concatenated (vectorised geometry without
    a Python loop per polygon).

    Attributes
    ----------
    vertices
        ``(M, 2)`` x, y of every vertex, polygon after polygon, plane after plane.
    next_index
        ``(M,)`` index of the following vertex of the same polygon (closing edge included).
    start, length
        First vertex and number of vertices of each polygon.
    plane
        Plane of each polygon.
    number_of_planes
        Number of planes (planes without polygons included).
    """

    vertices: np.ndarray
    next_index: np.ndarray
    start: np.ndarray
    length: np.ndarray
    plane: np.ndarray
    number_of_planes: int

    @classmethod
    def from_planes(cls, planes: Sequence[Sequence[np.ndarray]]) -> PolygonSet:
        lengths = [len(poly) for polygons in planes for poly in polygons]
        plane = np.repeat(np.arange(len(planes)), [len(polygons) for polygons in planes])
        length = np.asarray(lengths, dtype=np.int64)
        if length.size == 0:
            return cls(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), length, length, plane.astype(np.int64), len(planes))
        vertices = np.concatenate([np.asarray(poly, dtype=float).reshape(-1, 2) for polygons in planes for poly in polygons])
        start = np.cumsum(length) - length
        next_index = np.arange(len(vertices)) + 1
        next_index[start + length - 1] = start
        return cls(vertices, next_index, start, length, plane.astype(np.int64), len(planes))

    @property
    def vertex_polygon(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.length)), self.length)

    @cached_property
    def plane_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The non-horizontal edges, plane after plane: x0, y0, x1, y1 and the start of each
        plane's edges (``number_of_planes + 1`` entries)."""
        from plancheck.kernels import plane_edge_table

        vertex_plane = np.repeat(self.plane, self.length)
        return plane_edge_table(np.ascontiguousarray(self.vertices, dtype=float), self.next_index, vertex_plane,
                                int(self.number_of_planes))

    def edges(self) -> np.ndarray:
        """All closing edges as an ``(E, 4)`` array of x0, y0, x1, y1."""
        return np.hstack([self.vertices, self.vertices[self.next_index]])

    def signed_areas_mm2(self) -> np.ndarray:
        """Signed shoelace area of each polygon, mm²."""
        if len(self.length) == 0:
            return np.zeros(0)
        x, y = self.vertices[:, 0], self.vertices[:, 1]
        nxt = self.next_index
        cross = x * y[nxt] - y * x[nxt]
        return 0.5 * np.add.reduceat(cross, self.start)


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
        lattice column and row. Samples come plane after plane, row after row
        (ascending), column ascending within a row.
    """
    return rasterize_polygon_set(PolygonSet.from_planes(planes), lattice)


def rasterize_polygon_set(pset: PolygonSet, lattice: PlaneLattice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rasterize_planes` on a :class:`PolygonSet` (compiled:
    :func:`plancheck.kernels.rasterize_lattice`)."""
    from plancheck.kernels import rasterize_lattice

    empty = np.zeros(0, dtype=np.int64)
    if len(pset.vertices) == 0:
        return empty, empty, empty
    ex0, ey0, ex1, ey1, edge_start = pset.plane_edges
    return rasterize_lattice(ex0, ey0, ex1, ey1, edge_start, float(lattice.x0_mm), float(lattice.y0_mm),
                             float(lattice.step_mm), int(lattice.nx), int(lattice.ny))


def _shoelace_mm2(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _containment_pairs(pset: PolygonSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every ordered pair (k, m) of distinct polygons of one plane whose bounding
    boxes touch: how many vertices of k lie inside m (even-odd ray test of
    :func:`plancheck.polygons.points_in_polygons`, batched over every pair). Returns k, m and the count."""
    empty = np.zeros(0, dtype=np.int64)
    n_poly = len(pset.length)
    per_plane = np.bincount(pset.plane, minlength=pset.number_of_planes)
    if n_poly < 2 or per_plane.max() < 2:
        return empty, empty, empty
    verts = pset.vertices
    x, y = verts[:, 0], verts[:, 1]
    lo_x = np.minimum.reduceat(x, pset.start)
    hi_x = np.maximum.reduceat(x, pset.start)
    lo_y = np.minimum.reduceat(y, pset.start)
    hi_y = np.maximum.reduceat(y, pset.start)
    # candidate pairs: every polygon against every polygon of its plane
    plane_first = np.cumsum(per_plane) - per_plane
    k, m = expand_ranges(plane_first[pset.plane], per_plane[pset.plane])
    keep = (k != m) & (per_plane[pset.plane[k]] > 1)
    k, m = k[keep], m[keep]
    apart = (hi_x[k] < lo_x[m]) | (hi_y[k] < lo_y[m]) | (lo_x[k] > hi_x[m]) | (lo_y[k] > hi_y[m])
    k, m = k[~apart], m[~apart]
    if k.size == 0:
        return empty, empty, empty
    # Vertices sorted by (polygon, y) with exact integer ranks of y.
    uniq, rank = np.unique(y, return_inverse=True)
    nu = len(uniq) + 1
    vpoly = pset.vertex_polygon
    vkey = vpoly * nu + rank
    order = np.argsort(vkey, kind="stable")
    sorted_key = vkey[order]
    # Every edge of m against the vertices of k whose y lies in [ymin, ymax) of the edge.
    pair_of_edge, edge = expand_ranges(pset.start[m], pset.length[m])
    nxt = pset.next_index[edge]
    r0, r1 = rank[edge], rank[nxt]
    kk = k[pair_of_edge]
    lo = np.searchsorted(sorted_key, kk * nu + np.minimum(r0, r1), side="left")
    hi = np.searchsorted(sorted_key, kk * nu + np.maximum(r0, r1), side="left")
    hit_edge, pos = expand_ranges(lo, np.maximum(hi - lo, 0))
    v = order[pos]
    e = edge[hit_edge]
    en = nxt[hit_edge]
    ex0, ey0, ex1, ey1 = x[e], y[e], x[en], y[en]
    py = y[v]
    x_cross = ex0 + (py - ey0) * (ex1 - ex0) / (ey1 - ey0)
    right = x[v] < x_cross
    # parity of crossings per (pair, vertex): vertex index local to polygon k
    pair = pair_of_edge[hit_edge]
    local = v - pset.start[k[pair]]
    offsets = np.cumsum(pset.length[k]) - pset.length[k]
    slot = offsets[pair] + local
    crossings = np.bincount(slot[right], minlength=int(pset.length[k].sum()))
    inside = (crossings % 2).astype(np.int64)
    count = np.add.reduceat(inside, offsets) if len(offsets) else empty
    return k, m, count


def plane_areas_mm2(pset: PolygonSet) -> np.ndarray:
    """Exact even-odd area (mm²) of each plane of a polygon set, NaN for a plane
    whose polygons are not properly nested (see :func:`even_odd_area_mm2`)."""
    signed = pset.signed_areas_mm2()
    k, m, count = _containment_pairs(pset)
    n_poly = len(pset.length)
    depth = np.bincount(k[count == pset.length[k]], minlength=n_poly) if k.size else np.zeros(n_poly, dtype=np.int64)
    partial = (count > 0) & (count < pset.length[k]) if k.size else np.zeros(0, dtype=bool)
    contribution = np.abs(signed) * np.where(depth % 2 == 1, -1.0, 1.0)
    areas = np.zeros(pset.number_of_planes)
    np.add.at(areas, pset.plane, contribution)
    if partial.any():
        areas[np.unique(pset.plane[k[partial]])] = np.nan
    return areas


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
    area = float(plane_areas_mm2(PolygonSet.from_planes([polygons]))[0])
    return None if np.isnan(area) else area
