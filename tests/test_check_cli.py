"""``plancheck check``, ``plancheck protocols`` and ``plancheck explain``: formats and exit codes.

The check runs on the sample export with the small test protocol of ``test_reports.py``
(see its docstring for the expected statuses): 8 PASS and 1 NOT_EVALUATED (a structure the
export does not have), so the exit code is 0, or 4 with ``--strict``; the "impossible" variant
limits the spinal-cord PRV D0.03cc to 1 Gy (it is ~30 Gy) and exits with 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.main import build_parser, main
from plancheck.protocol.loader import DEFAULT_PROTOCOL, INTEGRITY_PROTOCOL, builtin_protocol_ids
from test_reports import PATIENT_ID, PLANS, SAMPLE, TEST_PROTOCOL, write_protocols

UNUSABLE = "plancheck: unusable input: "


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def protocols(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_protocols(tmp_path_factory.mktemp("protocols"))


def copy_sample(dest: Path) -> Path:
    """The sample's plans, structure set and doses (the CT is not needed for a check)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in SAMPLE.glob("R[PSD]_*.dcm"):
        shutil.copy2(path, dest / path.name)
    return dest


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(tmp_path_factory.mktemp("export"))


# ------------------------------------------------------------------------------------------ exit codes

def test_default_protocol_is_the_esophagus_consensus() -> None:
    args = build_parser().parse_args(["check", "somewhere"])
    assert args.protocol == DEFAULT_PROTOCOL == "esophagus-oligomet-2025"
    assert args.format == "text" and args.strict is False and args.map == []


def test_nothing_failed_exits_0_and_prints_the_text_report(capsys, protocols, export_dir) -> None:
    code, out, err = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"])
    assert code == ExitCode.OK, err
    assert "Summary: 8 PASS, 0 WARN, 0 FAIL, 1 NOT EVALUATED, 0 ERROR" in out
    assert "\x1b[" not in out  # not a terminal: no colour
    assert "Case file: none" in out


def test_strict_with_a_not_evaluated_rule_exits_4(capsys, protocols, export_dir) -> None:
    code, out, _ = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"], "--strict", "--format", "json")
    assert code == ExitCode.NOT_EVALUATED == 4
    assert json.loads(out)["summary"]["not_evaluated"] == 1


def test_a_failed_rule_exits_1_even_with_strict(capsys, protocols, export_dir) -> None:
    for extra in ([], ["--strict"]):
        code, out, _ = run_cli(capsys, "check", export_dir, "--protocol", protocols["impossible"], "--format", "json", *extra)
        assert code == ExitCode.RULES_FAILED == 1
        doc = json.loads(out)
        cord = next(r for r in doc["results"] if r["rule_id"] == "OAR-CORD")
        assert cord["status"] == "FAIL" and cord["limit"] == "≤ 1 Gy" and cord["measured"] > 1


def test_map_resolves_a_missing_structure_so_strict_passes(capsys, protocols, export_dir) -> None:
    # OAR-MISSING asks for 'Bowel' (Max ≤ 30 Gy); mapped to the stomach it is measured.
    code, out, err = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"], "--map", "Bowel=Stomach",
                             "--format", "json", "--strict")
    doc = json.loads(out)
    missing = next(r for r in doc["results"] if r["rule_id"] == "OAR-MISSING")
    assert missing["structures"] == ["Stomach"] and missing["status"] in ("PASS", "WARN", "FAIL")
    assert code == (ExitCode.RULES_FAILED if missing["status"] == "FAIL" else ExitCode.OK), err


@pytest.mark.parametrize("item", ["Bowel", "=Heart", "Bowel="])
def test_bad_map_is_a_usage_error(capsys, protocols, export_dir, item) -> None:
    code, _, err = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"], "--map", item)
    assert code == ExitCode.USAGE_ERROR
    assert f"--map {item!r}: expected STANDARD=ROI" in err


def test_unknown_format_is_a_usage_error(capsys, export_dir) -> None:
    code, _, err = run_cli(capsys, "check", export_dir, "--format", "pdf")
    assert code == ExitCode.USAGE_ERROR and "invalid choice: 'pdf'" in err


