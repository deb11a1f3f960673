"""The receiver's check thread: find the treatments an association completed and check each
version of them once.

Checks run from here, never in a network event handler: a slow or crashing check cannot
block or take down the associations being served. This thread finds what to check; up to
``parallel_checks`` checks run at the same time (each in a worker process of its own), so that
exports arriving together do not all wait for one another; one version of a treatment is
never checked twice at once (:class:`TreatmentChecker`). A *treatment* is every plan
of one patient in one frame of reference (:func:`plancheck.dicom.store.group_treatments`),
checked with all its courses by :func:`plancheck.analysis.check_treatment.check_treatment_files`,
the check ``plancheck check`` runs; alternative plans are checked as separate treatments.

The thread keeps an index of every object in the store (built from the files at start,
updated with each association's objects), so a treatment whose CT, plans and doses arrived
in different studies or associations is still one treatment. Each version of a treatment is
checked once, into a report folder written once (:mod:`plancheck.analysis.treatment_versions`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from plancheck.analysis.check_treatment import warm_up
from plancheck.dicom.store import ObjectInfo, group_treatments, index_objects, treatment_checks
from plancheck.parallel import default_threads
from plancheck.protocol.loader import Protocol
from plancheck.analysis.treatment_versions import CHECK_LOG_NAME, LATEST_NAME, RECORD_NAME, CheckRecord, TreatmentChecker

__all__ = ["CheckRecord", "CheckWorker", "CHECK_LOG_NAME", "TreatmentChecker", "RECORD_NAME", "LATEST_NAME"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    paths: frozenset[Path]
    received_uids: frozenset[str]


class CheckWorker(threading.Thread):
    """A daemon thread that checks treatments as associations hand over what they stored.

    Parameters
    ----------
    store_dir
        The store's folder of objects (``STORE/studies``): indexed once at start.
    reports_dir, protocol, formats, on_record
        As :class:`TreatmentChecker`.
    isolate
        Check each treatment in a worker process of its own (default; see :class:`TreatmentChecker`).
    parallel_checks
        Checks run at the same time at most (1: one after the other). Each then uses
        ``max(1, CPUs // parallel_checks)`` rule threads.
    """

    def __init__(self, reports_dir: Path, protocol: Protocol, *, formats: tuple[str, ...] = ("json", "html"),
                 on_record: Callable[[CheckRecord], None] | None = None, store_dir: Path | None = None,
                 isolate: bool = True, parallel_checks: int = 1) -> None:
        super().__init__(name="plancheck-checks", daemon=True)
        self.parallel_checks = max(1, int(parallel_checks))
        threads = max(1, default_threads() // self.parallel_checks) if self.parallel_checks > 1 else None
        self.checker = TreatmentChecker(reports_dir, protocol, formats=formats, on_record=on_record, isolate=isolate,
                                        threads=threads)
        self.reports_dir = self.checker.reports_dir
        self.store_dir = store_dir
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._objects: dict[str, ObjectInfo] = {}
        self._indexed = False
        self._pool = ThreadPoolExecutor(max_workers=self.parallel_checks, thread_name_prefix="plancheck-check")
        self._running: set[Future] = set()
        self._waiting: dict[str, deque] = {}  # check id -> its checks waiting for the one running
        # re-entrant: a check that is over before its done-callback is added runs the callback at once, here
        self._running_lock = threading.RLock()

    def submit(self, paths: Iterable[Path], received_uids: Iterable[str]) -> None:
        """Queue the files an association stored, with the SOP Instance UIDs it sent."""
        self._queue.put(_Job(frozenset(paths), frozenset(received_uids)))

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the queued checks, then end the thread. Returns False on timeout."""
        self._queue.put(None)
        self.join(timeout)
        return not self.is_alive()

    def idle(self) -> bool:
        """No job queued or being looked at, and no check running or waiting."""
        return self._queue.unfinished_tasks == 0 and self._drained()

    def _drained(self) -> bool:
        """No check running or waiting."""
        with self._running_lock:
            return not self._running and not any(self._waiting.values())

    def run(self) -> None:
        # load the kernels (here, or in the worker server) before the first plan arrives, not while it waits
        if self.checker.isolate:
            self.checker.start_worker_server()
        else:
            warm_up()
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    while not self._drained():  # the checks started and those waiting for them finish
                        time.sleep(0.05)
                    self._pool.shutdown(wait=True)
                    return
                self._process(job)
            except Exception:  # never let the thread die: log and wait for the next job
                log.error("check thread: unexpected error while processing a job:\n%s", traceback.format_exc())
            finally:
                self._queue.task_done()

    # ---------------------------------------------------------------------------------------

    def _index(self, paths: Iterable[Path]) -> None:
        for info in index_objects(sorted(p for p in paths if p.is_file())).objects:
            self._objects[info.sop_instance_uid] = info

    def _process(self, job: _Job) -> None:
        if not self._indexed:
            self._indexed = True
            if self.store_dir is not None and self.store_dir.is_dir():
                started = time.perf_counter()
                self._index([self.store_dir])
                log.info("indexed %d stored object(s) in %.1f s", len(self._objects), time.perf_counter() - started)
        self._index(job.paths)
        for treatment in group_treatments(list(self._objects.values())):
            checks = treatment_checks(treatment, alternatives="variants")
            if not any(c.component_uids & job.received_uids for c in checks):
                continue
            for check in checks:
                if check.error is None and not check.complete:
                    log.info("treatment %s (%s) not complete yet: %s", check.check_id,
                             " + ".join(g.plan.label for g in check.courses), "; ".join(check.missing))
                    continue
                self._start(check)

    def _start(self, check) -> None:
        """Run ``self.checker.check(check)`` in the pool (at most ``parallel_checks`` at once);
        the checks of one treatment one after the other, in the order they arrived (so that
        its newest version is checked last and is its latest report)."""
        with self._running_lock:
            waiting = self._waiting.get(check.check_id)
            if waiting is not None:  # a check of this treatment is running: this one follows it
                waiting.append(check)
                return
            self._waiting[check.check_id] = deque()
            self._submit(check)

    def _submit(self, check) -> None:
        """Submit one check (``_running_lock`` held)."""
        def run() -> None:
            try:
                self.checker.check(check)
            except Exception:  # never let a check's failure go unseen: log it, the service goes on
                log.error("check thread: unexpected error while checking %s:\n%s", check.check_id,
                          traceback.format_exc())

        future = self._pool.submit(run)
        self._running.add(future)
        future.add_done_callback(lambda done: self._finished(done, check.check_id))

    def _finished(self, future: Future, check_id: str) -> None:
        with self._running_lock:
            self._running.discard(future)
            waiting = self._waiting.get(check_id)
            if waiting:
                self._submit(waiting.popleft())
            else:
                self._waiting.pop(check_id, None)
