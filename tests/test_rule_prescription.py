"""The ``prescription`` rule kind (consensus §3 DOS-PRIM, DOS-MET-SBRT, DOS-MET-CONV, DOS-SITE).

Expected values by hand: BED = D(1 + d/(α/β)), EQD2 = BED/(1 + 2/(α/β)).
60 Gy/30 fx: d = 2, BED10 = 72, EQD2₁₀ = 60. 50 Gy/5 fx: d = 10, BED10 = 100.
54 Gy/3 fx: d = 18, BED10 = 151.2. 30 Gy/3 fx: BED10 = 60; with α/β = 3: 30·(1 + 10/3) = 130.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from plancheck.dicom import read_export
from plancheck.model import Contour, Roi
from plancheck.model.case import Case
from plancheck.model.export import Course
from plancheck.model.plan import DoseReference, FractionGroup, Plan
from plancheck.protocol.loader import Protocol
from plancheck.radiobiology import summarize_fractionation
from plancheck.rules.base import RuleNotApplicable
from plancheck.rules.context import CheckContext, CourseInfo, TargetGroup
from plancheck.rules.findings import Status
from plancheck.rules.kinds.prescription_rule import PrescriptionRule, evaluate_prescription_rule

PROV = {"source": "consensus", "section": "§3", "confidence": "provisional"}
SAMPLE = Path(__file__).resolve().parents[1] / "sample_dicom"


def roi(number: int, name: str) -> Roi:
    square = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], dtype=float)
    return Roi(number, name, "PTV", (Contour(square),))


def course(label: str, rx_gy: float | None, fractions: int | None, refs=()) -> CourseInfo:
    if not refs and rx_gy is not None:
        refs = (DoseReference(1, "VOLUME", "TARGET", "", 99, rx_gy),)
    plan = Plan(sop_instance_uid=f"1.2.{label}", label=label,
                fraction_groups=(FractionGroup(1, fractions),), dose_references=tuple(refs))
    summary = summarize_fractionation(plan.prescription_dose_gy, fractions) if plan.prescription_dose_gy and fractions else None
    return CourseInfo(Course(plan, None, None), plan.prescription_dose_gy, plan.fractions_planned, summary)  # type: ignore[arg-type]


def target(name: str, info: CourseInfo | None, role: str = "metastasis", number: int = 20, organ=None, site=None) -> TargetGroup:
    return TargetGroup(role=role, key=(role, site or "", None), volumes={"PTV": roi(number, name)}, course=info,
                       how="plan prescribes to it" if info else f"no plan prescribes to or covers {name}",
                       organ=organ, site=site)


def ctx(*groups: TargetGroup, case: Case | None = None) -> SimpleNamespace:
    """The part of CheckContext the rule uses: courses, targets and the case."""
    courses = tuple({id(g.course): g.course for g in groups if g.course}.values())
    return SimpleNamespace(courses=courses or (None,), targets=groups, case=case)


def rule(**fields) -> PrescriptionRule:
    base = {"id": "DOS", "kind": "prescription", "title": "dose", "category": "dose", "provenance": PROV}
    base.update(fields)
    return PrescriptionRule.model_validate(base)


GY_LOWER_100 = {"unit": "Gy", "lower": {"per_protocol": 100, "acceptable": 60}}


@pytest.mark.parametrize(("measure", "limits", "rx", "n", "expected", "status"), [
    ("total_dose", {"unit": "Gy", "lower": {"per_protocol": 50}}, 60.0, 30, 60.0, Status.PASS),
    ("dose_per_fraction", {"unit": "Gy", "upper": {"per_protocol": 2.0}}, 60.0, 30, 2.0, Status.PASS),
    ("dose_per_fraction", {"unit": "Gy", "upper": {"per_protocol": 2.0}}, 66.0, 30, 2.2, Status.FAIL),
    ("fractions", {"unit": "fx", "upper": {"per_protocol": 10}}, 50.0, 5, 5.0, Status.PASS),
    ("bed10", GY_LOWER_100, 50.0, 5, 100.0, Status.PASS),
    ("bed10", GY_LOWER_100, 30.0, 3, 60.0, Status.WARN),
    ("bed10", GY_LOWER_100, 24.0, 3, 43.2, Status.FAIL),
    ("eqd2_10", {"unit": "Gy", "lower": {"per_protocol": 50, "acceptable": 40},
                 "upper": {"per_protocol": 60, "acceptable": 66}}, 60.0, 30, 60.0, Status.PASS),
])
def test_measures_by_hand(measure, limits, rx, n, expected, status):
    g = target("PTV_Met", course("C2", rx, n))
    [f] = evaluate_prescription_rule(rule(measure=measure, limits=limits), ctx(g))
    assert f.measured == pytest.approx(expected)
    assert f.status is status
    assert f.courses == ("C2",)


def test_alpha_beta_override():
    g = target("PTV_Met", course("C3", 30.0, 3))
    [f] = evaluate_prescription_rule(rule(measure="bed10", alpha_beta_gy=3, limits={"unit": "Gy", "lower": {"per_protocol": 100}}), ctx(g))
    assert f.measured == pytest.approx(130.0)
    assert "α/β=3 Gy" in f.message and f.details["alpha_beta_gy"] == 3


def test_target_uses_its_own_dose_reference():
    # a plan with a simultaneous boost: PTV_High 60 Gy (ROI 20), PTV_Low 50.4 Gy (ROI 21), 28 fx
    refs = (DoseReference(1, "VOLUME", "TARGET", "", 20, 60.0), DoseReference(2, "VOLUME", "TARGET", "", 21, 50.4))
    info = course("C1", None, 28, refs)
    low = target("PTV_Low", info, role="primary", number=21)
    [f] = evaluate_prescription_rule(rule(measure="total_dose", limits={"unit": "Gy", "lower": {"per_protocol": 50}}), ctx(low))
    assert f.measured == pytest.approx(50.4)
    assert f.details["prescription_source"] == "dose reference 2 of plan C1 (PTV_Low)"


@pytest.mark.parametrize(("rx", "n", "status", "word"), [
    (60.0, 30, Status.PASS, "allowed"),
    (45.0, 15, Status.WARN, "acceptable variation"),
    (50.0, 5, Status.FAIL, "not allowed"),
])
def test_regime(rx, n, status, word):
    g = target("PTVp", course("C1", rx, n), role="primary")
    r = rule(measure="regime", allowed=["conventional"], acceptable=["moderately_hypofractionated"])
    [f] = evaluate_prescription_rule(r, ctx(g))
    assert f.status is status and word in f.message


def test_not_evaluated_without_course_or_fractions():
    lost = target("PTV_Lost", None)
    [f] = evaluate_prescription_rule(rule(measure="bed10", limits=GY_LOWER_100), ctx(lost, target("PTV_X", course("C9", 50.0, 5))))[:1]
    assert f.status is Status.NOT_EVALUATED
    assert f.message == "PTV_Lost: no plan prescribes to or covers PTV_Lost"
    no_fx = target("PTV_Met", course("C2", 50.0, None))
    [f] = evaluate_prescription_rule(rule(measure="bed10", limits=GY_LOWER_100), ctx(no_fx))
    assert f.status is Status.NOT_EVALUATED and "states no number of fractions planned" in f.message


SCHEDULES = [
    {"organ": "lung", "total_dose_gy": 54, "fractions": 3, "max_size_mm": 30, "description": "peripheral lung ≤ 3 cm"},
    {"organ": "lung", "total_dose_gy": 55, "fractions": 5, "description": "abutting chest wall"},
    {"organ": "lung", "total_dose_gy": 60, "fractions": 8, "description": "central lung"},
    {"organ": "bone", "site": "vertebra", "total_dose_gy": 30, "fractions": 3, "description": "vertebra"},
    {"organ": "bone", "total_dose_gy": 35, "fractions": 5},
]


def case_with(*lesions: dict) -> Case:
    return Case.model_validate({"metastases": list(lesions)})


def test_reference_schedule_match_and_mismatch():
    lung = target("PTV_Met_Lung", course("C2", 54.0, 3))
    vert = target("PTV_Met_Vert", course("C3", 24.0, 3))
    case = case_with({"organ": "lung", "size_mm": 18, "target": "PTV_Met_Lung"},
                     {"organ": "bone", "site": "T8 vertebra", "target": "PTV_Met_Vert"})
    f_lung, f_vert = evaluate_prescription_rule(rule(measure="reference_schedule", reference_schedules=SCHEDULES), ctx(lung, vert, case=case))
    assert f_lung.status is Status.PASS
    assert "matches the reference schedule 54 Gy/3 fx (peripheral lung ≤ 3 cm)" in f_lung.message
    assert f_lung.measured == pytest.approx(151.2)
    assert f_vert.status is Status.WARN
    assert "not a reference schedule for this site (30 Gy/3 fx (vertebra), BED10 60 Gy; 35 Gy/5 fx, BED10 59.5 Gy)" in f_vert.message


def test_reference_schedule_size_and_bed_match():
    # a 40 mm lung lesion is not 'peripheral ≤ 3 cm', leaving 55/5 (BED10 115.5) and 60/8 (BED10 105);
    # 50 Gy/5 fx (BED10 100) is neither and below the lowest reference BED10 (105): WARN.
    g = target("PTV_Met_Lung", course("C2", 50.0, 5))
    case = case_with({"organ": "lung", "size_mm": 40, "target": "PTV_Met_Lung"})
    [f] = evaluate_prescription_rule(rule(measure="reference_schedule", reference_schedules=SCHEDULES, match="bed10_not_lower"),
                                     ctx(g, case=case))
    assert f.status is Status.WARN and "54 Gy" not in f.message
    g2 = target("PTV_Met_Lung", course("C2", 48.0, 4))  # BED10 = 48(1 + 1.2) = 105.6 ≥ 105 (60/8)
    [f2] = evaluate_prescription_rule(rule(measure="reference_schedule", reference_schedules=SCHEDULES, match="bed10_not_lower"),
                                      ctx(g2, case=case))
    assert f2.status is Status.PASS and "reaches that of 60 Gy/8 fx (central lung)" in f2.message


def test_reference_schedule_needs_the_case_file():
    g = target("PTV_Met_Lung", course("C2", 54.0, 3))
    [f] = evaluate_prescription_rule(rule(measure="reference_schedule", reference_schedules=SCHEDULES), ctx(g))
    assert f.status is Status.NOT_EVALUATED
    assert f.message == "PTV_Met_Lung: the organ of the lesion is not known without a case file"
    liver = case_with({"organ": "liver", "target": "PTV_Met_Lung"})
    [f] = evaluate_prescription_rule(rule(measure="reference_schedule", reference_schedules=SCHEDULES), ctx(g, case=liver))
    assert f.status is Status.NOT_EVALUATED and "no reference schedule for this site" in f.message


def test_organ_filter():
    lung = target("PTV_Met_Lung", course("C2", 54.0, 3))
    case = case_with({"organ": "lung", "target": "PTV_Met_Lung"})
    with pytest.raises(RuleNotApplicable, match="no target of a bone lesion"):
        evaluate_prescription_rule(rule(measure="bed10", organ="bone", limits=GY_LOWER_100), ctx(lung, case=case))
    [f] = evaluate_prescription_rule(rule(measure="bed10", organ="lung", limits=GY_LOWER_100), ctx(lung, case=case))
    assert f.status is Status.PASS


@pytest.fixture(scope="module")
def sample_context() -> CheckContext:
    if not SAMPLE.is_dir():
        pytest.skip("sample_dicom not present")
    return CheckContext(read_export(SAMPLE), Protocol("test", "test", "0", "", ("test",), (), {}, {}, ""))


def test_sample_prescriptions(sample_context):
    r = rule(measure="bed10", limits=GY_LOWER_100)
    found = {f.structures[0]: f for f in evaluate_prescription_rule(r, sample_context)}
    assert found["PTVp"].measured == pytest.approx(72.0) and found["PTVp"].status is Status.WARN  # 72 < 100, ≥ 60
    assert found["PTV_Met_Lung"].measured == pytest.approx(100.0)
    assert found["PTV_Met_Vert"].measured == pytest.approx(60.0)
    with pytest.raises(RuleNotApplicable, match="no metastasis target treated with a conventional course"):
        evaluate_prescription_rule(rule(measure="eqd2_10", target={"role": "metastasis", "regime": "conventional"},
                                        limits={"unit": "Gy", "lower": {"per_protocol": 50}}), sample_context)


def test_sample_prescription_vs_dose(sample_context):
    r = rule(measure="prescription_vs_dose", target={"volume": "PTV"}, metric="D95%[%]",
             limits={"unit": "%", "lower": {"per_protocol": 98, "acceptable": 95}})
    findings = evaluate_prescription_rule(r, sample_context)
    assert len(findings) == 3
    for f in findings:
        # D95% of a PTV with V100% between 94 % and 96 % lies close to the prescription
        assert 95.0 < f.measured < 105.0, f.message
        assert f.details["metric"] == "D95%[%]"


@pytest.mark.parametrize(("fields", "message"), [
    ({"measure": "bed10"}, "measure: bed10 needs 'limits'"),
    ({"measure": "bed10", "limits": {"unit": "%", "lower": {"per_protocol": 100}}}, "limits.unit must be 'Gy'"),
    ({"measure": "fractions", "limits": {"unit": "Gy", "upper": {"per_protocol": 5}}}, "limits.unit must be 'fx'"),
    ({"measure": "regime"}, "measure: regime needs 'allowed'"),
    ({"measure": "regime", "allowed": ["sbrt"], "limits": GY_LOWER_100}, "not 'limits'"),
    ({"measure": "regime", "allowed": ["ablative"]}, "Input should be 'hyperfractionated'"),
    ({"measure": "total_dose", "allowed": ["sbrt"], "limits": GY_LOWER_100}, "apply to measure: regime"),
    ({"measure": "reference_schedule"}, "needs 'reference_schedules'"),
    ({"measure": "bed10", "limits": GY_LOWER_100, "match": "exact"}, "apply to measure: reference_schedule"),
    ({"measure": "total_dose", "limits": GY_LOWER_100, "alpha_beta_gy": 3}, "alpha_beta_gy applies to measure"),
    ({"measure": "bed10", "limits": GY_LOWER_100, "alpha_beta_gy": 0}, "alpha_beta_gy must be > 0 Gy"),
    ({"measure": "prescription_vs_dose", "metric": "V95%[%]", "limits": {"unit": "%", "lower": {"per_protocol": 95}}},
     "needs a dose metric in \\[%\\]"),
    ({"measure": "prescription_vs_dose", "metric": "D9x%", "limits": {"unit": "%", "lower": {"per_protocol": 95}}},
     "cannot parse DVH metric"),
    ({"measure": "bed10", "limits": GY_LOWER_100, "metric": "D50%[%]"}, "'metric' applies to measure: prescription_vs_dose"),
    ({"measure": "bed10", "limits": GY_LOWER_100, "target": {"volume": "CTV"}}, "target.volume is used only by"),
    ({"measure": "bed10", "limits": GY_LOWER_100, "dose": 60}, "Extra inputs are not permitted"),
])
def test_validation(fields, message):
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


# ------------------------------------------------------------------ organ vocabulary (plancheck.model.organs)
DOS_MET_SBRT_ORGANS = ["lung", "liver", "adrenal", "lymph_node", "non_regional_lymph_node"]  # as the consensus protocol


@pytest.mark.parametrize("organ", ["extra_regional_lymph_node", "distant_lymph_node", "Lymph node",
                                   "non-regional lymph node", "lymph_node"])
def test_every_spelling_of_a_non_regional_node_gets_the_nodal_rule(organ):
    # 25 Gy / 5 fx: BED10 = 25·(1 + 5/10) = 37.5 Gy < 60 Gy: FAIL (before: "not applicable"
    # for extra_regional_lymph_node and distant_lymph_node, which DEF-SCC counts as nodes)
    g = target("PTV_Met_LN", course("C2", 25.0, 5))
    case = case_with({"organ": organ, "target": "PTV_Met_LN"})
    [f] = evaluate_prescription_rule(rule(measure="bed10", organ=DOS_MET_SBRT_ORGANS, limits=GY_LOWER_100), ctx(g, case=case))
    assert f.status is Status.FAIL and f.measured == pytest.approx(37.5)


def test_an_organ_that_is_not_recognised_is_not_evaluated_never_not_applicable():
    g = target("PTV_Met_X", course("C2", 25.0, 5))
    case = case_with({"organ": "lymphnode station 7", "target": "PTV_Met_X"})
    [f] = evaluate_prescription_rule(rule(measure="bed10", organ=DOS_MET_SBRT_ORGANS, limits=GY_LOWER_100), ctx(g, case=case))
    assert f.status is Status.NOT_EVALUATED
    assert "'lymphnode station 7', which is not a recognised organ name" in f.message


def test_a_recognised_organ_of_another_kind_is_still_not_applicable():
    g = target("PTV_Met_Vert", course("C2", 25.0, 5))
    with pytest.raises(RuleNotApplicable, match="no target of a lung or liver"):
        evaluate_prescription_rule(rule(measure="bed10", organ=DOS_MET_SBRT_ORGANS, limits=GY_LOWER_100),
                                   ctx(g, case=case_with({"organ": "Bone", "target": "PTV_Met_Vert"})))


def test_a_protocol_organ_outside_the_vocabulary_is_refused():
    with pytest.raises(ValidationError, match="organ 'lymph' is not a recognised organ name"):
        rule(measure="bed10", organ=["lung", "lymph"], limits=GY_LOWER_100)
    with pytest.raises(ValidationError, match="organ 'lungs and pleura' is not a recognised"):
        rule(measure="reference_schedule", reference_schedules=[{"organ": "lungs and pleura", "total_dose_gy": 54, "fractions": 3}])


def test_reference_schedules_match_any_spelling_of_the_organ():
    g = target("PTV_Met_Lung", course("C2", 54.0, 3))
    [f] = evaluate_prescription_rule(rule(measure="reference_schedule", reference_schedules=SCHEDULES),
                                     ctx(g, case=case_with({"organ": "Lungs", "size_mm": 18, "target": "PTV_Met_Lung"})))
    assert f.status is Status.PASS
