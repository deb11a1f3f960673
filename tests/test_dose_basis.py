"""Each limit is graded on the dose it was defined on (docs/clinical-basis.md, "dose basis").

The cases are built in memory (tests/rt_cases.py): boxes in bands of uniform dose, so
every expected value below is arithmetic on the band doses, written next to the test.

LQ formulas used by hand: EQD2 = D·(d + α/β)/(2 + α/β) with d = D/n.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from plancheck.errors import ProtocolError
from plancheck.model import Roi
from plancheck.model.case import Case
from plancheck.model.course_selection import LeftOutPlan
from plancheck.protocol.loader import load_protocol
from plancheck.rules.findings import Status
from plancheck.rules.runner import protocol_for_check, run_check
from rt_cases import Box, banded_dose, box_roi, plan, treatment

TOL_GY = 0.01  # a uniform dose is histogrammed in 1 mGy bins
TOL_PCT = 0.01


def eqd2(total_gy: float, fractions: int, ab_gy: float) -> float:
    d = total_gy / fractions
    return total_gy * (d + ab_gy) / (2 + ab_gy)


# The issue's case: C1 60 Gy/30 fx to the primary, C2 50 Gy/5 fx SBRT to a lung metastasis.
# C1 gives: cord PRV 47 Gy (x 5..21, band 47 Gy over voxel centres 0..25 mm); the left lung
# island 24 Gy, the right island 0 Gy; the heart 29 Gy. C2 gives 0 Gy to all of them.
CORD = Box(10, 16, -3, 3)                     # 1.08 cc inside the PRV
CORD_PRV = Box(5, 21, -8, 8)                  # 7.68 cc
LUNG_HOT = Box(40, 59)                        # 19·20·30 mm = 11.4 cc at 24 Gy
LUNG_COLD = Box(80, 111, z0=30, z1=60)        # 31·20·30 mm = 18.6 cc at 0 Gy: hot fraction 11.4/30 = 38 %
# (the two lung parts lie on different planes, so each plane's exact area belongs to one part)
HEART = Box(130, 150)                         # 12 cc at 29 Gy
C1_BANDS = [(-2.5, 27.5, 47.0), (32.5, 67.5, 24.0), (122.5, 157.5, 29.0)]


def issue_rois(with_prv: bool = True):
    rois = [box_roi(1, "SpinalCord", CORD), box_roi(3, "Lungs", LUNG_HOT, LUNG_COLD), box_roi(4, "Heart", HEART)]
    if with_prv:
        rois.append(box_roi(2, "SpinalCord_PRV05", CORD_PRV))
    return rois


def findings_of(report, rule_id: str):
    found = [f for f in report.findings if f.rule_id == rule_id]
    assert found, f"no finding of {rule_id}"
    return found


@pytest.fixture(scope="module")
def consensus():
    return protocol_for_check("esophagus-oligomet-2025")


@pytest.fixture(scope="module")
def two_course_report(consensus):
    export = treatment(issue_rois(), [(plan("C1", 60.0, 30), banded_dose(C1_BANDS)),
                                      (plan("C2", 50.0, 5), banded_dose([]))])
    return run_check(export, consensus, threads=1)


def test_hand_values() -> None:
    assert LUNG_HOT.volume_cc / (LUNG_HOT.volume_cc + LUNG_COLD.volume_cc) == pytest.approx(0.38)
    assert eqd2(47, 30, 2) == pytest.approx(41.908, abs=1e-3)      # 47·(1.5667 + 2)/4
    assert eqd2(24, 30, 3) == pytest.approx(18.24)                 # 24·(0.8 + 3)/5
    assert eqd2(29, 30, 3) == pytest.approx(23.0067, abs=1e-4)     # 29·(0.9667 + 3)/5


def test_cord_prv_at_47_gy_physical_fails_though_its_eqd2_is_41_9(two_course_report) -> None:
    (f,) = findings_of(two_course_report, "OAR-CORD")
    assert f.status is Status.FAIL
    assert f.structures == ("SpinalCord_PRV05",)
    physical, eqd2_m = f.measurements
    assert physical.value == pytest.approx(47.0, abs=TOL_GY) and physical.status is Status.FAIL
    assert eqd2_m.value == pytest.approx(eqd2(47, 30, 2), abs=TOL_GY) and eqd2_m.status is Status.PASS
    assert f.measured == pytest.approx(47.0, abs=TOL_GY)            # the value that decided
    assert "C1, C2" in physical.basis and "EQD2 (α/β = 2 Gy" in eqd2_m.basis


def test_lungs_v20_38_percent_physical_fails_though_eqd2_v20_is_0(two_course_report) -> None:
    (f,) = findings_of(two_course_report, "OAR-LUNG-V20")
    physical, eqd2_m = f.measurements
    assert physical.value == pytest.approx(38.0, abs=TOL_PCT)      # the 24 Gy island is 38 % of the lungs
    assert eqd2_m.value == pytest.approx(0.0, abs=TOL_PCT)         # 24 Gy/30 fx is 18.24 Gy EQD2 < 20
    assert f.status is Status.FAIL and f.measured == pytest.approx(38.0, abs=TOL_PCT)


def test_heart_mean_29_gy_physical_fails_though_its_eqd2_is_23(two_course_report) -> None:
    (f,) = findings_of(two_course_report, "OAR-HEART-MEAN")
    physical, eqd2_m = f.measurements
    assert physical.value == pytest.approx(29.0, abs=TOL_GY)
    assert eqd2_m.value == pytest.approx(eqd2(29, 30, 3), abs=TOL_GY)
    assert (physical.status, eqd2_m.status, f.status) == (Status.FAIL, Status.PASS, Status.FAIL)


def test_lung_mean_and_v5_on_both_bases(two_course_report) -> None:
    # mean: 0.38·24 = 9.12 Gy physical, 0.38·18.24 = 6.931 Gy EQD2: both within 14 Gy
    (mean,) = findings_of(two_course_report, "OAR-LUNG-MEAN")
    assert [m.value for m in mean.measurements] == pytest.approx([9.12, 0.38 * 18.24], abs=TOL_GY)
    assert mean.status is Status.PASS
    # V5: 38 % on both bases (within 60 %)
    (v5,) = findings_of(two_course_report, "OAR-LUNG-V5")
    assert [m.value for m in v5.measurements] == pytest.approx([38.0, 38.0], abs=TOL_PCT)


def test_one_conventional_course_is_graded_on_physical_dose_alone(consensus) -> None:
    export = treatment(issue_rois(), [(plan("C1", 60.0, 30), banded_dose(C1_BANDS))])
    report = run_check(export, consensus, threads=1)
    (f,) = findings_of(report, "OAR-CORD")
    assert len(f.measurements) == 1 and f.measurements[0].basis == "physical dose"
    assert f.status is Status.FAIL and f.measured == pytest.approx(47.0, abs=TOL_GY)
    assert "one conventional course" in f.details["basis_note"]


def test_a_hypofractionated_course_is_graded_on_eqd2_where_it_is_worse(consensus) -> None:
    # 45 Gy/15 fx (3 Gy/fx, not conventional, not SBRT): the cord PRV at 42 Gy (2.8 Gy/fx)
    # is within 45 Gy physical but EQD2(α/β=2) = 42·(2.8 + 2)/4 = 50.4 Gy: FAIL on EQD2.
    export = treatment(issue_rois(), [(plan("C1", 45.0, 15), banded_dose([(-2.5, 27.5, 42.0)]))])
    report = run_check(export, consensus, threads=1)
    (f,) = findings_of(report, "OAR-CORD")
    physical, eqd2_m = f.measurements
    assert physical.value == pytest.approx(42.0, abs=TOL_GY) and physical.status is Status.PASS
    assert eqd2_m.value == pytest.approx(50.4, abs=TOL_GY) and eqd2_m.status is Status.FAIL
    assert f.status is Status.FAIL and f.measured == pytest.approx(50.4, abs=TOL_GY)


def test_the_cord_limit_falls_back_to_the_cord_without_a_prv(consensus) -> None:
    # no PRV: the cord itself (x 10..16, inside the 47 Gy band) is measured
    export = treatment(issue_rois(with_prv=False), [(plan("C1", 60.0, 30), banded_dose(C1_BANDS))])
    (f,) = findings_of(run_check(export, consensus, threads=1), "OAR-CORD")
    assert f.structures == ("SpinalCord",) and f.status is Status.FAIL
    assert "first contoured of SpinalCord_PRV05, SpinalCord" in f.details["structure_match"]


# A PRV of another margin than the listed SpinalCord_PRV05: the cord (x 10..16) gets 40 Gy, the
# PRV's edge (x 18..21, voxel centres 20 mm) 47 Gy. Measured on the cord, OAR-CORD (≤ 45 Gy) would
# PASS at 40 Gy (the false PASS); the consensus (§5.1) puts the limit on "the PRV where one is
# contoured, else the cord itself", so the cord must not be measured while a PRV of it is contoured.
PRV_EDGE_BANDS = [(-2.5, 17.5, 40.0), (17.5, 27.5, 47.0)]


def _cord_with_prv_named(consensus, prv_name: str, mapping=None, courses=1):
    rois = [box_roi(1, "SpinalCord", CORD), box_roi(2, prv_name, CORD_PRV)]
    plans = [(plan("C1", 60.0, 30), banded_dose(PRV_EDGE_BANDS)), (plan("C2", 50.0, 5), banded_dose([]))][:courses]
    return run_check(treatment(rois, plans), consensus, user_mapping=mapping, threads=1)


@pytest.mark.parametrize("prv_name, margin", [
    ("SpinalCord_PRV03", "3 mm margin"),       # TG-263 template instance, another margin
    ("PRV03_SpinalCord", "3 mm margin"),       # its reverse-order name
    ("Cord+3mm", "3 mm margin"),               # a synonym of SpinalCord_PRV03
    ("Cord_PRV", "margin not in its name"),    # a synonym of SpinalCord_PRV
    ("SpinalCord_PRV10", "10 mm margin"),
    # spellings in no list, read as a PRV of the cord (prv_words): the cord at 41.2 Gy must not
    # stand in for them (it would PASS ≤ 45 Gy while the PRV reaches 47 Gy)
    ("SC_PRV07", "7 mm margin"),
    ("PRV07_Cord", "7 mm margin"),
    ("Cord+7mm", "7 mm margin"),
    ("Cord+0.7cm", "7 mm margin"),
    ("PRV_SC", "margin not in its name"),
    ("Cord_exp", "margin not in its name"),
    ("SpinalCord_05", "margin not in its name"),   # a bare number may be a margin
])
def test_a_cord_prv_of_another_margin_is_never_replaced_by_the_cord(consensus, prv_name, margin) -> None:
    (f,) = findings_of(_cord_with_prv_named(consensus, prv_name), "OAR-CORD")
    assert f.status is Status.NOT_EVALUATED, f.message
    assert f"'{prv_name}'" in f.message and margin in f.message
    assert "SpinalCord_PRV05 (5 mm margin)" in f.message and "--map SpinalCord_PRV05=" in f.message


@pytest.mark.parametrize("prv_name", ["SpinalCord_PRV5mm", "SpinalCord_PRV_5mm", "Cord 5mm PRV", "PRV5_SC"])
def test_an_unlisted_spelling_of_the_5_mm_prv_is_measured(consensus, prv_name) -> None:
    # the PRV (x 5..21) reaches the 47 Gy band (voxel centres x = 20 mm): D0.03cc = 47 Gy > 45 Gy
    (f,) = findings_of(_cord_with_prv_named(consensus, prv_name), "OAR-CORD")
    assert f.status is Status.FAIL and f.structures == (prv_name,)
    assert f.measured == pytest.approx(47.0, abs=TOL_GY)


def test_an_empty_prv_or_a_mapping_to_nothing_does_not_put_the_limit_on_the_cord(consensus) -> None:
    # the cord alone would PASS (≤ 45 Gy, it reaches 41.2 Gy); the PRV the structure set names
    # (without contours) or the mapping names (absent) is what the limit is on: NOT EVALUATED
    empty = Roi(2, "SpinalCord_PRV05", "ORGAN", ())
    report = run_check(treatment([box_roi(1, "SpinalCord", CORD), empty],
                                 [(plan("C1", 60.0, 30), banded_dose(PRV_EDGE_BANDS))]), consensus, threads=1)
    (f,) = findings_of(report, "OAR-CORD")
    assert f.status is Status.NOT_EVALUATED and "'SpinalCord_PRV05' has no contours" in f.message
    assert "SpinalCord not measured in its place" in f.message
    (f,) = findings_of(_cord_with_prv_named(consensus, "Cord PRV", mapping={"SpinalCord_PRV05": "Cord PRV5"}),
                       "OAR-CORD")
    assert f.status is Status.NOT_EVALUATED and "the mapping says SpinalCord_PRV05 is 'Cord PRV5'" in f.message
    assert "SpinalCord not measured in its place" in f.message


def test_the_composite_cord_maximum_does_not_fall_back_either(consensus) -> None:
    (f,) = findings_of(_cord_with_prv_named(consensus, "SpinalCord_PRV03", courses=2), "COMP-CORD-MAX")
    assert f.status is Status.NOT_EVALUATED and "'SpinalCord_PRV03'" in f.message


def test_a_mapping_puts_the_limit_on_the_contoured_prv(consensus) -> None:
    report = _cord_with_prv_named(consensus, "Cord_PRV", mapping={"SpinalCord_PRV05": "Cord_PRV"})
    (f,) = findings_of(report, "OAR-CORD")
    assert f.status is Status.FAIL and f.measured == pytest.approx(47.0, abs=TOL_GY)
    assert f.structures == ("Cord_PRV",)


def test_an_ambiguous_cord_prv_is_not_replaced_by_the_cord(consensus) -> None:
    rois = [box_roi(1, "SpinalCord", CORD), box_roi(2, "SpinalCord_PRV05", CORD_PRV), box_roi(5, "SpinalCord_PRV05", CORD_PRV)]
    report = run_check(treatment(rois, [(plan("C1", 60.0, 30), banded_dose(PRV_EDGE_BANDS))]), consensus, threads=1)
    (f,) = findings_of(report, "OAR-CORD")
    assert f.status is Status.NOT_EVALUATED
    assert "2 structures could be SpinalCord_PRV05" in f.message and "SpinalCord not measured in its place" in f.message


def test_the_listed_prv_is_measured_when_another_margin_is_also_contoured(consensus) -> None:
    rois = [box_roi(1, "SpinalCord", CORD), box_roi(2, "SpinalCord_PRV05", CORD_PRV), box_roi(5, "SpinalCord_PRV03", CORD)]
    report = run_check(treatment(rois, [(plan("C1", 60.0, 30), banded_dose(PRV_EDGE_BANDS))]), consensus, threads=1)
    (f,) = findings_of(report, "OAR-CORD")
    assert f.status is Status.FAIL and f.structures == ("SpinalCord_PRV05",)


def test_a_course_without_fractions_is_not_evaluated_unless_physical_already_fails(consensus) -> None:
    # fractions unknown: EQD2 cannot be computed. The cord at 47 Gy physical is a certain FAIL;
    # the heart at 20 Gy (within 26 Gy physical) cannot be judged on EQD2: NOT EVALUATED.
    export = treatment(issue_rois(), [(plan("C1", 60.0, None), banded_dose([(-2.5, 27.5, 47.0), (122.5, 157.5, 20.0)]))])
    report = run_check(export, consensus, threads=1)
    (cord,) = findings_of(report, "OAR-CORD")
    assert cord.status is Status.FAIL
    (heart,) = findings_of(report, "OAR-HEART-MEAN")
    assert heart.status is Status.NOT_EVALUATED
    assert "states no number of fractions" in heart.message


# ---------------------------------------------------------------------------- SBRT tables

TABLE_PROTOCOL = """
schema_version: 1
id: test-sbrt-table
title: SBRT table test
version: "1"
rules:
  - id: T-CORD-MAX
    kind: dvh
    title: cord max by fractions
    category: oar
    structure: SpinalCord
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    course: sbrt
    limits_by_fractions:
      1: {unit: Gy, upper: {per_protocol: 14}}
      3: {unit: Gy, upper: {per_protocol: 21.9}}
      5: {unit: Gy, upper: {per_protocol: 30}}
      8: {unit: Gy, upper: {per_protocol: 32}, source: "a published 8-fraction column"}
    provenance: {source: test, section: "1", confidence: institutional}
