"""Benchmark: composite and per-course EQD2 DVHs of the sample case.

Times, on ``sample_dicom`` (C1_Eso 60 Gy/30 fx, C2_LungMet 50 Gy/5 fx,
C3_VertMet 30 Gy/3 fx, one structure set):

* reading and linking the export;
* per-course EQD2 DVHs: every structure of every course, default TG-263 metrics,
  α/β per structure from the α/β table (``dvh_tables(..., composite=False)``);
* the composite EQD2 DVHs: every structure, the three courses converted voxel
  by voxel with their own fractions and summed (``dvh_tables(..., composite=True)``);
* the composite per structure (one run each), to show where the time goes.

Each timing is repeated (``--repeat``, default 3); the minimum and the median
are printed. Run from the repository root::

    python benchmarks/composite.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from plancheck.dicom import read_export
from plancheck.dvh.metrics import DEFAULT_METRICS
from plancheck.analysis.dvh_tables import DoseKindRequest, dvh_tables
from plancheck.radiobiology import DoseKind

SAMPLE_DICOM = Path(__file__).resolve().parents[1] / "sample_dicom"

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int) -> tuple[T, list[float]]:
    times = []
    result: T
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, times  # type: ignore[possibly-undefined]


def line(label: str, times: list[float]) -> str:
    return f"{label:<52s} min {min(times):7.3f} s   median {statistics.median(times):7.3f} s   (n={len(times)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=str(SAMPLE_DICOM), help="export directory (default: sample_dicom)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per timing (default 3)")
    args = parser.parse_args(argv)

    request = DoseKindRequest(DoseKind.EQD2)
    export, t_read = timed(lambda: read_export(args.path), args.repeat)
    courses = export.courses
    rois = [r for r in courses[0].structure_set.rois if not r.is_empty]
    print(f"export: {args.path}")
    print("courses: " + ", ".join(f"{c.label} ({c.plan.fractions_planned} fx, grid {c.dose.shape} @ "
                                  f"{'x'.join(f'{s:g}' for s in c.dose.spacing_mm)} mm)" for c in courses))
    print(f"structures: {len(rois)} ({', '.join(r.name for r in rois)})")
    print(f"metrics: {', '.join(DEFAULT_METRICS)}")
    print(f"python {sys.version.split()[0]}\n")

    print(line("read_export", t_read))

    per_course, t_course = timed(lambda: dvh_tables(export, dose_kind=request), args.repeat)
    n_dvh = sum(len(t.structures) for t in per_course)
    print(line(f"per-course EQD2 DVHs ({len(per_course)} courses, {n_dvh} DVHs)", t_course))

    composite, t_comp = timed(lambda: dvh_tables(export, dose_kind=request, composite=True), args.repeat)
    print(line(f"composite EQD2 DVHs ({len(composite[0].structures)} structures)", t_comp))

    print("\ncomposite EQD2, per structure (one run each):")
    for roi in rois:
        _, t = timed(lambda name=roi.name: dvh_tables(export, structures=[name], dose_kind=request, composite=True), 1)
        print(line(f"  {roi.name}", t))

    print("\ncomposite EQD2 Max[Gy] vs per-course EQD2 Max[Gy] (sanity):")
    maxima = {t.label: {s.roi.name: next(m.value for m in s.metrics if m.metric == "Max[Gy]") for s in t.structures} for t in per_course}
    for s in composite[0].structures:
        comp_max = next(m.value for m in s.metrics if m.metric == "Max[Gy]")
        singles = "  ".join(f"{label} {m[s.roi.name]:.2f}" if m.get(s.roi.name) is not None else f"{label} —" for label, m in maxima.items())
        shown = "—" if comp_max is None else f"{comp_max:.2f}"
        print(f"  {s.roi.name:<14s} {s.dose_kind:<16s} composite {shown:>8s}   {singles}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
