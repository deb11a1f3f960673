"""``plancheck batch`` under faults (issue 11): a worker killed while it checks a treatment,
a treatment that hangs or takes too much memory, and the batch itself killed.

The archive: four small treatments (:func:`treatment_exports.two_course_export`, four
patients), each checked in about a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plancheck.batch import BatchOptions, JobLimits, run_batch
from treatment_exports import protocol, protocol_file, two_course_export  # noqa: F401 (protocol fixtures)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process checks read /proc")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    for i in range(4):
        two_course_export(root / f"patient{i}", key=f"faults-{i}", patient_id=f"MRN-{i:04d}")
    return root



def test_a_killed_worker_errors_only_its_treatment(archive, protocol, tmp_path):
    victims = []

    def kill_the_first(job, pid):  # as the out-of-memory killer would
        if not victims:
            victims.append(job.treatment_id)
            os.kill(pid, signal.SIGKILL)

    outcome = run_batch(archive, tmp_path / "reports", protocol, BatchOptions(workers=2), on_job_start=kill_the_first)
    statuses = {r.treatment_id: r.status for r in outcome.results}
    assert len(statuses) == 4
    assert statuses.pop(victims[0]) == "ERROR"
    assert set(statuses.values()) == {"FAIL"}  # the others checked: their composite cord fails (50 Gy)
    [dead] = [r for r in outcome.results if r.treatment_id == victims[0]]
    assert "killed by SIGKILL" in dead.error and "the other treatments were checked" in dead.error
    again = run_batch(archive, tmp_path / "reports", protocol, BatchOptions(workers=2))
    assert again.resumed == 3 and [r.status for r in again.results if not r.skipped] == ["FAIL"]


def test_a_hanging_treatment_is_stopped_at_the_time_limit(archive, protocol, tmp_path):
    frozen = []

    def freeze_the_first(job, pid):
        if not frozen:
            frozen.append(job.treatment_id)
            os.kill(pid, signal.SIGSTOP)

    start = time.monotonic()
    outcome = run_batch(archive, tmp_path / "reports", protocol,
                        BatchOptions(workers=2, limits=JobLimits(time_limit_s=6.0)), on_job_start=freeze_the_first)
    assert time.monotonic() - start < 60
    [stopped] = [r for r in outcome.results if r.treatment_id == frozen[0]]
    assert stopped.status == "ERROR" and "longer than the time limit of 6 s per treatment" in stopped.error
    assert sorted(r.status for r in outcome.results) == ["ERROR", "FAIL", "FAIL", "FAIL"]


def test_memory_limit_stops_the_treatment_and_says_so(archive, protocol, tmp_path):
    # a worker's own memory grows past 1 MB as soon as it reads a file: every treatment is stopped
    outcome = run_batch(archive, tmp_path / "reports", protocol,
                        BatchOptions(workers=2, limits=JobLimits(time_limit_s=60, memory_limit_mb=1)))
    assert [r.status for r in outcome.results] == ["ERROR"] * 4
    assert all("more than the memory limit of 1 MB per treatment" in r.error for r in outcome.results)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_the_batch_leaves_no_worker_running(archive, protocol_file, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "plancheck", "batch", str(archive), "--reports",
                             str(tmp_path / "reports"), "--protocol", str(protocol_file), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            family = _descendants(proc.pid)
            grandchildren = family - {c for c in family if int(Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1]
                                                                   .split()[1]) == proc.pid} if family else set()
            if grandchildren:  # a worker forked by the forkserver is running
                workers = family
                break
            time.sleep(0.05)
        assert workers, "no worker process appeared"
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "worker processes outlived the batch"
    finally:
        if proc.poll() is None:
            proc.kill()
