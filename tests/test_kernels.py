"""The compiled DVH kernels (:mod:`plancheck.kernels`) against plain references.

Every public function that runs on a numba kernel is compared with a straightforward
formulation of the same model written here, independently of the engine's code:

* trilinear dose and gradient (:mod:`plancheck.dvh.interpolate`): a per-point loop over
  the eight surrounding voxel centres;
* the slot-major order of :class:`~plancheck.dvh.interpolate.PointColumns`: a list
  comprehension;
* the even-odd inside test and the rasteriser (:mod:`plancheck.dvh.rasterize`): each other
  on lattice points and the plain numpy ray test :func:`~plancheck.polygons.points_in_polygons`;
* the spread histogram (:func:`plancheck.dvh.dvh._histogram`): the exact overlap of each
  sample's uniform spread with every bin; the sample statistics: numpy;
* the hot-tail subdivision (:func:`plancheck.dvh.engine._subdivide`): a brute-force
  reimplementation of its documented rules with Python sets (an expected failure records
  that parents at negative lattice indices are not supported).

All inputs come from fixed seeds.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import Counter

import numpy as np
import pytest

from phantoms import Phantom, circle, rectangle, sphere
from plancheck.dvh.dvh import _histogram, sample_stats
from plancheck.dvh.engine import (
    REACH_FACTOR,
    _TAIL_BINS,
    PointDoseSource,
    _Cells,
    _cell_doses,
    _refine_hot_tail,
    _replace_weights,
    _select_tail,
    _subdivide,
    sample_for_grid,
)
from plancheck.dvh.interpolate import columns_dose, lattice_dose, trilinear_dose_and_gradient
from plancheck.kernels import parse_decimal_strings, replace_plane_weights, tail_cells
from plancheck.dvh.rasterize import (
    PlaneLattice,
    PolygonSet,
    rasterize_polygon_set,
)
from plancheck.model import DoseGrid
from plancheck.polygons import points_in_polygons

FRAME = "1.2.826.0.1.3680043.8.498.77"

# The kernel evaluates the trilinear field as nested lerps (x, then y, then z) in double
# precision; the reference below sums the eight corner weights × values. Both are exact up
# to a few roundings of the order of eps·max|D| (eps ≈ 2.2e-16), so 1e-9 of the dose scale
# (and of dose scale / smallest spacing for the gradient) leaves a margin of ~1e5 while any
# modelling error (wrong cell, weight, clamping, float32 arithmetic: ~1e-7) is far above it.
RTOL = 1e-9


# ------------------------------------------------------------------------------ helpers: dose grids

def _random_grid(seed, *, irregular=(), dtype=np.float64):
    """A small grid of random doses (0–60 Gy); the axes named in ``irregular`` have
    uneven spacings."""
    rng = np.random.default_rng(seed)
    axes = []
    for name, start, step, n in (("x", -6.13, 2.5, 7), ("y", -8.41, 2.0, 6), ("z", -5.27, 3.0, 5)):
        if name in irregular:
            axes.append(start + np.concatenate([[0.0], np.cumsum(rng.uniform(0.5, 2.0, n - 1) * step)]))
        else:
            axes.append(start + step * np.arange(n))
    x, y, z = axes
    dose = rng.uniform(0.0, 60.0, (len(z), len(y), len(x))).astype(dtype)
    return DoseGrid(dose, x, y, z, FRAME)


def _axis_weight(axis, c):
    """Reference fractional position of coordinate ``c`` on one grid axis: (lower index,
    upper index, weight of the upper one, its derivative in 1/mm), or None when ``c`` is
    beyond the outer half-voxel shell. In the shell the point is clamped to the end
    centre (constant extrapolation, derivative 0)."""
    n = len(axis)
    lo = axis[0] - (axis[1] - axis[0]) / 2
    hi = axis[-1] + (axis[-1] - axis[-2]) / 2
    if c < lo - 1e-6 or c > hi + 1e-6:
        return None
    if c <= axis[0]:
        return 0, 0, 0.0, 0.0
    if c >= axis[-1]:
        return n - 1, n - 1, 0.0, 0.0
    i = bisect_right(list(axis), c) - 1  # axis[i] <= c < axis[i + 1]
    h = axis[i + 1] - axis[i]
    return i, i + 1, (c - axis[i]) / h, 1.0 / h


def _reference_trilinear(grid, points):
    """Plain per-point trilinear dose and gradient (NaN dose, zero gradient when not covered)."""
    dose = np.asarray(grid.dose_gy, dtype=np.float64)
    axes = (np.asarray(grid.x_mm, float), np.asarray(grid.y_mm, float), np.asarray(grid.z_mm, float))
    values = np.full(len(points), np.nan)
    grads = np.zeros((len(points), 3))
    for n, p in enumerate(np.asarray(points, dtype=float)):
        w = [_axis_weight(a, c) for a, c in zip(axes, p)]
        if any(v is None for v in w):
            continue
        value = 0.0
        grad = [0.0, 0.0, 0.0]
        for corner in itertools.product((0, 1), repeat=3):
            idx, wt, dwt = [], [], []
            for (i0, i1, t, dt), b in zip(w, corner):
                idx.append(i1 if b else i0)
                wt.append(t if b else 1.0 - t)
                dwt.append(dt if b else -dt)
            v = float(dose[idx[2], idx[1], idx[0]])
            value += wt[0] * wt[1] * wt[2] * v
            grad[0] += dwt[0] * wt[1] * wt[2] * v
            grad[1] += wt[0] * dwt[1] * wt[2] * v
            grad[2] += wt[0] * wt[1] * dwt[2] * v
        values[n] = value
        grads[n] = grad
    return values, grads


def _test_points(grid, seed, n=300):
    """Points inside the centre box, in the outer half-voxel shell (on 1–3 axes) and
    beyond it (on 1–3 axes), none within 1e-6 mm of the coverage boundary."""
    rng = np.random.default_rng(seed)
    axes = (grid.x_mm, grid.y_mm, grid.z_mm)
    first = np.array([a[0] for a in axes])
    last = np.array([a[-1] for a in axes])
    half_lo = np.array([(a[1] - a[0]) / 2 for a in axes])
    half_hi = np.array([(a[-1] - a[-2]) / 2 for a in axes])
    inside = first + rng.uniform(0.0, 1.0, (n, 3)) * (last - first)

    def displaced(kind):
        pts = first + rng.uniform(0.0, 1.0, (n, 3)) * (last - first)
        which = rng.uniform(size=(n, 3)) < 0.5
        which[np.arange(n), rng.integers(0, 3, n)] = True  # at least one axis
        high = rng.uniform(size=(n, 3)) < 0.5
        if kind == "shell":
            depth = rng.uniform(0.02, 0.98, (n, 3))
        else:
            depth = rng.uniform(1.05, 4.0, (n, 3))
        below = first - depth * half_lo
        above = last + depth * half_hi
        return np.where(which, np.where(high, above, below), pts)

    return np.vstack([inside, displaced("shell"), displaced("outside")])


def _assert_dose_close(got, expected, scale):
    """Same NaN pattern, and equal within RTOL of ``scale`` where covered."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=RTOL, atol=RTOL * scale)