"""


@pytest.fixture(scope="module")
def table_protocol(tmp_path_factory):
    path = tmp_path_factory.mktemp("protocols") / "table.yaml"
    path.write_text(TABLE_PROTOCOL, encoding="utf-8")
    return load_protocol(str(path))


def _cord_in_sbrt(table_protocol, cord_gy: float, rx_gy: float, fractions: int | None, case: Case | None = None):
    export = treatment([box_roi(1, "SpinalCord", CORD)], [(plan("S", rx_gy, fractions), banded_dose([(-2.5, 27.5, cord_gy)]))])
    report = run_check(export, table_protocol, case=case, threads=1)
    return report


@pytest.mark.parametrize("fractions, rx_gy, expected_limit_gy, note", [
    (3, 30.0, 21.9, "limit for 3 fractions"),
    (5, 50.0, 30.0, "limit for 5 fractions"),
    (8, 60.0, 32.0, "limit for 8 fractions"),       # published 8-fraction value, not the LQ-converted 36.5 Gy
    (4, 48.0, 21.9, "the 3-fraction limit is used"),  # nearest tabulated number below
    (12, 60.0, 32.0, "the 8-fraction limit is used"),  # 60 Gy/12 fx (5 Gy/fx) is SBRT: 8-fraction limit
    (2, 30.0, 14.0, "the 1-fraction limit is used"),
])
def test_sbrt_limits_come_from_the_table_never_from_lq(table_protocol, fractions, rx_gy, expected_limit_gy, note) -> None:
    # the cord just above the expected limit must FAIL, just below it must PASS
    for dose, status in ((expected_limit_gy + 0.3, Status.FAIL), (expected_limit_gy - 0.3, Status.PASS)):
        (f,) = findings_of(_cord_in_sbrt(table_protocol, dose, rx_gy, fractions), "T-CORD-MAX")
        assert f.status is status, (fractions, dose, f.message)
        assert f.limits[0].side("upper", "per_protocol") == expected_limit_gy
        assert note in f.message


def test_lq_conversion_would_have_passed_a_cord_the_table_fails(table_protocol) -> None:
    # 23 Gy in 4 fx. LQ conversion of the 3-fraction 21.9 Gy with α/β = 2 Gy would allow
    # D with D(D/4 + 2)/4 = 21.9(7.3 + 2)/4 = 50.92 Gy EQD2, i.e. D = 24.82 Gy: a PASS.
    # The nearest tabulated number below (3 fx, 21.9 Gy) fails it.
    lq_limit = (-8 + math.sqrt(64 + 64 * eqd2(21.9, 3, 2))) / 2  # D² + 8D − 16·EQD2 = 0
    assert lq_limit == pytest.approx(24.82, abs=0.01)
    (f,) = findings_of(_cord_in_sbrt(table_protocol, 23.0, 48.0, 4), "T-CORD-MAX")
    assert f.status is Status.FAIL


def test_45_gy_in_10_fractions_gets_the_sbrt_checks(table_protocol) -> None:
    # 4.5 Gy/fx in 10 fx is SBRT (≥ 4 Gy/fx in ≤ 12 fx): the 8-fraction limit applies
    (f,) = findings_of(_cord_in_sbrt(table_protocol, 33.0, 45.0, 10), "T-CORD-MAX")
    assert f.status is Status.FAIL and f.limits[0].side("upper", "per_protocol") == 32.0


def test_a_declared_palliative_single_fraction_is_not_sbrt(table_protocol) -> None:
    case = Case.model_validate({"courses": [{"plan": "S", "intent": "palliative"}]})
    report = _cord_in_sbrt(table_protocol, 5.0, 8.0, 1, case)
    assert not [f for f in report.findings if f.rule_id == "T-CORD-MAX"]
    assert [n.rule_id for n in report.not_applicable] == ["T-CORD-MAX"]


@pytest.mark.parametrize("declaration", [
    {"technique": "conventional"},
    {"intent": "palliative"},
    {"technique": "conventional", "intent": "palliative"},
])
def test_a_declaration_never_removes_the_sbrt_limits_the_numbers_call_for(table_protocol, declaration) -> None:
    # consensus §5.2: SBRT limits "apply to every course of ≥ 4 Gy per fraction in ≤ 12 fractions";
    # 80 Gy / 5 fx (16 Gy/fx) is SBRT whatever the case file says: the cord at 31 Gy fails the
    # 5-fraction 30 Gy limit (before: no finding at all)
    case = Case.model_validate({"courses": [{"plan": "S", **declaration}]})
    (f,) = findings_of(_cord_in_sbrt(table_protocol, 31.0, 80.0, 5, case), "T-CORD-MAX")
    assert f.status is Status.FAIL and f.limits[0].side("upper", "per_protocol") == 30.0


@pytest.mark.parametrize("rx_gy, fractions", [(8.0, 2), (10.0, 1), (20.0, 5)])
def test_only_a_single_8_gy_palliative_fraction_is_exempt(table_protocol, rx_gy, fractions) -> None:
    # 2 × 4 Gy, 1 × 10 Gy and 5 × 4 Gy declared palliative are SBRT by their numbers: graded
    case = Case.model_validate({"courses": [{"plan": "S", "intent": "palliative"}]})
    (f,) = findings_of(_cord_in_sbrt(table_protocol, 40.0, rx_gy, fractions, case), "T-CORD-MAX")
    assert f.status is Status.FAIL


def test_a_declaration_the_numbers_contradict_is_reported(consensus) -> None:
    # a lung metastasis treated 80 Gy / 5 fx: SBRT is the expected regime (PASS), the declaration
    # contradicts the numbers (WARN)
    rois = [*issue_rois(), box_roi(6, "PTV_Met_Lung", Box(40, 50), interpreted_type="PTV")]
    export = treatment(rois, [(plan("C1", 80.0, 5, target_roi=6), banded_dose([(37.5, 52.5, 80.0)]))])
    case = Case.model_validate({"courses": [{"plan": "C1", "technique": "conventional"}]})
    report = run_check(export, protocol_for_check("esophagus-oligomet-2025"), case=case, threads=1)
    (f,) = findings_of(report, "INT-FRACTIONATION")
    assert f.status is Status.WARN, f.message
    assert "declared conventional in the case file, but 80 Gy / 5 fx" in f.message
    assert "the SBRT limits are graded" in f.message
    assert findings_of(report, "TG101-CORD-MAX")


def test_a_palliative_single_8_gy_fraction_is_no_conflict() -> None:
    from plancheck.radiobiology import summarize_fractionation
    from plancheck.rules.context import CourseInfo
    from plancheck.model.case import CourseDeclaration

    def info(rx, n, **d):
        course = treatment([], [(plan("S", rx, n), banded_dose([]))]).courses[0]
        return CourseInfo(course, rx, n, summarize_fractionation(rx, n), CourseDeclaration(plan="S", **d))
    assert info(8.0, 1, intent="palliative").is_sbrt is False
    assert info(8.0, 1, intent="palliative").declaration_conflict == ""
    assert info(8.0, 1, technique="conventional").is_sbrt is True      # not declared palliative
    assert info(8.0, 1, technique="conventional").declaration_conflict
    assert info(30.0, 10, intent="palliative").is_sbrt is False         # 3 Gy/fx: not SBRT by numbers
    assert info(30.0, 10, intent="palliative").declaration_conflict == ""


def test_a_course_declared_sbrt_gets_the_sbrt_checks_whatever_its_numbers(table_protocol) -> None:
    # 3 Gy/fx in 5 fx is not SBRT by numbers; declared sbrt, the 5-fraction limit applies
    case = Case.model_validate({"courses": [{"plan": "S", "technique": "sbrt"}]})
    (f,) = findings_of(_cord_in_sbrt(table_protocol, 31.0, 15.0, 5, case), "T-CORD-MAX")
    assert f.status is Status.FAIL


def test_a_course_that_cannot_be_placed_is_not_evaluated_never_conventional(table_protocol) -> None:
    (f,) = findings_of(_cord_in_sbrt(table_protocol, 5.0, 50.0, None), "T-CORD-MAX")
    assert f.status is Status.NOT_EVALUATED
    assert "cannot be placed" in f.message


def test_a_plan_of_several_fraction_groups_is_never_graded_on_its_summed_fractions(consensus) -> None:
    # One RT Plan, two fraction groups: 25 fx to a primary and a 3 fx SBRT boost (8 Gy/fx). The
    # plan's dose is their sum; the cord's 22 Gy all comes from the boost. The truth: EQD2₂ =
    # 22·(22/3 + 2)/4 = 51.33 Gy > 45 Gy (OAR-CORD FAIL) and 22 Gy > 21.9 Gy, the 3-fraction
    # cord maximum (TG101-CORD-MAX FAIL). Taken as 74 Gy / 28 fx (2.64 Gy/fx, not SBRT) it read
    # EQD2₂ = 22·(22/28 + 2)/4 = 15.32 Gy and no SBRT limit: PASS (the false PASS). Which group
    # gives a point its dose is not known from the sum, so neither is graded: NOT EVALUATED.
    from dataclasses import replace
    from plancheck.model import FractionGroup

    two_groups = replace(plan("P", 74.0, 25), fraction_groups=(FractionGroup(1, 25), FractionGroup(2, 3)))
    export = treatment([box_roi(1, "SpinalCord", CORD)], [(two_groups, banded_dose([(-2.5, 27.5, 22.0)]))])
    report = run_check(export, consensus, threads=1)
    (cord,) = findings_of(report, "OAR-CORD")
    assert cord.status is Status.NOT_EVALUATED
    assert [m.status for m in cord.measurements] == [Status.PASS, Status.NOT_EVALUATED]  # 22 Gy physical ≤ 45 Gy
    assert cord.measurements[0].value == pytest.approx(22.0, abs=TOL_GY)
    assert "2 fraction groups (25 + 3 fx) whose doses are summed" in cord.message
    for rule_id in ("TG101-CORD-MAX", "TG101-CORD-D0_35CC"):
        (f,) = findings_of(report, rule_id)
        assert f.status is Status.NOT_EVALUATED and "cannot be placed" in f.message
    (fx,) = findings_of(report, "INT-FRACTIONATION")
    assert fx.status is Status.NOT_EVALUATED and "fraction groups" in fx.message
    # the groups are courses of different kinds in one plan: the composite maxima apply, and
    # cannot be computed (EQD2 of the summed dose): NOT EVALUATED, not "one course"
    (composite,) = findings_of(report, "COMP-CORD-MAX")
    assert composite.status is Status.NOT_EVALUATED and "fraction groups" in composite.message


def test_a_target_no_course_can_be_attributed_to_is_not_evaluated_by_regime_rules(consensus) -> None:
    # PTV_Met receives 30 Gy from the only plan (50 Gy / 5 fx, whose dose reference names no ROI):
    # a median of 60 % of its prescription, below the 80 % that attributes a target to a plan. Its
    # course, so its regime, is not known: the SBRT and conventional coverage rules are NOT
    # EVALUATED for it (before: "not applicable", and the underdosed target vanished from them).
    ptv = box_roi(1, "PTV_Met", Box(40, 59), interpreted_type="PTV")
    report = run_check(treatment([ptv], [(plan("S", 50.0, 5), banded_dose([(32.5, 67.5, 30.0)]))]), consensus, threads=1)
    for rule_id in ("COV-SBRT-V100", "COV-CONV-V100"):
        (f,) = findings_of(report, rule_id)
        assert f.status is Status.NOT_EVALUATED
        assert "no plan prescribes to or covers PTV_Met, so its regime is not known" in f.message


def test_a_target_of_a_plan_left_out_of_the_check_is_that_plans_business(consensus) -> None:
    # Same PTV_Met and dose, but a plan left out of this check (--plan chose the other course)
    # prescribes to ROI 1 of this structure set: its regime-specific rules are that plan's check's,
    # neither graded here nor NOT EVALUATED ("not applicable": no target of this check's courses).
    ptv = box_roi(1, "PTV_Met", Box(40, 59), interpreted_type="PTV")
    export = treatment([ptv], [(plan("S", 50.0, 5), banded_dose([(32.5, 67.5, 30.0)]))])
    other = LeftOutPlan("1.2.3.4", "C_Met", "not selected by --plan",
                        structure_set_uid=export.structure_sets[0].sop_instance_uid, target_rois=frozenset({1}))
    report = run_check(dataclasses.replace(export, left_out=(other,)), consensus, threads=1)
    for rule_id in ("COV-SBRT-V100", "COV-CONV-V100"):
        assert not [f for f in report.findings if f.rule_id == rule_id]
        assert rule_id in {n.rule_id for n in report.not_applicable}
    # a left-out plan of another structure set says nothing about this one's ROI 1
    unrelated = dataclasses.replace(other, structure_set_uid="1.2.3.99")
    report = run_check(dataclasses.replace(export, left_out=(unrelated,)), consensus, threads=1)
    (f,) = findings_of(report, "COV-SBRT-V100")
    assert f.status is Status.NOT_EVALUATED


def test_a_protocol_alpha_beta_of_an_organ_applies_to_its_prv(tmp_path: Path) -> None:
    # A clinic sets the cord's α/β to 0.87 Gy. OAR-CORD measures the PRV (contoured): 38 Gy in
    # 45 Gy / 15 fx (not conventional: EQD2 graded too). With the cord's 0.87 Gy: EQD2 =
    # 38·(38/15 + 0.87)/2.87 = 45.06 Gy > 45 Gy, FAIL; the table's 2 Gy for SpinalCord_* gave
    # 38·(38/15 + 2)/4 = 43.07 Gy, a PASS by the clinic's own α/β.
    clinic = tmp_path / "clinic.yaml"
    clinic.write_text('schema_version: 1\nid: clinic-ab\ntitle: clinic\nversion: "1"\n'
                      "extends: [esophagus-oligomet-2025]\nalpha_beta_gy: {SpinalCord: 0.87}\n", encoding="utf-8")
    export = treatment(issue_rois(), [(plan("S", 45.0, 15), banded_dose([(-2.5, 27.5, 38.0)]))])
    (cord,) = findings_of(run_check(export, protocol_for_check(str(clinic)), threads=1), "OAR-CORD")
    assert cord.status is Status.FAIL
    assert cord.measurements[1].value == pytest.approx(38 * (38 / 15 + 0.87) / 2.87, abs=TOL_GY)
    assert cord.details["alpha_beta_gy"] == 0.87
    assert "for SpinalCord, the organ of the PRV SpinalCord_PRV05" in cord.details["alpha_beta_source"]


# ---------------------------------------------------------------------------- airways


TRACHEA_3CC = Box(200, 210, -5, 5)   # 10·10·30 = 3 cc
BRONCHUS_3CC = Box(220, 230, -5, 5)  # 3 cc


@pytest.mark.parametrize("dose_gy, status", [(30.0, Status.FAIL), (10.0, Status.PASS)])
def test_trachea_and_bronchus_share_one_4cc_allowance(consensus, dose_gy, status) -> None:
    # Each airway is 3 cc: D4cc of either alone does not exist. Their union is 6 cc at a
    # uniform dose, so D4cc(union) is that dose: 30 Gy > 16.5 Gy (5 fx) fails, 10 Gy passes.
    rois = [box_roi(5, "Trachea", TRACHEA_3CC), box_roi(6, "Bronchus", BRONCHUS_3CC)]
    export = treatment(rois, [(plan("S", 50.0, 5), banded_dose([(192.5, 237.5, dose_gy)]))])
    report = run_check(export, protocol_for_check("esophagus-oligomet-2025"), threads=1)
    (f,) = findings_of(report, "TG101-AIRWAY-D4CC")
    assert f.status is status
    assert f.measured == pytest.approx(dose_gy, abs=TOL_GY)


@pytest.mark.parametrize("dose_gy, status", [(30.0, Status.FAIL), (10.0, Status.NOT_EVALUATED)])
def test_a_missing_bronchus_makes_the_airway_limit_certain_only_when_violated(consensus, dose_gy, status) -> None:
    # Only a 6 cc trachea (10·20·30 mm) is contoured. D4cc of the trachea is a lower bound of
    # D4cc of trachea ∪ bronchus: 30 Gy > 16.5 Gy is a certain FAIL; 10 Gy proves nothing.
    rois = [box_roi(5, "Trachea", Box(200, 210, -10, 10))]
    export = treatment(rois, [(plan("S", 50.0, 5), banded_dose([(192.5, 217.5, dose_gy)]))])
    report = run_check(export, consensus, threads=1)
    (f,) = findings_of(report, "TG101-AIRWAY-D4CC")
    assert f.status is status
    assert "Bronchus is not contoured" in f.message


# ---------------------------------------------------------------------------- protocol format

@pytest.mark.parametrize("field, value, match", [
    ("dose_kind", "eqd2", "'dose_kind' is now 'dose_basis'"),
    ("other_fractions", "convert_eqd2", "convert_eqd2' was removed"),
])
def test_old_fields_are_refused_with_the_reason(tmp_path: Path, field, value, match) -> None:
    text = TABLE_PROTOCOL.replace("    course: sbrt\n", f"    course: sbrt\n    {field}: {value}\n")
    path = tmp_path / "old.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError, match=match):
        load_protocol(str(path))


def test_every_dvh_rule_states_its_dose_basis(tmp_path: Path) -> None:
    path = tmp_path / "nobasis.yaml"
    path.write_text(TABLE_PROTOCOL.replace("    dose_basis: physical\n", ""), encoding="utf-8")
    with pytest.raises(ProtocolError, match="dose_basis"):
        load_protocol(str(path))


# ---------------------------------------------------------------------------- several courses: composite maxima

def test_composite_cord_maximum_of_a_conventional_and_an_sbrt_course(consensus) -> None:
    # C1 60 Gy/30 fx gives the cord PRV 47 Gy (EQD2₂ 41.908 Gy); C2 50 Gy/5 fx gives it 10 Gy:
    # EQD2₂(10 Gy/5 fx) = 10·(2 + 2)/4 = 10 Gy. Sum 51.908 Gy > 50 (≤ 54 acceptable): WARN.
    export = treatment(issue_rois(), [(plan("C1", 60.0, 30), banded_dose(C1_BANDS)),
                                      (plan("C2", 50.0, 5), banded_dose([(-2.5, 27.5, 10.0)]))])
    (f,) = findings_of(run_check(export, consensus, threads=1), "COMP-CORD-MAX")
    assert f.measured == pytest.approx(eqd2(47, 30, 2) + 10.0, abs=TOL_GY)
    assert f.status is Status.WARN
    assert f.courses == ("C1", "C2")


def test_composite_maxima_do_not_apply_to_one_course(consensus) -> None:
    export = treatment(issue_rois(), [(plan("C1", 60.0, 30), banded_dose(C1_BANDS))])
    report = run_check(export, consensus, threads=1)
    assert "COMP-CORD-MAX" in {n.rule_id for n in report.not_applicable}


def test_the_esophagus_composite_maximum_excludes_the_targets(consensus) -> None:
    # Esophagus x 250..290, PTV x 250..270 (same planes). C1 (60 Gy/30 fx): 66 Gy on voxel centres
    # x ≤ 265, 40 Gy from x = 270 on, so the esophagus outside the PTV (x ≥ 270) gets exactly 40 Gy.
    # C2 (20 Gy/5 fx) gives the whole region 20 Gy. EQD2₃: 40/30 fx → 40·(1.3333 + 3)/5 = 34.667 Gy;
    # 20/5 fx → 20·(4 + 3)/5 = 28 Gy; outside the PTV 62.667 Gy ≤ 75: PASS. Inside the PTV it
    # would be 66·(2.2 + 3)/5 + 28 = 96.64 Gy: a FAIL had the target not been excluded.
    rois = [box_roi(7, "Esophagus", Box(250, 290, -5, 5)), box_roi(8, "PTV_Boost", Box(250, 270, -8, 8), interpreted_type="PTV")]
    export = treatment(rois, [(plan("C1", 60.0, 30, target_roi=8), banded_dose([(230, 267.5, 66.0), (267.5, 320, 40.0)])),
                              (plan("C2", 20.0, 5), banded_dose([(230, 320, 20.0)]))])
    (f,) = findings_of(run_check(export, consensus, threads=1), "COMP-ESO-MAX")
    assert f.measured == pytest.approx(eqd2(40, 30, 3) + eqd2(20, 5, 3), abs=TOL_GY)
    assert f.status is Status.PASS
    assert "minus PTV_Boost" in f.details["structure_match"]


# ---------------------------------------------------------------------------- a metric per column

PARALLEL_PROTOCOL = """
schema_version: 1
id: test-parallel
title: spared volume by fractions
version: "1"
rules:
  - id: T-SPARED
    kind: dvh
    title: at least 8 cc below the threshold
    category: oar
    structure: Liver
    metric: "CV10Gy[cc]"
    metric_by_fractions: {3: "CV10Gy[cc]", 5: "CV12Gy[cc]"}
    dose_basis: physical
    course: sbrt
    limits_by_fractions: {3: {unit: cc, lower: {per_protocol: 8}}, 5: {unit: cc, lower: {per_protocol: 8}}}
    provenance: {source: test, section: "1", confidence: institutional}
