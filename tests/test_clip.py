"""Clipping of contours to a box (plancheck.dvh.clip), against areas worked out by hand,
and the isodose box of a dose grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plancheck.dvh.clip import clip_planes, clip_polygon, clip_polygons, clipped_roi, isodose_box, polygon_area_mm2
from plancheck.dvh.interpolate import grid_extent_mm, trilinear_dose_gy
from plancheck.dvh.rasterize import PlaneLattice, rasterize_planes
from plancheck.polygons import points_in_polygons
from plancheck.dvh.sampling import sample_roi
from plancheck.model import Contour, DoseGrid, Roi


def square(x0, x1, y0, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def circle(cx, cy, r, n=4096) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


def raster_area(polygons, step=0.02, bounds=(-25.0, 25.0)) -> float:
    """Even-odd area of a plane's polygons by fine rasterisation (independent of clip)."""
    n = int((bounds[1] - bounds[0]) / step)
    lattice = PlaneLattice(bounds[0], bounds[0], step, n, n)
    plane, _, _ = rasterize_planes([list(polygons)], lattice)
    return len(plane) * step * step


def test_square_clipped_by_a_box():
    sq = square(0, 4, 0, 4)
    out = clip_polygon(sq, (2, 10, -1, 3))  # keeps [2, 4] x [0, 3]
    assert polygon_area_mm2(out) == pytest.approx(6.0)
    assert out[:, 0].min() == 2 and out[:, 0].max() == 4 and out[:, 1].min() == 0 and out[:, 1].max() == 3
    # box inside the square: the box itself; orientation kept (clockwise input stays clockwise)
    assert polygon_area_mm2(clip_polygon(sq, (1, 2, 1, 3))) == pytest.approx(2.0)
    assert polygon_area_mm2(clip_polygon(sq[::-1], (1, 2, 1, 3))) == pytest.approx(-2.0)


def test_polygon_wholly_inside_or_outside():
    sq = square(0, 4, 0, 4)
    assert np.array_equal(clip_polygon(sq, (-1, 5, -1, 5)), sq)
    assert np.array_equal(clip_polygon(sq, (0, 4, 0, 4)), sq)  # the box is the square
    assert len(clip_polygon(sq, (5, 9, 0, 4))) == 0  # beside it
    assert len(clip_polygon(sq, (4, 9, 0, 4))) == 0  # sharing an edge only: no area left
    assert len(clip_polygon(sq, (1, 1, 0, 4))) == 0  # empty box
    kept = clip_polygons([sq, square(10, 11, 10, 11)], (-1, 5, -1, 5))
    assert len(kept) == 1 and np.array_equal(kept[0], sq)


@pytest.mark.parametrize("d", [0.0, 3.0, 6.0, -4.0])
def test_circle_partly_outside(d):
    """A circle of radius 10 cut by the line x = d: the circular segment r² acos(d/r) - d √(r² - d²)."""
    r = 10.0
    poly = circle(0.0, 0.0, r)
    out = clip_polygon(poly, (d, 50, -50, 50))
    expected = r * r * math.acos(d / r) - d * math.sqrt(r * r - d * d)
    assert polygon_area_mm2(out) == pytest.approx(expected, rel=2e-5)  # 4096-gon vs circle
    assert out[:, 0].min() >= d


def test_circle_in_a_corner():
    """Quarter of a circle: box corner at the centre."""
    out = clip_polygon(circle(3.0, -2.0, 5.0), (3.0, 20.0, -2.0, 20.0))
    assert polygon_area_mm2(out) == pytest.approx(math.pi * 25 / 4, rel=2e-5)


def test_concave_polygon_cut_into_two_pieces():
    """A U (6 x 6 square with a 2 mm wide notch from the top down to y = 2) cut at y = 3
    falls apart into two 2 x 3 bars: one polygon with a zero-width bridge along y = 3."""
    u = np.array([[0, 0], [6, 0], [6, 6], [4, 6], [4, 2], [2, 2], [2, 6], [0, 6]], dtype=float)
    out = clip_polygon(u, (-1, 7, 3, 10))
    assert polygon_area_mm2(out) == pytest.approx(12.0)
    inside = points_in_polygons(np.array([[1, 4], [5, 4], [3, 4], [3, 2.5], [1, 2.5]]), [out])
    assert inside.tolist() == [True, True, False, False, False]
    assert raster_area([out]) == pytest.approx(12.0, rel=1e-3)


