"""The check reports (text, JSON, HTML, JUnit XML), the DVH plot and ``write_reports``.

The check runs once per module on the sample export (``sample_dicom``: C1_Eso 60 Gy / 30 fx,
C2_LungMet 50 Gy / 5 fx, C3_VertMet 30 Gy / 3 fx) with a small test protocol written here,
so the tests do not depend on the clinical protocol files. The test protocol extends a stub
``plan-integrity`` file with no rules: that pins the chain (``protocol_for_check`` adds the
built-in integrity rules only to protocols that do not already extend ``plan-integrity``), so
the expected statuses below are those of the rules written here:

* OAR-CORD    D0.03cc[Gy] of SpinalCord_PRV05 ≤ 45 Gy (conventional course only)  → PASS
* OAR-LUNG-V20  V20Gy[%] of Lungs ≤ 28 %                                           → PASS
* OAR-LUNG-EQD2 Mean EQD2 (α/β 3 Gy) of Lungs, composite of all courses ≤ 20 Gy     → PASS
* PTV-COV     D95%[%] of every PTV ≥ 95 % (one finding per target)                 → 3 × PASS
* OAR-HEART-SBRT D15cc[Gy] of Heart per SBRT course, table by fractions           → 2 × PASS
* OAR-MISSING Max[Gy] of Bowel (not in the export)                               → NOT_EVALUATED
* OAR-NO-COURSE Max[Gy] of Heart in course "C9_Brain" (no such course)            → not applicable
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from plancheck.dicom import read_export
from plancheck.errors import UsageError
from plancheck.report import REPORT_FORMATS, render_report, report_basename, write_reports
from plancheck.report.check_html import check_html, limit_markers
from plancheck.report.check_json import CATEGORY_ORDER, check_json, check_report_dict, jsonable
from plancheck.report.check_junit import check_junit
from plancheck.report.check_text import check_text, format_value
from plancheck.report.svg_plot import Curve, Marker, dvh_svg, nice_ticks
from plancheck.rules.findings import Finding, Measurement, Provenance, Status
from plancheck.rules.runner import protocol_for_check, run_check
from plancheck.rules.thresholds import Limits

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom"
PLANS = ("C1_Eso", "C2_LungMet", "C3_VertMet")
PATIENT_ID, PATIENT_NAME = "PC-SAMPLE-001", "PLANCHECK^SAMPLE"

INTEGRITY_STUB = """\
schema_version: 1
id: plan-integrity
title: Stub without rules (pins the chain for tests)
version: "0"
rules: []
"""

TEST_PROTOCOL = """\
schema_version: 1
id: test-protocol
title: Test protocol
version: "0.1"
extends: [integrity-stub.yaml]
rules:
  - id: OAR-CORD
    kind: dvh
    title: Spinal cord PRV maximum
    category: oar
    structure: SpinalCord_PRV05
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    course: conventional
    limits: {unit: Gy, upper: {per_protocol: 45, acceptable: 47}}
    provenance: {source: Test source A, section: "§1", confidence: companion}
  - id: OAR-LUNG-V20
    kind: dvh
    title: Lungs V20Gy
    category: oar
    structure: Lungs
    metric: "V20Gy[%]"
    dose_basis: physical
    course: conventional
    limits: {unit: "%", upper: {per_protocol: 28, acceptable: 30}}
    provenance: {source: Test source B, section: "§2", confidence: consensus}
  - id: OAR-LUNG-EQD2
    kind: dvh
    title: Lungs mean EQD2, all courses
    category: oar
    structure: Lungs
    metric: "Mean[Gy]"
    dose_basis: eqd2
    course: composite
    limits: {unit: Gy, upper: {per_protocol: 20}}
    provenance: {source: Test source C, section: "§3", confidence: provisional}
  - id: PTV-COV
    kind: dvh
    title: PTV D95%
    category: coverage
    target: {role: any, volume: PTV}
    metric: "D95%[%]"
    dose_basis: physical
    limits: {unit: "%", lower: {per_protocol: 95, acceptable: 93}}
    provenance: {source: Test source D, section: "§4", confidence: consensus}
  - id: OAR-HEART-SBRT
    kind: dvh
    title: Heart D15cc, SBRT
    category: oar
    structure: Heart
    metric: "D15cc[Gy]"
    dose_basis: physical
    course: sbrt
    limits_by_fractions: {5: {unit: Gy, upper: {per_protocol: 32}}, 3: {unit: Gy, upper: {per_protocol: 24}}}
    provenance: {source: Test source E, section: "§5", confidence: companion}
  - id: OAR-MISSING
    kind: dvh
    title: A structure the export does not have
    category: oar
    structure: Bowel
    metric: "Max[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 30}}
    provenance: {source: Test source F, section: "§6", confidence: provisional}
  - id: OAR-NO-COURSE
    kind: dvh
    title: A rule for a course the export does not have
    category: oar
    structure: Heart
    metric: "Max[Gy]"
    dose_basis: physical
    course: C9_Brain
    limits: {unit: Gy, upper: {per_protocol: 30}}
    provenance: {source: Test source G, section: "§7", confidence: institutional}
