"""A patient whose courses the pipelines cannot put together must never get a composite PASS.

The export is :func:`treatment_exports.two_frame_export`: the two courses of
``two_course_export``, each planned on its own image set (frame of reference A: C_A, frame B:
C_B). Every box lies inside a band of uniform dose, so (derivation in :mod:`treatment_exports`):

* cord D0.03cc per course: 25 Gy in C_A, 25 Gy in C_B (≤ 45 Gy: CORD-COURSE PASS);
* the patient's cord has received 25 + 25 = 50 Gy (> 45 Gy), but the two doses lie in different
  frames and plancheck cannot add them (``check`` refuses the export, exit 3). ``batch``,
  ``serve`` and ``watch`` check each frame as a treatment: its CORD-COMPOSITE must be
  NOT EVALUATED naming the other plan, not PASS at 25 Gy.

``orphan_dose=True`` adds, in frame A, the dose of a course C_X whose plan is absent: ``check``
refuses it (a dose referencing a plan not in the input); ``batch`` must too (it used to drop
the file and PASS the composite on C_A alone), and ``serve``/``watch`` must wait for the plan.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pydicom
import pytest

from plancheck.batch import BatchOptions, run_batch
from plancheck.cli.main import main
from plancheck.dicom.store import group_treatments, index_objects, treatment_checks, treatment_version
from treatment_exports import WatchedFolder, protocol, protocol_file, two_frame_export  # noqa: F401 (protocol fixtures)

PATIENT_ID, PATIENT_NAME = "MRN-434343", "SPLIT^CASE"



@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two-frames")
    two_frame_export(out, orphan_dose=True)
    return out


def _export(source: Path, target: Path, *places: str, orphan: bool = False) -> Path:
    """Copy the folders ``places`` (``A``, ``B``) of the source, with or without the orphan dose."""
    for place in places:
        ignore = None if orphan else shutil.ignore_patterns("RD_C_X.dcm")
        shutil.copytree(source / place, target / place, ignore=ignore)
    return target


def _cord(report_json: Path) -> dict[str, tuple[str, float | None, str]]:
    report = json.loads(report_json.read_text(encoding="utf-8"))
    return {r["rule_id"]: (r["status"], r["measured"], r["message"]) for r in report["results"]
            if r["rule_id"].startswith("CORD")}


def test_check_refuses_courses_on_two_image_sets(source, tmp_path, protocol_file, capsys):
    export = _export(source, tmp_path / "in", "A", "B")
    assert main(["check", str(export), "--protocol", str(protocol_file)]) == 3
    err = capsys.readouterr().err
    assert "'Frame of Reference UID' differs" in err and "Traceback" not in err


def test_batch_leaves_the_composite_not_evaluated_when_courses_lie_on_two_image_sets(source, tmp_path, protocol):
    export = _export(source, tmp_path / "in", "A", "B")
    outcome = run_batch(export, tmp_path / "reports", protocol, BatchOptions(workers=0))
    assert sorted(r.plan_labels for r in outcome.results) == [("C_A",), ("C_B",)]
    for result in outcome.results:
        [json_report] = [Path(p) for p in result.report_files if p.endswith(".json")]
        cord = _cord(json_report)
        assert cord["CORD-COURSE"][0] == "PASS"
        assert cord["CORD-COURSE"][1] == pytest.approx(25.0, abs=0.01)  # uniform band dose (0.01 Gy: 16-bit scaling)
        other = "C_B" if result.plan_labels == ("C_A",) else "C_A"
        status, measured, message = cord["CORD-COMPOSITE"]
        assert (status, measured) == ("NOT_EVALUATED", None)  # 25 + 25 = 50 Gy > 45 Gy cannot be graded here
        assert f"also has plan(s) {other} in another frame of reference" in message
        report = json.loads(json_report.read_text(encoding="utf-8"))
        [left] = report["left_out_plans"]
        assert left["label"] == other and "another frame of reference" in left["reason"]
        rows = [r for r in outcome.rows if r["treatment_id"] == result.treatment_id]
        assert all(other in r["left_out"] for r in rows)
        assert {r["rule_id"]: r["status"] for r in rows if r["rule_id"].startswith("CORD")} == {
            "CORD-COURSE": "PASS", "CORD-COMPOSITE": "NOT_EVALUATED"}


def test_batch_resume_checks_again_when_a_course_appears_on_another_image_set(source, tmp_path, protocol):
    export = _export(source, tmp_path / "in", "A")
    reports = tmp_path / "reports"
    [first] = run_batch(export, reports, protocol, BatchOptions(workers=0)).results
    json_report = next(Path(p) for p in first.report_files if p.endswith(".json"))
    # one course known: the composite is that course, 25 Gy <= 45 Gy
    assert _cord(json_report)["CORD-COMPOSITE"][:2] == ("PASS", pytest.approx(25.0, abs=0.01))
    _export(source, export, "B")
    again = run_batch(export, reports, protocol, BatchOptions(workers=0))
    a = next(r for r in again.results if r.plan_labels == ("C_A",))
    assert not a.skipped  # its reports were made without knowing C_B: not current
    assert _cord(json_report)["CORD-COMPOSITE"][0] == "NOT_EVALUATED"


def test_a_case_file_declaring_the_courses_grades_the_composite(source, tmp_path, protocol):
    export = _export(source, tmp_path / "in", "A", "B")
    (export / "A" / "case.yaml").write_text("courses:\n  - plan: C_A\n", encoding="utf-8")
    outcome = run_batch(export, tmp_path / "reports", protocol, BatchOptions(workers=0))
    a = next(r for r in outcome.results if r.plan_labels == ("C_A",))
    cord = _cord(next(Path(p) for p in a.report_files if p.endswith(".json")))
    # the case file says the treatment is C_A alone: its composite is C_A's 25 Gy <= 45 Gy
    assert cord["CORD-COMPOSITE"][:2] == ("PASS", pytest.approx(25.0, abs=0.01))
    b = next(r for r in outcome.results if r.plan_labels == ("C_B",))  # no case file next to C_B
    assert _cord(next(Path(p) for p in b.report_files if p.endswith(".json")))["CORD-COMPOSITE"][0] == "NOT_EVALUATED"


def test_batch_refuses_a_dose_whose_plan_is_missing_as_check_does(source, tmp_path, protocol_file, capsys):
    export = _export(source, tmp_path / "in", "A", orphan=True)
    assert main(["check", str(export), "--protocol", str(protocol_file)]) == 3
    check_err = capsys.readouterr().err
    assert "RD_C_X.dcm: references RT Plan" in check_err and "which is not in the input" in check_err
    reports = tmp_path / "reports"
    assert main(["batch", str(export), "--reports", str(reports), "--protocol", str(protocol_file),
                 "--workers", "0"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and PATIENT_ID not in err and "SPLIT" not in err
    with (reports / "summary.csv").open(encoding="utf-8") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["status"] == "ERROR" and "RD_C_X.dcm: references RT Plan" in row["message"]
    assert not [p for p in reports.glob("*/*/*.json") if p.name != "batch-result.json"]  # no report of part of it


def test_batch_lists_files_no_plan_uses(source, tmp_path, protocol):
    export = _export(source, tmp_path / "in", "A")
    (export / "B").mkdir()
    shutil.copy(source / "B" / "RS.dcm", export / "B" / "RS.dcm")  # frame B's structure set, its plan not exported
    outcome = run_batch(export, tmp_path / "reports", protocol, BatchOptions(workers=0))
    with outcome.skipped_list.open(encoding="utf-8") as fh:
        rows = {Path(r["path"]).relative_to(export).as_posix(): r["reason"] for r in csv.DictReader(fh)}
    assert list(rows) == ["B/RS.dcm"]
    assert rows["B/RS.dcm"].startswith("no RT Plan of its patient in its frame of reference")


def test_grouping_makes_a_treatment_with_a_dose_without_plan_incomplete_and_names_the_other_frames(source):
    [a, b] = sorted(group_treatments(index_objects(source).objects), key=lambda t: t.plans[0].plan.label)
    [check_a] = treatment_checks(a)
    assert not check_a.complete and any("which is not present" in m for m in check_a.missing)
    assert any(p.name == "RD_C_X.dcm" for p in check_a.files)  # read with the treatment, so it is refused
    assert [p.label for p in check_a.outside_plans] == ["C_B"]
    [check_b] = treatment_checks(b)
    assert check_b.complete and [p.label for p in check_b.outside_plans] == ["C_A"]
    # the receiver checks A again when a plan arrives in frame B: its version follows the other frames
    assert b.plans[0].plan.sop_instance_uid in check_a.component_uids
    [alone] = treatment_checks(group_treatments(index_objects(source / "A").objects)[0])
    assert treatment_version(alone) != treatment_version(check_a)


def test_watch_checks_a_treatment_again_when_a_course_arrives_on_another_image_set(source, tmp_path, protocol):
    (tmp_path / "in").mkdir()
    watched = WatchedFolder(tmp_path / "in", tmp_path / "reports", protocol)
    _export(source, tmp_path / "in", "A")
    [first] = watched.settle()
    assert _cord(Path(first.report_files[0]))["CORD-COMPOSITE"][0] == "PASS"  # C_A alone: 25 Gy
    _export(source, tmp_path / "in", "B")
    records = watched.settle()
    assert sorted(r.plan_labels for r in records) == [("C_A",), ("C_B",)]
    for record in records:
        assert _cord(Path(record.report_files[0]))["CORD-COMPOSITE"][0] == "NOT_EVALUATED"


@pytest.fixture(scope="module")
def shared_frame(tmp_path_factory) -> Path:
    """Two patients planned on one template CT (one frame of reference UID): MRN-1 has course C_A,
    MRN-2 course C_B (each cord 25 Gy)."""
    out = tmp_path_factory.mktemp("shared-frame")
    frame = "1.2.826.0.1.3680043.8.498.4242"
    two_frame_export(out / "p1", key="p1", patient_id="MRN-1", patient_name="ONE^PAT", courses=("C_A",),
                     frame_uid=frame)
    two_frame_export(out / "p2", key="p2", patient_id="MRN-2", patient_name="TWO^PAT", courses=("C_B",),
                     frame_uid=frame)
    return out


def test_batch_keeps_both_patients_who_share_a_frame_of_reference(shared_frame, tmp_path, protocol):
    outcome = run_batch(shared_frame, tmp_path / "reports", protocol, BatchOptions(workers=0))
    # one result per patient (the second used to replace the first: C_B reported twice, C_A lost)
    assert sorted(r.plan_labels for r in outcome.results) == [("C_A",), ("C_B",)]
    assert len({r.patient_key for r in outcome.results}) == 2
    assert sorted(r["plans"] for r in outcome.rows if r["rule_id"] == "CORD-COMPOSITE") == ["C_A", "C_B"]


def test_watch_files_the_reports_of_two_patients_who_share_a_frame_apart(shared_frame, tmp_path, protocol):
    shutil.copytree(shared_frame, tmp_path / "in")
    records = WatchedFolder(tmp_path / "in", tmp_path / "reports", protocol).settle()
    assert sorted(r.plan_labels for r in records) == [("C_A",), ("C_B",)]
    assert records[0].treatment_id == records[1].treatment_id  # the frame of reference UID
    assert records[0].patient_key != records[1].patient_key
    for record in records:
        treatment = Path(record.folder).parent
        assert treatment.parent.name == record.patient_key
        # each patient's report is the newest of its own treatment, superseded by no other patient's
        assert json.loads((treatment / "latest.json").read_text(encoding="utf-8")) == {
            "latest": Path(record.folder).name, "superseded": []}
    names = [p.name for p in (tmp_path / "reports").rglob("*")]
    assert not any("MRN" in n or "PAT" in n for n in names)


def _in_modality_folders(tmp_path: Path) -> Path:
    """:func:`two_course_export` (cord 25 Gy per course) laid out as some systems export:
    ``in/exp/RTPLAN``, ``in/exp/RTDOSE``, ``in/exp/RTSTRUCT``; ``in/exp/case.yaml`` declares both
    courses; ``in/case.yaml`` (above the export folder) is not this export's and names no plan of it."""
    from treatment_exports import two_course_export

    exp = tmp_path / "in" / "exp"
    for name, path in two_course_export(tmp_path / "flat", key="modality-folders").items():
        folder = exp / {"RP": "RTPLAN", "RD": "RTDOSE", "RS": "RTSTRUCT"}[name[:2]]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), folder / path.name)
    (exp / "case.yaml").write_text("courses:\n  - plan: C_A\n  - plan: C_B\n", encoding="utf-8")
    (tmp_path / "in" / "case.yaml").write_text("courses:\n  - plan: C_Z\n", encoding="utf-8")
    return exp