def test_even_odd_holes_stay_holes():
    """A 10 x 10 square with a 4 x 4 hole, cut through the hole at x = 5: [5, 10] x [0, 10]
    minus [5, 7] x [3, 7] = 50 - 8 = 42 mm²."""
    outer, hole = square(0, 10, 0, 10), square(3, 7, 3, 7)
    out = clip_polygons([outer, hole], (5, 20, -5, 20))
    assert len(out) == 2
    assert sum(abs(polygon_area_mm2(p)) for p in out) == pytest.approx(50 + 8)
    inside = points_in_polygons(np.array([[6, 5], [8, 5], [6, 1], [4, 5], [6, 8]]), list(out))
    assert inside.tolist() == [False, True, True, False, True]
    assert raster_area(out) == pytest.approx(42.0, rel=1e-3)
    # as an ROI: the sampler's volume is the even-odd area times the slab
    roi = Roi(1, "ring", "", tuple(Contour(np.column_stack([p, np.zeros(len(p))])) for p in out))
    assert sample_roi(roi, default_thickness_mm=2.0).volume_cc == pytest.approx(42.0 * 2 / 1000, rel=2e-3)
    # a hole wholly inside the box and one wholly outside it
    inner = clip_polygons([outer, square(6, 8, 6, 8), square(1, 2, 1, 2)], (5, 20, 5, 20))
    assert len(inner) == 2 and raster_area(inner) == pytest.approx(25.0 - 4.0, rel=1e-3)


def test_clip_planes_and_roi():
    z = [0.0, 2.0, 4.0]
    contours = [Contour(np.column_stack([square(0, 4, 0, 4) + k, np.full(4, zk)])) for k, zk in enumerate(z)]
    roi = Roi(7, "Box", "ORGAN", tuple(contours))
    planes = clip_planes(roi.planes, (0, 4.5, 0, 4.5))
    assert list(planes) == [0.0, 1 * 2.0, 4.0]
    assert [polygon_area_mm2(p[0]) for p in planes.values()] == pytest.approx([16.0, 3.5 * 3.5, 2.5 * 2.5])
    assert list(clip_planes(roi.planes, (0, 1.5, 0, 1.5))) == [0.0, 2.0]  # the plane at z=4 starts at x=2: nothing left
    sub = clipped_roi(roi, (0, 4.5, 0, 4.5), [2.0, 4.0])
    assert (sub.number, sub.name, sub.interpreted_type) == (7, "Box", "ORGAN")
    assert list(sub.planes) == [2.0, 4.0]


def test_isodose_box():
    x = np.arange(0.0, 21.0, 2.0)  # 11 voxels, 2 mm
    y = np.arange(0.0, 31.0, 3.0)  # 11 voxels, 3 mm
    z = np.arange(-10.0, 11.0, 2.5)  # 9 planes, 2.5 mm
    dose = np.zeros((len(z), len(y), len(x)))
    dose[4, 5, 3] = 10.0  # hot voxel at x=6, y=15, z=0
    grid = DoseGrid(dose, x, y, z, "1.2")
    box = isodose_box(grid, 5.0)
    # one voxel and half a voxel beyond the hot voxel's centre
    assert np.allclose(box, [(6 - 3.0, 6 + 3.0), (15 - 4.5, 15 + 4.5), (0 - 3.75, 0 + 3.75)])
    assert isodose_box(grid, 10.5) is None
    # outside the box the interpolated dose is below the isodose
    rng = np.random.default_rng(1)
    (ex0, ex1), (ey0, ey1), (ez0, ez1) = grid_extent_mm(grid)
    pts = np.column_stack([rng.uniform(ex0, ex1, 20000), rng.uniform(ey0, ey1, 20000), rng.uniform(ez0, ez1, 20000)])
    d = trilinear_dose_gy(grid, pts)
    (bx0, bx1), (by0, by1), (bz0, bz1) = box
    outside = (pts[:, 0] < bx0) | (pts[:, 0] > bx1) | (pts[:, 1] < by0) | (pts[:, 1] > by1) | (pts[:, 2] < bz0) | (pts[:, 2] > bz1)
    assert outside.sum() > 1000 and np.all(d[outside] < 5.0)
    # a hot voxel on the grid's edge: the box ends at the grid's edge
    dose[:] = 0.0
    dose[0, 0, 10] = 10.0
    assert np.allclose(isodose_box(grid, 5.0), [(17.0, 21.0), (-1.5, 4.5), (-11.25, -6.25)])
