"""``plancheck case init`` and ``plancheck case check``; the missing-case-file hint of ``check``.

The sample export (``sample_dicom``) has three plans: C1_Eso 60 Gy / 30 fx, C2_LungMet 50 Gy /
5 fx, C3_VertMet 30 Gy / 3 fx, and the targets PTVp (primary) and PTV_Met_Lung, PTV_Met_Vert
(metastases, by their names). The technique drafted for each follows from the numbers, by
hand: 60/30 = 2 Gy/fx → conventional; 50/5 = 10 Gy/fx in 5 ≤ 12 fx → sbrt; 30/3 = 10 Gy/fx in
3 fx → sbrt (the rule: ≥ 4 Gy/fx in ≤ 12 fx).

A draft must never make a rule PASS on a guess: what only the clinician knows stays null, so
the definition and timing rules are NOT EVALUATED until the file is filled in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from plancheck.analysis.case_draft import check_case_file
from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.main import main
from plancheck.model.case import load_case

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def export_dir(tmp_path: Path) -> Path:
    """The sample's plans, structure set and doses, without its case file."""
    dest = tmp_path / "export"
    dest.mkdir()
    for path in SAMPLE.glob("R[PSD]_*.dcm"):
        (dest / path.name).symlink_to(path)
    return dest


def test_init_drafts_a_case_file_next_to_the_export(capsys, export_dir: Path) -> None:
    code, out, err = run_cli(capsys, "case", "init", export_dir)
    assert code == ExitCode.OK, err
    written = export_dir / "case.yaml"
    assert f"wrote {written}: 3 course(s)" in out and "plancheck case check" in out
    text = written.read_text(encoding="utf-8")
    case = load_case(written)  # valid as drafted
    assert [(c.plan, c.technique, c.intent) for c in case.courses] == [
        ("C1_Eso", "conventional", None), ("C2_LungMet", "sbrt", None), ("C3_VertMet", "sbrt", None)]
    assert case.primary.target == "PTVp" and case.primary.diagnosis_date is None
    # what only the clinician knows is left empty ...
    assert (case.histology, case.metastases, case.systemic_therapy, case.restaging) == (None, None, None, None)
    # ... and the targets named like metastases are a commented template, organs guessed from the names
    assert "#  - organ: lung" in text and "#    target: PTV_Met_Lung" in text
    assert "#  - organ: bone" in text and "#    target: PTV_Met_Vert" in text
    # every guess says so; the dates and numbers of the plans are there
    c2 = next(line for line in text.splitlines() if "technique: sbrt" in line)
    assert "CONFIRM: from the numbers (50 Gy / 5 fx = 10 Gy/fx" in c2
    assert "dated 2025-06-02" in text


def test_a_draft_never_makes_a_rule_pass_on_a_guess(capsys, export_dir: Path) -> None:
    run_cli(capsys, "case", "init", export_dir)
    code, out, err = run_cli(capsys, "check", export_dir, "--format", "json")
    doc = json.loads(out)
    assert doc["case_file"] == str(export_dir / "case.yaml")
    clinical = [r for r in doc["results"] if r["category"] in ("definition", "timing")]
    assert clinical and all(r["status"] == "NOT_EVALUATED" for r in clinical)


