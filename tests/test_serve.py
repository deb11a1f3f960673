"""``plancheck serve``: the DICOM Storage SCP, on loopback with ephemeral ports.

The server runs in-process (a fixture starts it on port 0 and stops it in teardown); the
clients are pynetdicom and, when installed, DCMTK's ``echoscu``/``storescu`` (a real
third-party implementation). The sample is a small synthetic case written by
:func:`testkit.write.write_case`: one treatment of three courses, of which C1_Eso is
the ``violations`` variant (spinal cord maximum about 50 Gy, above the acceptable 48 Gy of
the test protocol → FAIL) and C2/C3 pass (cord and heart far below their limits): the
treatment is checked once, with all three courses, and FAILs on C1_Eso's cord.
Faults of issue 11 are in ``test_serve_faults.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import RTBeamsTreatmentRecordStorage, Verification

from plancheck.dicom.store import ObjectStore, group_plans, index_objects, safe_uid, scrub, validate_received
from plancheck.errors import DicomConformanceError, DicomReadError, StorageLimitError
from plancheck.net import CHECK_LOG_NAME, STATUS, Receiver, ReceiverConfig
from plancheck.protocol.loader import builtin_protocol_ids, load_protocol
from testkit.write import write_case
from pipeline_protocol import write_pipeline_protocol
from testkit.synthetic import CaseSpec, build_case

PATIENT_NAME = "DOE^JANE^SERVE"
PATIENT_ID = "MRN-778899"

#: The verdict of each course's cord rule (the test protocol's OAR-CORD-MAX).
EXPECTED = {"C1_Eso": "FAIL", "C2_LungMet": "PASS", "C3_VertMet": "PASS"}


@pytest.fixture(scope="module")
def protocol_file(tmp_path_factory) -> Path:
    return write_pipeline_protocol(tmp_path_factory.mktemp("protocol"), "test-serve", "Test protocol of the receiver tests")


@pytest.fixture(scope="module")
def protocol(protocol_file):
    return load_protocol(str(protocol_file))


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory) -> Path:
    """A small case: CT 32×32 at 10 mm, coarse dose grids; C1 violates the cord limit."""
    spec = CaseSpec(seed=11, jitter=0.5, violations=True, ct_pixels=32, ct_slice_mm=10.0,
                    dose_spacing_conventional_mm=6.0, dose_spacing_sbrt_mm=5.0, outline_tolerance_mm=0.01,
                    patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
    out = tmp_path_factory.mktemp("case")
    write_case(build_case(spec), out)
    return out


@pytest.fixture(scope="module")
def plan_labels(case_dir) -> dict[str, str]:
    """Plan SOP Instance UID → RT Plan Label."""
    return {g.plan.sop_instance_uid: g.plan.label for g in group_plans(index_objects(case_dir).objects)}


def _config_for(tmp_path: Path, protocol, **overrides) -> ReceiverConfig:
    settings = dict(store_dir=tmp_path / "store", reports_dir=tmp_path / "reports", protocol=protocol, port=0,
                    min_free_bytes=0, formats=("json", "html"))
    settings.update(overrides)
    return ReceiverConfig(**settings)


@pytest.fixture
def receiver(tmp_path, protocol):
    rx = Receiver(_config_for(tmp_path, protocol))
    rx.start()
    yield rx
    rx.stop(timeout=5)


def _send(port: int, files, *, calling_ae: str = "TPS", called_ae: str = "PLANCHECK") -> list[int]:
    """Send files in one association; return the C-STORE statuses."""
    from pydicom import dcmread  # the test acts as a third-party client

    ae = AE(ae_title=calling_ae)
    classes = sorted({str(dcmread(f, stop_before_pixels=True).SOPClassUID) for f in files})
    for sop_class in classes:
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    assert assoc.is_established, "association was not accepted"
    statuses = []
    try:
        for f in files:
            rsp = assoc.send_c_store(Path(f))
            statuses.append(int(rsp.Status))
    finally:
        assoc.release()
    return statuses


def _by_label(records, plan_labels=None) -> dict[str, str]:
    """The cord verdict per course, from the one record's JSON report."""
    [record] = records
    report = json.loads(next(Path(p) for p in record.report_files if p.endswith(".json")).read_text("utf-8"))
    return {f["courses"][0]: f["status"] for f in report["results"] if f["rule_id"] == "OAR-CORD-MAX"}


