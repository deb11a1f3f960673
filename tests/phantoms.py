"""Analytic DVH phantoms built in code, with their exact answers.

A phantom is a stack of axial contour planes, and its *expected* DVH is derived
here from the same geometric model the DVH engine claims to implement (the slab
model), but by exact geometry that shares no code with the engine:

* **Slab model.** The contour plane at ``z_k`` stands for the slab
  ``[z_k - s/2, z_k + s/2]`` (``s`` the uniform contour spacing; the end slabs
  therefore extend half a spacing beyond the first and last contour). On a plane
  the region is the even-odd combination of its contours; every phantom here is
  built with properly nested contours, so each contour carries a known sign
  (+1 island, -1 hole) and the plane's area is the signed sum of the polygon
  areas (shoelace formula).
* **Linear dose** ``D(p) = d0 + g * p[axis]`` with ``g >= 0`` (``g = 0``: uniform
  dose). A linear field is reproduced exactly by trilinear interpolation on any
  dose grid whose voxel centres enclose the structure, so the grid spacing must
  not change the answer.
* **Cumulative DVH.** The volume receiving at least ``D`` is the volume of the
  part of the phantom on the far side of the plane ``p[axis] = c`` with
  ``c = (D - d0) / g``:

  - gradient along z: ``sum_k A_k * |[lo_k, hi_k] ∩ [c, inf)|`` (A_k the plane's area);
  - gradient along x or y: ``sum_k s_k * sum_p sign_p * area(P_p ∩ {p[axis] >= c})``.
    The clipped polygon area is computed by Green's theorem after translating
    the clip line through the origin: the clipped polygon's edges are the inside
    parts of the original edges plus pieces of the clip line, and a piece of a line
    through the origin adds nothing to ``½ Σ (x_i y_{i+1} - x_{i+1} y_i)``. So
    the exact clipped area is a vectorised sum over clipped edges.

* **Statistics.** The mean dose over a prism is the dose at its centroid
  (the dose is linear), so Mean is exact from polygon centroids; Min and Max are
  at polygon vertices (x/y gradient) or slab faces (z gradient). ``D_x`` is the
  dose at which the cumulative volume equals ``x`` (bisection on the monotone,
  continuous V(D)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from plancheck.model import Contour, DoseGrid, Roi

__all__ = [
    "LinearDose", "Phantom", "circle", "rectangle", "linear_dose_grid",
    "sphere", "cylinder_z", "cylinder_y", "cone_z", "ring_z", "two_islands_z", "island_in_hole_z",
    "sphere_radius_mm",
]

N_VERTICES = 128
"""Vertices of a contour circle (the expected answers use the polygon, not the circle)."""


# ------------------------------------------------------------------------------ polygons

def circle(cx: float, cy: float, r: float, n: int = N_VERTICES) -> np.ndarray:
    """A regular ``n``-gon inscribed in the circle, counter-clockwise, ``(n, 2)`` mm."""
    t = 2 * np.pi * np.arange(n) / n
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


def rectangle(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def shoelace_mm2(poly: np.ndarray) -> float:
    """Signed area (counter-clockwise positive)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def centroid_mm(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2
    return np.array([np.dot(x + xn, cross), np.dot(y + yn, cross)]) / (6 * a)


# ------------------------------------------------------------------------------ dose

@dataclass(frozen=True)
class LinearDose:
    """``D(p) = d0_gy + gradient_gy_per_mm * p[axis]``; gradient 0 is a uniform dose."""

    axis: int  # 0 = x, 1 = y, 2 = z
    d0_gy: float
    gradient_gy_per_mm: float = 1.0

    def __post_init__(self) -> None:
        if self.gradient_gy_per_mm < 0:
            raise ValueError("use a non-negative gradient")

    @property
    def label(self) -> str:
        if self.gradient_gy_per_mm == 0:
            return "uniform"
        return f"{'xyz'[self.axis]}{self.gradient_gy_per_mm:g}Gy/mm"

    def at(self, coord_mm: np.ndarray | float) -> np.ndarray | float:
        return self.d0_gy + self.gradient_gy_per_mm * coord_mm


def linear_dose_grid(
    dose: LinearDose,
    bounds_mm: Sequence[tuple[float, float]],
    spacing_mm: float | Sequence[float],
    *,
    offset_mm: float = 0.37,
    margin_voxels: int = 2,
    frame: str = "1.2.826.0.1.3680043.8.498.77",
) -> DoseGrid:
    """A dose grid holding ``dose`` whose voxel centres enclose ``bounds_mm`` with a margin.

    ``offset_mm`` shifts the lattice off the round numbers the contours sit on.
    """
    sp = [float(spacing_mm)] * 3 if np.isscalar(spacing_mm) else [float(s) for s in spacing_mm]  # type: ignore[arg-type]
    axes = []
    for (lo, hi), s in zip(bounds_mm, sp):
        start = math.floor((lo - offset_mm) / s) * s + offset_mm - margin_voxels * s
        n = int(math.ceil((hi - start) / s)) + margin_voxels + 1
        axes.append(start + s * np.arange(n))
    x, y, z = axes
    coord = np.meshgrid(z, y, x, indexing="ij")[::-1][dose.axis]  # (X, Y, Z)[axis] in (nz, ny, nx)
    values = dose.at(coord) * np.ones((len(z), len(y), len(x)))
    return DoseGrid(np.asarray(values, dtype=float), x, y, z, frame)


# ------------------------------------------------------------------------------ phantom

@dataclass(frozen=True, eq=False)
class Phantom:
    """A stack of contour planes with signed (even-odd) polygons, and its exact DVH.

    Attributes
    ----------
    name
        For test ids.
    planes
        ``[(z_mm, [(polygon (N, 2), sign), ...]), ...]`` in increasing z.
    spacing_mm
        Uniform contour spacing (slab thickness).
    """

    name: str
    planes: tuple[tuple[float, tuple[tuple[np.ndarray, int], ...]], ...]
    spacing_mm: float
    roi_number: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- geometry
    @property
    def roi(self) -> Roi:
        contours = []
        for z, polys in self.planes:
            for poly, _sign in polys:
                contours.append(Contour(np.column_stack([poly, np.full(len(poly), z)])))
        return Roi(self.roi_number, self.name, "ORGAN", tuple(contours))

    def slab(self, k: int) -> tuple[float, float]:
        z = self.planes[k][0]
        return z - self.spacing_mm / 2, z + self.spacing_mm / 2

    def plane_area_mm2(self, k: int) -> float:
        return sum(sign * abs(shoelace_mm2(p)) for p, sign in self.planes[k][1])

    @property
    def volume_cc(self) -> float:
        return sum(self.plane_area_mm2(k) for k in range(len(self.planes))) * self.spacing_mm / 1000.0

    def bounds_mm(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        xy = np.vstack([p for _, polys in self.planes for p, _ in polys])
        z = [z for z, _ in self.planes]
        return (
            (float(xy[:, 0].min()), float(xy[:, 0].max())),
            (float(xy[:, 1].min()), float(xy[:, 1].max())),
            (min(z) - self.spacing_mm / 2, max(z) + self.spacing_mm / 2),
        )

    def _edge_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every polygon edge (P, Q) with weight thickness × even-odd sign × orientation."""
        if "edges" not in self._cache:
            ps, qs, ws = [], [], []
            for _z, polys in self.planes:
                for poly, sign in polys:
                    orient = 1.0 if shoelace_mm2(poly) > 0 else -1.0
                    ps.append(poly)
                    qs.append(np.roll(poly, -1, axis=0))
                    ws.append(np.full(len(poly), sign * orient * self.spacing_mm))
            self._cache["edges"] = (np.vstack(ps), np.vstack(qs), np.concatenate(ws))
        return self._cache["edges"]

    # ---------------------------------------------------------------- exact DVH
    def volume_beyond_cc(self, axis: int, c_mm: float) -> float:
        """Exact volume of the phantom where ``p[axis] >= c_mm``, cc."""
        if axis == 2:
            total = 0.0
            for k in range(len(self.planes)):
                lo, hi = self.slab(k)
                total += self.plane_area_mm2(k) * max(0.0, hi - max(lo, c_mm))
            return total / 1000.0
        p, q, w = self._edge_table()
        p = p.copy()
        q = q.copy()
        p[:, axis] -= c_mm  # translate: the clip line passes through the origin
        q[:, axis] -= c_mm
        a, b = p[:, axis], q[:, axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a != b, a / (a - b), 0.0)
        cut = p + t[:, None] * (q - p)
        p_in = np.where((a >= 0)[:, None], p, cut)
        q_in = np.where((b >= 0)[:, None], q, cut)
        keep = (a >= 0) | (b >= 0)
        cross = p_in[:, 0] * q_in[:, 1] - q_in[:, 0] * p_in[:, 1]
        return float(np.sum(w * cross * keep) / 2) / 1000.0

    def volume_at_dose_cc(self, dose: LinearDose, d_gy: float) -> float:
        """Exact volume receiving at least ``d_gy``, cc."""
        g = dose.gradient_gy_per_mm
        if g == 0:
            return self.volume_cc if d_gy <= dose.d0_gy else 0.0
        return self.volume_beyond_cc(dose.axis, (d_gy - dose.d0_gy) / g)

    def mean_gy(self, dose: LinearDose) -> float:
        """Exact mean dose: volume-weighted dose at each prism's centroid."""
        num = 0.0
        den = 0.0
        for k, (z, polys) in enumerate(self.planes):
            for poly, sign in polys:
                vol = sign * abs(shoelace_mm2(poly)) * self.spacing_mm
                coord = z if dose.axis == 2 else centroid_mm(poly)[dose.axis]
                num += vol * dose.at(coord)
                den += vol
        return num / den

    def min_gy(self, dose: LinearDose) -> float:
        return float(dose.at(self._extreme_coord(dose.axis, lowest=True)))

    def max_gy(self, dose: LinearDose) -> float:
        return float(dose.at(self._extreme_coord(dose.axis, lowest=False)))

    def _extreme_coord(self, axis: int, lowest: bool) -> float:
        (x0, x1), (y0, y1), (z0, z1) = self.bounds_mm()
        return ((x0, y0, z0) if lowest else (x1, y1, z1))[axis]

    def dose_at_volume_gy(self, dose: LinearDose, v_cc: float) -> float:
        """Exact ``D`` with V(D) = v_cc (bisection on the monotone cumulative volume)."""
        lo, hi = self.min_gy(dose), self.max_gy(dose)
        if dose.gradient_gy_per_mm == 0:
            return dose.d0_gy
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.volume_at_dose_cc(dose, mid) >= v_cc:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    def dose_at_percent_gy(self, dose: LinearDose, pct: float) -> float:
        return self.dose_at_volume_gy(dose, pct / 100.0 * self.volume_cc)


# ------------------------------------------------------------------------------ shapes

def _stack(z_planes: np.ndarray, make) -> tuple:
    planes = []
    for z in z_planes:
        polys = make(float(z))
        if polys:
            planes.append((float(z), tuple(polys)))
    return tuple(planes)


def sphere_radius_mm(volume_cc: float) -> float:
    return (3 * volume_cc * 1000 / (4 * math.pi)) ** (1 / 3)


def sphere(volume_cc: float, spacing_mm: float, centre_mm=(1.3, -2.1, 0.0), name: str | None = None) -> Phantom:
    """Sphere of nominal volume ``volume_cc``; contour planes on ``cz + j * s`` inside it.

    The slab-model volume differs from the nominal one (staircase ends); the
    tests compare against the slab model, which is exact for these contours.
    """
    r = sphere_radius_mm(volume_cc)
    cx, cy, cz = centre_mm
    j = np.arange(-math.floor(r / spacing_mm), math.floor(r / spacing_mm) + 1)
    j = j[np.abs(j * spacing_mm) < r]
    planes = _stack(cz + j * spacing_mm, lambda z: [(circle(cx, cy, math.sqrt(r * r - (z - cz) ** 2)), 1)])
    return Phantom(name or f"sphere{volume_cc:g}cc_s{spacing_mm:g}", planes, spacing_mm)


def _covering_planes(z0: float, z1: float, s: float) -> np.ndarray:
    """Planes whose slabs tile ``[z0, z1]`` exactly (``z1 - z0`` a multiple of ``s``)."""
    n = int(round((z1 - z0) / s))
    return z0 + s * (np.arange(n) + 0.5)


def cylinder_z(r: float, h: float, spacing_mm: float, centre_mm=(0.6, -1.1, 0.0)) -> Phantom:
    """Cylinder with its axis along z; ``h`` a multiple of the spacing (slabs tile it)."""
    cx, cy, cz = centre_mm
    planes = _stack(_covering_planes(cz - h / 2, cz + h / 2, spacing_mm), lambda z: [(circle(cx, cy, r), 1)])
    return Phantom(f"cylz_r{r:g}_h{h:g}_s{spacing_mm:g}", planes, spacing_mm)


def cylinder_y(r: float, h: float, spacing_mm: float, centre_mm=(0.6, -1.1, 0.0)) -> Phantom:
    """Cylinder with its axis along y: each axial contour is a rectangle of half-width
    ``sqrt(r² - (z - cz)²)`` in x and length ``h`` in y."""
    cx, cy, cz = centre_mm
    j = np.arange(-math.floor(r / spacing_mm), math.floor(r / spacing_mm) + 1)
    j = j[np.abs(j * spacing_mm) < r]

    def make(z: float):
        w = math.sqrt(r * r - (z - cz) ** 2)
        return [(rectangle(cx - w, cx + w, cy - h / 2, cy + h / 2), 1)]

    return Phantom(f"cyly_r{r:g}_h{h:g}_s{spacing_mm:g}", _stack(cz + j * spacing_mm, make), spacing_mm)


def cone_z(r: float, h: float, spacing_mm: float, centre_mm=(0.6, -1.1, 0.0)) -> Phantom:
    """Cone with its axis along z, base (radius r) at ``cz - h/2``, apex at ``cz + h/2``;
    each plane's circle has the radius of the cone at the plane."""
    cx, cy, cz = centre_mm
    zs = _covering_planes(cz - h / 2, cz + h / 2, spacing_mm)
    planes = _stack(zs, lambda z: [(circle(cx, cy, r * (cz + h / 2 - z) / h), 1)])
    return Phantom(f"conez_r{r:g}_h{h:g}_s{spacing_mm:g}", planes, spacing_mm)


def ring_z(r_out: float, r_in: float, h: float, spacing_mm: float, centre_mm=(0.6, -1.1, 0.0)) -> Phantom:
    """A tube: outer and inner contour on each plane (the inner one is a hole by the
    even-odd rule). The inner circle is drawn clockwise, as some systems do."""
    cx, cy, cz = centre_mm
    zs = _covering_planes(cz - h / 2, cz + h / 2, spacing_mm)
    planes = _stack(zs, lambda z: [(circle(cx, cy, r_out), 1), (circle(cx, cy, r_in)[::-1], -1)])
    return Phantom(f"ring_{r_out:g}-{r_in:g}_h{h:g}_s{spacing_mm:g}", planes, spacing_mm)


def two_islands_z(r1: float, r2: float, gap_mm: float, h: float, spacing_mm: float) -> Phantom:
    """Two separate cylinders along z (two contours on every plane, side by side in x);
    only the lower half of the stack has the second island."""
    zs = _covering_planes(-h / 2, h / 2, spacing_mm)

    def make(z: float):
        polys = [(circle(-r1 - gap_mm / 2, 0.4, r1), 1)]
        if z < 0:
            polys.append((circle(r2 + gap_mm / 2, -0.3, r2), 1))
        return polys

    return Phantom(f"islands_{r1:g}+{r2:g}_h{h:g}_s{spacing_mm:g}", _stack(zs, make), spacing_mm)


def island_in_hole_z(r_out: float, r_hole: float, r_island: float, h: float, spacing_mm: float) -> Phantom:
    """Three nested contours per plane: outer disc, a hole, an island inside the hole."""
    zs = _covering_planes(-h / 2, h / 2, spacing_mm)
    planes = _stack(zs, lambda z: [(circle(0.2, 0.1, r_out), 1), (circle(0.2, 0.1, r_hole), -1), (circle(0.2, 0.1, r_island), 1)])
    return Phantom(f"nested_{r_out:g}-{r_hole:g}-{r_island:g}_s{spacing_mm:g}", planes, spacing_mm)
