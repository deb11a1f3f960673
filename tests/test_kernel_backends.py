"""The kernels' two backends: ahead-of-time compiled (built at install) and numba JIT.

:mod:`plancheck.kernels` calls a compiled variant only when every argument has exactly
a type it was compiled for; a compiled function called with other types would read
memory it should not (it does not check), so the type test is proved here on every
kind of mismatch, and a mismatched call must give the JIT's answer. Both backends compile
the same source with the same options: their DVHs of the sample are compared value by
value (identical on this project's machine; a tolerance of 1e-12 relative leaves room for
another CPU's instruction selection and nothing else).

``pip install`` builds the extension; ``python -m plancheck.kernels.build`` rebuilds it
after the kernels' source changed (a stale one is not used).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import plancheck.kernels as kernels
from plancheck.dicom import read_export
from plancheck.dvh.engine import compute_dvh
from plancheck.dvh.metrics import evaluate_metric
from plancheck.kernels.signatures import SIGNATURES, ArgType, Signature, parse_token, source_digest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom"
COMPILED = kernels.backend().startswith("ahead-of-time")
REBUILD = "the ahead-of-time kernels are missing or stale: pip install -e . (or python -m plancheck.kernels.build)"


def test_the_install_built_the_current_extension() -> None:
    if os.environ.get("PLANCHECK_KERNELS") == "jit":
        pytest.skip("PLANCHECK_KERNELS=jit: the JIT backend was asked for")
    assert COMPILED, f"{REBUILD} ({kernels.backend()})"


# ----------------------------------------------------------------------------- the type test

@pytest.mark.parametrize("token, expected", [
    ("f8", ArgType("f8")),
    ("i8", ArgType("i8")),
    ("f4[:]", ArgType("f4", 1)),
    ("i8[:,:]", ArgType("i8", 2)),
    ("u1[:]r", ArgType("u1", 1, readonly=True)),
])
def test_tokens(token: str, expected: ArgType) -> None:
    assert parse_token(token) == expected


@pytest.mark.parametrize("token", ["f16", "f8[:", "b1", "i8r", "x[:]"])
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValueError, match="kernel argument type"):
        parse_token(token)


def test_numba_type_strings() -> None:
    assert parse_token("f8[:]").numba_text() == "f8[::1]"
    assert parse_token("i8[:,:]").numba_text() == "i8[:, ::1]"
    assert parse_token("u1[:]r").numba_text() == "Array(u1, 1, 'C', readonly=True)"


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("token, value, ok", [
    ("f8", 1.5, True),
    ("f8", np.float64(1.5), True),
    ("f8", 1, False),                      # numba would compile an int64 variant
    ("f8", np.float32(1.5), False),
    ("i8", 3, True),
    ("i8", np.int64(3), True),
    ("i8", True, False),
    ("i8", np.int32(3), False),
    ("i8", 2 ** 63, False),                # does not fit
    ("i8", 3.0, False),
    ("f8[:]", np.zeros(4), True),
    ("f8[:]", np.zeros(0), True),
    ("f8[:]", np.zeros(4, dtype=np.float32), False),
    ("f8[:]", np.zeros(4, dtype=">f8"), False),  # byte-swapped
    ("f8[:]", np.zeros(8)[::2], False),    # not contiguous
    ("f8[:]", np.zeros((2, 2)), False),    # wrong rank
    ("f8[:]", _readonly(np.zeros(4)), False),
    ("f8[:]", [0.0, 1.0], False),          # not an array
    ("f8[:,:]", np.zeros((3, 2)), True),
    ("f8[:,:]", np.zeros((2, 3)).T, False),  # Fortran order
    ("u1[:]r", _readonly(np.zeros(4, dtype=np.uint8)), True),
    ("u1[:]r", np.zeros(4, dtype=np.uint8), False),
    ("b1[:]", np.zeros(3, dtype=bool), True),
    ("b1[:]", np.zeros(3, dtype=np.uint8), False),
])
def test_arguments_match_only_their_exact_type(token: str, value: object, ok: bool) -> None:
    assert parse_token(token).matches(value) is ok


def test_a_signature_checks_the_number_and_every_type() -> None:
    sig = Signature.of("f8", "f8[:] i8")
    assert sig.matches((np.zeros(2), 3))
    assert not sig.matches((np.zeros(2),))
    assert not sig.matches((np.zeros(2), 3, 4))
    assert not sig.matches((np.zeros(2), 3.0))


def test_every_kernel_has_signatures() -> None:
    from plancheck.kernels import contour_checks, decimal_strings, jit
    from plancheck.kernels.signatures import SOURCES

    assert set(SOURCES["jit"]) == set(jit.__all__) - {"JIT_OPTIONS"}
    assert set(SOURCES["decimal_strings"]) == set(decimal_strings.__all__)
    assert set(SOURCES["contour_checks"]) == set(contour_checks.__all__)
    assert set(SIGNATURES) == set(SOURCES["jit"]) | set(SOURCES["decimal_strings"]) | set(SOURCES["contour_checks"])
    assert set(SIGNATURES) <= set(kernels.__all__)


# ----------------------------------------------------------------------------- the two backends agree

@pytest.fixture()
def use_jit(monkeypatch: pytest.MonkeyPatch):
    """Route every kernel of plancheck.kernels to its JIT function for one test."""
    for name in SIGNATURES:
        monkeypatch.setitem(kernels._cache, name, kernels.jit_kernel(name))


@pytest.fixture(scope="module")
def sample():
    return read_export(SAMPLE)


METRICS = ("Min[Gy]", "Mean[Gy]", "Max[Gy]", "D98%[Gy]", "D2%[Gy]", "D0.03cc[Gy]", "V20Gy[%]")
STRUCTURES = ("PTV_Met_Lung", "SpinalCord", "Esophagus")  # small SBRT target, thin organ, an organ near the PTV


def _metrics(sample) -> dict[tuple[str, str], float | None]:
    course = next(c for c in sample.courses if c.label == "C2_LungMet")
    rois = {r.name: r for r in course.structure_set.rois}
    out = {}
    for name in STRUCTURES:
        dvh = compute_dvh(rois[name], course.dose)
        out[(name, "volume")] = dvh.volume_cc
        for metric in METRICS:
            out[(name, metric)] = evaluate_metric(metric, dvh).value
    return out


@pytest.fixture(scope="module")
def compiled_metrics(sample):
    return _metrics(sample)


def test_jit_and_compiled_kernels_give_the_same_dvhs(sample, compiled_metrics, use_jit) -> None:
    if not COMPILED:
        pytest.skip(REBUILD)
    jit_metrics = _metrics(sample)
    assert jit_metrics.keys() == compiled_metrics.keys()
    for key, value in compiled_metrics.items():
        assert value is not None, key
        assert jit_metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_arguments_of_other_types_run_the_jit_function() -> None:
    """float32 samples: no compiled variant, so the JIT compiles one (as before the
    extension existed) and the answer is the JIT's, not a crash or garbage."""
    rng = np.random.default_rng(7)
    dose32 = rng.uniform(0, 60, 50).astype(np.float32)
    weight = rng.uniform(0, 1, 50)
    expected = kernels.jit_kernel("sample_stats")(dose32, weight)
    assert kernels.sample_stats(dose32, weight) == expected
    lo, hi, w_sum, dw_sum, n = expected
    assert (lo, hi, n) == (float(dose32.min()), float(dose32.max()), 50)
    assert w_sum == pytest.approx(weight.sum(), rel=1e-12)
    assert dw_sum == pytest.approx(float((dose32.astype(float) * weight).sum()), rel=1e-6)