def test_batch_finds_the_case_file_of_an_export_whose_plans_lie_in_a_subfolder(tmp_path, protocol_file, protocol):
    exp = _in_modality_folders(tmp_path)
    out = tmp_path / "check.json"
    main(["check", str(exp), "--protocol", str(protocol_file), "--plan", "C_A", "--format", "json",
          "--output", str(out)])  # exit 1: the synthetic export's integrity FAILs
    assert _cord(out)["CORD-COMPOSITE"][0] == "NOT_EVALUATED"  # C_B, a declared course, is left out
    outcome = run_batch(tmp_path / "in", tmp_path / "reports", protocol, BatchOptions(workers=0, plans=("C_A",)))
    [result] = outcome.results
    assert result.error is None  # in/case.yaml (naming C_Z) is above the export folder: not its case file
    cord = _cord(next(Path(p) for p in result.report_files if p.endswith(".json")))
    # as check: not graded on C_A's 25 Gy while the case file declares C_B too (the sum is 50 Gy > 45 Gy)
    assert cord["CORD-COMPOSITE"][0] == "NOT_EVALUATED" and "declares C_B" in cord["CORD-COMPOSITE"][2]


def test_watch_finds_the_case_file_of_an_export_whose_plans_lie_in_a_subfolder(tmp_path, protocol):
    exp = _in_modality_folders(tmp_path)
    (exp / "case.yaml").write_text("courses:\n  - plan: C_A\n", encoding="utf-8")
    [record] = WatchedFolder(tmp_path / "in", tmp_path / "reports", protocol).settle()
    assert record.error is None and record.plan_labels == ("C_A",)  # the case file's courses, not every plan
    assert _cord(Path(record.report_files[0]))["CORD-COMPOSITE"][:2] == ("PASS", pytest.approx(25.0, abs=0.01))


