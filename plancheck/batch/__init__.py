"""Batch audits: check every treatment of an archive in parallel (``plancheck batch``).

* :func:`run_batch` finds the treatments under a folder (any layout; files grouped by their
  headers into patients' treatments: every plan of a patient in one frame of reference),
  checks each in a worker process of its own (or on a Dask cluster), writes per-treatment
  reports and one summary table (CSV and Parquet, one row per treatment and finding, saying
  which plans each treatment contains), and skips treatments whose reports are current.
* :func:`run_job` checks one treatment and never raises, with
  :func:`plancheck.analysis.check_treatment.check_treatment_files`, the check every entry point uses.
"""

from plancheck.batch.discover import Discovery, discover_treatments
from plancheck.batch.job import SUMMARY_COLUMNS, TreatmentJob, TreatmentResult, run_job
from plancheck.batch.runner import BatchOptions, BatchResult, current_result, run_batch
from plancheck.batch.summary import write_summary
from plancheck.analysis.processes import JobLimits

__all__ = [
    "BatchOptions", "BatchResult", "Discovery", "JobLimits", "SUMMARY_COLUMNS", "TreatmentJob", "TreatmentResult",
    "current_result", "discover_treatments", "run_batch", "run_job", "write_summary",
]
