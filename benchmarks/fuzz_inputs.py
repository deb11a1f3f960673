"""Thousands of mutated exports through ``plancheck check``: counts by outcome.

Usage::

    python benchmarks/fuzz_inputs.py [--count 2000] [--seed 1] [--subprocess 40] [--full] [--json OUT]

Each mutation (``tests/fuzz_mutations.py``: an element deleted, emptied or rewritten, a
sequence item removed or repeated, dose pixels truncated, negative or noisy, a file
truncated or with flipped bytes, an ROI's contours shuffled, stacked, sent to 1e9 mm, given
another ROI's number, duplicated, of an unknown geometric type, partly OPEN_PLANAR/POINT,
typed MARKER with a contour repeated, or declared in another frame of reference) is applied to the small
base export and checked in this process with ``plancheck.cli.main.main`` (JSON report, the
fuzz protocol: plan integrity and three DVH rules). ``--full`` mutates the whole sample
instead (three courses, the CT, the case file) and checks it against the built-in protocol
(about 3 s per check). Every outcome must be exit 0, 1, 3 or 4;
exit 3 with exactly one message; a PASS on a rule whose ROI a contour mutation corrupted is
a failure. ``--subprocess N`` also runs the first N mutations through the installed
``plancheck`` command and checks its standard error holds no traceback and no library
warning (every line is plancheck's own).

Reported: mutations by kind and exit code, the slowest check, and every failure with the
mutation that reproduces it (``Mutation(...)`` is a plain dataclass of
``tests/fuzz_mutations.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import fuzz_mutations as fm  # noqa: E402

from plancheck.cli.main import main  # noqa: E402

OK_CODES = (0, 1, 3, 4)


def run_in_process(export: Path, protocol: Path | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    chosen = ["--protocol", str(protocol)] if protocol is not None else []
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(export), *chosen, "--format", "json"])
    return int(code), out.getvalue(), err.getvalue()


def problems_of(mutation: fm.Mutation, code: int, out: str, err: str) -> list[str]:
    """What is wrong with one outcome (empty when it is acceptable)."""
    found = []
    if code not in OK_CODES:
        found.append(f"exit {code}")
    if "Traceback" in err:
        found.append("traceback on stderr")
    if code == 3 and sum(line.startswith("plancheck: ") for line in err.splitlines()) != 1:
        found.append("exit 3 without exactly one message")
    if code in (0, 1, 4):
        try:
            doc = json.loads(out)
        except ValueError:
            return found + ["report is not JSON"]
        if mutation.kind == "contour":
            for result in doc["results"]:
                if result["status"] == "PASS" and set(result.get("structures") or ()) & set(mutation.corrupts):
                    found.append(f"{result['rule_id']} PASS on corrupted {mutation.corrupts}")
    return found


def main_cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--subprocess", type=int, default=0, metavar="N")
    parser.add_argument("--full", action="store_true", help="mutate the whole sample, built-in protocol")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="plancheck-fuzz-"))
    try:
        base = fm.build_base(work / "base", full=args.full)
        protocol: Path | None = None
        if not args.full:
            protocol = fm.write_fuzz_protocol(work)
        rng = random.Random(args.seed)
        by_code: Counter = Counter()
        by_kind: Counter = Counter()
        failures: list[dict] = []
        slowest = (0.0, None)
        started = time.perf_counter()
        for index in range(args.count):
            mutation = fm.random_mutation(rng, full=args.full)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's remarks while writing the corrupt file
                export = fm.apply(mutation, base, work / "case")
            t0 = time.perf_counter()
            code, out, err = run_in_process(export, protocol)
            elapsed = time.perf_counter() - t0
            if elapsed > slowest[0]:
                slowest = (elapsed, mutation)
            by_code[code] += 1
            by_kind[(mutation.kind, mutation.operation, code)] += 1
            found = problems_of(mutation, code, out, err)
            if index < args.subprocess:
                chosen = ["--protocol", str(protocol)] if protocol is not None else []
                proc = subprocess.run([sys.executable, "-m", "plancheck", "check", str(export), *chosen,
                                       "--format", "json"], capture_output=True, text=True)
                foreign = [line for line in proc.stderr.splitlines()
                           if not line.startswith(("plancheck: ", "WARNING plancheck", "ERROR plancheck"))]
                if proc.returncode != code:
                    found.append(f"exit {proc.returncode} as a command, {code} in process")
                if foreign:
                    found.append(f"foreign stderr lines: {foreign[:2]}")
            if found:
                failures.append({"mutation": repr(mutation), "exit": code, "problems": found, "stderr": err[-400:]})
        total = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.count} mutations (seed {args.seed}, {'whole sample' if args.full else 'small base'}) in {total:.0f} s ({1000 * total / max(args.count, 1):.0f} ms each); "
          f"slowest check {slowest[0]:.2f} s ({slowest[1]!r})")
    print("exit codes: " + ", ".join(f"{code}: {n}" for code, n in sorted(by_code.items())))
    print(f"{'kind':<10}{'operation':<16}" + "".join(f"{'exit ' + str(c):>9}" for c in (0, 1, 3, 4, 70)))
    for kind, operation in sorted({(k, o) for k, o, _ in by_kind}):
        print(f"{kind:<10}{operation:<16}" + "".join(f"{by_kind[(kind, operation, c)]:>9}" for c in (0, 1, 3, 4, 70)))
    print(f"failures: {len(failures)}")
    for failure in failures[:20]:
        print(f"  {failure['mutation']}: {'; '.join(failure['problems'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "count": args.count, "seed": args.seed, "seconds": total,
            "exit_codes": {str(k): v for k, v in by_code.items()},
            "by_kind": [{"kind": k, "operation": o, "exit": c, "n": n} for (k, o, c), n in sorted(by_kind.items())],
            "failures": failures,
        }, indent=1), encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main_cli())
