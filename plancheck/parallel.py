"""Work on several structures (or rules) at once, in threads of one process.

The DVH engine's inner loops run in compiled code that releases the GIL
(:mod:`plancheck.kernels`, numba ``nogil``) and numpy releases it in its array
loops, so the DVHs of different structures can be computed in threads: no
pickling, one read-only copy of the dose grids. Results come back in the order
of the inputs and an exception is raised as in a plain loop.

The number of threads is, in this order: the ``threads`` argument, the
``PLANCHECK_THREADS`` environment variable (``1`` turns threading off, e.g. in
the worker processes of ``plancheck batch``, which are parallel already), else
the CPUs this process may use, at most :data:`MAX_DEFAULT_THREADS`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["THREADS_ENV", "MAX_DEFAULT_THREADS", "default_threads", "map_in_threads", "OnceCache"]

THREADS_ENV = "PLANCHECK_THREADS"
"""Environment variable: number of threads for per-structure work (``1``: none)."""

MAX_DEFAULT_THREADS = 4
"""Threads used by default at most (the work per structure is short; more threads mostly wait)."""

T = TypeVar("T")
R = TypeVar("R")


def _available_cpus() -> int:
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
    return max(1, min(_available_cpus(), MAX_DEFAULT_THREADS))


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

    def __len__(self) -> int:
        return len(self._values)