def _grad_scale(grid):
    spacing = min(float(np.min(np.diff(a))) for a in (grid.x_mm, grid.y_mm, grid.z_mm))
    return float(np.max(np.abs(grid.dose_gy))) / spacing


# ------------------------------------------------------------------------------ helpers: polygons

def _plane_polygons():
    """Polygons of five planes: a ring (hole), two islands one of which has a hole, a
    concave star, nothing, and a triangle crossing the others' bounding box."""
    star_t = np.linspace(0.0, 2 * np.pi, 14, endpoint=False)
    star_r = np.where(np.arange(14) % 2 == 0, 6.3, 2.7)
    star = np.column_stack([0.4 + star_r * np.cos(star_t), -0.3 + star_r * np.sin(star_t)])
    return [
        [circle(0.31, -0.17, 6.2, 37), circle(0.55, 0.12, 2.9, 23)[::-1]],
        [circle(-3.7, 0.9, 3.1, 29), circle(-3.9, 1.1, 1.2, 17), circle(3.8, -1.3, 2.4, 31)],
        [star],
        [],
        [np.array([[-7.1, -6.3], [6.2, -2.9], [-1.3, 7.4]])],
    ]


def _dyadic_polygons():
    """Polygons whose vertices lie on lattice points and half-way between them (step 0.5,
    origin 0): edges through lattice points and vertices on lattice rows, where the
    half-open crossing rule decides, all in exact arithmetic."""
    diamond = np.array([[0.25, -3.25], [3.75, 0.25], [0.25, 3.75], [-3.25, 0.25]])
    return [
        [diamond, rectangle(-1.25, 1.75, -0.75, 1.25)],
        [rectangle(-4.0, 4.0, -3.5, 3.0), rectangle(-2.25, 2.25, -1.75, 1.75)[::-1],
         np.array([[5.25, -1.25], [7.25, 0.75], [5.25, 2.75], [6.25, 0.75]])],
        [rectangle(-6.0, -2.0, 2.0, 9.0)],  # crosses the lattice border
    ]


# ------------------------------------------------------------------------------ 1. trilinear at points

GRIDS = {
    "regular": dict(),
    "irregular-z": dict(irregular=("z",)),
    "irregular-xyz": dict(irregular=("x", "y", "z")),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", list(GRIDS))
def test_point_trilinear_matches_reference(kind, dtype):
    """trilinear_dose_and_gradient equals a per-point trilinear interpolation (value, gradient,
    shell clamping, NaN beyond the shell) on regular and irregular, float32 and float64 grids."""
    grid = _random_grid(11, dtype=dtype, **GRIDS[kind])
    points = _test_points(grid, 12)
    dose, grad = trilinear_dose_and_gradient(grid, points)
    ref_dose, ref_grad = _reference_trilinear(grid, points)
    assert np.isnan(ref_dose).sum() >= 250 and (~np.isnan(ref_dose)).sum() >= 550  # all three kinds present
    scale = float(np.max(np.abs(grid.dose_gy)))
    _assert_dose_close(dose, ref_dose, scale)
    np.testing.assert_allclose(grad, ref_grad, rtol=RTOL, atol=RTOL * _grad_scale(grid))
    # without the gradient: the same doses
    alone, none = trilinear_dose_and_gradient(grid, points, gradient=False)
    assert none is None
    _assert_dose_close(alone, ref_dose, scale)


@pytest.mark.parametrize("kind", list(GRIDS))
def test_point_trilinear_at_voxel_centres_is_the_grid_value(kind):
    """At every voxel centre the interpolated dose is the stored (float32) dose value."""
    grid = _random_grid(21, dtype=np.float32, **GRIDS[kind])
    zz, yy, xx = np.meshgrid(grid.z_mm, grid.y_mm, grid.x_mm, indexing="ij")
    points = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
    dose, _ = trilinear_dose_and_gradient(grid, points)
    expected = grid.dose_gy.astype(np.float64).ravel()
    np.testing.assert_allclose(dose, expected, rtol=RTOL, atol=RTOL * float(expected.max()))


# ------------------------------------------------------------------------------ 2. columns of a sampling

def _reference_slot_major(columns, table):
    """Plain slot-major order: slot j of every column whose plane has more than j points,
    in column order, then slot j + 1 ..."""
    counts = columns.counts[columns.plane]
    return np.array([table[p, j] for j in range(columns.z_mm.shape[1])
                     for p, n in zip(columns.plane, counts) if n > j])


def _reference_column_points(columns):
    """(x, y, z) of the points of a set of columns, slot-major."""
    counts = columns.counts[columns.plane]
    if columns.xy_mm is not None:
        xy = columns.xy_mm
    else:  # lattice columns: the lattice positions, written out here
        lat = columns.lattice
        xy = [(lat.x0_mm + (c + 0.5) * lat.step_mm, lat.y0_mm + (r + 0.5) * lat.step_mm) for c, r in zip(columns.col, columns.row)]
    return np.array([(x, y, columns.z_mm[p, j]) for j in range(columns.z_mm.shape[1])
                     for (x, y), p, n in zip(xy, columns.plane, counts) if n > j]).reshape(-1, 3)


def _sphere_case(kind, dtype=np.float64):
    """A 2 cc sphere (contours 2 mm apart) and a random grid covering only part of it."""
    roi = sphere(2.0, 2.0).roi
    rng = np.random.default_rng(31)
    x = -4.07 + 2.5 * np.arange(6)  # covers x >= -5.32: the sphere reaches -6.5
    y = -10.93 + 2.0 * np.arange(9)
    if kind == "regular":
        z = -6.1 + 2.0 * np.arange(7)
    else:
        z = np.array([-6.1, -4.3, -3.5, -1.0, 0.4, 2.9, 3.3, 6.0])
    grid = DoseGrid(rng.uniform(0.0, 60.0, (len(z), len(y), len(x))).astype(dtype), x, y, z, FRAME)
    return grid, sample_for_grid(roi, grid, target_samples=4000)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["regular", "irregular-z"])