def test_malformed_protocol_exits_3_naming_file_rule_and_field(capsys, tmp_path, export_dir) -> None:
    write_protocols(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEST_PROTOCOL.replace('metric: "V20Gy[%]"', 'metrc: "V20Gy[%]"'), encoding="utf-8")
    code, out, err = run_cli(capsys, "check", export_dir, "--protocol", bad)
    assert code == ExitCode.INPUT_ERROR == 3
    assert out == ""
    assert err.startswith(f"{UNUSABLE}{bad}: ")
    assert "rule OAR-LUNG-V20, field metrc: Extra inputs are not permitted" in err
    assert "Traceback" not in err


def test_unknown_protocol_and_unreadable_case_exit_3(capsys, protocols, export_dir, tmp_path) -> None:
    code, _, err = run_cli(capsys, "check", export_dir, "--protocol", "no-such-protocol")
    assert code == ExitCode.INPUT_ERROR and "no built-in protocol 'no-such-protocol'" in err
    case = tmp_path / "case.yaml"
    case.write_text("histology: squamous\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"], "--case", case)
    assert code == ExitCode.INPUT_ERROR
    assert err.startswith(f"{UNUSABLE}{case}: line 1: field histology:")


def test_export_that_is_not_dicom_exits_3(capsys, protocols, tmp_path) -> None:
    (tmp_path / "notes.dcm").write_text("not DICOM", encoding="utf-8")
    code, _, err = run_cli(capsys, "check", tmp_path, "--protocol", protocols["test"])
    assert code == ExitCode.INPUT_ERROR and err.startswith(UNUSABLE)


# ------------------------------------------------------------------------------------------ case file

