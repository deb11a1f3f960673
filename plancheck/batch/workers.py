"""Running batch jobs in worker processes, one process per treatment, with time and memory limits.

Each treatment is checked in a process of its own (the machinery of
:mod:`plancheck.analysis.processes`), at most ``workers`` at a time: a worker that dies makes
only *its* treatment ERROR, with the signal or exit code, and the others go on; a treatment
that runs longer than ``time_limit_s`` or whose worker holds more than ``memory_limit_mb`` of
its own memory is stopped (SIGKILL) and is ERROR, saying which limit; the batch kills its
workers when it stops on an exception or a signal it can handle (SIGINT, SIGTERM).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from plancheck.analysis.processes import POLL_S, JobLimits, die_with_parent, private_memory_mb, signal_name, worker_context
from plancheck.batch.job import TreatmentJob, TreatmentResult, error_result
from plancheck.protocol.loader import Protocol

__all__ = ["run_in_processes"]

log = logging.getLogger(__name__)

WARM_MODULE = "plancheck.batch._warm"
"""What the batch's forkserver imports once: the check path a worker runs, kernels warm."""


def _worker_main(job: TreatmentJob, protocol: Protocol, conn: Connection, level: int,
                 address_space_mb: float | None, run: Callable[[TreatmentJob, Protocol, int], TreatmentResult]) -> None:
    """Body of a worker process: check one treatment and send the result back."""
    die_with_parent()
    if address_space_mb:
        limit = int(address_space_mb * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.getLogger("plancheck").setLevel(level)
    result = run(job, protocol, 1)  # treatments run in parallel already: one thread each
    conn.send(result)
    conn.close()


def _run_job(job: TreatmentJob, protocol: Protocol, threads: int) -> TreatmentResult:
    from plancheck.batch.job import run_job

    return run_job(job, protocol, threads=threads)


@dataclass
class _Running:
    job: TreatmentJob
    process: multiprocessing.process.BaseProcess
    conn: Connection
    started: float
    peak_mb: float = 0.0


def _died(item: _Running) -> str:
    return (f"the worker process died ({signal_name(item.process.exitcode)}) while checking this treatment; "
            "the other treatments were checked")


def run_in_processes(jobs: Sequence[TreatmentJob], protocol: Protocol, *, workers: int, limits: JobLimits,
                     on_result: Callable[[TreatmentResult], None], log_level: int = logging.ERROR,
                     on_job_start: Callable[[TreatmentJob, int], None] | None = None,
                     run: Callable[[TreatmentJob, Protocol, int], TreatmentResult] = _run_job) -> None:
    """Check every job in its own worker process, at most ``workers`` at a time.

    Parameters
    ----------
    jobs
        The treatments to check.
    protocol
        The resolved protocol (sent to each worker).
    workers
        Processes at a time (≥ 1).
    limits
        Time and memory limits of one treatment.
    on_result
        Called in this process with each result as it arrives (ERROR results for workers
        that died or exceeded a limit).
    on_job_start
        Called with ``(job, worker pid)`` when a worker starts (progress displays, tests).
    run
        The function a worker runs (module-level, picklable); :func:`plancheck.batch.job.run_job`.
    """
    ctx = worker_context((WARM_MODULE,))
    pending = deque(jobs)
    running: list[_Running] = []
    has_proc = Path("/proc/self/smaps_rollup").exists()
    address_space = None if has_proc else limits.memory_limit_mb

    def finish(item: _Running, result: TreatmentResult) -> None:
        running.remove(item)
        item.process.join(timeout=5)
        item.conn.close()
        on_result(result)

    def fail(item: _Running, reason: str) -> None:
        worker = f"{os.uname().nodename}:{item.process.pid}"
        finish(item, error_result(item.job, reason, elapsed_s=time.monotonic() - item.started, worker=worker,
                                  peak_mb=item.peak_mb or None))

    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                job = pending.popleft()
                receiver, sender = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_worker_main, name="plancheck-batch-worker",
                                      args=(job, protocol, sender, log_level, address_space, run), daemon=True)
                process.start()
                sender.close()
                running.append(_Running(job, process, receiver, time.monotonic()))
                if on_job_start is not None:
                    on_job_start(job, process.pid or 0)
            wait([r.conn for r in running] + [r.process.sentinel for r in running], timeout=POLL_S)
            now = time.monotonic()
            for item in list(running):
                if item.conn.poll():
                    try:
                        result = item.conn.recv()
                    except (EOFError, OSError):  # died while sending, or before
                        item.process.join(timeout=5)
                        fail(item, _died(item))
                    else:
                        finish(item, result)
                    continue
                if not item.process.is_alive():
                    item.process.join(timeout=5)
                    fail(item, _died(item))
                    continue
                if limits.time_limit_s is not None and now - item.started > limits.time_limit_s:
                    item.process.kill()
                    item.process.join(timeout=5)
                    fail(item, f"stopped: it took longer than the time limit of {limits.time_limit_s:g} s "
                               "per treatment (--time-limit)")
                    continue
                if limits.memory_limit_mb is not None and has_proc:
                    used = private_memory_mb(item.process.pid or 0)
                    if used is not None:
                        item.peak_mb = max(item.peak_mb, used)
                        if used > limits.memory_limit_mb:
                            item.process.kill()
                            item.process.join(timeout=5)
                            fail(item, f"stopped: its worker held {used:.0f} MB, more than the memory limit of "
                                       f"{limits.memory_limit_mb:g} MB per treatment (--memory-limit)")
    finally:
        for item in running:  # an exception or a signal in this process: leave no worker behind
            if item.process.is_alive():
                item.process.kill()
            item.process.join(timeout=5)
            item.conn.close()


