"""Analytic 3-D shapes as approximate signed-distance functions, and their planar contours.

Every shape answers two questions in the patient frame (mm, DICOM axes: x to the
patient's left, y posterior, z superior):

* ``sdf(x, y, z)`` -- an approximate signed distance in mm (negative inside),
  exact on the surface of ellipsoids and elliptic tubes and a good first-order
  approximation near it; it is used for masks (``sdf <= 0``), margins
  (``sdf - margin``) and dose fall-off;
* ``polygons(z)`` -- the closed planar contours of the cross-section at ``z`` as
  ``(N, 2)`` x/y arrays, combined by the even-odd rule (holes and islands are
  extra polygons). They are found by marching rays outward from the shape's
  centre line to the first zero crossing of ``sdf`` and refining by bisection,
  so contours and masks agree to well below a millimetre.

Only numpy is used; nothing here knows about DICOM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Shape",
    "Ellipsoid",
    "EllipticTube",
    "SuperEllipticPrism",
    "Offset",
    "Difference",
    "Union",
    "Ring",
    "star_polygon",
    "planar_contours",
]

_EPS = 1e-9


def _ellipse_sdf_2d(qx: np.ndarray, qy: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Approximate signed distance (mm) of points ``(qx, qy)`` from the ellipse with
    semi-axes ``a``, ``b`` centred at the origin: ``(rho - 1) / |grad rho|``."""
    a = np.maximum(a, _EPS)
    b = np.maximum(b, _EPS)
    rho = np.sqrt((qx / a) ** 2 + (qy / b) ** 2)
    grad = np.sqrt((qx / a**2) ** 2 + (qy / b**2) ** 2)
    # at the centre rho/grad -> the smaller semi-axis; guard the 0/0
    safe = grad > _EPS
    ratio = np.where(safe, rho / np.where(safe, grad, 1.0), np.minimum(a, b))
    return (rho - 1.0) * ratio


def _combine_axial(d_r: np.ndarray, d_z: np.ndarray) -> np.ndarray:
    """Signed distance of the intersection of a radial and an axial slab (box rule)."""
    outside = np.sqrt(np.maximum(d_r, 0.0) ** 2 + np.maximum(d_z, 0.0) ** 2)
    inside = np.minimum(np.maximum(d_r, d_z), 0.0)
    return outside + inside


