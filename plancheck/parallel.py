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
its results (through shared memory: :mod:`plancheck.fork_transfer`), and what it logged, which
is logged here. :class:`ForkedCall` runs one computation in a forked process while this one goes
on (``plancheck check`` reads the export while the protocol loads). Both are used by one
interactive check only, not in the services' worker processes, which run beside other work.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from plancheck.fork_transfer import NoResult, ResultChannel

__all__ = ["THREADS_ENV", "MAX_DEFAULT_THREADS", "MAX_CHECK_PROCESSES", "default_threads", "default_processes",
           "available_cpus", "can_fork", "ForkedCall", "map_in_forks", "map_in_threads", "OnceCache"]

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
    children: list[tuple[int, ResultChannel]] = []  # (pid, its results) of children not yet reaped
    try:
        for _ in range(n - 1):
            child = _fork_worker(func, items, queue_read)
            if child is not None:
                children.append(child)
        results = _take_from_queue(func, items, queue_read)
        while children:
            pid, channel = children.pop(0)
            ok, got, records = _child_result(pid, channel)
            if ok and isinstance(got, dict):
                _log_again(records)
                results.update(got)
            else:
                log.debug("a forked process gave no results: the items it took are computed here")
        for i in range(len(items)):
            if i not in results:
                results[i] = func(items[i])
        return [results[i] for i in range(len(items))]
    finally:
        os.close(queue_read)
        for pid, channel in children:  # left when an exception cut the work short
            channel.close()
            _reap(pid, kill=True)


class ForkedCall(Generic[R]):
    """``compute()`` started in a child forked now, while this process does other work; its
    value is collected with :meth:`result`. Used to read an export while the protocol and case
    file load (``plancheck check``).

    A child that fails in any way (``compute`` raises, the child dies, the value cannot be
    pickled) is not an error: :meth:`result` then computes the value here, so an exception is
    raised here as in a plain call, with its own message. Without :func:`can_fork` (or with
    ``enabled`` False) nothing is forked and :meth:`result` is the plain call. Leaving the
    ``with`` block (or :meth:`cancel`) ends a child whose value was not collected.
    ``compute`` must not have side effects this process relies on: they stay in the child.
    """

    def __init__(self, compute: Callable[[], R], *, enabled: bool = True) -> None:
        self._compute = compute
        self._child = _fork(compute) if enabled and can_fork() else None

    @property
    def forked(self) -> bool:
        """Whether a child computes the value (not yet collected)."""
        return self._child is not None

    def result(self, fallback: Callable[[], R] | None = None, accept: Callable[[R], bool] | None = None) -> R:
        """The value: the child's (when ``accept`` of it is True, if given), else ``fallback()``
        (default: the computation) here. What the child logged is logged here only when its
        value is taken."""
        if self._child is not None:
            (pid, channel), self._child = self._child, None
            ok, value, records = _child_result(pid, channel)
            if ok and (accept is None or accept(value)):  # type: ignore[arg-type]
                _log_again(records)
                return value  # type: ignore[return-value]
            log.debug("the forked computation gave no value that can be used: it is computed here")
        return (fallback or self._compute)()

    def cancel(self) -> None:
        """End the child (if any) without collecting its value."""
        if self._child is not None:
            (pid, channel), self._child = self._child, None
            channel.close()
            _reap(pid, kill=True)

    def __enter__(self) -> ForkedCall[R]:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()


_INDEX = struct.Struct("<I")


def _take_from_queue(func: Callable[[T], R], items: Sequence[T], queue_read: int) -> dict[int, R]:
    """Take item indices from the queue until it is empty; ``{index: func(item)}``. A read of
    4 bytes from a pipe holding them is atomic: each index goes to one process."""
    results: dict[int, R] = {}
    while len(raw := os.read(queue_read, _INDEX.size)) == _INDEX.size:
        (i,) = _INDEX.unpack(raw)
        results[i] = func(items[i])
    return results


def _fork_worker(func: Callable[[T], R], items: Sequence[T], queue_read: int) -> tuple[int, ResultChannel] | None:
    """Fork a child that takes items from the queue and sends its results back
    (:class:`plancheck.fork_transfer.ResultChannel`); (pid, channel), or None when the fork fails."""
    return _fork(lambda: _take_from_queue(func, items, queue_read))


def _fork(compute: Callable[[], R]) -> tuple[int, ResultChannel] | None:
    """Fork a child that sends ``compute()`` back and exits; (pid, channel), or None when
    the fork fails. The child never returns into the caller's code: it leaves with
    ``os._exit`` (no exit handlers, no second flush of this process's output buffers). What
    it logs is sent back with the value and logged here when the value is taken
    (:func:`_log_again`), so that a value computed again here is not logged twice."""
    channel = ResultChannel()
    try:
        pid = os.fork()
    except OSError:
        channel.close()
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the child quietly, the parent reports
            records = _keep_log_records()
            value = compute()
            channel.send((value, records))
            code = 0
        except BaseException:  # noqa: BLE001 - the parent computes it again (and raises there)
            pass
        finally:
            os._exit(code)
    channel.parent_side()
    return pid, channel


def _keep_log_records() -> list[logging.LogRecord]:
    """In a forked child: from now on, every log record its handlers would emit is kept in the
    returned list instead (message formatted, traceback as text: picklable)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if records and records[-1] is record:  # one record reaching two loggers' handlers
                return
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            records.append(record)

    keep = Keep()
    loggers = [logging.getLogger(), *(x for x in logging.Logger.manager.loggerDict.values()
                                      if isinstance(x, logging.Logger))]
    for logger in loggers:
        if logger.handlers:
            logger.handlers = [keep]
    if not logging.getLogger().handlers:
        logging.getLogger().handlers = [keep]  # instead of logging's last-resort handler
    return records


def _child_result(pid: int, channel: ResultChannel) -> tuple[bool, object, list[logging.LogRecord]]:
    """(True, the child's value, the records it logged), or (False, None, []) when it failed;
    reaps the child."""
    try:
        value, records = channel.receive()
    except (NoResult, TypeError, ValueError):
        _reap(pid, kill=False)
        return False, None, []
    if not _reap(pid, kill=False):
        return False, None, []
    return True, value, records


def _log_again(records: list[logging.LogRecord]) -> None:
    """Log here what a child logged (its value is taken)."""
    for record in records:
        logging.getLogger(record.name).handle(record)


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
