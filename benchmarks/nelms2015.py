"""Nelms 2015 analytical DVH benchmark: plancheck and dicompyler-core against the exact answers.

Usage::

    python benchmarks/nelms2015.py [--data DIR] [--engine plancheck|dicompyler|both] [--json OUT]

The data (Nelms et al., Med Phys 2015;42(8):4435-4448, doi:10.1118/1.4923175) are not in
the repository. They are looked for in ``--data``, else ``$PLANCHECK_NELMS_DIR``, else
``../shared/validation/nelms2015`` relative to the repository root. Every structure/dose
pair of ``analytical_endpoints.csv`` whose dose grid is present is computed (ROI number 2;
the 0.4 x 0.2 x 0.4 mm grids are not part of the data set and are skipped).

Endpoints: volume, Dmin, Dmax, Dmean, D99, D95, D5, D1, D0.03cc. The error of an endpoint is
``|computed - analytical| / analytical`` (analytical doses in cGy, volumes in cc, converted).

Engines
-------
plancheck
    ``read_structure_set`` + ``read_dose`` + ``compute_dvh``; metrics by ``evaluate_metric``.
dicompyler
    dicompyler-core 0.5.6 ``dvhcalc.get_dvh`` with default settings, on the same files, and
    its own statistics (``min``, ``max``, ``mean``, ``volume``, ``D99``, ``D0.03cc`` ...), as a
    dicompyler-core user gets them.
dicompyler+metrics
    (reported with dicompyler) the same dicompyler-core histogram, converted by
    :func:`plancheck.dvh.dicompyler_adapter.from_dicompyler` and evaluated by plancheck's
    interpolating metric layer: separates dicompyler-core's geometry errors from its
    nearest-bin statistic lookups.

Case groups (as in the paper)
-----------------------------
matched
    contour spacing 1, 2 or 3 mm on a dose grid of the same size (paper's test 2).
fine-contours
    0.2 mm contour spacing on the 1, 2 and 3 mm grids (paper's test 1).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "validation" / "nelms2015"
ROI_NUMBER = 2

# CSV column (analytical value), TG-263 metric, dicompyler-core statistic, unit factor (CSV → Gy/cc)
ENDPOINTS = [
    ("volume_cc", "Volume[cc]", "volume", 1.0),
    ("Dmin_cGy", "Min[Gy]", "min", 0.01),
    ("Dmax_cGy", "Max[Gy]", "max", 0.01),
    ("Dmean_cGy", "Mean[Gy]", "mean", 0.01),
    ("D99_cGy", "D99%[Gy]", "D99", 0.01),
    ("D95_cGy", "D95%[Gy]", "D95", 0.01),
    ("D5_cGy", "D5%[Gy]", "D5", 0.01),
    ("D1_cGy", "D1%[Gy]", "D1", 0.01),
    ("D0.03cc_cGy", "D0.03cc[Gy]", "D0.03cc", 0.01),
]
SHORT = {"volume_cc": "Volume", "Dmin_cGy": "Dmin", "Dmax_cGy": "Dmax", "Dmean_cGy": "Dmean", "D99_cGy": "D99",
         "D95_cGy": "D95", "D5_cGy": "D5", "D1_cGy": "D1", "D0.03cc_cGy": "D0.03cc"}


@dataclass
class Case:
    structure: str
    contour_spacing: str
    shift: str
    dose_voxel_mm: str
    gradient: str
    analytical: dict[str, float]
    group: str = ""

    @property
    def dose_file(self) -> str:
        direction = {"Z(AP)": "AntPost", "Y(SI)": "SupInf"}[self.gradient]
        return f"Linear_{direction}_{self.dose_voxel_mm}mm_Aligned.dcm"

    @property
    def label(self) -> str:
        return f"{self.structure} {self.gradient} {self.dose_voxel_mm}mm"


@dataclass
class Result:
    case: str
    group: str
    engine: str
    endpoint: str
    analytical: float
    computed: float | None
    error_pct: float | None
    note: str = ""


@dataclass
class EngineRun:
    engine: str
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    cases: int = 0


def read_cases(data: Path) -> tuple[list[Case], int]:
    """All CSV rows whose dose grid exists (the ``shift`` column holds quoted commas: csv module)."""
    cases, skipped = [], 0
    with open(data / "analytical_endpoints.csv", newline="") as f:
        for row in csv.DictReader(f):
            case = Case(row["structure"], row["contour_spacing_mm"], row["shift"], row["dose_voxel_mm"],
                        row["gradient"], {col: float(row[col]) for col, *_ in ENDPOINTS})
            if not case.dose_voxel_mm.isdigit() or not (data / "dose_grids" / case.dose_file).exists():
                skipped += 1
                continue
            spacing = case.contour_spacing.removesuffix("mm")
            if spacing == "0.2":
                case.group = "fine-contours"
            elif float(spacing) == float(case.dose_voxel_mm):
                case.group = "matched"
            else:
                case.group = "other"
            cases.append(case)
    return cases, skipped


def _error(computed: float | None, analytical: float) -> float | None:
    if computed is None:
        return None
    return abs(computed - analytical) / abs(analytical) * 100.0


def run_plancheck(cases: list[Case], data: Path, volume_model: str = "auto") -> EngineRun:
    """plancheck on every case; ``volume_model`` ``auto`` takes the model the files' own
    Manufacturer selects (the Nelms files say ``ADAC`` / ``Pinnacle3``: the pinnacle model)."""
    from plancheck.dicom import read_dose, read_structure_set
    from plancheck.dvh.engine import compute_dvh
    from plancheck.dvh.metrics import evaluate_metric
    from plancheck.model.volume_model import volume_model_named

    run = EngineRun("plancheck")
    chosen: set[str] = set()
    doses: dict[str, object] = {}
    start = time.perf_counter()
    for case in cases:
        if case.dose_file not in doses:
            doses[case.dose_file] = read_dose(data / "dose_grids" / case.dose_file)
        structure_set = read_structure_set(data / "structures" / f"{case.structure}.dcm")
        if volume_model != "auto":
            structure_set = structure_set.with_volume_model(volume_model_named(volume_model), "--volume-model")
        chosen.add(structure_set.volume_model_description)
        roi = structure_set.roi_by_number(ROI_NUMBER)
        dvh = compute_dvh(roi, doses[case.dose_file])  # type: ignore[arg-type]
        for col, metric, _, factor in ENDPOINTS:
            value = evaluate_metric(metric, dvh)
            exact = case.analytical[col] * factor
            run.results.append(Result(case.label, case.group, run.engine, col, exact, value.value,
                                      _error(value.value, exact), value.reason or ""))
        run.cases += 1
    run.seconds = time.perf_counter() - start
    for text in sorted(chosen):
        print(f"plancheck volume model: {text}")
    return run


def run_dicompyler(cases: list[Case], data: Path) -> tuple[EngineRun, EngineRun]:
    """dicompyler-core's own statistics, and plancheck's metrics on dicompyler-core's histogram."""
    from plancheck.dicom.compat import load_dataset, pydicom_read_file_alias
    from plancheck.dvh.dicompyler_adapter import from_dicompyler
    from plancheck.dvh.metrics import evaluate_metric

    with pydicom_read_file_alias():  # dicompyler-core 0.5.6 imports a pydicom 2 name (see plancheck.dicom.compat)
        from dicompylercore import dicomparser  # noqa: F401  (get_dvh imports it later)
        from dicompylercore import dvhcalc

    own = EngineRun("dicompyler")
    via = EngineRun("dicompyler+metrics")
    doses: dict[str, object] = {}
    compute_seconds = 0.0
    for case in cases:
        if case.dose_file not in doses:
            doses[case.dose_file] = load_dataset(data / "dose_grids" / case.dose_file)
        start = time.perf_counter()
        rtss = load_dataset(data / "structures" / f"{case.structure}.dcm")
        dc = dvhcalc.get_dvh(rtss, doses[case.dose_file], ROI_NUMBER)
        compute_seconds += time.perf_counter() - start
        dvh = from_dicompyler(dc, name=case.structure) if dc.volume > 0 else None
        for col, metric, stat, factor in ENDPOINTS:
            exact = case.analytical[col] * factor
            value = float(getattr(dc, stat)) if stat in ("volume", "min", "max", "mean") else float(dc.statistic(stat).value)
            own.results.append(Result(case.label, case.group, own.engine, col, exact, value, _error(value, exact)))
            mv = evaluate_metric(metric, dvh) if dvh is not None else None
            v = mv.value if mv is not None else None
            via.results.append(Result(case.label, case.group, via.engine, col, exact, v, _error(v, exact),
                                      (mv.reason or "") if mv is not None else "empty DVH"))
        own.cases += 1
        via.cases += 1
    own.seconds = via.seconds = compute_seconds
    return own, via


