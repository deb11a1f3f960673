"""Agreement with Eclipse's own DVHs: Eclipse vs plancheck (slab) vs plancheck (eclipse) vs dicompyler-core.

Usage::

    python benchmarks/eclipse_agreement.py [--data DIR] [--json OUT]

Data: an Eclipse export whose RT Dose embeds Eclipse's DVHs (DVH Sequence). Default
``tests/data/eclipse_example`` (6 structures, in the repository); the full example (9 structures,
with BODY, Breast and Lt Lung) is ``tests/testdata/example_data`` of the dicompyler-core 0.5.6
source distribution (``pip download --no-deps --no-binary :all: dicompyler-core==0.5.6``).

Eclipse's values: volume = the cumulative curve's first value; D95% from the curve (0.01 Gy bins,
interpolated by plancheck's metric layer); Mean and Max = DVH Mean/Maximum Dose, which this export
stores in percent of the plan's Target Prescription Dose (14 Gy) although labelled GY (see
``tests/data/eclipse_example/README.md``): they are converted with that prescription.

plancheck: ``read_structure_set`` + ``read_dose`` + ``compute_dvh`` with the ``slab`` and the
``eclipse`` volume model (``plancheck.model.volume_model``). dicompyler-core 0.5.6: ``dvhcalc.get_dvh``,
default settings, and its own statistics (``volume``, ``mean``, ``max``, ``statistic('D95')``).

Goal (issue 10): volume within 1 % for structures of 1 cc or more (0.05 cc below), Mean, Max and
D95% within 1 % or 0.05 Gy. A cell is marked ``*`` when it misses that goal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "tests" / "data" / "eclipse_example"
COLUMNS = ("Eclipse", "slab", "eclipse", "dicompyler")


def within_goal(reference: float, value: float | None, *, volume: bool) -> bool:
    """The issue's goal: volumes within 1 % (≥ 1 cc) or 0.05 cc (below); doses within 1 % or 0.05 Gy."""
    if value is None or not np.isfinite(value):
        return False
    diff = abs(value - reference)
    if volume:
        return diff <= (0.01 * reference if reference >= 1.0 else 0.05)
    return diff <= max(0.01 * abs(reference), 0.05)


def eclipse_values(data: Path, prescription_gy: float) -> dict[int, dict[str, float]]:
    """Eclipse's volume, Mean, Max and D95% per ROI number from the DVH Sequence."""
    from plancheck.dicom.read_dvh_sequence import embedded_dvhs
    from plancheck.dvh.dvh import DVH
    from plancheck.dvh.metrics import evaluate_metric

    out = {}
    for e in embedded_dvhs(data / "rtdose.dcm"):
        cumulative = e.values
        differential = np.append(-np.diff(cumulative), cumulative[-1])
        curve = DVH.from_differential("eclipse", float(e.bin_widths[0]), differential)
        out[e.roi_number] = {
            "volume_cc": float(cumulative[0]),
            "Mean[Gy]": float(e.mean) * prescription_gy / 100.0,
            "Max[Gy]": float(e.maximum) * prescription_gy / 100.0,
            "D95%[Gy]": float(evaluate_metric("D95%[Gy]", curve).value),
        }
    return out


def plancheck_values(data: Path, model_name: str) -> dict[int, dict[str, float | None]]:
    from plancheck.dicom import read_dose, read_structure_set
    from plancheck.dvh.engine import compute_dvh
    from plancheck.dvh.metrics import evaluate_metric
    from plancheck.model.volume_model import volume_model_named

    structure_set = read_structure_set(data / "rtss.dcm")
    grid = read_dose(data / "rtdose.dcm")
    model = volume_model_named(model_name)
    out = {}
    for roi in structure_set.rois:
        if roi.is_empty:
            continue
        dvh = compute_dvh(roi, grid, volume_model=model)
        out[roi.number] = {"volume_cc": dvh.volume_cc,
                           **{m: evaluate_metric(m, dvh).value for m in ("Mean[Gy]", "Max[Gy]", "D95%[Gy]")}}
    return out


def dicompyler_values(data: Path, numbers) -> dict[int, dict[str, float | None]]:
    from plancheck.dicom.compat import load_dataset, pydicom_read_file_alias

    with pydicom_read_file_alias():  # dicompyler-core 0.5.6 imports a pydicom 2 name (see plancheck.dicom.compat)
        from dicompylercore import dicomparser  # noqa: F401
        from dicompylercore import dvhcalc
    rtss, rtdose = load_dataset(data / "rtss.dcm"), load_dataset(data / "rtdose.dcm")
    out = {}
    for n in numbers:
        dc = dvhcalc.get_dvh(rtss, rtdose, n)
        empty = dc.volume == 0
        out[n] = {"volume_cc": float(dc.volume),
                  "Mean[Gy]": None if empty else float(dc.mean),
                  "Max[Gy]": None if empty else float(dc.max),
                  "D95%[Gy]": None if empty else float(dc.statistic("D95").value)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory with rtss.dcm and rtdose.dcm")
    parser.add_argument("--prescription-gy", type=float, default=14.0,
                        help="the prescription the DVH Minimum/Maximum/Mean Dose percentages refer to (14 Gy in the example)")
    parser.add_argument("--no-dicompyler", action="store_true", help="leave dicompyler-core out")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # pydicom deprecations from dicompyler-core

    from plancheck.dicom import read_structure_set

    names = {r.number: r.name for r in read_structure_set(args.data / "rtss.dcm").rois}
    eclipse = eclipse_values(args.data, args.prescription_gy)
    runs = {"Eclipse": eclipse, "slab": plancheck_values(args.data, "slab"), "eclipse": plancheck_values(args.data, "eclipse")}
    if not args.no_dicompyler:
        runs["dicompyler"] = dicompyler_values(args.data, sorted(eclipse))
    columns = [c for c in COLUMNS if c in runs]

    quantities = (("volume_cc", "Volume [cc]"), ("Mean[Gy]", "Mean [Gy]"), ("Max[Gy]", "Max [Gy]"), ("D95%[Gy]", "D95% [Gy]"))
    misses = {c: 0 for c in columns[1:]}
    total = 0
    print(f"data: {args.data}   (* = misses the goal: volume 1 % or 0.05 cc below 1 cc; doses 1 % or 0.05 Gy)")
    header = f"{'structure':16s} {'quantity':12s}" + "".join(f"{c:>14s}" for c in columns)
    print(header)
    print("-" * len(header))
    for n in sorted(eclipse):
        for key, label in quantities:
            ref = eclipse[n][key]
            cells = [f"{ref:13.3f} "]
            total += 1
            for c in columns[1:]:
                value = runs[c].get(n, {}).get(key)
                ok = within_goal(ref, value, volume=key == "volume_cc")
                misses[c] += not ok
                cells.append(f"{'—' if value is None else f'{value:.3f}':>13s}{' ' if ok else '*'}")
            print(f"{names.get(n, n)!s:16.16s} {label:12s}" + "".join(cells))
    print("-" * len(header))
    print(f"{'missed':29s}" + "".join(f"{'':14s}" if c == 'Eclipse' else f"{f'{misses[c]}/{total}':>14s}" for c in columns))
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "values": {c: {str(k): v for k, v in runs[c].items()} for c in columns},
                                         "missed": misses, "endpoints": total}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
