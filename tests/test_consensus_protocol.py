"""The consensus protocol (esophagus-oligomet-2025 + plan-integrity) end to end, rule by rule.

The full protocol runs once on the canonical sample (``sample_dicom/`` with its ``case.yaml``)
and once on the violations variant, generated here into a temporary directory with its own
case file (``plancheck.synthetic``; no CT, to keep it fast). Every rule's status is asserted:
a dict rule id -> status, or course label (or structure pair) -> status where a rule gives one
finding per course (or per target). ``N/A`` is a rule that does not apply to the case.

Then the situations a plan check must not get wrong: a structure missing, no case file, a
dose grid that does not cover an organ, a malformed protocol file, and a clinic protocol that
overrides a consensus value.

Numbers of the sample (composite EQD2, α/β 3 Gy; cord 2 Gy), from the generator's design in
``plancheck/synthetic/case.py``: Lungs V5Gy ≈ 50 %, V20Gy ≈ 5.5 %; SpinalCord_PRV05
D0.03cc ≈ 34 Gy; SBRT PTV V100% ≈ 97 %; C3 cord D0.03cc ≈ 14 Gy in 3 fx.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from plancheck.dicom.link import read_export
from plancheck.dicom.write import write_case
from plancheck.errors import ProtocolError
from plancheck.model.case import load_case
from plancheck.protocol.loader import load_protocol
from plancheck.rules.findings import Status
from plancheck.rules.runner import CheckReport, protocol_for_check, run_check
from plancheck.synthetic import CaseSpec, build_case
from plancheck.synthetic.case_file import write_case_file

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom"
CONSENSUS = "esophagus-oligomet-2025"
CONSENSUS_FILE = REPO / "constraints" / "protocols" / f"{CONSENSUS}.yaml"

PASS, WARN, FAIL, NE, NA = "PASS", "WARN", "FAIL", "NOT_EVALUATED", "N/A"
C1, C2, C3 = "C1_Eso", "C2_LungMet", "C3_VertMet"


def _per_course(c1: str | None = PASS, c2: str | None = PASS, c3: str | None = PASS) -> dict[str, str]:
    return {label: s for label, s in ((C1, c1), (C2, c2), (C3, c3)) if s is not None}


def _sbrt(c2: str = PASS, c3: str = PASS) -> dict[str, str]:
    return {C2: c2, C3: c3}


#: The sample: a clean plan. WARN only where the case is realistic but not per protocol
#: (3 mm cranio-caudal PTV margin on 3 mm slices; vertebra 30 Gy/3 fx is BED10 60 Gy;
#: lung 50 Gy/5 fx is not the 54 Gy/3 fx reference); NOT_EVALUATED only for abdominal organs
#: the thoracic sample does not contour (Kidneys, Bowel_Small, Duodenum).
SAMPLE_EXPECTED: dict[str, str | dict[str, str]] = {
    "INT-PATIENT": PASS,
    "INT-REFS": _per_course(),
    "INT-DOSE-UNITS": _per_course(),
    "INT-DOSE-SUM": _per_course(),
    "INT-GRID-COVER": _per_course(),
    "INT-GRID-SPACING": _per_course(),
    "INT-HETERO": _per_course(),
    "INT-RX-DOSE": _per_course(),
    "INT-FRACTIONATION": _per_course(),
    "INT-ISO": _per_course(),
    "INT-MACHINE": _per_course(),
    "INT-ENERGY": _per_course(),
    "INT-MU": _per_course(),
    "DEF-SCC": PASS,
    "DEF-AC": NA,  # squamous cell carcinoma
    "DEF-TREAT": PASS,
    "DEF-CLASS": PASS,
    "DEF-STAGE": PASS,
    "TIM-SYS": PASS,
    "TIM-DFI": NA,  # synchronous
    "TIM-PROG": PASS,
    "DOS-PRIM": PASS,
    "DOS-PRIM-FX": PASS,
    "DOS-MET-SBRT": _sbrt(PASS, WARN),  # vertebra 30 Gy / 3 fx: BED10 60 Gy
    "DOS-MET-CONV": NA,  # no metastasis treated conventionally
    "DOS-SITE": _sbrt(WARN, PASS),  # lung 50 Gy / 5 fx is not 54 Gy / 3 fx
    "TGT-NEST-GTV": {"GTVp+CTVp": PASS, "GTV_Met_Lung+PTV_Met_Lung": PASS, "GTV_Met_Vert+PTV_Met_Vert": PASS},
    "TGT-NEST-PTV": {"CTVp+PTVp": PASS, "GTV_Met_Lung+PTV_Met_Lung": PASS, "GTV_Met_Vert+PTV_Met_Vert": PASS},
    "TGT-CTV-CC": PASS,
    "TGT-CTV-RADIAL": PASS,
    "TGT-PTV-RADIAL": PASS,
    "TGT-PTV-CC": WARN,  # 5 mm expansion on 3 mm slices: 3 mm cranio-caudally
    "TGT-PTV-SBRT": {"GTV_Met_Lung+PTV_Met_Lung": PASS, "GTV_Met_Vert+PTV_Met_Vert": PASS},
    "COV-CONV-V100": PASS,
    "COV-CONV-D2": PASS,
    "COV-SBRT-V100": _sbrt(),
    "COV-SBRT-MAX": _sbrt(),
    "COV-SBRT-CI": _sbrt(),
    "COV-SBRT-PADDICK": _sbrt(),
    "COV-SBRT-R50": _sbrt(),
    "OAR-LUNG-V20": PASS,
    "OAR-LUNG-V30": PASS,
    "OAR-LUNG-V5": PASS,
    "OAR-LUNG-MEAN": PASS,
    "OAR-HEART-V30": PASS,
    "OAR-HEART-V40": PASS,
    "OAR-HEART-MEAN": PASS,
    "OAR-CORD": PASS,
    "OAR-STOM-V40": PASS,
    "OAR-STOM-MAX": PASS,
    "OAR-LIVER-V30": PASS,
    "OAR-LIVER-MEAN": PASS,
    "OAR-KID-V20": NE,
    "OAR-BOWEL-V40": NE,
    "OAR-BOWEL-MAX": NE,
    "TG101-CORD-D0_35CC": _sbrt(),
    "TG101-CORD-MAX": _sbrt(),
    "TG101-ESO-D5CC": _sbrt(),
    "TG101-ESO-MAX": _sbrt(),
    "TG101-BPLEX-L-D3CC": _sbrt(),
    "TG101-BPLEX-L-MAX": _sbrt(),
    "TG101-BPLEX-R-D3CC": _sbrt(),
    "TG101-BPLEX-R-MAX": _sbrt(),
    "TG101-HEART-D15CC": _sbrt(),
    "TG101-HEART-MAX": _sbrt(),
    "TG101-GREATVES-D10CC": _sbrt(),
    "TG101-GREATVES-MAX": _sbrt(),
    "TG101-TRACHEA-D4CC": _sbrt(),
    "TG101-TRACHEA-MAX": _sbrt(),
    "TG101-BRONCHUS-D4CC": _sbrt(),
    "TG101-BRONCHUS-MAX": _sbrt(),
    "TG101-CHESTWALL-D1CC": _sbrt(),
    "TG101-CHESTWALL-MAX": _sbrt(),
    "TG101-SKIN-D10CC": _sbrt(),
    "TG101-SKIN-MAX": _sbrt(),
    "TG101-STOMACH-D10CC": _sbrt(),
    "TG101-STOMACH-MAX": _sbrt(),
    "TG101-DUODENUM-D5CC": NE,
    "TG101-DUODENUM-MAX": NE,
    "TG101-BOWEL-D5CC": NE,
    "TG101-BOWEL-MAX": NE,
}

#: The violations variant: what differs from the sample.
VIOLATIONS_CHANGES: dict[str, str | dict[str, str]] = {
    "INT-RX-DOSE": _per_course(WARN),  # PTVp D95% ≈ 93 % of Rx
    "DEF-SCC": FAIL,  # 6 lesions in 4 organs
    "DEF-TREAT": FAIL,  # 3 lesions without a target, 1 with a target not in the plan
    "COV-CONV-V100": FAIL,  # ≈ 74 %: the cranial 3 cm of PTVp under-dosed
    "OAR-LUNG-V20": FAIL,  # ≈ 40 %: full arcs, fields 1 cm too wide
    "OAR-LUNG-V5": FAIL,
    "OAR-LUNG-MEAN": FAIL,
    "OAR-HEART-MEAN": FAIL,  # ≈ 28.5 Gy
    "OAR-CORD": FAIL,  # C1 cord ≈ 50 Gy and C3 not sparing the cord
    "TG101-CORD-D0_35CC": _sbrt(PASS, FAIL),  # ≈ 20.5 Gy > 18 Gy in 3 fx
    "TG101-CORD-MAX": _sbrt(PASS, FAIL),  # ≈ 24.5 Gy > 21.9 Gy in 3 fx
}
VIOLATIONS_EXPECTED = {**SAMPLE_EXPECTED, **VIOLATIONS_CHANGES}


# ---------------------------------------------------------------------------------- fixtures

def _outcomes(report: CheckReport) -> dict[str, str | dict[str, str]]:
    """Rule id -> status; or course label / structure pair -> status for rules with several findings."""
    by_rule: dict[str, list] = {}
    for f in report.findings:
        by_rule.setdefault(f.rule_id, []).append(f)
    out: dict[str, str | dict[str, str]] = {}
    for rule_id, findings in by_rule.items():
        if len(findings) == 1:
            out[rule_id] = findings[0].status.value
        elif all(len(f.courses) == 1 for f in findings) and len({f.courses for f in findings}) == len(findings):
            out[rule_id] = {f.courses[0]: f.status.value for f in findings}
        else:
            out[rule_id] = {"+".join(f.structures): f.status.value for f in findings}
    for na in report.not_applicable:
        out[na.rule_id] = NA
    return out


def _finding(report: CheckReport, rule_id: str, course: str | None = None):
    found = [f for f in report.findings if f.rule_id == rule_id and (course is None or course in f.courses)]
    assert len(found) == 1, (rule_id, course, found)
    return found[0]


@pytest.fixture(scope="module")
def protocol():
    return protocol_for_check(CONSENSUS)


@pytest.fixture(scope="module")
def sample_export():
    if not SAMPLE.is_dir():
        pytest.skip("sample_dicom not present (python scripts/make_sample_dicom.py)")
    return read_export(SAMPLE)


@pytest.fixture(scope="module")
def sample_report(sample_export, protocol):
    return run_check(sample_export, protocol, case=load_case(SAMPLE / "case.yaml"))


@pytest.fixture(scope="module")
def violations_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("violations")
    spec = CaseSpec.variant("violations", include_ct=False)
    write_case(build_case(spec), out, name="violations")
    write_case_file(spec, out)
    return out


@pytest.fixture(scope="module")
def violations_report(violations_dir, protocol):
    return run_check(read_export(violations_dir), protocol, case=load_case(violations_dir / "case.yaml"))


def _subset(protocol, *prefixes: str):
    """The protocol restricted to the rules whose id starts with one of ``prefixes`` (faster reruns)."""
    return dataclasses.replace(protocol, rules=tuple(r for r in protocol.rules if r.rule.id.startswith(prefixes)))


# ---------------------------------------------------------------------------------- rule by rule

def test_expected_tables_name_every_rule(protocol):
    ids = [r.rule.id for r in protocol.rules]
    assert len(ids) == len(set(ids)) == 81  # 13 plan-integrity + 68 consensus rules
    assert set(SAMPLE_EXPECTED) == set(ids)
    assert set(VIOLATIONS_EXPECTED) == set(ids)


@pytest.mark.parametrize("rule_id", list(SAMPLE_EXPECTED))
def test_sample_rule(sample_report, rule_id):
    assert _outcomes(sample_report).get(rule_id) == SAMPLE_EXPECTED[rule_id]


@pytest.mark.parametrize("rule_id", list(VIOLATIONS_EXPECTED))
def test_violations_rule(violations_report, rule_id):
    assert _outcomes(violations_report).get(rule_id) == VIOLATIONS_EXPECTED[rule_id]


def test_sample_is_clean(sample_report):
    statuses = {f.status for f in sample_report.findings}
    assert Status.FAIL not in statuses and Status.ERROR not in statuses
    warned = {(f.rule_id, f.courses) for f in sample_report.findings if f.status is Status.WARN}
    assert warned == {("DOS-MET-SBRT", (C3,)), ("DOS-SITE", (C2,)), ("TGT-PTV-CC", ())}
    not_evaluated = {f.message.split(":")[0] for f in sample_report.findings if f.status is Status.NOT_EVALUATED}
    assert not_evaluated == {"Kidneys", "Bowel_Small", "Duodenum"}
    assert sample_report.summary == {"pass": 126, "warn": 3, "fail": 0, "not_evaluated": 7, "error": 0}


def test_sample_numbers(sample_report):
    # the numbers the generator was tuned for (plancheck's engine on the written files)
    assert _finding(sample_report, "OAR-LUNG-V5").measured == pytest.approx(49.8, abs=1.5)
    assert _finding(sample_report, "OAR-LUNG-V5").measured <= 55.0
    assert _finding(sample_report, "OAR-CORD").measured < 40.0
    assert "EQD2(α/β=2 Gy)" in _finding(sample_report, "OAR-CORD").message
    for course in (C2, C3):
        assert _finding(sample_report, "COV-SBRT-V100", course).measured >= 95.5
    assert _finding(sample_report, "TG101-CORD-MAX", C3).measured < 21.9
    assert _finding(sample_report, "TG101-CORD-D0_35CC", C3).measured < 18.0
    assert _finding(sample_report, "TG101-BPLEX-L-D3CC", C3).measured is not None  # the plexus is > 3 cc


def test_violations_numbers_and_messages(violations_report):
    assert _finding(violations_report, "COV-CONV-V100").measured < 90.0
    assert _finding(violations_report, "OAR-LUNG-V20").measured > 33.0
    assert _finding(violations_report, "TG101-CORD-MAX", C3).measured > 22.9
    assert _finding(violations_report, "TG101-CORD-D0_35CC", C3).measured > 19.0
    assert _finding(violations_report, "OAR-CORD").measured > 60.0
    assert _finding(violations_report, "DEF-SCC").measured == 6
    treat = _finding(violations_report, "DEF-TREAT").message
    assert "4 of 6" in treat and "PTV_Met_Liver: no structure of that name" in treat
    assert "no target declared" in treat


# ---------------------------------------------------------------------------------- degraded inputs

def _rename_roi(export, old: str, new: str):
    def fix(ss):
        return dataclasses.replace(ss, rois=tuple(dataclasses.replace(r, name=new) if r.name == old else r
                                                  for r in ss.rois))
    courses = tuple(dataclasses.replace(c, structure_set=fix(c.structure_set)) for c in export.courses)
    return dataclasses.replace(export, structure_sets=tuple(fix(s) for s in export.structure_sets), courses=courses)


def test_missing_structure_is_not_evaluated_and_named(sample_export, protocol):
    export = _rename_roi(sample_export, "Heart", "Hrt_ContourTBD")
    report = run_check(export, _subset(protocol, "OAR-HEART", "TG101-HEART"), case=None)
    assert {f.rule_id for f in report.findings} == {"OAR-HEART-V30", "OAR-HEART-V40", "OAR-HEART-MEAN",
                                                    "TG101-HEART-D15CC", "TG101-HEART-MAX"}
    for f in report.findings:
        assert f.status is Status.NOT_EVALUATED, f
        assert "no structure named Heart" in f.message


def test_missing_case_file_leaves_clinical_rules_not_evaluated(sample_export, protocol):
    report = run_check(sample_export, _subset(protocol, "DEF-", "TIM-"), case=None)
    ids = {r.rule.id for r in protocol.rules if r.rule.id.startswith(("DEF-", "TIM-"))}
    assert {f.rule_id for f in report.findings} == ids
    for f in report.findings:
        assert f.status is Status.NOT_EVALUATED
        assert f.message.startswith("no case file")


def _crop_z(export, label: str, z_min: float, z_max: float):
    courses = []
    for c in export.courses:
        if c.label == label:
            g = c.dose
            keep = (g.z_mm >= z_min) & (g.z_mm <= z_max)
            c = dataclasses.replace(c, dose=dataclasses.replace(g, dose_gy=g.dose_gy[keep], z_mm=g.z_mm[keep]))
        courses.append(c)
    return dataclasses.replace(export, courses=tuple(courses))


def test_dose_grid_not_covering_an_organ(sample_export, protocol):
    # C3's grid cut at z = 100 mm: the brachial plexus (z 88-136 mm) is 75 % outside it
    export = _crop_z(sample_export, C3, -200.0, 100.0)
    report = run_check(export, _subset(protocol, "TG101-BPLEX", "INT-GRID-COVER"), case=None)
    cover = _finding(report, "INT-GRID-COVER", C3)
    assert cover.status is Status.FAIL
    assert "covers only 25.0% of BrachialPlex_L" in cover.message
    for rule_id in ("TG101-BPLEX-L-D3CC", "TG101-BPLEX-L-MAX", "TG101-BPLEX-R-D3CC", "TG101-BPLEX-R-MAX"):
        assert _finding(report, rule_id, C2).status is Status.PASS
        f = _finding(report, rule_id, C3)
        assert f.status is Status.NOT_EVALUATED
        assert "25.0% of the structure is inside the dose grid" in f.message


def test_composite_with_a_cropped_grid_is_judged_on_bounds(sample_export, protocol):
    # C1's grid cut to z = -75..75 mm: 14 % of the lungs is outside it. A composite metric is an
    # interval; it passes only when the whole interval is within the limit, else NOT_EVALUATED.
    export = _crop_z(sample_export, C1, -75.0, 75.0)
    report = run_check(export, _subset(protocol, "OAR-LUNG"), case=None)
    v20 = _finding(report, "OAR-LUNG-V20")
    assert v20.status is Status.PASS and "between 5.4" in v20.message  # 5.5-19.6 %: certain, ≤ 28 %
    v5 = _finding(report, "OAR-LUNG-V5")
    assert v5.status is Status.NOT_EVALUATED
    assert "85.9% of the structure is inside the dose grid" in v5.message


# ---------------------------------------------------------------------------------- protocol files

def _consensus_rule(rule_id: str) -> dict:
    data = yaml.safe_load(CONSENSUS_FILE.read_text(encoding="utf-8"))
    return next(r for r in data["rules"] if r["id"] == rule_id)


def _write_protocol(path: Path, rules: list[dict], **header) -> Path:
    doc = {"schema_version": 1, "id": "clinic-x", "title": "Clinic X", "version": "1", **header, "rules": rules}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_misspelt_key_names_file_rule_and_field(tmp_path):
    rule = _consensus_rule("OAR-LUNG-V20")
    rule["metrik"] = rule.pop("metric")
    path = _write_protocol(tmp_path / "clinic-x.yaml", [rule])
    with pytest.raises(ProtocolError, match=r"clinic-x\.yaml: .*rule OAR-LUNG-V20, field metrik: Extra inputs"):
        load_protocol(str(path))


def test_wrong_type_names_file_rule_and_field(tmp_path):
    rule = _consensus_rule("OAR-CORD")
    rule["limits"]["upper"]["per_protocol"] = "forty-five"
    path = _write_protocol(tmp_path / "clinic-x.yaml", [rule])
    with pytest.raises(ProtocolError, match=r"clinic-x\.yaml: .*rule OAR-CORD, field limits\.upper\.per_protocol: "
                                            r"Input should be a valid number"):
        load_protocol(str(path))


def _clinic_protocol(tmp_path: Path, v20_limit_percent: float):
    path = _write_protocol(tmp_path / "clinic-x.yaml", [], extends=[CONSENSUS],
                           overrides={"OAR-LUNG-V20": {"limits": {"unit": "%",
                                                                  "upper": {"per_protocol": v20_limit_percent}}}})
    return load_protocol(str(path))


def test_clinic_override_shows_in_provenance(tmp_path, sample_export):
    clinic = _clinic_protocol(tmp_path, 5)
    assert clinic.chain == ("plan-integrity", CONSENSUS, "clinic-x")
    assert clinic.rule("OAR-LUNG-V20").origin == f"{CONSENSUS} (values overridden by clinic-x)"
    report = run_check(sample_export, _subset(clinic, "OAR-LUNG-V20", "OAR-LUNG-V30"),
                       case=load_case(SAMPLE / "case.yaml"))
    v20 = _finding(report, "OAR-LUNG-V20")
    assert v20.status is Status.FAIL  # 5.5 % > the clinic's 5 %
    assert v20.limit == "≤ 5 %"
    assert v20.provenance.protocol == f"{CONSENSUS} (values overridden by clinic-x)"
    assert v20.provenance.confidence == "provisional"  # the consensus rule's, the override does not change it
    v30 = _finding(report, "OAR-LUNG-V30")
    assert v30.status is Status.PASS
    assert v30.provenance.protocol == CONSENSUS


# Regression: stricter_if once replaced an institution's (stricter) base limit instead of adding to it.
def test_stricter_if_never_loosens_an_overridden_limit(tmp_path, sample_export):
    clinic = _clinic_protocol(tmp_path, 5)
    case_path = tmp_path / "case.yaml"
    case_path.write_text((SAMPLE / "case.yaml").read_text(encoding="utf-8").replace(
        "concurrent_chemotherapy: false", "concurrent_chemotherapy: true"), encoding="utf-8")
    report = run_check(sample_export, _subset(clinic, "OAR-LUNG-V20"), case=load_case(case_path))
    v20 = _finding(report, "OAR-LUNG-V20")
    assert v20.status is Status.FAIL, v20.message
    # without a case file both candidate limits (5 % and the stricter-if) fail 5.5 % alike
    report = run_check(sample_export, _subset(clinic, "OAR-LUNG-V20"), case=None)
    assert _finding(report, "OAR-LUNG-V20").status is Status.FAIL
