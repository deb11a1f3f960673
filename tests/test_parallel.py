"""Threads for per-structure and per-rule work (:mod:`plancheck.parallel`).

* :func:`~plancheck.parallel.map_in_threads`: results in input order whatever the ``cost``
  order and the number of threads; really concurrent; the first failing item's exception
  (in input order) is raised;
* :func:`~plancheck.parallel.default_threads`: the ``PLANCHECK_THREADS`` setting;
* :class:`~plancheck.parallel.OnceCache`: one computation per key under concurrent callers,
  nothing stored by a computation that raises;
* end to end on the repository's sample export: the DVH tables and the findings of the
  default ``plancheck check`` protocol are identical with one and with two threads (and the
  two-thread runs do run in worker threads).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import plancheck.analysis.dvh_tables as dvh_analysis
import plancheck.rules.runner as runner
from plancheck.dicom import read_export
from plancheck.model.case import find_case_file, load_case
from plancheck.parallel import MAX_DEFAULT_THREADS, THREADS_ENV, OnceCache, default_threads, map_in_threads
from plancheck.protocol.loader import DEFAULT_PROTOCOL

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"

DVH_STRUCTURES = ["Lungs", "PTVp", "Heart", "SpinalCord", "PTV_Met_Lung", "PTV_Met_Vert"]
"""Six structures of the sample, from a whole organ (≈17 000 contour points) to metastases' PTVs."""


@pytest.fixture(autouse=True)
def _no_threads_setting(monkeypatch):
    """Each test starts without PLANCHECK_THREADS (a developer's setting must not leak in)."""
    monkeypatch.delenv(THREADS_ENV, raising=False)


def _unset_default(monkeypatch) -> int:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    return default_threads()


# ------------------------------------------------------------------------------ map_in_threads

COSTS = {
    "none": None,
    "ascending": lambda item: item,
    "descending": lambda item: -item,
    "shuffled": lambda item: (item * 7) % 12,
}


@pytest.mark.parametrize("cost", list(COSTS))
@pytest.mark.parametrize("threads", [1, 2, 4, 50])
def test_map_in_threads_returns_results_in_input_order(threads, cost):
    """Results come in input order for any cost order and thread count, though later items finish first."""
    items = list(range(12))
    finished = []
    lock = threading.Lock()

    def work(item):
        time.sleep(0.002 * (12 - item))  # later items finish earlier
        with lock:
            finished.append(item)
        return (item, item * item)

    results = map_in_threads(work, items, threads=threads, cost=COSTS[cost])
    assert results == [(i, i * i) for i in items]
    assert sorted(finished) == items  # each item computed once
    if threads >= 4 and cost != "descending":
        assert finished != items  # completion order differed from input order: the test bites


def test_map_in_threads_more_threads_than_items_and_trivial_inputs():
    """More threads than items, one item and no items give the plain loop's results."""
    assert map_in_threads(lambda x: x + 1, [5, 1, 3], threads=16, cost=lambda x: x) == [6, 2, 4]
    assert map_in_threads(lambda x: -x, iter([2, 7]), threads=8) == [-2, -7]  # any iterable
    assert map_in_threads(lambda x: x * 2, [21], threads=4) == [42]
    assert map_in_threads(lambda x: x, [], threads=4) == []


@pytest.mark.parametrize("threads", [2, 4])
def test_map_in_threads_starts_the_most_expensive_items_first(threads):
    """With a ``cost``, the ``threads`` most expensive items are the first ones started."""
    items = [3, 9, 1, 7, 5, 8, 2, 6]
    started = []
    lock = threading.Lock()

    def work(item):
        with lock:
            started.append(item)
        time.sleep(0.2)  # no worker takes a second item before every worker has its first (even on a busy machine)
        return item

    assert map_in_threads(work, items, threads=threads, cost=lambda item: item) == items
    assert set(started[:threads]) == set(sorted(items, reverse=True)[:threads])


@pytest.mark.parametrize("threads", [2, 4])
def test_map_in_threads_runs_items_concurrently(threads):
    """``threads`` items run at the same time in worker threads (a barrier of that many parties is passed)."""
    barrier = threading.Barrier(threads, timeout=10)
    names = set()

    def work(item):
        barrier.wait()
        names.add(threading.current_thread().name)
        return item

    assert map_in_threads(work, range(threads), threads=threads) == list(range(threads))
    assert len(names) == threads and threading.main_thread().name not in names


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_map_in_threads_reraises_the_first_failing_item(threads):
    """The exception of the first failing item in input order is raised, even when a later item fails sooner."""
    def work(item):
        if item == 3:
            time.sleep(0.05)
            raise ValueError("item 3")
        if item == 7:
            raise KeyError("item 7")
        return item

    with pytest.raises(ValueError, match="item 3"):
        map_in_threads(work, range(10), threads=threads, cost=lambda item: item)  # 7 starts before 3
    with pytest.raises(KeyError, match="item 7"):
        map_in_threads(work, [0, 7, 1], threads=threads)


