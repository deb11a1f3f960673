"""One plan's check as a self-contained job: read its files, run the protocol, write reports.

Shared by ``plancheck batch`` (in worker processes or on Dask workers) and by the DICOM
receiver (in its check thread). A job carries plain, picklable data only; :func:`run_job`
never raises: a plan that cannot be checked becomes a :class:`PlanResult` with an ERROR row
that says why.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plancheck import report as _report
from plancheck.atomic_write import write_file_atomically
from plancheck.dicom import read_export
from plancheck.dicom.store import scrub
from plancheck.errors import InputError, PlancheckError, ProtocolError
from plancheck.model.case import load_case
from plancheck.protocol.loader import Protocol
from plancheck.rules.findings import Status, worst_status
from plancheck.rules.runner import CheckReport, run_check

__all__ = [
    "SUMMARY_COLUMNS", "MARKER_NAME", "PlanJob", "PlanResult", "check_plan_files", "run_job",
    "error_result", "peak_rss_mb",
]

#: Columns of the batch summary table, in order (one row per plan and finding).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "plan_uid", "plan_label", "patient_key", "study_uid", "rule_id", "title", "status", "measured",
    "unit", "limit", "structures", "courses", "message", "protocol",
)

#: File written last into a plan's report folder; its presence and time mark the reports current.
MARKER_NAME = "batch-result.json"


@dataclass(frozen=True)
class PlanJob:
    """Everything a worker needs to check one plan (no patient name or ID except in
    ``secrets``, which is used only to scrub them out of error messages).

    Attributes
    ----------
    files
        The plan, its structure set, dose(s) and images, as paths.
    out_dir
        The plan's report folder.
    formats
        Report formats for :func:`plancheck.report.write_reports`.
    fingerprint
        Identifies the protocol and options; a report made with another is not current.
    """

    plan_uid: str
    plan_label: str
    patient_key: str
    study_uid: str
    files: tuple[str, ...]
    out_dir: str
    formats: tuple[str, ...] = ("json",)
    case_file: str | None = None
    fingerprint: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class PlanResult:
    """The outcome of one job.

    Attributes
    ----------
    status
        The worst finding status, or ERROR when the plan could not be checked.
    rows
        Summary-table rows (dicts keyed by :data:`SUMMARY_COLUMNS`).
    skipped
        True when the reports were current and the plan was not checked again (resume).
    worker, peak_rss_mb
        Which process ran it (``host:pid``) and that process's peak resident memory so far.
    """

    plan_uid: str
    plan_label: str
    patient_key: str
    status: str
    rows: tuple[dict[str, Any], ...]
    report_files: tuple[str, ...] = ()
    error: str | None = None
    elapsed_s: float = 0.0
    worker: str = ""
    peak_rss_mb: float | None = None
    skipped: bool = False
    summary: dict[str, int] = field(default_factory=dict)


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def check_plan_files(files: Sequence[str | os.PathLike[str]], protocol: Protocol, out_dir: str | os.PathLike[str],
                     *, formats: Sequence[str] = ("json", "html"),
                     case_file: str | os.PathLike[str] | None = None,
                     threads: int | None = None) -> tuple[CheckReport, list[Path]]:
    """Read one plan's files, check them against ``protocol`` and write the reports
    (``threads``: see :func:`plancheck.rules.runner.run_check`).

    Raises
    ------
    InputError, ProtocolError
        The files cannot be read or linked; the case file does not validate.
    PlancheckError
        :func:`plancheck.report.write_reports` is not available.
    """
    export = read_export([str(f) for f in files])
    case = load_case(case_file) if case_file else None
    report = run_check(export, protocol, case=case, case_source=str(case_file) if case_file else None, threads=threads)
    write_reports = getattr(_report, "write_reports", None)
    if write_reports is None:
        raise PlancheckError("plancheck.report.write_reports is not available in this installation")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = write_reports(report, Path(out_dir), formats=tuple(formats))
    return report, [Path(p) for p in paths]


def _protocol_label(protocol: Protocol) -> str:
    return f"{protocol.id}@{protocol.version}"


def _rows(job: PlanJob, report: CheckReport) -> list[dict[str, Any]]:
    label = _protocol_label(report.protocol)
    rows = []
    for f in report.findings:
        measured = f.measured
        if measured is not None:
            try:
                measured = float(measured)
            except (TypeError, ValueError):
                measured = None
        rows.append({
            "plan_uid": job.plan_uid, "plan_label": job.plan_label, "patient_key": job.patient_key,
            "study_uid": job.study_uid, "rule_id": f.rule_id, "title": f.title, "status": str(f.status),
            "measured": measured, "unit": f.unit, "limit": f.limit, "structures": "; ".join(f.structures),
            "courses": "; ".join(f.courses), "message": scrub(f.message, job.secrets), "protocol": label,
        })
    return rows


def error_result(job: PlanJob, reason: str, *, elapsed_s: float = 0.0, protocol: str = "") -> PlanResult:
    """A result with one ERROR row giving ``reason`` (scrubbed of patient name and ID)."""
    reason = scrub(reason, job.secrets)
    row = {c: None for c in SUMMARY_COLUMNS}
    row.update({
        "plan_uid": job.plan_uid, "plan_label": job.plan_label, "patient_key": job.patient_key,
        "study_uid": job.study_uid, "rule_id": "", "title": "plan could not be checked",
        "status": str(Status.ERROR), "unit": "", "limit": "", "structures": "", "courses": "",
        "message": reason, "protocol": protocol,
    })
    return PlanResult(job.plan_uid, job.plan_label, job.patient_key, str(Status.ERROR), (row,), error=reason,
                      elapsed_s=elapsed_s, worker=_worker_name(), peak_rss_mb=peak_rss_mb())


def _write_marker(job: PlanJob, result: PlanResult) -> None:
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "plan_uid": job.plan_uid, "fingerprint": job.fingerprint, "inputs": sorted(job.files),
        "case_file": job.case_file, "formats": list(job.formats),
        "result": {k: v for k, v in asdict(result).items() if k not in ("skipped",)},
    }
    write_file_atomically(out / MARKER_NAME, json.dumps(data, indent=1, default=str))


def run_job(job: PlanJob, protocol: Protocol, threads: int | None = None) -> PlanResult:
    """Check one plan; never raises. Writes the reports and, last, the marker file.
    ``threads``: for the plan's rules (1 where plans already run in parallel)."""
    start = time.perf_counter()
    try:
        report, paths = check_plan_files(job.files, protocol, job.out_dir, formats=job.formats,
                                         case_file=job.case_file, threads=threads)
    except (InputError, ProtocolError) as exc:
        result = error_result(job, str(exc), elapsed_s=time.perf_counter() - start,
                              protocol=_protocol_label(protocol))
    except Exception as exc:  # a bug in a reader or renderer: this plan only
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        result = error_result(job, f"internal error {type(exc).__name__}: {exc}{where}",
                              elapsed_s=time.perf_counter() - start, protocol=_protocol_label(protocol))
    else:
        rows = _rows(job, report)
        status = worst_status([f.status for f in report.findings])
        result = PlanResult(job.plan_uid, job.plan_label, job.patient_key, str(status), tuple(rows),
                            tuple(str(p) for p in paths), None, time.perf_counter() - start, _worker_name(),
                            peak_rss_mb(), summary=dict(report.summary))
    try:
        _write_marker(job, result)
    except OSError as exc:
        result = error_result(job, f"cannot write to the report folder: {exc.strerror or exc}",
                              elapsed_s=result.elapsed_s)
    return result