def test_columns_dose_matches_point_trilinear(kind, dtype):
    """columns_dose on the cell and surface columns of a real sampling gives the doses and
    gradients of trilinear_dose_and_gradient (and of the plain reference) at points_mm()."""
    grid, sampling = _sphere_case(kind, dtype)
    scale = float(np.max(np.abs(grid.dose_gy)))
    all_columns = list(sampling.cell_columns) + list(sampling.extreme_columns)
    assert any(c.lattice is None for c in all_columns) and any(c.lattice is not None for c in all_columns)
    rng = np.random.default_rng(32)
    n_nan = n_cov = 0
    for columns in all_columns:
        points = columns.points_mm()
        np.testing.assert_array_equal(points, _reference_column_points(columns))
        dose, grad, spread = columns_dose(grid, columns, gradient=True)
        assert spread is None
        ref_dose, ref_grad = trilinear_dose_and_gradient(grid, points)
        _assert_dose_close(dose, ref_dose, scale)
        np.testing.assert_allclose(grad, ref_grad, rtol=RTOL, atol=RTOL * _grad_scale(grid))
        # and, on a subset, directly against the plain reference
        pick = rng.choice(len(points), size=min(len(points), 300), replace=False)
        plain_dose, plain_grad = _reference_trilinear(grid, points[pick])
        _assert_dose_close(dose[pick], plain_dose, scale)
        np.testing.assert_allclose(grad[pick], plain_grad, rtol=RTOL, atol=RTOL * _grad_scale(grid))
        n_nan += int(np.isnan(dose).sum())
        n_cov += int((~np.isnan(dose)).sum())
    assert n_nan > 100 and n_cov > 1000  # partly covered


@pytest.mark.parametrize("kind", ["regular", "irregular-z"])
def test_columns_dose_spread_is_gradient_times_cell_size(kind):
    """columns_dose's spread equals sqrt((gx·s)² + (gy·s)² + (gz·h)²) with the point gradient,
    s the lattice step and h the cell's z extent; the dose is unchanged without the gradient."""
    grid, sampling = _sphere_case(kind)
    s = sampling.step_mm
    for columns in sampling.cell_columns:
        dose, none, spread = columns_dose(grid, columns, gradient=False, spread_step_mm=s)
        assert none is None
        ref_dose, g = trilinear_dose_and_gradient(grid, _reference_column_points(columns))
        h = _reference_slot_major(columns, columns.z_extent_mm)
        np.testing.assert_array_equal(columns.slot_major(columns.z_extent_mm), h)
        expected = np.sqrt((g[:, 0] * s) ** 2 + (g[:, 1] * s) ** 2 + (g[:, 2] * h) ** 2)
        _assert_dose_close(dose, ref_dose, float(np.max(grid.dose_gy)))
        assert np.all(spread[np.isnan(ref_dose)] == 0.0)
        np.testing.assert_allclose(spread, expected, rtol=RTOL, atol=RTOL * _grad_scale(grid) * max(s, h.max()))
        assert np.count_nonzero(spread) > 0.5 * len(spread)


# ------------------------------------------------------------------------------ 3. cells of a lattice

@pytest.mark.parametrize("kind", list(GRIDS))
def test_lattice_dose_matches_reference_at_cell_centres(kind):
    """lattice_dose equals the plain trilinear dose and gradient at the cell centres
    (x0 + (col + ½)·step, y0 + (row + ½)·step, z_table.flat[zcode]), and its spread is
    sqrt((gx·step)² + (gy·step)² + (gz·height)²)."""
    grid = _random_grid(41, **GRIDS[kind])
    rng = np.random.default_rng(42)
    x0, y0, step = -9.37, -11.81, 0.7
    n = 600
    col = rng.integers(-3, 35, n)  # part of the cells lies beyond the grid in x and y
    row = rng.integers(2, 30, n)
    zr = (grid.z_mm[0] - 3.0, grid.z_mm[-1] + 3.0)
    z_table = rng.uniform(*zr, (4, 3))
    zcode = rng.integers(0, z_table.size, n)
    heights = rng.uniform(0.2, 3.0, n)
    dose, grad, spread = lattice_dose(grid, x0, y0, step, col, row, z_table, zcode, heights, gradient=True)
    centres = np.column_stack([x0 + (col + 0.5) * step, y0 + (row + 0.5) * step, z_table.reshape(-1)[zcode]])
    ref_dose, ref_grad = _reference_trilinear(grid, centres)
    assert 50 < np.isnan(ref_dose).sum() < n - 100
    scale = float(np.max(grid.dose_gy))
    gscale = _grad_scale(grid)
    _assert_dose_close(dose, ref_dose, scale)
    np.testing.assert_allclose(grad, ref_grad, rtol=RTOL, atol=RTOL * gscale)
    expected = np.sqrt((ref_grad[:, 0] * step) ** 2 + (ref_grad[:, 1] * step) ** 2 + (ref_grad[:, 2] * heights) ** 2)
    np.testing.assert_allclose(spread, expected, rtol=RTOL, atol=RTOL * gscale * 3.0)
    # without gradient and heights: the same doses only
    alone, g, sp = lattice_dose(grid, x0, y0, step, col, row, z_table, zcode)
    assert g is None and sp is None
    _assert_dose_close(alone, ref_dose, scale)


# ------------------------------------------------------------------------------ 4. rasteriser

@pytest.mark.parametrize("polygons", [_plane_polygons, _dyadic_polygons], ids=["general", "dyadic"])
def test_rasteriser_agrees_with_ray_test_on_lattice(polygons):
    """On every point of a lattice, rasterize_polygon_set (compiled) finds exactly the points
    the plain ray test points_in_polygons finds inside (same half-open rule on vertices and
    edges through points; the dyadic polygons put vertices and edges on lattice points)."""
    pset = PolygonSet.from_planes(polygons())
    lattice = PlaneLattice(-8.0, -8.0, 0.5, 32, 30)
    plane, col, row = rasterize_polygon_set(pset, lattice)
    n_planes = pset.number_of_planes
    raster = np.zeros((n_planes, lattice.ny, lattice.nx), dtype=bool)
    raster[plane, row, col] = True
    pp, rr, cc = np.meshgrid(np.arange(n_planes), np.arange(lattice.ny), np.arange(lattice.nx), indexing="ij")
    points = np.column_stack([lattice.x0_mm + (cc.ravel() + 0.5) * lattice.step_mm,
                              lattice.y0_mm + (rr.ravel() + 0.5) * lattice.step_mm])
    assert 0.05 < raster.mean() < 0.6
    for p, polys in enumerate(polygons()):
        ray = points_in_polygons(points[pp.ravel() == p], polys) if polys else False
        np.testing.assert_array_equal(raster[p].ravel(), ray)