def test_map_in_threads_without_threads_follows_the_environment(monkeypatch):
    """``threads=None`` uses PLANCHECK_THREADS: 1 runs in the calling thread, 3 in three workers."""
    where = []
    monkeypatch.setenv(THREADS_ENV, "1")
    map_in_threads(lambda item: where.append(threading.current_thread().name), range(6))
    assert set(where) == {threading.current_thread().name}
    monkeypatch.setenv(THREADS_ENV, "3")
    barrier = threading.Barrier(3, timeout=10)
    names = set()

    def work(item):
        barrier.wait()
        names.add(threading.current_thread().name)

    map_in_threads(work, range(3))
    assert len(names) == 3 and threading.current_thread().name not in names


# ------------------------------------------------------------------------------ default_threads

def test_default_threads_without_setting_is_bounded():
    """Without PLANCHECK_THREADS the default is between 1 and MAX_DEFAULT_THREADS."""
    assert 1 <= default_threads() <= MAX_DEFAULT_THREADS


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), (" 2 ", 2), ("12", 12), ("0", 1)])
def test_default_threads_honours_the_environment(monkeypatch, value, expected):
    """PLANCHECK_THREADS sets the number of threads (also above the default cap; at least 1)."""
    monkeypatch.setenv(THREADS_ENV, value)
    assert default_threads() == expected


@pytest.mark.parametrize("value", ["x", "7.5", "", "  ", "3 threads"])
def test_default_threads_malformed_setting_falls_back(monkeypatch, value):
    """A malformed or empty PLANCHECK_THREADS gives the default (no error)."""
    default = _unset_default(monkeypatch)
    monkeypatch.setenv(THREADS_ENV, value)
    assert default_threads() == default
    assert 1 <= default <= MAX_DEFAULT_THREADS


# ------------------------------------------------------------------------------ OnceCache