def test_init_keeps_an_existing_case_file_unless_forced(capsys, export_dir: Path) -> None:
    (export_dir / "case.yaml").write_text("histology: adenocarcinoma\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "case", "init", export_dir)
    assert code == ExitCode.USAGE_ERROR and "case.yaml exists; give --force" in err
    assert (export_dir / "case.yaml").read_text(encoding="utf-8") == "histology: adenocarcinoma\n"
    code, _, _ = run_cli(capsys, "case", "init", export_dir, "--force")
    assert code == ExitCode.OK and "courses:" in (export_dir / "case.yaml").read_text(encoding="utf-8")


def test_init_to_standard_output(capsys, export_dir: Path) -> None:
    code, out, _ = run_cli(capsys, "case", "init", export_dir, "--output", "-")
    assert code == ExitCode.OK and not (export_dir / "case.yaml").exists()
    assert yaml.safe_load(out)["courses"][1] == {"plan": "C2_LungMet", "technique": "sbrt", "intent": None}


def test_init_of_something_that_is_not_an_export_exits_3(capsys, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM", encoding="utf-8")
    code, _, err = run_cli(capsys, "case", "init", tmp_path)
    assert code == ExitCode.INPUT_ERROR and err.startswith("plancheck: unusable input: ")
    assert not (tmp_path / "case.yaml").exists()


def test_check_accepts_the_sample_case_and_lists_what_is_left(capsys, export_dir: Path) -> None:
    code, out, _ = run_cli(capsys, "case", "check", SAMPLE / "case.yaml", "--export", export_dir)
    assert code == ExitCode.OK
    assert out.splitlines()[0] == f"{SAMPLE / 'case.yaml'}: valid and consistent with the export"
    assert "still empty" not in out and "CONFIRM" not in out  # the sample's file is complete (courses optional)
    run_cli(capsys, "case", "init", export_dir)
    code, out, _ = run_cli(capsys, "case", "check", export_dir / "case.yaml")
    assert code == ExitCode.OK
    assert "still empty (the rules that need them are NOT EVALUATED): histology, intent," in out
    assert "still marked CONFIRM: line(s) " in out


@pytest.mark.parametrize(("text", "line", "message"), [
    ("histology: squamous_cell_carcinoma\nmetastases:\n  - organ: lung\n    size_mm: -3\n", 4,
     "field metastases.0.size_mm: Input should be greater than 0"),
    ("intent: curative\n\nhistolgy: other\n", 3, "field histolgy: Extra inputs are not permitted"),
    ("courses:\n  - plan: C1_Eso\n    technique: imrt\n", 3, "field courses.0.technique: Input should be 'sbrt' or 'conventional'"),
    ("courses:\n  - technique: sbrt\n", 2, "field courses.0.plan: Field required"),
    ("restaging:\n  date: [2025\n", 3, "not valid YAML (column 1)"),
])
def test_check_names_the_line_of_each_problem(capsys, tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, "case", "check", path)
    assert code == ExitCode.INPUT_ERROR and out == ""
    assert f"plancheck: case file {path}, line {line}: {message}" in err


def test_check_finds_plans_and_structures_the_export_does_not_have(capsys, tmp_path: Path, export_dir: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text("primary:\n  target: PTV_Primary\ncourses:\n  - plan: C1_Eso\n  - plan: C9_Brain\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "case", "check", path, "--export", export_dir)
    assert code == ExitCode.INPUT_ERROR
    assert f"{path}, line 2: primary.target 'PTV_Primary' is not a structure of the export" in err
    assert f"{path}, line 5: courses[1].plan 'C9_Brain' is not a plan of the export" in err


def test_check_of_a_missing_file_exits_3(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "case", "check", tmp_path / "nowhere.yaml")
    assert code == ExitCode.INPUT_ERROR and "cannot read case file" in err


def test_case_without_an_action_prints_help_and_exits_2(capsys) -> None:
    code, _, err = run_cli(capsys, "case")
    assert code == ExitCode.USAGE_ERROR and "init" in err and "check" in err


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_case_files_give_problems_never_a_crash(tmp_path: Path, data: st.DataObject) -> None:
    """Any damage to a valid file (characters deleted, replaced or inserted) is either still a
    case or a list of problems with lines inside the file; never an exception."""
    good = (SAMPLE / "case.yaml").read_text(encoding="utf-8")
    cut = data.draw(st.integers(0, len(good) - 1))
    span = data.draw(st.integers(0, 12))
    insert = data.draw(st.text(alphabet=" :-\n\t[]{}#'\"0123456789abcxyz_.,&*!|>%@`\\\x00é", max_size=8))
    damaged = good[:cut] + insert + good[cut + span:]
    path = tmp_path / "damaged.yaml"
    path.write_bytes(damaged.encode("utf-8"))
    result = check_case_file(path)
    assert (result.case is None) == bool(result.errors)
    n_lines = damaged.count("\n") + 2
    for line, message in result.errors:
        assert 0 <= line <= n_lines and message


def test_check_without_a_case_file_says_how_to_write_one(capsys, tmp_path: Path) -> None:
    export = tmp_path / "my export"
    shutil.copytree(SAMPLE, export, ignore=shutil.ignore_patterns("CT_*", "case.yaml"))
    code, out, _ = run_cli(capsys, "check", export)
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("No case file: "))
    assert lines[first].endswith("need the clinical context. Write one:")  # a long path moves the command whole
    assert lines[first + 1] == f"    plancheck case init '{export}'"
    assert out.count("Case file: none") == 1


def test_a_plan_of_several_fraction_groups_gets_no_drafted_technique() -> None:
    # 25 fx and a 3 fx boost in one plan (74 Gy): its dose per fraction is not known, so the draft
    # must not propose "conventional" from 74 Gy / 28 fx (confirmed, it would take the SBRT
    # limits off the boost's course)
    from dataclasses import replace

    from plancheck.analysis.case_draft import draft_case_file
    from plancheck.model import FractionGroup
    from rt_cases import banded_dose, plan, treatment

    two_groups = replace(plan("P", 74.0, 25), fraction_groups=(FractionGroup(1, 25), FractionGroup(2, 3)))
    draft = draft_case_file(treatment([], [(two_groups, banded_dose([]))]))
    line = next(x for x in draft.splitlines() if x.strip().startswith("technique:"))
    assert line.split("#")[0].strip() == "technique: null"
    assert "2 fraction groups (25 + 3 fx)" in line
