"""Batch audits: check every plan of an archive in parallel (``plancheck batch``).

* :func:`run_batch` finds the plans under a folder (any layout; files grouped by their
  headers), checks each in a worker process (or on a Dask cluster), writes per-plan reports
  and one summary table (CSV and Parquet, one row per plan and finding), and skips plans
  whose reports are current.
* :func:`run_job` checks one plan and never raises; it is also what the DICOM receiver uses.
"""

from plancheck.batch.discover import Discovery, discover_plans
from plancheck.batch.job import SUMMARY_COLUMNS, PlanJob, PlanResult, check_plan_files, run_job
from plancheck.batch.runner import BatchOptions, BatchResult, current_result, run_batch
from plancheck.batch.summary import write_summary

__all__ = [
    "BatchOptions", "BatchResult", "Discovery", "PlanJob", "PlanResult", "SUMMARY_COLUMNS",
    "check_plan_files", "current_result", "discover_plans", "run_batch", "run_job", "write_summary",
]
