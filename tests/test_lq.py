"""Tests of the linear-quadratic formulas, dose conversion and fractionation summary.

Expected values are derived by hand in the comments (exact arithmetic), so the
tolerance is floating-point only: 1e-9 relative unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import plancheck.radiobiology as rb
from plancheck.errors import RadiobiologyError
from plancheck.radiobiology import (
    SQUAMOUS_CELL_CARCINOMA_REPOPULATION,
    DoseConversion,
    DoseKind,
    FractionationRegime,
    RepopulationParameters,
    bed_gy,
    bed_to_eqd2_gy,
    dose_per_fraction_for_bed_gy,
    eqd2_gy,
    eqd2_to_bed_gy,
    eqdx_gy,
    repopulation_bed_gy,
    summarize_fractionation,
    total_dose_for_bed_gy,
    total_dose_for_eqd2_gy,
)

REL = 1e-9  # exact arithmetic: only floating-point rounding separates result and expectation


def close(expected: float) -> object:
    return pytest.approx(expected, rel=REL, abs=1e-12)


# --------------------------------------------------------------------------- hand values


@pytest.mark.parametrize(
    ("dose_gy", "n", "ab_gy", "bed", "eqd2"),
    [
        # 60 Gy/30 fx, d = 2: BED = 60·(1 + 2/10) = 72; EQD2 = 72/1.2 = 60
        (60.0, 30, 10.0, 72.0, 60.0),
        # 50 Gy/5 fx, d = 10: BED = 50·(1 + 10/10) = 100; EQD2 = 100/1.2 = 83.333...
        (50.0, 5, 10.0, 100.0, 250.0 / 3.0),
        # 54 Gy/3 fx, d = 18: BED = 54·(1 + 18/10) = 54·2.8 = 151.2; EQD2 = 151.2/1.2 = 126
        (54.0, 3, 10.0, 151.2, 126.0),
        # 30 Gy/3 fx at α/β 2, d = 10: BED = 30·(1 + 10/2) = 180; EQD2 = 180/(1 + 2/2) = 90
        (30.0, 3, 2.0, 180.0, 90.0),
        # 50.4 Gy/28 fx, d = 1.8: BED = 50.4·1.18 = 59.472; EQD2 = 59.472/1.2 = 49.56
        (50.4, 28, 10.0, 59.472, 49.56),
    ],
)
def test_hand_computed_bed_and_eqd2(dose_gy, n, ab_gy, bed, eqd2):
    assert bed_gy(dose_gy, n, ab_gy) == close(bed)
    assert eqd2_gy(dose_gy, n, ab_gy) == close(eqd2)
    assert bed_to_eqd2_gy(bed, ab_gy) == close(eqd2)
    assert eqd2_to_bed_gy(eqd2, ab_gy) == close(bed)
    assert total_dose_for_bed_gy(bed, n, ab_gy) == close(dose_gy)
    assert total_dose_for_eqd2_gy(eqd2, n, ab_gy) == close(dose_gy)
    assert dose_per_fraction_for_bed_gy(bed, n, ab_gy) == close(dose_gy / n)


def test_eqdx_hand_value():
    # 30 Gy/3 fx, α/β 2, in 10 Gy fractions: BED 180 / (1 + 10/2) = 30 (x = d gives D back)
    assert eqdx_gy(30.0, 3, 2.0, 10.0) == close(30.0)
    # and EQD2 equals EQDx with x = 2
    assert eqdx_gy(54.0, 3, 10.0, 2.0) == close(126.0)


def test_scalar_in_float_out_and_array_in_array_out():
    assert type(bed_gy(60, 30, 10)) is float
    assert type(bed_gy(np.float32(60.0), 30, 10)) is float
    result = bed_gy(np.array([0.0, 60.0]), 30, 10.0)
    assert isinstance(result, np.ndarray)
    np.testing.assert_allclose(result, [0.0, 72.0], rtol=REL)


def test_voxelwise_dose_per_fraction_is_per_voxel():
    # each voxel's d = D/n: voxels of 30 and 60 Gy in 30 fx at α/β 3 Gy
    # 30 Gy: d = 1, BED = 30·(1 + 1/3) = 40, EQD2 = 40/(5/3) = 24
    # 60 Gy: d = 2, EQD2 = 60
    dose = np.array([[30.0, 60.0], [0.0, 30.0]])
    np.testing.assert_allclose(eqd2_gy(dose, 30, 3.0), [[24.0, 60.0], [0.0, 24.0]], rtol=REL)


# --------------------------------------------------------------------------- repopulation


def test_repopulation_worked_example_hand_computed():
    # HAND-COMPUTED from the formula, not quoted from a publication (no verbatim
    # published example could be checked). Parameters: the preset
    # SQUAMOUS_CELL_CARCINOMA_REPOPULATION (Tk 21 d, Tpot 3 d, α 0.3/Gy; head-and-neck
    # SCC values after Fowler, Br J Radiol 1989;62:679-694). Schedule: 70 Gy/35 fx,
    # Monday week 1 to Friday week 7, overall time T = 46 days (first to last fraction).
    #   BED (no time term) = 70·(1 + 2/10)              = 84 Gy
    #   loss = ln2·(46 − 21)/(0.3·3) = 0.693147·25/0.9   = 19.2541 Gy
    #   BED  = 84 − 19.2541                              = 64.7459 Gy
    #   EQD2 = 64.7459/1.2                               = 53.9549 Gy
    preset = SQUAMOUS_CELL_CARCINOMA_REPOPULATION
    loss = math.log(2.0) * 25.0 / 0.9
    assert preset.bed_loss_gy(46.0) == close(loss)
    assert preset.bed_loss_per_day_gy == pytest.approx(0.770, abs=5e-4)
    bed = bed_gy(70.0, 35, 10.0, repopulation=preset, overall_time_days=46.0)
    assert bed == close(84.0 - loss)
    assert bed == pytest.approx(64.7459, abs=1e-4)
    eqd2 = eqd2_gy(70.0, 35, 10.0, repopulation=preset, overall_time_days=46.0)
    assert eqd2 == pytest.approx(53.9549, abs=1e-4)
    # the inverse adds the loss back
    assert total_dose_for_bed_gy(bed, 35, 10.0, repopulation=preset, overall_time_days=46.0) == close(
        70.0
    )


def test_no_repopulation_loss_before_kickoff():
    assert repopulation_bed_gy(21.0, 21.0, 0.3, 3.0) == 0.0
    assert repopulation_bed_gy(10.0, 21.0, 0.3, 3.0) == 0.0
    assert bed_gy(
        60.0, 30, 10.0, repopulation=SQUAMOUS_CELL_CARCINOMA_REPOPULATION, overall_time_days=20.0
    ) == close(72.0)


def test_repopulation_requires_overall_time():
    with pytest.raises(RadiobiologyError, match=r"'repopulation' was given without 'overall_time_days'"):
        bed_gy(60.0, 30, 10.0, repopulation=SQUAMOUS_CELL_CARCINOMA_REPOPULATION)
    with pytest.raises(RadiobiologyError, match=r"'overall_time_days' was given \(39\.0\) without"):
        eqd2_gy(60.0, 30, 10.0, overall_time_days=39.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kickoff_days": -1.0}, r"'kickoff_days' value of -1 days is invalid, it must be >= 0"),
        ({"potential_doubling_days": 0.0}, r"'potential_doubling_days' value of 0 days is invalid"),
        ({"alpha_per_gy": -0.3}, r"'alpha_per_gy' value of -0.3 /Gy is invalid, it must be > 0"),
        ({"alpha_per_gy": math.nan}, r"'alpha_per_gy' value of nan is invalid, it must be finite"),
    ],
)
def test_repopulation_parameters_validated(kwargs, message):
    values = {"kickoff_days": 21.0, "potential_doubling_days": 3.0, "alpha_per_gy": 0.3} | kwargs
    with pytest.raises(RadiobiologyError, match=message):
        RepopulationParameters(**values)


def test_repopulation_negative_time_rejected():
    with pytest.raises(RadiobiologyError, match=r"'treatment_days' value of -2 days is invalid"):
        repopulation_bed_gy(-2.0, 21.0, 0.3, 3.0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((60.0, 0, 10.0), r"'fractions' value of 0 is invalid, it must be a whole number >= 1"),
        ((60.0, -3, 10.0), r"'fractions' value of -3 is invalid, it must be a whole number >= 1"),
        ((60.0, 2.5, 10.0), r"'fractions' value of 2\.5 is invalid, it must be a whole number"),
        ((60.0, True, 10.0), r"'fractions' value of True \(bool\) is invalid, it must be a real"),
        ((60.0, math.inf, 10.0), r"'fractions' value of inf is invalid, it must be finite"),
        ((60.0, 30, 0.0), r"'alpha_beta_gy' value of 0 Gy is invalid, it must be > 0 Gy"),
        ((60.0, 30, -3.0), r"'alpha_beta_gy' value of -3 Gy is invalid, it must be > 0 Gy"),
        ((60.0, 30, math.nan), r"'alpha_beta_gy' value of nan is invalid, it must be finite"),
        ((-1.0, 30, 10.0), r"'total_dose_gy' holds 1 negative value\(s\) \(the lowest is -1 Gy\)"),
        ((math.nan, 30, 10.0), r"'total_dose_gy' holds 1 non-finite value\(s\)"),
        (("60", 30, 10.0), r"'total_dose_gy' value of '60' \(str\) is invalid, it must be a real"),
    ],
)
def test_bed_rejects_nonsense(args, message):
    with pytest.raises(RadiobiologyError, match=message):
        bed_gy(*args)


def test_array_with_negative_and_infinite_voxels_rejected():
    with pytest.raises(RadiobiologyError, match=r"holds 2 negative value\(s\) \(the lowest is -5 Gy\)"):
        eqd2_gy(np.array([1.0, -5.0, -1.0]), 5, 3.0)
    with pytest.raises(RadiobiologyError, match=r"holds 1 non-finite value\(s\) \(e\.g\. inf\)"):
        eqd2_gy(np.array([1.0, np.inf]), 5, 3.0)


def test_error_is_a_value_error():
    with pytest.raises(ValueError, match=r"'fractions' value of 0"):
        eqd2_gy(10.0, 0, 3.0)


def test_inverse_rejects_negative_bed_and_eqdx_rejects_zero_reference():
    with pytest.raises(RadiobiologyError, match=r"'bed' holds 1 negative value"):
        total_dose_for_bed_gy(-1.0, 5, 10.0)
    with pytest.raises(RadiobiologyError, match=r"'eqd2' holds 1 negative value"):
        total_dose_for_eqd2_gy(-1.0, 5, 10.0)
    with pytest.raises(RadiobiologyError, match=r"'reference_dose_per_fraction_gy' value of 0 Gy"):
        eqdx_gy(30.0, 3, 2.0, 0.0)


def test_integral_float_fractions_accepted():
    assert bed_gy(60.0, 30.0, 10.0) == close(72.0)


# --------------------------------------------------------------------------- properties

doses_gy = st.floats(min_value=0.0, max_value=200.0, allow_nan=False, allow_infinity=False)
positive_doses_gy = st.floats(min_value=1e-3, max_value=200.0)
fractions_n = st.integers(min_value=1, max_value=50)
alpha_betas_gy = st.floats(min_value=0.5, max_value=20.0)


@given(fractions_n, alpha_betas_gy)
def test_eqd2_at_2_gy_per_fraction_is_physical(n, ab_gy):
    assert eqd2_gy(2.0 * n, n, ab_gy) == close(2.0 * n)


@given(doses_gy, st.floats(min_value=1e-6, max_value=50.0), fractions_n, alpha_betas_gy)
def test_bed_and_eqd2_strictly_increase_with_dose(dose_gy, step_gy, n, ab_gy):
    assert bed_gy(dose_gy + step_gy, n, ab_gy) > bed_gy(dose_gy, n, ab_gy)
    assert eqd2_gy(dose_gy + step_gy, n, ab_gy) > eqd2_gy(dose_gy, n, ab_gy)


@given(doses_gy, fractions_n, alpha_betas_gy)
def test_inverse_functions_round_trip(dose_gy, n, ab_gy):
    tol = {"rel": REL, "abs": 1e-9}
    assert total_dose_for_bed_gy(bed_gy(dose_gy, n, ab_gy), n, ab_gy) == pytest.approx(dose_gy, **tol)
    assert total_dose_for_eqd2_gy(eqd2_gy(dose_gy, n, ab_gy), n, ab_gy) == pytest.approx(dose_gy, **tol)
    bed = bed_gy(dose_gy, n, ab_gy)
    assert eqd2_to_bed_gy(bed_to_eqd2_gy(bed, ab_gy), ab_gy) == pytest.approx(bed, **tol)


@given(
    doses_gy,
    fractions_n,
    alpha_betas_gy,
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
)
def test_uniform_array_equals_scalar(dose_gy, n, ab_gy, shape):
    grid = np.full(shape, dose_gy)
    for kind, scalar in (
        (DoseKind.BED, bed_gy(dose_gy, n, ab_gy)),
        (DoseKind.EQD2, eqd2_gy(dose_gy, n, ab_gy)),
    ):
        converted = DoseConversion(kind, ab_gy).apply(grid, n)
        assert converted.shape == shape
        np.testing.assert_allclose(converted, scalar, rtol=1e-15, atol=0)


@given(positive_doses_gy, fractions_n, alpha_betas_gy)
def test_eqdx_with_x_equal_to_dose_per_fraction_is_physical(dose_gy, n, ab_gy):
    assert eqdx_gy(dose_gy, n, ab_gy, dose_gy / n) == close(dose_gy)


@given(doses_gy, fractions_n, alpha_betas_gy)
def test_bed_at_least_physical_dose(dose_gy, n, ab_gy):
    assert bed_gy(dose_gy, n, ab_gy) >= dose_gy


# --------------------------------------------------------------------------- DoseConversion


def test_physical_conversion_returns_input_unchanged():
    grid = np.array([1.0, 2.0, 3.0])
    conversion = DoseConversion.physical()
    assert conversion.apply(grid, 5) is grid
    assert conversion.label == "physical"
    assert conversion.unit == "Gy"
    assert conversion.describe() == "physical dose, in Gy"


def test_conversion_labels():
    eqd2 = DoseConversion(DoseKind.EQD2, 3.0)
    assert eqd2.label == "EQD2(α/β=3 Gy)"
    assert eqd2.unit == "Gy(EQD2)"
    assert eqd2.describe() == "EQD2 with α/β = 3 Gy, in Gy(EQD2)"
    bed = DoseConversion.bed(10)
    assert bed.label == "BED(α/β=10 Gy)"
    assert bed.unit == "Gy(BED)"
    assert DoseConversion.eqd2(2.5).label == "EQD2(α/β=2.5 Gy)"


def test_conversion_is_frozen_and_hashable():
    conversion = DoseConversion.eqd2(3.0)
    assert conversion == DoseConversion(DoseKind.EQD2, 3)
    assert len({conversion, DoseConversion(DoseKind.EQD2, 3.0)}) == 1
    with pytest.raises(AttributeError, match="cannot assign"):
        conversion.alpha_beta_gy = 2.0  # type: ignore[misc]


def test_conversion_validation():
    with pytest.raises(RadiobiologyError, match=r"'alpha_beta_gy' is required for EQD2"):
        DoseConversion(DoseKind.EQD2)
    with pytest.raises(RadiobiologyError, match=r"'alpha_beta_gy' of 3\.0 was given for physical dose"):
        DoseConversion(DoseKind.PHYSICAL, 3.0)
    with pytest.raises(RadiobiologyError, match=r"'alpha_beta_gy' value of -1 Gy is invalid"):
        DoseConversion.bed(-1.0)
    with pytest.raises(RadiobiologyError, match=r"'kind' value of 'EQD2' is invalid"):
        DoseConversion("EQD2", 3.0)  # type: ignore[arg-type]
    with pytest.raises(RadiobiologyError, match=r"'fractions' value of 0 is invalid"):
        DoseConversion.physical().apply(np.array([1.0]), 0)


# --------------------------------------------------------------------------- fractionation


@pytest.mark.parametrize(
    ("dose_gy", "n", "regime"),
    [
        (60.0, 30, FractionationRegime.CONVENTIONAL),  # 2.0 Gy/fx
        (50.4, 28, FractionationRegime.CONVENTIONAL),  # 1.8 Gy/fx, lower bound inclusive
        (6.6, 3, FractionationRegime.CONVENTIONAL),  # 2.2 Gy/fx (2.1999999999999997 in floats)
        (45.0, 30, FractionationRegime.HYPERFRACTIONATED),  # 1.5 Gy/fx
        (55.0, 20, FractionationRegime.MODERATELY_HYPOFRACTIONATED),  # 2.75 Gy/fx
        (39.0, 10, FractionationRegime.MODERATELY_HYPOFRACTIONATED),  # 3.9 Gy/fx
        (49.0, 10, FractionationRegime.SBRT),  # 4.9 Gy/fx in 10 fx
        (20.0, 5, FractionationRegime.SBRT),  # 4.0 Gy/fx, lower bound inclusive
        (54.0, 3, FractionationRegime.SBRT),  # 18 Gy/fx
        (45.0, 10, FractionationRegime.SBRT),  # 4.5 Gy/fx in 10 fx
        (60.0, 12, FractionationRegime.SBRT),  # 5 Gy/fx, 12 fx: upper fraction bound inclusive
        (58.5, 13, FractionationRegime.MODERATELY_HYPOFRACTIONATED),  # 4.5 Gy/fx in 13 fx: not SBRT
        (65.0, 13, FractionationRegime.OTHER),  # 5 Gy/fx in 13 fx
    ],
)
def test_regime_thresholds(dose_gy, n, regime):
    assert summarize_fractionation(dose_gy, n).regime is regime


def test_summary_values():
    summary = summarize_fractionation(50.0, 5)
    assert summary.dose_per_fraction_gy == close(10.0)
    assert summary.bed10_gy == close(100.0)
    assert summary.eqd2_10_gy == close(250.0 / 3.0)
    assert summary.describe() == "50 Gy / 5 fx (10 Gy/fx, SBRT): BED10 100 Gy, EQD2(10) 83.33 Gy"
    assert summarize_fractionation(54.0, 3).bed10_gy == close(151.2)


def test_summary_rejects_nonsense():
    with pytest.raises(RadiobiologyError, match=r"'prescription_gy' value of 0 Gy is invalid"):
        summarize_fractionation(0.0, 5)
    with pytest.raises(RadiobiologyError, match=r"'fractions' value of 1\.5 is invalid"):
        summarize_fractionation(30.0, 1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- public API


def test_all_is_honest():
    assert sorted(rb.__all__) == sorted(set(rb.__all__))
    for name in rb.__all__:
        assert getattr(rb, name) is not None
    import types

    public = {n for n in dir(rb) if not n.startswith("_")}
    modules = {n for n in public if isinstance(getattr(rb, n), types.ModuleType)}  # submodules, imported or not
    assert public - modules == set(rb.__all__)
