"""One treatment's check as a self-contained job: read its files, run the protocol, write reports.

Run by ``plancheck batch`` (in worker processes or on Dask workers). A job carries plain,
picklable data only; :func:`run_job` never raises: a treatment that cannot be checked
becomes a :class:`TreatmentResult` with an ERROR row that says why. The check itself is
:func:`plancheck.analysis.check_treatment.check_treatment_files`, the function every entry point uses.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plancheck.atomic_write import write_file_atomically
from plancheck.analysis.check_treatment import check_treatment_files
from plancheck.model.course_selection import LeftOutPlan, PlanSelection
from plancheck.dicom.store import scrub
from plancheck.errors import InputError, PlancheckError, ProtocolError
from plancheck.protocol.loader import Protocol
from plancheck.rules.findings import Status, worst_status
from plancheck.rules.runner import CheckReport

__all__ = [
    "SUMMARY_COLUMNS", "MARKER_NAME", "TreatmentJob", "TreatmentResult", "run_job", "error_result", "peak_rss_mb",
]

#: Columns of the batch summary table, in order (one row per treatment and finding).
#: ``plans``/``plan_uids``: the courses of the treatment (summed by composite rules);
#: ``left_out``: its other plans, each with the reason.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "treatment_id", "patient_key", "study_uid", "plans", "plan_uids", "left_out", "rule_id", "title", "status",
    "measured", "unit", "limit", "structures", "courses", "message", "protocol",
)

#: File written last into a treatment's report folder; its presence and time mark the reports current.
MARKER_NAME = "batch-result.json"


@dataclass(frozen=True)
class TreatmentJob:
    """Everything a worker needs to check one treatment (no patient name or ID except in
    ``secrets``, which is used only to scrub them out of error messages).

    Attributes
    ----------
    treatment_id
        The treatment's key (frame of reference UID), with a suffix for one combination of
        alternative plans.
    plan_uids, plan_labels
        The courses (as chosen at discovery).
    left_out
        ``(uid, label, reason)`` of the treatment's other plans.
    files
        The plans, structure sets, doses and images to read (a ``.zip`` export once).
    selection
        The courses to check when they are not "every plan" (``--plan``, one combination of
        alternatives); None: as ``plancheck check`` chooses them (the case file's
        ``courses:``, else every plan).
    out_dir
        The treatment's report folder.
    formats
        Report formats for :func:`plancheck.report.write_reports`.
    fingerprint
        Identifies everything besides the files that changes the result (protocol, data
        tables, case file content, selection, formats); a report made with another is not current.
    error
        Set when discovery already knows the treatment cannot be checked (reported as ERROR).
    outside
        The patient's plans in other frames of reference
        (:attr:`plancheck.dicom.store.TreatmentCheck.outside_plans`): left out, and the
        limits on the whole treatment not graded.
    """

    treatment_id: str
    patient_key: str
    study_uid: str
    plan_uids: tuple[str, ...]
    plan_labels: tuple[str, ...]
    files: tuple[str, ...]
    out_dir: str
    left_out: tuple[tuple[str, str, str], ...] = ()
    formats: tuple[str, ...] = ("json",)
    case_file: str | None = None
    selection: PlanSelection | None = None
    fingerprint: str = ""
    error: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    outside: tuple[LeftOutPlan, ...] = ()

    @property
    def shown(self) -> str:
        """The courses, for progress lines and tables: ``C1_Eso + C2_LungMet``."""
        return " + ".join(label or uid[-12:] for uid, label in zip(self.plan_uids, self.plan_labels)) \
            or self.treatment_id


@dataclass(frozen=True)
class TreatmentResult:
    """The outcome of one job.

    Attributes
    ----------
    status
        The worst finding status, or ERROR when the treatment could not be checked.
    rows
        Summary-table rows (dicts keyed by :data:`SUMMARY_COLUMNS`).
    skipped
        True when the reports were current and the treatment was not checked again (resume).
    worker, peak_rss_mb
        Which process ran it (``host:pid``) and that process's peak resident memory.
    """

    treatment_id: str
    patient_key: str
    plan_labels: tuple[str, ...]
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


def _protocol_label(protocol: Protocol) -> str:
    return f"{protocol.id}@{protocol.version}"


def _identity(job: TreatmentJob) -> dict[str, Any]:
    return {
        "treatment_id": job.treatment_id, "patient_key": job.patient_key, "study_uid": job.study_uid,
        "plans": "; ".join(job.plan_labels), "plan_uids": "; ".join(job.plan_uids),
        "left_out": "; ".join(f"{label or uid}: {reason}" for uid, label, reason in job.left_out),
    }


def _rows(job: TreatmentJob, report: CheckReport) -> list[dict[str, Any]]:
    label = _protocol_label(report.protocol)
    identity = _identity(job)
    # the courses actually checked (the reader may have left out more, e.g. a case file's selection)
    identity["plans"] = "; ".join(c.label for c in report.export.courses)
    identity["plan_uids"] = "; ".join(c.plan.sop_instance_uid for c in report.export.courses)
    identity["left_out"] = scrub("; ".join(f"{p.shown}: {p.reason}" for p in report.export.left_out), job.secrets)
    rows = []
    for f in report.findings:
        measured = f.measured
        if measured is not None:
            try:
                measured = float(measured)
            except (TypeError, ValueError):
                measured = None
        rows.append({
            **identity, "rule_id": f.rule_id, "title": f.title, "status": str(f.status), "measured": measured,
            "unit": f.unit, "limit": f.limit, "structures": "; ".join(f.structures), "courses": "; ".join(f.courses),
            "message": scrub(f.message, job.secrets), "protocol": label,
        })
    return rows


def error_result(job: TreatmentJob, reason: str, *, elapsed_s: float = 0.0, protocol: str = "",
                 worker: str | None = None, peak_mb: float | None = None) -> TreatmentResult:
    """A result with one ERROR row giving ``reason`` (scrubbed of patient name and ID)."""
    reason = scrub(reason, job.secrets)
    row = {c: None for c in SUMMARY_COLUMNS}
    row.update(_identity(job))
    row.update({
        "rule_id": "", "title": "treatment could not be checked", "status": str(Status.ERROR), "unit": "",
        "limit": "", "structures": "", "courses": "", "message": reason, "protocol": protocol,
    })
    return TreatmentResult(job.treatment_id, job.patient_key, job.plan_labels, str(Status.ERROR), (row,), error=reason,
                           elapsed_s=elapsed_s, worker=worker if worker is not None else _worker_name(),
                           peak_rss_mb=peak_mb if worker is not None else peak_rss_mb())


def write_marker(job: TreatmentJob, result: TreatmentResult) -> None:
    """Write the report folder's marker (last, atomically): what was checked with what."""
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "treatment_id": job.treatment_id, "fingerprint": job.fingerprint, "inputs": sorted(job.files),
        "case_file": job.case_file, "formats": list(job.formats),
        "result": {k: v for k, v in asdict(result).items() if k not in ("skipped",)},
    }
    write_file_atomically(out / MARKER_NAME, json.dumps(data, indent=1, default=str))