class Shape:
    """Base class: an approximate signed-distance function with a star-shaped
    cross-section around ``center_xy(z)``.

    Subclasses implement :meth:`sdf`, :meth:`center_xy` and :attr:`bound_mm`
    (a radius, mm, beyond which no cross-section reaches from the centre line).
    """

    bound_mm: float = 300.0

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} does not define sdf()")

    def center_xy(self, z: float) -> tuple[float, float]:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} does not define center_xy()")

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of the points inside (``sdf <= 0``)."""
        return self.sdf(x, y, z) <= 0.0

    def present_at(self, z: float) -> bool:
        """True when the centre line at ``z`` lies strictly inside the shape."""
        cx, cy = self.center_xy(z)
        return bool(self.sdf(np.array([cx]), np.array([cy]), np.array([z]))[0] < 0.0)

    def polygons(self, z: float, *, vertex_spacing_mm: float | None = None,
                 outline_tolerance_mm: float | None = None) -> list[np.ndarray]:
        """Closed planar polygons (``(N, 2)`` arrays, mm) of the cross-section at ``z``."""
        if not self.present_at(z):
            return []
        return [star_polygon(self, z, vertex_spacing_mm=vertex_spacing_mm, outline_tolerance_mm=outline_tolerance_mm)]


#: bisection steps per ray when no outline tolerance is given (the sample's contours)
EXACT_BISECTIONS = 30


def star_polygon(shape: Shape, z: float, *, vertex_spacing_mm: float | None = None,
                 outline_tolerance_mm: float | None = None) -> np.ndarray:
    """The outline of ``shape`` at ``z`` by ray marching from its centre line.

    Parameters
    ----------
    shape
        Any :class:`Shape` whose centre ``shape.center_xy(z)`` is inside.
    z
        Plane position, mm.
    vertex_spacing_mm
        Wanted distance between vertices; by default about 1 mm for small
        cross-sections, rising to 4 mm for the body outline.
    outline_tolerance_mm
        How far a vertex may lie from the true outline along its ray, mm; by
        default (None) each ray is bisected :data:`EXACT_BISECTIONS` times (below
        1e-9 mm: the sample's contours). Tests pass about 0.01 mm for speed.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float array of x, y in mm, counter-clockwise, not repeating
        the first vertex.
    """
    cx, cy = shape.center_xy(z)
    bound = float(shape.bound_mm)
    step = min(1.0, bound / 200.0)
    radii = np.arange(step, bound + step, step)
    bisections = EXACT_BISECTIONS if outline_tolerance_mm is None else \
        max(1, int(np.ceil(np.log2(step / outline_tolerance_mm))))
    # coarse outline with 64 rays to estimate the size, then the real ray count
    for pass_ in range(2):
        if pass_ == 0:
            n_rays = 64
        else:
            mean_radius = float(np.mean(r_hit))
            spacing = vertex_spacing_mm or float(np.clip(mean_radius / 20.0, 1.0, 4.0))
            n_rays = int(np.clip(round(2 * np.pi * mean_radius / spacing), 16, 720))
        theta = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
        ux, uy = np.cos(theta), np.sin(theta)
        px = cx + ux[:, None] * radii[None, :]
        py = cy + uy[:, None] * radii[None, :]
        d = shape.sdf(px, py, np.full_like(px, z))
        outside = d > 0.0
        first = np.where(outside.any(axis=1), outside.argmax(axis=1), len(radii) - 1)
        lo = np.where(first > 0, radii[np.maximum(first - 1, 0)], 0.0)
        hi = radii[first]
        for _ in range(bisections):
            mid = 0.5 * (lo + hi)
            inside = shape.sdf(cx + ux * mid, cy + uy * mid, np.full_like(mid, z)) <= 0.0
            lo = np.where(inside, mid, lo)
            hi = np.where(inside, hi, mid)
        r_hit = 0.5 * (lo + hi)
    return np.column_stack([cx + ux * r_hit, cy + uy * r_hit])


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """An axis-aligned ellipsoid.

    Parameters
    ----------
    center_mm
        Centre (x, y, z), mm.
    semi_axes_mm
        Semi-axes (a, b, c) along x, y, z, mm.
    """

    center_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return 1.5 * max(self.semi_axes_mm[:2]) + 5.0

    def center_xy(self, z: float) -> tuple[float, float]:
        return float(self.center_mm[0]), float(self.center_mm[1])

    def sdf(self, x, y, z):
        cx, cy, cz = self.center_mm
        a, b, c = self.semi_axes_mm
        qx, qy, qz = np.asarray(x) - cx, np.asarray(y) - cy, np.asarray(z) - cz
        rho = np.sqrt((qx / a) ** 2 + (qy / b) ** 2 + (qz / c) ** 2)
        grad = np.sqrt((qx / a**2) ** 2 + (qy / b**2) ** 2 + (qz / c**2) ** 2)
        safe = grad > _EPS
        ratio = np.where(safe, rho / np.where(safe, grad, 1.0), min(a, b, c))
        return (rho - 1.0) * ratio


@dataclass(frozen=True)
class EllipticTube(Shape):
    """An elliptic tube along z with a piecewise-linear centre line and rounded ends.

    Parameters
    ----------
    knots_z_mm, knots_x_mm, knots_y_mm
        The centre line through ``(x, y)`` at each ``z`` knot (increasing z),
        linearly interpolated and held constant beyond the end knots.
    semi_axes_mm
        Semi-axes (a, b) of the cross-section, mm.
    z_range_mm
        ``(z_lo, z_hi)`` extent of the tube, mm.
    rounding_mm
        Radius of the rounding of the ends (0: flat ends).
    """

    knots_z_mm: tuple[float, ...]
    knots_x_mm: tuple[float, ...]
    knots_y_mm: tuple[float, ...]
    semi_axes_mm: tuple[float, float]
    z_range_mm: tuple[float, float]
    rounding_mm: float = 0.0

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return 1.5 * max(self.semi_axes_mm) + 5.0

    def center_xy(self, z: float) -> tuple[float, float]:
        return (float(np.interp(z, self.knots_z_mm, self.knots_x_mm)),
                float(np.interp(z, self.knots_z_mm, self.knots_y_mm)))

    def sdf(self, x, y, z):
        x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
        t = self.rounding_mm
        a, b = self.semi_axes_mm
        z_lo, z_hi = self.z_range_mm
        cx = np.interp(z, self.knots_z_mm, self.knots_x_mm)
        cy = np.interp(z, self.knots_z_mm, self.knots_y_mm)
        d_r = _ellipse_sdf_2d(x - cx, y - cy, a - t, b - t)
        d_z = np.maximum((z_lo + t) - z, z - (z_hi - t))
        return _combine_axial(d_r, d_z) - t


@dataclass(frozen=True)
class SuperEllipticPrism(Shape):
    """A body outline: super-elliptic cross-section ``|x/a|^n + |y/b|^n <= 1`` whose
    semi-axes vary slowly with z, between two planes.

    Parameters
    ----------
    center_xy_mm
        Centre (x, y), mm.
    semi_axes_mm
        Mean semi-axes (a, b), mm.
    modulation_mm
        Amplitudes (da, db) of the sinusoidal variation with z, mm.
    period_mm
        Periods of the variation of a and b along z, mm.
    exponent
        Super-ellipse exponent n (2: ellipse; larger: boxier).
    z_range_mm
        ``(z_lo, z_hi)``, mm.
    """

    center_xy_mm: tuple[float, float]
    semi_axes_mm: tuple[float, float]
    modulation_mm: tuple[float, float]
    period_mm: tuple[float, float]
    exponent: float
    z_range_mm: tuple[float, float]

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return 1.3 * (max(self.semi_axes_mm) + max(self.modulation_mm)) + 5.0

    def center_xy(self, z: float) -> tuple[float, float]:
        return float(self.center_xy_mm[0]), float(self.center_xy_mm[1])

    def semi_axes_at(self, z):
        """Semi-axes (a, b) in mm at ``z``."""
        z = np.asarray(z, float)
        a = self.semi_axes_mm[0] + self.modulation_mm[0] * np.sin(2 * np.pi * z / self.period_mm[0])
        b = self.semi_axes_mm[1] + self.modulation_mm[1] * np.cos(2 * np.pi * z / self.period_mm[1])
        return a, b

    def sdf(self, x, y, z):
        x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
        n = self.exponent
        a, b = self.semi_axes_at(z)
        ux = np.abs(x - self.center_xy_mm[0]) / a
        uy = np.abs(y - self.center_xy_mm[1]) / b
        s = ux**n + uy**n
        rho = s ** (1.0 / n)
        # gradient of rho: d rho / dx = rho^(1-n) ux^(n-1) / a
        rho_safe = np.maximum(rho, _EPS)
        gx = rho_safe ** (1 - n) * ux ** (n - 1) / a
        gy = rho_safe ** (1 - n) * uy ** (n - 1) / b
        grad = np.sqrt(gx**2 + gy**2)
        safe = grad > _EPS
        d_r = (rho - 1.0) * np.where(safe, 1.0 / np.where(safe, grad, 1.0), np.minimum(a, b))
        z_lo, z_hi = self.z_range_mm
        d_z = np.maximum(z_lo - z, z - z_hi)
        return _combine_axial(d_r, d_z)


@dataclass(frozen=True)
class Offset(Shape):
    """``base`` grown (``margin_mm > 0``) or shrunk (``< 0``) by a uniform margin."""

    base: Shape
    margin_mm: float

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return self.base.bound_mm + max(self.margin_mm, 0.0) * 1.5

    def center_xy(self, z: float) -> tuple[float, float]:
        return self.base.center_xy(z)

    def sdf(self, x, y, z):
        return self.base.sdf(x, y, z) - self.margin_mm


@dataclass(frozen=True)
class Difference(Shape):
    """``base`` minus each of ``cuts``.

    The outline is ray-marched from the centre of ``base`` moved by
    ``center_shift_mm`` (x, y); put that point where the cuts do not reach.
    Where a ray crosses a cut and re-enters ``base``, the contour keeps only the
    part nearest the centre."""

    base: Shape
    cuts: tuple[Shape, ...]
    center_shift_mm: tuple[float, float] = (0.0, 0.0)

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return self.base.bound_mm + float(np.hypot(*self.center_shift_mm))

    def center_xy(self, z: float) -> tuple[float, float]:
        cx, cy = self.base.center_xy(z)
        return cx + self.center_shift_mm[0], cy + self.center_shift_mm[1]

    def sdf(self, x, y, z):
        d = self.base.sdf(x, y, z)
        for cut in self.cuts:
            d = np.maximum(d, -cut.sdf(x, y, z))
        return d


@dataclass(frozen=True)
class Union(Shape):
    """Several disjoint shapes as one ROI: each plane gets one polygon per part
    (islands)."""

    parts: tuple[Shape, ...]

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return max(p.bound_mm for p in self.parts)

    def center_xy(self, z: float) -> tuple[float, float]:
        return self.parts[0].center_xy(z)

    def sdf(self, x, y, z):
        return np.minimum.reduce([p.sdf(x, y, z) for p in self.parts])

    def present_at(self, z: float) -> bool:
        return any(p.present_at(z) for p in self.parts)

    def polygons(self, z: float, *, vertex_spacing_mm: float | None = None,
                 outline_tolerance_mm: float | None = None) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for part in self.parts:
            out.extend(part.polygons(z, vertex_spacing_mm=vertex_spacing_mm, outline_tolerance_mm=outline_tolerance_mm))
        return out


@dataclass(frozen=True)
class Ring(Shape):
    """``outer`` with ``inner`` removed, written as an outer contour plus a hole
    contour on each plane (``inner`` must lie inside ``outer``)."""

    outer: Shape
    inner: Shape

    @property
    def bound_mm(self) -> float:  # type: ignore[override]
        return self.outer.bound_mm

    def center_xy(self, z: float) -> tuple[float, float]:
        return self.outer.center_xy(z)

    def sdf(self, x, y, z):
        return np.maximum(self.outer.sdf(x, y, z), -self.inner.sdf(x, y, z))

    def present_at(self, z: float) -> bool:
        return self.outer.present_at(z)

    def polygons(self, z: float, *, vertex_spacing_mm: float | None = None,
                 outline_tolerance_mm: float | None = None) -> list[np.ndarray]:
        out = self.outer.polygons(z, vertex_spacing_mm=vertex_spacing_mm, outline_tolerance_mm=outline_tolerance_mm)
        if out:
            out = out + self.inner.polygons(z, vertex_spacing_mm=vertex_spacing_mm,
                                            outline_tolerance_mm=outline_tolerance_mm)
        return out


def planar_contours(shape: Shape, z_planes_mm: Sequence[float], *,
                    outline_tolerance_mm: float | None = None) -> tuple[np.ndarray, ...]:
    """All contours of ``shape`` on the given planes as ``(N, 3)`` arrays (mm); see
    :func:`star_polygon` for ``outline_tolerance_mm``."""
    contours: list[np.ndarray] = []
    for z in z_planes_mm:
        for poly in shape.polygons(float(z), outline_tolerance_mm=outline_tolerance_mm):
            contours.append(np.column_stack([poly, np.full(len(poly), float(z))]))
    return tuple(contours)
