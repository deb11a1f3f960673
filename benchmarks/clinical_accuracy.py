"""Accuracy of plancheck's default DVHs on clinical-size structures, against a fine reference.

Usage::

    python benchmarks/clinical_accuracy.py [--case DIR]... [--tol-pct 0.5] [--tol-gy 0.05] [--recompute] [--json OUT]

For every RT Dose file and every structure of each case (default: ``sample_dicom/`` and the
clinical-size case of ``benchmarks/speed.py``), the default metrics plus V5Gy[%] and V20Gy[%]
of plancheck's default DVH are compared with those of a reference DVH of the same geometric
model (slab model, trilinear dose) sampled on a much finer lattice: 0.1 mm where that gives
at most 12 million cells, coarser up to 1 mm for the largest organs (whose hot tail the
engine then refines to 0.5 and 0.25 mm). What this measures is the discretisation error of
the default settings (lattice step, in-cell dose spread, tail refinement), not the model
itself (that is what the Nelms benchmark and the analytic phantom tests measure).

A metric passes when it is within ``--tol-pct`` per cent of the reference or within
``--tol-gy`` Gy (dose metrics) / ``--tol-pct`` percentage points (V…[%]). The reference
values are cached in ``benchmarks/_work/`` (``--recompute`` to rebuild them: minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
DEFAULT_CASES = (REPO / "sample_dicom", WORK / "clinical")
METRICS = ("Volume[cc]", "Min[Gy]", "Mean[Gy]", "Max[Gy]", "D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]",
           "D0.03cc[Gy]", "V5Gy[%]", "V20Gy[%]")
REFERENCE_MAX_CELLS = 12e6
"""The reference lattice is as fine as 0.1 mm allows within this many cells (else coarser, up to 1 mm)."""


def _value(metric: str, dvh) -> float | None:
    from plancheck.dvh.metrics import evaluate_metric

    v = evaluate_metric(metric, dvh).value
    return None if v is None else float(v)


def _files(case: Path) -> tuple[Path, list[Path]]:
    from plancheck.dicom import read_export

    export = read_export(case)
    rs = export.courses[0].structure_set.path
    doses = sorted({src.path for course in export.courses for src in course.dose.sources})
    return Path(rs), [Path(d) for d in doses]


def _cache_path(case: Path, files: list[Path]) -> Path:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(str(f.stat().st_size).encode())
    return WORK / f"reference_{case.name}_{digest.hexdigest()[:12]}.json"


def reference_values(case: Path, rs: Path, doses: list[Path], recompute: bool) -> dict:
    """Reference metrics per 'dose file|structure' (cached)."""
    import numpy as np

    from plancheck.dicom import read_dose, read_structure_set
    from plancheck.dvh.engine import compute_dvh, sample_for_grid
    from plancheck.dvh.sampling import sample_roi

    cache = _cache_path(case, [rs, *doses])
    if cache.exists() and not recompute:
        return json.loads(cache.read_text())
    print(f"computing the reference for {case} (cached in {cache.relative_to(REPO)}) ...", flush=True)
    structure_set = read_structure_set(rs)
    out = {}
    for rd in doses:
        grid = read_dose(rd)
        for roi in structure_set.rois:
            if not roi.planes:
                continue
            default = sample_for_grid(roi, grid)
            step = max(0.1, min(1.0, default.step_mm * (default.number_of_samples / REFERENCE_MAX_CELLS) ** 0.5))
            fine = sample_roi(roi, target_samples=10**9, min_step_mm=step, max_step_mm=step,
                              split_z_mm=np.unique(grid.z_mm), default_thickness_mm=grid.spacing_mm[2])
            dvh = compute_dvh(roi, grid, sampling=fine)
            out[f"{rd.name}|{roi.name}"] = {"step_mm": step, **{m: _value(m, dvh) for m in METRICS}}
    WORK.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, indent=1))
    return out


def compare(case: Path, tol_pct: float, tol_gy: float, recompute: bool) -> dict:
    from plancheck.dicom import read_dose, read_structure_set
    from plancheck.dvh.engine import compute_dvh

    rs, doses = _files(case)
    reference = reference_values(case, rs, doses, recompute)
    structure_set = read_structure_set(rs)
    pairs, failures = 0, []
    for rd in doses:
        grid = read_dose(rd)
        for roi in structure_set.rois:
            key = f"{rd.name}|{roi.name}"
            if key not in reference:
                continue
            pairs += 1
            dvh = compute_dvh(roi, grid)
            for metric in METRICS:
                ref, got = reference[key][metric], _value(metric, dvh)
                if ref is None or got is None:
                    if (ref is None) != (got is None):
                        failures.append((key, metric, ref, got, float("inf")))
                    continue
                err = abs(got - ref)
                rel = 100.0 * err / abs(ref) if ref else (0.0 if err == 0 else float("inf"))
                absolute = tol_gy if metric.endswith("[Gy]") else (tol_pct if metric.endswith("[%]") else 0.0)
                if rel > tol_pct and err > absolute:
                    failures.append((key, metric, ref, got, rel))
    return {"case": str(case), "pairs": pairs, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, action="append", help="case directory (repeatable)")
    parser.add_argument("--tol-pct", type=float, default=0.5)
    parser.add_argument("--tol-gy", type=float, default=0.05)
    parser.add_argument("--recompute", action="store_true", help="rebuild the cached reference values")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    cases = args.case or list(DEFAULT_CASES)
    if WORK / "clinical" in cases and not (WORK / "clinical").exists():
        sys.path.insert(0, str(REPO / "benchmarks"))
        from speed import ensure_case

        ensure_case(WORK / "clinical")
    results = []
    start = time.perf_counter()
    for case in cases:
        result = compare(case, args.tol_pct, args.tol_gy, args.recompute)
        results.append(result)
        bad = {key for key, *_ in result["failures"]}
        print(f"{case}: {result['pairs'] - len(bad)}/{result['pairs']} structure × dose pairs with every metric "
              f"within {args.tol_pct:g} % or {args.tol_gy:g} Gy")
        for key, metric, ref, got, rel in result["failures"]:
            print(f"    {key:40s} {metric:12s} reference {ref!s:>10.10} plancheck {got!s:>10.10} ({rel:.2f} %)")
    total = sum(r["pairs"] for r in results)
    bad = sum(len({key for key, *_ in r["failures"]}) for r in results)
    print(f"all: {total - bad}/{total} pairs within tolerance ({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