# ------------------------------------------------------------------------------ report

def summarise(run: EngineRun, group: str) -> dict:
    rows = [r for r in run.results if r.group == group]
    undefined = [r for r in rows if r.error_pct is None]
    over3 = [r for r in rows if r.error_pct is None or r.error_pct > 3.0]
    over2 = [r for r in rows if r.error_pct is None or r.error_pct > 2.0]
    by_endpoint = {SHORT[col]: sum(1 for r in over3 if r.endpoint == col) for col, *_ in ENDPOINTS}
    worst = sorted((r for r in rows if r.error_pct is not None), key=lambda r: -r.error_pct)[:5]
    return {"endpoints": len(rows), "over_3pct": len(over3), "over_2pct": len(over2), "undefined": len(undefined),
            "over_3pct_by_endpoint": by_endpoint, "worst": [asdict(r) for r in worst]}


def print_report(runs: list[EngineRun], groups: list[str], n_cases: dict[str, int], skipped: int) -> None:
    print(f"Nelms 2015 analytical DVH benchmark — {sum(n_cases.values())} structure/dose pairs "
          f"({', '.join(f'{g}: {n}' for g, n in n_cases.items())}; {skipped} rows without a dose grid skipped)")
    print("error = |computed - analytical| / analytical; an undefined value counts as over the limit\n")
    header = f"{'engine':<20} {'group':<14} {'endpoints':>9} {'> 3 %':>12} {'> 2 %':>12} {'undef':>6}   > 3 % by endpoint"
    print(header)
    print("-" * len(header) + "-" * 40)
    for run in runs:
        for group in groups:
            s = summarise(run, group)
            n = s["endpoints"]
            if n == 0:
                continue
            by = " ".join(f"{k}:{v}" for k, v in s["over_3pct_by_endpoint"].items() if v)
            print(f"{run.engine:<20} {group:<14} {n:>9} {s['over_3pct']:>5} ({100 * s['over_3pct'] / n:4.1f}%)"
                  f" {s['over_2pct']:>4} ({100 * s['over_2pct'] / n:4.1f}%) {s['undefined']:>6}   {by}")
    print("\nworst endpoints")
    for run in runs:
        for group in groups:
            s = summarise(run, group)
            for w in s["worst"][:3]:
                print(f"  {run.engine:<20} {group:<14} {w['case']:<32} {SHORT[w['endpoint']]:<8} "
                      f"analytical {w['analytical']:8.3f}  computed {w['computed']:8.3f}  ({w['error_pct']:.2f}%)")
    print("\ntiming (reading + DVH + metrics for plancheck; get_dvh for dicompyler-core)")
    for run in runs:
        if run.engine == "dicompyler+metrics":
            continue
        print(f"  {run.engine:<20} {run.seconds:7.2f} s total, {1000 * run.seconds / max(run.cases, 1):7.1f} ms per case")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Nelms 2015 data directory")
    parser.add_argument("--engine", choices=["plancheck", "dicompyler", "both"], default="both")
    parser.add_argument("--json", type=Path, default=None, help="write all results as JSON")
    parser.add_argument("--verbose", action="store_true", help="show plancheck's warnings while reading")
    parser.add_argument("--volume-model", default="auto",
                        help="plancheck's DVH volume model (default auto: from the files' Manufacturer, see docs/volume-conventions.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # e.g. ROI 1 of every file is an empty point ROI; pydicom deprecations from dicompyler-core
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.ERROR)

    data = args.data or Path(os.environ.get("PLANCHECK_NELMS_DIR", DEFAULT_DATA))
    if not (data / "analytical_endpoints.csv").exists():
        print(f"Nelms 2015 data not found in {data} (use --data or PLANCHECK_NELMS_DIR)", file=sys.stderr)
        return 2
    cases, skipped = read_cases(data)
    groups = ["matched", "fine-contours"] + (["other"] if any(c.group == "other" for c in cases) else [])
    n_cases = {g: sum(1 for c in cases if c.group == g) for g in groups}

    runs: list[EngineRun] = []
    if args.engine in ("plancheck", "both"):
        runs.append(run_plancheck(cases, data, args.volume_model))
    if args.engine in ("dicompyler", "both"):
        runs.extend(run_dicompyler(cases, data))
    print_report(runs, groups, n_cases, skipped)

    if args.json:
        payload = {
            "data": str(data.resolve()),
            "summary": {run.engine: {g: {k: v for k, v in summarise(run, g).items() if k != "worst"} for g in groups} for run in runs},
            "timing_s": {run.engine: run.seconds for run in runs},
            "results": [asdict(r) for run in runs for r in run.results],
        }
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
