"""Running batch jobs in worker processes, one process per treatment, with time and memory limits.

Each treatment is checked in a process of its own, at most ``workers`` at a time, so that
one pathological treatment cannot take others down with it:

* a worker that dies (killed by the out-of-memory killer, a crash in a compiled library)
  makes only *its* treatment ERROR, with the signal or exit code; the others go on;
* a treatment that runs longer than ``time_limit_s`` or whose worker holds more than
  ``memory_limit_mb`` of its own memory is stopped (SIGKILL) and is ERROR, saying which limit;
* killing the batch does not leave workers behind: each worker asks the kernel to kill it
  when its parent dies (Linux ``PR_SET_PDEATHSIG``) and also watches its parent itself
  (every second, everywhere), and the batch kills its workers when it stops on an exception
  or a signal it can handle (SIGINT, SIGTERM).

Processes are started from a *forkserver* (a clean single-threaded server process that has
imported plancheck and loaded the compiled kernels once; ``spawn`` where fork is not
available), so a worker starts in milliseconds with everything warm and shares the
server's memory pages copy-on-write. A worker's own memory is its private resident memory
(``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``; pages it shares with the
server are not counted); where ``/proc`` is missing the limit is set as the worker's
address-space limit instead (``RLIMIT_AS``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from plancheck.batch.job import TreatmentJob, TreatmentResult, error_result
from plancheck.protocol.loader import Protocol

__all__ = ["JobLimits", "run_in_processes", "private_memory_mb", "call_in_process", "WorkerFailed"]

log = logging.getLogger(__name__)

_POLL_S = 0.1


@dataclass(frozen=True)
class JobLimits:
    """Limits of one treatment's check.

    Parameters
    ----------
    time_limit_s
        Wall-clock seconds one treatment may take (None: no limit).
    memory_limit_mb
        Private memory one worker may hold, MB (None: no limit).
    """

    time_limit_s: float | None = 600.0
    memory_limit_mb: float | None = 4096.0


def private_memory_mb(pid: int) -> float | None:
    """Private resident memory of a process, MB (Linux ``/proc/PID/smaps_rollup``), or None."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kib = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            kib += int(line.split()[1])
    return kib / 1024.0


def _die_with_parent() -> None:
    """Make this worker die when its parent does (Linux prctl; plus a watcher thread)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="plancheck-parent-watch", daemon=True).start()


def _worker_main(job: TreatmentJob, protocol: Protocol, conn: Connection, level: int,
                 address_space_mb: float | None, run: Callable[[TreatmentJob, Protocol, int], TreatmentResult]) -> None:
    """Body of a worker process: check one treatment and send the result back."""
    _die_with_parent()
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


_CONTEXT: multiprocessing.context.BaseContext | None = None


def _context() -> multiprocessing.context.BaseContext:
    """The forkserver context (preloading plancheck and warming its kernels), else spawn."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["plancheck.batch._warm"])
        else:
            ctx = multiprocessing.get_context("spawn")
        _CONTEXT = ctx
    return _CONTEXT


@dataclass
class _Running:
    job: TreatmentJob
    process: multiprocessing.process.BaseProcess
    conn: Connection
    started: float
    peak_mb: float = 0.0


def _signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (e.g. by the out-of-memory killer)" if -code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


def _died(item: _Running) -> str:
    return (f"the worker process died ({_signal_name(item.process.exitcode)}) while checking this treatment; "
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
    ctx = _context()
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
            wait([r.conn for r in running] + [r.process.sentinel for r in running], timeout=_POLL_S)
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


class WorkerFailed(Exception):
    """A function run by :func:`call_in_process` did not return: its process died or was
    stopped at a limit (the message says which)."""


def _call_main(func: Callable[..., object], args: tuple, conn: Connection, level: int) -> None:
    _die_with_parent()
    logging.getLogger("plancheck").setLevel(level)
    try:
        value = ("ok", func(*args))
    except BaseException as exc:  # sent back and raised again in the caller
        value = ("raised", exc)
    try:
        conn.send(value)
    except Exception as exc:  # an unpicklable value or exception
        conn.send(("raised", WorkerFailed(f"the result could not be sent back: {type(exc).__name__}: {exc}")))
    conn.close()


def call_in_process(func: Callable[..., object], args: tuple, *, limits: JobLimits = JobLimits(),
                    log_level: int = logging.WARNING) -> object:
    """``func(*args)`` in a worker process of its own (warm, from the forkserver), within
    ``limits``; its return value, or the exception it raised, comes back here.

    Used by long-running services (the receiver, the watched folder) so that a check runs
    beside the network threads without sharing their interpreter lock, and a crash or a
    runaway check cannot take the service down.

    Raises
    ------
    WorkerFailed
        The process died (a signal, the out-of-memory killer) or exceeded a limit.
    Exception
        Whatever ``func`` raised.
    """
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call_main, name="plancheck-check", args=(func, args, sender, log_level),
                          daemon=True)
    process.start()
    sender.close()
    started = time.monotonic()
    has_proc = Path("/proc/self/smaps_rollup").exists()
    try:
        while True:
            wait([receiver, process.sentinel], timeout=_POLL_S)
            if receiver.poll():
                try:
                    kind, value = receiver.recv()
                except (EOFError, OSError):
                    process.join(timeout=5)
                    raise WorkerFailed(f"the check's process died ({_signal_name(process.exitcode)})") from None
                if kind == "raised":
                    raise value
                return value
            if not process.is_alive():
                process.join(timeout=5)
                raise WorkerFailed(f"the check's process died ({_signal_name(process.exitcode)})")
            if limits.time_limit_s is not None and time.monotonic() - started > limits.time_limit_s:
                raise WorkerFailed(f"stopped: the check took longer than {limits.time_limit_s:g} s")
            if limits.memory_limit_mb is not None and has_proc:
                used = private_memory_mb(process.pid or 0)
                if used is not None and used > limits.memory_limit_mb:
                    raise WorkerFailed(f"stopped: the check held {used:.0f} MB, more than {limits.memory_limit_mb:g} MB")
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
        receiver.close()
