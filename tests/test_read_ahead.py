"""Reading the export in a forked process while the protocol and the case file load
(:mod:`plancheck.analysis.read_ahead`, :class:`plancheck.parallel.ForkedCall`,
:mod:`plancheck.fork_transfer`).

* the transfer: a value with large and small arrays comes back equal, its arrays writable
  and aligned, through the memory file and (where there is none) in the pickle;
* a child that dies, raises or sends what cannot be pickled costs time, not results: the
  value is computed here, and an error is raised here with its own message;
* what the child logs is logged here once, and not at all when its value is not used;
* leaving the ``with`` block ends a child whose value was not taken;
* ``plancheck check``: the same report and exit code with and without the forked reading
  (the sample, an export that cannot be read); the parent never imports pydicom; a case file
  whose courses differ from the child's guess gets the export read again, with its courses.

Forking is refused while other threads run (the test runner's workers have some), so these
tests run in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fresh_interpreter import run_fresh

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forking is used on Linux only")


@pytest.mark.parametrize("memory_file", [True, False])
def test_a_value_with_arrays_comes_back_equal_writable_and_aligned(memory_file: bool) -> None:
    got = run_fresh(f"""
        import json, os
        import numpy as np
        import plancheck.fork_transfer as transfer
        from plancheck.parallel import ForkedCall
        if not {memory_file!r}:
            transfer._memory_file = lambda: None  # as where memfd_create is missing
        parent = os.getpid()
        def compute():
            rng = np.random.default_rng(1)
            big = rng.random((300, 1001))             # 2.4 MB
            small = [np.arange(k, dtype=np.int32) for k in range(1, 60)]
            empty = np.zeros((0, 3))
            return {{"pid": os.getpid(), "big": big, "small": small, "empty": empty, "text": "é"}}
        with ForkedCall(compute) as call:
            forked = call.forked
            value = call.result()
        expected = compute()
        value["big"][0, 0] = -1.0  # writable
        try:
            os.waitpid(-1, os.WNOHANG); zombies = True
        except ChildProcessError:
            zombies = False
        print(json.dumps({{
            "forked": forked, "other_pid": value["pid"] != parent, "zombies": zombies,
            "big": bool(np.array_equal(value["big"][1:], expected["big"][1:])),
            "small": all(np.array_equal(a, b) and a.dtype == b.dtype
                         for a, b in zip(value["small"], expected["small"])),
            "empty": value["empty"].shape == (0, 3), "text": value["text"],
            "aligned": all(a.flags.aligned for a in [value["big"], *value["small"]]),
        }}))
    """)
    assert got == {"forked": True, "other_pid": True, "zombies": False, "big": True, "small": True,
                   "empty": True, "text": "é", "aligned": True}


@pytest.mark.parametrize("failure", ["dies", "raises", "unpicklable"])
def test_a_failing_child_costs_time_not_the_value(failure: str) -> None:
    got = run_fresh(f"""
        import json, os
        from plancheck.parallel import ForkedCall
        parent = os.getpid()
        def compute():
            if os.getpid() != parent:
                if {failure!r} == "dies":
                    os._exit(3)
                if {failure!r} == "raises":
                    raise RuntimeError("a bug in the child")
                return lambda: 1  # cannot be pickled
            return os.getpid()
        call = ForkedCall(compute)
        print(json.dumps({{"forked": call.forked, "here": call.result() == parent}}))
    """)
    assert got == {"forked": True, "here": True}


def test_an_error_is_raised_here_with_its_own_message() -> None:
    got = run_fresh("""
        import json
        from plancheck.errors import DicomReadError
        from plancheck.parallel import ForkedCall
        def compute():
            raise DicomReadError("is truncated", "RD.dcm")
        try:
            ForkedCall(compute).result()
            message = None
        except DicomReadError as exc:
            message = str(exc)
        print(json.dumps({"message": message}))
    """)
    assert got["message"] is not None and "RD.dcm" in got["message"] and "is truncated" in got["message"]


def test_what_the_child_logs_is_logged_here_once_and_only_when_its_value_is_used() -> None:
    got = run_fresh("""
        import json, logging, os
        from plancheck.parallel import ForkedCall
        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append((record.name, record.levelname, record.getMessage(), os.getpid()))
        logging.getLogger().addHandler(Keep())
        log = logging.getLogger("plancheck.test")
        parent = os.getpid()
        def compute():
            log.warning("read %d files", 3)
            return 1
        value = ForkedCall(compute).result()
        used = list(seen)
        seen.clear()
        def failing():
            log.warning("a warning before the failure")
            if os.getpid() != parent:
                raise RuntimeError("child fails")
            return 2
        value2 = ForkedCall(failing).result()
        failed = list(seen)
        seen.clear()
        refused = ForkedCall(compute).result(fallback=lambda: 3, accept=lambda value: value != 1)
        print(json.dumps({"used": used, "failed": failed, "refused": [refused, seen], "parent": parent,
                          "values": [value, value2]}))
    """)
    assert got["values"] == [1, 2]
    assert [tuple(x[:3]) for x in got["used"]] == [("plancheck.test", "WARNING", "read 3 files")]
    assert got["used"][0][3] == got["parent"]  # emitted by this process's handler
    # the failed child's record is dropped; the computation here logs it once
    assert [tuple(x[:3]) for x in got["failed"]] == [("plancheck.test", "WARNING", "a warning before the failure")]
    # a value refused by ``accept``: the fallback's, and nothing of the child's logged
    assert got["refused"] == [3, []]


def test_leaving_the_block_ends_a_child_whose_value_was_not_taken() -> None:
    got = run_fresh("""
        import json, os, time
        from plancheck.parallel import ForkedCall
        try:
            with ForkedCall(lambda: time.sleep(30)) as call:
                forked = call.forked
                raise KeyError("the protocol does not load")
        except KeyError:
            pass
        try:
            os.waitpid(-1, os.WNOHANG); children = True
        except ChildProcessError:
            children = False
        print(json.dumps({"forked": forked, "children": children}))
    """)
    assert got == {"forked": True, "children": False}


def test_not_forked_when_disabled_or_with_other_threads() -> None:
    got = run_fresh("""
        import json, os, threading
        from plancheck.parallel import ForkedCall
        disabled = ForkedCall(os.getpid, enabled=False)
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait)
        worker.start()
        threaded = ForkedCall(os.getpid)
        stop.set(); worker.join()
        print(json.dumps({"disabled": [disabled.forked, disabled.result() == os.getpid()],
                          "threaded": [threaded.forked, threaded.result() == os.getpid()]}))
    """)
    assert got == {"disabled": [False, True], "threaded": [False, True]}


# ----------------------------------------------------------------------------- plancheck check

def _check(args: list[str], **env: str) -> tuple[int, str, str]:
    full_env = {**{k: v for k, v in os.environ.items() if k != "PLANCHECK_THREADS"}, **env}
    out = subprocess.run([sys.executable, "-m", "plancheck", "check", *args], capture_output=True, text=True,
                         env=full_env, timeout=300)
    return out.returncode, out.stdout, out.stderr


def _without_timing(report: str) -> dict:
    data = json.loads(report)
    data.pop("elapsed_s", None)
    for key in ("generated", "generated_at"):
        data.pop(key, None)
    return data


def test_check_reports_the_same_with_and_without_reading_ahead() -> None:
    forked = _check(["--format", "json", str(SAMPLE)])
    plain = _check(["--format", "json", str(SAMPLE)], PLANCHECK_THREADS="1")
    assert forked[0] == plain[0]
    assert _without_timing(forked[1]) == _without_timing(plain[1])
    assert forked[2] == plain[2]


def test_an_export_that_cannot_be_read_gives_the_same_error(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for name in ("RP.dcm", "RS.dcm", "RD.dcm"):
        (export / name).write_bytes((SAMPLE / sorted(p.name for p in SAMPLE.glob("R*.dcm"))[0]).read_bytes()[:300])
    forked = _check([str(export)])
    plain = _check([str(export)], PLANCHECK_THREADS="1")
    assert forked == plain
    assert forked[0] not in (0, 1, 2) and "Traceback" not in forked[2] and forked[2].count("\n") <= 3


def test_the_parent_never_imports_pydicom_and_a_wrong_guess_is_read_again(tmp_path: Path) -> None:
    # a case file naming two of the sample's three plans as the courses
    case_path = tmp_path / "case.yaml"
    case_path.write_text((SAMPLE / "case.yaml").read_text(encoding="utf-8")
                         + "\ncourses:\n  - plan: C1_Eso\n  - plan: C3_VertMet\n", encoding="utf-8")
    got = run_fresh(f"""
        import json, os, sys
        import plancheck.analysis.read_ahead as read_ahead
        sample, case_path = {str(SAMPLE)!r}, {str(case_path)!r}
        with read_ahead.ExportReadAhead(sample, case_path) as reading:
            forked = reading.forked
            from plancheck.analysis.check_treatment import read_case, selection_for
            case = read_case(case_path)
            export = reading.export(selection_for(case, case_path))
        imported = "pydicom" in sys.modules
        courses = [c.label for c in export.courses]
        # a guess that differs from the validated case's courses: the export is read again here
        read_ahead.declared_plans = lambda source: None
        with read_ahead.ExportReadAhead(sample, case_path) as reading:
            again = reading.export(selection_for(case, case_path))
        print(json.dumps({{"forked": forked, "pydicom": imported, "courses": courses,
                          "again": [c.label for c in again.courses]}}))
    """)
    assert got["forked"] and not got["pydicom"]
    assert got["courses"] == ["C1_Eso", "C3_VertMet"] == got["again"]
