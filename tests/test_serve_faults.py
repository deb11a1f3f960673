"""The receiver under faults (issue 11), on loopback with ephemeral ports and small data.

The export is :func:`treatment_exports.two_course_export`: one treatment of two courses whose
cord receives 25 Gy in each; the composite (50 Gy > 45 Gy) FAILs, each course PASSes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification

import plancheck.net.scp as scp
from plancheck.analysis.check_treatment import check_treatment
from plancheck.net import CHECK_LOG_NAME, STATUS, Receiver, ReceiverConfig
from plancheck.protocol.loader import load_protocol
from treatment_exports import two_course_export, write_composite_protocol


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return load_protocol(str(write_composite_protocol(tmp_path_factory.mktemp("protocol"))))


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> dict[str, Path]:
    return two_course_export(tmp_path_factory.mktemp("export"), key="serve-faults")


def _config(tmp_path: Path, protocol, **overrides) -> ReceiverConfig:
    settings = dict(store_dir=tmp_path / "store", reports_dir=tmp_path / "reports", protocol=protocol, port=0,
                    min_free_bytes=0, formats=("json",))
    settings.update(overrides)
    return ReceiverConfig(**settings)


def _send(port: int, files, *, timeout: float = 30) -> list[int]:
    ae = AE(ae_title="TPS")
    ae.acse_timeout = timeout
    for sop_class in sorted({str(dcmread(f, stop_before_pixels=True).SOPClassUID) for f in files}):
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="PLANCHECK")
    assert assoc.is_established, "association was not accepted"
    try:
        return [int(assoc.send_c_store(Path(f)).Status) for f in files]
    finally:
        assoc.release()


def _all(export) -> list[Path]:
    return [export[k] for k in ("RS", "RP_C_A", "RD_C_A", "RP_C_B", "RD_C_B")]


def _verdicts(record) -> set[tuple[str, str, str]]:
    report = json.loads(Path(record.report_files[0]).read_text(encoding="utf-8"))
    return {(r["rule_id"], ", ".join(r["courses"]), r["status"]) for r in report["results"]}


# ------------------------------------------------------------------------------ same verdict


def test_the_receiver_gives_the_verdicts_of_check(tmp_path, protocol, export):
    with Receiver(_config(tmp_path, protocol)) as rx:
        assert _send(rx.port, _all(export)) == [0] * 5
        [record] = rx.wait_for_records(1, timeout=30)
    assert record.status == "FAIL" and record.plan_labels == ("C_A", "C_B")
    checked = check_treatment([str(p) for p in _all(export)], protocol)
    assert _verdicts(record) == {(f.rule_id, ", ".join(f.courses), str(f.status)) for f in checked.findings}
    assert ("CORD-COMPOSITE", "C_A, C_B", "FAIL") in _verdicts(record)


# ------------------------------------------------------------------------------ connections


def test_idle_connections_do_not_lock_out_a_real_sender(tmp_path, protocol, export):
    config = _config(tmp_path, protocol, max_associations=2, max_pending=4, max_pending_per_peer=2,
                     association_timeout_s=2.0)
    with Receiver(config) as rx:
        idle = [socket.create_connection(("127.0.0.1", rx.port)) for _ in range(10)]
        try:
            time.sleep(0.3)
            start = time.monotonic()
            assert _send(rx.port, _all(export), timeout=10) == [0] * 5  # served at once, not after 30 s
            assert time.monotonic() - start < 5
            [record] = rx.wait_for_records(1, timeout=30)
            assert record.status == "FAIL"
            # all but the newest two pending connections of this peer were closed
            closed = 0
            for s in idle:
                s.settimeout(5)
                try:
                    closed += s.recv(1) == b""
                except (ConnectionResetError, socket.timeout):
                    closed += 1
            assert closed == 10  # 8 evicted at once, the last 2 after the 2 s association timeout
        finally:
            for s in idle:
                s.close()


class _FakeConnection:
    """What the eviction policy looks at of a pynetdicom association: its DUL state and
    socket (one end of a real socket pair, so that bytes sent by the peer are readable)."""

    def __init__(self, state: str = "Sta2", sent: bytes = b"") -> None:
        self.local, self.remote = socket.socketpair()
        if sent:
            self.remote.sendall(sent)
        self.dul = SimpleNamespace(state_machine=SimpleNamespace(current_state=state),
                                   socket=SimpleNamespace(socket=self.local), to_user_queue=SimpleNamespace(put=lambda _: None))

    @property
    def closed_by_receiver(self) -> bool:
        self.remote.settimeout(0.05)  # the receiver shuts a socket down before _on_conn_open returns
        try:
            return self.remote.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self) -> None:
        self.local.close()
        self.remote.close()


def test_a_connection_that_has_sent_its_request_is_never_evicted_for_silent_ones(tmp_path, protocol):
    # the benchmark's failure, made deterministic: a sender's connection (oldest, its
    # A-ASSOCIATE-RQ bytes waiting or already read by pynetdicom) among a flood of silent
    # connections from the same address. Quota 2 silent per peer: after 6 floods, the 4
    # oldest silent ones are closed, the two speaking ones and the 2 newest silent ones stay.
    rx = Receiver(_config(tmp_path, protocol, max_pending=16, max_pending_per_peer=2))
    waiting = _FakeConnection(sent=b"\x01\x00")      # bytes in the socket, state not yet moved
    read = _FakeConnection(state="Sta3")               # pynetdicom has read the request
    flood = [_FakeConnection() for _ in range(6)]
    others: list[_FakeConnection] = []
    try:
        for conn in [waiting, read, *flood]:
            rx._on_conn_open(SimpleNamespace(assoc=conn, address=("10.0.0.7", 40000)))
        assert [c.closed_by_receiver for c in flood] == [True] * 4 + [False] * 2
        assert not waiting.closed_by_receiver and not read.closed_by_receiver
        assert {id(c) for c in (waiting, read, *flood[4:])} == set(rx._pending)
        # the bound on all peers counts silent connections too: 3 more from other addresses, limit 4
        rx.config = ReceiverConfig(**{**rx.config.__dict__, "max_pending": 4})
        others.extend(_FakeConnection() for _ in range(3))
        for i, conn in enumerate(others):
            rx._on_conn_open(SimpleNamespace(assoc=conn, address=(f"10.0.0.{20 + i}", 40000)))
        assert [c.closed_by_receiver for c in flood[4:] + others] == [True, False, False, False, False]
        assert not waiting.closed_by_receiver and not read.closed_by_receiver
    finally:
        for conn in [waiting, read, *flood, *others]:
            conn.close()


def test_a_connection_that_never_associates_is_closed_quickly(tmp_path, protocol):
    with Receiver(_config(tmp_path, protocol, association_timeout_s=1.0)) as rx:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", rx.port)) as s:
            s.settimeout(10)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - start < 5
        ae = AE(ae_title="TPS")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", rx.port, ae_title="PLANCHECK")
        assert assoc.is_established
        assoc.release()


# ------------------------------------------------------------------------------ objects being received


def test_an_object_over_the_limit_is_refused_while_it_arrives(tmp_path, protocol, export, monkeypatch):
    on_disk = []
    original = scp._IncomingFile.write

    def spy(self, data):
        written = original(self, data)
        on_disk.append(Path(self.name).stat().st_size)
        assert Path(self.name).parent == tmp_path / "store" / ".incoming"  # inside the store's own area
        return written

    monkeypatch.setattr(scp._IncomingFile, "write", spy)
    limit = 20_000  # the dose is 91 × 17 × 21 voxels × 2 bytes = 65 kB
    with Receiver(_config(tmp_path, protocol, max_object_bytes=limit)) as rx:
        assert _send(rx.port, [export["RP_C_A"], export["RD_C_A"]]) == [0, STATUS["out_of_resources"]]
        assert rx.wait_idle(timeout=10)
        assert max(on_disk) <= limit  # never more than the limit on disk
        assert not list((tmp_path / "store" / ".incoming").iterdir())
        [stored] = (tmp_path / "store" / "studies").rglob("*.dcm")
        assert rx.store.usage_bytes == stored.stat().st_size  # nothing reserved is left counted


_SLOW_SENDER = """
import sys, time
from pynetdicom import AE, evt
from pydicom import dcmread
ds = dcmread(sys.argv[2])
def slow(event):
    time.sleep(0.02)