def _files(case_dir: Path, *prefixes: str) -> list[Path]:
    return sorted(p for p in case_dir.iterdir() if p.name.startswith(prefixes))


# ------------------------------------------------------------------------------ network


def test_echo_and_sample_case_give_reports_with_expected_statuses(receiver, case_dir, plan_labels, caplog):
    caplog.set_level(logging.DEBUG, logger="plancheck")
    ae = AE(ae_title="TPS")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="PLANCHECK")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()

    files = sorted(case_dir.glob("*.dcm"))
    assert set(_send(receiver.port, files)) == {0x0000}
    assert receiver.wait_idle(timeout=60)
    records = receiver.records
    assert len(records) == 1 and records[0].status == "FAIL"  # one treatment, all three courses
    assert sorted(records[0].plan_labels) == sorted(EXPECTED)
    assert _by_label(records) == EXPECTED
    [record] = records
    assert [Path(p).suffix for p in record.report_files] == [".json", ".html"]
    assert all(Path(p).is_file() for p in record.report_files)
    lines = (receiver.config.reports_dir / CHECK_LOG_NAME).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["FAIL"]
    assert not list((receiver.config.store_dir / ".incoming").iterdir())  # every received file was handled
    # every stored file is named from UIDs only
    stored = list((receiver.config.store_dir / "studies").rglob("*.dcm"))
    assert len(stored) == len(files)
    assert all(re.fullmatch(r"(RP|RS|RD|CT|MR)_[0-9.]+\.dcm", p.name) for p in stored)
    # logs carry UIDs, never the patient's name or ID
    assert "checked: FAIL" in caplog.text and "C1_Eso" in caplog.text
    for secret in ("DOE", "JANE", PATIENT_ID):
        assert secret not in caplog.text


def test_treatment_completed_over_two_associations_is_checked_once_per_version(receiver, case_dir):
    plan = case_dir / "RP_C2_LungMet.dcm"
    assert _send(receiver.port, [plan, case_dir / "RS_sample.dcm"]) == [0, 0]
    assert receiver.wait_idle(timeout=10)
    assert receiver.records == []  # no dose yet: not checked

    assert _send(receiver.port, [case_dir / "RD_C2_LungMet.dcm"]) == [0]
    [first] = receiver.wait_for_records(1, timeout=20)
    assert first.plan_labels == ("C2_LungMet",) and first.status == "PASS"

    assert _send(receiver.port, [plan]) == [0]  # identical re-send: the same version, not checked again
    assert receiver.wait_idle(timeout=20) and len(receiver.records) == 1
    assert len(list((receiver.config.store_dir / "studies").rglob("RP_*.dcm"))) == 1

    changed = plan.read_bytes().replace(b"C2_LungMet", b"C2_LungMeX", 1)  # same UID, new content
    (tmp := plan.parent.parent / "changed-plan").mkdir(exist_ok=True)
    (tmp / "RP.dcm").write_bytes(changed)
    assert _send(receiver.port, [tmp / "RP.dcm"]) == [0]
    records = receiver.wait_for_records(2, timeout=20)
    assert [r.plan_labels for r in records] == [("C2_LungMet",), ("C2_LungMeX",)]
    assert records[0].version != records[1].version
    folder = Path(records[1].folder).parent
    latest = json.loads((folder / "latest.json").read_text(encoding="utf-8"))
    assert latest == {"latest": Path(records[1].folder).name, "superseded": [Path(records[0].folder).name]}
    assert all(Path(p).is_file() for r in records for p in r.report_files)  # the superseded version is kept


