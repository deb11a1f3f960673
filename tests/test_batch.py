"""``plancheck batch``: every plan of an archive checked in parallel, resume, summary tables.

The archive holds three small synthetic patients (different seeds, jitter and patient IDs),
in three different layouts: one export folder; nested folders with the CT; one patient split
over several folders (plan, dose and structures apart) so that grouping must come from the
headers. Patient 2's C2_LungMet dose is truncated → that plan gets an ERROR row, the other
eight plans are checked. Patient 3 is the ``violations`` variant: its C1_Eso spinal cord
maximum (about 50 Gy) is above the acceptable 48 Gy → FAIL; every other plan passes (cord
and heart far below their limits).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from plancheck.batch import SUMMARY_COLUMNS, BatchOptions, discover_plans, run_batch
from plancheck.cli.main import main
from plancheck.dicom.write import write_case
from plancheck.errors import DicomReadError
from plancheck.protocol.loader import builtin_protocol_ids, load_protocol
from pipeline_protocol import write_pipeline_protocol
from plancheck.synthetic import CaseSpec, build_case

PATIENTS = [("MRN-100001", "ALPHA^ANNA"), ("MRN-200002", "BRAVO^BERT"), ("MRN-300003", "CHARLIE^CLARA")]


def _spec(i: int) -> CaseSpec:
    pid, name = PATIENTS[i]
    return CaseSpec(seed=100 + i, jitter=1.0, violations=(i == 2), include_ct=(i == 1), ct_pixels=32,
                    ct_slice_mm=10.0, dose_spacing_conventional_mm=6.0, dose_spacing_sbrt_mm=5.0,
                    patient_id=pid, patient_name=name)


@pytest.fixture(scope="module")
def archive_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    write_case(build_case(_spec(0)), root / "patient-a")
    write_case(build_case(_spec(1)), root / "2024" / "nested" / "patient-b")
    split = tmp_path_factory.mktemp("split")
    write_case(build_case(_spec(2)), split)
    for f in split.iterdir():  # scatter patient C over folders by file type
        target = root / "misc" / {"RP": "plans", "RD": "doses", "RS": "structures"}[f.name[:2]] / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), target)
    (root / "misc" / "notes.txt").write_text("not DICOM", encoding="utf-8")
    dose = root / "2024" / "nested" / "patient-b" / "RD_C2_LungMet.dcm"
    data = dose.read_bytes()
    dose.write_bytes(data[: len(data) // 2])
    return root


@pytest.fixture
def archive(archive_template, tmp_path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(archive_template, root)
    return root


@pytest.fixture(scope="module")
def protocol_file(tmp_path_factory) -> Path:
    return write_pipeline_protocol(tmp_path_factory.mktemp("protocol"), "test-batch", "Test protocol of the batch tests")


@pytest.fixture(scope="module")
def protocol(protocol_file):
    return load_protocol(str(protocol_file))


def _statuses(outcome) -> dict[tuple[str, str], str]:
    return {(r.patient_key, r.plan_label): r.status for r in outcome.results}


def _check_outcome(outcome) -> None:
    assert len(outcome.results) == 9
    errors = [r for r in outcome.results if r.status == "ERROR"]
    assert [r.plan_label for r in errors] == ["C2_LungMet"]
    assert "truncated" in errors[0].error and "RD_C2_LungMet.dcm" in errors[0].error
    fails = [r.plan_label for r in outcome.results if r.status == "FAIL"]
    assert fails == ["C1_Eso"]
    assert sum(r.status == "PASS" for r in outcome.results) == 7
    assert len({r.patient_key for r in outcome.results}) == 3


def test_discovery_groups_files_by_headers_not_folders(archive, protocol, tmp_path):
    found = discover_plans(archive, tmp_path / "reports", protocol)
    assert len(found.jobs) == 9
    assert all(g.complete for g in found.groups)  # the truncated dose still has a readable header
    split = [g for g in found.groups if "misc" in str(g.plan.path)]
    assert len(split) == 3
    for g in split:
        assert {p.parent.name for p in g.files} == {"plans", "doses", "structures"}
    with_ct = [g for g in found.groups if g.images]
    assert len(with_ct) == 3 and all(len(g.images) > 5 for g in with_ct)
    assert any("notes.txt" in str(p) for p, _ in found.index.skipped)


def test_batch_checks_every_plan_and_gives_an_error_row_for_the_broken_one(archive, protocol, tmp_path):
    reports = tmp_path / "reports"
    seen = []
    outcome = run_batch(archive, reports, protocol, BatchOptions(workers=2, html=True), on_result=seen.append)
    _check_outcome(outcome)
    assert len(seen) == 9 and outcome.resumed == 0
    assert 1 <= len(outcome.worker_peak_rss_mb) <= 2
    assert all(0 < mb < 1024 for mb in outcome.worker_peak_rss_mb.values())
    for r in outcome.results:
        if r.status != "ERROR":
            assert sorted(Path(p).suffix for p in r.report_files) == [".html", ".json"]
            assert all(Path(p).is_file() for p in r.report_files)

    csv_path, parquet_path = outcome.summary_files
    with csv_path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert len(rows) == 8 * 2 + 1  # two rules per checked plan, one ERROR row
    [error_row] = [r for r in rows if r["status"] == "ERROR"]
    assert error_row["plan_label"] == "C2_LungMet" and "truncated" in error_row["message"]
    failed = [r for r in rows if r["status"] == "FAIL"]
    assert {r["plan_label"] for r in failed} == {"C1_Eso"}
    [cord] = [r for r in failed if r["rule_id"] == "OAR-CORD-MAX"]
    assert cord["unit"] == "Gy" and float(cord["measured"]) > 48  # the violations variant: about 50 Gy

    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(parquet_path)
    assert table.column_names == list(SUMMARY_COLUMNS)
    assert table.num_rows == len(rows)
    assert str(table.schema.field("measured").type) == "double"
    # patients appear only as keys
    text = csv_path.read_text(encoding="utf-8") + json.dumps(table.to_pylist())
    for pid, name in PATIENTS:
        assert pid not in text
        for part in name.split("^"):
            assert part not in text


def test_resume_skips_current_plans_touch_redoes_one_and_force_redoes_all(archive, protocol, tmp_path):
    reports = tmp_path / "reports"
    first = run_batch(archive, reports, protocol, BatchOptions(workers=2))
    _check_outcome(first)

    second = run_batch(archive, reports, protocol, BatchOptions(workers=0))
    assert second.resumed == 8  # the ERROR plan is always tried again
    assert [r.plan_label for r in second.results if not r.skipped] == ["C2_LungMet"]
    _check_outcome(second)  # resumed rows come back into the summary
    assert second.summary_files[0].read_text(encoding="utf-8") == first.summary_files[0].read_text(encoding="utf-8")

    dose = archive / "patient-a" / "RD_C3_VertMet.dcm"
    later = max(p.stat().st_mtime for p in reports.rglob("batch-result.json")) + 10
    os.utime(dose, (later, later))
    third = run_batch(archive, reports, protocol, BatchOptions(workers=0))
    redone = sorted(r.plan_label for r in third.results if not r.skipped)
    assert redone == ["C2_LungMet", "C3_VertMet"]

    forced = run_batch(archive, reports, protocol, BatchOptions(workers=2, force=True))
    assert forced.resumed == 0
    _check_outcome(forced)


def test_resume_is_invalidated_by_a_changed_protocol(archive, protocol, protocol_file, tmp_path):
    reports = tmp_path / "reports"
    run_batch(archive, reports, protocol, BatchOptions(workers=2))
    changed = tmp_path / "changed.yaml"
    changed.write_text(protocol_file.read_text(encoding="utf-8").replace("per_protocol: 45}", "per_protocol: 40}"),
                       encoding="utf-8")
    again = run_batch(archive, reports, load_protocol(str(changed)), BatchOptions(workers=2))
    assert again.resumed == 0


def test_batch_on_a_local_dask_cluster(archive, protocol, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        outcome = run_batch(archive, tmp_path / "reports", protocol,
                            BatchOptions(dask_address=cluster.scheduler_address))
    _check_outcome(outcome)


def test_batch_of_a_folder_without_plans_is_an_input_error(tmp_path, protocol):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DicomReadError, match=r"no RT Plan found among 0 DICOM object\(s\) \(1 other file"):
        run_batch(tmp_path / "empty", tmp_path / "reports", protocol)


@pytest.mark.skipif("plan-integrity" not in builtin_protocol_ids(), reason="built-in plan-integrity protocol not present yet")
def test_batch_command_exit_code_tables_and_html(archive, protocol_file, tmp_path, capsys):
    reports = tmp_path / "reports"
    code = main(["batch", str(archive), "--reports", str(reports), "--protocol", str(protocol_file),
                 "--workers", "2", "--html"])
    out, err = capsys.readouterr()
    assert code == 3, err  # one plan could not be checked
    assert "9 plan(s) found" in err and "could not check 1" in err
    assert (reports / "summary.csv").is_file() and (reports / "summary.parquet").is_file()
    assert len(list(reports.rglob("*.html"))) == 8
    assert main(["batch", str(archive), "--reports", str(reports), "--protocol", str(protocol_file),
                 "--workers", "-1"]) == 2
