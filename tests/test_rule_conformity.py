"""The ``conformity`` rule kind: Paddick CI, RTOG CI, gradient index, R50%.

By hand, for TV = 10 cc, TV_PIV = 9.5 cc, PIV = 12 cc, PIV50 = 48 cc:
Paddick CI = 9.5² / (10 · 12) = 0.752083…; RTOG CI = 12/10 = 1.2; GI = 48/12 = 4; R50% = 48/10 = 4.8.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from plancheck.dicom import read_export
from plancheck.dvh.metrics import MetricValue
from plancheck.model import Contour, Roi
from plancheck.model.export import Course
from plancheck.model.plan import DoseReference, FractionGroup, Plan
from plancheck.protocol.loader import Protocol
from plancheck.radiobiology import summarize_fractionation
from plancheck.rules.context import CheckContext, CourseInfo, StructureLookup, TargetGroup
from plancheck.rules.findings import Status
from plancheck.rules.kinds.conformity_rule import ConformityRule, conformity_indices, evaluate_conformity_rule

PROV = {"source": "Paddick 2000", "section": "§4 COV-SBRT", "confidence": "companion"}
SAMPLE = Path(__file__).resolve().parents[1] / "sample_dicom"


def test_indices_by_hand():
    ix = conformity_indices(10.0, 9.5, 12.0, 48.0)
    assert ix["paddick_ci"] == pytest.approx(9.5 ** 2 / 120)
    assert ix["rtog_ci"] == pytest.approx(1.2)
    assert ix["gradient_index"] == pytest.approx(4.0)
    assert ix["r50"] == pytest.approx(4.8)
    assert math.isnan(conformity_indices(10.0, 0.0, 0.0, 5.0)["gradient_index"])


def rule(**fields) -> ConformityRule:
    base = {"id": "COV-CI", "kind": "conformity", "title": "conformity", "category": "coverage", "provenance": PROV,
            "measure": "paddick_ci", "target": {"role": "metastasis"}, "limits": {"lower": {"per_protocol": 0.8, "acceptable": 0.7}}}
    base.update(fields)
    return ConformityRule.model_validate(base)


def _roi(number: int, name: str) -> Roi:
    return Roi(number, name, "", (Contour(np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=float)),))


class FakeContext:
    """The part of CheckContext the rule uses, with DVH metrics given in a table:
    ``volumes[(roi name, metric)] = MetricValue``."""

    def __init__(self, groups, volumes, body: Roi | None):
        self.targets = tuple(groups)
        self.courses = tuple({g.course.label: g.course for g in groups if g.course}.values())
        self.volumes = volumes
        self.body = body

    def structure(self, name):
        if self.body is None:
            return StructureLookup(name, None, None, f"no structure named {name}")
        return StructureLookup(name, self.body, None)

    def metric(self, spec, roi, courses, conversion=None, prescription_gy=None):
        return self.volumes[(roi.name, spec)]


def _course(label="C2", rx=50.0, n=5) -> CourseInfo:
    plan = Plan(sop_instance_uid="1.2", label=label, fraction_groups=(FractionGroup(1, n),),
                dose_references=(DoseReference(1, "VOLUME", "TARGET", "", 99, rx),))
    return CourseInfo(Course(plan, None, None), rx, n, summarize_fractionation(rx, n))  # type: ignore[arg-type]


def _group(name, number, info) -> TargetGroup:
    return TargetGroup("metastasis", ("metastasis", name, None), {"PTV": _roi(number, name)}, info, "plan prescribes to it")


def _v(value, lower=None, upper=None, reason=None) -> MetricValue:
    return MetricValue("m", value, "cc", value if lower is None else lower, value if upper is None else upper, reason)


def _volumes(ptv="PTV_A", tv=10.0, tv_piv=9.5, piv=12.0, piv50=48.0):
    return {(ptv, "Volume[cc]"): _v(tv), (ptv, "V100%[cc]"): _v(tv_piv),
            ("External", "V100%[cc]"): piv if isinstance(piv, MetricValue) else _v(piv),
            ("External", "V50%[cc]"): _v(piv50)}


@pytest.mark.parametrize(("measure", "limits", "expected", "status"), [
    ("paddick_ci", {"lower": {"per_protocol": 0.8, "acceptable": 0.7}}, 9.5 ** 2 / 120, Status.WARN),
    ("rtog_ci", {"upper": {"per_protocol": 1.2, "acceptable": 1.5}}, 1.2, Status.PASS),
    ("gradient_index", {"upper": {"per_protocol": 3.0, "acceptable": 3.5}}, 4.0, Status.FAIL),
    ("r50", {"upper": {"per_protocol": 5.0}}, 4.8, Status.PASS),
])
def test_rule_by_hand(measure, limits, expected, status):
    ctx = FakeContext([_group("PTV_A", 20, _course())], _volumes(), _roi(1, "External"))
    [f] = evaluate_conformity_rule(rule(measure=measure, limits=limits), ctx)
    assert f.measured == pytest.approx(expected)
    assert f.status is status
    assert "PIV includes" not in f.message


def test_limits_by_target_volume():
    # RTOG 0915-like rows: a 10 cc PTV takes the ≤ 13.2 cc row (R50% ≤ 4.7, acceptable 5.8): 4.8 → WARN
    rows = [{"max_cc": 7.4, "limits": {"upper": {"per_protocol": 5.1, "acceptable": 6.0}}},
            {"max_cc": 13.2, "limits": {"upper": {"per_protocol": 4.7, "acceptable": 5.8}}}]
    ctx = FakeContext([_group("PTV_A", 20, _course())], _volumes(), _roi(1, "External"))
    [f] = evaluate_conformity_rule(rule(measure="r50", limits=None, limits_by_target_volume=rows), ctx)
    assert f.status is Status.WARN and "(limit for targets ≤ 13.2 cc)" in f.limit
    big = FakeContext([_group("PTV_A", 20, _course())], _volumes(tv=20.0), _roi(1, "External"))
    [f] = evaluate_conformity_rule(rule(measure="r50", limits=None, limits_by_target_volume=rows), big)
    assert f.status is Status.NOT_EVALUATED and f.message == "PTV_A is 20 cc: the table of R50% limits ends at 13.2 cc"


def test_two_targets_in_one_course_are_named():
    info = _course()
    groups = [_group("PTV_A", 20, info), _group("PTV_B", 21, info)]
    volumes = {**_volumes("PTV_A"), **_volumes("PTV_B")}
    fa, fb = evaluate_conformity_rule(rule(measure="rtog_ci", limits={"upper": {"per_protocol": 2}}), FakeContext(groups, volumes, _roi(1, "External")))
    assert "PIV includes the dose to PTV_B, treated by the same course" in fa.message
    assert fb.details["other_targets_in_course"] == ["PTV_A"]


def test_body_missing_and_piv_outside_the_grid():
    ctx = FakeContext([_group("PTV_A", 20, _course())], _volumes(), None)
    [f] = evaluate_conformity_rule(rule(), ctx)
    assert f.status is Status.NOT_EVALUATED
    assert f.message == "body structure External: no structure named External; PIV cannot be measured"
    # PIV known only within [12, 12.5] cc: RTOG CI in [1.2, 1.25], graded only if the whole range grades alike
    piv = _v(None, 12.0, 12.5, "part of the structure is outside the dose grid")
    ctx = FakeContext([_group("PTV_A", 20, _course())], _volumes(piv=piv), _roi(1, "External"))
    [ok] = evaluate_conformity_rule(rule(measure="rtog_ci", limits={"upper": {"per_protocol": 1.3}}), ctx)
    assert ok.status is Status.PASS and ok.measured is None and "between 1.2 and 1.25" in ok.message
    [unsure] = evaluate_conformity_rule(rule(measure="rtog_ci", limits={"upper": {"per_protocol": 1.22}}), ctx)
    assert unsure.status is Status.NOT_EVALUATED and "cannot be graded" in unsure.message


@pytest.fixture(scope="module")
def sample_context() -> CheckContext:
    if not SAMPLE.is_dir():
        pytest.skip("sample_dicom not present")
    return CheckContext(read_export(SAMPLE), Protocol("test", "test", "0", "", ("test",), (), {}, {}, ""))


def test_sample_sbrt_indices_match_the_definitions(sample_context):
    ctx = sample_context
    body = ctx.structure("External").roi
    for measure in ("paddick_ci", "rtog_ci", "gradient_index", "r50"):
        findings = evaluate_conformity_rule(rule(measure=measure, target={"role": "metastasis", "regime": "sbrt"},
                                                 limits={"lower": {"per_protocol": 0}}), ctx)
        assert [f.structures[0] for f in findings] == ["PTV_Met_Lung", "PTV_Met_Vert"]
        for f in findings:
            group = next(g for g in ctx.targets if g.label == f.structures[0])
            info, rx = group.course, group.course.prescription_gy
            tv = ctx.metric("Volume[cc]", group.ptv, [info]).value
            tv_piv = ctx.metric("V100%[cc]", group.ptv, [info], None, rx).value
            piv = ctx.metric("V100%[cc]", body, [info], None, rx).value
            piv50 = ctx.metric("V50%[cc]", body, [info], None, rx).value
            assert f.measured == pytest.approx(conformity_indices(tv, tv_piv, piv, piv50)[measure], rel=1e-12)
    # PIV ≥ TV_PIV and TV ≥ TV_PIV, so 0 < Paddick CI ≤ 1
    [lung, _] = evaluate_conformity_rule(rule(target={"role": "metastasis", "regime": "sbrt"}), ctx)
    assert 0.0 < lung.measured <= 1.0


@pytest.mark.parametrize(("fields", "message"), [
    ({"limits": None}, "give exactly one of 'limits' or 'limits_by_target_volume'"),
    ({"limits": {"unit": "%", "lower": {"per_protocol": 0.8}}}, "ratio without unit"),
    ({"limits": None, "limits_by_target_volume": [{"max_cc": 5, "limits": {"upper": {"per_protocol": 5}}},
                                                  {"max_cc": 2, "limits": {"upper": {"per_protocol": 6}}}]},
     "strictly increasing max_cc"),
    ({"measure": "homogeneity"}, "Input should be 'paddick_ci'"),
    ({"piv_isodose": 100}, "Extra inputs are not permitted"),
])
def test_validation(fields, message):
    with pytest.raises(ValidationError, match=message):
        rule(**fields)