def test_once_cache_computes_once_under_concurrent_callers():
    """Eight threads asking at once for two keys get one computation per key and the same value per key."""
    cache = OnceCache()
    calls = {"a": 0, "b": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(8, timeout=10)

    def compute(key):
        def run():
            with lock:
                calls[key] += 1
            time.sleep(0.1)  # the other callers arrive while this one computes
            return object()
        return run

    results = [None] * 8

    def caller(i):
        key = "a" if i < 6 else "b"
        barrier.wait()
        results[i] = cache.get(key, compute(key))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert calls == {"a": 1, "b": 1}
    assert all(r is results[0] for r in results[:6]) and all(r is results[6] for r in results[6:])
    assert results[0] is not results[6]
    assert len(cache) == 2 and cache.peek("a") is results[0]


def test_once_cache_failed_compute_stores_nothing():
    """A computation that raises stores nothing: the next call computes again and stores."""
    cache = OnceCache()
    calls = []

    def failing():
        calls.append("fail")
        raise RuntimeError("no dose")

    with pytest.raises(RuntimeError, match="no dose"):
        cache.get("k", failing)
    assert "k" not in cache and len(cache) == 0 and cache.peek("k", "absent") == "absent"
    assert cache.get("k", lambda: calls.append("ok") or 42) == 42
    assert calls == ["fail", "ok"]
    assert cache.get("k", failing) == 42  # stored now: not recomputed
    assert calls == ["fail", "ok"]


def test_once_cache_peek_contains_len():
    """peek gives the stored value or the default; ``in`` and len count stored keys (a stored None too)."""
    cache = OnceCache()
    assert cache.peek(("roi", 1)) is None and cache.peek(("roi", 1), -1) == -1
    assert ("roi", 1) not in cache and len(cache) == 0
    assert cache.get(("roi", 1), lambda: [1, 2]) == [1, 2]
    assert cache.peek(("roi", 1)) == [1, 2] and ("roi", 1) in cache and len(cache) == 1
    assert ("roi", 2) not in cache and cache.peek(("roi", 2), "d") == "d"
    calls = []
    assert cache.get("none", lambda: calls.append(1)) is None
    assert cache.get("none", lambda: calls.append(1)) is None
    assert calls == [1] and "none" in cache and len(cache) == 2
    assert cache.peek("none", "default") is None


# ------------------------------------------------------------------------------ end to end on the sample

def _spy_threads(monkeypatch, module, name: str) -> set[str]:
    """Record the names of the threads that call ``module.name``."""
    real = getattr(module, name)
    seen: set[str] = set()

    def spy(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def _same_number(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _dvh_run(monkeypatch, threads: str):
    """DVH tables of the six structures (a freshly read export) with PLANCHECK_THREADS set,
    and the threads that computed the DVHs."""
    monkeypatch.setenv(THREADS_ENV, threads)
    seen = _spy_threads(monkeypatch, dvh_analysis, "course_dvh")
    export = read_export(SAMPLE)
    names = {roi.name for roi in export.courses[0].structure_set.rois}
    assert set(DVH_STRUCTURES) <= names
    tables = dvh_analysis.dvh_tables(export, structures=DVH_STRUCTURES)
    monkeypatch.undo()
    return tables, seen


def test_dvh_tables_identical_with_one_and_two_threads(monkeypatch):
    """dvh_tables of the sample gives bit-identical metrics and DVHs with PLANCHECK_THREADS=1 and =2."""
    one, seen_one = _dvh_run(monkeypatch, "1")
    two, seen_two = _dvh_run(monkeypatch, "2")
    # the settings took effect: one run in the calling thread, the other in two workers
    assert seen_one == {threading.current_thread().name}
    assert len(seen_two) == 2 and threading.current_thread().name not in seen_two
    assert [t.label for t in one] == [t.label for t in two] and len(one) == 3
    n_values = 0
    for a, b in zip(one, two):
        assert [s.roi.name for s in a.structures] == [s.roi.name for s in b.structures]
        assert {s.roi.name for s in a.structures} == set(DVH_STRUCTURES)
        for sa, sb in zip(a.structures, b.structures):
            assert [m.metric for m in sa.metrics] == [m.metric for m in sb.metrics]
            for ma, mb in zip(sa.metrics, sb.metrics):
                for name in ("value", "lower", "upper", "unit", "reason"):
                    where = (a.label, sa.roi.name, ma.metric, name)
                    assert _same_number(getattr(ma, name), getattr(mb, name)), where
                n_values += ma.value is not None
            np.testing.assert_array_equal(sa.dvh.differential_cc, sb.dvh.differential_cc)
            assert (sa.dvh.min_gy, sa.dvh.max_gy, sa.dvh.mean_gy, sa.dvh.volume_cc) == \
                   (sb.dvh.min_gy, sb.dvh.max_gy, sb.dvh.mean_gy, sb.dvh.volume_cc)
    assert n_values > 50  # the comparison is about real numbers


def _check_run(monkeypatch, threads: str):
    """The default ``plancheck check`` on the sample (protocol_for_check(DEFAULT_PROTOCOL), the
    case file next to the export), a freshly read export, PLANCHECK_THREADS set."""
    monkeypatch.setenv(THREADS_ENV, threads)
    real_map = runner.map_in_threads
    seen: set[str] = set()

    def spy_map(func, items, **kwargs):
        def traced(item):
            seen.add(threading.current_thread().name)
            return func(item)
        return real_map(traced, items, **kwargs)

    monkeypatch.setattr(runner, "map_in_threads", spy_map)
    protocol = runner.protocol_for_check(DEFAULT_PROTOCOL)
    case_path = find_case_file(SAMPLE)
    assert case_path is not None
    report = runner.run_check(read_export(SAMPLE), protocol, case=load_case(case_path), case_source=str(case_path))
    monkeypatch.undo()
    return report, seen


def test_run_check_findings_identical_with_one_and_two_threads(monkeypatch):
    """The default check of the sample gives the same findings, in the same order, with 1 and 2 threads."""
    one, seen_one = _check_run(monkeypatch, "1")
    two, seen_two = _check_run(monkeypatch, "2")
    # the settings took effect: rules evaluated in the calling thread, then in two workers
    assert seen_one == {threading.current_thread().name}
    assert len(seen_two) == 2 and threading.current_thread().name not in seen_two

    def key(f):
        return (f.rule_id, f.status, f.measured, f.unit, f.message, f.structures, f.courses)

    a = [key(f) for f in one.findings]
    b = [key(f) for f in two.findings]
    assert len(a) == len(b) > 50
    for fa, fb in zip(a, b):
        assert fa[:2] == fb[:2] and _same_number(fa[2], fb[2]) and fa[3:] == fb[3:], (fa, fb)
    assert [f.rule_id for f in one.findings] == [f.rule_id for f in two.findings]
    assert one.not_applicable == two.not_applicable
    assert one.summary == two.summary
    assert sum(f.measured is not None for f in one.findings) > 30
    # the findings follow the protocol's rule order
    order = {r.rule.id: i for i, r in enumerate(one.protocol.rules)}
    ranks = [order[f.rule_id] for f in two.findings if f.rule_id in order]
    assert ranks == sorted(ranks) and len(ranks) > 0.9 * len(b)
