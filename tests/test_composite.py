"""Composite (voxel-wise summed) DVHs of several courses, against a phantom
whose answers are derived here by hand.

The phantom
-----------
An organ: a box x ∈ [-25, 25], y ∈ [-20, 20], z ∈ [0, 60] mm (contours every
2 mm, slabs tiling the height): 50·40·60 mm³ = 120 cc. Every dose depends on z
only, so the volume is uniformly distributed in z and a volume fraction is a
fraction of the height.

* Course A, 45 Gy / 25 fx, uniform over the slab z ≥ 30 mm: its grid (4, 4, 3 mm,
  origin offset 0.37 mm) holds 45 Gy at voxel planes z ≥ 30 mm and 0 below. The
  grid planes next to 30 mm are z_a = 27.37 and z_b = 30.37 mm; trilinear
  interpolation ramps the dose linearly between them. So along z:
  0 Gy on [0, z_a], 0 → 45 Gy on [z_a, z_b], 45 Gy on [z_b, 60].
* Course B, 24 Gy / 3 fx, a gradient over the whole organ: D_B(z) = 4 + z/3 Gy
  (4 → 24 Gy), on a grid of (2.5, 2.5, 2 mm) with origin offset -0.83 mm
  (trilinear interpolation reproduces a linear dose exactly).

Both grids share the frame of reference. With α/β = 3 Gy:

    EQD2_A(45 Gy/25 fx) = 45·(1 + 1.8/3)/(1 + 2/3) = 43.2 Gy
    EQD2_B(24 Gy/3 fx)  = 24·(1 + 8/3)/(1 + 2/3)   = 52.8 Gy

Composite EQD2 e(z) = EQD2_A(D_A(z), 25) + EQD2_B(D_B(z), 3) is increasing in z
(both doses are non-decreasing), so the structure's hottest x % is its top
x % of height: D_x% = e(60·(1 - x/100)), Max = e(60) = 96.0 Gy, Min = e(0),
and V(E) = (60 - z_E)/60 for the z_E where e(z_E) = E. The mean is the
height-weighted sum over the three pieces of the mean EQD2 of each course's
linear dose on that piece (see ``mean_eqd2_linear``).

Tolerances
----------
* Mean: 0.1 % relative. The engine takes each cell's EQD2 at its centre; the
  midpoint bias of a quadratic over a cell of height h is f''·h²/24. Steepest is
  A's ramp (15 Gy/mm, f'' = 2·15²/(25·(3 + 2)) = 3.6 Gy/mm²) over cells ≤ 1.2 mm
  high (split at all dose planes and slab faces): ≤ 0.22 Gy over 5 % of the
  height, ≈ 0.01 Gy of a 46 Gy mean (0.02 %).
* D_x%: 0.005 Gy (5 histogram bins of 1 mGy); V(E): 0.01 percentage points.
  Inside a cell the engine spreads volume uniformly over the cell's dose range
  while the EQD2 is slightly curved; the points tested lie outside A's ramp,
  where B's gradient is 1/3 Gy/mm and that curvature is tiny (observed ≤ 1.3 mGy
  and ≤ 0.002 points).
* Max, Min: 1e-9 relative: both are attained on the end-cap faces z = 0 and
  z = 60 mm, which the engine samples exactly.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from phantoms import LinearDose, Phantom, linear_dose_grid, rectangle
from plancheck.cli.main import main
from plancheck.dvh.metrics import evaluate_metric
from plancheck.errors import UsageError
from plancheck.model import Course, DoseGrid, DoseReference, FractionGroup, Plan, StructureSet
from plancheck.radiobiology import DoseConversion, DoseKind, eqd2_gy
from plancheck.radiobiology.course_dvh import CompositeDescription, composite_dvh, composite_dvhs, course_dvh

SAMPLE_DICOM = Path(__file__).parents[1] / "sample_dicom"
FRAME = "1.2.826.0.1.3680043.8.498.77"
ALPHA_BETA_GY = 3.0
HEIGHT_MM = 60.0
AREA_MM2 = 50.0 * 40.0

MEAN_RTOL = 1e-3
D_ABS_GY = 0.005
V_ABS_PCT = 0.01

ORGAN = Phantom(
    "Organ",
    tuple((float(2 * k + 1), ((rectangle(-25.0, 25.0, -20.0, 20.0), 1),)) for k in range(30)),
    2.0,
)


def _plan(label: str, fractions: int | None, rx_gy: float, *, groups: tuple[FractionGroup, ...] | None = None) -> Plan:
    return Plan(
        f"1.2.826.0.1.3680043.8.498.10.{label.encode().hex()}",
        label=label,
        fraction_groups=groups if groups is not None else (FractionGroup(1, fractions),),
        dose_references=(DoseReference(1, "VOLUME", "TARGET", target_prescription_dose_gy=rx_gy),),
    )


def _with(grid: DoseGrid, *, dose_gy: np.ndarray | None = None, z_keep: np.ndarray | None = None, frame: str | None = None) -> DoseGrid:
    dose = grid.dose_gy if dose_gy is None else dose_gy
    z = grid.z_mm
    if z_keep is not None:
        dose, z = dose[z_keep], z[z_keep]
    return DoseGrid(np.ascontiguousarray(dose), grid.x_mm, grid.y_mm, z, frame or grid.frame_of_reference_uid)


def grid_a() -> DoseGrid:
    """45 Gy at the voxel planes z ≥ 30 mm, 0 below (4 × 4 × 3 mm, offset 0.37 mm)."""
    base = linear_dose_grid(LinearDose(2, 45.0, 0.0), ORGAN.bounds_mm(), (4.0, 4.0, 3.0), offset_mm=0.37, frame=FRAME)
    dose = np.where(base.z_mm[:, None, None] >= 30.0, 45.0, 0.0) * np.ones(base.shape)
    return _with(base, dose_gy=dose)


def grid_b() -> DoseGrid:
    """D_B = 4 + z/3 Gy (2.5 × 2.5 × 2 mm, offset -0.83 mm)."""
    return linear_dose_grid(LinearDose(2, 4.0, 1.0 / 3.0), ORGAN.bounds_mm(), (2.5, 2.5, 2.0), offset_mm=-0.83, frame=FRAME)


def course(plan: Plan, grid: DoseGrid) -> Course:
    return Course(plan, StructureSet("1.2.826.0.1.3680043.8.498.20", FRAME, rois=(ORGAN.roi,)), grid)


@lru_cache(maxsize=1)
def courses() -> tuple[Course, Course]:
    return (
        course(_plan("A", 25, 45.0), grid_a()),
        course(_plan("B", 3, 24.0), grid_b()),
    )


@lru_cache(maxsize=4)
def composite(kind: str):
    conversion = DoseConversion.physical() if kind == "physical" else DoseConversion(DoseKind[kind], ALPHA_BETA_GY)
    return composite_dvh(ORGAN.roi, courses(), conversion)


def _value(metric: str, dvh) -> float:
    result = evaluate_metric(metric, dvh)
    assert result.value is not None, f"{metric} undefined: {result.reason}"
    return result.value


# ---------------------------------------------------------------- the hand derivation

def ramp_a_mm() -> tuple[float, float]:
    """The A grid planes on either side of 30 mm: z_a = 27.37, z_b = 30.37 mm."""
    z = grid_a().z_mm
    return float(z[z < 30.0].max()), float(z[z >= 30.0].min())


def dose_a_gy(z: float) -> float:
    za, zb = ramp_a_mm()
    return 0.0 if z <= za else 45.0 if z >= zb else 45.0 * (z - za) / (zb - za)


def dose_b_gy(z: float) -> float:
    return 4.0 + z / 3.0


def mean_eqd2_linear(d0_gy: float, d1_gy: float, fractions: int, ab_gy: float) -> float:
    """Mean EQD2 of a volume whose physical dose is uniformly spread over [d0, d1]:
    mean(D) = D̄, mean(D²) = D̄² + Δ²/12, so mean(EQD2) = (D̄ + (D̄² + Δ²/12)/(n·α/β)) / (1 + 2/(α/β))."""
    mean, delta = (d0_gy + d1_gy) / 2, d1_gy - d0_gy
    return (mean + (mean**2 + delta**2 / 12) / (fractions * ab_gy)) / (1 + 2 / ab_gy)


def composite_eqd2_at(z: float) -> float:
    return eqd2_gy(dose_a_gy(z), 25, ALPHA_BETA_GY) + eqd2_gy(dose_b_gy(z), 3, ALPHA_BETA_GY)


def dose_for_eqd2_gy(eqd2: float, fractions: int, ab_gy: float) -> float:
    """Solve D + D²/(n·α/β) = EQD2·(1 + 2/(α/β)) for D ≥ 0 (quadratic formula)."""
    bed = eqd2 * (1 + 2 / ab_gy)
    k = fractions * ab_gy
    return k / 2 * (math.sqrt(1 + 4 * bed / k) - 1)


def _pieces() -> list[tuple[float, float]]:
    za, zb = ramp_a_mm()
    return [(0.0, za), (za, zb), (zb, HEIGHT_MM)]


def expected_mean_eqd2_gy() -> float:
    total = 0.0
    for z0, z1 in _pieces():
        share = (z1 - z0) / HEIGHT_MM
        total += share * (
            mean_eqd2_linear(dose_a_gy(z0), dose_a_gy(z1), 25, ALPHA_BETA_GY)
            + mean_eqd2_linear(dose_b_gy(z0), dose_b_gy(z1), 3, ALPHA_BETA_GY)
        )
    return total


# ---------------------------------------------------------------- composite EQD2 / physical

def test_hand_derivation_anchor_values() -> None:
    """The numbers the docstring works out, so a slip in the derivation shows."""
    assert ramp_a_mm() == pytest.approx((27.37, 30.37), abs=1e-9)
    assert eqd2_gy(45.0, 25, 3.0) == pytest.approx(43.2, rel=1e-12)
    assert eqd2_gy(24.0, 3, 3.0) == pytest.approx(52.8, rel=1e-12)
    assert composite_eqd2_at(60.0) == pytest.approx(96.0, rel=1e-12)
    # bottom: only B, 4 Gy in 3 fx: 4·(1 + 1.3333/3)·0.6 = 3.4667 Gy
    assert composite_eqd2_at(0.0) == pytest.approx(4 * (1 + 4 / 9) * 0.6, rel=1e-12)
    # Mean ≈ 45.97 Gy. Converting each course's physical mean with one dose per
    # fraction instead — B: 14 Gy/3 fx → 21.47 Gy; A: 45·(60 − 28.87)/60 = 23.35 Gy/25 fx
    # → 18.37 Gy — gives 39.84 Gy, 13 % low.
    shortcut = eqd2_gy(14.0, 3, 3.0) + eqd2_gy(45.0 * (HEIGHT_MM - 28.87) / HEIGHT_MM, 25, 3.0)
    assert shortcut == pytest.approx(39.836, abs=1e-3)
    assert expected_mean_eqd2_gy() == pytest.approx(45.967, abs=1e-3)
    assert abs(expected_mean_eqd2_gy() - shortcut) / expected_mean_eqd2_gy() > 0.05


def test_composite_eqd2_matches_the_hand_derivation() -> None:
    dvh, _ = composite("EQD2")
    assert _value("Volume[cc]", dvh) == pytest.approx(AREA_MM2 * HEIGHT_MM / 1000.0, rel=1e-9)  # 120 cc
    assert dvh.dose_coverage_pct == pytest.approx(100.0)
    assert _value("Mean[Gy]", dvh) == pytest.approx(expected_mean_eqd2_gy(), rel=MEAN_RTOL)
    assert _value("Max[Gy]", dvh) == pytest.approx(96.0, rel=1e-9)
    assert _value("Min[Gy]", dvh) == pytest.approx(composite_eqd2_at(0.0), rel=1e-9)
    # D_x%: the top x % of the height. D2% at z = 58.8, D25% at z = 45 (both in A's
    # 45 Gy region), D80% at z = 12 mm (B only).
    for pct in (2.0, 25.0, 80.0):
        z = HEIGHT_MM * (1 - pct / 100)
        assert _value(f"D{pct:g}%[Gy]", dvh) == pytest.approx(composite_eqd2_at(z), abs=D_ABS_GY), pct
    assert composite_eqd2_at(45.0) == pytest.approx(43.2 + eqd2_gy(19.0, 3, 3.0), rel=1e-12)


def test_composite_eqd2_volume_at_dose() -> None:
    dvh, _ = composite("EQD2")
    za, zb = ramp_a_mm()
    # V80Gy: above z_b, 43.2 + EQD2_B = 80 → EQD2_B = 36.8 Gy → D_B = 19.42 Gy → z = 3·(D_B − 4).
    z80 = 3 * (dose_for_eqd2_gy(80.0 - 43.2, 3, ALPHA_BETA_GY) - 4.0)
    assert zb < z80 < HEIGHT_MM
    assert _value("V80Gy[%]", dvh) == pytest.approx(100 * (HEIGHT_MM - z80) / HEIGHT_MM, abs=V_ABS_PCT)
    # V10Gy: below z_a only B: EQD2_B = 10 Gy → D_B = 8.69 Gy → z = 14.08 mm.
    z10 = 3 * (dose_for_eqd2_gy(10.0, 3, ALPHA_BETA_GY) - 4.0)
    assert 0 < z10 < za
    assert _value("V10Gy[%]", dvh) == pytest.approx(100 * (HEIGHT_MM - z10) / HEIGHT_MM, abs=V_ABS_PCT)
    assert _value("V10Gy[cc]", dvh) == pytest.approx(AREA_MM2 * (HEIGHT_MM - z10) / 1000.0, abs=V_ABS_PCT / 100 * 120.0)


def test_composite_physical_is_the_plain_sum() -> None:
    """Physical: mean = mean D_B (14 Gy) + A's mean (45 Gy over [z_b, 60], 22.5 Gy
    mean over the ramp); Max = 45 + 24 = 69 Gy; Min = D_B(0) = 4 Gy; D25% at
    z = 45: 45 + 19 = 64 Gy. Mean to 1e-4: physical dose is linear in each cell,
    so the midpoint is exact and only rounding remains."""
    dvh, description = composite("physical")
    za, zb = ramp_a_mm()
    mean_a = ((zb - za) * 22.5 + (HEIGHT_MM - zb) * 45.0) / HEIGHT_MM
    assert _value("Mean[Gy]", dvh) == pytest.approx(14.0 + mean_a, rel=1e-4)
    assert _value("Max[Gy]", dvh) == pytest.approx(69.0, rel=1e-9)
    assert _value("Min[Gy]", dvh) == pytest.approx(4.0, rel=1e-9)
    assert _value("D25%[Gy]", dvh) == pytest.approx(64.0, abs=D_ABS_GY)
    # V60Gy: above z_b, 45 + 4 + z/3 = 60 at z = 33 mm → 27/60 = 45 %.
    assert zb < 33.0
    assert _value("V60Gy[%]", dvh) == pytest.approx(45.0, abs=V_ABS_PCT)
    assert dvh.dose_kind == "physical"
    assert description.dose_kind == "physical"


def test_composites_computed_together_are_the_ones_computed_alone() -> None:
    """The physical and EQD2 composites computed in one call (each course's dose interpolated
    once, shared) are exactly the DVHs of one call each: same bins, same volumes, same
    min/max/mean, same notes. Exact equality: the shared path runs the same arithmetic."""
    kinds = [DoseConversion.physical(), DoseConversion(DoseKind.EQD2, ALPHA_BETA_GY), DoseConversion(DoseKind.BED, ALPHA_BETA_GY)]
    together = composite_dvhs(ORGAN.roi, courses(), kinds)
    for conversion, (dvh, description) in zip(kinds, together, strict=True):
        alone, alone_description = composite_dvh(ORGAN.roi, courses(), conversion)
        assert description == alone_description
        assert (dvh.dose_kind, dvh.bin_width_gy, dvh.volume_cc, dvh.notes) == (alone.dose_kind, alone.bin_width_gy, alone.volume_cc, alone.notes)
        assert (dvh.min_gy, dvh.max_gy, dvh.mean_gy) == (alone.min_gy, alone.max_gy, alone.mean_gy)
        np.testing.assert_array_equal(dvh.differential_cc, alone.differential_cc)
    # and they differ from each other (the shared interpolation is copied, not converted in place twice)
    assert together[0][0].max_gy == pytest.approx(69.0, rel=1e-9)
    assert together[1][0].max_gy == pytest.approx(96.0, rel=1e-9)


def test_composite_description_names_courses_and_fractions() -> None:
    dvh, description = composite("EQD2")
    assert isinstance(description, CompositeDescription)
    assert description.course_labels == ("A", "B")
    assert description.fractions == (25, 3)
    assert description.dose_kind == "EQD2(α/β=3 Gy)"
    text = description.describe()
    assert "A (25 fx)" in text and "B (3 fx)" in text and "EQD2(α/β=3 Gy)" in text
    assert dvh.dose_kind == "EQD2(α/β=3 Gy)"
    assert text in dvh.notes


def test_composite_of_one_course_is_that_course() -> None:
    a, _ = courses()
    conversion = DoseConversion.eqd2(ALPHA_BETA_GY)
    single = course_dvh(ORGAN.roi, a, conversion)
    summed, _ = composite_dvh(ORGAN.roi, [a], conversion)
    for metric in ("Volume[cc]", "Mean[Gy]", "Max[Gy]", "Min[Gy]", "D50%[Gy]", "V40Gy[%]"):
        assert _value(metric, summed) == pytest.approx(_value(metric, single), rel=1e-6, abs=1e-6), metric


def test_composite_of_a_course_with_itself_doubles_the_eqd2() -> None:
    """EQD2 adds over courses: the same course twice gives twice its EQD2 everywhere."""
    _, b = courses()
    conversion = DoseConversion.eqd2(ALPHA_BETA_GY)
    once = course_dvh(ORGAN.roi, b, conversion)
    twice, _ = composite_dvh(ORGAN.roi, [b, b], conversion)
    for metric in ("Mean[Gy]", "Max[Gy]", "Min[Gy]"):
        assert _value(metric, twice) == pytest.approx(2 * _value(metric, once), rel=1e-6), metric


# Regression: composite_dvh once sampled a single-plane ROI with a 1 mm slab (course_dvh: the grid's z spacing).
def test_composite_of_one_course_is_that_course_for_a_single_plane_roi() -> None:
    flat = Phantom("Flat", ((5.0, ((rectangle(-20.0, 20.0, -15.0, 15.0), 1),)),), 2.0)
    grid = linear_dose_grid(LinearDose(0, 20.0, 0.5), flat.bounds_mm(), (2.5, 2.5, 3.0), frame=FRAME)
    c = course(_plan("S", 5, 30.0), grid)
    conversion = DoseConversion.eqd2(ALPHA_BETA_GY)
    single = course_dvh(flat.roi, c, conversion)
    summed, _ = composite_dvh(flat.roi, [c], conversion)
    assert single.volume_cc == pytest.approx(40 * 30 * 3.0 / 1000.0)  # a 3 mm slab: 3.6 cc
    assert summed.volume_cc == pytest.approx(single.volume_cc, rel=1e-9)


# ---------------------------------------------------------------- undefined, errors

def test_a_course_not_covering_part_of_the_structure_makes_the_composite_undefined() -> None:
    """B's grid cut at z = 45.17 mm covers the organ only up to 46.17 mm: the top
    13.8 mm (23 %) has an unknown B dose, so the composite is unknown there —
    never a partial sum with B counted as 0 Gy."""
    a, _ = courses()
    full_b = grid_b()
    cut = _with(full_b, z_keep=full_b.z_mm <= 45.2)
    b_cut = course(_plan("B", 3, 24.0), cut)
    edge_mm = float(cut.z_mm[-1]) + 1.0  # half a 2 mm spacing beyond the last plane
    assert edge_mm == pytest.approx(46.17)
    for conversion in (DoseConversion.eqd2(ALPHA_BETA_GY), DoseConversion.physical()):
        dvh, _ = composite_dvh(ORGAN.roi, [a, b_cut], conversion)
        # The engine classifies whole sample cells; cells are split at dose planes,
        # not at a grid's coverage edge, so the uncovered volume is right to one cell (≤ 2 mm).
        expected_uncovered_cc = AREA_MM2 * (HEIGHT_MM - edge_mm) / 1000.0
        assert dvh.uncovered_volume_cc == pytest.approx(expected_uncovered_cc, abs=AREA_MM2 * 2.0 / 1000.0)
        for metric in ("Mean[Gy]", "Max[Gy]", "D95%[Gy]", "D2%[Gy]", "V20Gy[%]"):
            result = evaluate_metric(metric, dvh)
            assert result.value is None, (metric, result)
            assert result.reason and "inside the dose grid" in result.reason
        assert evaluate_metric("Max[Gy]", dvh).upper == math.inf
        assert evaluate_metric("Volume[cc]", dvh).value == pytest.approx(120.0)
    # course A alone covers the organ: its metrics stay defined
    assert evaluate_metric("Mean[Gy]", course_dvh(ORGAN.roi, a, DoseConversion.eqd2(ALPHA_BETA_GY))).value is not None


def test_courses_in_different_frames_of_reference_cannot_be_summed() -> None:
    a, _ = courses()
    other = course(_plan("B", 3, 24.0), _with(grid_b(), frame="1.2.826.0.1.3680043.8.498.99"))
    with pytest.raises(UsageError, match="different frames of reference"):
        composite_dvh(ORGAN.roi, [a, other], DoseConversion.eqd2(ALPHA_BETA_GY))


def test_no_courses_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="at least one course"):
        composite_dvh(ORGAN.roi, [], DoseConversion.eqd2(ALPHA_BETA_GY))


@pytest.mark.parametrize(
    "groups",
    [(), (FractionGroup(1, None),), (FractionGroup(1, 0),)],
    ids=["no-fraction-group", "fractions-not-stated", "zero-fractions"],
)
def test_plan_without_fractions_cannot_be_converted(groups: tuple[FractionGroup, ...]) -> None:
    a, _ = courses()
    unknown = course(_plan("B?", None, 24.0, groups=groups), grid_b())
    with pytest.raises(UsageError, match=r"plan 'B\?' states no number of fractions planned; EQD2/BED cannot be computed"):
        composite_dvh(ORGAN.roi, [a, unknown], DoseConversion.eqd2(ALPHA_BETA_GY))
    with pytest.raises(UsageError, match=r"plan 'B\?' states no number of fractions planned"):
        course_dvh(ORGAN.roi, unknown, DoseConversion.bed(ALPHA_BETA_GY))
    # a physical sum needs no fractions
    dvh, description = composite_dvh(ORGAN.roi, [a, unknown], DoseConversion.physical())
    assert evaluate_metric("Max[Gy]", dvh).value == pytest.approx(69.0, rel=1e-9)
    assert description.fractions == (25, unknown.plan.fractions_planned)


def test_plan_of_several_fraction_groups_cannot_be_converted() -> None:
    # 25 fractions and a 3-fraction boost in one plan: its dose is their sum, and how much of a
    # point's dose each group gives is not known. Dividing by 28 fractions would give a point of
    # 24 Gy that all came from the boost (8 Gy/fx, EQD2₃ = 24·(8 + 3)/5 = 52.8 Gy) an EQD2₃ of
    # 24·(0.857 + 3)/5 = 18.5 Gy; plancheck refuses to convert instead.
    a, _ = courses()
    two = course(_plan("B2", None, 24.0, groups=(FractionGroup(1, 25), FractionGroup(2, 3))), grid_b())
    assert two.plan.fractions_planned == 28 and two.plan.dose_fractions is None
    with pytest.raises(UsageError, match=r"plan 'B2' has 2 fraction groups \(25 \+ 3 fx\) whose doses are summed: "
                                         r"the dose per fraction of each point is not known; EQD2/BED cannot be computed"):
        composite_dvh(ORGAN.roi, [a, two], DoseConversion.eqd2(ALPHA_BETA_GY))
    with pytest.raises(UsageError, match=r"plan 'B2' has 2 fraction groups"):
        course_dvh(ORGAN.roi, two, DoseConversion.bed(ALPHA_BETA_GY))
    # the physical sum needs no fractions
    dvh, _ = composite_dvh(ORGAN.roi, [a, two], DoseConversion.physical())
    assert evaluate_metric("Max[Gy]", dvh).value == pytest.approx(69.0, rel=1e-9)


def test_a_fraction_group_of_setup_beams_only_gives_no_dose() -> None:
    # group 1: the treatment beam in 25 fractions; group 2: a setup beam only. The dose is group 1's:
    # 25 fractions (the total planned, 26, would lower every point's dose per fraction).
    from dataclasses import replace
    from plancheck.model import Beam

    groups = (FractionGroup(1, 25, (1,)), FractionGroup(2, 1, (2,)))
    beams = (Beam(1, "ARC1"), Beam(2, "CBCT", treatment_delivery_type="SETUP"))
    p = replace(_plan("S", None, 50.0, groups=groups), beams=beams)
    assert p.fractions_planned == 26 and p.dose_fractions == 25 and p.fractions_unknown_reason == ""
    # both groups with a treatment beam: not known
    both = replace(p, beams=(Beam(1, "ARC1"), Beam(2, "ARC2")))
    assert both.dose_fractions is None and "2 fraction groups (25 + 1 fx)" in both.fractions_unknown_reason


# ---------------------------------------------------------------- end to end on sample_dicom

def _dvh_json(capsys, *extra: str) -> dict:
    code = main(["dvh", str(SAMPLE_DICOM), "--dose-kind", "eqd2", *extra, "--structure", "SpinalCord", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_cli_composite_eqd2_on_sample_dicom(capsys) -> None:
    composite_doc = _dvh_json(capsys, "--composite")
    per_course_doc = _dvh_json(capsys)

    (plan,) = composite_doc["plans"]
    assert plan["label"] == "composite"
    assert plan["composite_of"] == ["C1_Eso", "C2_LungMet", "C3_VertMet"]
    for text in ("C1_Eso (30 fx)", "C2_LungMet (5 fx)", "C3_VertMet (3 fx)"):
        assert text in plan["dose_summary"]
    (cord,) = plan["structures"]
    assert cord["name"] == "SpinalCord"
    assert cord["dose_kind"] == "EQD2(α/β=2 Gy)"
    assert cord["alpha_beta_gy"] == 2.0
    assert "table entry 'SpinalCord'" in cord["alpha_beta_source"]
    assert cord["dose_coverage_pct"] == pytest.approx(100.0)

    singles = {p["label"]: p["structures"][0] for p in per_course_doc["plans"]}
    assert set(singles) == {"C1_Eso", "C2_LungMet", "C3_VertMet"}
    for label, s in singles.items():
        assert s["dose_kind"] == "EQD2(α/β=2 Gy)", label
        assert cord["metrics"]["Max[Gy]"] >= s["metrics"]["Max[Gy]"], label
    # EQD2 adds voxel by voxel, so the composite mean is the sum of the course means
    # (to the sampling difference between the composite and per-course lattices: 0.5 %).
    assert cord["metrics"]["Mean[Gy]"] == pytest.approx(sum(s["metrics"]["Mean[Gy]"] for s in singles.values()), rel=5e-3)
    # and the composite max cannot exceed the sum of the course maxima
    assert cord["metrics"]["Max[Gy]"] <= sum(s["metrics"]["Max[Gy]"] for s in singles.values()) * (1 + 1e-6)
