"""Work on several structures (or rules) at once, in threads of one process, or (the rules of
one check) in forked processes.

The DVH engine's inner loops run in compiled code that releases the GIL
(:mod:`plancheck.kernels`, numba ``nogil``) and numpy releases it in its array
loops, so the DVHs of different structures can be computed in threads: no
pickling, one read-only copy of the dose grids. Results come back in the order
of the inputs and an exception is raised as in a plain loop.

The number of threads is, in this order: the ``threads`` argument, the
``PLANCHECK_THREADS`` environment variable (``1`` turns threading off, e.g. in
the worker processes of ``plancheck batch``, which are parallel already), else
the CPUs this process may use, at most :data:`MAX_DEFAULT_THREADS`.

Python code between the compiled loops holds the GIL, so threads keep only about 1.3 of
2 cores busy on a check. :func:`map_in_forks` runs independent items of work in processes
forked from this one (Linux): each child starts with this process's memory (the export, its
dose grids, everything computed so far) without copying or pickling it, and sends back only
its results. It is used for the rules of one interactive check (``plancheck check``), not in
the services' worker processes, which run beside other work.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["THREADS_ENV", "MAX_DEFAULT_THREADS", "MAX_CHECK_PROCESSES", "default_threads", "default_processes",
           "available_cpus", "can_fork", "map_in_forks", "map_in_threads", "OnceCache"]

log = logging.getLogger(__name__)

THREADS_ENV = "PLANCHECK_THREADS"
"""Environment variable: number of threads for per-structure work (``1``: none)."""

MAX_DEFAULT_THREADS = 4
"""Threads used by default at most (the work per structure is short; more threads mostly wait)."""

MAX_CHECK_PROCESSES = 2
"""Processes of one check by default at most (each added process repeats the work its rules
share with the others', e.g. a structure's sampling; measured on 2 cores only)."""

T = TypeVar("T")
R = TypeVar("R")


def available_cpus() -> int:
    """The CPUs this process may use (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads to use when the caller does not say (see the module docstring)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass  # a malformed setting must not stop a check: fall back to the default
    return max(1, min(available_cpus(), MAX_DEFAULT_THREADS))


def default_processes() -> int:
    """Processes for the rules of one interactive check: the CPUs this process may use, at
    most :data:`MAX_CHECK_PROCESSES`; 1 with ``PLANCHECK_THREADS=1`` or where
    :func:`can_fork` is False."""
    if default_threads() <= 1 or not can_fork():
        return 1
    return max(1, min(available_cpus(), MAX_CHECK_PROCESSES))


def can_fork() -> bool:
    """Whether :func:`map_in_forks` may fork: on Linux, while this process runs no other
    thread (a thread holding a lock at the fork would leave it held in the child forever)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


_MAX_FORKED_ITEMS = 4096
"""Most items :func:`map_in_forks` queues (4 bytes each: within a pipe's 64 KiB, written at once)."""


def map_in_forks(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    processes: int,
    cost: Callable[[T], float] | None = None,
) -> list[R]:
    """``[func(item) for item in items]``, computed by this process and ``processes - 1``
    children forked from it (see the module docstring), all taking items from one queue, the
    most costly first (``cost``), until none is left: the work balances itself.

    A child sends its results back pickled when the queue is empty. A child that fails in any
    way (``func`` raises, it dies, its results cannot be pickled) is not an error: the items
    it took are computed again here, so an exception is raised as in a plain loop and the
    results are the same, only later. Without :func:`can_fork` (or with one process or item),
    a plain loop. ``func`` must not depend on side effects of other items: a child's side
    effects stay in the child."""
    items = list(items)
    n = min(int(processes), len(items))
    if n <= 1 or len(items) > _MAX_FORKED_ITEMS or not can_fork():
        return [func(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost is not None else range(len(items))
    queue_read, queue_write = os.pipe()
    os.write(queue_write, b"".join(_INDEX.pack(i) for i in order))
    os.close(queue_write)  # an empty queue then reads as end of file
    children: list[tuple[int, int]] = []  # (pid, read end of its results) of children not yet reaped
    try:
        for _ in range(n - 1):
            child = _fork_worker(func, items, queue_read)
            if child is not None:
                children.append(child)
        results = _take_from_queue(func, items, queue_read)
        while children:
            pid, read_end = children.pop(0)
            got = _child_results(pid, read_end)
            if got is None:
                log.debug("a forked process gave no results: the items it took are computed here")
            else:
                results.update(got)
        for i in range(len(items)):
            if i not in results:
                results[i] = func(items[i])
        return [results[i] for i in range(len(items))]
    finally:
        os.close(queue_read)
        for pid, read_end in children:  # left when an exception cut the work short
            os.close(read_end)
            _reap(pid, kill=True)


_INDEX = struct.Struct("<I")


def _take_from_queue(func: Callable[[T], R], items: Sequence[T], queue_read: int) -> dict[int, R]:
    """Take item indices from the queue until it is empty; ``{index: func(item)}``. A read of
    4 bytes from a pipe holding them is atomic: each index goes to one process."""
    results: dict[int, R] = {}
    while len(raw := os.read(queue_read, _INDEX.size)) == _INDEX.size:
        (i,) = _INDEX.unpack(raw)
        results[i] = func(items[i])
    return results


def _fork_worker(func: Callable[[T], R], items: Sequence[T], queue_read: int) -> tuple[int, int] | None:
    """Fork a child that takes items from the queue and pickles its results into a pipe;
    (pid, read end), or None when the fork fails."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the child quietly, the parent reports
            data = pickle.dumps(_take_from_queue(func, items, queue_read), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent computes the items again (and raises there)
            pass
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _child_results(pid: int, read_end: int) -> dict | None:
    """A child's unpickled results, or None when it failed; reaps the child."""
    with os.fdopen(read_end, "rb") as stream:
        data = stream.read()
    if not _reap(pid, kill=False) or not data:
        return None
    try:
        got = pickle.loads(data)
    except Exception:  # noqa: BLE001 - truncated: computed here instead
        return None
    return got if isinstance(got, dict) else None


def _reap(pid: int, *, kill: bool) -> bool:
    """Wait for a child (killing it first with ``kill``); True when it exited with 0."""
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return False
    return os.waitstatus_to_exitcode(status) == 0


def map_in_threads(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    threads: int | None = None,
    cost: Callable[[T], float] | None = None,
) -> list[R]:
    """``[func(item) for item in items]``, computed in up to ``threads`` threads.

    ``cost`` (optional) estimates each item's work: the most expensive items are
    started first, so one large structure does not finish alone at the end.
    """
    items = list(items)
    n = default_threads() if threads is None else max(1, int(threads))
    if n <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    order: Sequence[int] = range(len(items))
    if cost is not None:
        order = sorted(order, key=lambda i: -cost(items[i]))
    results: list = [None] * len(items)
    with ThreadPoolExecutor(max_workers=min(n, len(items)), thread_name_prefix="plancheck") as pool:
        futures = [(i, pool.submit(func, items[i])) for i in order]
        for i, future in sorted(futures, key=lambda pair: pair[0]):
            results[i] = future.result()  # re-raises the item's exception, first item first
    return results


class OnceCache:
    """A cache that computes each key's value once, also when threads ask at the same time:
    the first caller computes, the others wait for its value. A computation that raises
    stores nothing (the next caller tries again)."""

    def __init__(self) -> None:
        self._values: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], R]) -> R:
        try:
            return self._values[key]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._values:
                return self._values[key]
            value = compute()
            self._values[key] = value
            return value

    def peek(self, key: Hashable, default=None):
        """The value if it has been computed, else ``default``."""
        return self._values.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def items_since(self, known: set) -> dict:
        """The values computed since ``known`` (a set of keys, e.g. ``set(cache.keys())``)."""
        return {k: v for k, v in list(self._values.items()) if k not in known}

    def keys(self) -> set:
        """The keys computed so far."""
        return set(self._values)

    def adopt(self, values: Mapping) -> None:
        """Take values computed elsewhere (e.g. in a forked process) for keys not computed here."""
        for key, value in values.items():
            self._values.setdefault(key, value)

    def __len__(self) -> int:
        return len(self._values)
