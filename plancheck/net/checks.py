"""The receiver's check thread: find the treatments an association completed and check each
version of them once.

Checks run here, one at a time, never in a network event handler: a slow or crashing
check cannot block or take down the associations being served. A *treatment* is every plan
of one patient in one frame of reference (:func:`plancheck.dicom.store.group_treatments`),
checked with all its courses by :func:`plancheck.check_treatment.check_treatment_files`,
the check ``plancheck check`` runs; alternative plans are checked as separate treatments.

The thread keeps an index of every object in the store (built from the files at start,
updated with each association's objects), so a treatment whose CT, plans and doses arrived
in different studies or associations is still one treatment.

**One check per version.** A treatment's *version* is a hash of its course selection and
of the content of its RT objects (:func:`plancheck.dicom.store.treatment_version`). A
version is checked once: the same export sent again (or by eight senders at once) gives no
new check. Its reports are written into a new folder, renamed into place when complete, and
never overwritten; a new version (a changed plan, an added course) gets a folder of its
own, and earlier ones are kept::

    REPORTS/<treatment id>/<UTC time>_<version>/   reports and record.json
    REPORTS/<treatment id>/latest.json              the newest version, and the superseded ones
    REPORTS/checks.jsonl                            one line per check

Every outcome is logged (UIDs only) and appended to ``checks.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plancheck.atomic_write import write_file_atomically
from plancheck.check_treatment import check_treatment_files
from plancheck.dicom.store import (
    ObjectInfo, TreatmentCheck, group_treatments, index_objects, safe_uid, scrub, treatment_checks, treatment_version,
)
from plancheck.errors import InputError, ProtocolError, UsageError
from plancheck.protocol.loader import Protocol
from plancheck.rules.findings import Status, worst_status

__all__ = ["CheckRecord", "CheckWorker", "CHECK_LOG_NAME", "TreatmentChecker", "RECORD_NAME", "LATEST_NAME"]

log = logging.getLogger(__name__)

#: One JSON line per check in the reports folder.
CHECK_LOG_NAME = "checks.jsonl"
#: The check's record inside each version folder.
RECORD_NAME = "record.json"
#: Per treatment: the newest version folder and the superseded ones.
LATEST_NAME = "latest.json"


@dataclass(frozen=True)
class CheckRecord:
    """The outcome of one treatment check (UIDs and plan labels only).

    Attributes
    ----------
    treatment_id
        The treatment's key (frame of reference UID, suffixed for one combination of
        alternative plans).
    version
        Content hash of what was checked.
    plan_uids, plan_labels
        The courses checked together.
    left_out
        ``"label: reason"`` of the treatment's other plans.
    status
        Worst finding status, or ERROR when the check could not be done.
    summary
        Findings per status (``pass``, ``warn``, ``fail``, ``not_evaluated``, ``error``).
    folder
        The version's report folder.
    """

    time: str
    treatment_id: str
    version: str
    study_uid: str
    plan_uids: tuple[str, ...]
    plan_labels: tuple[str, ...]
    status: str
    summary: dict[str, int] = field(default_factory=dict)
    report_files: tuple[str, ...] = ()
    error: str | None = None
    elapsed_s: float = 0.0
    left_out: tuple[str, ...] = ()
    folder: str = ""


class TreatmentChecker:
    """Checks treatment versions once each, writing versioned report folders (see the module
    docstring). Shared by the receiver's check thread and ``plancheck watch``.

    Parameters
    ----------
    reports_dir
        Where version folders, ``latest.json`` and ``checks.jsonl`` go.
    protocol
        The resolved protocol.
    formats
        Report formats.
    on_record
        Called with every :class:`CheckRecord`.
    """

    def __init__(self, reports_dir: Path, protocol: Protocol, *, formats: tuple[str, ...] = ("json", "html"),
                 on_record: Callable[[CheckRecord], None] | None = None) -> None:
        self.reports_dir = Path(reports_dir)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        self.staging = self.reports_dir / ".staging"
        shutil.rmtree(self.staging, ignore_errors=True)  # half-written versions of a crash
        self.protocol = protocol
        self.formats = formats
        self.on_record = on_record
        self._log_lock = threading.Lock()

    def version_folder(self, check: TreatmentCheck, version: str) -> Path | None:
        """The folder of a version already checked, if any."""
        folder = self.reports_dir / check.check_id
        found = sorted(folder.glob(f"*_{version}")) if folder.is_dir() else []
        return found[-1] if found else None

    def check(self, check: TreatmentCheck, *, case_file: str | None = None) -> CheckRecord | None:
        """Check ``check`` unless its current version was checked already; returns the record
        (None when nothing was done)."""
        treatment = check.treatment
        version = treatment_version(check)
        done = self.version_folder(check, version)
        labels = tuple(g.plan.label for g in check.courses)
        if done is not None:
            log.info("treatment %s (%s) version %s was checked already; reports in %s", check.check_id,
                     " + ".join(labels), version, done)
            return None
        secrets = (treatment.patient_id, treatment.patient_name)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        staging = self.staging / uuid.uuid4().hex
        staging.mkdir(parents=True)
        start = time.perf_counter()
        left_out = tuple(f"{p.shown}: {p.reason}" for p in (check.choice.left_out if check.choice else ()))
        uids = tuple(g.plan.sop_instance_uid for g in check.courses)
        selection = check.choice.as_selection(
            f"combination {check.choice.variant} of alternative plans") if check.choice and check.choice.variant else None
        crashed = False
        try:
            if check.error is not None:
                raise _NotCheckable(check.error)
            report, paths = check_treatment_files(check.files, self.protocol, staging, formats=self.formats,
                                                  case_file=case_file, selection=selection)
        except Exception as exc:  # includes unreadable input and bugs: recorded, the service goes on
            # input that cannot be checked gives the same ERROR every time: recorded once per version;
            # an internal error (a bug, a crash) is not: that version is checked again when sent again
            crashed = not isinstance(exc, (_NotCheckable, InputError, ProtocolError, UsageError))
            reason = scrub(str(exc) if not crashed else f"{type(exc).__name__}: {exc}", secrets)
            log.error("treatment %s (%s): check failed: %s", check.check_id, " + ".join(labels), reason)
            log.debug("treatment %s: traceback:\n%s", check.check_id, scrub(traceback.format_exc(), secrets))
            record = CheckRecord(stamp, check.check_id, version, treatment.study_uid, uids, labels,
                                 str(Status.ERROR), error=reason, elapsed_s=time.perf_counter() - start,
                                 left_out=tuple(scrub(x, secrets) for x in left_out))
            paths = []
        else:
            status = worst_status([f.status for f in report.findings])
            labels = tuple(c.label for c in report.export.courses)
            uids = tuple(c.plan.sop_instance_uid for c in report.export.courses)
            left_out = tuple(scrub(f"{p.shown}: {p.reason}", secrets) for p in report.export.left_out)
            record = CheckRecord(stamp, check.check_id, version, treatment.study_uid, uids, labels, str(status),
                                 dict(report.summary), elapsed_s=time.perf_counter() - start, left_out=left_out)
        final = self.reports_dir / check.check_id / f"{stamp}_{version}"
        if crashed:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            record = CheckRecord(**{**asdict(record), "folder": str(final),
                                    "report_files": tuple(str(final / Path(p).name) for p in paths)})
            write_file_atomically(staging / RECORD_NAME, json.dumps(asdict(record), indent=1, sort_keys=True))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, final)  # the version appears whole, once
            self._update_latest(final)
        counts = ", ".join(f"{v} {k.upper()}" for k, v in record.summary.items() if v)
        if record.error is None:
            log.info("treatment %s (%s) checked: %s (%s) in %.1f s; reports in %s", check.check_id,
                     " + ".join(labels), record.status, counts or "no findings", record.elapsed_s, final)
        self._append(record)
        if self.on_record:
            self.on_record(record)
        return record

    def _update_latest(self, newest: Path) -> None:
        folders = sorted(p for p in newest.parent.iterdir() if p.is_dir())
        data = {"latest": newest.name, "superseded": [p.name for p in folders if p != newest]}
        write_file_atomically(newest.parent / LATEST_NAME, json.dumps(data, indent=1))

    def _append(self, record: CheckRecord) -> None:
        line = json.dumps(asdict(record), sort_keys=True)
        with self._log_lock, (self.reports_dir / CHECK_LOG_NAME).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class _NotCheckable(Exception):
    """A treatment whose courses cannot be chosen (too many alternatives)."""


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
    """

    def __init__(self, reports_dir: Path, protocol: Protocol, *, formats: tuple[str, ...] = ("json", "html"),
                 on_record: Callable[[CheckRecord], None] | None = None, store_dir: Path | None = None) -> None:
        super().__init__(name="plancheck-checks", daemon=True)
        self.checker = TreatmentChecker(reports_dir, protocol, formats=formats, on_record=on_record)
        self.reports_dir = self.checker.reports_dir
        self.store_dir = store_dir
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._objects: dict[str, ObjectInfo] = {}
        self._indexed = False

    def submit(self, paths: Iterable[Path], received_uids: Iterable[str]) -> None:
        """Queue the files an association stored, with the SOP Instance UIDs it sent."""
        self._queue.put(_Job(frozenset(paths), frozenset(received_uids)))

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
                self.checker.check(check)
