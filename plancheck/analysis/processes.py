"""A function run in a worker process of its own, with time and memory limits.

Long-running services (the receiver, the watched folder) run each check this way
(:func:`call_in_process`), and ``plancheck batch`` runs every treatment this way
(:func:`plancheck.batch.workers.run_in_processes`), so that one pathological treatment cannot
take others, or the service, down with it:

* a worker that dies (killed by the out-of-memory killer, a crash in a compiled library)
  fails only *its* call, with the signal or exit code;
* a call that runs longer than ``time_limit_s`` or whose worker holds more than
  ``memory_limit_mb`` of its own memory is stopped (SIGKILL), saying which limit;
* killing the parent does not leave workers behind: each worker asks the kernel to kill it
  when its parent dies (Linux ``PR_SET_PDEATHSIG``) and also watches its parent itself
  (every second, everywhere).

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
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from plancheck.errors import WorkerFailed

__all__ = ["JobLimits", "WorkerFailed", "call_in_process", "die_with_parent", "private_memory_mb", "signal_name",
           "worker_context", "POLL_S", "WARM_MODULE"]

POLL_S = 0.1
"""How often (s) a parent looks at its workers."""

WARM_MODULE = "plancheck.analysis._warm"
"""What the forkserver of the services (receiver, watched folder) imports once."""


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


def die_with_parent() -> None:
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


_CONTEXT: multiprocessing.context.BaseContext | None = None


def worker_context(preload: Sequence[str] = (WARM_MODULE,)) -> multiprocessing.context.BaseContext:
    """The forkserver context, its server preloading ``preload`` (modules that import plancheck
    and warm its kernels), else spawn. Made once per process: the first caller's ``preload`` counts."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(preload))
        else:
            ctx = multiprocessing.get_context("spawn")
        _CONTEXT = ctx
    return _CONTEXT


def signal_name(code: int | None) -> str:
    """How a worker's end reads: ``exit code N``, or ``killed by SIGKILL (e.g. by the out-of-memory killer)``."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (e.g. by the out-of-memory killer)" if -code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


def _call_main(func: Callable[..., object], args: tuple, conn: Connection, level: int) -> None:
    die_with_parent()
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
    ctx = worker_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call_main, name="plancheck-check", args=(func, args, sender, log_level),
                          daemon=True)
    process.start()
    sender.close()
    started = time.monotonic()
    has_proc = Path("/proc/self/smaps_rollup").exists()
    try:
        while True:
            wait([receiver, process.sentinel], timeout=POLL_S)
            if receiver.poll():
                try:
                    kind, value = receiver.recv()
                except (EOFError, OSError):
                    process.join(timeout=5)
                    raise WorkerFailed(f"the check's process died ({signal_name(process.exitcode)})") from None
                if kind == "raised":
                    raise value
                return value
            if not process.is_alive():
                process.join(timeout=5)
                raise WorkerFailed(f"the check's process died ({signal_name(process.exitcode)})")
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
