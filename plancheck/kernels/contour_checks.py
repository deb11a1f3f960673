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

__all__ = ["crossing_flags"]


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