# ------------------------------------------------------------------------------ 5. spread histogram

def _reference_histogram(parts, lo, hi, width, nbins):
    """Samples of all parts (NaN doses left out, negative ones taken as 0), each spread
    uniformly over [clip(d − s/2), clip(d + s/2)] (clipped to [lo, hi]), its volume shared by
    exact overlap with every bin; a point at the centre bin when the clipped range is
    narrower than a bin (or without spread)."""
    hist = np.zeros(nbins)
    for d_all, w_all, s_all in parts:
        for i in range(len(d_all)):
            if np.isnan(d_all[i]):
                continue
            d = max(d_all[i], 0.0)
            if s_all is None:
                a = b = d
            else:
                a = min(max(d - s_all[i] / 2, lo), hi)
                b = min(max(d + s_all[i] / 2, lo), hi)
            if b - a < width:
                hist[min(int(np.floor((a + b) / 2 / width)), nbins - 1)] += w_all[i]
                continue
            for k in range(nbins):
                overlap = min(b, (k + 1) * width) - max(a, k * width)
                if overlap > 0:
                    hist[k] += w_all[i] * overlap / (b - a)
    return hist


def _histogram_samples(seed, n=400):
    """Doses (some repeated, a few NaN and negative), volumes ~1 and spreads from 0 to
    ~30 Gy, around and beyond the bin width."""
    rng = np.random.default_rng(seed)
    width = [0.05, 0.1, 0.037][seed % 3]
    d = rng.uniform(12.0, 58.0, n)
    d[:40] = rng.choice(d[40:], 40)  # repeated doses
    d[40:50] = np.nan
    d[50:55] = -rng.uniform(0.0, 2.0, 5)
    w = rng.uniform(0.05, 2.0, n)
    s = rng.choice([0.0, 0.3 * width, 0.99 * width, 1.5 * width, 4.0, 20.0], n) * rng.uniform(0.5, 1.5, n)
    return d, w, s, width


@pytest.mark.parametrize("seed", [61, 62, 63])
@pytest.mark.parametrize("parts_of", ["spread", "points", "mixed"])
def test_spread_histogram_matches_exact_overlap(seed, parts_of):
    """_histogram's bins equal the exact overlap of every sample's clipped uniform spread
    with every bin (centre bin for narrow spreads, NaN left out, negative at 0), over one
    or several sample sets, and keep the total covered volume."""
    d, w, s, width = _histogram_samples(seed)
    if parts_of == "spread":
        parts = [(d, w, s)]
    elif parts_of == "points":
        parts = [(d, w, None)]
    else:  # a spread part, a point part and another spread part
        parts = [(d[:150], w[:150], s[:150]), (d[150:260], w[150:260], None), (d[260:], w[260:], s[260:])]
    covered = ~np.isnan(d)
    lo, hi = float(np.maximum(d[covered], 0.0).min()), float(d[covered].max())
    assert lo == 0.0  # negative doses count as 0
    hist = _histogram(parts, lo, hi, width)
    nbins = int(hi / width) + 1
    assert len(hist) == nbins and hi < nbins * width
    expected = _reference_histogram(parts, lo, hi, width, nbins)
    assert abs(hist.sum() - w[covered].sum()) < 1e-9
    np.testing.assert_allclose(hist, expected, rtol=0, atol=1e-9)
    if parts_of == "spread":
        points_only = _reference_histogram([(d, w, None)], lo, hi, width, nbins)
        assert np.count_nonzero(expected) > 1.5 * np.count_nonzero(points_only)  # spreads do spread


def test_sample_stats_match_numpy():
    """sample_stats gives the min, max, volume, dose-volume integral and number of the
    covered samples (NaN left out, negative doses as 0)."""
    d, w, _, _ = _histogram_samples(64)
    lo, hi, w_sum, dw_sum, n = sample_stats(d, w)
    covered = ~np.isnan(d)
    dc = np.maximum(d[covered], 0.0)
    assert (lo, hi, n) == (dc.min(), dc.max(), int(covered.sum()))
    assert w_sum == pytest.approx(w[covered].sum(), rel=1e-12)
    assert dw_sum == pytest.approx(float(np.dot(dc, w[covered])), rel=1e-12)
    assert sample_stats(np.full(3, np.nan), np.ones(3))[4] == 0


# ------------------------------------------------------------------------------ 6. hot-tail subdivision

_NEIGHBOURS = ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))


def _reference_subdivide(planes, x0, y0, step, k, parents):
    """Brute-force subdivision: returns a Counter of (plane, slot, col, row, fraction, z)
    over the kept sub-cells (z identifies the owning parent: its index)."""
    cache = {}

    def inside(p, s, c, r):  # centre of cell (c, r) of the lattice of step s on plane p
        key = (p, s, c, r)
        if key not in cache:
            point = np.array([[x0 + (c + 0.5) * s, y0 + (r + 0.5) * s]])
            cache[key] = bool(points_in_polygons(point, planes[p])[0]) if planes[p] else False
        return cache[key]

    cells = list(zip(*(parents.plane.tolist(), parents.slot.tolist(), parents.col.tolist(), parents.row.tolist())))
    is_parent = set(cells)
    ghosts = {}  # (plane, slot, col, row) -> first parent, in meeting order
    interior = []
    for i, (p, sl, c, r) in enumerate(cells):
        lone = True
        for dc, dr in _NEIGHBOURS:
            nb = (p, sl, c + dc, r + dr)
            if nb in is_parent or inside(p, step, c + dc, r + dr):
                continue
            lone = False
            ghosts.setdefault(nb, i)
        interior.append(lone)
    fine = step / k
    out = Counter()

    def emit(p, sl, c, r, fraction, owner, test):
        for b in range(k):
            for a in range(k):
                sc, sr = c * k + a, r * k + b
                if not test or inside(p, fine, sc, sr):
                    out[(p, sl, sc, sr, round(fraction, 12), float(parents.z[owner]))] += 1

    for i, (p, sl, c, r) in enumerate(cells):
        emit(p, sl, c, r, float(parents.fraction[i]), i, not interior[i])
    for (p, sl, c, r), i in ghosts.items():
        n_parent = sum((p, sl, c + dc, r + dr) in is_parent for dc, dr in _NEIGHBOURS)
        n_cell = n_parent + sum((p, sl, c + dc, r + dr) not in is_parent and inside(p, step, c + dc, r + dr)
                                for dc, dr in _NEIGHBOURS)
        emit(p, sl, c, r, n_parent / max(n_cell, 1) * float(parents.fraction[i]), i, True)
    return out


