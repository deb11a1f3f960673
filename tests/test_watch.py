"""``plancheck watch``: a folder the planning system exports to (issue 11).

The export is :func:`treatment_exports.two_course_export` (two courses, cord 25 Gy each:
composite 50 Gy > 45 Gy FAIL). :class:`ExportFolder` is driven with an explicit clock (``now``
in seconds) so the settle times are exact; one test runs the real watchdog observers and one
the command.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from plancheck.watch import ExportFolder, WatchOptions, watch
from treatment_exports import protocol, protocol_file, two_course_export  # noqa: F401 (protocol fixtures)

SETTLE_S = 2.0



@pytest.fixture(scope="module")
def export(tmp_path_factory) -> dict[str, Path]:
    return two_course_export(tmp_path_factory.mktemp("export"), key="watch")


def _folder(tmp_path, protocol, **options) -> ExportFolder:
    (tmp_path / "in").mkdir(exist_ok=True)
    settings = dict(settle_s=SETTLE_S, incomplete_after_s=30.0, formats=("json",))
    settings.update(options)
    return ExportFolder(tmp_path / "in", tmp_path / "reports", protocol, WatchOptions(**settings))


def _composite(record) -> tuple[str, float]:
    report = json.loads(Path(record.report_files[0]).read_text(encoding="utf-8"))
    [row] = [r for r in report["results"] if r["rule_id"] == "CORD-COMPOSITE"]
    return row["status"], row["measured"]


def _write_in_pieces(source: Path, target: Path, folder: ExportFolder, clock: list[float], pieces: int = 3):
    """Copy ``source`` in ``pieces`` writes, one second apart (less than the settle time)."""
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        for k in range(pieces):
            fh.write(data[k * len(data) // pieces:(k + 1) * len(data) // pieces])
            fh.flush()
            folder.notify(target)
            assert folder.step(clock[0]) == []
            clock[0] += 1.0


def test_files_arriving_in_pieces_and_out_of_order_give_one_check(tmp_path, protocol, export):
    folder = _folder(tmp_path, protocol)
    clock = [1000.0]
    incoming = tmp_path / "in" / "export"
    # doses before plans, the structure set last, each file in three pieces
    for name in ("RD_C_B", "RD_C_A", "RP_C_B", "RP_C_A"):
        _write_in_pieces(export[name], incoming / f"{name}.dcm", folder, clock)
    clock[0] += 10 * SETTLE_S
    assert folder.step(clock[0]) == []  # every file stable, but no structure set yet: incomplete
    _write_in_pieces(export["RS"], incoming / "sub" / "RS.dcm", folder, clock)  # in another folder
    assert folder.step(clock[0]) == []  # RS.dcm changed 1 s ago, less than the settle time
    clock[0] += SETTLE_S + 0.1  # now unchanged (and its folder quiet) for longer than the settle time
    [record] = folder.step(clock[0])
    assert record.plan_labels == ("C_A", "C_B") and record.status == "FAIL"
    status, measured = _composite(record)
    assert status == "FAIL" and measured == pytest.approx(50, abs=0.02)  # 25 + 25 Gy
    clock[0] += 60
    folder.scan()
    assert folder.step(clock[0]) == [] and folder.step(clock[0] + 10) == []  # checked once


def test_a_restart_does_not_check_again_and_a_change_is_a_new_version(tmp_path, protocol, export):
    (tmp_path / "in").mkdir()
    for name, path in export.items():
        shutil.copy(path, tmp_path / "in" / path.name)
    first = _folder(tmp_path, protocol)
    first.scan()
    assert first.step(0.0) == []  # first seen
    [record] = first.step(SETTLE_S + 0.1)  # unchanged for the settle time: taken and checked
    assert record.status == "FAIL"

    again = _folder(tmp_path, protocol)  # a restart
    again.scan()
    for t in (0.0, SETTLE_S + 0.1, 2 * SETTLE_S + 0.2, 100.0):
        assert again.step(t) == []
    plan = tmp_path / "in" / "RP_C_B.dcm"
    plan.write_bytes(plan.read_bytes().replace(b"C_B target", b"C_B boost!", 1))  # a changed plan, same UID
    again.notify(plan)
    assert again.step(200.0) == []
    [changed] = again.step(200.0 + SETTLE_S + 0.1)
    assert changed.version != record.version and changed.status == "FAIL"
    versions = sorted(p.name for p in Path(changed.folder).parent.iterdir() if p.is_dir())
    assert len(versions) == 2  # the first version is kept


def test_an_export_that_stays_incomplete_is_recorded_once_then_checked_when_completed(tmp_path, protocol, export):
    (tmp_path / "in").mkdir()
    for name in ("RS", "RP_C_A", "RD_C_A", "RP_C_B"):
        shutil.copy(export[name], tmp_path / "in" / export[name].name)
    folder = _folder(tmp_path, protocol, incomplete_after_s=30.0)
    folder.scan()
    for t in (0.0, 2.1, 4.2, 20.0):
        assert folder.step(t) == []
    [waiting] = folder.step(40.0)
    assert waiting.status == "ERROR" and "still incomplete after 30 s without changes" in waiting.error
    assert "plan C_B: no RT Dose references RT Plan" in waiting.error
    assert folder.step(100.0) == []  # recorded once
    shutil.copy(export["RD_C_B"], tmp_path / "in" / "RD_C_B.dcm")
    folder.scan()
    assert folder.step(200.0) == []
    [checked] = folder.step(202.1)
    assert checked.status == "FAIL" and checked.error is None


@pytest.mark.parametrize("poll", [True, False], ids=["polling", "events"])
def test_the_observers_see_an_export_arrive(tmp_path, protocol, export, poll):
    (tmp_path / "in").mkdir()
    stop = threading.Event()
    result = {}

    def run():
        result["folder"] = watch(tmp_path / "in", tmp_path / "reports", protocol,
                                 WatchOptions(settle_s=0.3, incomplete_after_s=60, formats=("json",)), stop=stop,
                                 poll=poll, poll_interval_s=0.2, step_s=0.1, rescan_s=3600)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(0.5)
        for path in export.values():
            shutil.copy(path, tmp_path / "in" / path.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "reports" / "checks.jsonl").exists():
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    [record] = result["folder"].records
    assert record.status == "FAIL" and record.plan_labels == ("C_A", "C_B")


def test_watch_command_runs_until_sigterm(tmp_path, protocol_file, export):
    (tmp_path / "in").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "plancheck", "watch", str(tmp_path / "in"), "--reports",
                             str(tmp_path / "reports"), "--protocol", str(protocol_file), "--settle", "0.3",
                             "--no-html"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "reports").exists():
            time.sleep(0.1)
        for path in export.values():
            shutil.copy(path, tmp_path / "in" / path.name)
        while time.monotonic() < deadline and not (tmp_path / "reports" / "checks.jsonl").exists():
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log
    assert "checked: FAIL" in log and "stopped watching" in log
    assert "COMPOSITE" not in log and "MRN-424242" not in log
    assert subprocess.run([sys.executable, "-m", "plancheck", "watch", str(tmp_path / "in"), "--reports",
                           str(tmp_path / "in" / "r")], capture_output=True).returncode == 2