ae = AE(ae_title="TPS")
ae.maximum_pdu_size = 4096
ae.add_requested_context(ds.SOPClassUID, ["1.2.840.10008.1.2.1"])
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="PLANCHECK", max_pdu=4096,
                     evt_handlers=[(evt.EVT_PDU_SENT, slow)])
assoc.send_c_store(ds)
"""


def test_a_sender_killed_mid_transfer_leaves_no_temporary_file(tmp_path, protocol, export):
    with Receiver(_config(tmp_path, protocol)) as rx:
        incoming = tmp_path / "store" / ".incoming"
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_SENDER, str(rx.port), str(export["RD_C_A"])],
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(p.stat().st_size > 8192 for p in incoming.iterdir()):
                time.sleep(0.01)
            assert any(incoming.iterdir()), "the transfer did not start"
            assert rx.store.usage_bytes > 8192  # the bytes being received count against the budget
        finally:
            proc.kill()
            proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (any(incoming.iterdir()) or rx.store.usage_bytes):
            time.sleep(0.05)
        assert not list(incoming.iterdir()) and rx.store.usage_bytes == 0
        assert rx.records == []


def test_temporary_files_of_a_crash_are_removed_on_start(tmp_path, protocol):
    incoming = tmp_path / "store" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "rx-left-by-a-crash.part").write_bytes(b"\0" * 1000)
    with Receiver(_config(tmp_path, protocol)) as rx:
        assert not list(incoming.iterdir()) and rx.store.usage_bytes == 0


# ------------------------------------------------------------------------------ validation on receipt


def _damaged_dose(source: Path, out: Path, damage) -> Path:
    ds = dcmread(source)
    damage(ds)
    ds.save_as(out)
    return out


def test_a_dose_with_half_its_pixels_is_quarantined_and_does_not_poison_the_treatment(tmp_path, protocol, export):
    def halve(ds):
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]

    half = _damaged_dose(export["RD_C_A"], tmp_path / "half.dcm", halve)
    with Receiver(_config(tmp_path, protocol)) as rx:
        statuses = _send(rx.port, [export["RS"], export["RP_C_A"], export["RP_C_B"], export["RD_C_B"], half])
        assert statuses == [0, 0, 0, 0, STATUS["cannot_understand"]]
        reasons = sorted((tmp_path / "store" / "quarantine").glob("*.txt"))
        assert len(reasons) == 1 and "'Pixel Data' holds" in reasons[0].read_text(encoding="utf-8")
        assert rx.wait_idle(timeout=10) and rx.records == []  # C_A has no dose yet: not checked
        assert _send(rx.port, [export["RD_C_A"]]) == [0]  # the good dose
        [record] = rx.wait_for_records(1, timeout=30)
    assert record.status == "FAIL" and record.error is None  # checked: no "2 PLAN doses" from the bad one
    assert ("CORD-COMPOSITE", "C_A, C_B", "FAIL") in _verdicts(record)


def test_a_dose_without_a_required_attribute_is_refused_and_quarantined(tmp_path, protocol, export):
    missing = _damaged_dose(export["RD_C_A"], tmp_path / "noscale.dcm", lambda ds: delattr(ds, "DoseGridScaling"))
    with Receiver(_config(tmp_path, protocol)) as rx:
        assert _send(rx.port, [missing]) == [STATUS["does_not_match"]]
    [reason] = (tmp_path / "store" / "quarantine").glob("*.txt")
    assert "Dose Grid Scaling" in reason.read_text(encoding="utf-8")
    assert not list((tmp_path / "store" / "studies").rglob("*.dcm"))


# ------------------------------------------------------------------------------ concurrent senders


def test_eight_concurrent_senders_of_one_export_give_one_check(tmp_path, protocol, export):
    with Receiver(_config(tmp_path, protocol)) as rx:
        statuses: list[list[int]] = []
        threads = [threading.Thread(target=lambda: statuses.append(_send(rx.port, _all(export)))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert statuses == [[0] * 5] * 8
        assert rx.wait_idle(timeout=60)
        assert len(rx.records) == 1
        lines = (tmp_path / "reports" / CHECK_LOG_NAME).read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1
        [patient] = [p for p in (tmp_path / "reports").iterdir() if p.is_dir() and not p.name.startswith(".")]
        [treatment] = [p for p in patient.iterdir() if p.is_dir()]  # REPORTS/<patient key>/<treatment id>/
        [version] = [p for p in treatment.iterdir() if p.is_dir()]
        assert Path(rx.records[0].folder) == version
