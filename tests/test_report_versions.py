"""The newest report of a treatment (``latest.json`` of the receiver and the watched folder) is
always the one of its current files and case file.

The export is :func:`treatment_exports.two_course_export`: cord D0.03cc 25 Gy in each of C_A and
C_B (uniform dose bands, derivation there), so CORD-COMPOSITE is 25 + 25 = 50 Gy > 45 Gy (FAIL)
with both courses, and 25 Gy ≤ 45 Gy (PASS) when a case file makes C_A the only course.
Before, a case file's content was not part of a version: a case file edited back to both
courses found that version "checked already", and ``latest.json`` kept naming the C_A-only
report (composite PASS) as the treatment's current one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from treatment_exports import WatchedFolder, protocol, protocol_file, two_course_export  # noqa: F401 (protocol fixtures)



def _composite(record) -> tuple[str, float | None]:
    report = json.loads(Path(record.report_files[0]).read_text(encoding="utf-8"))
    [row] = [r for r in report["results"] if r["rule_id"] == "CORD-COMPOSITE"]
    return row["status"], row["measured"]


def _latest(record) -> str:
    return json.loads((Path(record.folder).parent / "latest.json").read_text(encoding="utf-8"))["latest"]


def test_an_edited_case_file_is_a_new_version_and_an_undone_edit_makes_the_old_one_latest(tmp_path, protocol):
    export = tmp_path / "in" / "exp"
    two_course_export(export, key="versions")
    settle = WatchedFolder(tmp_path / "in", tmp_path / "reports", protocol).settle
    [both] = settle()
    assert _composite(both) == ("FAIL", pytest.approx(50.0, abs=0.01))  # 25 + 25 Gy
    case = export / "case.yaml"
    case.write_text("courses:\n  - plan: C_A\n", encoding="utf-8")
    [only_a] = settle()
    assert only_a.plan_labels == ("C_A",) and _composite(only_a) == ("PASS", pytest.approx(25.0, abs=0.01))
    case.write_text("courses:\n  - plan: C_A\n  - plan: C_B\n", encoding="utf-8")
    [declared_both] = settle()  # same files and courses as the first check, another case file
    assert declared_both.version != both.version
    assert _composite(declared_both)[0] == "FAIL" and _latest(declared_both) == Path(declared_both.folder).name
    case.write_text("courses:\n  - plan: C_A\n", encoding="utf-8")  # the edit undone
    assert settle() == []  # that version was checked already ...
    assert _latest(only_a) == Path(only_a.folder).name  # ... and it is the current one again
    superseded = json.loads((Path(only_a.folder).parent / "latest.json").read_text(encoding="utf-8"))["superseded"]
    assert sorted(superseded) == sorted(Path(r.folder).name for r in (both, declared_both))


def test_a_check_failed_by_a_file_rewritten_while_it_was_read_is_tried_again(tmp_path, protocol, monkeypatch):
    import plancheck.analysis.treatment_versions as versions

    files = two_course_export(tmp_path / "in" / "exp", key="rewritten")
    dose, whole = files["RD_C_B"], files["RD_C_B"].read_bytes()
    real, calls = versions.check_treatment_files, []

    def rewritten_while_read(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            return real(*args, **kwargs)
        dose.write_bytes(whole[: len(whole) // 2])  # the planning system writes the file again ...
        try:
            return real(*args, **kwargs)
        finally:
            dose.write_bytes(whole)  # ... with the same bytes: the same version as the one that failed

    monkeypatch.setattr(versions, "check_treatment_files", rewritten_while_read)
    records = WatchedFolder(tmp_path / "in", tmp_path / "reports", protocol).settle(steps=6)
    [failed, checked] = records
    assert failed.status == "ERROR" and "truncated" in failed.error and failed.folder == ""  # not kept as the version
    assert failed.version == checked.version and checked.error is None
    assert _composite(checked) == ("FAIL", pytest.approx(50.0, abs=0.01)) and _latest(checked) == Path(checked.folder).name


def test_a_single_plan_report_is_no_longer_latest_once_an_alternative_plan_arrives(tmp_path, protocol):
    # C_A + C_B checked together; then an alternative of C_A arrives (C_A_IMRT, same target on the
    # same structure set): the treatment is checked per combination, in folders of their own.
    # The first folder's latest.json must stop naming its report as the treatment's current one.
    export = tmp_path / "in" / "exp"
    two_course_export(export, key="alternatives-late")
    settle = WatchedFolder(tmp_path / "in", tmp_path / "reports", protocol).settle
    [single] = settle()
    assert _latest(single) == Path(single.folder).name
    two_course_export(export, key="alternatives-late", alternatives=True)  # adds RP/RD_C_A_IMRT
    variants = settle()
    assert len(variants) == 2 and all(Path(r.folder).parent != Path(single.folder).parent for r in variants)
    old = json.loads((Path(single.folder).parent / "latest.json").read_text(encoding="utf-8"))
    assert old["latest"] is None and Path(single.folder).name in old["superseded"]
    assert old["replaced_by"] == sorted(Path(r.folder).parent.name for r in variants)
    for record in variants:
        assert _latest(record) == Path(record.folder).name