def _subdivide_polygons(x0, y0):
    """A circle-ish polygon on plane 0, a ring with a hole on plane 1. The circle has a
    tiny hole in a corner of the lattice cell (step 1 mm from x0, y0) at its centre: it
    holds a sub-cell centre but no lattice cell centre, so that cell, whose neighbours
    are all inside, keeps its sub-cells only by the interior-parent rule.
    Returns the polygons and the (col, row) of that cell."""
    c, r = int(np.floor(0.37 - x0)), int(np.floor(-0.21 - y0))
    speck = rectangle(x0 + c + 0.1, x0 + c + 0.35, y0 + r + 0.1, y0 + r + 0.35)
    planes = [
        [circle(0.37, -0.21, 4.3, 19), speck],
        [circle(-0.13, 0.42, 5.1, 23), circle(0.21, 0.05, 2.2, 13)[::-1]],
    ]
    return planes, (c, r)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", [71, 72])
@pytest.mark.parametrize("origin", [(-7.3, -6.8), (-2.15, -3.05)], ids=["whole", "cut"])
def test_subdivide_matches_brute_force(origin, seed, k):
    """_subdivide keeps exactly the sub-cells (plane, slot, col, row, fraction, owner) of the
    documented rules: interior parents whole, other parents and ghosts by sub-cell centre,
    ghost fraction = parent neighbours / (parent or inside neighbours) × first parent's."""
    x0, y0 = origin  # "cut": the lattice starts inside the region (parents on column/row 0)
    planes, speck_cell = _subdivide_polygons(x0, y0)
    pset = PolygonSet.from_planes(planes)
    step = 1.0
    plane, col, row = rasterize_polygon_set(pset, PlaneLattice(x0, y0, step, 16, 16))
    rng = np.random.default_rng(seed)
    slot = np.concatenate([np.zeros(len(plane), dtype=np.int64), np.ones(len(plane), dtype=np.int64)])
    plane, col, row = np.tile(plane, 2), np.tile(col, 2), np.tile(row, 2)
    pick = rng.permutation(len(plane))[: int(0.6 * len(plane))]  # random subset, random order
    speck = np.flatnonzero((plane == 0) & (col == speck_cell[0]) & (row == speck_cell[1]))
    assert len(speck) == 2  # the speck's cell is a lattice cell of plane 0 (both slots) ...
    pick = np.concatenate([pick[~np.isin(pick, speck)], speck[:1], speck[1:]])  # ... and a parent
    n = len(pick)
    parents = _Cells(plane[pick], slot[pick], col[pick], row[pick],
                     z=np.arange(n, dtype=float), height=rng.uniform(0.5, 3.0, n),
                     fraction=np.where(rng.uniform(size=n) < 0.2, 0.0, 1.0))
    if origin == (-2.15, -3.05):
        assert (parents.col == 0).any() and (parents.row == 0).any()
    subs = _subdivide(pset, x0, y0, step, k, parents, 2)
    got = Counter(zip(subs.plane.tolist(), subs.slot.tolist(), subs.col.tolist(), subs.row.tolist(),
                      np.round(subs.fraction, 12).tolist(), subs.z.tolist()))
    expected = _reference_subdivide(planes, x0, y0, step, k, parents)
    assert got == expected
    np.testing.assert_array_equal(subs.height, parents.height[subs.z.astype(int)])
    fractions = {f for (_, _, _, _, f, _) in expected}
    assert len(fractions) > 3  # ghost shares other than 0 and 1 occur
    parent_cells = set(zip(parents.plane.tolist(), parents.slot.tolist(), parents.col.tolist(), parents.row.tolist()))
    assert sum((p, sl, c // k, r // k) not in parent_cells for (p, sl, c, r, _, _) in expected) > 20  # ghosts' sub-cells


@pytest.mark.parametrize("x0, y0, cell", [(2.0, 0.0, (-1, 0)), (0.0, 2.0, (1, -2))], ids=["col-1", "row-2"])
def test_subdivide_at_negative_lattice_indices(x0, y0, cell):
    """_subdivide is invariant under moving the lattice origin: a parent at a negative
    column or row gives the brute-force sub-cells too."""
    planes = [[rectangle(0.0, 3.0, -0.4, 1.4)]]  # the parent's row is inside, the rows above and below are ghosts
    one = np.ones(1)
    parents = _Cells(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.array([cell[0]]),
                     np.array([cell[1]]), z=0 * one, height=one, fraction=one)
    subs = _subdivide(PolygonSet.from_planes(planes), x0, y0, 1.0, 2, parents, 1)
    got = Counter(zip(subs.plane.tolist(), subs.slot.tolist(), subs.col.tolist(), subs.row.tolist(),
                      np.round(subs.fraction, 12).tolist(), subs.z.tolist()))
    assert got == _reference_subdivide(planes, x0, y0, 1.0, 2, parents)


# ------------------------------------------------------------------------------ 7. hot-tail cell selection



def _reference_tail(doses, spread, weights, volume_cc, n_bins=_TAIL_BINS):
    """Plain hot-tail selection: D_tail from a histogram of the covered doses' weights over
    [lo, hi] (largest bin k whose bins >= k hold volume_cc, else 0), then every cell whose
    dose + REACH_FACTOR·spread reaches it. Returns (indices, D_tail)."""
    covered = ~np.isnan(doses)
    if not covered.any():
        return np.zeros(0, dtype=np.int64), np.nan
    lo, hi = float(np.min(doses[covered])), float(np.max(doses[covered]))
    if hi <= lo:
        d_tail = lo
    else:
        hist = [0.0] * n_bins
        for d, w in zip(doses[covered].tolist(), weights[covered].tolist()):
            hist[min(int((d - lo) * n_bins / (hi - lo)), n_bins - 1)] += w
        k = 0
        for b in range(n_bins):
            if sum(hist[b:]) >= volume_cc:
                k = b
        d_tail = lo + k * (hi - lo) / n_bins
    selected = [i for i in range(len(doses)) if covered[i] and doses[i] + REACH_FACTOR * spread[i] >= d_tail]
    return np.array(selected, dtype=np.int64), d_tail


def _tail_samples(seed, n=3000):
    """Doses 5–70 Gy (5 % NaN), weights 0.001–0.05 cc, spreads 0–4 Gy (a fifth exactly 0)."""
    rng = np.random.default_rng(seed)
    doses = rng.uniform(5.0, 70.0, n)
    doses[rng.uniform(size=n) < 0.05] = np.nan
    weights = rng.uniform(0.001, 0.05, n)
    spread = np.where(rng.uniform(size=n) < 0.2, 0.0, rng.uniform(0.0, 4.0, n))
    return doses, spread, weights


@pytest.mark.parametrize("seed", [81, 82])
@pytest.mark.parametrize("volume", ["tiny", "0.3cc", "10%", "60%", "more-than-total"])
def test_select_tail_matches_reference(seed, volume):
    """_select_tail and tail_cells' D_tail equal the plain 2048-bin histogram selection, from tiny to excess volumes."""
    doses, spread, weights = _tail_samples(seed)
    covered = ~np.isnan(doses)
    total = float(weights[covered].sum())
    volume_cc = {"tiny": 1e-4, "0.3cc": 0.3, "10%": 0.1 * total, "60%": 0.6 * total,
                 "more-than-total": 1.5 * total}[volume]
    got = _select_tail(doses, spread, weights, volume_cc)
    expected, d_tail = _reference_tail(doses, spread, weights, volume_cc)
    # well posed: no cell within rounding of D_tail
    reach = doses[covered] + REACH_FACTOR * spread[covered]
    assert np.min(np.abs(reach - d_tail)) > 1e-9 * d_tail or volume == "more-than-total"
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, expected)
    assert not np.isnan(doses[got]).any()
    cells, kernel_d_tail = tail_cells(doses, spread, weights, volume_cc, REACH_FACTOR, _TAIL_BINS)
    np.testing.assert_array_equal(cells, expected)
    assert kernel_d_tail == pytest.approx(d_tail, rel=1e-12)
    lo = float(np.nanmin(doses))
    if volume == "more-than-total":
        assert d_tail == lo and len(got) == covered.sum()  # every covered cell
    else:
        assert d_tail > lo and 0 < len(got) < covered.sum()
        # the tail's cells (dose >= D_tail) hold at least volume_cc, those one bin higher less
        width = (float(np.nanmax(doses)) - lo) / _TAIL_BINS
        assert weights[covered][doses[covered] >= d_tail].sum() >= volume_cc
        if d_tail + width < float(np.nanmax(doses)):  # (the top bin also holds the maximum)
            assert weights[covered][doses[covered] >= d_tail + width].sum() < volume_cc
        # spreads widen the selection beyond the cells at or above D_tail
        assert len(got) > np.count_nonzero(doses[covered] >= d_tail)


@pytest.mark.parametrize("volume_cc", [1e-4, 0.3, 1e3])
def test_select_tail_all_equal_doses(volume_cc):
    """With all covered doses equal, D_tail is that dose and every covered cell is selected."""
    doses = np.full(50, 42.5)
    doses[[3, 17, 40]] = np.nan
    spread = np.random.default_rng(83).uniform(0.0, 2.0, 50)
    weights = np.full(50, 0.01)
    got = _select_tail(doses, spread, weights, volume_cc)
    expected, d_tail = _reference_tail(doses, spread, weights, volume_cc)
    assert d_tail == 42.5
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, np.setdiff1d(np.arange(50), [3, 17, 40]))
    assert tail_cells(doses, spread, weights, volume_cc, REACH_FACTOR, _TAIL_BINS)[1] == 42.5


