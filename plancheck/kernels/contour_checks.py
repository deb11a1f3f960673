"""The RT Structure Set reader's test for crossing contour edges as a numba JIT function
(:func:`plancheck.dicom.roi_checks.crossing_planes`), apart from the DVH engine's kernels
(:mod:`plancheck.kernels.jit`).

Compiled because every structure of every export is tested when it is read: the vectorised
numpy sweep it replaces built a dozen temporary arrays of candidate edge pairs and took
about a third of the test of the sample's 24 structures (27 of 79 ms); the loop here makes
no temporary per pair. Compiled ahead of time with the DVH kernels, with the same options
(:data:`plancheck.kernels.jit.JIT_OPTIONS`); compared with the numpy reference in
``tests/test_roi_checks.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from plancheck.kernels.jit import JIT_OPTIONS

__all__ = ["contour_measures", "crossing_flags"]


@njit(**JIT_OPTIONS)
def contour_measures(points, sizes):
    """Measures of closed contours given one after the other in ``points`` (``(N, 3)``, mm),
    ``sizes[c]`` points each.

    Returns
    -------
    z_spread
        Per contour, the largest minus the smallest z of its points (0 without points).
    keep
        Per point, whether it is kept: its (x, y) differs from the previous point's (the last
        point precedes the first), or it is the first point of a contour none of whose points
        would be kept (one point repeated).
    kept
        Per contour, its points kept.
    areas
        Per contour, the signed shoelace area of its kept points about their mean, mm²
        (``0.5 · Σ x0[k]·y0[k+1] − x0[k+1]·y0[k]``, the last back to the first).
    z_mean
        Per contour, the mean z of all its points (0 without points).
    sxx, syy, sxy
        Per contour, the second moments of its kept points about their mean, mm²
        (divided by the number kept, at least 1).

    Every sum runs over the points in their order, as ``numpy.bincount`` with weights sums.
    """
    n_contours = len(sizes)
    n_points = points.shape[0]
    z_spread = np.zeros(n_contours)
    keep = np.zeros(n_points, dtype=np.bool_)
    kept = np.zeros(n_contours, dtype=np.int64)
    areas = np.zeros(n_contours)
    z_mean = np.zeros(n_contours)
    sxx = np.zeros(n_contours)
    syy = np.zeros(n_contours)
    sxy = np.zeros(n_contours)
    start = 0
    for c in range(n_contours):
        size = sizes[c]
        if size == 0:
            continue
        end = start + size
        z_lo = points[start, 2]
        z_hi = points[start, 2]
        z_sum = 0.0
        count = 0
        for i in range(start, end):
            z = points[i, 2]
            z_lo = min(z_lo, z)
            z_hi = max(z_hi, z)
            z_sum += z
            p = i - 1 if i > start else end - 1
            if points[i, 0] != points[p, 0] or points[i, 1] != points[p, 1]:
                keep[i] = True
                count += 1
        if count == 0:
            keep[start] = True
            count = 1
        z_spread[c] = z_hi - z_lo
        z_mean[c] = z_sum / size
        kept[c] = count
        x_sum = 0.0
        y_sum = 0.0
        for i in range(start, end):
            if keep[i]:
                x_sum += points[i, 0]
                y_sum += points[i, 1]
        mean_x = x_sum / count
        mean_y = y_sum / count
        first = -1
        previous = -1
        area = 0.0
        mxx = 0.0
        myy = 0.0
        mxy = 0.0
        for i in range(start, end):
            if not keep[i]:
                continue
            x0 = points[i, 0] - mean_x
            y0 = points[i, 1] - mean_y
            mxx += x0 * x0
            myy += y0 * y0
            mxy += x0 * y0
            if first < 0:
                first = i
            else:
                px = points[previous, 0] - mean_x
                py = points[previous, 1] - mean_y
                area += px * y0 - x0 * py
            previous = i
        px = points[previous, 0] - mean_x
        py = points[previous, 1] - mean_y
        fx = points[first, 0] - mean_x
        fy = points[first, 1] - mean_y
        area += px * fy - fx * py
        areas[c] = 0.5 * area
        sxx[c] = mxx / count
        syy[c] = myy / count
        sxy[c] = mxy / count
        start = end
    return z_spread, keep, kept, areas, z_mean, sxx, syy, sxy


@njit(inline="always")
def _orient(px, py, qx, qy, rx, ry):
    return (qx - px) * (ry - py) - (qy - py) * (rx - px)


@njit(**JIT_OPTIONS)
def crossing_flags(xy, sizes, plane_of_poly, n_planes):
    """For each plane, whether two of its edges cross properly.

    ``xy`` (``(N, 2)``, mm) holds closed polygons one after the other, ``sizes[p]`` points
    each (all >= 3, no point repeated consecutively), ``plane_of_poly[p]`` their plane
    (0 .. ``n_planes`` - 1). Edge ``k`` of a polygon joins its points ``k`` and ``k + 1``
    (the last one back to the first). Two edges cross properly when each edge's endpoints lie
    strictly on both sides of the other's line, farther than 1e-6 of that edge's length from
    it; edges of one polygon that share a point are not tested. Per plane, edges are sorted by
    their lowest x and only pairs whose x and y ranges overlap are tested: the same pairs and
    the same arithmetic as the numpy reference (``_crossing_flags_reference`` in the tests).

    Returns
    -------
    numpy.ndarray of bool, one per plane.
    """
    result = np.zeros(n_planes, dtype=np.bool_)
    n_polys = len(sizes)
    n = 0
    for p in range(n_polys):
        n += sizes[p]
    if n == 0:
        return result
    # every edge: its polygon, index in it, plane, endpoints
    poly = np.empty(n, dtype=np.int64)
    index = np.empty(n, dtype=np.int64)
    start = 0
    for p in range(n_polys):
        for k in range(sizes[p]):
            poly[start + k] = p
            index[start + k] = k
        start += sizes[p]
    ax = np.empty(n)
    ay = np.empty(n)
    bx = np.empty(n)
    by = np.empty(n)
    x_lo = np.empty(n)
    x_hi = np.empty(n)
    y_lo = np.empty(n)
    y_hi = np.empty(n)
    length = np.empty(n)
    plane = np.empty(n, dtype=np.int64)
    start = 0
    for p in range(n_polys):
        size = sizes[p]
        for k in range(size):
            e = start + k
            nxt = start + k + 1 if k + 1 < size else start
            ax[e] = xy[e, 0]
            ay[e] = xy[e, 1]
            bx[e] = xy[nxt, 0]
            by[e] = xy[nxt, 1]
            x_lo[e] = min(ax[e], bx[e])
            x_hi[e] = max(ax[e], bx[e])
            y_lo[e] = min(ay[e], by[e])
            y_hi[e] = max(ay[e], by[e])
            length[e] = np.hypot(bx[e] - ax[e], by[e] - ay[e])
            plane[e] = plane_of_poly[p]
        start += size
    # per plane, its edges sorted by lowest x, then a sweep (the pairs tested do not depend
    # on the order of edges with equal lowest x)
    grouped = True
    for e in range(1, n):
        if plane[e] < plane[e - 1]:
            grouped = False
            break
    order = np.arange(n) if grouped else np.argsort(plane, kind="mergesort")
    first = 0
    while first < n:
        pl = plane[order[first]]
        last = first
        while last < n and plane[order[last]] == pl:
            last += 1
        edges = order[first:last]
        edges = edges[np.argsort(x_lo[edges])]
        m = last - first
        for s in range(m):
            if result[pl]:
                break
            i = edges[s]
            for t in range(s + 1, m):
                j = edges[t]
                if x_lo[j] > x_hi[i]:
                    break
                if y_lo[j] > y_hi[i] or y_lo[i] > y_hi[j]:
                    continue
                if poly[i] == poly[j]:
                    gap = abs(index[i] - index[j])
                    if gap == 1 or gap == sizes[poly[i]] - 1:
                        continue
                eps_ab = 1e-6 * length[i]
                eps_cd = 1e-6 * length[j]
                d1 = _orient(ax[i], ay[i], bx[i], by[i], ax[j], ay[j])
                d2 = _orient(ax[i], ay[i], bx[i], by[i], bx[j], by[j])
                d3 = _orient(ax[j], ay[j], bx[j], by[j], ax[i], ay[i])
                d4 = _orient(ax[j], ay[j], bx[j], by[j], bx[i], by[i])
                if ((((d1 > eps_ab) and (d2 < -eps_ab)) or ((d1 < -eps_ab) and (d2 > eps_ab)))
                        and (((d3 > eps_cd) and (d4 < -eps_cd)) or ((d3 < -eps_cd) and (d4 > eps_cd)))):
                    result[pl] = True
                    break
        first = last
    return result
