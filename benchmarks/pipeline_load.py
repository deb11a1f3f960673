"""The receiver under load: N exports from concurrent DCMTK storescu clients while idle
connections are held open.

Usage::

    python benchmarks/pipeline_load.py [--exports 6] [--clients 3] [--idle 10] [--no-ct] [--json OUT]

Generates ``--exports`` synthetic patients (the sample case of ``scripts/make_sample_dicom.py``:
three courses, 24 structures, CT, with a different seed, jitter and patient ID each) into
``benchmarks/_work/pipeline/exports/`` (once; reused while the specs are unchanged), starts
``plancheck serve`` (the real command, default protocol, JSON reports) on a free loopback port,
holds ``--idle`` TCP connections open that never request an association (reopened as soon as
the receiver closes them), and sends the exports from ``--clients`` concurrent DCMTK
``storescu`` processes (one export per process, ``--clients`` at a time, all queued at once).

Reported:

* plans per minute: plans checked / (last report − first object sent);
* time from the last object of an export (its storescu exiting after the last C-STORE
  response) to its report appearing in ``checks.jsonl``: median, p95 and maximum;
* lost plans: plans sent whose treatment got no check record within ``--timeout`` seconds
  (and records with status ERROR, counted apart);
* idle connections opened and closed by the receiver during the run.

Goal (issue 11): 0 lost, p95 under 10 s for the sample on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test kit (testkit/, not installed) generates the cases
WORK = REPO / "benchmarks" / "_work" / "pipeline"


def _spec(i: int, ct: bool) -> dict:
    return {"seed": 2000 + i, "jitter": 0.25 + 0.25 * (i % 4), "violations": i % 3 == 0, "include_ct": ct,
            "patient_id": f"LOAD-{i:03d}", "patient_name": f"LOAD^CASE{i:03d}"}


def _generate(args: tuple[int, dict, str]) -> int:
    from testkit.write import write_case
    from testkit.synthetic import CaseSpec, build_case

    i, kwargs, out = args
    write_case(build_case(CaseSpec(**kwargs)), Path(out), name=f"load{i:03d}")
    return i


def generate(n: int, ct: bool) -> list[Path]:
    exports = WORK / "exports"
    manifest = WORK / "exports.json"
    wanted = [_spec(i, ct) for i in range(n)]
    folders = [exports / f"patient{i:03d}" for i in range(n)]
    if manifest.exists() and json.loads(manifest.read_text()) == wanted and all(f.is_dir() for f in folders):
        print(f"reusing {n} exports in {exports}", file=sys.stderr)
        return folders
    shutil.rmtree(exports, ignore_errors=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        for done, _ in enumerate(pool.map(_generate, [(i, kw, str(f)) for i, (kw, f) in enumerate(zip(wanted, folders))]), 1):
            print(f"\rgenerated {done}/{n} exports", end="", file=sys.stderr)
    print(f" in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(wanted))
    return folders


def _frame_and_plans(folder: Path) -> tuple[str, int]:
    from pydicom import dcmread

    plans = [dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("RP_*.dcm"))]
    return str(plans[0].FrameOfReferenceUID), len(plans)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IdleConnections:
    """``count`` TCP connections that never send anything, reopened when the receiver closes them."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.opened = self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return None
        s.setblocking(False)
        self.opened += 1
        return s

    def _run(self) -> None:
        sockets: list[socket.socket] = []
        while not self._stop.wait(0.2):
            for s in list(sockets):
                try:
                    gone = s.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    self.closed_by_server += 1
                    s.close()
                    sockets.remove(s)
            while len(sockets) < self.count:
                s = self._open()
                if s is None:
                    break
                sockets.append(s)
        for s in sockets:
            s.close()

    def __enter__(self) -> IdleConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", type=int, default=6)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10, help="idle connections held open")
    parser.add_argument("--no-ct", action="store_true", help="exports without their CT series")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the last report")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    storescu = shutil.which("storescu", path="/usr/bin:" + os.environ.get("PATH", ""))
    if not storescu:
        parser.error("DCMTK storescu is required (apt-get install dcmtk)")

    folders = generate(args.exports, not args.no_ct)
    expected = {}
    for folder in folders:
        frame, plans = _frame_and_plans(folder)
        expected[folder] = (frame, plans)
    store, reports = WORK / "store", WORK / "reports"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(reports, ignore_errors=True)
    port = _free_port()
    (WORK / "serve.log").unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "plancheck", "serve", "--port", str(port), "--store", str(store),
                               "--reports", str(reports), "--no-html", "--min-free-mb", "0",
                               "--log-file", str(WORK / "serve.log")], stderr=subprocess.DEVNULL)
    log = WORK / "serve.log"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "listening on" in log.read_text()):
            time.sleep(0.1)
        if not (log.exists() and "listening on" in log.read_text()):
            print("the receiver did not start", file=sys.stderr)
            return 1
        sent_at: dict[Path, float] = {}
        send_status: dict[Path, int] = {}
        first_send = time.time()

        def send(folder: Path) -> None:
            done = subprocess.run([storescu, "-aet", "LOADTEST", "-aec", "PLANCHECK", "+sd", "+r", "-to", "30",
                                   "127.0.0.1", str(port), str(folder)], capture_output=True, text=True)
            sent_at[folder] = time.time()
            send_status[folder] = done.returncode

        seen: dict[str, tuple[float, dict]] = {}
        wanted = {frame for frame, _ in expected.values()}
        checks = reports / "checks.jsonl"
        sending_done = threading.Event()

        def watch_records() -> None:
            """Note when each check record appears, from the first send on (a record's time is
            when it is first seen here, within 50 ms, whatever the senders are doing)."""
            deadline = None
            offset = 0
            while not wanted <= set(seen):
                if sending_done.is_set():
                    deadline = deadline or time.monotonic() + args.timeout
                    if time.monotonic() > deadline:
                        return
                if checks.exists():
                    with checks.open(encoding="utf-8") as fh:
                        fh.seek(offset)
                        while line := fh.readline():
                            if not line.endswith("\n"):  # a record being written: read it whole next time
                                break
                            record = json.loads(line)
                            seen.setdefault(record["treatment_id"], (time.time(), record))
                            offset = fh.tell()
                time.sleep(0.05)

        with IdleConnections(port, args.idle) as idle:
            time.sleep(1.0)  # the idle connections are in place before the first sender
            watcher = threading.Thread(target=watch_records, daemon=True)
            watcher.start()
            first_send = time.time()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                list(pool.map(send, folders))
            sending_done.set()
            watcher.join()
            idle_opened, idle_closed = idle.opened, idle.closed_by_server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()

    latencies, lost, errors, checked_plans = [], 0, 0, 0
    for folder, (frame, plans) in expected.items():
        if frame not in seen:
            lost += plans
            continue
        at, record = seen[frame]
        latencies.append(at - sent_at[folder])
        checked_plans += len(record["plan_uids"]) or plans
        errors += record["status"] == "ERROR"
    last = max((at for at, _ in seen.values()), default=first_send)
    total_plans = sum(p for _, p in expected.values())
    q = sorted(latencies)
    p95 = q[min(len(q) - 1, max(0, int(round(0.95 * len(q) + 0.5)) - 1))] if q else float("nan")
    result = {
        "cpus": os.cpu_count(), "exports": args.exports, "plans": total_plans, "clients": args.clients,
        "idle_connections": args.idle, "ct": not args.no_ct,
        "storescu_failures": sum(1 for c in send_status.values() if c != 0),
        "plans_per_min": round(60 * checked_plans / max(last - first_send, 1e-9), 1),
        "latency_s": {"median": round(statistics.median(q), 2) if q else None, "p95": round(p95, 2) if q else None,
                      "max": round(q[-1], 2) if q else None},
        "lost_plans": lost, "error_records": errors,
        "idle_connections_opened": idle_opened, "idle_connections_closed_by_receiver": idle_closed,
        "wall_s": round(last - first_send, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    with (WORK / "serve.log").open(encoding="utf-8") as fh:
        refused = sum(1 for line in fh if re.search(r"\) rejected|refused(:| while)|check failed", line))
    print(f"receiver log: {refused} association(s) rejected, object(s) refused or check(s) failed "
          f"(see {WORK / 'serve.log'})", file=sys.stderr)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