def test_select_tail_all_nan_is_empty():
    """No covered dose: nothing selected and D_tail is NaN."""
    doses = np.full(20, np.nan)
    got = _select_tail(doses, np.ones(20), np.ones(20), 0.3)
    assert got.size == 0
    cells, d_tail = tail_cells(doses, np.ones(20), np.ones(20), 0.3, REACH_FACTOR, _TAIL_BINS)
    assert cells.size == 0 and np.isnan(d_tail)
    assert _select_tail(np.zeros(0), np.zeros(0), np.zeros(0), 0.3).size == 0


def test_select_tail_volume_reached_exactly():
    """A tail volume reached exactly at a bin (binary-exact weights) counts as reached (D_tail at that bin)."""
    doses = np.array([10.0, 20.0, 30.0, 40.0, np.nan, 30.0])
    weights = np.array([0.25, 0.25, 0.125, 0.25, 0.25, 0.125])
    spread = np.zeros(6)
    got = _select_tail(doses, spread, weights, 0.5)  # 40 Gy (0.25) + 30 Gy (2 × 0.125)
    expected, d_tail = _reference_tail(doses, spread, weights, 0.5)
    assert 20.0 < d_tail <= 30.0
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, [2, 3, 5])


# ------------------------------------------------------------------------------ 8. plane weights after refinement

def _reference_cell_planes(sampling):
    """Plane of every cell of a sampling, in point order (plain slot-major order of each
    column set, the sets one after the other)."""
    parts = []
    for columns in sampling.cell_columns:
        table = np.repeat(np.arange(columns.z_mm.shape[0])[:, None], columns.z_mm.shape[1], axis=1)
        parts.append(_reference_slot_major(columns, table).reshape(-1))
    return np.concatenate(parts).astype(np.int64)


def _reference_replace_weights(weights, cell_plane, parents, sub_weight, sub_plane):
    """Plain per-plane replacement of the parents by the sub-cells. Returns (first-pass
    weights, sub-cell weights, {plane: "rest" or "sub"}: which side was rescaled)."""
    out = np.array(weights, dtype=float)
    sub_out = np.array(sub_weight, dtype=float)
    is_parent = np.zeros(len(weights), dtype=bool)
    is_parent[parents] = True
    branch = {}
    for p in set(cell_plane.tolist()) | set(sub_plane.tolist()):
        on_p = cell_plane == p
        total = sum(weights[on_p].tolist())
        removed = sum(weights[on_p & is_parent].tolist())
        added = sum(sub_weight[sub_plane == p].tolist())
        rest = total - removed
        if rest > 0 and abs(removed - added) < 0.5 * rest:
            out[on_p & ~is_parent] *= (rest + removed - added) / rest
            branch[p] = "rest"
        elif added > 0:
            sub_out[sub_plane == p] *= removed / added
            branch[p] = "sub"
        else:
            branch[p] = "keep"  # nothing replaces the parents: they keep their weights
    keep = np.isin(cell_plane, [p for p, b in branch.items() if b == "keep"])
    out[is_parent & ~keep] = 0.0
    return out, sub_out, branch


