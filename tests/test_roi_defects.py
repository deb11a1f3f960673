"""ROI plausibility checks (``plancheck.dicom.roi_checks``) on hand-drawn contours.

Every expectation follows from the drawing: which edges cross, which contours are equal,
the areas (squares: side²) and the thresholds of the module (0.5 mm planarity, 0.5 %
cancellation, 10 000 mm coordinates, 2 500 mm extent).
"""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from plancheck.dicom.roi_checks import _crossing_flags, contour_defects, crossing_planes, slice_defects
from plancheck.kernels import contour_measures
from plancheck.dvh.sampling import sample_roi
from plancheck.errors import StructureDefectError
from plancheck.model import Contour, Roi


def poly(points, z: float = 0.0) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    return np.column_stack([p, np.full(len(p), z)])


def square(half: float, z: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return poly([(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)], z)


def roi(*contours, kind: str = "ORGAN", types=None, images=None) -> Roi:
    types = types or ["CLOSED_PLANAR"] * len(contours)
    images = images or [""] * len(contours)
    return Roi(1, "Organ", kind, tuple(Contour(c, t, i) for c, t, i in zip(contours, types, images)))


def test_a_sound_stack_of_squares_has_no_defect() -> None:
    assert contour_defects(roi(*(square(10, z) for z in (0, 3, 6)))) == ()


def test_a_bow_tie_crosses_itself() -> None:
    # (0,0)→(10,10)→(10,0)→(0,10): the edges (0,0)-(10,10) and (10,0)-(0,10) cross at (5, 5).
    bow_tie = poly([(0, 0), (10, 10), (10, 0), (0, 10)], z=3)
    defects = contour_defects(roi(square(10, 0), bow_tie, square(10, 6)))
    assert defects == ("contour edges cross on 1 plane(s) (z = 3 mm): a contour crossing itself or two contours "
                       "overlapping partly leave inside and outside undefined",)


def test_a_keyhole_contour_touches_itself_without_crossing() -> None:
    # A 10 × 10 square with a 2 × 2 hole reached through a slit along y = 5: the slit's two
    # edges run along each other and the hole's edges meet at (6, 5) — touching, not crossing.
    keyhole = [(0, 0), (10, 0), (10, 5), (6, 5), (6, 4), (4, 4), (4, 6), (6, 6), (6, 5), (10, 5), (10, 10), (0, 10)]
    assert crossing_planes([[np.asarray(keyhole, dtype=float)]]).tolist() == [False]
    assert contour_defects(roi(poly(keyhole, 0), poly(keyhole, 3))) == ()


def test_two_contours_overlapping_partly_cross() -> None:
    # Squares 0..10 and 5..15 on one plane: their edges cross at (10, 5) and (5, 10).
    a = poly([(0, 0), (10, 0), (10, 10), (0, 10)])
    b = poly([(5, 5), (15, 5), (15, 15), (5, 15)])
    assert crossing_planes([[a[:, :2], b[:, :2]], [a[:, :2]]]).tolist() == [True, False]


def test_a_ring_is_sound_but_a_ring_thinner_than_half_a_percent_cancels() -> None:
    # Ring 20 × 20 minus 12 × 12: area (400 - 144) / 400 = 64 % of the outer contour: sound.
    assert contour_defects(roi(square(10, 0), square(6, 0), square(10, 3), square(6, 3))) == ()
    # Outer half-side 100 (40 000 mm²), inner 99.9 (39 920.04 mm²): 79.96 / 40 000 = 0.2 % < 0.5 %.
    thin = roi(square(100, 0), square(99.9, 0), square(100, 3), square(99.9, 3))
    assert contour_defects(thin) == ("the contours of 2 plane(s) (z = 0, 3 mm) cancel each other: the area they "
                                     "leave is below 0.5 % of the largest contour's",)


def test_identical_contours_on_one_plane_cancel() -> None:
    # The second contour on z = 0 starts at another vertex: the same square all the same.
    same = np.roll(square(10, 0), 2, axis=0)
    assert contour_defects(roi(square(10, 0), same, square(10, 3))) == (
        "identical contours are repeated on 1 plane(s) (z = 0 mm): they cancel each other under the even-odd rule",)


def test_degenerate_contours_unless_the_roi_is_a_point() -> None:
    two_points = poly([(0, 0), (1, 1)], z=3)
    collinear = poly([(0, 0), (1, 1), (2, 2)], z=6)  # three points, zero area
    defects = contour_defects(roi(square(10, 0), two_points, collinear, square(10, 9)))
    assert defects == ("2 closed contour(s) are degenerate (fewer than 3 distinct points or all on one line), on "
                       "z = 3, 6 mm",)
    # A marker drawn as a one-point "closed" contour is a point, not a broken volume.
    assert contour_defects(roi(poly([(5, 5)], z=0), kind="MARKER")) == ()


def test_a_repeated_closing_point_is_not_a_defect() -> None:
    closed = np.vstack([square(10, 0), square(10, 0)[:1]])  # first point repeated at the end
    assert contour_defects(roi(closed, square(10, 3))) == ()


def test_unknown_geometric_type_and_the_xor_type() -> None:
    defects = contour_defects(roi(square(10, 0), square(10, 3), types=["CLOSED_PLANAR", "CLOSED_SPLINE"]))
    assert defects[0] == ("1 contour(s) have the unknown (3006,0042) 'Contour Geometric Type' 'CLOSED_SPLINE' "
                          "(POINT, OPEN_PLANAR, OPEN_NONPLANAR, CLOSED_PLANAR or CLOSEDPLANAR_XOR are defined)")
    xor = roi(square(10, 0), square(10, 3), types=["CLOSEDPLANAR_XOR"] * 2)
    assert contour_defects(xor) == () and all(c.is_closed_planar for c in xor.contours)
    assert sorted(xor.planes) == [0.0, 3.0]


def test_all_contours_on_one_plane() -> None:
    assert contour_defects(roi(square(10, 0), square(3, 0, cx=30))) == (
        "all 2 closed contour(s) lie on one plane (z = 0 mm): the structure's extent along z is unknown",)


def test_a_contour_that_is_not_axial() -> None:
    tilted = square(10, 3)
    tilted[0, 2] = 4.0  # z from 3 to 4 mm: 1 mm > 0.5 mm
    assert contour_defects(roi(square(10, 0), tilted, square(10, 6))) == (
        "1 closed contour(s) are not in one axial plane (their points' z differ by up to 1 mm; at most 0.5 mm is "
        "accepted)",)


def test_corrupt_coordinates() -> None:
    far = square(10, 3)
    far[1, 0] = 1e9
    assert contour_defects(roi(square(10, 0), far)) == (
        "a contour point lies 1e+09 mm from the origin of the frame of reference (more than 10000 mm): a coordinate "
        "is corrupt",)
    # 3000 mm from x = -1500 to x = +1500: more than 2500 mm.
    wide = roi(square(10, 0, cx=-1490), square(10, 3, cx=1490))
    assert contour_defects(wide) == ("the contours span 3000 mm along x (more than 2500 mm, larger than any patient): "
                                     "a coordinate is corrupt",)


def test_contours_of_one_plane_drawn_on_different_images() -> None:
    stacked = roi(square(10, 0), square(4, 0, cx=40), square(10, 3), images=["1.2.3.1", "1.2.3.2", "1.2.3.3"])
    assert contour_defects(stacked) == ("contours drawn on different images are stacked on one plane (1 plane(s), "
                                        "z = 0 mm): their z positions were altered",)


def test_contours_far_from_their_ct_slice() -> None:
    # CT slices at z = 0, 3, 6 mm (tolerance 1.5 mm, half the 3 mm spacing); the contour at
    # z = 0 claims the slice at z = 6: 6 mm off.
    slices = {"1.2.9.0": 0.0, "1.2.9.3": 3.0, "1.2.9.6": 6.0}
    tolerance = dict.fromkeys(slices, 1.5)
    off = roi(square(10, 0), square(10, 3), images=["1.2.9.6", "1.2.9.3"])
    assert slice_defects(off, slices, tolerance) == (
        "1 contour(s) lie far from the CT slice they reference (e.g. a contour at z = 0 mm drawn on the slice at "
        "z = 6 mm; at most ±1.5 mm, half the slice spacing, is accepted)",)
    near = roi(square(10, 0.01), square(10, 3), images=["1.2.9.0", "1.2.9.3"])
    assert slice_defects(near, slices, tolerance) == ()


def test_a_defective_roi_is_never_sampled() -> None:
    broken = Roi(7, "Cord", "ORGAN", (Contour(square(5, 0)), Contour(square(5, 3))), defects=("made up for the test",))
    with pytest.raises(StructureDefectError, match=r"structure 'Cord' cannot be measured: made up for the test"):
        sample_roi(broken)


def test_crossing_search_finds_a_crossing_in_a_scrambled_large_contour() -> None:
    # 3000 points of a circle in random order: about 4.5 million candidate edge pairs; the
    # sweep stops at the first crossing it finds.
    rng = np.random.default_rng(0)
    angles = rng.permutation(np.linspace(0, 2 * np.pi, 3000, endpoint=False))
    circle = np.column_stack([100 * np.cos(angles), 100 * np.sin(angles)])
    assert crossing_planes([[circle]]).tolist() == [True]


# ----------------------------------------------------------------------------- the compiled sweep

def _crossing_flags_reference(xy, sizes, plane_of_poly, n_planes):
    """The vectorised numpy sweep the compiled one replaced: every pair of edges of one plane
    whose x and y ranges overlap (planes shifted apart along x), edges of one polygon that
    share a point left out, the orientation test with a 1e-6 relative margin."""
    result = np.zeros(n_planes, dtype=bool)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    poly_ = np.repeat(np.arange(len(sizes)), sizes)
    index = np.arange(len(xy)) - starts[poly_]
    size = sizes[poly_]
    nxt = np.arange(len(xy)) + 1
    nxt[starts + sizes - 1] = starts
    a, b = xy, xy[nxt]
    plane = plane_of_poly[poly_]
    shift = plane * 50_000.0
    x_lo = np.minimum(a[:, 0], b[:, 0]) + shift
    x_hi = np.maximum(a[:, 0], b[:, 0]) + shift
    y_lo, y_hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    i, j = np.triu_indices(len(xy), k=1)
    keep = (x_lo[j] <= x_hi[i]) & (x_lo[i] <= x_hi[j]) & (y_lo[j] <= y_hi[i]) & (y_lo[i] <= y_hi[j])
    i, j = i[keep], j[keep]
    gap = np.abs(index[i] - index[j])
    adjacent = (poly_[i] == poly_[j]) & ((gap == 1) | (gap == size[i] - 1))
    i, j = i[~adjacent], j[~adjacent]

    def orient(p, q, r):
        return (q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0])

    length = np.hypot(*(b - a).T)
    eps_ab, eps_cd = 1e-6 * length[i], 1e-6 * length[j]
    d1, d2 = orient(a[i], b[i], a[j]), orient(a[i], b[i], b[j])
    d3, d4 = orient(a[j], b[j], a[i]), orient(a[j], b[j], b[i])
    crossed = ((((d1 > eps_ab) & (d2 < -eps_ab)) | ((d1 < -eps_ab) & (d2 > eps_ab)))
               & (((d3 > eps_cd) & (d4 < -eps_cd)) | ((d3 < -eps_cd) & (d4 > eps_cd))))
    result[plane[i[crossed]]] = True
    return result


