"""``run_batch``: check every plan under a folder in parallel, with resume and a summary table.

Parallelism is :class:`concurrent.futures.ProcessPoolExecutor` on one machine, or a Dask
distributed cluster (``dask_address``). Jobs are independent (one plan each); the protocol
is sent once to each worker process.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from plancheck.batch.discover import discover_plans
from plancheck.batch.job import MARKER_NAME, PlanJob, PlanResult, error_result, run_job
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
        Also write an HTML report per plan.
    force
        Check every plan even if its reports are current.
    dask_address
        Run on this Dask scheduler (e.g. ``tcp://scheduler:8786``) instead of local processes.
    worker_log_level
        Logging level of plancheck inside the workers (their warnings are in the reports).
    """

    workers: int = 1
    html: bool = False
    force: bool = False
    dask_address: str | None = None
    worker_log_level: int = logging.ERROR

    @property
    def formats(self) -> tuple[str, ...]:
        return ("json", "html") if self.html else ("json",)


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    results
        One per plan, in discovery order.
    summary_files
        The CSV (and Parquet) summary tables.
    skipped, skipped_list
        Every file under the root that no plan uses, with the reason (not DICOM,
        unreadable, another SOP class, a duplicate), and ``skipped.csv`` listing them.
    worker_peak_rss_mb
        Peak resident memory of each worker process that ran a job (``host:pid`` → MB).
    """

    results: list[PlanResult] = field(default_factory=list)
    summary_files: list[Path] = field(default_factory=list)
    elapsed_s: float = 0.0
    skipped_files: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    skipped_list: Path | None = None
    worker_peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def checked(self) -> int:
        """Plans checked in this run (not resumed, not failed to check)."""
        return sum(1 for r in self.results if not r.skipped and r.error is None)

    @property
    def resumed(self) -> int:
        return sum(1 for r in self.results if r.skipped)

    @property
    def errors(self) -> int:
        """Plans that could not be checked (an ERROR row with the reason)."""
        return sum(1 for r in self.results if r.error is not None)

    @property
    def rows(self) -> list[dict]:
        return [row for r in self.results for row in r.rows]


def current_result(job: PlanJob) -> PlanResult | None:
    """The stored result of ``job`` if its reports are current, else None.

    Current means: the marker file exists, is newer than every input file (and the case
    file), was made from the same input files with the same protocol and formats
    (fingerprint), the plan was checked (a plan that could not be checked is always tried
    again), and the report files
    it lists still exist.
    """
    marker = Path(job.out_dir) / MARKER_NAME
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        marker_ns = marker.stat().st_mtime_ns
        inputs = list(job.files) + ([job.case_file] if job.case_file else [])
        newest = max(os.stat(p).st_mtime_ns for p in inputs)
    except (OSError, ValueError):
        return None
    stored = data.get("result") or {}
    if (data.get("fingerprint") != job.fingerprint or sorted(data.get("inputs", [])) != sorted(job.files)
            or data.get("case_file") != job.case_file or marker_ns <= newest
            or not stored.get("status") or stored.get("error") is not None
            or not all(Path(p).exists() for p in stored.get("report_files", []))):
        return None
    return PlanResult(
        plan_uid=job.plan_uid, plan_label=job.plan_label, patient_key=job.patient_key, status=stored["status"],
        rows=tuple(stored.get("rows", ())), report_files=tuple(stored.get("report_files", ())),
        elapsed_s=0.0, skipped=True, summary=dict(stored.get("summary") or {}),
    )


_WORKER_PROTOCOL: Protocol | None = None


def _init_worker(protocol: Protocol, level: int) -> None:
    global _WORKER_PROTOCOL
    _WORKER_PROTOCOL = protocol
    logging.getLogger("plancheck").setLevel(level)


def _run_in_worker(job: PlanJob) -> PlanResult:
    assert _WORKER_PROTOCOL is not None
    return run_job(job, _WORKER_PROTOCOL, threads=1)  # the plans are parallel already: no threads per plan


def run_batch(root: str | os.PathLike[str], reports_dir: str | os.PathLike[str], protocol: Protocol,
              options: BatchOptions = BatchOptions(), *,
              on_start: Callable[[int, int], None] | None = None,
              on_result: Callable[[PlanResult], None] | None = None) -> BatchResult:
    """Check every plan under ``root``; write per-plan reports and the summary tables.

    Parameters
    ----------
    root
        Folder searched recursively; any layout, any number of patients.
    reports_dir
        Output: ``<patient key>/<plan UID>/`` per plan, ``summary.csv``, ``summary.parquet``.
    protocol
        The resolved protocol.
    options
        :class:`BatchOptions`.
    on_start
        Called once with (plans found, plans to check) before the checks start.
    on_result
        Called with each :class:`PlanResult` as it arrives (resumed ones first).

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
    discovery = discover_plans(root, reports, protocol, formats=options.formats)
    if not discovery.jobs:
        raise DicomReadError(f"no RT Plan found among {len(discovery.index.objects)} DICOM object(s) "
                             f"({len(discovery.index.skipped)} other file(s) passed over)", root)
    by_uid: dict[str, PlanResult] = {}
    todo: list[PlanJob] = []
    resumed: list[PlanResult] = []
    for job in discovery.jobs:
        previous = None if options.force else current_result(job)
        if previous is None:
            todo.append(job)
        else:
            resumed.append(previous)
    if on_start:
        on_start(len(discovery.jobs), len(todo))
    outcome = BatchResult(skipped_files=len(discovery.index.skipped), skipped=list(discovery.index.skipped))

    def collect(result: PlanResult) -> None:
        by_uid[result.plan_uid] = result
        if result.peak_rss_mb is not None and result.worker:
            outcome.worker_peak_rss_mb[result.worker] = max(result.peak_rss_mb,
                                                            outcome.worker_peak_rss_mb.get(result.worker, 0.0))
        if result.error is not None:
            log.warning("plan %s: ERROR: %s", safe_uid(result.plan_uid), result.error)
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
            with ProcessPoolExecutor(max_workers=min(options.workers, len(todo)), initializer=_init_worker,
                                     initargs=(protocol, options.worker_log_level)) as pool:
                futures = {pool.submit(_run_in_worker, job): job for job in todo}
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except Exception as exc:  # the worker process died (killed, out of memory)
                        result = error_result(futures[future], f"worker process failed: {type(exc).__name__}: {exc}")
                    collect(result)
    outcome.results = [by_uid[j.plan_uid] for j in discovery.jobs]
    outcome.summary_files = write_summary(outcome.rows, reports)
    outcome.skipped_list = write_skipped(outcome.skipped, reports)
    outcome.elapsed_s = time.perf_counter() - start
    return outcome
