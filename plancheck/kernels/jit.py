"""The DVH engine's compiled inner loops as numba JIT functions: the kernels' source.

Every DVH kernel is defined here once. :mod:`plancheck.kernels` runs them from the
ahead-of-time compiled extension built at install (:mod:`plancheck.kernels.build`) when it
is there and current, else from these JIT functions; numba is imported only in this
package.

The DVH engine's models — the trilinear dose of :mod:`plancheck.dvh.interpolate`, the
even-odd rasteriser of :mod:`plancheck.dvh.rasterize`, the hot-tail
refinement of :mod:`plancheck.dvh.engine` and the spread histogram of
:mod:`plancheck.dvh.dvh` — are defined and documented there; this module only runs
their loops in compiled code, fused so that every sample cell is touched once
(vectorised numpy needs a dozen temporaries per cell). Each kernel is compared with a
plain reference in ``tests/test_kernels.py``. (The RT Structure Set reader's decimal-string
parser is a kernel of its own: :mod:`plancheck.kernels.decimal_strings`.)

Conventions
-----------
* Dose grids are passed flat (``D[k, j, i]`` at ``k·nxy + j·nx + i``) with the
  fractional indices of the sample positions computed beforehand in numpy
  (``plancheck.dvh.interpolate._fractional_index``): lower and upper index, the
  weight of the upper one and its derivative (1/mm), and whether the position is
  covered. The kernels never search an axis, so irregular axes cost nothing extra.
* Sample cells stored as columns (a lattice point and the z segments of its plane)
  are written *slot-major*: the first segment of every column in column order, then
  the second segment of the columns that have one, and so on (see
  :class:`~plancheck.dvh.interpolate.PointColumns`).
* Doses in Gy, gradients in Gy/mm, lengths in mm. Uncovered points get NaN dose and
  zero gradient.

JIT compilation (the fallback): the kernels are compiled on first use and cached on disk
next to this file (or in numba's user cache when that is not writable). The options
here (``nogil``, ``error_model="numpy"``, no fastmath) are the ones the ahead-of-time build
uses too (:data:`JIT_OPTIONS`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from plancheck.kernels.signatures import SOURCES

__all__ = ["JIT_OPTIONS", *SOURCES["jit"]]

JIT_OPTIONS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
"""numba options of every kernel (the ahead-of-time build compiles with the same semantics)."""

_JIT = JIT_OPTIONS


@njit(inline="always")
def _bilinear(flat, nx, nxy, ix0, ix1, tx, iy0, iy1, ty, iz):
    """Bilinear dose on dose plane ``iz`` and its index-space x and y derivatives
    (blended along x on the two rows, then along y; values in double precision
    whatever the grid's dtype)."""
    b0 = iz * nxy + iy0 * nx
    b1 = iz * nxy + iy1 * nx
    f0 = np.float64(flat[b0 + ix0])
    d0 = np.float64(flat[b0 + ix1]) - f0
    r0 = f0 + tx * d0
    f0 = np.float64(flat[b1 + ix0])
    d1 = np.float64(flat[b1 + ix1]) - f0
    r1 = f0 + tx * d1
    dr = r1 - r0
    return r0 + ty * dr, d0 + ty * (d1 - d0), dr


@njit(inline="always")
def _trilinear(flat, nx, nxy, ix0, ix1, tx, iy0, iy1, ty, iz0, iz1, tz):
    """Value and index-space derivatives (per index step) of the trilinear field: the
    in-plane parts on the two dose planes, blended along z."""
    p0, gx0, gy0 = _bilinear(flat, nx, nxy, ix0, ix1, tx, iy0, iy1, ty, iz0)
    p1, gx1, gy1 = _bilinear(flat, nx, nxy, ix0, ix1, tx, iy0, iy1, ty, iz1)
    dp = p1 - p0
    return p0 + tz * dp, gx0 + tz * (gx1 - gx0), gy0 + tz * (gy1 - gy0), dp


@njit(inline="always")
def _spread_width(gx, gy, gz, width_mm, height_mm):
    """Width (Gy) of the in-cell dose spread of a cell ``width_mm`` wide in x and y and
    ``height_mm`` high where the dose gradient is ``(gx, gy, gz)`` (Gy/mm):
    ``sqrt((gx·width)² + (gy·width)² + (gz·height)²)``. The one definition of the spread
    (the model: :func:`plancheck.dvh.engine.spread_widths`)."""
    sx = gx * width_mm
    sy = gy * width_mm
    sz = gz * height_mm
    return math.sqrt(sx * sx + sy * sy + sz * sz)


@njit(**_JIT)
def spread_widths(gx, gy, gz, width_mm, heights_mm, out):
    """The in-cell dose spread (:func:`_spread_width`) of cells with the dose gradients
    ``gx``, ``gy``, ``gz`` (Gy/mm), all ``width_mm`` wide and ``heights_mm[i]`` high, into ``out``."""
    for i in range(len(gx)):
        out[i] = _spread_width(gx[i], gy[i], gz[i], width_mm, heights_mm[i])


@njit(**_JIT)
def column_cells(
    flat, nx, nxy,
    x_i0, x_i1, x_t, x_dt, x_cov,
    y_i0, y_i1, y_t, y_dt, y_cov,
    col, row, plane, counts,
    z_i0, z_i1, z_t, z_dt, z_cov,
    heights, step,
    out_dose, out_gx, out_gy, out_gz, out_spread,
):
    """Trilinear dose at every cell of a set of columns, written slot-major.

    ``x_*`` are indexed by ``col[c]`` and ``y_*`` by ``row[c]`` (per lattice column
    and row, or per column with ``col = row = arange``); ``z_*`` and ``heights`` are
    ``(planes, S)`` tables indexed by the column's plane and segment. Writes the dose,
    and, when those arrays are not empty, the gradient (Gy/mm) and/or the width of
    the in-cell dose spread (:func:`_spread_width`).
    """
    n_slots = z_i0.shape[1]
    running = np.zeros(n_slots, dtype=np.int64)
    slot_start = np.zeros(n_slots, dtype=np.int64)
    # slot j holds the columns whose plane has more than j segments
    for c in range(len(plane)):
        for j in range(counts[plane[c]]):
            slot_start[j] += 1
    total = 0
    for j in range(n_slots):
        size = slot_start[j]
        slot_start[j] = total
        total += size
    want_grad = len(out_gx) > 0
    want_spread = len(out_spread) > 0
    for c in range(len(plane)):
        ci = col[c]
        ri = row[c]
        p = plane[c]
        ix0 = x_i0[ci]
        ix1 = x_i1[ci]
        tx = x_t[ci]
        iy0 = y_i0[ri]
        iy1 = y_i1[ri]
        ty = y_t[ri]
        cov_xy = x_cov[ci] and y_cov[ri]
        # the in-plane part on a dose plane is shared by the column's segments on that plane
        ka = -1
        kb = -1
        pa = gxa = gya = pb = gxb = gyb = 0.0
        for j in range(counts[p]):
            pos = slot_start[j] + running[j]
            running[j] += 1
            if not (cov_xy and z_cov[p, j]):
                out_dose[pos] = np.nan
                if want_grad:
                    out_gx[pos] = 0.0
                    out_gy[pos] = 0.0
                    out_gz[pos] = 0.0
                if want_spread:
                    out_spread[pos] = 0.0
                continue
            k0 = z_i0[p, j]
            k1 = z_i1[p, j]
            if k0 == ka:
                p0, gx0, gy0 = pa, gxa, gya
            elif k0 == kb:
                p0, gx0, gy0 = pb, gxb, gyb
            else:
                p0, gx0, gy0 = _bilinear(flat, nx, nxy, ix0, ix1, tx, iy0, iy1, ty, k0)
            if k1 == kb:
                p1, gx1, gy1 = pb, gxb, gyb
            elif k1 == ka:
                p1, gx1, gy1 = pa, gxa, gya
            else:
                p1, gx1, gy1 = _bilinear(flat, nx, nxy, ix0, ix1, tx, iy0, iy1, ty, k1)
            ka, pa, gxa, gya = k0, p0, gx0, gy0
            kb, pb, gxb, gyb = k1, p1, gx1, gy1
            tz = z_t[p, j]
            dp = p1 - p0
            value = p0 + tz * dp
            gx = gx0 + tz * (gx1 - gx0)
            gy = gy0 + tz * (gy1 - gy0)
            gz = dp
            gx *= x_dt[ci]
            gy *= y_dt[ri]
            gz *= z_dt[p, j]
            # written out here and in lattice_cells: the same stores in an inline helper made
            # this loop 3.7x slower (numba 0.68)
            out_dose[pos] = value
            if want_grad:
                out_gx[pos] = gx
                out_gy[pos] = gy
                out_gz[pos] = gz
            if want_spread:
                out_spread[pos] = _spread_width(gx, gy, gz, step, heights[p, j])


@njit(**_JIT)
def point_cells(
    flat, nx, nxy,
    x_i0, x_i1, x_t, x_dt,
    y_i0, y_i1, y_t, y_dt,
    z_i0, z_i1, z_t, z_dt,
    covered,
    out_dose, out_gx, out_gy, out_gz,
):
    """Trilinear dose (and gradient, when the gradient arrays are not empty) at
    arbitrary points given their fractional indices on the three axes."""
    want_grad = len(out_gx) > 0
    for i in range(len(covered)):
        if not covered[i]:
            out_dose[i] = np.nan
            if want_grad:
                out_gx[i] = 0.0
                out_gy[i] = 0.0
                out_gz[i] = 0.0
            continue
        value, gx, gy, gz = _trilinear(flat, nx, nxy, x_i0[i], x_i1[i], x_t[i], y_i0[i], y_i1[i], y_t[i],
                                       z_i0[i], z_i1[i], z_t[i])
        out_dose[i] = value
        if want_grad:
            out_gx[i] = gx * x_dt[i]
            out_gy[i] = gy * y_dt[i]
            out_gz[i] = gz * z_dt[i]


@njit(**_JIT)
def spread_histogram(dose, weight, spread, lo, hi, width, hist, r1a, r2a, r1b, r2b):
    """Accumulate samples into a differential histogram (bins of ``width`` from 0 Gy);
    NaN doses (not covered) are left out and negative ones taken as 0.

    A sample whose spread ``[d − s/2, d + s/2]`` (clipped to ``[lo, hi]``) is narrower
    than a bin goes to the bin of its centre in ``hist``; a wider one adds its density
    ``ρ = w/(b − a)`` and ``ρ·a`` at the first bin edge above ``a`` (``r1a``, ``r2a``)
    and ``ρ``, ``ρ·b`` at the first edge above ``b`` (``r1b``, ``r2b``), from whose
    cumulative sums the caller gets the exact bin contents (see
    :func:`plancheck.dvh.dvh._histogram`). With an empty ``spread`` every sample is a
    point. Returns the volume of the spread samples.
    """
    nbins = len(hist)
    spread_total = 0.0
    has_spread = len(spread) > 0
    for i in range(len(dose)):
        d = dose[i]
        if d != d:  # NaN: not covered
            continue
        d = max(d, 0.0)
        w = weight[i]
        if not has_spread:
            k = int(d / width)
            hist[min(k, nbins - 1)] += w
            continue
        half = spread[i] / 2
        a = min(max(d - half, lo), hi)
        b = min(max(d + half, lo), hi)
        if (b - a) < width:
            k = int(((a + b) / 2) / width)
            hist[min(k, nbins - 1)] += w
            continue
        rho = w / (b - a)
        ia = int(a / width) + 1
        ib = int(b / width) + 1
        r1a[ia] += rho
        r2a[ia] += rho * a
        r1b[ib] += rho
        r2b[ib] += rho * b
        spread_total += w
    return spread_total


@njit(**_JIT)
def _row_crossings(ex0, ey0, ex1, ey1, edge_start, row_lo, row_hi, y0, step):
    """Sorted edge crossings of the lattice rows ``row_lo[p] ≤ r < row_hi[p]`` of each
    plane ``p`` (row centre ``y0 + (r + ½)·step``; an edge counts when ``min ≤ y < max``).

    Returns the first row of each plane in the row table, the CSR pointer of the rows
    into the crossings, and the crossings' x (sorted within a row)."""
    n_planes = len(row_lo)
    base = np.zeros(n_planes + 1, dtype=np.int64)
    for p in range(n_planes):
        base[p + 1] = base[p] + max(row_hi[p] - row_lo[p], 0)
    n_rows = base[n_planes]
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    for sweep in range(2):
        if sweep == 1:
            for r in range(n_rows):
                ptr[r + 1] += ptr[r]
            xs = np.empty(ptr[n_rows])
            fill = ptr[:n_rows].copy()
        for p in range(n_planes):
            if row_hi[p] <= row_lo[p]:
                continue
            for e in range(edge_start[p], edge_start[p + 1]):
                ya = ey0[e]
                yb = ey1[e]
                lo = min(ya, yb)
                hi = max(ya, yb)
                r0 = max(int(math.ceil((lo - y0) / step - 0.5)) - 1, row_lo[p])
                r1 = min(int(math.ceil((hi - y0) / step - 0.5)) + 1, row_hi[p])
                for r in range(r0, r1):
                    y = y0 + (r + 0.5) * step
                    if lo <= y and y < hi:
                        slot = base[p] + r - row_lo[p]
                        if sweep == 0:
                            ptr[slot + 1] += 1
                        else:
                            xs[fill[slot]] = ex0[e] + (y - ya) * (ex1[e] - ex0[e]) / (yb - ya)
                            fill[slot] += 1
    for r in range(n_rows):  # insertion sort in place: a row has a few crossings
        for q in range(ptr[r] + 1, ptr[r + 1]):
            x = xs[q]
            t = q - 1
            while t >= ptr[r] and xs[t] > x:
                xs[t + 1] = xs[t]
                t -= 1
            xs[t + 1] = x
    return base, ptr, xs


@njit(inline="always")
def _lattice_inside(base, ptr, xs, row_lo, row_hi, p, r, x):
    """Even-odd inside test of the lattice point at x on row r of plane p (see :func:`_row_crossings`)."""
    if r < row_lo[p] or r >= row_hi[p]:
        return False
    slot = base[p] + r - row_lo[p]
    count = 0
    for q in range(ptr[slot], ptr[slot + 1]):  # a row has a few crossings: a scan beats a search
        if xs[q] <= x:
            count += 1
        else:
            break
    return count % 2 == 1


@njit(inline="always")
def _slot_of(key, mask):
    """Start slot of a key in a hash table of ``mask + 1`` slots (murmur3's 64-bit finaliser:
    lattice keys differ by fixed strides, which a plain multiplicative hash clusters)."""
    x = np.uint64(key)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    return np.int64(x & np.uint64(mask))


@njit(**_JIT)
def _hash_set(keys):
    """Open-addressing hash set of non-negative int64 keys (-1 marks a free slot)."""
    size = 16
    while size < 2 * len(keys):
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    mask = size - 1
    for key in keys:
        h = _slot_of(key, mask)
        while table[h] != -1 and table[h] != key:
            h = (h + 1) & mask
        table[h] = key
    return table


@njit(inline="always")
def _in_hash_set(table, key):
    if key < 0:
        return False
    mask = len(table) - 1
    h = _slot_of(key, mask)
    while True:
        k = table[h]
        if k == key:
            return True
        if k == -1:
            return False
        h = (h + 1) & mask


@njit(**_JIT)
def subdivide_cells(ex0, ey0, ex1, ey1, edge_start, n_planes, x0, y0, step, k, p_plane, p_slot, p_col, p_row, p_fraction, n_slots):
    """Split parent cells of a lattice (origin x0, y0; ``step``) and their "ghost"
    neighbours into ``k × k`` sub-cells on the lattice of step ``step / k``.

    A ghost is one of the 8 in-plane neighbours (same plane and segment slot) of a
    parent that is neither a parent nor inside the plane's even-odd region (its centre
    is outside the contour, part of it may be inside); its sub-cells carry the share
    of its in-region neighbours that are parents. A parent with a ghost neighbour has
    its sub-cells tested against the region; one without is wholly inside. Sub-cells
    whose centre is outside the region are dropped.

    Returns, per kept sub-cell: the parent it belongs to (a ghost: its first parent),
    its lattice column and row on the fine lattice, and its volume fraction.
    """
    n_par = len(p_plane)
    # keys (plane, slot, row, col) with the lattice indices shifted so that the parents'
    # neighbours and their neighbours (two steps away) are non-negative
    c_lo = p_col[0]
    c_hi = p_col[0]
    r_lo = p_row[0]
    r_hi = p_row[0]
    for i in range(n_par):
        c_lo = min(c_lo, p_col[i])
        c_hi = max(c_hi, p_col[i])
        r_lo = min(r_lo, p_row[i])
        r_hi = max(r_hi, p_row[i])
    c_off = c_lo - 2
    r_off = r_lo - 2
    nx = c_hi - c_off + 3
    ny = r_hi - r_off + 3
    keys = np.empty(n_par, dtype=np.int64)
    row_lo = np.full(n_planes, np.iinfo(np.int64).max, dtype=np.int64)
    row_hi = np.zeros(n_planes, dtype=np.int64)
    for i in range(n_par):
        keys[i] = ((p_plane[i] * n_slots + p_slot[i]) * ny + (p_row[i] - r_off)) * nx + (p_col[i] - c_off)
        row_lo[p_plane[i]] = min(row_lo[p_plane[i]], p_row[i] - 2)
        row_hi[p_plane[i]] = max(row_hi[p_plane[i]], p_row[i] + 3)
    parent_set = _hash_set(keys)
    base, ptr, xs = _row_crossings(ex0, ey0, ex1, ey1, edge_start, row_lo, row_hi, y0, step)
    dcs = np.array([-1, 0, 1, -1, 1, -1, 0, 1], dtype=np.int64)
    drs = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=np.int64)
    # ghost candidates in the order they are met (parent after parent, neighbours in order)
    g_key = np.empty(8 * n_par, dtype=np.int64)
    g_parent = np.empty(8 * n_par, dtype=np.int64)
    interior = np.ones(n_par, dtype=np.bool_)
    n_cand = 0
    for i in range(n_par):
        p = p_plane[i]
        for t in range(8):
            c = p_col[i] + dcs[t]
            r = p_row[i] + drs[t]
            key = keys[i] + drs[t] * nx + dcs[t]
            if _in_hash_set(parent_set, key):
                continue
            if _lattice_inside(base, ptr, xs, row_lo, row_hi, p, r, x0 + (c + 0.5) * step):
                continue
            interior[i] = False
            g_key[n_cand] = key
            g_parent[n_cand] = i
            n_cand += 1
    # unique ghosts, each with the first parent that met it
    size = 16
    while size < 2 * n_cand:
        size *= 2
    ghost_set = np.full(size, -1, dtype=np.int64)
    mask = size - 1
    n_ghost = 0
    ghost_parent = np.empty(n_cand, dtype=np.int64)
    ghost_col = np.empty(n_cand, dtype=np.int64)
    ghost_row = np.empty(n_cand, dtype=np.int64)
    ghost_fraction = np.empty(n_cand)
    for q in range(n_cand):
        key = g_key[q]
        h = _slot_of(key, mask)
        while ghost_set[h] != -1 and ghost_set[h] != key:
            h = (h + 1) & mask
        if ghost_set[h] == key:
            continue
        ghost_set[h] = key
        i = g_parent[q]
        col = key % nx + c_off
        row = (key // nx) % ny + r_off
        p = p_plane[i]
        n_parent = 0
        n_cell = 0
        for t in range(8):
            c = col + dcs[t]
            r = row + drs[t]
            if _in_hash_set(parent_set, key + drs[t] * nx + dcs[t]):
                n_parent += 1
                n_cell += 1
            elif _lattice_inside(base, ptr, xs, row_lo, row_hi, p, r, x0 + (c + 0.5) * step):
                n_cell += 1
        ghost_parent[n_ghost] = i
        ghost_col[n_ghost] = col
        ghost_row[n_ghost] = row
        ghost_fraction[n_ghost] = (n_parent / max(n_cell, 1)) * p_fraction[i]
        n_ghost += 1
    # sub-cells on the fine lattice
    fine = step / k
    f_lo = np.full(n_planes, np.iinfo(np.int64).max, dtype=np.int64)
    f_hi = np.zeros(n_planes, dtype=np.int64)
    for i in range(n_par):
        p = p_plane[i]
        f_lo[p] = min(f_lo[p], (p_row[i] - 1) * k)
        f_hi[p] = max(f_hi[p], (p_row[i] + 2) * k)
    fbase, fptr, fxs = _row_crossings(ex0, ey0, ex1, ey1, edge_start, f_lo, f_hi, y0, fine)
    m = k * k
    total = (n_par + n_ghost) * m
    out_owner = np.empty(total, dtype=np.int64)
    out_col = np.empty(total, dtype=np.int64)
    out_row = np.empty(total, dtype=np.int64)
    out_fraction = np.empty(total)
    n_out = 0
    for q in range(n_par + n_ghost):
        if q < n_par:
            i = q
            col = p_col[i]
            row = p_row[i]
            fraction = p_fraction[i]
            test = not interior[i]
        else:
            i = ghost_parent[q - n_par]
            col = ghost_col[q - n_par]
            row = ghost_row[q - n_par]
            fraction = ghost_fraction[q - n_par]
            test = True
        p = p_plane[i]
        for b in range(k):
            sr = row * k + b
            for a in range(k):
                sc = col * k + a
                if test and not _lattice_inside(fbase, fptr, fxs, f_lo, f_hi, p, sr, x0 + (sc + 0.5) * fine):
                    continue
                out_owner[n_out] = i
                out_col[n_out] = sc
                out_row[n_out] = sr
                out_fraction[n_out] = fraction
                n_out += 1
    return out_owner[:n_out], out_col[:n_out], out_row[:n_out], out_fraction[:n_out]


@njit(**_JIT)
def lattice_cells(
    flat, nx, nxy,
    x_i0, x_i1, x_t, x_dt, x_cov, col_offset,
    y_i0, y_i1, y_t, y_dt, y_cov, row_offset,
    z_i0, z_i1, z_t, z_dt, z_cov,
    col, row, zcode, heights, step,
    out_dose, out_gx, out_gy, out_gz, out_spread,
):
    """Trilinear dose at cells of a lattice: cell ``i`` sits at lattice column ``col[i]``
    and row ``row[i]`` (tables ``x_*``/``y_*`` indexed from ``col_offset``/``row_offset``)
    and at the z of entry ``zcode[i]`` of the flat ``z_*`` tables; it is ``step`` wide and
    ``heights[i]`` high. Writes the dose and, when those arrays are not empty, the
    gradient and/or the width of the in-cell dose spread (see :func:`column_cells`)."""
    want_grad = len(out_gx) > 0
    want_spread = len(out_spread) > 0
    for i in range(len(col)):
        ci = col[i] - col_offset
        ri = row[i] - row_offset
        zc = zcode[i]
        if not (x_cov[ci] and y_cov[ri] and z_cov[zc]):
            out_dose[i] = np.nan
            if want_grad:
                out_gx[i] = 0.0
                out_gy[i] = 0.0
                out_gz[i] = 0.0
            if want_spread:
                out_spread[i] = 0.0
            continue
        value, gx, gy, gz = _trilinear(flat, nx, nxy, x_i0[ci], x_i1[ci], x_t[ci], y_i0[ri], y_i1[ri], y_t[ri],
                                       z_i0[zc], z_i1[zc], z_t[zc])
        gx *= x_dt[ci]
        gy *= y_dt[ri]
        gz *= z_dt[zc]
        out_dose[i] = value
        if want_grad:
            out_gx[i] = gx
            out_gy[i] = gy
            out_gz[i] = gz
        if want_spread:
            out_spread[i] = _spread_width(gx, gy, gz, step, heights[i])


@njit(**_JIT)
def slot_major_values(plane, counts, table, out):
    """Values of a per-plane ``(planes, S)`` table at the points of a set of columns
    (column ``c`` of plane ``plane[c]`` has ``counts[plane[c]]`` points), slot-major."""
    n_slots = table.shape[1]
    slot_start = np.zeros(n_slots + 1, dtype=np.int64)
    for c in range(len(plane)):
        for j in range(counts[plane[c]]):
            slot_start[j + 1] += 1
    for j in range(n_slots):
        slot_start[j + 1] += slot_start[j]
    for c in range(len(plane)):
        p = plane[c]
        for j in range(counts[p]):
            out[slot_start[j]] = table[p, j]
            slot_start[j] += 1


@njit(**_JIT)
def rasterize_lattice(ex0, ey0, ex1, ey1, edge_start, x0, y0, step, nx, ny):
    """Lattice points (centre ``x0 + (i + ½)·step``, ``y0 + (j + ½)·step``) inside each
    plane's even-odd region: between the 1st and 2nd, 3rd and 4th ... sorted crossing of
    their row, a point on a left crossing inside, on a right one outside.

    Returns plane, column and row of every inside point, plane after plane, row after
    row, column ascending."""
    n_planes = len(edge_start) - 1
    row_lo = np.zeros(n_planes, dtype=np.int64)
    row_hi = np.full(n_planes, ny, dtype=np.int64)
    base, ptr, xs = _row_crossings(ex0, ey0, ex1, ey1, edge_start, row_lo, row_hi, y0, step)
    n_rows = len(ptr) - 1
    total = 0
    for r in range(n_rows):
        for q in range(ptr[r], ptr[r + 1] - 1, 2):
            i_lo = min(max(int(math.ceil((xs[q] - x0) / step - 0.5)), 0), nx)
            i_hi = min(max(int(math.ceil((xs[q + 1] - x0) / step - 0.5)), 0), nx)
            total += max(i_hi - i_lo, 0)
    out_plane = np.empty(total, dtype=np.int64)
    out_col = np.empty(total, dtype=np.int64)
    out_row = np.empty(total, dtype=np.int64)
    n = 0
    for p in range(n_planes):
        for r in range(row_hi[p] - row_lo[p]):
            slot = base[p] + r
            for q in range(ptr[slot], ptr[slot + 1] - 1, 2):
                i_lo = min(max(int(math.ceil((xs[q] - x0) / step - 0.5)), 0), nx)
                i_hi = min(max(int(math.ceil((xs[q + 1] - x0) / step - 0.5)), 0), nx)
                for i in range(i_lo, i_hi):
                    out_plane[n] = p
                    out_col[n] = i
                    out_row[n] = row_lo[p] + r
                    n += 1
    return out_plane, out_col, out_row


@njit(**_JIT)
def sample_stats(dose, weight):
    """Minimum, maximum, sum of weights and of dose × weight over the samples whose dose
    is not NaN (negative doses taken as 0), and their number."""
    lo = np.inf
    hi = -np.inf
    w_sum = 0.0
    dw_sum = 0.0
    n = 0
    for i in range(len(dose)):
        d = dose[i]
        if d != d:
            continue
        d = max(d, 0.0)
        lo = min(lo, d)
        hi = max(hi, d)
        w_sum += weight[i]
        dw_sum += d * weight[i]
        n += 1
    return lo, hi, w_sum, dw_sum, n


@njit(**_JIT)
def plane_edge_table(vertices, next_index, vertex_plane, n_planes):
    """The non-horizontal edges of a polygon set grouped by plane: x0, y0, x1, y1 and the
    start of each plane's edges (``n_planes + 1`` entries). Vertices come plane after plane."""
    n = len(next_index)
    keep = np.zeros(n, dtype=np.bool_)
    start = np.zeros(n_planes + 1, dtype=np.int64)
    for v in range(n):
        if vertices[v, 1] != vertices[next_index[v], 1]:
            keep[v] = True
            start[vertex_plane[v] + 1] += 1
    for p in range(n_planes):
        start[p + 1] += start[p]
    m = start[n_planes]
    ex0 = np.empty(m)
    ey0 = np.empty(m)
    ex1 = np.empty(m)
    ey1 = np.empty(m)
    fill = start[:n_planes].copy()
    for v in range(n):
        if keep[v]:
            e = fill[vertex_plane[v]]
            fill[vertex_plane[v]] += 1
            w = next_index[v]
            ex0[e] = vertices[v, 0]
            ey0[e] = vertices[v, 1]
            ex1[e] = vertices[w, 0]
            ey1[e] = vertices[w, 1]
    return ex0, ey0, ex1, ey1, start


@njit(**_JIT)
def tail_cells(dose, spread, weight, volume_cc, reach_factor, n_bins):
    """Cells that can reach the hot tail: ``dose + reach_factor × spread ≥ D_tail``, where
    ``D_tail`` is the dose above which the cells hold ``volume_cc``, found on a histogram
    of ``n_bins`` bins over the covered dose range and rounded down to a bin edge
    (conservative). NaN doses (not covered) are neither counted nor selected. Returns the
    cell indices (ascending) and ``D_tail`` (NaN when nothing is covered)."""
    lo = np.inf
    hi = -np.inf
    for i in range(len(dose)):
        d = dose[i]
        if d == d:
            lo = min(lo, d)
            hi = max(hi, d)
    if lo > hi:
        return np.zeros(0, dtype=np.int64), np.nan
    if hi <= lo:
        d_tail = lo
    else:
        scale = n_bins / (hi - lo)
        hist = np.zeros(n_bins)
        for i in range(len(dose)):
            d = dose[i]
            if d == d:
                hist[min(int((d - lo) * scale), n_bins - 1)] += weight[i]
        # last bin k with at least volume_cc in bins >= k
        above = 0.0
        k = 0
        for b in range(n_bins - 1, -1, -1):
            above += hist[b]
            if above >= volume_cc:
                k = b
                break
        d_tail = lo + k / scale
    count = 0
    for i in range(len(dose)):
        if dose[i] + reach_factor * spread[i] >= d_tail:
            count += 1
    out = np.empty(count, dtype=np.int64)
    count = 0
    for i in range(len(dose)):
        if dose[i] + reach_factor * spread[i] >= d_tail:
            out[count] = i
            count += 1
    return out, d_tail


@njit(**_JIT)
def replace_plane_weights(weights, cell_plane, parents, sub_weight, sub_plane, n_planes):
    """Weights of first-pass cells whose ``parents`` are replaced by sub-cells, with every
    plane's volume kept: the parents get 0; the difference between their volume and the
    sub-cells' volume is shared by the plane's other cells in proportion, or, where they
    are too few (the difference is not below half of their volume), the sub-cells are
    scaled to the parents' volume instead; on a plane without any sub-cell but where
    the others cannot absorb the parents' volume, the parents keep their weights.
    Every plane's volume is kept. Returns new first-pass and sub-cell weights."""
    total = np.zeros(n_planes)
    removed = np.zeros(n_planes)
    added = np.zeros(n_planes)
    for i in range(len(weights)):
        total[cell_plane[i]] += weights[i]
    for i in parents:
        removed[cell_plane[i]] += weights[i]
    for i in range(len(sub_weight)):
        added[sub_plane[i]] += sub_weight[i]
    rest_factor = np.ones(n_planes)
    sub_factor = np.ones(n_planes)
    keep_parents = np.zeros(n_planes, dtype=np.bool_)
    for p in range(n_planes):
        rest = total[p] - removed[p]
        if rest > 0 and abs(removed[p] - added[p]) < 0.5 * rest:
            rest_factor[p] = (rest + removed[p] - added[p]) / rest
        elif added[p] > 0:
            sub_factor[p] = removed[p] / added[p]
        else:  # no sub-cell on this plane (all outside the contour): the parents stay
            keep_parents[p] = True
    out = np.empty(len(weights))
    for i in range(len(weights)):
        out[i] = weights[i] * rest_factor[cell_plane[i]]
    for i in parents:
        if not keep_parents[cell_plane[i]]:
            out[i] = 0.0
    sub_out = np.empty(len(sub_weight))
    for i in range(len(sub_weight)):
        sub_out[i] = sub_weight[i] * sub_factor[sub_plane[i]]
    return out, sub_out


@njit(**_JIT)
def edge_points(vertices, next_index, vertex_plane, step):
    """Every vertex, and points along its edge to the next vertex no further apart than
    ``step`` (an edge of length L gets ``max(1, ceil(L / step))`` equal parts; its end is
    the next edge's first point). Returns the points ``(N, 2)`` and their planes."""
    n = len(next_index)
    parts = np.empty(n, dtype=np.int64)
    total = 0
    for v in range(n):
        w = next_index[v]
        length = math.hypot(vertices[w, 0] - vertices[v, 0], vertices[w, 1] - vertices[v, 1])
        parts[v] = max(1, int(math.ceil(length / step)))
        total += parts[v]
    points = np.empty((total, 2))
    plane = np.empty(total, dtype=np.int64)
    k = 0
    for v in range(n):
        w = next_index[v]
        dx = vertices[w, 0] - vertices[v, 0]
        dy = vertices[w, 1] - vertices[v, 1]
        for i in range(parts[v]):
            f = i / parts[v]
            points[k, 0] = vertices[v, 0] + dx * f
            points[k, 1] = vertices[v, 1] + dy * f
            plane[k] = vertex_plane[v]
            k += 1
    return points, plane


@njit(**_JIT)
def segment_distances(px, py, segments, out):
    """Distance from each point ``(px[i], py[i])`` to the nearest segment ``(x0, y0, x1, y1)`` of
    ``segments`` (``(E, 4)``, mm), written to ``out``; ``inf`` when there are none. The same
    arithmetic, in the same order, as the vectorised reference
    (:func:`plancheck.dvh.geometry.point_to_segments_distance_mm`): projection parameter
    ``t = (ap·ab)/|ab|²`` (0 for a degenerate segment) clipped to [0, 1], squared distance
    to ``a + t·ab``, the smallest, its square root."""
    n_seg = segments.shape[0]
    for i in range(len(px)):
        best = np.inf
        x = px[i]
        y = py[i]
        for j in range(n_seg):
            ax = segments[j, 0]
            ay = segments[j, 1]
            abx = segments[j, 2] - ax
            aby = segments[j, 3] - ay
            ab2 = abx * abx + aby * aby
            t = 0.0
            if ab2 > 0:
                t = ((x - ax) * abx + (y - ay) * aby) / ab2
                t = min(max(t, 0.0), 1.0)
            dx = x - (ax + t * abx)
            dy = y - (ay + t * aby)
            d = dx * dx + dy * dy
            if d < best:
                best = d
        out[i] = math.sqrt(best)



@njit(**_JIT)
def voxel_corner_bounds(flat, nx, nxy, points, points_nx, points_nxy, k_voxel, j_voxel, i_voxel, out_hi, out_lo):
    """Largest and smallest of the dose values at the 8 corners of a dose voxel, for points of
    another grid given by their flat index there (``k · points_nxy + j · points_nx + i``) and
    tables of the voxel holding each of that grid's positions along each axis (``k_voxel[k]`` ...:
    the lower corner's index, -1 outside this grid; the upper is the next index, or the same on an
    axis of one point): bounds of the trilinear dose at the points (a convex combination of the
    corners). NaN for a point outside the grid."""
    nz = len(flat) // nxy
    ny = nxy // nx
    for n in range(len(points)):
        p = points[n]
        kk = k_voxel[p // points_nxy]
        jj = j_voxel[(p % points_nxy) // points_nx]
        ii = i_voxel[p % points_nx]
        if kk < 0 or jj < 0 or ii < 0:
            out_hi[n] = np.nan
            out_lo[n] = np.nan
            continue
        k1 = kk + 1 if kk + 1 < nz else kk
        j1 = jj + 1 if jj + 1 < ny else jj
        i1 = ii + 1 if ii + 1 < nx else ii
        top = -np.inf
        bottom = np.inf
        for a in (kk, k1):
            for b in (jj, j1):
                for c in (ii, i1):
                    v = np.float64(flat[a * nxy + b * nx + c])
                    if v > top:
                        top = v
                    if v < bottom:
                        bottom = v
        out_hi[n] = top
        out_lo[n] = bottom