def _stack_with_specks():
    """Seven circles (r 9 mm, 2 mm apart, planes 1–7) between two planes holding only a
    0.25 mm speck (planes 0 and 8): those planes have no lattice cell, so their cells form
    a column set of their own."""
    speck = ((circle(0.0, -1.48, 0.25, 12), 1),)  # half-way between lattice centres
    planes = [(-8.0, speck)]
    planes += [(z, ((circle(0.6, -1.1, 9.0, 64), 1),)) for z in (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)]
    planes.append((8.0, speck))
    return Phantom("stack_specks", tuple(planes), 2.0)


def _replace_case():
    """A real sampling (two column sets) in a dose rising along x and z, its cell planes
    (plain reference) and the engine's own hot-tail refinement of it."""
    roi = _stack_with_specks().roi
    x = -12.37 + 2.5 * np.arange(11)
    y = -14.21 + 2.5 * np.arange(11)
    z = -9.13 + 2.5 * np.arange(9)
    zz, _, xx = np.meshgrid(z, y, x, indexing="ij")
    grid = DoseGrid(40.0 + 0.4 * zz + 1.5 * xx, x, y, z, FRAME)
    sampling = sample_for_grid(roi, grid, target_samples=1500)
    cell_plane = _reference_cell_planes(sampling)
    sources = [PointDoseSource(grid)]
    doses, spread = _cell_doses(sources, sampling)
    refinement = _refine_hot_tail(roi, sampling, sources, doses, spread)
    return sampling, cell_plane, refinement


def test_replace_weights_matches_reference_on_engine_refinement():
    """_replace_weights on the engine's refinement of a real sampling equals the reference and keeps plane volumes."""
    sampling, cell_plane, refinement = _replace_case()
    assert len(sampling.cell_columns) == 2 and sampling.step_mm >= 0.5  # the specks' own column set
    assert len(cell_plane) == sampling.number_of_samples
    assert set(cell_plane[-sampling.cell_columns[1].number_of_points:].tolist()) == {0, 8}
    # the reference planes order the cells as their coordinates: plane k's cells lie in its slab
    plane_z = np.arange(-8.0, 8.5, 2.0)
    assert np.all(np.abs(sampling.points_mm[:, 2] - plane_z[cell_plane]) <= 1.0 + 1e-9)
    assert refinement is not None
    parents, _, sub_weight, _, sub_plane = refinement
    weights = sampling.weights_cc
    out, sub_out = _replace_weights(sampling, parents, sub_weight, sub_plane)
    ref_out, ref_sub, branch = _reference_replace_weights(weights, cell_plane, parents, sub_weight, sub_plane)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=0)
    np.testing.assert_allclose(sub_out, ref_sub, rtol=1e-12, atol=0)
    assert np.all(out[parents] == 0.0)
    refined = np.unique(cell_plane[parents])
    assert len(refined) >= 2 and set(np.unique(sub_plane)) <= set(refined.tolist())
    for p in range(9):
        before = weights[cell_plane == p].sum()
        after = out[cell_plane == p].sum() + sub_out[sub_plane == p].sum()
        assert after == pytest.approx(before, rel=1e-12)
        if p not in refined:
            np.testing.assert_array_equal(out[cell_plane == p], weights[cell_plane == p])
    assert out.sum() + sub_out.sum() == pytest.approx(sampling.volume_cc, rel=1e-12)
    # the first pass's boundary rounding was shared by other cells: weights did change
    assert any(not np.allclose(out[(cell_plane == p) & (out > 0)], weights[(cell_plane == p) & (out > 0)],
                               rtol=1e-9, atol=0) for p in refined if branch[p] == "rest")


def test_replace_weights_branches_and_plane_volumes():
    """_replace_weights with chosen parents equals the reference in both branches (others or sub-cells rescaled)."""
    sampling, cell_plane, _ = _replace_case()
    weights = sampling.weights_cc
    rng = np.random.default_rng(92)
    parents, sub_w, sub_p = [], [], []

    def refine(p, share, gain=None, diff=None, n_sub=4):
        """Parents: ``share`` of plane p's cells; n_sub sub-cells each, of about ``gain`` × the
        parent's volume, or in all the parents' volume + ``diff`` × the others' volume."""
        cells = np.flatnonzero(cell_plane == p)
        chosen = rng.choice(cells, size=max(1, int(round(share * len(cells)))), replace=False)
        parents.append(chosen)
        w = np.repeat(weights[chosen], n_sub) / n_sub * rng.uniform(0.9, 1.1, n_sub * len(chosen))
        if diff is None:
            w *= gain
        else:
            removed = weights[chosen].sum()
            w *= (removed + diff * (weights[cells].sum() - removed)) / w.sum()
        sub_w.append(w)
        sub_p.append(np.full(len(w), p))

    refine(1, 0.3, gain=1.05)      # others absorb +5 % of the parents' volume
    refine(2, 0.4, diff=0.45)      # ... +45 % of their own: just below the limit
    refine(3, 0.5, gain=0.9)       # ... -10 % of the parents' volume
    refine(4, 0.97, gain=1.3)      # 3 % of others cannot absorb 30 %: sub-cells rescaled
    refine(5, 0.7, diff=-0.55)     # -55 % of the others: just above the limit, sub-cells rescaled
    refine(6, 1.0, gain=0.8)       # no others at all: sub-cells rescaled
    refine(7, 0.1, gain=0.0, n_sub=1)  # sub-cells without volume: others absorb the parents'
    refine(8, 1.0, gain=1.2)       # the top speck (second column set) too; the bottom one not
    parents = np.concatenate(parents)
    order = rng.permutation(sum(len(w) for w in sub_w))  # sub-cells in any order
    sub_weight = np.concatenate(sub_w)[order]
    sub_plane = np.concatenate(sub_p)[order]
    out, sub_out = _replace_weights(sampling, parents, sub_weight, sub_plane)
    ref_out, ref_sub, branch = _reference_replace_weights(weights, cell_plane, parents, sub_weight, sub_plane)
    absorbed, fallback = (1, 2, 3, 7), (4, 5, 6, 8)
    assert {p: branch[p] for p in range(1, 9)} == {**{p: "rest" for p in absorbed}, **{p: "sub" for p in fallback}}
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=0)
    np.testing.assert_allclose(sub_out, ref_sub, rtol=1e-12, atol=0)
    assert np.all(out[parents] == 0.0)
    for p in range(9):
        on_p = cell_plane == p
        before = weights[on_p].sum()
        after = out[on_p].sum() + sub_out[sub_plane == p].sum()
        assert after == pytest.approx(before, rel=1e-12)
        others = on_p & (out > 0)
        if p in absorbed:  # others rescaled, by one factor
            ratio = out[others] / weights[others]
            assert abs(ratio[0] - 1.0) > 1e-3
            np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
        else:  # fallback or untouched (plane 0): others unchanged
            np.testing.assert_array_equal(out[others], weights[others])
    assert np.count_nonzero((cell_plane == 6) & (out > 0)) == 0 and np.all(out[cell_plane == 0] > 0)
    for p in fallback:  # sub-cells scaled to the parents' volume, keeping their shape
        on_p = sub_plane == p
        removed = weights[parents[cell_plane[parents] == p]].sum()
        assert sub_out[on_p].sum() == pytest.approx(removed, rel=1e-12)
        np.testing.assert_allclose(sub_out[on_p] / sub_weight[on_p], removed / sub_weight[on_p].sum(), rtol=1e-12)
        assert abs(sub_out[on_p].sum() / sub_weight[on_p].sum() - 1.0) > 1e-3
    for p in absorbed:  # sub-cells kept at their own volume
        np.testing.assert_array_equal(sub_out[sub_plane == p], sub_weight[sub_plane == p])