"""

# The same, with a limit no plan can meet: the spinal cord PRV D0.03cc ≤ 1 Gy (it is ~30 Gy).
IMPOSSIBLE_PROTOCOL = TEST_PROTOCOL.replace("id: test-protocol", "id: impossible-protocol").replace(
    "limits: {unit: Gy, upper: {per_protocol: 45, acceptable: 47}}", "limits: {unit: Gy, upper: {per_protocol: 1}}")

EXPECTED_STATUSES = [
    ("OAR-CORD", "PASS"), ("OAR-LUNG-V20", "PASS"), ("OAR-LUNG-EQD2", "PASS"),
    ("PTV-COV", "PASS"), ("PTV-COV", "PASS"), ("PTV-COV", "PASS"),
    ("OAR-HEART-SBRT", "PASS"), ("OAR-HEART-SBRT", "PASS"), ("OAR-MISSING", "NOT_EVALUATED"),
]


def write_protocols(folder: Path) -> dict[str, Path]:
    """The test protocols in ``folder``: ``{"test": ..., "impossible": ...}``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "integrity-stub.yaml").write_text(INTEGRITY_STUB, encoding="utf-8")
    paths = {"test": folder / "test.yaml", "impossible": folder / "impossible.yaml"}
    paths["test"].write_text(TEST_PROTOCOL, encoding="utf-8")
    paths["impossible"].write_text(IMPOSSIBLE_PROTOCOL, encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def protocols(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_protocols(tmp_path_factory.mktemp("protocols"))


@pytest.fixture(scope="module")
def export():
    return read_export(SAMPLE)


@pytest.fixture(scope="module")
def report(export, protocols):
    return run_check(export, protocol_for_check(str(protocols["test"])))


@pytest.fixture(scope="module")
def failing_report(export, protocols):
    return run_check(export, protocol_for_check(str(protocols["impossible"])))


@pytest.fixture(scope="module")
def doc(report) -> dict:
    return json.loads(check_json(report))


def with_findings(report, *findings: Finding):
    """The report with its findings replaced (to render statuses the sample does not produce)."""
    return dataclasses.replace(report, findings=tuple(findings))


def a_finding(status: Status, message: str = "a message", **kw) -> Finding:
    base = dict(rule_id="TEST-1", title="A test rule", category="oar", status=status, measured=12.5, unit="Gy",
                limit="≤ 10 Gy", structures=("Heart",), courses=("C1_Eso",),
                provenance=Provenance("Test", "§9", "provisional", "test-protocol"), message=message, details={})
    base.update(kw)
    return Finding(**base)


# ------------------------------------------------------------------------------------------ the check

def test_the_test_protocol_gives_the_expected_statuses(report) -> None:
    assert [(f.rule_id, f.status.value) for f in report.findings] == EXPECTED_STATUSES
    assert [n.rule_id for n in report.not_applicable] == ["OAR-NO-COURSE"]
    assert report.protocol.chain == ("plan-integrity", "test-protocol")


# ------------------------------------------------------------------------------------------ JSON

def test_json_has_the_documented_shape(doc) -> None:
    assert list(doc) == ["schema_version", "plancheck_version", "protocol", "case_file", "plans", "left_out_plans",
                         "volume_models", "summary", "results", "not_applicable", "warnings", "elapsed_s"]
    assert doc["left_out_plans"] == []
    assert doc["schema_version"] == "1.0"
    assert doc["protocol"] == {"id": "test-protocol", "title": "Test protocol", "version": "0.1",
                               "chain": ["plan-integrity", "test-protocol"]}
    assert doc["case_file"] is None
    assert set(doc["summary"]) == {"pass", "warn", "fail", "not_evaluated", "error"}
    for r in doc["results"]:
        assert list(r) == ["rule_id", "title", "category", "status", "measured", "unit", "limit", "structures",
                           "courses", "message", "provenance", "details", "limits", "measurements"]
        assert list(r["provenance"]) == ["source", "section", "confidence", "protocol"]
    assert doc["not_applicable"] == [{"rule_id": "OAR-NO-COURSE", "title": "A rule for a course the export does not have",
                                      "reason": "no C9_Brain course in the export"}]
    assert isinstance(doc["elapsed_s"], float) and doc["elapsed_s"] >= 0


def test_json_plans_carry_the_fractionation(doc) -> None:
    plans = {p["label"]: p for p in doc["plans"]}
    assert list(plans) == list(PLANS)
    eso, lung, vert = plans["C1_Eso"], plans["C2_LungMet"], plans["C3_VertMet"]
    assert list(eso) == ["label", "sop_instance_uid", "date", "approval_status", "fractions", "prescription_gy",
                         "dose_per_fraction_gy", "bed10_gy", "eqd2_10_gy", "regime", "dose_summary", "dose_type"]
    # 60 Gy / 30 fx: d = 2 Gy, BED10 = 60 (1 + 2/10) = 72 Gy, EQD2(10) = 60 Gy
    assert (eso["prescription_gy"], eso["fractions"], eso["dose_per_fraction_gy"]) == (60.0, 30, 2.0)
    assert eso["bed10_gy"] == pytest.approx(72.0) and eso["eqd2_10_gy"] == pytest.approx(60.0)
    assert eso["regime"] == "conventional"
    # 50 Gy / 5 fx: d = 10 Gy, BED10 = 50 · 2 = 100 Gy, EQD2(10) = 100 / 1.2 = 83.33 Gy
    assert lung["bed10_gy"] == pytest.approx(100.0) and lung["eqd2_10_gy"] == pytest.approx(100 / 1.2)
    assert lung["regime"] == "SBRT"
    # 30 Gy / 3 fx: BED10 = 30 · 2 = 60 Gy, EQD2(10) = 50 Gy
    assert vert["bed10_gy"] == pytest.approx(60.0) and vert["eqd2_10_gy"] == pytest.approx(50.0)
    assert all(p["sop_instance_uid"].startswith("1.2.826.0.1.3680043.8.498.") for p in doc["plans"])
    assert all(p["approval_status"] == "APPROVED" and p["date"] == "2025-06-02" for p in doc["plans"])


def test_json_results_equal_the_findings(doc, report) -> None:
    assert len(doc["results"]) == len(report.findings)
    for r, f in zip(doc["results"], report.findings):
        assert (r["rule_id"], r["status"], r["unit"], r["limit"], r["message"]) == (
            f.rule_id, f.status.value, f.unit, f.limit, f.message)
        assert r["measured"] == f.measured
        assert r["structures"] == list(f.structures) and r["courses"] == list(f.courses)
        assert r["provenance"]["protocol"] == "test-protocol"
    cord = next(r for r in doc["results"] if r["rule_id"] == "OAR-CORD")
    assert cord["provenance"] == {"source": "Test source A", "section": "§1", "confidence": "companion",
                                  "protocol": "test-protocol"}
    assert cord["details"]["metric"] == "D0.03cc[Gy]"
    eqd2 = next(r for r in doc["results"] if r["rule_id"] == "OAR-LUNG-EQD2")
    assert eqd2["courses"] == list(PLANS) and eqd2["details"]["alpha_beta_gy"] == 3.0
    counts = {s: sum(r["status"] == s.upper() for r in doc["results"]) for s in doc["summary"]}
    assert doc["summary"] == counts == {"pass": 8, "warn": 0, "fail": 0, "not_evaluated": 1, "error": 0}


def test_json_never_names_the_patient(report, doc) -> None:
    text = check_json(report)
    assert PATIENT_ID not in text and "PLANCHECK" not in text and "SAMPLE^" not in text
    assert report.export.patient_id == PATIENT_ID  # the export does know them


def test_json_redacts_the_patient_from_paths(export, protocols) -> None:
    """A case file in a folder named after the patient must not leak the ID into the JSON."""
    r = run_check(export, protocol_for_check(str(protocols["test"])), case_source=f"/data/{PATIENT_ID}/case.yaml")
    doc = check_report_dict(r)
    assert doc["case_file"] == "/data/[patient]/case.yaml"


def test_jsonable_turns_everything_into_json_data() -> None:
    value = {"a": (1, 2.5), "nan": float("nan"), "inf": -math.inf, "np": np.float64(3.25), "n": np.int64(4),
             "arr": np.array([1.0, np.nan]), "status": Status.WARN, 5: {1, }}
    assert jsonable(value) == {"a": [1, 2.5], "nan": None, "inf": None, "np": 3.25, "n": 4, "arr": [1.0, None],
                               "status": "WARN", "5": [1]}
    json.dumps(jsonable(value), allow_nan=False)


def test_json_refuses_nothing_non_finite(report) -> None:
    nan = a_finding(Status.NOT_EVALUATED, measured=float("nan"), details={"lower": float("-inf")})
    doc = json.loads(check_json(with_findings(report, nan)))
    assert doc["results"][0]["measured"] is None and doc["results"][0]["details"] == {"lower": None}


# ------------------------------------------------------------------------------------------ text

def _flat(text: str) -> str:
    """The text with every run of whitespace as one space (undoes wrapping at word boundaries)."""
    return " ".join(text.split())


def test_text_report_leads_with_the_verdict_and_what_needs_attention(report) -> None:
    text = check_text(report)
    assert "\x1b[" not in text
    for label in PLANS:
        assert label in text
    assert "Protocol:  test-protocol version 0.1: Test protocol (chain: plan-integrity → test-protocol)" in text
    assert "Case file: none" in text
    lines = text.splitlines()
    # the verdict right after the header, with the counts: 1 NOT EVALUATED, 8 PASS, 1 not applicable
    result = next(i for i, line in enumerate(lines) if line.startswith("Result: "))
    assert lines[result] == "Result: NOT FULLY EVALUATED — 1 NOT EVALUATED, 8 PASS; 1 not applicable"
    # the one finding that needs attention: its rule, structure-less reason and source
    ne = lines.index("NOT EVALUATED (1)")
    assert ne > result and lines[ne + 1].startswith("  OAR-MISSING")
    missing = next(f for f in report.findings if f.rule_id == "OAR-MISSING")
    assert _flat(f"{missing.message} [§6, provisional]") in _flat(text)
    # the passes folded into a count per category, in the report's category order:
    # coverage: PTV-COV × 3; oar: OAR-CORD, OAR-LUNG-V20, OAR-LUNG-EQD2, OAR-HEART-SBRT × 2
    assert "PASS (8): coverage 3, oar 5" in lines
    for rule_id in ("OAR-CORD", "OAR-LUNG-V20", "PTV-COV", "OAR-HEART-SBRT"):
        assert rule_id not in text
    # the summary in its fixed form, wrapped at a word boundary (104 characters)
    assert lines[-2:] == ["Summary: 8 PASS, 0 WARN, 0 FAIL, 1 NOT EVALUATED, 0 ERROR; 1 not applicable.",
                          "    Result: NOT FULLY EVALUATED"]
    assert len(lines) < 30


def test_text_report_with_all_rules_lists_every_finding_with_its_source(report) -> None:
    text = check_text(report, all_rules=True)
    for rule_id, _ in EXPECTED_STATUSES:
        assert rule_id in text
    assert "OAR-NO-COURSE: no C9_Brain course in the export" in text and "NOT APPLICABLE" in text
    for level in ("consensus", "companion", "provisional"):
        assert f"  {level}" in text
    # categories in the documented order
    assert text.index("\nCOVERAGE") < text.index("\nOAR")
    cord = next(line for line in text.splitlines() if "OAR-CORD" in line)
    assert cord.lstrip().startswith("PASS") and "SpinalCord_PRV05 in C1_Eso" in cord
    assert "measured 39.19 Gy" in cord and "limit ≤ 45 Gy (acceptable ≤ 47 Gy)" in _flat(text)
    assert "[§1, companion]" in _flat(text)


def test_text_never_breaks_a_word_and_keeps_to_its_width(report) -> None:
    long = a_finding(Status.FAIL, "Lungs V5Gy[%] in sum of C1_Eso, C2_LungMet, C3_VertMet: physical dose: 60.34 % (FAIL); "
                     "EQD2 (α/β = 3 Gy): 49.76 % (PASS): outside ≤ 60 % (several courses: graded on the worse) " * 2,
                     rule_id="A-RULE-WITH-A-LONG-IDENTIFIER", structures=("Structure_With_A_Long_Name",),
                     courses=("C1_Eso", "C2_LungMet", "C3_VertMet"))
    for width in (100, 60):
        for all_rules in (False, True):
            text = check_text(with_findings(report, long), width=width, all_rules=all_rules)
            assert max(len(line) for line in text.splitlines()) <= width
            assert _flat(long.message) in _flat(text)  # a word broken across lines would not be found
            # a value stays with its unit and its sign
            assert not any(line.rstrip().endswith(("60.34", "≤", "(α/β", "α/β =")) for line in text.splitlines())


def test_text_groups_not_evaluated_findings_with_one_reason(report) -> None:
    reason = "Bowel_Small: no structure named Bowel_Small or a known synonym in the structure set"
    findings = [a_finding(Status.NOT_EVALUATED, reason, rule_id=r, measured=None, structures=(), courses=())
                for r in ("OAR-BOWEL-V40", "OAR-BOWEL-MAX")]
    other = a_finding(Status.NOT_EVALUATED, "Duodenum: no structure named Duodenum", rule_id="TG101-DUODENUM-MAX",
                      measured=None, structures=(), courses=())
    text = check_text(with_findings(report, *findings, other))
    lines = text.splitlines()
    assert "NOT EVALUATED (3)" in lines
    assert "  OAR-BOWEL-V40, OAR-BOWEL-MAX" in lines and text.count(reason) == 1
    assert any(line.startswith("  TG101-DUODENUM-MAX  ") for line in lines)


def test_text_orders_attention_by_urgency_and_shows_both_dose_bases(report) -> None:
    both = a_finding(Status.FAIL, "two bases", rule_id="OAR-LUNG-V5", unit="%", measured=60.34, limit="≤ 60 %",
                     limits=(Limits.model_validate({"unit": "%", "upper": {"per_protocol": 60}}).applied(),),
                     measurements=(Measurement("physical dose, sum of C1_Eso, C2_LungMet", 60.34, "%", Status.FAIL),
                                   Measurement("EQD2 (α/β = 3 Gy), sum of C1_Eso, C2_LungMet", 49.76, "%", Status.PASS)))
    text = check_text(with_findings(report, a_finding(Status.WARN, "warned"), a_finding(Status.NOT_EVALUATED, "unknown"),
                                    both, a_finding(Status.ERROR, "crashed")))
    order = [text.index(h) for h in ("ERROR (1)", "FAIL (1)", "WARN (1)", "NOT EVALUATED (1)")]
    assert order == sorted(order)
    assert "measured 60.34 % physical dose (FAIL), 49.76 % EQD2 (α/β = 3 Gy) (PASS); limit ≤ 60 %" in _flat(text)
    assert "Result: FAILED — 1 ERROR, 1 FAIL, 1 WARN, 1 NOT EVALUATED, 0 PASS" in text


def test_text_hints_at_the_missing_case_file(report) -> None:
    needs = [a_finding(Status.NOT_EVALUATED, "no case file (give --case or put case.yaml next to the export)",
                       rule_id=r, measured=None) for r in ("DEF-SCC", "TIM-SYS")]
    text = check_text(with_findings(report, *needs), export_path="exports/patient 7")
    hint = [line for line in text.splitlines() if line.startswith("No case file")]
    assert hint == ["No case file: 2 rules need the clinical context. Write one: plancheck case init 'exports/patient 7'"]
    assert "No case file" not in check_text(report)  # no rule needs it


def test_text_from_the_export_cannot_drive_the_terminal(report) -> None:
    evil = a_finding(Status.FAIL, "\x1b]0;pwned\x07red \x1b[31mtext", structures=("Heart\x1b[2J",))
    text = check_text(with_findings(report, evil))
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned\\x07red \\x1b[31mtext" in text  # shown as visible escapes


def test_text_colours_only_when_asked(report, failing_report) -> None:
    plain, coloured = check_text(failing_report), check_text(failing_report, color=True)
    assert "\x1b[" not in plain and "\x1b[" in coloured
    assert "\x1b[1;31mFAIL" in coloured  # FAIL in bold red
    assert "Result: FAILED" in plain


def test_text_case_file_and_empty_findings(export, protocols) -> None:
    r = run_check(export, protocol_for_check(str(protocols["test"])), case_source="cases/case.yaml")
    assert "Case file: cases/case.yaml" in check_text(r)
    assert "The protocol produced no results." in check_text(with_findings(r))


@pytest.mark.parametrize(("value", "unit", "text"), [
    (30.316378, "Gy", "30.32 Gy"), (0.08349, "Gy", "0.0835 Gy"), (1234.56, "cc", "1235 cc"), (0.0, "%", "0.00 %"),
    (None, "Gy", "—"), (float("nan"), "Gy", "—"), (5.0, "", "5.00"), (30.0, "fx", "30 fx"), (2.5, "fx", "2.50 fx"),
])
def test_format_value(value, unit, text) -> None:
    assert format_value(value, unit) == text


# ------------------------------------------------------------------------------------------ JUnit

def test_junit_is_valid_xml_with_one_suite_per_category(report) -> None:
    root = ET.fromstring(check_junit(report).encode("utf-8"))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["coverage", "oar", "not-applicable"]
    assert [c.get("name") for c in suites["coverage"].findall("testcase")] == [
        "PTV-COV [PTVp @ C1_Eso]", "PTV-COV [PTV_Met_Lung @ C2_LungMet]", "PTV-COV [PTV_Met_Vert @ C3_VertMet]"]
    oar = suites["oar"]
    assert oar.get("tests") == "6" and oar.get("skipped") == "1" and oar.get("failures") == "0"
    missing = oar.find("testcase[@name='OAR-MISSING']")
    assert missing is not None
    assert missing.find("skipped").get("message").startswith("NOT EVALUATED: Bowel")
    cord = oar.find("testcase[@name='OAR-CORD [SpinalCord_PRV05 @ C1_Eso]']")
    assert cord.find("failure") is None and cord.find("skipped") is None
    assert root.get("tests") == "10" and root.get("skipped") == "2"


def test_junit_fail_error_and_warn(report) -> None:
    r = with_findings(report, a_finding(Status.FAIL, "too hot"), a_finding(Status.ERROR, "evaluator crashed"),
                      a_finding(Status.WARN, "a bit hot\x00 with a NUL from DICOM"))
    root = ET.fromstring(check_junit(r).encode("utf-8"))
    cases = root.findall("testsuite/testcase")
    assert cases[0].find("failure").get("message") == "too hot"
    assert "measured: 12.50 Gy" in cases[0].find("failure").text
    assert cases[1].find("error").get("message") == "evaluator crashed"
    assert cases[2].find("failure") is None and "a bit hot" in cases[2].find("system-out").text
    assert root.get("failures") == "1" and root.get("errors") == "1"


# ------------------------------------------------------------------------------------------ HTML

def test_html_is_self_contained(report) -> None:
    html = check_html(report)
    assert html.startswith("<!DOCTYPE html>")
    lowered = html.lower()
    for forbidden in ("<script", "<link", "src=", "url(", "@import", "<iframe"):
        assert forbidden not in lowered, forbidden
    # the only URL is the SVG namespace (an identifier, never fetched)
    urls = {u for u in __import__("re").findall(r"https?://[^\s\"'<>)]+", html)}
    assert urls == {"http://www.w3.org/2000/svg"}


def test_html_header_names_the_patient_and_plans(report) -> None:
    html = check_html(report)
    assert "PLANCHECK, SAMPLE" in html and PATIENT_ID in html
    assert "test-protocol version 0.1" in html
    for label in PLANS:
        assert f'data-plan-label="{label}"' in html


def test_html_numbers_carry_the_json_values(report, doc) -> None:
    html = check_html(report)
    for i, r in enumerate(doc["results"]):
        value = "" if r["measured"] is None else repr(r["measured"])
        assert (f'data-rule-id="{r["rule_id"]}" data-result-index="{i}" data-field="measured" data-value="{value}"') in html
    for p in doc["plans"]:
        assert f'data-plan-label="{p["label"]}" data-field="bed10_gy" data-value="{p["bed10_gy"]!r}"' in html
    for key, count in doc["summary"].items():
        assert f'<span data-summary="{key}">{count}</span>' in html


def test_html_has_a_dvh_plot_per_course_with_limits(report) -> None:
    html = check_html(report)
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="dvh-plot"') == 4
    for title in ("C1_Eso: physical dose", "C2_LungMet: physical dose", "C3_VertMet: physical dose",
                  "composite of C1_Eso, C2_LungMet, C3_VertMet: EQD2"):
        assert f"<title>{title}</title>" in html
    assert 'class="dvh-limit-point" data-rule-id="OAR-LUNG-V20"' in html
    assert 'class="dvh-limit-line" data-rule-id="OAR-CORD"' in html
    assert 'data-structure="Lungs (α/β 3 Gy)"' in html
    # the provenance of every rule
    for source in ("Test source A", "Test source B", "Test source C", "Test source D", "Test source E", "Test source F"):
        assert source in html
    assert 'class="conf conf-provisional"' in html


def _lungs_on_two_bases(status: Status = Status.FAIL) -> Finding:
    """A conventional lung limit on all three courses, graded on the physical sum (FAIL) and on
    the composite EQD2 with α/β 3 Gy (PASS), as the dvh rules report it."""
    applied = Limits.model_validate({"unit": "%", "upper": {"per_protocol": 28}}).applied(
        dose_basis="physical dose and EQD2 (α/β = 3 Gy) (the worse)")
    return a_finding(status, "Lungs V20Gy[%]: physical 30 % (FAIL); EQD2 25 % (PASS)", rule_id="OAR-LUNG-V20",
                     unit="%", measured=30.0, limit="≤ 28 %", structures=("Lungs",), courses=PLANS,
                     details={"metric": "V20Gy[%]", "dose_kind": "physical", "alpha_beta_gy": 3.0},
                     limits=(applied,),
                     measurements=(Measurement("physical dose, sum of C1_Eso, C2_LungMet, C3_VertMet", 30.0, "%",
                                               Status.FAIL),
                                   Measurement("EQD2 (α/β = 3 Gy), sum of C1_Eso, C2_LungMet, C3_VertMet", 25.0, "%",
                                               Status.PASS)))


def test_html_leads_with_the_verdict_and_the_findings_that_need_attention(report) -> None:
    missing = [a_finding(Status.NOT_EVALUATED, "Bowel: no structure named Bowel", rule_id=r, measured=None,
                         structures=(), courses=()) for r in ("OAR-BOWEL-V40", "OAR-BOWEL-MAX")]
    passed = report.findings[0]
    r = with_findings(report, passed, _lungs_on_two_bases(), a_finding(Status.WARN, "warned"), *missing)
    html = check_html(r)
    # verdict, then the attention cards (FAIL before WARN), the not-evaluated rows, then the passes
    order = [html.index(x) for x in ('id="verdict">FAILED<', 'class="finding status-FAIL"', 'class="finding status-WARN"',
                                     'id="not-evaluated"', 'id="results"', 'id="dvh"', 'id="signoff"')]
    assert order == sorted(order)
    # every result once, with its exact value
    for i, f in enumerate(r.findings):
        assert html.count(f'data-result-index="{i}" data-field="measured"') == 1
        assert html.count(f'data-result-index="{i}" data-field="status"') == 1
    # both dose bases with their values and grades, and one plot per basis with the limit in that basis's colour
    assert 'data-field="measurement" data-measurement-index="0" data-value="30.0"' in html
    assert 'data-field="measurement" data-measurement-index="1" data-value="25.0"' in html
    card = html[html.index('class="finding status-FAIL"'):html.index('class="finding status-WARN"')]
    assert card.count('class="dvh-plot"') == 2
    assert "<title>Lungs, composite of C1_Eso, C2_LungMet, C3_VertMet: physical dose</title>" in card
    assert "<title>Lungs, composite of C1_Eso, C2_LungMet, C3_VertMet: EQD2 (α/β 3 Gy)</title>" in card
    physical, eqd2 = card.split("EQD2 (α/β 3 Gy)</title>")
    assert 'class="dvh-limit-point" data-rule-id="OAR-LUNG-V20"' in physical and "#c62828" in physical  # FAIL red
    assert "#1a7f37" in eqd2.split("</svg>")[0]  # PASS green on the EQD2 plot
    assert "≤ 28 %" in card
    # the two NOT EVALUATED findings with one reason share a row
    assert html.count("Bowel: no structure named Bowel") == 1
    # the passes folded per category; provenance one click away; a sign-off block
    assert '<details class="category" data-category="oar">' in html
    assert '<details class="source"><summary>source and details</summary>' in html
    assert "Checked by (physicist / dosimetrist)" in html and "Reviewed by (physician)" in html
    # the composite panels in both dose kinds
    assert "<title>composite of C1_Eso, C2_LungMet, C3_VertMet: physical dose</title>" in html
    assert "<title>composite of C1_Eso, C2_LungMet, C3_VertMet: EQD2</title>" in html


def test_html_hints_at_the_missing_case_file(report) -> None:
    needs = a_finding(Status.NOT_EVALUATED, "no case file (give --case or put case.yaml next to the export)",
                      rule_id="DEF-SCC", measured=None)
    html = check_html(with_findings(report, needs), export_path=["export dir"])
    assert ('<p class="hint" id="case-hint">No case file: 1 rule needs the clinical context. '
            "Write one: plancheck case init &#39;export dir&#39;</p>") in html
    assert 'id="case-hint"' not in check_html(report)


def test_html_prints_without_cutting_cards_rows_or_the_sign_off(report) -> None:
    html = check_html(report)
    css = html[html.index("@media print"):html.index("</style>")]
    assert "break-inside: avoid-page" in css and "#signoff" in css and "article.finding" in css and " tr," in css
    assert "thead { display: table-header-group; }" in css
    assert "details::details-content { content-visibility: visible;" in css  # folded lists print open
    assert "@page { size: A4;" in html


def test_html_escapes_text_from_the_export(report) -> None:
    evil = a_finding(Status.FAIL, "<script>alert(1)</script>", structures=("<img src=x>",))
    html = check_html(with_findings(report, evil))
    assert "<script>" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------------------ plot

def _finding(metric: str, limit: str, status: Status = Status.PASS, *, condition: str = "",
             applies: bool | None = True) -> Finding:
    """A DVH finding whose limit is given in the words of ``Limits.describe`` ("≤ 28 % (acceptable ≤ 30 %)")."""
    unit = {"[%]": "%", "[cc]": "cc", "[Gy]": "Gy"}.get(metric[-4:], "")
    sign, value, *rest = limit.replace("(acceptable", "").replace(")", "").split()
    side = "upper" if sign == "≤" else "lower"
    bounds = {"per_protocol": float(value)}
    if len(rest) >= 3:
        bounds["acceptable"] = float(rest[2])
    applied = Limits.model_validate({"unit": rest[0] if rest else "", side: bounds}).applied(
        condition=condition, applies=applies)
    return a_finding(status, details={"metric": metric}, limit=limit, unit=unit, limits=(applied,))


def test_markers_come_from_the_structured_limits() -> None:
    # a conditional limit that holds is drawn with its condition; one that does not hold is not drawn
    m = limit_markers(_finding("V20Gy[%]", "≤ 25 %", condition="concurrent systemic therapy"), 1000.0, None)
    assert [(x.dose_gy, x.volume_pct) for x in m] == [(20.0, 25.0)] and "concurrent systemic therapy" in m[0].label
    assert limit_markers(_finding("V20Gy[%]", "≤ 25 %", condition="c", applies=False), 1000.0, None) == []
    # the text alone draws nothing: the markers come from the data
    assert limit_markers(a_finding(Status.PASS, details={"metric": "V20Gy[%]"}, unit="%", limit="≤ 28 %"),
                         1000.0, None) == []


def test_markers_sit_at_the_constraint_points() -> None:
    # V20Gy[%] ≤ 28: a point at (20 Gy, 28 %); the acceptable 30 % a hollow point above it
    m = limit_markers(_finding("V20Gy[%]", "≤ 28 % (acceptable ≤ 30 %)"), volume_cc=1000.0, prescription_gy=60.0)
    assert [(x.dose_gy, x.volume_pct, x.acceptable) for x in m] == [(20.0, 28.0, False), (20.0, 30.0, True)]
    # V20Gy[cc] ≤ 100 cc of a 1000 cc structure: 10 %
    (m,) = limit_markers(_finding("V20Gy[cc]", "≤ 100 cc"), volume_cc=1000.0, prescription_gy=None)
    assert (m.dose_gy, m.volume_pct) == (20.0, pytest.approx(10.0))
    # CV15Gy[cc] ≥ 700 cc spared of 1000 cc: at most 30 % may receive 15 Gy or more
    (m,) = limit_markers(_finding("CV15Gy[cc]", "≥ 700 cc"), volume_cc=1000.0, prescription_gy=None)
    assert (m.dose_gy, m.volume_pct) == (15.0, pytest.approx(30.0))
    # D0.03cc[Gy] ≤ 45: a vertical line at 45 Gy (0.03 cc of 20 cc is 0.15 %)
    (m,) = limit_markers(_finding("D0.03cc[Gy]", "≤ 45 Gy"), volume_cc=20.0, prescription_gy=None)
    assert (m.dose_gy, m.volume_pct) == (45.0, None)
    # D95%[%] ≥ 95 % of a 60 Gy prescription: (57 Gy, 95 %)
    (m,) = limit_markers(_finding("D95%[%]", "≥ 95 %"), volume_cc=300.0, prescription_gy=60.0)
    assert (m.dose_gy, m.volume_pct) == (pytest.approx(57.0), 95.0)
    # ... and nothing without a prescription
    assert limit_markers(_finding("D95%[%]", "≥ 95 %"), volume_cc=300.0, prescription_gy=None) == []
    # Mean[Gy] ≤ 20: a line; V95%[%] ≥ 98 of 50 Gy: (47.5 Gy, 98 %)
    (m,) = limit_markers(_finding("Mean[Gy]", "≤ 20 Gy"), volume_cc=300.0, prescription_gy=None)
    assert (m.dose_gy, m.volume_pct) == (20.0, None)
    (m,) = limit_markers(_finding("V95%[%]", "≥ 98 %", Status.FAIL), volume_cc=30.0, prescription_gy=50.0)
    assert (m.dose_gy, m.volume_pct, m.status) == (pytest.approx(47.5), 98.0, "FAIL")
    assert limit_markers(_finding("not a metric", "≤ 1 Gy"), volume_cc=1.0, prescription_gy=1.0) == []
    # a limit in another unit than the metric's (D95%[Gy] judged as % of prescription): no marker
    wrong_unit = _finding("D95%[Gy]", "≥ 95 %")
    assert limit_markers(dataclasses.replace(wrong_unit, unit="%"), volume_cc=300.0, prescription_gy=60.0) == []


def test_dvh_svg_is_valid_xml_and_places_points_on_the_axes() -> None:
    curve = Curve("Lungs", [0.0, 10.0, 20.0, 40.0], [100.0, 50.0, 25.0, 0.0])
    svg = dvh_svg([curve], [Marker(20.0, 28.0, "V20 ≤ 28", "WARN", rule_id="R1"), Marker(45.0, None, "Max ≤ 45")],
                  title="C1 & <test>", width=760, height=400)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.find(f"{ns}title").text == "C1 & <test>"
    (poly,) = root.findall(f".//{ns}polyline")
    # plot area: x from 58 to 760 - 250 = 510 px (452 px) over 0..50 Gy (ticks of 10 up to 50 ≥ 45·1.02);
    # y from 30 (100 %) to 400 - 46 = 354 px (0 %)
    first, *_, last = poly.get("points").split()
    assert first == "58.0,30.0" and last == f"{58 + 452 * 40 / 50:.1f},354.0"
    point = root.find(f".//{ns}g[@data-rule-id='R1']/{ns}path")
    assert point.get("d").startswith(f"M{58 + 452 * 20 / 50:.1f},{30 + 324 * (1 - 0.28) - 6:.1f}")
    assert point.get("stroke") == "#b7791f"


@pytest.mark.parametrize(("upper", "ticks"), [(63.0, [0, 20, 40, 60, 80]), (1.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
                                              (0.0, [0.0, 1.0]), (250.0, [0, 50, 100, 150, 200, 250])])
def test_nice_ticks(upper, ticks) -> None:
    assert nice_ticks(upper) == pytest.approx(ticks)


# ------------------------------------------------------------------------------------------ write_reports

def test_write_reports_writes_each_format_atomically(report, tmp_path: Path) -> None:
    paths = write_reports(report, tmp_path / "out", formats=("json", "html", "junit", "text"))
    uid = report.context.courses[0].course.plan.sop_instance_uid
    assert [p.name for p in paths] == [f"{uid}+2_test-protocol{REPORT_FORMATS[f]}" for f in ("json", "html", "junit", "text")]
    assert json.loads(paths[0].read_text(encoding="utf-8"))["summary"]["pass"] == 8
    assert paths[1].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    ET.fromstring(paths[2].read_bytes())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files left
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)
    assert write_reports(report, tmp_path / "default") == [tmp_path / "default" / f"{uid}+2_test-protocol.json",
                                                           tmp_path / "default" / f"{uid}+2_test-protocol.html"]


def test_write_reports_rejects_unknown_formats_before_writing(report, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown report format\(s\) 'pdf'; expected any of text, json, html, junit"):
        write_reports(report, tmp_path, formats=("json", "pdf"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="unknown report format 'xml'"):
        render_report(report, "xml")


def test_report_file_names_are_sanitised() -> None:
    """UIDs come off the wire: a crafted one must not climb out of the output folder."""
    def fake(uid: str, pid: str, n: int = 1):
        course = SimpleNamespace(course=SimpleNamespace(plan=SimpleNamespace(sop_instance_uid=uid)))
        return SimpleNamespace(context=SimpleNamespace(courses=[course] * n), protocol=SimpleNamespace(id=pid))

    assert report_basename(fake("../../etc/passwd", "x")) == "etc_passwd_x"
    assert report_basename(fake("1.2.3", "clinic/x y", 3)) == "1.2.3+2_clinic_x_y"
    assert report_basename(fake("", "p")) == "unknown_p"
    assert len(report_basename(fake("9" * 500, "p"))) <= 96 + 2
    assert report_basename(SimpleNamespace(context=SimpleNamespace(courses=[]), protocol=SimpleNamespace(id="p"))) == "no-plan_p"


def test_category_order_starts_with_integrity() -> None:
    assert CATEGORY_ORDER[0] == "integrity" and {"oar", "coverage", "dose", "target"} <= set(CATEGORY_ORDER)


def test_dvh_svg_dose_axis_ignores_a_hot_tail_of_tiny_volume() -> None:
    """A few voxels at 200 Gy (an SBRT boost seen in EQD2) must not squeeze the curve: the axis
    ends where the curve falls below 0.5 % (10 Gy here, × 1.02 → ticks of 2.5 up to 12.5 Gy)."""
    svg = dvh_svg([Curve("Lungs", [0.0, 10.0, 20.0, 200.0], [100.0, 50.0, 0.4, 0.0])])
    ns = "{http://www.w3.org/2000/svg}"
    labels = [t.text for t in ET.fromstring(svg).iter(f"{ns}text")]
    assert "12.5" in labels and "200" not in labels