@st.composite
def _planes_of_polygons(draw):
    """Up to 4 planes of 1-3 polygons each: random points on a coarse grid (so that touching,
    collinear and crossing edges all occur), each polygon without a repeated consecutive point."""
    polygons, planes = [], []
    n_planes = draw(st.integers(1, 4))
    coordinate = st.integers(-4, 4).map(float)
    for p in range(n_planes):
        for _ in range(draw(st.integers(1, 3))):
            points = draw(st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=8))
            points = [pt for k, pt in enumerate(points) if pt != points[k - 1]]
            if len(points) >= 3:
                polygons.append(np.array(points))
                planes.append(p)
    return polygons, planes, n_planes


@settings(max_examples=300, deadline=None)
@given(_planes_of_polygons())
def test_compiled_crossing_sweep_equals_the_numpy_reference(case) -> None:
    polygons, planes, n_planes = case
    if not polygons:
        return
    xy = np.concatenate(polygons)
    sizes = np.array([len(p) for p in polygons])
    plane_of_poly = np.array(planes)
    expected = _crossing_flags_reference(xy, sizes, plane_of_poly, n_planes)
    assert _crossing_flags(xy, sizes, plane_of_poly, n_planes).tolist() == expected.tolist()


def _contour_measures_reference(points, sizes):
    """The numpy the compiled contour_measures replaced (per contour: z spread, the points kept
    without repeated consecutive ones, shoelace area and second moments about the mean)."""
    n = len(sizes)
    cid = np.repeat(np.arange(n), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    has = sizes > 0
    z_spread = np.zeros(n)
    if has.any():
        z_spread[has] = np.maximum.reduceat(points[:, 2], starts[has]) - np.minimum.reduceat(points[:, 2], starts[has])
    prev = np.arange(len(points)) - 1
    prev[starts[has]] = starts[has] + sizes[has] - 1
    keep = np.any(points[:, :2] != points[prev, :2], axis=1)
    first_kept = np.bincount(cid, weights=keep, minlength=n) == 0
    keep[starts[has & first_kept]] = True
    xy = points[keep, :2]
    kid = cid[keep]
    clean_sizes = np.bincount(kid, minlength=n)
    clean_starts = np.concatenate([[0], np.cumsum(clean_sizes)[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = np.bincount(kid, weights=xy[:, 0], minlength=n) / np.maximum(clean_sizes, 1)
        mean_y = np.bincount(kid, weights=xy[:, 1], minlength=n) / np.maximum(clean_sizes, 1)
    x0, y0 = xy[:, 0] - mean_x[kid], xy[:, 1] - mean_y[kid]
    nxt = np.arange(len(xy)) + 1
    ok = clean_sizes > 0
    nxt[clean_starts[ok] + clean_sizes[ok] - 1] = clean_starts[ok]
    areas = 0.5 * np.bincount(kid, weights=x0 * y0[nxt] - x0[nxt] * y0, minlength=n)
    z_mean = np.bincount(cid, weights=points[:, 2], minlength=n) / np.maximum(sizes, 1)
    m = np.maximum(clean_sizes, 1)
    sxx = np.bincount(kid, weights=x0 * x0, minlength=n) / m
    syy = np.bincount(kid, weights=y0 * y0, minlength=n) / m
    sxy = np.bincount(kid, weights=x0 * y0, minlength=n) / m
    return z_spread, keep, clean_sizes, areas, z_mean, sxx, syy, sxy


@st.composite
def _contours(draw):
    """1-6 contours of 0-9 points: coordinates on a coarse grid or far off the origin (repeated
    and collinear points occur), z nearly or not at all constant."""
    sizes = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6))
    offset = draw(st.sampled_from([0.0, 1234.5678, -9876.54321]))
    coordinate = st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 50, allow_nan=False, width=64))
    points = [(offset + draw(coordinate), offset + draw(coordinate), draw(st.sampled_from([0.0, 0.0, 0.25, 3.0])))
              for _ in range(sum(sizes))]
    return np.array(points, dtype=float).reshape(-1, 3), np.array(sizes, dtype=np.int64)