def test_calling_ae_not_in_allow_list_is_rejected(tmp_path, protocol):
    with Receiver(_config_for(tmp_path, protocol, allowed_calling_aes=("TPS",))) as rx:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", rx.port, ae_title="PLANCHECK")
        assert assoc.is_rejected
        ae_ok = AE(ae_title="TPS")
        ae_ok.add_requested_context(Verification)
        assoc = ae_ok.associate("127.0.0.1", rx.port, ae_title="PLANCHECK")
        assert assoc.is_established
        assoc.release()


def test_wrong_called_ae_title_is_rejected(receiver):
    ae = AE(ae_title="TPS")
    ae.add_requested_context(Verification)
    assert ae.associate("127.0.0.1", receiver.port, ae_title="SOMEONE_ELSE").is_rejected


def test_unsupported_sop_class_is_not_negotiated(receiver):
    ae = AE(ae_title="TPS")
    ae.add_requested_context(RTBeamsTreatmentRecordStorage)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="PLANCHECK")
    assert assoc.is_established
    try:
        rejected = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
        # PS3.8 Table 9-18: result 3 = abstract syntax not supported (provider rejection)
        assert rejected == {RTBeamsTreatmentRecordStorage: 0x03}
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assert accepted == {Verification}
    finally:
        assoc.release()


