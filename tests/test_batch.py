"""``plancheck batch``: every treatment of an archive checked in parallel, resume, summary tables.

The archive holds three small synthetic patients (different seeds, jitter and patient IDs),
each one treatment of three courses (C1_Eso, C2_LungMet, C3_VertMet), in three different
layouts: one export folder; nested folders with the CT; one patient split over several
folders (plan, dose and structures apart) so that grouping must come from the headers.
Patient 2's C2_LungMet dose is truncated → that treatment gets an ERROR row (as ``plancheck
check`` refuses the export), the other two are checked with all three courses. Patient 3 is
the ``violations`` variant: its C1_Eso spinal cord maximum (about 50 Gy) is above the
acceptable 48 Gy → FAIL; everything else passes (cord and heart far below their limits).
The test protocol's two rules apply per course (``course: all``): 2 × 3 findings per treatment.

Faults (issue 11): a worker killed while checking (only its treatment is ERROR), time and
memory limits, killing the batch (no worker left behind). Verdicts equal ``plancheck check``'s
on a two-course case whose cord fails only in the composite (:mod:`treatment_exports`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from plancheck.batch import SUMMARY_COLUMNS, BatchOptions, JobLimits, discover_treatments, run_batch
from plancheck.cli.main import main
from testkit.write import write_case
from plancheck.errors import DicomReadError
from plancheck.protocol.loader import builtin_protocol_ids, load_protocol
from pipeline_protocol import write_pipeline_protocol
from testkit.synthetic import CaseSpec, build_case

PATIENTS = [("MRN-100001", "ALPHA^ANNA"), ("MRN-200002", "BRAVO^BERT"), ("MRN-300003", "CHARLIE^CLARA")]


def _spec(i: int) -> CaseSpec:
    pid, name = PATIENTS[i]
    return CaseSpec(seed=100 + i, jitter=1.0, violations=(i == 2), include_ct=(i == 1), ct_pixels=32,
                    ct_slice_mm=10.0, dose_spacing_conventional_mm=6.0, dose_spacing_sbrt_mm=5.0,
                    outline_tolerance_mm=0.01, patient_id=pid, patient_name=name)


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


COURSES = ("C1_Eso", "C2_LungMet", "C3_VertMet")


def _check_outcome(outcome) -> None:
    assert len(outcome.results) == 3
    assert all(r.plan_labels == COURSES for r in outcome.results)
    errors = [r for r in outcome.results if r.status == "ERROR"]
    assert len(errors) == 1
    assert "truncated" in errors[0].error and "RD_C2_LungMet.dcm" in errors[0].error
    assert sorted(r.status for r in outcome.results) == ["ERROR", "FAIL", "PASS"]
    [failed] = [r for r in outcome.results if r.status == "FAIL"]
    assert failed.summary["fail"] == 1  # the cord of C1_Eso only
    assert len({r.patient_key for r in outcome.results}) == 3


def test_discovery_groups_files_by_headers_not_folders(archive, protocol, tmp_path):
    found = discover_treatments(archive, tmp_path / "reports", protocol)
    assert len(found.jobs) == 3 and len(found.treatments) == 3
    # every plan complete: the truncated dose still has a readable header
    assert all(len(t.plans) == 3 and all(g.complete for g in t.plans) for t in found.treatments)
    [split] = [c for c in found.checks if "misc" in str(c.treatment.plans[0].plan.path)]
    assert {p.parent.name for p in split.files} == {"plans", "doses", "structures"}
    with_ct = [t for t in found.treatments if t.images]
    assert len(with_ct) == 1 and len(with_ct[0].images) > 5
    assert any("notes.txt" in str(p) for p, _ in found.index.skipped)
    assert all(j.plan_labels == COURSES and not j.left_out and j.selection is None for j in found.jobs)


def test_batch_checks_every_treatment_and_gives_an_error_row_for_the_broken_one(archive, protocol, tmp_path):
    reports = tmp_path / "reports"
    seen = []
    outcome = run_batch(archive, reports, protocol, BatchOptions(workers=2, html=True), on_result=seen.append)
    _check_outcome(outcome)
    assert len(seen) == 3 and outcome.resumed == 0
    assert 1 <= len(outcome.worker_peak_rss_mb) <= 3  # one worker process per treatment
    assert all(0 < mb < 2048 for mb in outcome.worker_peak_rss_mb.values())
    for r in outcome.results:
        if r.status != "ERROR":
            assert sorted(Path(p).suffix for p in r.report_files) == [".html", ".json"]
            assert all(Path(p).is_file() for p in r.report_files)
            report = json.loads(next(Path(p) for p in r.report_files if p.endswith(".json")).read_text("utf-8"))
            assert [p["label"] for p in report["plans"]] == list(COURSES) and report["left_out_plans"] == []

    csv_path, parquet_path = outcome.summary_files[:2]
    with csv_path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert len(rows) == 2 * 6 + 1  # two rules × three courses per checked treatment, one ERROR row
    assert {r["plans"] for r in rows} == {"C1_Eso; C2_LungMet; C3_VertMet"}
    assert all(len(r["plan_uids"].split("; ")) == 3 and r["left_out"] == "" for r in rows)
    [error_row] = [r for r in rows if r["status"] == "ERROR"]
    assert "truncated" in error_row["message"]
    failed = [r for r in rows if r["status"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["courses"] == "C1_Eso" and failed[0]["rule_id"] == "OAR-CORD-MAX"
    assert failed[0]["unit"] == "Gy" and float(failed[0]["measured"]) > 48  # the violations variant: about 50 Gy

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


def test_resume_skips_current_treatments_touch_redoes_one_and_force_redoes_all(archive, protocol, tmp_path):
    reports = tmp_path / "reports"
    first = run_batch(archive, reports, protocol, BatchOptions(workers=2))
    _check_outcome(first)

    second = run_batch(archive, reports, protocol, BatchOptions(workers=0))
    assert second.resumed == 2  # the ERROR treatment is always tried again
    assert [r.status for r in second.results if not r.skipped] == ["ERROR"]
    _check_outcome(second)  # resumed rows come back into the summary
    assert second.summary_files[0].read_text(encoding="utf-8") == first.summary_files[0].read_text(encoding="utf-8")

    dose = archive / "patient-a" / "RD_C3_VertMet.dcm"
    later = max(p.stat().st_mtime for p in reports.rglob("batch-result.json")) + 10
    os.utime(dose, (later, later))
    third = run_batch(archive, reports, protocol, BatchOptions(workers=0))
    assert sorted(r.status for r in third.results if not r.skipped) == ["ERROR", "PASS"]  # patient A again

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
    assert code == 3, err  # one treatment could not be checked
    assert "3 treatment(s) found" in err and "could not check 1" in err
    assert (reports / "summary.csv").is_file() and (reports / "summary.parquet").is_file()
    assert len(list(reports.rglob("*.html"))) == 2
    assert main(["batch", str(archive), "--reports", str(reports), "--protocol", str(protocol_file),
                 "--workers", "-1"]) == 2


@pytest.mark.parametrize("name", ["alpha_beta.yaml", "structure_synonyms.yaml", "tg263_nomenclature.csv",
                                  "protocols/plan-integrity.yaml"])
def test_editing_a_data_table_invalidates_resumed_results(tmp_path, monkeypatch, protocol, name):
    """The α/β table, the synonyms, the TG-263 table and the built-in protocols change results:
    a change to any of them changes the fingerprint a resumed batch compares."""
    from importlib.resources import files

    from plancheck.batch import discover

    copy = tmp_path / "constraints"
    shutil.copytree(Path(str(files("plancheck.constraints"))), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(discover.resources, "files", lambda package: copy)
    before = discover.protocol_fingerprint(protocol, ("json",))
    assert discover.protocol_fingerprint(protocol, ("json",)) == before  # deterministic
    with (copy / name).open("a", encoding="utf-8") as fh:
        fh.write("\n# edited\n")
    assert discover.protocol_fingerprint(protocol, ("json",)) != before
