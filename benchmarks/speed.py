"""Speed of plancheck's DVH engine against dicompyler-core on a clinical-size case.

Usage::

    python benchmarks/speed.py [--case DIR] [--dose RD_FILE] [--repeats N] [--engine plancheck|dicompyler|both] [--json OUT]

The case is the synthetic clinical-size export (``scripts/make_sample_dicom.py --variant
clinical``: a dose grid of about 3.5 million voxels at 2 mm, 29 ROIs, External on 161
planes); it is generated into ``benchmarks/_work/clinical/`` (without CT) when absent.

What is timed, in one run on the same files:

plancheck
    the work of ``plancheck dvh``: read the RT Structure Set and the RT Dose
    (``read_structure_set``, ``read_dose``), then for every ROI sample it
    (``sample_for_grid``), compute the DVH on the grid (``compute_dvh``) and evaluate the
    default metrics (``DEFAULT_METRICS``). The per-structure time is split into sampling
    and dose/histogram/metrics to show the hot spots. Timed in one thread, repeated
    ``--repeats`` times (the fastest run is reported; the others differ by OS noise
    only); then the same work with the structures spread over threads as ``plancheck
    dvh`` does (:mod:`plancheck.parallel`; ``PLANCHECK_THREADS`` sets their number).
    The first run of the process is reported separately (with the ahead-of-time compiled
    kernels it loads nothing more; with the JIT fallback it loads numba's on-disk cache).
    Then the same work as whole processes (``plancheck dvh`` and a dicompyler-core process),
    start-up included, beside the in-process figures (``--no-whole-process`` leaves them out).
dicompyler-core
    ``pydicom.dcmread`` of both files, then ``dvhcalc.get_dvh(rtss, rtdose, roi)`` with
    default settings for every ROI, timed once (it is slow; repeating adds nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test kit (testkit/, not installed) generates the cases
DEFAULT_CASE = REPO / "benchmarks" / "_work" / "clinical"


@dataclass
class StructureTiming:
    number: int
    name: str
    contours: int
    volume_cc: float
    samples: int = 0
    plancheck_sampling_s: float = 0.0
    plancheck_dvh_s: float = 0.0
    plancheck_metrics_s: float = 0.0
    dicompyler_s: float | None = None
    dicompyler_volume_cc: float | None = None

    @property
    def plancheck_s(self) -> float:
        return self.plancheck_sampling_s + self.plancheck_dvh_s + self.plancheck_metrics_s


@dataclass
class Report:
    case: str
    dose_file: str
    dose_voxels: int
    dose_spacing_mm: tuple[float, float, float]
    structures: list[StructureTiming] = field(default_factory=list)
    plancheck_read_s: float = 0.0
    plancheck_total_s: float = 0.0
    plancheck_runs_s: list[float] = field(default_factory=list)
    dicompyler_read_s: float | None = None
    dicompyler_total_s: float | None = None
    plancheck_first_run_s: float | None = None
    plancheck_threads: int = 1
    plancheck_threaded_runs_s: list[float] = field(default_factory=list)
    plancheck_threaded_s: float | None = None


def ensure_case(case_dir: Path) -> None:
    """Generate the clinical-size synthetic case (no CT) if it is not there."""
    if any(case_dir.glob("RS_*.dcm")) and any(case_dir.glob("RD_*.dcm")):
        return
    from testkit.write import write_case
    from testkit.synthetic import CaseSpec, build_case

    print(f"generating the clinical-size case in {case_dir} ...", flush=True)
    start = time.perf_counter()
    case = build_case(CaseSpec.variant("clinical", include_ct=False))
    write_case(case, case_dir, name="clinical")
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)


def time_plancheck(rs: Path, rd: Path, repeats: int) -> tuple[Report, list[StructureTiming]]:
    from plancheck.dicom import read_dose, read_structure_set
    from plancheck.dvh.engine import compute_dvh, sample_for_grid
    from plancheck.dvh.metrics import DEFAULT_METRICS, evaluate_metric
    from plancheck.parallel import default_threads, map_in_threads

    def one(roi, grid) -> StructureTiming:
        t0 = time.perf_counter()
        sampling = sample_for_grid(roi, grid)
        t1 = time.perf_counter()
        dvh = compute_dvh(roi, grid, sampling=sampling)
        t2 = time.perf_counter()
        for metric in DEFAULT_METRICS:
            evaluate_metric(metric, dvh)
        t3 = time.perf_counter()
        return StructureTiming(roi.number, roi.name, roi.number_of_contours, dvh.volume_cc,
                               sampling.number_of_samples, t1 - t0, t2 - t1, t3 - t2)

    def run(threads: int) -> tuple[float, float, list[StructureTiming], object]:
        start = time.perf_counter()
        structure_set = read_structure_set(rs)
        grid = read_dose(rd)
        read_s = time.perf_counter() - start
        timings = map_in_threads(lambda roi: one(roi, grid), structure_set.rois, threads=threads,
                                 cost=lambda roi: roi.number_of_points)
        return time.perf_counter() - start, read_s, timings, grid

    # the first run of a process (with the JIT fallback it also loads numba's on-disk cache)
    first_s, _, _, _ = run(1)
    best: tuple[float, float, list[StructureTiming]] | None = None
    runs = []
    grid = None
    for _ in range(max(repeats, 1)):
        total, read_s, timings, grid = run(1)
        runs.append(total)
        if best is None or total < best[0]:
            best = (total, read_s, timings)
    threads = default_threads()
    threaded = [run(threads)[0] for _ in range(max(repeats, 1))] if threads > 1 else []
    assert best is not None and grid is not None
    report = Report(str(rs.parent), rd.name, grid.number_of_voxels, grid.spacing_mm)
    report.plancheck_total_s, report.plancheck_read_s, timings = best
    report.plancheck_runs_s = runs
    report.plancheck_first_run_s = first_s
    report.plancheck_threads = threads
    report.plancheck_threaded_runs_s = threaded
    report.plancheck_threaded_s = min(threaded) if threaded else None
    return report, timings


def time_dicompyler(rs: Path, rd: Path, timings: list[StructureTiming], report: Report) -> None:
    from plancheck.dicom.compat import load_dataset, pydicom_read_file_alias

    with pydicom_read_file_alias():  # dicompyler-core 0.5.6 imports a pydicom 2 name (see plancheck.dicom.compat)
        from dicompylercore import dicomparser  # noqa: F401  (get_dvh imports it later)
        from dicompylercore import dvhcalc

    start = time.perf_counter()
    rtss = load_dataset(rs)
    rtdose = load_dataset(rd)
    report.dicompyler_read_s = time.perf_counter() - start
    for timing in timings:
        t0 = time.perf_counter()
        dc = dvhcalc.get_dvh(rtss, rtdose, timing.number)
        timing.dicompyler_s = time.perf_counter() - t0
        timing.dicompyler_volume_cc = float(dc.volume)
        print(f"  dicompyler-core {timing.name:<18} {timing.dicompyler_s:7.2f} s", flush=True)
    report.dicompyler_total_s = time.perf_counter() - start


def print_report(report: Report) -> None:
    sp = "x".join(f"{s:g}" for s in report.dose_spacing_mm)
    print(f"\ncase {report.case}, dose {report.dose_file}: {report.dose_voxels:,} voxels ({sp} mm), "
          f"{len(report.structures)} structures")
    has_dc = report.dicompyler_total_s is not None
    header = (f"{'ROI':<18} {'contours':>8} {'cc':>8} {'samples':>9} {'sample ms':>10} {'dvh ms':>8} {'metr ms':>8} "
              f"{'plancheck ms':>13}" + (f" {'dicompyler ms':>14} {'ratio':>7}" if has_dc else ""))
    print(header)
    print("-" * len(header))
    for t in sorted(report.structures, key=lambda t: -t.plancheck_s):
        line = (f"{t.name[:18]:<18} {t.contours:>8} {t.volume_cc:>8.1f} {t.samples:>9,} {1000 * t.plancheck_sampling_s:>10.1f} "
                f"{1000 * t.plancheck_dvh_s:>8.1f} {1000 * t.plancheck_metrics_s:>8.1f} {1000 * t.plancheck_s:>13.1f}")
        if has_dc and t.dicompyler_s is not None:
            line += f" {1000 * t.dicompyler_s:>14.1f} {t.dicompyler_s / max(t.plancheck_s, 1e-9):>6.1f}x"
        print(line)
    print("-" * len(header))
    per = [t.plancheck_s for t in report.structures]
    print(f"plancheck   total {report.plancheck_total_s:7.2f} s one thread (reading {report.plancheck_read_s:.2f} s; "
          f"per structure median {1000 * statistics.median(per):.0f} ms, max {1000 * max(per):.0f} ms; "
          f"runs {', '.join(f'{r:.2f}' for r in report.plancheck_runs_s)} s)")
    if report.plancheck_threaded_s is not None:
        print(f"plancheck   total {report.plancheck_threaded_s:7.2f} s with {report.plancheck_threads} threads, as "
              f"`plancheck dvh` runs (runs {', '.join(f'{r:.2f}' for r in report.plancheck_threaded_runs_s)} s)")
    if report.plancheck_first_run_s is not None:
        print(f"plancheck   first run of the process {report.plancheck_first_run_s:.2f} s, one thread "
              f"(with the JIT fallback: includes loading the kernels from numba's cache)")
    if has_dc:
        dc = report.dicompyler_total_s
        print(f"dicompyler  total {dc:7.2f} s (reading {report.dicompyler_read_s:.2f} s; one run)")
        print(f"ratio       dicompyler-core / plancheck = {dc / report.plancheck_total_s:.1f}x one thread"
              + (f", {dc / report.plancheck_threaded_s:.1f}x with {report.plancheck_threads} threads"
                 if report.plancheck_threaded_s else "")
              + (f", {dc / report.plancheck_first_run_s:.1f}x for a first run" if report.plancheck_first_run_s else ""))


def time_whole_processes(engine: str, repeats: int) -> dict[str, float]:
    """The same work as whole processes, start-up included (see ``whole_process.py``):
    ``plancheck dvh`` on the case's RS, RP and RD of C1_Eso, and a process running
    dicompyler-core's ``get_dvh`` on every ROI of the same RS and RD."""
    from whole_process import DICOMPYLER_CHILD, ONE_PLAN, PLANCHECK, ensure_one_plan_case, timed

    rs, rd = ensure_one_plan_case()
    print("\nwhole processes (interpreter start-up, imports and reading included; same files):", flush=True)
    out: dict[str, float] = {}
    if engine != "dicompyler":
        t = timed("plancheck dvh", [PLANCHECK, "dvh", str(ONE_PLAN)], max(repeats, 1))
        print(t.line(), flush=True)
        out["plancheck_dvh_process_s"] = t.best
    if engine != "plancheck":
        d = timed("dicompyler-core get_dvh (process)", [sys.executable, "-c", DICOMPYLER_CHILD, str(rs), str(rd)], 1,
                  warm=False)
        print(d.line(), flush=True)
        out["dicompyler_process_s"] = d.best
        if "plancheck_dvh_process_s" in out:
            out["ratio_process"] = d.best / out["plancheck_dvh_process_s"]
            print(f"ratio       dicompyler-core / plancheck, whole processes: {out['ratio_process']:.1f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE, help="directory with RS_*.dcm and RD_*.dcm")
    parser.add_argument("--dose", default=None, help="RT Dose file name in the case directory (default: the first RD_*.dcm)")
    parser.add_argument("--repeats", type=int, default=3, help="plancheck runs (the fastest is reported)")
    parser.add_argument("--engine", choices=["plancheck", "dicompyler", "both"], default="both",
                        help="'dicompyler' still runs plancheck once, for the per-structure table")
    parser.add_argument("--json", type=Path, default=None, help="write the timings as JSON")
    parser.add_argument("--no-whole-process", action="store_true",
                        help="leave out the whole-process timings (plancheck dvh and dicompyler-core as processes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    for handler in logging.getLogger().handlers:  # pydicom sets its own logger's level
        handler.setLevel(logging.ERROR)

    ensure_case(args.case)
    rs = sorted(args.case.glob("RS_*.dcm"))[0]
    rd = args.case / args.dose if args.dose else sorted(args.case.glob("RD_*.dcm"))[0]

    print(f"plancheck: {args.repeats if args.engine != 'dicompyler' else 1} run(s) ...", flush=True)
    report, timings = time_plancheck(rs, rd, args.repeats if args.engine != "dicompyler" else 1)
    report.structures = timings
    if args.engine in ("dicompyler", "both"):
        print("dicompyler-core: one run ...", flush=True)
        time_dicompyler(rs, rd, timings, report)
    print_report(report)
    whole = None if args.no_whole_process else time_whole_processes(args.engine, args.repeats)
    if args.json:
        payload = asdict(report)
        if whole is not None:
            payload["whole_process"] = whole
        for s, t in zip(payload["structures"], report.structures):
            s["plancheck_s"] = t.plancheck_s
        if report.dicompyler_total_s:
            payload["ratio_dicompyler_over_plancheck"] = report.dicompyler_total_s / report.plancheck_total_s
            if report.plancheck_threaded_s:
                payload["ratio_dicompyler_over_plancheck_threaded"] = report.dicompyler_total_s / report.plancheck_threaded_s
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
