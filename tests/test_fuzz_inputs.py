"""Fuzzing: mutated copies of the sample's RT files through ``plancheck check``.

Hypothesis draws mutations (``fuzz_mutations.py``: elements deleted, emptied or rewritten,
sequence items removed or repeated, dose pixels truncated or negative, files truncated or
with flipped bytes, one ROI's contours shuffled, stacked, sent to 1e9 mm, renumbered,
duplicated or of an unknown geometric type) with a fixed seed (``derandomize``, no example
database) and a bounded number of examples, so the file runs in about 15 s. Every outcome
must be exit 0, 1, 3 or 4 — never 70 — with one message for exit 3, no traceback, and never
a PASS on a rule whose ROI was corrupted. ``benchmarks/fuzz_inputs.py`` runs thousands.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_mutations as fm
from plancheck.cli.main import main

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fm.build_base(tmp_path_factory.mktemp("fuzz") / "base")


@pytest.fixture(scope="module")
def protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fm.write_fuzz_protocol(tmp_path_factory.mktemp("fuzz-protocol"))


def _mutate(mutation: fm.Mutation, base: Path, out: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's remarks while writing the corrupt values
        return fm.apply(mutation, base, out)


def _check(export: Path, protocol: Path, caplog: pytest.LogCaptureFixture) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    caplog.clear()
    with caplog.at_level(logging.WARNING), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(export), "--protocol", str(protocol), "--format", "json"])
    foreign = [r for r in caplog.records if r.levelno >= logging.WARNING and not r.name.startswith("plancheck")]
    assert foreign == [], f"library log records reached the user: {[r.getMessage() for r in foreign]}"
    return int(code), out.getvalue(), err.getvalue()


def _assert_documented_outcome(mutation: fm.Mutation, code: int, out: str, err: str) -> dict | None:
    assert code in (0, 1, 3, 4), f"{mutation}: exit {code}: {err}"
    assert "Traceback" not in err
    if code == 3:
        messages = [line for line in err.splitlines() if line.startswith("plancheck: ")]
        assert len(messages) == 1 and messages[0].startswith("plancheck: unusable input: "), err
        return None
    return json.loads(out)


_tags = st.builds(fm.Mutation, kind=st.just("tag"), file=st.sampled_from(fm.FILES),
                  seed=st.integers(0, 2**31 - 1), operation=st.sampled_from(["delete", "set", "set"]),
                  value=st.sampled_from(fm.TAG_VALUES))
_sequences = st.builds(fm.Mutation, kind=st.just("sequence"), file=st.sampled_from(fm.FILES),
                       seed=st.integers(0, 2**31 - 1),
                       operation=st.sampled_from(["empty", "delete_item", "duplicate_item"]))
_pixels = st.builds(fm.Mutation, kind=st.just("pixels"), file=st.just("RD.dcm"), seed=st.integers(0, 2**31 - 1),
                    operation=st.sampled_from(["truncate", "negative", "noise"]))
_bytes = st.builds(fm.Mutation, kind=st.just("bytes"), file=st.sampled_from(fm.FILES),
                   seed=st.integers(0, 2**31 - 1), operation=st.sampled_from(["truncate", "flip"]))


@st.composite
def _contours(draw) -> fm.Mutation:
    roi = draw(st.sampled_from(fm.BASE_ROIS))
    operation = draw(st.sampled_from(fm.CONTOUR_OPERATIONS))
    return fm.Mutation("contour", "RS.dcm", draw(st.integers(0, 2**31 - 1)), operation, roi=roi, corrupts=(roi,))


@settings(FUZZ, max_examples=40)
@given(mutation=st.one_of(_tags, _tags, _sequences, _pixels, _bytes))
def test_every_mutation_has_a_documented_outcome(mutation: fm.Mutation, base: Path, protocol: Path,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    export = _mutate(mutation, base, tmp_path / "case")
    _assert_documented_outcome(mutation, *_check(export, protocol, caplog))


@settings(FUZZ, max_examples=15)
@given(mutation=_contours())
def test_a_rule_on_a_corrupted_roi_never_passes(mutation: fm.Mutation, base: Path, protocol: Path,
                                                tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    export = _mutate(mutation, base, tmp_path / "case")
    code, out, err = _check(export, protocol, caplog)
    doc = _assert_documented_outcome(mutation, code, out, err)
    assert doc is not None, f"{mutation}: a corrupted ROI is not an input error: {err}"
    on_roi = [r for r in doc["results"] if mutation.roi in (r.get("structures") or ())]
    assert all(r["status"] != "PASS" for r in on_roi), [(r["rule_id"], r["status"]) for r in on_roi]
    # The DVH rule on the ROI itself says why it was not measured.
    own = {"SpinalCord": "FUZZ-CORD-MAX", "Heart": "FUZZ-HEART-MEAN", "PTVp": "FUZZ-PTV-D95"}.get(mutation.roi)
    if own is not None:
        (result,) = [r for r in doc["results"] if r["rule_id"] == own]
        assert result["status"] == "NOT_EVALUATED" and "cannot be measured" in result["message"], result


@settings(FUZZ, max_examples=5)
@given(mutation=st.builds(fm.Mutation, kind=st.just("pixels"), file=st.just("RD.dcm"),
                          seed=st.integers(0, 2**31 - 1), operation=st.sampled_from(["truncate", "negative"])))
def test_a_corrupted_dose_is_refused(mutation: fm.Mutation, base: Path, protocol: Path, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    # Truncated pixel data and negative doses are input errors naming the dose file: never
    # clipped to 0, never a rule on them.
    export = _mutate(mutation, base, tmp_path / "case")
    code, _, err = _check(export, protocol, caplog)
    assert code == 3
    assert "RD.dcm: " in err and ("truncated" in err or "negative dose value" in err), err


def test_the_command_prints_only_its_own_messages(base: Path, protocol: Path, tmp_path: Path) -> None:
    # As a command (not in-process): standard error holds plancheck's own lines only — no
    # traceback, no pydicom/numpy/numba warning. A beam name of 100 characters (LO allows 64)
    # makes pydicom log and warn when it reads it: shown with --debug only.
    # (benchmarks/fuzz_inputs.py --subprocess runs many mutations this way.)
    export = _mutate(fm.Mutation("none", "RP.dcm", 0), base, tmp_path / "case")
    ds = pydicom.dcmread(export / "RP.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.BeamSequence[0].BeamName = "x" * 100
    ds.save_as(export / "RP.dcm")
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    runs = {}
    for extra in ([], ["--debug"]):
        runs[bool(extra)] = subprocess.run(
            [sys.executable, "-m", "plancheck", *extra, "check", str(export), "--protocol", str(protocol),
             "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    quiet, debug = runs[False], runs[True]
    assert quiet.returncode == debug.returncode == 0
    assert "exceeds the maximum length of 64 allowed for VR LO" in debug.stderr  # the input does provoke them
    assert quiet.stderr == ""