@pytest.mark.parametrize("name", ["RD_C_A.dcm", "RP_C_A.dcm"])
def test_batch_refuses_two_different_objects_under_one_uid_as_check_does(source, tmp_path, protocol_file, capsys,
                                                                          name):
    # C_A's dose (or plan) edited and written again under its old SOP Instance UID beside the old
    # file: which one is current cannot be told. check refuses it; batch kept the first file by
    # path and graded it (the old one when it sorts first).
    export = _export(source, tmp_path / "in", "A")
    ds = pydicom.dcmread(export / "A" / name)
    ds.SeriesDescription = "edited"
    ds.save_as(export / "A" / f"z_{name}")
    assert main(["check", str(export), "--protocol", str(protocol_file)]) == 3
    assert "same SOP Instance UID but different contents" in capsys.readouterr().err
    reports = tmp_path / "reports"
    assert main(["batch", str(export), "--reports", str(reports), "--protocol", str(protocol_file),
                 "--workers", "0"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and PATIENT_ID not in err
    with (reports / "summary.csv").open(encoding="utf-8") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["status"] == "ERROR" and "same SOP Instance UID but different contents" in row["message"]


def test_an_identical_copy_is_still_a_duplicate_in_the_index(source, tmp_path):
    export = _export(source, tmp_path / "in", "A")
    shutil.copy(export / "A" / "RD_C_A.dcm", export / "A" / "z_copy.dcm")
    index = index_objects(export)
    assert [(p.name, r) for p, r in index.skipped] == [("z_copy.dcm", f"duplicate of {export / 'A' / 'RD_C_A.dcm'}")]
    assert all(not o.conflicting_paths for o in index.objects)
