"""Analytic dose models: a conventional VMAT-like distribution and an SBRT one.

The models are phenomenological, not a dose calculation. They reproduce what a
plan checker looks at: a PTV covered with a little heterogeneity, a penumbra of
about 7 mm (conventional) or a steep fall-off with a chosen R50% (SBRT), a
low-dose bath along the arc directions, an organ at risk spared by a cap that
rises with the distance from it, and zero dose outside the body.

All functions take voxel-centre coordinates as broadcastable arrays in mm and
return relative dose (1 = prescription) unless the name says ``_gy``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logistic",
    "smooth_min",
    "heterogeneity",
    "arc_bath_2d",
    "conventional_relative_dose",
    "sbrt_relative_dose",
    "normalise_to_coverage",
]


def logistic(t: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-t))`` without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(t, float)))


def smooth_min(a: np.ndarray, b: np.ndarray, softness: float) -> np.ndarray:
    """A smooth minimum of ``a`` and ``b`` (log-sum-exp with scale ``softness``)."""
    m = np.minimum(a, b)
    return m - softness * np.log1p(np.exp(-np.abs(a - b) / softness))


def heterogeneity(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator,
                  amplitude: float) -> np.ndarray:
    """A smooth multiplicative modulation ``1 + amplitude * m`` with ``|m| <= 1``,
    wavelengths 35-70 mm and random phases."""
    wavelengths = rng.uniform(35.0, 70.0, size=3)
    phases = rng.uniform(0.0, 2 * np.pi, size=3)
    m = (np.sin(2 * np.pi * x / wavelengths[0] + phases[0])
         * np.sin(2 * np.pi * y / wavelengths[1] + phases[1])
         * np.sin(2 * np.pi * z / wavelengths[2] + phases[2]))
    return 1.0 + amplitude * m


def arc_bath_2d(x: np.ndarray, y: np.ndarray, isocenter_mm: tuple[float, float, float], *,
                half_widths_mm: tuple[float, float], gantry_deg: np.ndarray,
                penumbra_mm: float = 3.0, attenuation_per_mm: float = 0.0045,
                scatter: float = 0.06, scatter_range_mm: float = 25.0) -> np.ndarray:
    """Relative in-plane dose of arcs: the mean over gantry angles of an open
    field conformed to the target's projection, attenuated with depth.

    Parameters
    ----------
    x, y
        In-plane coordinates, mm (broadcastable, e.g. ``(1, nx)`` and ``(ny, 1)``).
    isocenter_mm
        Isocentre; the dose there is 1.
    half_widths_mm
        Target half-widths along x and y, mm; the field edge at each angle is the
        target ellipse's support function.
    gantry_deg
        Gantry angles sampled along the arcs, degrees (IEC 61217; 0 = beam from
        anterior, 90 = from the patient's left for a head-first supine patient).
    penumbra_mm
        Logistic width of the field edge, mm.
    attenuation_per_mm
        Effective linear attenuation along the beam, 1/mm.
    scatter, scatter_range_mm
        Amplitude and range of the out-of-field tail.
    """
    ix, iy, _ = isocenter_mm
    qx, qy = np.asarray(x, float) - ix, np.asarray(y, float) - iy
    total = np.zeros(np.broadcast_shapes(qx.shape, qy.shape))
    hx, hy = half_widths_mm
    for angle in np.deg2rad(np.asarray(gantry_deg, float)):
        # direction of travel of the beam (source at -u)
        ux, uy = -np.sin(angle), np.cos(angle)
        nx_, ny_ = uy, -ux  # perpendicular in the plane
        depth = qx * ux + qy * uy
        lateral = np.abs(qx * nx_ + qy * ny_)
        half_width = np.hypot(hx * nx_, hy * ny_)
        outside = lateral - half_width
        field = logistic(-outside / penumbra_mm) + scatter * np.exp(-np.maximum(outside, 0.0) / scatter_range_mm)
        total += field * np.exp(-attenuation_per_mm * depth)
    total /= len(gantry_deg)
    return total / (1.0 + scatter)


def conventional_relative_dose(sdf_ptv_mm: np.ndarray, bath: np.ndarray, modulation: np.ndarray, *,
                               plateau: float = 1.035, edge_shift_mm: float = 4.5,
                               penumbra_mm: float = 2.5) -> np.ndarray:
    """A conventional plan: a plateau inside the PTV blending into the arc bath.

    Parameters
    ----------
    sdf_ptv_mm
        Signed distance to the PTV surface, mm (negative inside).
    bath
        Relative arc bath (:func:`arc_bath_2d` times an axial profile).
    modulation
        Multiplicative heterogeneity inside the target.
    plateau
        Relative dose of the high-dose plateau before normalisation.
    edge_shift_mm
        Distance outside the PTV where the plateau has fallen half way.
    penumbra_mm
        Logistic width of the fall-off; 80-20 % distance ≈ 2.8 × this.
    """
    w_in = logistic(-(sdf_ptv_mm - edge_shift_mm) / penumbra_mm)
    return w_in * plateau * modulation + (1.0 - w_in) * np.minimum(bath, plateau)


def sbrt_relative_dose(sdf_ptv_mm: np.ndarray, *, equivalent_radius_mm: float, r50: float = 4.5,
                       edge: float = 1.0, hot: float = 1.32, build_up_mm: float = 5.0,
                       tail: float = 0.06, tail_range_mm: float = 30.0) -> np.ndarray:
    """An SBRT distribution prescribed to a low isodose line.

    Inside the PTV the dose rises from ``edge`` at the surface towards ``hot``
    in the centre; outside it falls as ``edge * ((1-tail) e^{-αd} + tail e^{-d/L})``
    with α chosen so that the 50 % isodose encloses ``r50`` times the PTV
    volume (for a sphere of radius ``equivalent_radius_mm``).
    """
    d50 = (r50 ** (1.0 / 3.0) - 1.0) * equivalent_radius_mm
    remaining = (0.5 / edge - tail * np.exp(-d50 / tail_range_mm)) / (1.0 - tail)
    alpha = -np.log(remaining) / d50
    d = np.asarray(sdf_ptv_mm, float)
    inside = edge + (hot - edge) * (1.0 - np.exp(np.minimum(d, 0.0) / build_up_mm))
    dout = np.maximum(d, 0.0)
    outside = edge * ((1.0 - tail) * np.exp(-alpha * dout) + tail * np.exp(-dout / tail_range_mm))
    return np.where(d <= 0.0, inside, outside)


def normalise_to_coverage(dose: np.ndarray, target_mask: np.ndarray, *, volume_percent: float,
                          relative_dose: float) -> np.ndarray:
    """Scale ``dose`` so that ``volume_percent`` of the target receives at least
    ``relative_dose`` (as a TPS plan normalisation does)."""
    values = dose[target_mask]
    if values.size == 0:
        return dose
    d_at = float(np.percentile(values, 100.0 - volume_percent))
    if d_at <= 0:
        return dose
    return dose * (relative_dose / d_at)