def run_job(job: TreatmentJob, protocol: Protocol, threads: int | None = None) -> TreatmentResult:
    """Check one treatment; never raises. Writes the reports and, last, the marker file.
    ``threads``: for the treatment's rules (1 where treatments already run in parallel)."""
    start = time.perf_counter()
    if job.error is not None:
        result = error_result(job, job.error, protocol=_protocol_label(protocol))
    else:
        try:
            report, paths = check_treatment_files(job.files, protocol, job.out_dir, formats=job.formats,
                                                  case_file=job.case_file, selection=job.selection, threads=threads,
                                                  outside=job.outside)
        except (InputError, ProtocolError, PlancheckError) as exc:
            result = error_result(job, str(exc), elapsed_s=time.perf_counter() - start,
                                  protocol=_protocol_label(protocol))
        except Exception as exc:  # a bug in a reader or renderer: this treatment only
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
            result = error_result(job, f"internal error {type(exc).__name__}: {exc}{where}",
                                  elapsed_s=time.perf_counter() - start, protocol=_protocol_label(protocol))
        else:
            rows = _rows(job, report)
            status = worst_status([f.status for f in report.findings])
            labels = tuple(c.label for c in report.export.courses)
            result = TreatmentResult(job.treatment_id, job.patient_key, labels, str(status), tuple(rows),
                                     tuple(str(p) for p in paths), None, time.perf_counter() - start,
                                     _worker_name(), peak_rss_mb(), summary=dict(report.summary))
    try:
        write_marker(job, result)
    except OSError as exc:
        result = error_result(job, f"cannot write to the report folder: {exc.strerror or exc}",
                              elapsed_s=result.elapsed_s)
    return result