def test_case_file_found_next_to_the_export_is_used_and_reported(capsys, protocols, tmp_path) -> None:
    folder = copy_sample(tmp_path / "export")
    (folder / "case.yaml").write_text("histology: squamous_cell_carcinoma\nconcurrent_chemotherapy: false\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "check", folder, "--protocol", protocols["test"], "--format", "json")
    assert json.loads(out)["case_file"] == str(folder / "case.yaml")
    other = tmp_path / "other-case.yaml"
    other.write_text("intent: curative\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "check", folder, "--protocol", protocols["test"], "--case", other)
    assert f"Case file: {other}" in out


# ------------------------------------------------------------------------------------------ formats and output

def test_every_format_to_a_file(capsys, protocols, export_dir, tmp_path) -> None:
    outputs = {}
    for fmt in ("text", "json", "html", "junit"):
        target = tmp_path / "reports" / f"report.{fmt}"
        code, out, err = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"], "--format", fmt,
                                 "--output", target)
        assert code == ExitCode.OK, err
        assert out == ""
        outputs[fmt] = target.read_text(encoding="utf-8")
    assert sorted(os.listdir(tmp_path / "reports")) == ["report.html", "report.json", "report.junit", "report.text"]
    doc = json.loads(outputs["json"])
    assert [p["label"] for p in doc["plans"]] == list(PLANS)
    assert PATIENT_ID not in outputs["json"] and PATIENT_ID in outputs["html"]
    junit = ET.fromstring(outputs["junit"].encode("utf-8"))
    assert [s.get("name") for s in junit.findall("testsuite")] == ["coverage", "oar", "not-applicable"]
    assert "Summary: 8 PASS" in outputs["text"] and "\x1b[" not in outputs["text"]
    for r in doc["results"]:
        assert f'data-rule-id="{r["rule_id"]}"' in outputs["html"]


def test_a_failed_run_leaves_the_previous_output_untouched(capsys, tmp_path, export_dir) -> None:
    write_protocols(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nid: bad\n", encoding="utf-8")
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    target.write_text("previous report", encoding="utf-8")
    code, _, _ = run_cli(capsys, "check", export_dir, "--protocol", bad, "--format", "json", "--output", target)
    assert code == ExitCode.INPUT_ERROR
    assert target.read_text(encoding="utf-8") == "previous report"
    assert os.listdir(target.parent) == ["report.json"]


@pytest.mark.skipif(INTEGRITY_PROTOCOL not in builtin_protocol_ids(), reason="plan-integrity protocol not installed yet")
def test_the_integrity_rules_are_added_to_a_protocol_that_lacks_them(capsys, tmp_path, export_dir) -> None:
    own = tmp_path / "own.yaml"
    own.write_text(TEST_PROTOCOL.replace("extends: [integrity-stub.yaml]\n", ""), encoding="utf-8")
    code, out, err = run_cli(capsys, "check", export_dir, "--protocol", own, "--format", "json")
    doc = json.loads(out)
    assert doc["protocol"]["chain"] == [INTEGRITY_PROTOCOL, "test-protocol"]
    integrity = [r for r in doc["results"] if r["provenance"]["protocol"].startswith(INTEGRITY_PROTOCOL)]
    assert integrity, "no result from the plan-integrity rules"
    # the sample passes the test protocol's rules (as in test_nothing_failed_exits_0_and_prints_
    # the_text_report) and every plan-integrity rule
    assert code == ExitCode.OK, err


def test_the_console_script_exits_4_without_a_traceback(protocols, export_dir) -> None:
    proc = subprocess.run([sys.executable, "-m", "plancheck", "check", str(export_dir), "--protocol",
                           str(protocols["test"]), "--strict"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Result: NOT FULLY EVALUATED" in proc.stdout


# ------------------------------------------------------------------------------------------ protocols, explain

def test_protocols_lists_the_installed_ones(capsys) -> None:
    code, out, err = run_cli(capsys, "protocols")
    assert code == ExitCode.OK, out + err
    header = out.splitlines()[0].split()
    assert header == ["Id", "Version", "Rules", "Title", "Chain"]
    for pid in builtin_protocol_ids():
        assert any(line.startswith(pid + " ") for line in out.splitlines()), pid
    code, out, _ = run_cli(capsys, "protocols", "--format", "json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == builtin_protocol_ids()
    for r in rows:
        assert r["error"] is None and r["rules"] > 0 and r["chain"][-1] == r["id"]


def test_protocols_schema_is_a_json_schema_of_the_file_format(capsys) -> None:
    code, out, _ = run_cli(capsys, "protocols", "--schema")
    assert code == ExitCode.OK
    schema = json.loads(out)
    assert schema["additionalProperties"] is False
    assert {"schema_version", "id", "title", "version", "rules"} <= set(schema["properties"])
    assert "DvhRule" in schema["$defs"]


def test_explain_shows_the_rule_its_provenance_and_origin(capsys, protocols) -> None:
    code, out, _ = run_cli(capsys, "explain", "OAR-HEART-SBRT", "--protocol", protocols["test"])
    assert code == ExitCode.OK
    assert out.startswith("OAR-HEART-SBRT: Heart D15cc, SBRT\n")
    for line in ("  kind: dvh", "  metric: D15cc[Gy]", "  course: sbrt", "  limits_by_fractions:", "        per_protocol: 32.0",
                 "  source:      Test source E", "  section:     §5", "  confidence:  companion: taken from a document",
                 f"  defined in:  test-protocol (file {protocols['test']})", "  overridden by: none",
                 "  protocol chain: plan-integrity → test-protocol"):
        assert line in out, line


def test_explain_names_the_protocol_that_overrode_a_value(capsys, protocols, tmp_path) -> None:
    clinic = tmp_path / "clinic.yaml"
    clinic.write_text(f"""\
schema_version: 1
id: clinic-x
title: Clinic X
version: "1"
extends: [{protocols['test']}]
overrides:
  OAR-CORD: {{limits: {{unit: Gy, upper: {{per_protocol: 44}}}}}}
""", encoding="utf-8")
    code, out, _ = run_cli(capsys, "explain", "OAR-CORD", "--protocol", clinic)
    assert code == ExitCode.OK
    assert "  defined in:  test-protocol" in out
    assert f"  overridden by: clinic-x (file {clinic})" in out
    assert "per_protocol: 44.0" in out
    assert "protocol chain: plan-integrity → test-protocol → clinic-x" in out


def test_explain_of_an_unknown_rule_exits_2(capsys, protocols) -> None:
    code, out, err = run_cli(capsys, "explain", "OAR-CROD", "--protocol", protocols["test"])
    assert code == ExitCode.USAGE_ERROR == 2
    assert out == ""
    assert "protocol test-protocol has no rule 'OAR-CROD'; did you mean OAR-CORD" in err


def test_a_map_key_no_rule_looks_up_is_a_usage_error(capsys, protocols, export_dir) -> None:
    # 'Bowels' is no structure of the test protocol (it asks for 'Bowel'): the mapping would change
    # nothing and the rule would be graded as if it were not given
    code, _, err = run_cli(capsys, "check", export_dir, "--protocol", protocols["test"], "--map", "Bowels=Stomach")
    assert code == ExitCode.USAGE_ERROR
    assert "structure mapping: 'Bowels' is no structure that a rule of protocol" in err
