"""TG-263 metrics on DVHs whose answers are derived by hand.

The reference DVH: 10 cc spread uniformly over 10-20 Gy (differential bins of 1 mGy,
0.001 cc each). Its cumulative curve is V(D) = 20 - D cc on [10, 20] Gy, so

* Dx% is where V = x/100 · 10 cc: D = 20 - x/10 (D95% = 10.5 Gy, D5% = 19.5 Gy);
* Dv cc = 20 - v (D2cc = 18 Gy); DC v cc (coldest v cc) = 10 + v (DC2cc = 12 Gy);
* V(D)[cc] = 20 - D, [%] = 10 · V(D); CV(D) = D - 10;
* Mean 15, Min 10, Max 20 Gy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from plancheck.dvh.dvh import DVH
from plancheck.dvh.metrics import DEFAULT_METRICS, evaluate_metric, parse_metric
from plancheck.errors import MetricSpecError

BIN = 0.001


def uniform_dvh(volume_cc: float | None = None) -> DVH:
    """10 cc uniformly over 10-20 Gy; ``volume_cc`` > 10 adds volume outside the dose grid."""
    hist = np.zeros(20000)
    hist[10000:20000] = 10.0 / 10000
    return DVH.from_differential("uniform", BIN, hist, volume_cc=volume_cc)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("D95%[Gy]", 10.5), ("D50%[Gy]", 15.0), ("D5%[Gy]", 19.5), ("D2%[Gy]", 19.8),
        ("D2cc[Gy]", 18.0), ("D0.03cc[Gy]", 19.97), ("DC2cc[Gy]", 12.0), ("DC95%[Gy]", 19.5),
        ("V15Gy[cc]", 5.0), ("V15Gy[%]", 50.0), ("V12.5Gy[cc]", 7.5), ("V5Gy[%]", 100.0), ("V25Gy[cc]", 0.0),
        ("CV12Gy[cc]", 2.0), ("CV12Gy[%]", 20.0),
        ("Mean[Gy]", 15.0), ("Min[Gy]", 10.0), ("Max[Gy]", 20.0), ("Volume[cc]", 10.0),
        ("D95%[cGy]", 1050.0), ("V1500cGy[cc]", 5.0), ("Mean[cGy]", 1500.0),
    ],
)
def test_metric_on_hand_derived_dvh(metric: str, expected: float) -> None:
    value = evaluate_metric(metric, uniform_dvh())
    assert value.value == pytest.approx(expected, abs=1e-6)
    assert value.lower == value.upper == value.value
    assert value.reason is None
    assert value.method  # every value says how it was obtained


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("D95%[%]", 52.5), ("Mean[%]", 75.0), ("Max[%]", 100.0), ("V95%[%]", 10.0), ("V75%[cc]", 5.0), ("CV75%[%]", 50.0)],
)
def test_metrics_relative_to_the_prescription(metric: str, expected: float) -> None:
    """Rx 20 Gy: 95 % of Rx is 19 Gy, where V = 1 cc = 10 %; D95% = 10.5 Gy = 52.5 % of Rx."""
    dvh = uniform_dvh()
    assert evaluate_metric(metric, dvh, prescription_gy=20.0).value == pytest.approx(expected, abs=1e-6)
    missing = evaluate_metric(metric, dvh)
    assert missing.value is None
    assert "relative to the prescription, which is not known" in missing.reason


def test_dose_at_a_volume_larger_than_the_structure_is_undefined() -> None:
    value = evaluate_metric("D20cc[Gy]", uniform_dvh())
    assert value.value is None
    assert value.reason == "the structure (10 cc) is smaller than 20 cc"


def test_partly_covered_structure_gives_bounds_not_values() -> None:
    """12.5 cc structure of which 10 cc (80 %) is in the grid. Bounds by hand:
    D95% needs 11.875 cc: at least 0 Gy (if the missing 2.5 cc got nothing), at most the
    dose at 9.375 cc of the covered curve, 10.625 Gy. D2cc lies in [18 Gy, inf) — already
    a certain violation of a 15 Gy limit. V15Gy in [5, 7.5] cc. Mean in [12, inf)."""
    dvh = uniform_dvh(volume_cc=12.5)
    assert dvh.dose_coverage_pct == pytest.approx(80.0)
    expected = {
        "D95%[Gy]": (0.0, 10.625),
        "D2cc[Gy]": (18.0, math.inf),
        "V15Gy[cc]": (5.0, 7.5),
        "V15Gy[%]": (40.0, 60.0),
        "Mean[Gy]": (12.0, math.inf),
        "Max[Gy]": (20.0, math.inf),
        "Min[Gy]": (0.0, 10.0),
    }
    for metric, (lower, upper) in expected.items():
        value = evaluate_metric(metric, dvh)
        assert value.value is None, metric
        assert value.lower == pytest.approx(lower, abs=1e-9), metric
        assert value.upper == pytest.approx(upper, abs=1e-9), metric
        assert value.reason.startswith("80.0% of the structure is inside the dose grid"), metric
    assert evaluate_metric("Volume[cc]", dvh).value == 12.5


def test_spread_samples_histogram_uniformly() -> None:
    """One sample at 10 Gy whose cell spans 8-12 Gy (spread 4 Gy, surface points at 8 and
    12 Gy): the volume is uniform on [8, 12], so D25% = 11 Gy and V9Gy = 75 %."""
    dvh = DVH.from_samples("cell", np.array([10.0]), np.array([1.0]), extreme_doses_gy=np.array([8.0, 12.0]),
                           spread_gy=np.array([4.0]))
    assert evaluate_metric("D25%[Gy]", dvh).value == pytest.approx(11.0, abs=1e-6)
    assert evaluate_metric("D50%[Gy]", dvh).value == pytest.approx(10.0, abs=1e-6)
    assert evaluate_metric("V9Gy[%]", dvh).value == pytest.approx(75.0, abs=1e-3)
    assert evaluate_metric("Mean[Gy]", dvh).value == pytest.approx(10.0)
    assert (evaluate_metric("Min[Gy]", dvh).value, evaluate_metric("Max[Gy]", dvh).value) == (8.0, 12.0)


def test_samples_outside_the_grid_are_uncovered_volume() -> None:
    dvh = DVH.from_samples("half", np.array([5.0, np.nan]), np.array([1.0, 1.0]))
    assert dvh.volume_cc == 2.0
    assert dvh.uncovered_volume_cc == 1.0
    assert dvh.dose_coverage_pct == 50.0
    assert evaluate_metric("Max[Gy]", dvh).value is None


# Regression: D100% once came out 0 Gy when the histogram summed a rounding error below the volume.
def test_d100_is_the_minimum_even_with_rounding_in_the_volume() -> None:
    # the structure volume (exact area × thickness) and the sum of the sample weights
    # differ in the last bit, as they do in the engine
    volume_cc = float(np.nextafter(1.0, 2.0))
    dvh = DVH.from_samples("rounding", np.linspace(10.0, 19.0, 10), np.full(10, 0.1), volume_cc=volume_cc)
    assert dvh.covered_volume_cc < volume_cc
    assert dvh.uncovered_volume_cc == 0.0
    assert evaluate_metric("D100%[Gy]", dvh).value == pytest.approx(10.0)


# ------------------------------------------------------------------------------ parsing

def test_parse_metric_spec() -> None:
    spec = parse_metric("V2000cGy[%]")
    assert (spec.kind, spec.threshold, spec.threshold_unit, spec.result_unit) == ("V", 20.0, "Gy", "%")
    assert not spec.needs_prescription and not spec.is_dose
    spec = parse_metric("D0.03cc[Gy]")
    assert (spec.kind, spec.threshold, spec.threshold_unit, spec.result_unit) == ("D", 0.03, "cc", "Gy")
    assert spec.is_dose
    assert parse_metric("D95%[%]").needs_prescription
    assert parse_metric("V95%[cc]").needs_prescription
    assert parse_metric("Mean[Gy]") is parse_metric("Mean[Gy]")  # parsed once
    for metric in DEFAULT_METRICS:
        assert parse_metric(metric).text == metric


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("D95", r"cannot parse DVH metric 'D95': expected TG-263 forms"),
        ("d95%[Gy]", r"cannot parse DVH metric 'd95%\[Gy\]'"),
        ("Mean", r"cannot parse DVH metric 'Mean'"),
        ("D20Gy[Gy]", r"'D20Gy\[Gy\]': a dose metric Dx needs a volume x in % or cc, not 'Gy'"),
        ("D95%[cc]", r"'D95%\[cc\]': a dose metric is reported in \[Gy\], \[cGy\] or \[%\]"),
        ("D120%[Gy]", r"'D120%\[Gy\]': a volume of 120% is more than the whole structure"),
        ("V20cc[%]", r"'V20cc\[%\]': a volume metric Vx needs a dose x in Gy, cGy or %"),
        ("V20Gy[Gy]", r"'V20Gy\[Gy\]': a volume metric is reported in \[%\] \(of the structure\) or \[cc\], not \[Gy\]"),
    ],
)
def test_bad_metric_strings_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(MetricSpecError, match=message):
        parse_metric(text)
    with pytest.raises(MetricSpecError, match=message):
        evaluate_metric(text, uniform_dvh())


@pytest.mark.parametrize("plateau_gy", [30.0, 10.0 + 20.0, 0.1 * 300, 30.0 - 4e-15, 30.0 - 1e-12])
def test_a_plateau_at_the_threshold_receives_it(plateau_gy: float) -> None:
    # 5 cc all at "30 Gy" as floating point leaves it (a sum of courses, a conversion): V30Gy is
    # the whole volume, not 0 (a V30Gy limit passed at 0 % for a heart all at 30 Gy). A plateau
    # 1 mGy below is below: V30Gy = 0.
    dvh = DVH.from_samples("plateau", np.full(50, plateau_gy), np.full(50, 0.1))
    assert evaluate_metric("V30Gy[%]", dvh).value == pytest.approx(100.0)
    assert evaluate_metric("V30Gy[cc]", dvh).value == pytest.approx(5.0)
    below = DVH.from_samples("plateau", np.full(50, 29.999), np.full(50, 0.1))
    assert evaluate_metric("V30Gy[%]", below).value == 0.0
