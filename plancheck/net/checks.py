"""The receiver's check thread: find the plans an association completed and check them.

Checks run here, one at a time, never in a network event handler: a slow or crashing
check cannot block or take down the associations being served. Every outcome is logged
(UIDs only) and appended to ``REPORTS/checks.jsonl``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plancheck.batch.job import check_plan_files
from plancheck.dicom.store import PlanGroup, group_plans, index_objects, safe_uid, scrub
from plancheck.protocol.loader import Protocol
from plancheck.rules.findings import Status, worst_status

__all__ = ["CheckRecord", "CheckWorker", "CHECK_LOG_NAME"]

log = logging.getLogger(__name__)

#: One JSON line per check in the reports folder.
CHECK_LOG_NAME = "checks.jsonl"


@dataclass(frozen=True)
class CheckRecord:
    """The outcome of one plan check (UIDs only).

    Attributes
    ----------
    status
        Worst finding status, or ERROR when the check could not be done.
    summary
        Findings per status (``pass``, ``warn``, ``fail``, ``not_evaluated``, ``error``).
    """

    time: str
    plan_uid: str
    study_uid: str
    status: str
    summary: dict[str, int] = field(default_factory=dict)
    report_files: tuple[str, ...] = ()
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class _Job:
    study_dirs: frozenset[Path]
    received_uids: frozenset[str]


class CheckWorker(threading.Thread):
    """A daemon thread that checks plans as associations hand over what they stored.

    Parameters
    ----------
    reports_dir
        Reports go to ``reports_dir/<study UID>/<plan UID>/``.
    protocol
        The resolved protocol.
    formats
        Report formats.
    on_record
        Called (in this thread) with every :class:`CheckRecord`.
    """

    def __init__(self, reports_dir: Path, protocol: Protocol, *, formats: tuple[str, ...] = ("json", "html"),
                 on_record: Callable[[CheckRecord], None] | None = None) -> None:
        super().__init__(name="plancheck-checks", daemon=True)
        self.reports_dir = Path(reports_dir)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        self.protocol = protocol
        self.formats = formats
        self.on_record = on_record
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._log_lock = threading.Lock()

    def submit(self, study_dirs: Iterable[Path], received_uids: Iterable[str]) -> None:
        """Queue the studies an association stored into, with the SOP Instance UIDs it sent."""
        self._queue.put(_Job(frozenset(study_dirs), frozenset(received_uids)))

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the queued checks, then end the thread. Returns False on timeout."""
        self._queue.put(None)
        self.join(timeout)
        return not self.is_alive()

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._process(job)
            except Exception:  # never let the thread die: log and wait for the next job
                log.error("check thread: unexpected error while processing a job:\n%s", traceback.format_exc())
            finally:
                self._queue.task_done()

    # ---------------------------------------------------------------------------------------

    def _process(self, job: _Job) -> None:
        for study_dir in sorted(job.study_dirs):
            index = index_objects(study_dir)
            for group in group_plans(index.objects):
                plan_uid = safe_uid(group.plan.sop_instance_uid)
                if not group.component_uids & job.received_uids:
                    continue
                if not group.complete:
                    log.info("plan %s (study %s) not complete yet: %s", plan_uid, study_dir.name,
                             "; ".join(group.missing))
                    continue
                self._check(group, study_dir.name)

    def _check(self, group: PlanGroup, study: str) -> None:
        plan_uid = safe_uid(group.plan.sop_instance_uid)
        secrets = (group.plan.patient_id, group.plan.patient_name)
        out_dir = self.reports_dir / study / plan_uid
        start = time.perf_counter()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            report, paths = check_plan_files(group.files, self.protocol, out_dir, formats=self.formats)
        except Exception as exc:  # includes unreadable input and bugs: logged, the server goes on
            reason = scrub(f"{type(exc).__name__}: {exc}", secrets)
            log.error("plan %s (study %s): check failed: %s", plan_uid, study, reason)
            log.debug("plan %s: traceback:\n%s", plan_uid, scrub(traceback.format_exc(), secrets))
            record = CheckRecord(stamp, plan_uid, study, str(Status.ERROR), error=reason,
                                 elapsed_s=time.perf_counter() - start)
        else:
            status = worst_status([f.status for f in report.findings])
            summary = dict(report.summary)
            record = CheckRecord(stamp, plan_uid, study, str(status), summary, tuple(str(p) for p in paths),
                                 elapsed_s=time.perf_counter() - start)
            counts = ", ".join(f"{v} {k.upper()}" for k, v in summary.items() if v)
            log.info("plan %s (study %s) checked: %s (%s) in %.1f s; reports in %s", plan_uid, study, status,
                     counts or "no findings", record.elapsed_s, out_dir)
        self._append(record)
        if self.on_record:
            self.on_record(record)

    def _append(self, record: CheckRecord) -> None:
        line = json.dumps(asdict(record), sort_keys=True)
        with self._log_lock, (self.reports_dir / CHECK_LOG_NAME).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
