"""``run_batch``: check every treatment under a folder in parallel, with resume and a summary table.

Parallelism is one worker process per treatment on this machine, at most ``workers`` at a
time, with time and memory limits (:mod:`plancheck.batch.workers`), or a Dask distributed
cluster (``dask_address``; the cluster's own limits apply). Jobs are independent (one
treatment each: all its courses together).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plancheck.batch.discover import discover_treatments
from plancheck.batch.job import MARKER_NAME, TreatmentJob, TreatmentResult, run_job
from plancheck.analysis.processes import JobLimits
from plancheck.batch.workers import run_in_processes
from plancheck.batch.summary import write_skipped, write_summary
from plancheck.dicom.store import safe_uid
from plancheck.errors import DicomReadError, UsageError
from plancheck.protocol.loader import Protocol

__all__ = ["BatchOptions", "BatchResult", "run_batch", "current_result"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch.

    Parameters
    ----------
    workers
        Worker processes; 0 runs every job in this process (debugging, tiny batches).
    html
        Also write an HTML report per treatment.
    force
        Check every treatment even if its reports are current.
    dask_address
        Run on this Dask scheduler (e.g. ``tcp://scheduler:8786``) instead of local processes.
    worker_log_level
        Logging level of plancheck inside the workers (their warnings are in the reports).
    limits
        Time and memory limits of one treatment (local workers).
    plans
        ``--plan``: in every treatment only these plans (labels or UIDs) are courses;
        treatments with none of them are not checked.
    """

    workers: int = 1
    html: bool = False
    force: bool = False
    dask_address: str | None = None
    worker_log_level: int = logging.ERROR
    limits: JobLimits = JobLimits()
    plans: tuple[str, ...] = ()

    @property
    def formats(self) -> tuple[str, ...]:
        return ("json", "html") if self.html else ("json",)


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    results
        One per treatment (per combination of alternative plans), in discovery order.
    summary_files
        The CSV (and Parquet) summary tables.
    skipped, skipped_list
        Every file under the root that no plan uses, with the reason (not DICOM,
        unreadable, another SOP class, a duplicate), and ``skipped.csv`` listing them.
    worker_peak_rss_mb
        Peak resident memory of each worker process that ran a job (``host:pid`` → MB).
    """

    results: list[TreatmentResult] = field(default_factory=list)
    summary_files: list[Path] = field(default_factory=list)
    elapsed_s: float = 0.0
    skipped_files: int = 0
    not_selected: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    skipped_list: Path | None = None
    worker_peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def checked(self) -> int:
        """Treatments checked in this run (not resumed, not failed to check)."""
        return sum(1 for r in self.results if not r.skipped and r.error is None)

    @property
    def resumed(self) -> int:
        return sum(1 for r in self.results if r.skipped)

    @property
    def errors(self) -> int:
        """Treatments that could not be checked (an ERROR row with the reason)."""
        return sum(1 for r in self.results if r.error is not None)

    @property
    def rows(self) -> list[dict]:
        return [row for r in self.results for row in r.rows]


def current_result(job: TreatmentJob) -> TreatmentResult | None:
    """The stored result of ``job`` if its reports are current, else None.

    Current means: the marker file exists, is newer than every input file (and the case
    file), was made from the same input files with the same fingerprint (protocol, data
    tables, case file content, plan selection, formats), the treatment was checked (one
    that could not be checked is always tried again), and the report files it lists still exist.
    """
    marker = Path(job.out_dir) / MARKER_NAME
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        marker_ns = marker.stat().st_mtime_ns
        inputs = list(job.files) + ([job.case_file.split("!")[0]] if job.case_file else [])
        newest = max(os.stat(p).st_mtime_ns for p in inputs)
    except (OSError, ValueError):
        return None
    stored = data.get("result") or {}
    if (data.get("fingerprint") != job.fingerprint or sorted(data.get("inputs", [])) != sorted(job.files)
            or data.get("case_file") != job.case_file or marker_ns <= newest
            or not stored.get("status") or stored.get("error") is not None
            or not all(Path(p).exists() for p in stored.get("report_files", []))):
        return None
    return TreatmentResult(
        treatment_id=job.treatment_id, patient_key=job.patient_key,
        plan_labels=tuple(stored.get("plan_labels") or job.plan_labels), status=stored["status"],
        rows=tuple(stored.get("rows", ())), report_files=tuple(stored.get("report_files", ())),
        elapsed_s=0.0, skipped=True, summary=dict(stored.get("summary") or {}),
    )


def run_batch(root: str | os.PathLike[str], reports_dir: str | os.PathLike[str], protocol: Protocol,
              options: BatchOptions = BatchOptions(), *,
              on_start: Callable[[int, int], None] | None = None,
              on_result: Callable[[TreatmentResult], None] | None = None,
              on_job_start: Callable[[TreatmentJob, int], None] | None = None) -> BatchResult:
    """Check every treatment under ``root``; write per-treatment reports and the summary tables.

    Parameters
    ----------
    root
        Folder searched recursively; any layout, any number of patients.
    reports_dir
        Output: ``<patient key>/<treatment id>/`` per treatment, ``summary.csv``, ``summary.parquet``.
    protocol
        The resolved protocol.
    options
        :class:`BatchOptions`.
    on_start
        Called once with (treatments found, treatments to check) before the checks start.
    on_result
        Called with each :class:`TreatmentResult` as it arrives (resumed ones first).
    on_job_start
        Called with ``(job, worker pid)`` as each local worker starts.

    Returns
    -------
    BatchResult

    Raises
    ------
    DicomReadError
        ``root`` does not exist or holds no RT Plan.
    UsageError
        Invalid options; Dask not installed or not reachable.
    """
    start = time.perf_counter()
    root = Path(root)
    reports = Path(reports_dir)
    if not root.exists():
        raise DicomReadError("no such file or directory", root)
    if options.workers < 0:
        raise UsageError(f"--workers {options.workers}: give 0 (in this process) or more")
    discovery = discover_treatments(root, reports, protocol, formats=options.formats, plans=options.plans)
    if not discovery.jobs:
        if discovery.not_selected:
            raise DicomReadError(f"none of the {discovery.not_selected} treatment(s) found has a plan named by "
                                 f"--plan {' '.join(options.plans)}", root)
        raise DicomReadError(f"no RT Plan found among {len(discovery.index.objects)} DICOM object(s) "
                             f"({len(discovery.index.skipped)} other file(s) passed over)", root)
    by_id: dict[tuple[str, str], TreatmentResult] = {}  # (patient key, treatment id): a frame UID two patients may share
    todo: list[TreatmentJob] = []
    resumed: list[TreatmentResult] = []
    for job in discovery.jobs:
        previous = None if options.force else current_result(job)
        if previous is None:
            todo.append(job)
        else:
            resumed.append(previous)
    if on_start:
        on_start(len(discovery.jobs), len(todo))
    outcome = BatchResult(skipped_files=len(discovery.index.skipped), not_selected=discovery.not_selected,
                          skipped=list(discovery.index.skipped))

    def collect(result: TreatmentResult) -> None:
        by_id[(result.patient_key, result.treatment_id)] = result
        if result.peak_rss_mb is not None and result.worker:
            outcome.worker_peak_rss_mb[result.worker] = max(result.peak_rss_mb,
                                                            outcome.worker_peak_rss_mb.get(result.worker, 0.0))
        if result.error is not None:
            log.warning("treatment %s: ERROR: %s", safe_uid(result.treatment_id), result.error)
        if on_result:
            on_result(result)

    for result in resumed:
        collect(result)
    if todo:
        if options.dask_address:
            from plancheck.batch._dask import run_on_dask

            run_on_dask(options.dask_address, todo, protocol, collect)
        elif options.workers == 0:
            for job in todo:
                collect(run_job(job, protocol))
        else:
            run_in_processes(todo, protocol, workers=min(options.workers, len(todo)), limits=options.limits,
                             on_result=collect, log_level=options.worker_log_level, on_job_start=on_job_start)
    outcome.results = [by_id[(j.patient_key, j.treatment_id)] for j in discovery.jobs]
    outcome.summary_files = write_summary(outcome.rows, reports)
    outcome.skipped_list = write_skipped(outcome.skipped, reports)
    outcome.elapsed_s = time.perf_counter() - start
    return outcome
