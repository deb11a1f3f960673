"""Voxel-wise EQD2/BED DVHs against phantoms whose answers are derived here.

Why voxel-wise: the LQ dose per fraction is each voxel's own d = D/n, and
EQD2 = D·(1 + d/(α/β)) / (1 + 2/(α/β)) is *quadratic* in D. The mean of a
quadratic is not the quadratic of the mean, so converting a structure's physical
mean (or a whole DVH) with one dose per fraction is wrong wherever the dose is
not uniform (Bentzen et al., Radiother Oncol 2012;105:266-268).

Closed form used below. For a dose linear in one coordinate across a prism,
D(z) = D̄ + Δ·(z - z̄)/h over a height h (range Δ), the volume is uniformly
distributed in D over [D̄ - Δ/2, D̄ + Δ/2], so

    mean(D²)   = D̄² + Δ²/12
    mean(BED)  = D̄ + (D̄² + Δ²/12) / (n·α/β)
    mean(EQD2) = mean(BED) / (1 + 2/(α/β))

while the uniform-dose-per-fraction shortcut gives EQD2(D̄, n) — smaller by
Δ²/(12·n·(α/β + 2)).

Tolerances
----------
* Mean on a linear z-gradient: 0.1 % relative. The only approximation is that
  each sample cell contributes the EQD2 at its centre; for a quadratic f over a
  cell of height h the midpoint bias is f''·h²/24. With f'' = 2g²/(n·(α/β + 2))
  (g = 1.5 Gy/mm, n = 30, α/β = 3) and h ≤ 2.5 mm (cells are split at the dose
  planes) that is ≤ 0.008 Gy, < 0.02 % of 48.7 Gy.
* Max of a monotone transform: exact up to floating point (1e-9 relative),
  since max(f(d_i)) = f(max d_i) for increasing f over the same samples.
* Uniform dose: one histogram bin (``dvh.bin_width_gy``, 1 mGy unless the
  maximum needs more than 400 000 bins).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phantoms import LinearDose, Phantom, cylinder_z, linear_dose_grid, rectangle
from plancheck.dvh.engine import compute_dvh, sample_for_grid
from plancheck.dvh.metrics import evaluate_metric
from plancheck.model import Course, DoseGrid, DoseReference, FractionGroup, Plan, StructureSet
from plancheck.radiobiology import DoseConversion, DoseKind, bed_gy, eqd2_gy
from plancheck.radiobiology.course_dvh import course_dvh

FRAME = "1.2.826.0.1.3680043.8.498.77"


def _value(metric: str, dvh) -> float:
    result = evaluate_metric(metric, dvh)
    assert result.value is not None, f"{metric} undefined: {result.reason}"
    return result.value


def box_z(x_half_mm: float, y_half_mm: float, z0_mm: float, z1_mm: float, spacing_mm: float) -> Phantom:
    """A box whose slabs tile [z0, z1] exactly (planes at the slab centres)."""
    rect = rectangle(-x_half_mm, x_half_mm, -y_half_mm, y_half_mm)
    n = int(round((z1_mm - z0_mm) / spacing_mm))
    planes = tuple((float(z0_mm + spacing_mm * (k + 0.5)), ((rect, 1),)) for k in range(n))
    return Phantom(f"box_{2 * x_half_mm:g}x{2 * y_half_mm:g}x{z1_mm - z0_mm:g}", planes, spacing_mm)


def mean_lq_linear_dose(d_lo_gy: float, d_hi_gy: float, fractions: int, alpha_beta_gy: float, kind: DoseKind) -> float:
    """Mean BED or EQD2 over a volume uniformly distributed in physical dose on [d_lo, d_hi]."""
    mean = (d_lo_gy + d_hi_gy) / 2
    delta = d_hi_gy - d_lo_gy
    bed = mean + (mean**2 + delta**2 / 12) / (fractions * alpha_beta_gy)
    return bed if kind is DoseKind.BED else bed / (1 + 2 / alpha_beta_gy)


def _course(grid: DoseGrid, fractions: int | None, roi, label: str = "T") -> Course:
    plan = Plan(
        "1.2.826.0.1.3680043.8.498.1",
        label=label,
        fraction_groups=(FractionGroup(1, fractions),),
        dose_references=(DoseReference(1, "VOLUME", "TARGET", target_prescription_dose_gy=60.0),),
    )
    return Course(plan, StructureSet("1.2.826.0.1.3680043.8.498.2", grid.frame_of_reference_uid, rois=(roi,)), grid)


# ----------------------------------------------------------------- gradient: voxel-wise vs shortcut

# Box 40 x 30 x 40 mm (48 cc), z in [0, 40] mm, in D(z) = 20 + 1.5·z Gy: 20 → 80 Gy, 30 fractions.
GRADIENT_BOX = box_z(20.0, 15.0, 0.0, 40.0, 2.0)
GRADIENT_DOSE = LinearDose(axis=2, d0_gy=20.0, gradient_gy_per_mm=1.5)
GRADIENT_FRACTIONS = 30
MEAN_RTOL = 1e-3


@pytest.mark.parametrize("kind", [DoseKind.EQD2, DoseKind.BED])
def test_mean_of_a_gradient_is_the_mean_of_voxel_values_not_the_converted_physical_mean(kind: DoseKind) -> None:
    ab = 3.0
    n = GRADIENT_FRACTIONS
    grid = linear_dose_grid(GRADIENT_DOSE, GRADIENT_BOX.bounds_mm(), 2.5)
    course = _course(grid, n, GRADIENT_BOX.roi)
    conversion = DoseConversion(kind, ab)

    dvh = course_dvh(GRADIENT_BOX.roi, course, conversion)

    # Physical dose: 20 → 80 Gy linearly over the height, so D̄ = 50 Gy, Δ = 60 Gy.
    # EQD2: mean BED = 50 + (2500 + 300)/90 = 81.111 Gy; EQD2 = 81.111·3/5 = 48.667 Gy.
    # Shortcut: EQD2(50 Gy, 30 fx) = 50·(1 + 1.6667/3)·3/5 = 46.667 Gy (4.1 % low).
    voxel_wise = mean_lq_linear_dose(20.0, 80.0, n, ab, kind)
    shortcut = float((eqd2_gy if kind is DoseKind.EQD2 else bed_gy)(50.0, n, ab))
    if kind is DoseKind.EQD2:
        assert voxel_wise == pytest.approx(48.0 + 2.0 / 3.0, rel=1e-12)
        assert shortcut == pytest.approx(46.0 + 2.0 / 3.0, rel=1e-12)
    assert abs(voxel_wise - shortcut) / voxel_wise > 5 * MEAN_RTOL  # the phantom separates them

    measured = _value("Mean[Gy]", dvh)
    assert measured == pytest.approx(voxel_wise, rel=MEAN_RTOL)
    assert abs(measured - shortcut) / voxel_wise > MEAN_RTOL
    assert dvh.dose_kind == conversion.label


def test_gradient_dvh_quantiles_are_voxel_doses_converted() -> None:
    """D50% and Min/Max of the EQD2 DVH are the EQD2 of the physical quantiles
    (an increasing transform keeps the order of voxels): D50% at z = 20 mm where
    D = 50 Gy; Min at z = 0 (20 Gy), Max at z = 40 mm (80 Gy)."""
    ab, n = 3.0, GRADIENT_FRACTIONS
    grid = linear_dose_grid(GRADIENT_DOSE, GRADIENT_BOX.bounds_mm(), 2.5)
    conversion = DoseConversion.eqd2(ab)
    dvh = compute_dvh(GRADIENT_BOX.roi, grid, transform=lambda d: conversion.apply(d, n), dose_kind=conversion.label)
    assert _value("Min[Gy]", dvh) == pytest.approx(eqd2_gy(20.0, n, ab), rel=1e-9)
    assert _value("Max[Gy]", dvh) == pytest.approx(eqd2_gy(80.0, n, ab), rel=1e-9)
    # D50%: bins are 1 mGy wide; the spread model places volume uniformly in each bin.
    assert _value("D50%[Gy]", dvh) == pytest.approx(eqd2_gy(50.0, n, ab), abs=2 * dvh.bin_width_gy)


# ----------------------------------------------------------------- Max of a cord-like cylinder

def test_cord_max_eqd2_is_eqd2_of_physical_max() -> None:
    """Cylinder r = 5 mm, 40 mm long (a spinal cord) beside an SBRT target: dose
    rising 1.2 Gy/mm along x, 5 fractions, α/β = 2 Gy. The physical maximum is at
    the contour vertex of largest x (x = 0.6 + 5 mm): 20 + 1.2·5.6 = 26.72 Gy;
    EQD2₂ = 26.72·(1 + 5.344/2)/2 = 49.058 Gy."""
    cord = cylinder_z(5.0, 40.0, 2.5)
    dose = LinearDose(axis=0, d0_gy=20.0, gradient_gy_per_mm=1.2)
    grid = linear_dose_grid(dose, cord.bounds_mm(), (2.5, 2.5, 3.0))
    n, ab = 5, 2.0
    conversion = DoseConversion.eqd2(ab)
    sampling = sample_for_grid(cord.roi, grid)

    physical = compute_dvh(cord.roi, grid, sampling=sampling)
    eqd2 = compute_dvh(cord.roi, grid, transform=lambda d: conversion.apply(d, n), dose_kind=conversion.label, sampling=sampling)

    assert cord.max_gy(dose) == pytest.approx(26.72, rel=1e-12)
    assert _value("Max[Gy]", physical) == pytest.approx(cord.max_gy(dose), rel=1e-9)
    assert _value("Max[Gy]", eqd2) == pytest.approx(eqd2_gy(_value("Max[Gy]", physical), n, ab), rel=1e-9)
    assert _value("Max[Gy]", eqd2) == pytest.approx(eqd2_gy(26.72, n, ab), rel=1e-9)
    assert eqd2_gy(26.72, n, ab) == pytest.approx(49.05792, rel=1e-9)


# ----------------------------------------------------------------- uniform dose: every metric is the scalar

_UNIFORM_ROI = cylinder_z(8.0, 20.0, 2.5, centre_mm=(0.3, -0.7, 0.0))


@lru_cache(maxsize=1)
def _uniform_setup():
    # The lattice does not matter for a uniform dose: a few thousand samples suffice.
    grid = linear_dose_grid(LinearDose(axis=0, d0_gy=1.0, gradient_gy_per_mm=0.0), _UNIFORM_ROI.bounds_mm(), 3.0)
    sampling = sample_for_grid(_UNIFORM_ROI.roi, grid, target_samples=5_000)
    return grid, sampling


def _uniform_dvh(dose_gy: float, conversion: DoseConversion, fractions: int):
    grid, sampling = _uniform_setup()
    uniform = DoseGrid(np.full(grid.shape, dose_gy), grid.x_mm, grid.y_mm, grid.z_mm, FRAME)
    return compute_dvh(
        _UNIFORM_ROI.roi, uniform, transform=lambda d: conversion.apply(d, fractions), dose_kind=conversion.label, sampling=sampling
    )


UNIFORM_METRICS = ("Mean[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "Max[Gy]", "Min[Gy]", "D0.03cc[Gy]")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dose_gy=st.floats(0.1, 120.0),
    fractions=st.integers(1, 40),
    alpha_beta_gy=st.floats(0.5, 20.0),
    kind=st.sampled_from([DoseKind.EQD2, DoseKind.BED]),
)
def test_uniform_dose_every_metric_equals_the_scalar(dose_gy: float, fractions: int, alpha_beta_gy: float, kind: DoseKind) -> None:
    conversion = DoseConversion(kind, alpha_beta_gy)
    dvh = _uniform_dvh(dose_gy, conversion, fractions)
    scalar = float((eqd2_gy if kind is DoseKind.EQD2 else bed_gy)(dose_gy, fractions, alpha_beta_gy))
    for metric in UNIFORM_METRICS:
        assert _value(metric, dvh) == pytest.approx(scalar, abs=dvh.bin_width_gy), metric
    # the whole structure receives the scalar dose, none receives one bin more
    assert _value(f"V{max(scalar - 2 * dvh.bin_width_gy, 0.001):.6f}Gy[%]", dvh) == pytest.approx(100.0, abs=1e-9)
    assert _value(f"V{scalar + 2 * dvh.bin_width_gy:.6f}Gy[%]", dvh) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------- 2 Gy per fraction is a fixed point

@settings(max_examples=25, deadline=None)
@given(fractions=st.integers(1, 40), alpha_beta_gy=st.floats(0.5, 20.0))
def test_uniform_two_gy_per_fraction_eqd2_dvh_is_the_physical_dvh(fractions: int, alpha_beta_gy: float) -> None:
    """Uniform 2n Gy in n fractions: EQD2 = physical dose for any α/β."""
    dose = 2.0 * fractions
    physical = _uniform_dvh(dose, DoseConversion.physical(), fractions)
    eqd2 = _uniform_dvh(dose, DoseConversion.eqd2(alpha_beta_gy), fractions)
    for metric in UNIFORM_METRICS:
        assert _value(metric, eqd2) == pytest.approx(_value(metric, physical), rel=1e-9, abs=1e-9), metric
    # The cumulative curves agree everywhere except within floating-point noise of
    # the step at 2n Gy (EQD2(2n) computes as 2n·(1 + 2/αβ)/(1 + 2/αβ), not always bit-exact).
    doses = np.linspace(0.0, 2.5 * dose, 251)
    doses = doses[np.abs(doses - dose) > 1e-6]
    v_phys = [physical.covered_volume_at_dose_cc(d) for d in doses]
    v_eqd2 = [eqd2.covered_volume_at_dose_cc(d) for d in doses]
    np.testing.assert_allclose(v_eqd2, v_phys, rtol=1e-12, atol=0)


def test_sixty_gy_in_thirty_fractions_eqd2_dvh_equals_the_physical_dvh() -> None:
    """The brief's case: uniform 60 Gy / 30 fx on the gradient box's geometry, α/β 3 and 10."""
    grid = linear_dose_grid(LinearDose(axis=2, d0_gy=60.0, gradient_gy_per_mm=0.0), GRADIENT_BOX.bounds_mm(), 2.5)
    sampling = sample_for_grid(GRADIENT_BOX.roi, grid)
    physical = compute_dvh(GRADIENT_BOX.roi, grid, sampling=sampling)
    for ab in (3.0, 10.0):
        conversion = DoseConversion.eqd2(ab)
        eqd2 = compute_dvh(GRADIENT_BOX.roi, grid, transform=lambda d, c=conversion: c.apply(d, 30), sampling=sampling)
        for metric in UNIFORM_METRICS + ("V59.9Gy[%]", "V60.1Gy[%]", "Volume[cc]"):
            assert _value(metric, eqd2) == pytest.approx(_value(metric, physical), rel=1e-9, abs=1e-9), metric
        assert _value("Mean[Gy]", eqd2) == pytest.approx(60.0, rel=1e-9)


@lru_cache(maxsize=1)
def _gradient_setup():
    grid = linear_dose_grid(GRADIENT_DOSE, GRADIENT_BOX.bounds_mm(), 2.5)
    return grid, sample_for_grid(GRADIENT_BOX.roi, grid, target_samples=50_000)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alpha_beta_gy=st.floats(0.5, 20.0))
def test_the_two_gy_per_fraction_isodose_keeps_its_volume(alpha_beta_gy: float) -> None:
    """In the 20 → 80 Gy gradient (30 fx) the 60 Gy isodose receives 2 Gy per
    fraction, so EQD2(60 Gy) = 60 Gy and, EQD2 being increasing in dose, the
    volume receiving ≥ 60 Gy EQD2 is the volume receiving ≥ 60 Gy physical:
    z ≥ 26.667 mm of [0, 40] mm, i.e. 33.33 % — for every α/β. Voxels below
    2 Gy/fx lose dose and voxels above gain, so every other V(x) changes.

    Tolerance 0.01 percentage points: the histogram spreads each cell's volume
    uniformly over its dose range, which for the (non-linear) EQD2 inside a cell
    straddling the isodose is off by a fraction of that cell (< 2.5 mm of 40 mm
    height, times the curvature over one cell)."""
    grid, sampling = _gradient_setup()
    conversion = DoseConversion.eqd2(alpha_beta_gy)
    eqd2 = compute_dvh(GRADIENT_BOX.roi, grid, transform=lambda d: conversion.apply(d, 30), sampling=sampling)
    physical = compute_dvh(GRADIENT_BOX.roi, grid, sampling=sampling)
    expected_pct = 100.0 * (40.0 - 40.0 / 1.5) / 40.0
    assert _value("V60Gy[%]", physical) == pytest.approx(expected_pct, abs=0.01)
    assert _value("V60Gy[%]", eqd2) == pytest.approx(expected_pct, abs=0.01)
    # away from the fixed point the volumes differ: V70Gy EQD2 > V70Gy physical (d > 2 Gy there)
    assert _value("V70Gy[%]", eqd2) > _value("V70Gy[%]", physical) + 0.1


@pytest.mark.parametrize(
    ("conversion", "dose_gy", "fractions", "slope"),
    [
        # EQD2, α/β 3 Gy, 25 Gy in 5 fx: (1 + 2·25/(5·3)) / (1 + 2/3) = 2.6 (by hand)
        (DoseConversion.eqd2(3.0), 25.0, 5, 2.6),
        # BED, α/β 10 Gy, 60 Gy in 30 fx: 1 + 2·60/(30·10) = 1.4
        (DoseConversion.bed(10.0), 60.0, 30, 1.4),
        (DoseConversion.physical(), 12.0, 3, 1.0),
    ],
)
def test_conversion_derivative_is_the_hand_computed_slope(conversion, dose_gy, fractions, slope) -> None:
    """The analytic slope used for the in-cell spread of EQD2/BED DVHs: hand values, and a
    central difference of the conversion itself agrees (the conversions are quadratic)."""
    assert conversion.derivative(np.array([dose_gy]), fractions)[0] == pytest.approx(slope, rel=1e-12)
    h = 1e-3
    central = (conversion.apply(np.array([dose_gy + h]), fractions) - conversion.apply(np.array([dose_gy - h]), fractions)) / (2 * h)
    assert central[0] == pytest.approx(slope, rel=1e-8)
