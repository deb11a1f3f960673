"""Running batch jobs on a Dask distributed cluster (the only module importing distributed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from plancheck.batch.job import TreatmentJob, TreatmentResult, error_result, run_job
from plancheck.errors import UsageError
from plancheck.protocol.loader import Protocol

__all__ = ["run_on_dask"]


def run_on_dask(address: str, jobs: Sequence[TreatmentJob], protocol: Protocol,
                on_result: Callable[[TreatmentResult], None]) -> None:
    """Submit every job to the scheduler at ``address`` and call ``on_result`` as each ends.

    The workers must be able to import plancheck and read the input files and the reports
    folder at the same paths (a shared file system).

    Raises
    ------
    UsageError
        distributed is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise UsageError("--dask needs the 'distributed' package: pip install 'plancheck[batch]'") from exc
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc
    try:
        shared = client.scatter(protocol, broadcast=True)
        # a worker runs several jobs at once already: no threads per treatment
        futures = client.map(run_job, list(jobs), protocol=shared, threads=1, pure=False)
        job_of = {f.key: j for f, j in zip(futures, jobs)}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # the worker died or could not run the job
                result = error_result(job_of[future.key], f"Dask worker failed: {type(exc).__name__}: {exc}")
            on_result(result)
    finally:
        client.close()
