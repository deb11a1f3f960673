#!/usr/bin/env python
"""Write the synthetic oligometastatic esophageal cancer case as DICOM files.

Usage::

    python scripts/make_sample_dicom.py [--out DIR] [--variant sample|violations|clinical] [--seed N]

The default writes the canonical sample (seed 0, no jitter) to ``sample_dicom/``
next to this script's repository root. A non-zero seed turns on case-to-case
variation (``--jitter``, default 1 for a non-zero seed). Same arguments, same bytes.

Next to the DICOM files the script writes the case's clinical context, ``case.yaml``
(:mod:`testkit.synthetic.case_file`), which ``plancheck check`` finds there: for the
violations variant it declares six lesions, some without a target. ``--no-case-file``
leaves it out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the test kit (testkit/) is not installed: import it from the checkout

from testkit.synthetic import CaseSpec, build_case  # noqa: E402
from testkit.synthetic.case_file import write_case_file  # noqa: E402
from testkit.write import write_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "sample_dicom", help="output directory")
    parser.add_argument("--variant", choices=("sample", "violations", "clinical"), default="sample")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the geometry/dose jitter")
    parser.add_argument("--jitter", type=float, default=None,
                        help="size of the variation (default 0 for seed 0, else 1)")
    parser.add_argument("--no-ct", action="store_true", help="do not write the CT series")
    parser.add_argument("--no-case-file", action="store_true", help="do not write case.yaml (the clinical context)")
    args = parser.parse_args(argv)
    jitter = args.jitter if args.jitter is not None else (0.0 if args.seed == 0 else 1.0)
    spec = CaseSpec.variant(args.variant, seed=args.seed, jitter=jitter, include_ct=not args.no_ct)
    case = build_case(spec)
    files = write_case(case, args.out, name=args.variant)
    if not args.no_case_file:
        files.append(write_case_file(spec, args.out))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"wrote {len(files)} files ({size_mb:.1f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
