"""Checking each version of a treatment once, into report folders that are written once.

Shared by the DICOM receiver (:mod:`plancheck.net.checks`) and the watched export folder
(:mod:`plancheck.watch`). A treatment's *version* is a hash of its course selection, of
the content of its RT objects (:func:`plancheck.dicom.store.treatment_version`) and of its
case file's content: the same objects sent (or copied) again give the same version, which
is not checked again; a changed plan or case file, or an added course, gives a new version.
A version checked before that is the treatment's current one again (a plan re-sent as it
was, a case file edit undone) becomes its newest again in ``latest.json``. Each version's
reports are written into a staging folder and renamed into place when complete, never
overwritten; earlier versions are kept::

    REPORTS/<patient key>/<treatment id>/<UTC time>_<version>/   reports and record.json
    REPORTS/<patient key>/<treatment id>/latest.json              the newest version, and the superseded ones
    REPORTS/checks.jsonl                                          one line per check

When a treatment's choice of courses changes shape — an alternative plan arrives, so it is
checked per combination (``<treatment id>_<digest>``), or the alternatives go — the folders of
the choices no longer made get ``"latest": null`` and ``replaced_by`` in their ``latest.json``.

The patient key is a salted hash of the Patient ID (:mod:`plancheck.analysis.patient_keys`,
as ``plancheck batch`` files its reports): a treatment id is a frame of reference UID, which
two patients may share (a template CT), and one patient's report must never be listed as
superseded by another's.

A treatment that cannot be checked from its files (unreadable input, too many alternative
plans, still incomplete when given up on) is recorded as ERROR once per version; an internal
error (a bug), or a failure while one of its files was being rewritten or removed, is logged
and recorded in ``checks.jsonl`` but leaves no version folder, so the version is tried again. The check itself is :func:`plancheck.analysis.check_treatment.check_treatment_files`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from plancheck.atomic_write import write_file_atomically
from plancheck.analysis.processes import JobLimits, WorkerFailed, call_in_process
from plancheck.analysis.check_treatment import check_treatment_files
from plancheck.analysis.patient_keys import patient_keyer
from plancheck.dicom.store import TreatmentCheck, scrub, treatment_version
from plancheck.errors import InputError, ProtocolError, UsageError
from plancheck.model.case_files import read_case_text
from plancheck.protocol.loader import Protocol
from plancheck.rules.findings import Status, worst_status

__all__ = ["CheckRecord", "TreatmentChecker", "CHECK_LOG_NAME", "RECORD_NAME", "LATEST_NAME"]

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
    patient_key
        The patient's key (a salted hash of the Patient ID; the folder above the treatment's).
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
    patient_key: str = ""


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
    isolate
        Run each check in a worker process of its own (:func:`plancheck.analysis.processes.call_in_process`):
        beside the service's threads without sharing their interpreter lock, within
        ``limits``, and a crash cannot take the service down.
    limits
        Time and memory limits of one check (with ``isolate``).
    threads
        Rule threads of one check (None: :func:`plancheck.parallel.default_threads`; fewer when
        several checks run at once).

    :meth:`check` may be called from several threads: a version of a treatment being checked
    is not checked again until that check is over (and then it is done).
    """

    def __init__(self, reports_dir: Path, protocol: Protocol, *, formats: tuple[str, ...] = ("json", "html"),
                 on_record: Callable[[CheckRecord], None] | None = None, isolate: bool = False,
                 limits: JobLimits | None = None, threads: int | None = None) -> None:
        self.reports_dir = Path(reports_dir)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        self.staging = self.reports_dir / ".staging"
        shutil.rmtree(self.staging, ignore_errors=True)  # half-written versions of a crash
        self.protocol = protocol
        self.formats = formats
        self.on_record = on_record
        self.isolate = isolate
        self.limits = limits or JobLimits()
        self.threads = threads
        self._patient_key = patient_keyer(self.reports_dir)
        self._log_lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()  # (check id, version) being checked now
        self._flight_lock = threading.Lock()

    def start_worker_server(self) -> None:
        """Start the warm worker server now (with ``isolate``), so the first check does not wait for it."""
        if self.isolate:
            try:
                call_in_process(len, ((),), limits=self.limits)
            except Exception as exc:  # the first check will try again and report
                log.warning("the check worker server could not be started: %s", exc)

    def treatment_folder(self, check: TreatmentCheck) -> Path:
        """The folder of the treatment's versions: ``REPORTS/<patient key>/<treatment id>``."""
        return self.reports_dir / self._patient_key(check.treatment.patient_id) / check.check_id

    def version_folder(self, check: TreatmentCheck, version: str) -> Path | None:
        """The folder of a version already checked, if any."""
        folder = self.treatment_folder(check)
        found = sorted(folder.glob(f"*_{version}")) if folder.is_dir() else []
        return found[-1] if found else None

    def check(self, check: TreatmentCheck, *, case_file: str | None = None) -> CheckRecord | None:
        """Check ``check`` unless its current version was checked already or is being checked
        now; returns the record (None when nothing was done). ``case_file``: the treatment's
        case file, if any (its content is part of the version)."""
        version = _version(check, case_file)
        key = (check.check_id, version)
        with self._flight_lock:
            if key in self._in_flight:
                log.info("treatment %s version %s is being checked already", check.check_id, version)
                return None
            self._in_flight.add(key)
        try:
            return self._check_version(check, version, case_file)
        finally:
            with self._flight_lock:
                self._in_flight.discard(key)

    def _check_version(self, check: TreatmentCheck, version: str, case_file: str | None) -> CheckRecord | None:
        treatment = check.treatment
        done = self.version_folder(check, version)
        labels = tuple(g.plan.label for g in check.courses)
        if done is not None:
            log.info("treatment %s (%s) version %s was checked already; reports in %s", check.check_id,
                     " + ".join(labels), version, done)
            self._update_latest(done)  # it is the treatment's current version (again)
            self._retire_other_choices(check, done.parent)
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
        before = _file_states(check.files)
        try:
            if check.error is not None:
                raise _NotCheckable(check.error)
            args = (tuple(str(f) for f in check.files), self.protocol, str(staging), tuple(self.formats), case_file,
                    selection, self.threads, check.outside_plans)
            outcome = call_in_process(_check_and_summarise, args, limits=self.limits) if self.isolate \
                else _check_and_summarise(*args)
        except Exception as exc:  # includes unreadable input and bugs: recorded, the service goes on
            # input that cannot be checked gives the same ERROR every time: recorded once per version;
            # an internal error (a bug, a crash) is not: that version is checked again when sent again
            # (a check stopped at its time or memory limit would be stopped again: recorded once too)
            at_limit = isinstance(exc, WorkerFailed) and str(exc).startswith("stopped:")
            crashed = not (at_limit or isinstance(exc, (_NotCheckable, InputError, ProtocolError, UsageError)))
            plain = not crashed or isinstance(exc, WorkerFailed)
            # a file rewritten (or removed) while it was read failed this check, not the version: try it again
            crashed = crashed or _file_states(check.files) != before
            reason = scrub(str(exc) if plain else f"{type(exc).__name__}: {exc}", secrets)
            log.error("treatment %s (%s): check failed: %s", check.check_id, " + ".join(labels), reason)
            log.debug("treatment %s: traceback:\n%s", check.check_id, scrub(traceback.format_exc(), secrets))
            record = CheckRecord(stamp, check.check_id, version, treatment.study_uid, uids, labels,
                                 str(Status.ERROR), error=reason, elapsed_s=time.perf_counter() - start,
                                 left_out=tuple(scrub(x, secrets) for x in left_out))
            paths = []
        else:
            labels, uids, paths = outcome["labels"], outcome["uids"], outcome["paths"]
            left_out = tuple(scrub(x, secrets) for x in outcome["left_out"])
            record = CheckRecord(stamp, check.check_id, version, treatment.study_uid, uids, labels, outcome["status"],
                                 outcome["summary"], elapsed_s=time.perf_counter() - start, left_out=left_out)
        final = self.treatment_folder(check) / f"{stamp}_{version}"
        record = replace(record, patient_key=final.parent.parent.name)
        if crashed:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            record = CheckRecord(**{**asdict(record), "folder": str(final),
                                    "report_files": tuple(str(final / Path(p).name) for p in paths)})
            write_file_atomically(staging / RECORD_NAME, json.dumps(asdict(record), indent=1, sort_keys=True))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, final)  # the version appears whole, once
            self._update_latest(final)
            self._retire_other_choices(check, final.parent)
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
        try:
            if json.loads((newest.parent / LATEST_NAME).read_text(encoding="utf-8")) == data:
                return
        except (OSError, ValueError):
            pass
        write_file_atomically(newest.parent / LATEST_NAME, json.dumps(data, indent=1))

    def _retire_other_choices(self, check: TreatmentCheck, current: Path) -> None:
        """Point the ``latest.json`` of the treatment's other choices of courses away from their
        reports: a treatment checked as one plan, then sent an alternative plan, is checked per
        combination (``<treatment id>_<digest>``) and the single-plan folder's ``latest`` would
        still name a report of a treatment that no longer exists as it was (and the other way
        round when alternatives go). Such a ``latest.json`` gets ``"latest": null`` and
        ``replaced_by``: the folders of the current choices."""
        base = check.treatment.key
        choice_folder = re.compile(re.escape(base) + r"(_[0-9a-f]{8})?")  # TreatmentCheck.check_id
        for folder in current.parent.iterdir():
            if folder == current or not folder.is_dir() or not choice_folder.fullmatch(folder.name):
                continue
            if (check.choice is None or not check.choice.variant) == (folder.name == base):
                continue  # a sibling combination of alternatives, still current
            latest = folder / LATEST_NAME
            try:
                data = json.loads(latest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            replaced = sorted({*data.get("replaced_by", ()), current.name})
            if data.get("latest") is None and data.get("replaced_by") == replaced:
                continue
            superseded = sorted({*data.get("superseded", ()), *([data["latest"]] if data.get("latest") else [])})
            write_file_atomically(latest, json.dumps({"latest": None, "superseded": superseded,
                                                      "replaced_by": replaced}, indent=1))

    def _append(self, record: CheckRecord) -> None:
        line = json.dumps(asdict(record), sort_keys=True)
        with self._log_lock, (self.reports_dir / CHECK_LOG_NAME).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _file_states(files) -> tuple:
    """Size and modification time of each file (None for one that cannot be read)."""
    out = []
    for path in files:
        try:
            st = os.stat(path)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _version(check: TreatmentCheck, case_file: str | None) -> str:
    """The version of ``check`` with the case file ``case_file`` (its content; the version of
    the files alone when there is none)."""
    version = treatment_version(check)
    if not case_file:
        return version
    try:
        content = read_case_text(case_file)[0].encode("utf-8")
    except ProtocolError:  # unreadable: the check says why
        content = b"(unreadable)"
    return hashlib.sha256(f"{version}\ncase:".encode() + content).hexdigest()[:16]


def _check_and_summarise(files: tuple[str, ...], protocol: Protocol, out_dir: str, formats: tuple[str, ...],
                         case_file: str | None, selection, threads: int | None = None, outside=()) -> dict:
    """Check and write the reports; return what the record needs (small, picklable: the
    report itself, with its dose grids, stays in the worker)."""
    report, paths = check_treatment_files(files, protocol, out_dir, formats=formats, case_file=case_file,
                                          selection=selection, threads=threads, outside=outside)
    return {
        "status": str(worst_status([f.status for f in report.findings])), "summary": dict(report.summary),
        "labels": tuple(c.label for c in report.export.courses),
        "uids": tuple(c.plan.sop_instance_uid for c in report.export.courses),
        "left_out": tuple(f"{p.shown}: {p.reason}" for p in report.export.left_out),
        "paths": [str(p) for p in paths],
    }


class _NotCheckable(Exception):
    """A treatment whose courses cannot be chosen (too many alternatives)."""
