"""The receiver's checks run side by side (issue 11: exports that arrive together are checked
together, not one after the other), without giving up what one-at-a-time guaranteed:

* the checks of different treatments overlap in time, at most ``parallel_checks`` at once;
* the checks of one treatment run one after the other, in the order they arrived (its newest
  version is checked last);
* ``idle()`` is False while a check runs or waits, and ``stop()`` finishes the waiting ones;
* a version being checked is not checked again at the same time (:class:`TreatmentChecker`);
* the receiver's default and the command-line setting.

The checker is replaced by one that records when each check ran (no DICOM needed).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import plancheck.analysis.treatment_versions as versions
from plancheck.net.checks import CheckWorker
from plancheck.net.scp import MAX_DEFAULT_PARALLEL_CHECKS, default_parallel_checks
from plancheck.protocol.loader import DEFAULT_PROTOCOL, load_protocol


class _RecordingChecker:
    """Stands in for TreatmentChecker.check: sleeps, and records (check id, label, start, end)."""

    isolate = True  # the worker thread then starts the worker server: nothing to start here

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds
        self.runs: list[tuple[str, str, float, float]] = []
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def start_worker_server(self) -> None:
        pass

    def check(self, check) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.runs.append((check.check_id, check.label, start, time.monotonic()))


def _worker(tmp_path: Path, parallel: int) -> tuple[CheckWorker, _RecordingChecker]:
    worker = CheckWorker(tmp_path / "reports", load_protocol(DEFAULT_PROTOCOL), isolate=False,
                         parallel_checks=parallel)
    recorder = _RecordingChecker()
    worker.checker = recorder  # type: ignore[assignment]
    return worker, recorder


def _check(check_id: str, label: str):
    return SimpleNamespace(check_id=check_id, label=label)


def test_checks_of_different_treatments_overlap_at_most_parallel_checks_at_once(tmp_path) -> None:
    worker, recorder = _worker(tmp_path, parallel=2)
    for name in ("A", "B", "C"):
        worker._start(_check(name, "v1"))
    assert not worker.idle()
    deadline = time.monotonic() + 10
    while not worker.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.idle() and len(recorder.runs) == 3
    assert recorder.most_at_once == 2
    runs = {r[0]: r for r in recorder.runs}
    first_two = sorted(runs.values(), key=lambda r: r[2])[:2]
    assert first_two[1][2] < first_two[0][3]  # the second started before the first ended


def test_checks_of_one_treatment_run_one_after_the_other_in_arrival_order(tmp_path) -> None:
    worker, recorder = _worker(tmp_path, parallel=2)
    for label in ("v1", "v2", "v3"):
        worker._start(_check("T", label))
    worker._start(_check("U", "v1"))
    worker.start()
    assert worker.stop(timeout=10)  # stop() lets the waiting checks run
    same = [r for r in recorder.runs if r[0] == "T"]
    assert [r[1] for r in sorted(same, key=lambda r: r[2])] == ["v1", "v2", "v3"]
    for before, after in zip(same, same[1:]):
        assert after[2] >= before[3]  # never two of T at once
    other = next(r for r in recorder.runs if r[0] == "U")
    assert other[2] < same[0][3]  # U did not wait for T


def test_one_check_at_a_time_when_asked(tmp_path) -> None:
    worker, recorder = _worker(tmp_path, parallel=1)
    for name in ("A", "B"):
        worker._start(_check(name, "v1"))
    worker.start()
    assert worker.stop(timeout=10)
    assert recorder.most_at_once == 1 and len(recorder.runs) == 2


def test_a_version_being_checked_is_not_checked_again_at_the_same_time(tmp_path, monkeypatch) -> None:
    checker = versions.TreatmentChecker(tmp_path / "reports", load_protocol(DEFAULT_PROTOCOL))
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_check_version(check, version, case_file):
        calls.append(version)
        started.set()
        release.wait(10)
        return "record"

    monkeypatch.setattr(versions, "treatment_version", lambda check: check.version)
    monkeypatch.setattr(checker, "_check_version", slow_check_version)
    first = threading.Thread(target=checker.check, args=(SimpleNamespace(check_id="T", version="v1"),))
    first.start()
    assert started.wait(10)
    assert checker.check(SimpleNamespace(check_id="T", version="v1")) is None  # being checked: skipped
    release.set()
    first.join(10)
    assert calls == ["v1"]
    assert checker.check(SimpleNamespace(check_id="T", version="v1")) == "record"  # not in flight any more


def test_default_parallel_checks_and_the_command_line_setting() -> None:
    assert 1 <= default_parallel_checks() <= MAX_DEFAULT_PARALLEL_CHECKS
    from plancheck.cli.main import build_parser

    args = build_parser().parse_args(["serve", "--store", "s", "--reports", "r", "--parallel-checks", "3"])
    assert args.parallel_checks == 3
    from plancheck.cli.serve_command import run_serve
    from plancheck.errors import UsageError

    bad = build_parser().parse_args(["serve", "--store", "s", "--reports", "r", "--parallel-checks", "0"])
    with pytest.raises(UsageError, match="--parallel-checks"):
        run_serve(bad)


class _SynchronousPool:
    """An executor whose futures are done when ``submit`` returns (as a check that is over at once)."""

    def submit(self, fn):
        from concurrent.futures import Future

        future: Future = Future()
        fn()
        future.set_result(None)
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def test_a_check_over_before_its_callback_is_added_does_not_block_the_worker(tmp_path) -> None:
    worker, recorder = _worker(tmp_path, parallel=2)
    recorder.seconds = 0.0
    worker._pool = _SynchronousPool()  # type: ignore[assignment]
    starter = threading.Thread(target=lambda: [worker._start(_check("T", f"v{i}")) for i in range(3)], daemon=True)
    starter.start()
    starter.join(5)
    assert not starter.is_alive(), "the check thread blocked on its own lock"
    assert [r[1] for r in recorder.runs] == ["v0", "v1", "v2"] and worker.idle()
