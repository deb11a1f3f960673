"""Throughput and memory of ``plancheck batch`` with 1 and 2 worker processes.

Usage::

    python benchmarks/batch.py [--cases 50] [--workers 1 2] [--protocol ID_OR_FILE] [--ct] [--json OUT]

Generates ``--cases`` varied synthetic patients into ``benchmarks/_work/batch/cases/`` (once;
reused while the specs are unchanged), each an export of three plans (two for every seventh
case) with its structure set and PLAN doses. The cases vary the generator's seed (geometry
and dose jitter), the jitter amplitude (0.25 to 1.5: organ and target positions, target sizes
±15 %, body ±5 %, dose normalisation ±2 %), the dose grid spacing (3-4 mm conventional, 2-3 mm
SBRT) and the ``violations`` variant (every fifth case). The geometry is the generator's
sample case (18 ROIs, dose grids at 2-4 mm) with contours on 6 mm planes instead of 3 mm
(generation time is dominated by contouring); ``--ct`` also writes the 128 × 128 CT series
(it only adds header reading at discovery).

For each worker count the whole batch runs with ``--force`` into its own reports folder
(``benchmarks/_work/batch/reports-<N>w``), JSON reports only, the default protocol (the
built-in ``esophagus-oligomet-2025`` with ``plan-integrity``: 81 rules). Reported:

* plans per minute (each patient's treatment is one job checking all its plans together),
  wall clock from discovery to the summary table written (what a user
  waits for), and the same without discovery;
* peak resident memory of every worker process (``ru_maxrss`` read by the worker after each
  plan; forked workers count the pages they share with the parent), and
  ``getrusage(RUSAGE_CHILDREN)`` as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test kit (testkit/, not installed) generates the cases
WORK = REPO / "benchmarks" / "_work" / "batch"


def _spec_kwargs(i: int, ct: bool) -> dict:
    return {
        "seed": 1000 + i,
        "jitter": 0.25 + 0.25 * (i % 6),
        "violations": i % 5 == 0,
        "omit_courses": ("C3_VertMet",) if i % 7 == 3 else (),
        "include_ct": ct,
        "ct_slice_mm": 6.0,  # contour plane spacing: halves generation time, the dose grids stay at sample size
        "dose_spacing_conventional_mm": 3.0 if i % 2 == 0 else 4.0,
        "dose_spacing_sbrt_mm": 2.0 if i % 3 else 3.0,
        "patient_id": f"BENCH-{i:03d}",
        "patient_name": f"BENCH^CASE{i:03d}",
    }


def _generate(args: tuple[int, dict, str]) -> int:
    from testkit.write import write_case
    from testkit.synthetic import CaseSpec, build_case

    i, kwargs, out = args
    write_case(build_case(CaseSpec(**kwargs)), Path(out), name=f"case{i:03d}")
    return i


def generate(n: int, ct: bool, jobs: int) -> Path:
    cases = WORK / "cases"
    manifest = WORK / "cases.json"
    wanted = [_spec_kwargs(i, ct) for i in range(n)]
    if manifest.exists() and json.loads(manifest.read_text()) == json.loads(json.dumps(wanted)) and cases.exists():
        print(f"reusing {n} cases in {cases}", file=sys.stderr)
        return cases
    shutil.rmtree(cases, ignore_errors=True)
    start = time.perf_counter()
    work = [(i, kw, str(cases / f"patient{i:03d}")) for i, kw in enumerate(wanted)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for done, _ in enumerate(pool.map(_generate, work), 1):
            print(f"\rgenerated {done}/{n} cases", end="", file=sys.stderr)
    print(f" in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    manifest.write_text(json.dumps(wanted))
    return cases


@dataclass
class Run:
    workers: int
    plans: int
    checked: int
    errors: int
    elapsed_s: float
    discovery_s: float
    plans_per_min: float
    plans_per_min_without_discovery: float
    worker_peak_rss_mb: dict[str, float]
    children_maxrss_mb: float


def run(cases: Path, protocol, workers: int) -> Run:
    from plancheck.batch import BatchOptions, discover_treatments, run_batch

    reports = WORK / f"reports-{workers}w"
    shutil.rmtree(reports, ignore_errors=True)
    t0 = time.perf_counter()
    discover_treatments(cases, WORK / "discovery-probe", protocol)  # time the header scan alone
    discovery_s = time.perf_counter() - t0
    outcome = run_batch(cases, reports, protocol, BatchOptions(workers=workers, force=True))
    # each patient's treatment is checked once with all its courses: count its plans
    checked = sum(len(r.plan_labels) for r in outcome.results if not r.skipped)
    return Run(
        workers=workers, plans=sum(len(r.plan_labels) for r in outcome.results), checked=checked,
        errors=outcome.errors,
        elapsed_s=round(outcome.elapsed_s, 2), discovery_s=round(discovery_s, 2),
        plans_per_min=round(60 * checked / outcome.elapsed_s, 1),
        plans_per_min_without_discovery=round(60 * checked / max(outcome.elapsed_s - discovery_s, 1e-9), 1),
        worker_peak_rss_mb={k: round(v, 1) for k, v in sorted(outcome.worker_peak_rss_mb.items())},
        children_maxrss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--protocol", default="esophagus-oligomet-2025")
    parser.add_argument("--ct", action="store_true", help="also write each case's CT series")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.cases < 1:
        parser.error("--cases must be >= 1")

    from plancheck.rules.runner import protocol_for_check

    protocol = protocol_for_check(args.protocol)
    cases = generate(args.cases, args.ct, jobs=max(1, min(4, os.cpu_count() or 1)))
    print(f"CPUs: {os.cpu_count()}; protocol {protocol.id} {protocol.version} ({len(protocol.rules)} rules)",
          file=sys.stderr)
    runs = [run(cases, protocol, w) for w in args.workers]
    print(f"\n{'workers':>7} {'plans':>5} {'errors':>6} {'wall s':>7} {'scan s':>6} {'plans/min':>9} "
          f"{'excl. scan':>10}  peak RSS per worker (MB)")
    for r in runs:
        peaks = ", ".join(f"{v:.0f}" for v in r.worker_peak_rss_mb.values())
        print(f"{r.workers:>7} {r.plans:>5} {r.errors:>6} {r.elapsed_s:>7.1f} {r.discovery_s:>6.1f} "
              f"{r.plans_per_min:>9.1f} {r.plans_per_min_without_discovery:>10.1f}  {peaks}")
    if len(runs) > 1:
        print(f"\nspeed-up {runs[-1].workers} vs {runs[0].workers} worker(s): "
              f"{runs[-1].plans_per_min / runs[0].plans_per_min:.2f}×")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": args.cases, "cpus": os.cpu_count(),
                                               "protocol": protocol.id, "runs": [asdict(r) for r in runs]},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
