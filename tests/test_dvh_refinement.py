"""Thin shells and hot tails: the thickness-limited lattice step and the hot-tail refinement
of :mod:`plancheck.dvh.engine` against phantoms with an analytic answer.

* A 3 mm rind of a 100 mm cylinder in a linear dose (trilinear interpolation reproduces a
  linear dose exactly): D2 %, V at a high dose and the mean against the exact volume.
* A large box (2.4 L, sampled on a 4 mm lattice) with a steep pyramid of dose
  ``D = 60 Gy − 2 Gy/mm · (|x − x0| + |y − y0|)`` (floored at 5 Gy) whose apex lies on a
  voxel centre: bilinear interpolation of a sum of piecewise-linear functions with their
  kinks on the grid nodes is exact, so the volume above ``D`` near the apex is a
  diamond prism, ``2 a² · H`` with ``a = (60 − D) / 2``. D0.03cc = 59 Gy, D2 % = 20 Gy.
  The hottest 0.03 cc is a small part of one first-pass cell (4 × 4 × 2 mm = 0.032 cc).
* The same pyramid through an EQD2 transform (the refinement uses the sources'
  transforms exactly like the first pass): the answer is the transform of the physical one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from phantoms import LinearDose, linear_dose_grid, ring_z
from plancheck.dvh.engine import compute_dvh, sample_for_grid
from plancheck.dvh.metrics import evaluate_metric, parse_metric
from plancheck.dvh.sampling import characteristic_thickness_mm
from plancheck.dvh.rasterize import PolygonSet, plane_areas_mm2
from plancheck.model import DoseGrid, Roi

RTOL = 0.005


def _metric(dvh, text: str) -> float:
    return float(evaluate_metric(parse_metric(text), dvh).value)


# ------------------------------------------------------------------------------ thin shell

def _rind():
    phantom = ring_z(50.0, 47.0, 60.0, 3.0)
    dose = LinearDose(axis=0, d0_gy=40.0, gradient_gy_per_mm=0.2)
    grid = linear_dose_grid(dose, phantom.bounds_mm(), 3.0)
    return phantom, dose, grid


def test_rind_thickness_is_its_width():
    phantom, _, _ = _rind()
    roi = phantom.roi
    pset = PolygonSet.from_planes(list(roi.planes.values()))
    assert characteristic_thickness_mm(pset, plane_areas_mm2(pset)) == pytest.approx(3.0, rel=0.03)


def test_rind_step_is_limited_by_the_thickness():
    phantom, _, grid = _rind()
    sampling = sample_for_grid(phantom.roi, grid)
    assert sampling.step_mm <= 3.0 / 3 + 1e-9  # THICKNESS_SAMPLES lattice points across the rind


def _dose_at_volume_exact(phantom, dose: LinearDose, volume_cc: float) -> float:
    lo, hi = dose.d0_gy - 60 * dose.gradient_gy_per_mm, dose.d0_gy + 60 * dose.gradient_gy_per_mm
    for _ in range(80):
        mid = (lo + hi) / 2
        if phantom.volume_at_dose_cc(dose, mid) > volume_cc:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_rind_in_a_linear_gradient():
    phantom, dose, grid = _rind()
    dvh = compute_dvh(phantom.roi, grid)
    volume = phantom.volume_cc
    assert dvh.volume_cc == pytest.approx(volume, rel=1e-6)
    assert _metric(dvh, "Mean[Gy]") == pytest.approx(phantom.mean_gy(dose), rel=RTOL)
    assert _metric(dvh, "D2%[Gy]") == pytest.approx(_dose_at_volume_exact(phantom, dose, 0.02 * volume), rel=RTOL)
    assert _metric(dvh, "D50%[Gy]") == pytest.approx(_dose_at_volume_exact(phantom, dose, 0.5 * volume), rel=RTOL)
    exact_v = 100.0 * phantom.volume_at_dose_cc(dose, 48.0) / volume
    assert _metric(dvh, "V48Gy[%]") == pytest.approx(exact_v, abs=max(RTOL * exact_v, 0.05))


# ------------------------------------------------------------------------------ hot spot in a large organ

APEX_GY = 60.0
SLOPE = 2.0  # Gy/mm
FLOOR_GY = 5.0
X0, Y0 = 1.0, -3.0  # apex on a voxel centre (grid below)
HALF = 100.0  # box half-width, mm
Z_PLANES = np.arange(-28.5, 28.5 + 1e-9, 3.0)  # 20 planes, 3 mm apart: slab model height 60 mm
HEIGHT = 60.0


def _pyramid_grid() -> DoseGrid:
    x = X0 + 2.0 * np.arange(-56, 57)
    y = Y0 + 2.0 * np.arange(-56, 57)
    z = 0.3 + 2.0 * np.arange(-17, 18)
    xx = x[None, None, :]
    yy = y[None, :, None]
    dose = np.maximum(APEX_GY - SLOPE * (np.abs(xx - X0) + np.abs(yy - Y0)), FLOOR_GY) * np.ones((len(z), 1, 1))
    return DoseGrid(dose, x, y, z, "1.2.826.0.1.3680043.8.498.77")


def _pyramid_dose_at_volume(volume_cc: float) -> float:
    a = math.sqrt(volume_cc * 1000.0 / (2.0 * HEIGHT))  # 2 a^2 H = V
    return APEX_GY - SLOPE * a


@pytest.fixture(scope="module")
def pyramid():
    return _box_roi_from_phantoms(), _pyramid_grid()


def _box_roi_from_phantoms() -> Roi:
    """The box as a phantom-style ROI (the helper knows how Contours are built)."""
    from phantoms import Phantom, rectangle

    planes = [(float(z), [(rectangle(X0 - HALF, X0 + HALF, Y0 - HALF, Y0 + HALF), 1)]) for z in Z_PLANES]
    return Phantom("BigBox", tuple((z, tuple(p)) for z, p in planes), 3.0).roi


def test_box_is_sampled_coarsely(pyramid):
    roi, grid = pyramid
    sampling = sample_for_grid(roi, grid)
    assert sampling.step_mm >= 3.0  # the refinement, not the lattice, resolves the hot tail
    assert sampling.volume_cc == pytest.approx(2 * HALF * 2 * HALF * HEIGHT / 1000.0, rel=1e-9)


def test_hot_spot_d003cc_of_a_large_organ(pyramid):
    roi, grid = pyramid
    dvh = compute_dvh(roi, grid)
    assert dvh.max_gy <= APEX_GY + 1e-9  # max from the samples and surface points (apex inside)
    assert _metric(dvh, "D0.03cc[Gy]") == pytest.approx(_pyramid_dose_at_volume(0.03), rel=RTOL)
    assert _metric(dvh, "D0.3cc[Gy]") == pytest.approx(_pyramid_dose_at_volume(0.3), rel=RTOL)
    assert _metric(dvh, "D2%[Gy]") == pytest.approx(_pyramid_dose_at_volume(0.02 * dvh.volume_cc), rel=RTOL)
    assert dvh.covered_volume_cc == pytest.approx(dvh.volume_cc, rel=1e-9)  # refinement keeps the volume


def test_hot_spot_through_an_eqd2_transform(pyramid):
    roi, grid = pyramid
    n, ab = 5, 3.0

    def eqd2(d: np.ndarray) -> np.ndarray:
        return d * (d / n + ab) / (2.0 + ab)

    dvh = compute_dvh(roi, grid, transform=eqd2, dose_kind="EQD2")
    expected = float(eqd2(np.array(_pyramid_dose_at_volume(0.03))))
    assert _metric(dvh, "D0.03cc[Gy]") == pytest.approx(expected, rel=RTOL)
    assert expected <= dvh.max_gy <= float(eqd2(np.array(APEX_GY))) + 1e-9
