"""The consensus protocol (esophagus-oligomet-2025 + plan-integrity) end to end, rule by rule.

The full protocol runs once on the canonical sample (``sample_dicom/`` with its ``case.yaml``)
and once on the violations variant, generated here into a temporary directory with its own
case file (``testkit.synthetic``; no CT, to keep it fast): every rule answers (a finding or
"not applicable"), none with an internal error.

Then the situations a plan check must not get wrong: a structure missing, no case file, a
dose grid that does not cover an organ, a malformed protocol file, and a clinic protocol that
overrides a consensus value.

The grading of each limit on its dose basis is proved on hand-built cases in
``tests/test_dose_basis.py``; here the protocol runs end to end on generated data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from plancheck.dicom.link import read_export
from testkit.write import write_case
from plancheck.errors import ProtocolError
from plancheck.model.case import load_case
from plancheck.protocol.loader import load_protocol
from plancheck.rules.findings import Status
from plancheck.rules.runner import CheckReport, protocol_for_check, run_check
from testkit.synthetic import CaseSpec, build_case
from testkit.synthetic.case_file import write_case_file

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom"
CONSENSUS = "esophagus-oligomet-2025"
CONSENSUS_FILE = REPO / "constraints" / "protocols" / f"{CONSENSUS}.yaml"

PASS, WARN, FAIL, NE, NA = "PASS", "WARN", "FAIL", "NOT_EVALUATED", "N/A"
C1, C2, C3 = "C1_Eso", "C2_LungMet", "C3_VertMet"


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
    # coarser planes and dose grids, 0.01 mm contour outlines: what this case answers (every rule
    # runs, the case-file rules) does not depend on the resolution, and it builds and checks in a
    # fraction of the time
    spec = CaseSpec.variant("violations", include_ct=False, ct_slice_mm=5.0, dose_spacing_conventional_mm=5.0,
                            dose_spacing_sbrt_mm=4.0, outline_tolerance_mm=0.01)
    write_case(build_case(spec), out, name="violations")
    write_case_file(spec, out)
    return out


@pytest.fixture(scope="module")
def violations_report(violations_dir, protocol):
    return run_check(read_export(violations_dir), protocol, case=load_case(violations_dir / "case.yaml"))


def _subset(protocol, *prefixes: str):
    """The protocol restricted to the rules whose id starts with one of ``prefixes`` (faster reruns)."""
    return dataclasses.replace(protocol, rules=tuple(r for r in protocol.rules if r.rule.id.startswith(prefixes)))


# ---------------------------------------------------------------------------------- end to end

def _rule_ids(protocol) -> list[str]:
    return [r.rule.id for r in protocol.rules]


def test_rule_ids_are_unique(protocol):
    ids = _rule_ids(protocol)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("which", ["sample", "violations"])
def test_every_rule_runs_end_to_end_without_error(which, request, protocol):
    report = request.getfixturevalue(f"{which}_report")
    answered = {f.rule_id for f in report.findings} | {n.rule_id for n in report.not_applicable}
    assert answered == set(_rule_ids(protocol))
    errors = [f.message for f in report.findings if f.status is Status.ERROR]
    assert not errors


def test_every_finding_on_the_sample_names_its_source(sample_report):
    for f in sample_report.findings:
        assert f.provenance.source and f.provenance.section and f.provenance.confidence
        assert "consensus.md" not in f.provenance.source + f.provenance.section + f.message


def test_definition_rules_follow_the_violations_case_file(violations_report):
    # the case file (testkit/synthetic/case_file.py, violations) declares six metastases in
    # four organs, three of them without a target and one whose target is not in the plan
    assert _finding(violations_report, "DEF-SCC").status is Status.FAIL
    assert _finding(violations_report, "DEF-SCC").measured == 6
    treat = _finding(violations_report, "DEF-TREAT")
    assert treat.status is Status.FAIL
    assert "4 of 6" in treat.message and "PTV_Met_Liver: no structure of that name" in treat.message
    assert "no target declared" in treat.message


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
    assert v20.limits[0].describe() == "≤ 5 %" and v20.limit.startswith("≤ 5 %")
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


def test_prescription_dose_on_bounds_states_them(sample_export, protocol):
    # C1's grid cut at z = 54 mm: PTVp (contours at z -57..57 mm) is 1.5 % outside it. Less than
    # 5 % outside, so D95 is bounded (the coldest 5 % may lie outside, or not) and INT-RX-DOSE
    # grades the interval: PASS only when both bounds, as a percentage of the 60 Gy
    # prescription, lie within 95-107 %. The message must state the bounds it graded (it read
    # "= partly outside the grid of the prescription" with no number).
    export = _crop_z(sample_export, C1, -200.0, 54.0)
    report = run_check(export, _subset(protocol, "INT-RX-DOSE"), case=None)
    f = _finding(report, "INT-RX-DOSE", C1)
    lower, upper = f.details["dose_interval_gy"]
    lo, hi = 100 * lower / 60.0, 100 * upper / 60.0
    assert 95 <= lo < hi <= 107  # the sample's PTVp is covered at about 100 %
    assert f.status is Status.PASS and f.measured is None
    assert f.message.startswith(f"PTVp D95%[Gy] is between {lower:.4g} and {upper:.4g} Gy "
                                f"(between {lo:.1f} and {hi:.1f} %) of the prescription 60 Gy")
    assert "% of the structure is inside the dose grid" in f.message