@settings(max_examples=300, deadline=None)
@given(_contours())
def test_compiled_contour_measures_equal_the_numpy_reference_to_the_last_bit(case) -> None:
    points, sizes = case
    got = contour_measures(points, sizes)
    expected = _contour_measures_reference(points, sizes)
    for name, a, b in zip(("z_spread", "keep", "kept", "areas", "z_mean", "sxx", "syy", "sxy"), got, expected):
        assert a.tolist() == b.tolist(), name


def test_a_coordinate_that_is_not_a_number_is_a_defect() -> None:
    bad = square(10, 3)
    bad[1, 0] = np.nan
    assert contour_defects(roi(square(10, 0), bad)) == (
        "a contour coordinate is not a finite number: a coordinate is corrupt",)


# ------------------------------------------------------ geometric types and interpreted types

def test_open_or_point_contours_among_closed_ones_are_a_defect() -> None:
    # A cord drawn as closed squares on z = 0, 3, 6, 9 mm whose planes z = 3 and 6 were stored
    # OPEN_PLANAR and z = 9 as POINT: its volume would keep z = 0 alone (before: silently).
    contours = (square(10, 0), square(10, 3), square(10, 6), poly([(0, 0)], z=9))
    mixed = roi(*contours, types=["CLOSED_PLANAR", "OPEN_PLANAR", "OPEN_PLANAR", "POINT"])
    assert contour_defects(mixed) == (
        "contours of another (3006,0042) 'Contour Geometric Type' are mixed with the closed ones: 2 OPEN_PLANAR on "
        "z = 3, 6 mm, 1 POINT on z = 9 mm; the ROI is measured as a volume from its closed contours only, so those "
        "planes would be left out of it",)
    nonplanar = roi(square(10, 0), square(10, 3), square(10, 6), types=["CLOSED_PLANAR", "CLOSED_PLANAR",
                                                                         "OPEN_NONPLANAR"])
    assert contour_defects(nonplanar)[0].startswith("contours of another (3006,0042) 'Contour Geometric Type' are "
                                                    "mixed with the closed ones: 1 OPEN_NONPLANAR on z = 6 mm;")