def test_replace_weights_keeps_parents_without_sub_cells():
    """A plane whose parents get no sub-cell and whose other cells cannot absorb them keeps
    the parents' weights: every plane's volume is preserved."""
    weights = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    cell_plane = np.array([0, 0, 0, 1, 1])
    parents = np.array([0, 1, 2, 3])  # plane 0: all parents, no sub-cells; plane 1: one other cell
    sub_weight = np.array([1.5])
    sub_plane = np.array([1])
    out, sub_out = replace_plane_weights(weights, cell_plane, parents, sub_weight, sub_plane, 2)
    ref_out, ref_sub, branch = _reference_replace_weights(weights, cell_plane, parents, sub_weight, sub_plane)
    assert branch == {0: "keep", 1: "rest"}
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    np.testing.assert_allclose(sub_out, ref_sub, rtol=1e-12)
    np.testing.assert_allclose(out[:3], weights[:3])
    assert np.isclose(out[cell_plane == 1].sum() + sub_out.sum(), 4.0)


# ----------------------------------------------------------------------------- DS parser


def _parse_like_reader(tokens):
    """parse_decimal_strings plus the float() fallback, as the RT Structure Set reader uses it."""
    buf = b"\\".join(tokens)
    values, status, starts, ends, count = parse_decimal_strings(np.frombuffer(buf, dtype=np.uint8), len(tokens))
    for k in np.flatnonzero(status == 1):
        values[k] = float(buf[starts[k]:ends[k]])
    return values, status, count


def test_decimal_strings_give_the_doubles_of_float():
    """Every DS-style value (fixed, exponent, padded, signed, 17 significant digits, beyond
    the exact fast path) parses to the very double float() gives, sign of zero included."""
    rng = np.random.default_rng(5)
    formats = ["%.4f", "%.6g", "%.16g", "%.17g", "%e", "%.3E", "%+.2f", " %g ", "%.20f"]
    tokens = [(formats[i % len(formats)] % (rng.uniform(-1e3, 1e3) * 10.0 ** rng.integers(-8, 8))).encode()
              for i in range(20000)]
    tokens += [b"0", b"-0", b"-0.0", b".5", b"5.", b"1e22", b"1e23", b"1e-22", b"1e-23", b"+3", b"  7  ",
               b"123456789012345678", b"9007199254740993", b"1.7976931348623157e308", b"4.9e-324"]
    values, status, count = _parse_like_reader(tokens)
    reference = np.array([float(t) for t in tokens])
    assert count == len(tokens) and not np.any(status == 2)
    assert np.any(status == 1) and np.any(status == 0)  # both paths exercised
    np.testing.assert_array_equal(values, reference)
    np.testing.assert_array_equal(np.signbit(values), np.signbit(reference))


@pytest.mark.parametrize("text", [b"1\\\\2", b"abc", b"1e", b"--1", b"1.2.3", b"nan", b"inf", b"", b"1 2"])
def test_decimal_strings_refuse_what_is_not_a_number(text):
    """An empty value, stray characters, NaN or infinity is status 2 (the reader then falls back to pydicom)."""
    _, status, count = _parse_like_reader(text.split(b"\\"))
    assert np.any(status[:count] == 2)


def test_decimal_strings_count_more_values_than_expected():
    """The count is the number of values in the buffer even when fewer were expected."""
    buf = b"1\\2\\3\\4"
    values, status, starts, ends, count = parse_decimal_strings(np.frombuffer(buf, dtype=np.uint8), 2)
    assert count == 4 and list(values) == [1.0, 2.0]


# ------------------------------------------------------------------------------ point-to-segment distances

def test_segment_distances_equal_the_vectorised_reference() -> None:
    """The compiled point-by-point distances equal the vectorised formulation exactly (the same
    operations in the same order), including degenerate (zero-length) segments and points on
    a segment; and a hand case: the unit square's edges seen from (0.5, 2) are 1 mm away."""
    from plancheck.dvh.geometry import _point_to_segments_reference, point_to_segments_distance_mm

    rng = np.random.default_rng(11)
    points = rng.uniform(-20, 20, (500, 2))
    segments = rng.uniform(-15, 15, (37, 4))
    segments[5, 2:] = segments[5, :2]  # zero length
    points[:3] = segments[7, :2] + np.array([[0.0, 0.0], [1e-9, 0.0], [0.0, -1e-9]])
    got = point_to_segments_distance_mm(points, segments)
    assert np.array_equal(got, _point_to_segments_reference(points, segments))
    square = np.array([[0, 0, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 0, 0]], dtype=float)
    assert point_to_segments_distance_mm(np.array([[0.5, 2.0], [0.5, 0.5]]), square).tolist() == [1.0, 0.5]
    assert np.all(np.isinf(point_to_segments_distance_mm(points[:4], np.zeros((0, 4)))))