def test_decimal_parser_on_both_backends() -> None:
    buf = np.frombuffer(b" 1.5\\-2\\3e2\\0.1 ", dtype=np.uint8)  # read-only, as from a file
    for parse in (kernels.parse_decimal_strings, kernels.jit_kernel("parse_decimal_strings")):
        values, status, _, _, count = parse(buf, 4)
        assert count == 4 and list(status) == [0, 0, 0, 0]
        assert list(values) == [1.5, -2.0, 300.0, 0.1]  # each the correctly rounded double of its text


def test_contour_measures_on_both_backends() -> None:
    # a 10 × 10 square with its closing point repeated, at z = 2 (area +100 mm² anticlockwise)
    points = np.array([[0.0, 0.0, 2.0], [10.0, 0.0, 2.0], [10.0, 10.0, 2.0], [0.0, 10.0, 2.0], [0.0, 0.0, 2.0]])
    sizes = np.array([5])
    for measure in (kernels.contour_measures, kernels.jit_kernel("contour_measures")):
        z_spread, keep, kept, areas, z_mean, sxx, syy, sxy = measure(points, sizes)
        assert keep.tolist() == [False, True, True, True, True] and kept.tolist() == [4]
        assert (z_spread[0], areas[0], z_mean[0], sxx[0], syy[0], sxy[0]) == (0.0, 100.0, 2.0, 25.0, 25.0, 0.0)


def test_crossing_test_on_both_backends() -> None:
    square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]
    bowtie = [[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]]  # edges 0 and 2 cross at (5, 5)
    xy = np.array(square + bowtie + square)
    sizes, planes = np.array([4, 4, 4]), np.array([0, 1, 2])
    for test in (kernels.crossing_flags, kernels.jit_kernel("crossing_flags")):
        assert test(xy, sizes, planes, 3).tolist() == [False, True, False]


def test_a_stale_extension_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    if not COMPILED:
        pytest.skip(REBUILD)
    monkeypatch.setattr(kernels, "source_digest", lambda: source_digest() + 1)
    extension, reason = kernels._load_extension()
    assert extension is None and "older than their source" in reason
    monkeypatch.setenv("PLANCHECK_KERNELS", "aot")
    with pytest.raises(RuntimeError, match="PLANCHECK_KERNELS=aot but JIT"):
        kernels._load_extension()


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANCHECK_KERNELS", "fast")
    with pytest.raises(RuntimeError, match="PLANCHECK_KERNELS='fast': expected one of auto, aot, jit"):
        kernels._load_extension()


def test_a_process_with_the_compiled_kernels_never_imports_numba() -> None:
    if not COMPILED:
        pytest.skip(REBUILD)
    code = ("import sys; from plancheck.dicom import read_export; from plancheck.dvh.engine import compute_dvh; "
            "e = read_export(sys.argv[1]); c = e.courses[0]; "
            "compute_dvh(next(r for r in c.structure_set.rois if r.name == 'SpinalCord'), c.dose); "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(SAMPLE)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