def test_truncated_dataset_fails_is_quarantined_and_server_keeps_serving(receiver, case_dir, tmp_path, monkeypatch):
    data = (case_dir / "RD_C3_VertMet.dcm").read_bytes()
    broken = tmp_path / "RD_truncated.dcm"
    broken.write_bytes(data[: len(data) * 2 // 3])
    # send the file's bytes as they are (pynetdicom would otherwise decode and re-encode them)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    assert _send(receiver.port, [broken]) == [STATUS["cannot_understand"]]
    quarantined = sorted((receiver.config.store_dir / "quarantine").iterdir())
    assert [p.suffix for p in quarantined] == [".dcm", ".txt"]
    assert "truncated" in quarantined[1].read_text(encoding="utf-8")
    assert not list((receiver.config.store_dir / "studies").rglob("*.dcm"))
    # the next association works
    assert _send(receiver.port, _files(case_dir, "RS_", "RP_C3", "RD_C3")) == [0, 0, 0]
    assert [r.status for r in receiver.wait_for_records(1, timeout=20)] == ["PASS"]
    assert not list((receiver.config.store_dir / ".incoming").iterdir())


def test_crashing_check_is_logged_with_plan_uid_and_server_goes_on(tmp_path, protocol, case_dir, caplog,
                                                                   monkeypatch):
    import plancheck.analysis.treatment_versions as versions

    def explode(*args, **kwargs):
        raise RuntimeError(f"simulated crash for {PATIENT_NAME}")

    receiver = Receiver(_config_for(tmp_path, protocol, isolate_checks=False))  # the crash in this process
    receiver.start()
    monkeypatch.setattr(versions, "check_treatment_files", explode)
    caplog.set_level(logging.INFO, logger="plancheck")
    files = _files(case_dir, "RS_", "RP_C3", "RD_C3")
    assert _send(receiver.port, files) == [0, 0, 0]
    [record] = receiver.wait_for_records(1, timeout=20)
    assert record.status == "ERROR" and "simulated crash" in record.error
    assert PATIENT_NAME not in record.error and "DOE" not in record.error
    assert f"treatment {record.treatment_id} (C3_VertMet)" in caplog.text and "check failed" in caplog.text
    monkeypatch.undo()
    assert _send(receiver.port, files[1:2]) == [0]  # the plan again: a crash is not a verdict, checked again
    assert [r.status for r in receiver.wait_for_records(2, timeout=20)] == ["ERROR", "PASS"]
    receiver.stop(timeout=5)


@pytest.mark.parametrize("limit", ["object", "store"])
def test_size_limits_refuse_with_out_of_resources(tmp_path, protocol, case_dir, limit):
    dose = case_dir / "RD_C3_VertMet.dcm"
    plan = case_dir / "RP_C3_VertMet.dcm"
    size = dose.stat().st_size
    if limit == "object":
        overrides = {"max_object_bytes": size - 1}
    else:
        overrides = {"max_store_bytes": plan.stat().st_size + size // 2}
    with Receiver(_config_for(tmp_path, protocol, **overrides)) as rx:
        assert _send(rx.port, [plan, dose]) == [0, STATUS["out_of_resources"]]


# ------------------------------------------------------------------------------ store units


@pytest.mark.parametrize("raw", [
    "../../etc/passwd", "1.2.3/../../x", "..", ".", "", "1.2..3", "/abs/1.2", "C:\\1.2", "1.2.3\x00",
    "1" * 65, "1.2.3 ; rm -rf /", "ｑ.1", None, 123,
])
def test_safe_uid_never_yields_a_path(raw):
    name = safe_uid(raw)
    assert re.fullmatch(r"[0-9.]{1,64}|x[0-9a-f]{32}", name)
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert not name.startswith(".") and ".." not in name


def test_safe_uid_keeps_valid_uids_and_hashes_distinct_values():
    assert safe_uid("1.2.840.10008.5.1.4.1.1.481.5") == "1.2.840.10008.5.1.4.1.1.481.5"
    assert safe_uid("1.2.3\x00") == "1.2.3"  # UI values are padded with NUL
    assert safe_uid("../a") != safe_uid("../b")


def test_store_keeps_identical_once_and_sets_a_different_version_aside(tmp_path, case_dir):
    store = ObjectStore(tmp_path / "s", max_object_bytes=10**8, max_store_bytes=10**9)
    plan = (case_dir / "RP_C2_LungMet.dcm").read_bytes()
    uid = plan_uid = group_plans(index_objects(case_dir / "RP_C2_LungMet.dcm").objects)[0].plan.sop_instance_uid
    obj = validate_received(plan, sop_class_uid="1.2.840.10008.5.1.4.1.1.481.5", sop_instance_uid=uid, label=uid)
    first = store.store(plan, obj)
    again = store.store(plan, obj)
    assert again.duplicate and again.path == first.path and again.superseded is None
    # same SOP Instance UID, different content (a changed plan label, same length)
    changed = plan.replace(b"C2_LungMet", b"C2_LungMeX", 1)
    assert changed != plan
    obj2 = validate_received(changed, sop_class_uid=obj.sop_class_uid, sop_instance_uid=plan_uid, label=uid)
    third = store.store(changed, obj2)
    assert third.path == first.path and third.path.read_bytes() == changed
    assert third.superseded is not None and third.superseded.read_bytes() == plan
    assert third.superseded.name.startswith(f"RP_{uid}.") and store.usage_bytes >= 2 * len(plan)


def test_validate_received_names_the_problem(case_dir):
    plan = (case_dir / "RP_C2_LungMet.dcm").read_bytes()
    uid = group_plans(index_objects(case_dir / "RP_C2_LungMet.dcm").objects)[0].plan.sop_instance_uid
    with pytest.raises(DicomConformanceError, match=r"'SOP Class UID' is .* but the C-STORE request announced"):
        validate_received(plan, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=uid, label="x")
    with pytest.raises(DicomConformanceError, match=r"'SOP Instance UID' is .* must be equal"):
        validate_received(plan, sop_class_uid="1.2.840.10008.5.1.4.1.1.481.5", sop_instance_uid="1.2.3", label="x")
    with pytest.raises(DicomReadError, match=r"truncated|cannot be parsed"):
        validate_received(plan[: len(plan) - 200], sop_class_uid="1.2.840.10008.5.1.4.1.1.481.5",
                          sop_instance_uid=uid, label="x")
    with pytest.raises(DicomReadError, match=r"not a DICOM data set|cannot be parsed"):
        validate_received(b"\x00" * 300, sop_class_uid="1.2.840.10008.5.1.4.1.1.481.5", sop_instance_uid=uid,
                          label="x")


def test_store_limits_name_the_numbers(tmp_path):
    store = ObjectStore(tmp_path / "s", max_object_bytes=1000, max_store_bytes=1500)
    with pytest.raises(StorageLimitError, match=r"object of 1001 bytes exceeds the limit of 1000 bytes per object"):
        store.check_size(1001)
    store.check_size(1000)
    with pytest.raises(StorageLimitError, match=r"store is full"):
        ObjectStore(tmp_path / "s", max_object_bytes=1000, max_store_bytes=10).check_size(11)


def test_scrub_removes_name_components_and_id():
    text = "file of DOE^JANE (Doe) with id MRN-778899"
    assert scrub(text, [PATIENT_NAME, PATIENT_ID]) == "file of ***^*** (***) with id ***"


def test_partial_plan_group_says_what_is_missing(case_dir):
    groups = group_plans(index_objects([case_dir / "RP_C2_LungMet.dcm", case_dir / "RS_sample.dcm"]).objects)
    [group] = groups
    assert not group.complete
    assert any("no RT Dose references RT Plan" in m for m in group.missing)


# ------------------------------------------------------------------------------ CLI and DCMTK


def _dcmtk(tool: str) -> str | None:
    """The DCMTK binary (not pynetdicom's app of the same name that pip puts on PATH)."""
    candidates = [os.path.join(d, tool) for d in os.environ.get("PATH", "").split(os.pathsep)] + [f"/usr/bin/{tool}"]
    for candidate in dict.fromkeys(candidates):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            try:
                out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return candidate
    return None


ECHOSCU, STORESCU = _dcmtk("echoscu"), _dcmtk("storescu")
needs_dcmtk = pytest.mark.skipif(not (ECHOSCU and STORESCU),
                                 reason="DCMTK echoscu/storescu not installed (apt-get install dcmtk)")


@needs_dcmtk
def test_dcmtk_echoscu_and_storescu_send_the_sample_case(receiver, case_dir, plan_labels):
    echo = subprocess.run([ECHOSCU, "-aet", "TPS", "-aec", "PLANCHECK", "127.0.0.1", str(receiver.port)],
                          capture_output=True, text=True, timeout=30)
    assert echo.returncode == 0, echo.stderr
    store = subprocess.run([STORESCU, "-aet", "TPS", "-aec", "PLANCHECK", "+sd", "+r", "127.0.0.1",
                            str(receiver.port), str(case_dir)], capture_output=True, text=True, timeout=60)
    assert store.returncode == 0, store.stderr
    assert receiver.wait_idle(timeout=60)
    assert _by_label(receiver.records) == EXPECTED
    assert all(Path(p).is_file() for r in receiver.records for p in r.report_files)


@needs_dcmtk
def test_dcmtk_storescu_is_rejected_when_not_allowed(tmp_path, protocol):
    with Receiver(_config_for(tmp_path, protocol, allowed_calling_aes=("TPS",))) as rx:
        echo = subprocess.run([ECHOSCU, "-aet", "OTHER", "-aec", "PLANCHECK", "127.0.0.1", str(rx.port)],
                              capture_output=True, text=True, timeout=30)
        assert echo.returncode != 0
        assert "reject" in (echo.stdout + echo.stderr).lower()


@pytest.mark.skipif("plan-integrity" not in builtin_protocol_ids(), reason="built-in plan-integrity protocol not present yet")
def test_serve_command_starts_answers_and_stops_on_sigterm(tmp_path, protocol_file, case_dir):
    cmd = [sys.executable, "-m", "plancheck", "serve", "--port", "0", "--store", str(tmp_path / "store"),
           "--reports", str(tmp_path / "reports"), "--protocol", str(protocol_file), "--min-free-mb", "0",
           "--allow-calling-ae", "TPS"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 30
        lines = []
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"listening on [0-9.]+:(\d+)", line)
            port = int(match.group(1)) if match else None
        assert port, "".join(lines)
        assert _send(port, _files(case_dir, "RS_", "RP_C2", "RD_C2")) == [0, 0, 0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "reports" / CHECK_LOG_NAME).exists():
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines) + rest
    assert proc.returncode == 0, log
    assert "shutting down" in log and "receiver stopped" in log
    assert re.search(r"treatment [0-9.]+ \(C2_LungMet\) checked: (PASS|WARN|FAIL|NOT_EVALUATED)", log), log
    assert "DOE" not in log and PATIENT_ID not in log