"""


@pytest.mark.parametrize("fractions, rx_gy, spared_cc, status", [
    (3, 30.0, 6.0, Status.FAIL),   # CV10Gy: only the 0 Gy half (6 cc) is below 10 Gy: 6 < 8 cc
    (5, 50.0, 12.0, Status.PASS),  # CV12Gy: both halves (0 and 11 Gy) are below 12 Gy: 12 cc
    (4, 40.0, 6.0, Status.FAIL),   # 4 fx: the 3-fraction column and its metric (CV10Gy)
])
def test_the_threshold_dose_follows_the_fraction_column(tmp_path: Path, fractions, rx_gy, spared_cc, status) -> None:
    path = tmp_path / "parallel.yaml"
    path.write_text(PARALLEL_PROTOCOL, encoding="utf-8")
    # a 12 cc liver: 6 cc (x 300..320, z 0..15) at 11 Gy, 6 cc (x 340..360, z 15..30) at 0 Gy
    liver = box_roi(9, "Liver", Box(300, 320, z0=0, z1=15), Box(340, 360, z0=15, z1=30))
    export = treatment([liver], [(plan("S", rx_gy, fractions), banded_dose([(292.5, 327.5, 11.0)]))])
    (f,) = findings_of(run_check(export, load_protocol(str(path)), threads=1), "T-SPARED")
    assert f.measured == pytest.approx(spared_cc, abs=0.01)
    assert f.status is status


# ---------------------------------------------------------------------------- one name, one α/β

def test_plancheck_dvh_gives_a_clinic_named_cord_the_cord_alpha_beta() -> None:
    # "Cord" and "SpinalCord" are the same organ: both get α/β = 2 Gy. At 47 Gy in 30 fx,
    # EQD2₂ = 47·(1.5667 + 2)/4 = 41.908 Gy for both (3 Gy would give 42.88 Gy).
    from plancheck.analysis.dvh_tables import DoseKindRequest, dvh_tables
    from plancheck.radiobiology import DoseKind

    rois = [box_roi(1, "Cord", CORD), box_roi(2, "SpinalCord", Box(10, 16, 5, 11))]
    export = treatment(rois, [(plan("C1", 60.0, 30), banded_dose([(-2.5, 27.5, 47.0)]))])
    (table,) = dvh_tables(export, metrics=["Max[Gy]"], dose_kind=DoseKindRequest(DoseKind.EQD2))
    by_name = {row.roi.name: row for row in table.structures}
    assert by_name["Cord"].alpha_beta_gy == by_name["SpinalCord"].alpha_beta_gy == 2.0
    assert "Cord is SpinalCord" in by_name["Cord"].alpha_beta_source
    for row in by_name.values():
        assert row.metrics[0].value == pytest.approx(eqd2(47, 30, 2), abs=TOL_GY)


# ---------------------------------------------------------------------------- planning helpers
# A ring drawn around the primary PTV is a planning helper, not a target: it must not be
# subtracted from the esophagus in COMP-ESO-MAX ("Esophagus − PTVs"). Esophagus x -5..100,
# PTV_Eso x -5..20 (prescribed by C1), ring x 20..60. C1 (60 Gy/30 fx) gives 90 Gy to voxel
# centres x 20..40 (band 17.5..42.5), 0 beyond; C2 (50 Gy/5 fx) treats a lung metastasis far away.
# The esophagus outside the PTV holds 90 Gy/30 fx: EQD2₃ = 90·(3 + 3)/5 = 108 Gy > 100 (acceptable):
# FAIL. With the ring subtracted only x 60..100 (0 Gy) would be left: a false PASS.
@pytest.mark.parametrize("ring_name, interpreted_type", [
    ("PTV_Ring", "ORGAN"),        # a helper word in the name
    ("PTV_Shell2cm", "ORGAN"),
    ("PTV_2", "CONTROL"),         # a target-like name of a helper's Interpreted Type
    ("PTV_exp", "AVOIDANCE"),
])
def test_a_ring_around_the_ptv_is_not_subtracted_from_the_esophagus(consensus, ring_name, interpreted_type) -> None:
    rois = [box_roi(1, "Esophagus", Box(-5, 100)), box_roi(2, "PTV_Eso", Box(-5, 20), interpreted_type="PTV"),
            box_roi(3, ring_name, Box(20, 60), interpreted_type=interpreted_type),
            box_roi(4, "PTV_Met_Lung", Box(200, 220), interpreted_type="PTV")]
    export = treatment(rois, [(plan("C1", 60.0, 30, 2), banded_dose([(-12.5, 17.5, 60.0), (17.5, 42.5, 90.0)])),
                              (plan("C2", 50.0, 5, 4), banded_dose([(190, 230, 50.0)]))])
    (f,) = findings_of(run_check(export, consensus, threads=1), "COMP-ESO-MAX")
    assert f.status is Status.FAIL and f.measured == pytest.approx(eqd2(90, 30, 3), abs=TOL_GY)
    assert ring_name not in f.details["structure_match"]


def test_an_ambiguous_member_is_not_left_out_of_a_union(consensus) -> None:
    # SBRT 50 Gy/5 fx. Trachea (x 100..120) and Bronchus_Main_L (x 130..140) get 0 Gy; two ROIs that
    # are both synonyms of Bronchus ('Bronchi', 'Bronchial_Tree', x 40..60, 12 cc each) lie in the
    # 30 Gy band: the airway's D4cc is 30 Gy > 16.5 Gy. Leaving the ambiguous Bronchus out of
    # "Trachea ∪ Bronchus" measured 0 Gy (a false PASS); it is NOT EVALUATED until mapped.
    rois = [box_roi(1, "Trachea", Box(100, 120)), box_roi(2, "Bronchus_Main_L", Box(130, 140)),
            box_roi(3, "Bronchi", Box(40, 60)), box_roi(4, "Bronchial_Tree", Box(40, 60)),
            box_roi(5, "PTV_Met_Lung", Box(200, 220), interpreted_type="PTV")]
    export = treatment(rois, [(plan("C1", 50.0, 5, 5), banded_dose([(32.5, 67.5, 30.0), (190, 230, 50.0)]))])
    report = run_check(export, consensus, threads=1)
    for rule_id in ("TG101-AIRWAY-D4CC", "TG101-AIRWAY-MAX"):
        (f,) = findings_of(report, rule_id)
        assert f.status is Status.NOT_EVALUATED and "2 structures could be Bronchus" in f.message
    mapped = run_check(export, consensus, user_mapping={"Bronchus": "Bronchi"}, threads=1)
    (f,) = findings_of(mapped, "TG101-AIRWAY-D4CC")
    assert f.status is Status.FAIL and f.measured == pytest.approx(30.0, abs=TOL_GY)


# ---------------------------------------------------------------------------- one lung for both
# External x -100..300 (its midline x = 100). The hot lung (LUNG_HOT, x 40..59, 24 Gy) lies left of
# the midline, the cold one (x 140..171, z 30..60, 18.6 cc, 0 Gy) right of it. Both lungs: V20 = 11.4/30
# = 38 % > 28 %: FAIL. A "Lungs" that is the cold lung alone reads V20 = 0 %: a false PASS; it lies
# wholly on one side of the midline, so it is NOT EVALUATED (unless the user maps it: one lung left).
BODY = Box(-100, 300, -35, 35, z0=-10, z1=70)
COLD_RIGHT = Box(140, 171, z0=30, z1=60)


def _lungs_report(consensus, *lung_boxes, name="Lungs", mapping=None):
    rois = [box_roi(9, "External", BODY, interpreted_type="EXTERNAL"), box_roi(3, name, *lung_boxes),
            box_roi(4, "Lung_L", LUNG_HOT), box_roi(5, "PTV_Eso", Box(200, 220), interpreted_type="PTV")]
    bands = [(32.5, 67.5, 24.0), (190, 230, 60.0)]
    return run_check(treatment(rois, [(plan("C1", 60.0, 30, 5), banded_dose(bands))]), consensus,
                     user_mapping=mapping, threads=1)


def test_a_lungs_structure_of_one_lung_is_not_graded_as_both(consensus) -> None:
    (both,) = findings_of(_lungs_report(consensus, LUNG_HOT, COLD_RIGHT), "OAR-LUNG-V20")
    assert both.status is Status.FAIL and both.measured == pytest.approx(38.0, abs=TOL_PCT)
    (one,) = findings_of(_lungs_report(consensus, COLD_RIGHT), "OAR-LUNG-V20")
    assert one.status is Status.NOT_EVALUATED
    assert "lies on one side of the body's midline (0.0 % of its volume on the other side)" in one.message
    (mapped,) = findings_of(_lungs_report(consensus, COLD_RIGHT, name="Lung_Rest", mapping={"Lungs": "Lung_Rest"}),
                            "OAR-LUNG-V20")
    assert mapped.status is Status.PASS and mapped.measured == pytest.approx(0.0, abs=TOL_PCT)