def test_an_roi_of_points_or_open_contours_only_is_not_a_volume_and_not_a_defect() -> None:
    marker = roi(poly([(5, 5)], z=0), poly([(8, 5)], z=3), kind="MARKER", types=["POINT", "POINT"])
    line = roi(poly([(0, 0), (10, 0), (10, 10)], z=0), poly([(0, 0), (10, 0)], z=3), types=["OPEN_PLANAR"] * 2)
    for points_only in (marker, line):
        assert contour_defects(points_only) == () and points_only.is_empty


@pytest.mark.parametrize("kind", ["MARKER", "ISOCENTER", "REGISTRATION", "ORGAN"])
def test_contour_checks_apply_to_closed_contours_whatever_the_interpreted_type(kind: str) -> None:
    # Before: a MARKER/ISOCENTER/REGISTRATION ROI skipped every check, yet the rules measured
    # its closed contours. The same square twice on z = 0 cancels under the even-odd rule.
    repeated = roi(square(10, 0), square(10, 0), square(10, 3), kind=kind)
    assert contour_defects(repeated) == (
        "identical contours are repeated on 1 plane(s) (z = 0 mm): they cancel each other under the even-odd rule",)
    slices = {"1.2.9.0": 0.0, "1.2.9.3": 3.0, "1.2.9.6": 6.0}
    off = roi(square(10, 0), square(10, 3), kind=kind, images=["1.2.9.6", "1.2.9.3"])
    assert slice_defects(off, slices, dict.fromkeys(slices, 1.5)) == (
        "1 contour(s) lie far from the CT slice they reference (e.g. a contour at z = 0 mm drawn on the slice at "
        "z = 6 mm; at most ±1.5 mm, half the slice spacing, is accepted)",)


def test_a_point_roi_stored_as_closed_contours_without_area_stays_sound() -> None:
    # Markers written as one-point or collinear "closed" contours: points, not a broken volume.
    markers = roi(poly([(5, 5)], z=0), poly([(0, 0), (1, 1), (2, 2)], z=3), kind="ISOCENTER")
    assert contour_defects(markers) == ()
    assert slice_defects(roi(poly([(5, 5)], z=0), kind="MARKER", images=["1.2.9.6"]), {"1.2.9.6": 6.0},
                         {"1.2.9.6": 1.5}) == ()
