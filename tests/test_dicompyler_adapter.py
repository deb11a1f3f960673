"""plancheck against dicompyler-core 0.5.6 on the same DICOM files, and the adapter itself.

The phantoms of ``phantoms.py`` are written to RTSTRUCT/RTDOSE files with
:mod:`testkit.write` and read back with plancheck's readers; dicompyler-core's
``dvhcalc.get_dvh`` reads the same files. The exact answers come from the phantom
(contours are written to 0.01 mm and dose as 16-bit integers: both far below the
tolerances used).

How dicompyler-core 0.5.6 computes (what the comparisons must allow for): a dose voxel
counts when its centre lies inside a contour (no partial volumes), each contour plane
takes the dose plane within 0.5 mm of it as is (interpolating only when none is that
close), the end planes get no half-slab caps beyond what the voxel rows give, and its
``D``/``V`` statistics take the nearest 0.01 Gy bin without interpolation.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from phantoms import LinearDose, linear_dose_grid, sphere
from plancheck.dicom import read_dose, read_structure_set
from plancheck.dicom.compat import load_dataset, pydicom_read_file_alias
from testkit.write import PatientSpec, RoiSpec, rtdose_dataset, rtstruct_dataset, save_dataset
from plancheck.dvh.dicompyler_adapter import dicompyler_dvh, from_dicompyler, to_dicompyler
from plancheck.dvh.engine import compute_dvh
from plancheck.dvh.metrics import evaluate_metric
from plancheck.errors import UsageError

FRAME = "1.2.826.0.1.3680043.8.498.77"
PATIENT = PatientSpec("PC-DVH-XCHECK", "TEST^DVH")


def _write_case(directory, phantom, dose: LinearDose, grid_mm: float):
    """Write the phantom (ROI 1) and its linear dose; return the file paths."""
    grid = linear_dose_grid(dose, phantom.bounds_mm(), grid_mm, frame=FRAME)
    rs = save_dataset(rtstruct_dataset(
        rois=[RoiSpec(1, phantom.name, "ORGAN", [c.points_mm for c in phantom.roi.contours])],
        frame_of_reference_uid=FRAME, patient=PATIENT), directory / "RS.dcm")
    rd = save_dataset(rtdose_dataset(
        dose_gy=grid.dose_gy, origin_mm=(grid.x_mm[0], grid.y_mm[0], grid.z_mm[0]),
        spacing_mm=(grid_mm,) * 3, frame_of_reference_uid=FRAME, referenced_plan_uid="1.2.826.0.1.3680043.8.498.78",
        patient=PATIENT), directory / "RD.dcm")
    return rs, rd


class Case:
    """A phantom written to disk, with both engines' DVHs of it."""

    def __init__(self, tmp_path_factory, name: str, phantom, dose: LinearDose, grid_mm: float) -> None:
        self.phantom, self.dose = phantom, dose
        self.rs, self.rd = _write_case(tmp_path_factory.mktemp(name), phantom, dose, grid_mm)
        roi = read_structure_set(self.rs).roi_by_number(1)
        self.plancheck = compute_dvh(roi, read_dose(self.rd))
        self.dicompyler = dicompyler_dvh(str(self.rs), str(self.rd), 1, name=phantom.name)

    def raw_dicompyler(self):
        """dicompyler-core's own DVH object, as a dicompyler-core user gets it."""
        with pydicom_read_file_alias():
            from dicompylercore import dicomparser  # noqa: F401  (get_dvh imports it later)
            from dicompylercore import dvhcalc
        return dvhcalc.get_dvh(load_dataset(self.rs), load_dataset(self.rd), 1)

    def value(self, engine: str, metric: str):
        return evaluate_metric(metric, getattr(self, engine)).value


@pytest.fixture(scope="module")
def large_x(tmp_path_factory) -> Case:
    """30 cc sphere, 2 mm contours, 1 Gy/mm along x on a 1 mm grid: dicompyler-core's best case."""
    return Case(tmp_path_factory, "large_x", sphere(30.0, 2.0), LinearDose(0, 40.0), 1.0)


@pytest.fixture(scope="module")
def large_z(tmp_path_factory) -> Case:
    """The same sphere with the gradient along z; the dose planes sit 0.37 mm off the contours."""
    return Case(tmp_path_factory, "large_z", sphere(30.0, 2.0), LinearDose(2, 40.0), 1.0)


@pytest.fixture(scope="module")
def small_z(tmp_path_factory) -> Case:
    """0.5 cc sphere (r = 4.9 mm), 1 mm contours, z gradient on a 3 mm grid."""
    return Case(tmp_path_factory, "small_z", sphere(0.5, 1.0), LinearDose(2, 40.0), 3.0)


@pytest.fixture(scope="module")
def tiny_x(tmp_path_factory) -> Case:
    """0.36 cc sphere, x gradient on a 2 mm grid."""
    return Case(tmp_path_factory, "tiny_x", sphere(0.36, 1.0), LinearDose(0, 40.0), 2.0)


# ------------------------------------------------------------------------------ agreement

def test_engines_agree_on_a_large_structure_with_a_fine_grid(large_x: Case) -> None:
    """Volume and Mean of a 30 cc sphere on a 1 mm grid.

    dicompyler-core decides voxel by voxel at the surface: each voxel centre in or out
    is ±1 mm³. Over the ~4700 mm² surface of a 30 cc sphere these errors mostly cancel;
    2 % of the volume (0.6 cc, a 0.13 mm shell) and 0.2 Gy of mean dose (0.2 mm at
    1 Gy/mm, a fifth of a voxel) are what a correct voxel-centre engine must meet.
    plancheck itself is held to the exact answer.
    """
    exact_volume = large_x.phantom.volume_cc
    exact_mean = large_x.phantom.mean_gy(large_x.dose)
    assert large_x.value("plancheck", "Volume[cc]") == pytest.approx(exact_volume, rel=1e-3)
    assert large_x.value("plancheck", "Mean[Gy]") == pytest.approx(exact_mean, abs=0.02)
    assert large_x.value("dicompyler", "Volume[cc]") == pytest.approx(large_x.value("plancheck", "Volume[cc]"), rel=0.02)
    assert large_x.value("dicompyler", "Mean[Gy]") == pytest.approx(large_x.value("plancheck", "Mean[Gy]"), abs=0.2)
    # and the dose-volume points, within a voxel of dose (1 Gy at 1 Gy/mm)
    for metric in ("D95%[Gy]", "D50%[Gy]", "D5%[Gy]"):
        assert large_x.value("dicompyler", metric) == pytest.approx(large_x.value("plancheck", metric), abs=1.0)
    assert large_x.dicompyler.engine == "dicompyler-core"


# ------------------------------------------------------------------------------ where dicompyler-core is wrong

def test_dicompyler_d99_of_a_small_sphere_is_zero(small_z: Case) -> None:
    """dicompyler-core's D99 of a 0.5 cc sphere is 0 Gy: its cumulative curve drops from
    100 % to below 98 % within one bin, and its nearest-bin lookup then picks the 100 %
    plateau that starts at 0 Gy. plancheck interpolates the exact curve."""
    exact = small_z.phantom.dose_at_percent_gy(small_z.dose, 99)
    assert 35.0 < exact < 36.5
    assert float(small_z.raw_dicompyler().D99.value) == 0.0
    assert small_z.value("plancheck", "D99%[Gy]") == pytest.approx(exact, abs=0.05)


def test_dicompyler_misses_the_end_caps_of_a_small_sphere(small_z: Case) -> None:
    """Min and Max of a 0.5 cc sphere under a 1 Gy/mm z gradient lie on the end-cap faces,
    half a contour spacing beyond the last contours (35.5 and 44.5 Gy). dicompyler-core
    stops at the contour planes (36 and 44 Gy): 0.5 Gy off, 1.4 % of the dose."""
    phantom, dose = small_z.phantom, small_z.dose
    assert phantom.min_gy(dose) == pytest.approx(35.5, abs=0.01)
    assert small_z.value("plancheck", "Min[Gy]") == pytest.approx(phantom.min_gy(dose), abs=0.01)
    assert small_z.value("plancheck", "Max[Gy]") == pytest.approx(phantom.max_gy(dose), abs=0.01)
    assert small_z.value("dicompyler", "Min[Gy]") - phantom.min_gy(dose) == pytest.approx(0.5, abs=0.05)
    assert phantom.max_gy(dose) - small_z.value("dicompyler", "Max[Gy]") == pytest.approx(0.5, abs=0.05)


def test_dicompyler_d2cc_of_a_036cc_structure_is_zero(tiny_x: Case) -> None:
    """The silent pass of STYLE.md: dicompyler-core reports D2cc = 0 Gy for a 0.36 cc
    structure. plancheck says the metric is undefined, with the reason — and does so also
    for a DVH computed by dicompyler-core, because the metric layer is plancheck's."""
    assert tiny_x.phantom.volume_cc == pytest.approx(0.36, abs=0.005)
    assert float(tiny_x.raw_dicompyler().D2cc.value) == 0.0
    for engine in ("plancheck", "dicompyler"):
        value = evaluate_metric("D2cc[Gy]", getattr(tiny_x, engine))
        assert value.value is None
        assert "smaller than 2 cc" in value.reason


def test_dicompyler_takes_the_nearest_dose_plane(large_z: Case) -> None:
    """With dose planes 0.37 mm from the contour planes, dicompyler-core uses the dose
    plane within 0.5 mm as it is: under a 1 Gy/mm z gradient every contour gets the dose
    0.37 mm away and the mean is 0.37 Gy high. plancheck interpolates between planes."""
    exact = large_z.phantom.mean_gy(large_z.dose)
    assert large_z.value("plancheck", "Mean[Gy]") == pytest.approx(exact, abs=0.02)
    assert large_z.value("dicompyler", "Mean[Gy]") - exact == pytest.approx(0.37, abs=0.05)


# ------------------------------------------------------------------------------ conversion

def test_round_trip_through_dicompyler_keeps_the_dvh(large_x: Case) -> None:
    """plancheck DVH → dicompyler-core DVH (0.01 Gy bins) → plancheck DVH: volumes exact,
    doses within one 0.01 Gy bin (plus its interpolation: 0.02 Gy)."""
    original = large_x.plancheck
    dc = to_dicompyler(original)
    assert dc.volume == pytest.approx(original.covered_volume_cc, rel=1e-9)
    assert float(dc.mean) == pytest.approx(original.mean_gy, abs=0.01)
    assert float(dc.max) == pytest.approx(original.max_gy, abs=0.01)
    # dicompyler-core's own (nearest-bin) statistics on the converted curve
    assert float(dc.D50.value) == pytest.approx(evaluate_metric("D50%[Gy]", original).value, abs=0.02)
    assert float(dc.V40Gy.value) == pytest.approx(evaluate_metric("V40Gy[cc]", original).value, rel=2e-3)

    back = from_dicompyler(dc, name="back", volume_cc=original.volume_cc)
    assert back.engine == "dicompyler-core"
    assert evaluate_metric("Volume[cc]", back).value == pytest.approx(original.volume_cc, rel=1e-12)
    for metric in ("D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "D0.03cc[Gy]", "Mean[Gy]", "Max[Gy]"):
        assert evaluate_metric(metric, back).value == pytest.approx(evaluate_metric(metric, original).value, abs=0.02), metric
    for metric in ("V30Gy[cc]", "V45Gy[%]"):
        assert evaluate_metric(metric, back).value == pytest.approx(evaluate_metric(metric, original).value, rel=2e-3), metric


def test_round_trip_of_an_empty_dvh() -> None:
    from plancheck.model import Roi

    empty = compute_dvh(Roi(3, "Empty"), linear_dose_grid(LinearDose(0, 1.0), ((-5, 5),) * 3, 2.0))
    dc = to_dicompyler(empty)
    assert dc.volume == 0.0


def test_from_dicompyler_rejects_relative_units(large_x: Case) -> None:
    dc = to_dicompyler(large_x.plancheck)
    with pytest.raises(UsageError, match=r"must be in Gy and cm3, got Gy and %"):
        from_dicompyler(dc.relative_volume)


def test_from_dicompyler_rejects_non_uniform_bins() -> None:
    import dicompylercore.dvh as dc_dvh

    dc = dc_dvh.DVH(np.array([3.0, 2.0, 1.0]), np.array([0.0, 1.0, 3.0, 4.0]), dvh_type="differential")
    with pytest.raises(UsageError, match=r"bins must be uniform from 0 Gy"):
        from_dicompyler(dc)


def test_dicompyler_dvh_keeps_uncovered_volume_undefined(large_x: Case) -> None:
    partial = dicompyler_dvh(str(large_x.rs), str(large_x.rd), 1, name="S", covered_fraction=0.6)
    assert partial.dose_coverage_pct == pytest.approx(60.0)
    assert evaluate_metric("D95%[Gy]", partial).value is None
    assert evaluate_metric("Volume[cc]", partial).value == pytest.approx(large_x.dicompyler.volume_cc)


# ------------------------------------------------------------------------------ pydicom left alone

def test_adapter_leaves_pydicom_without_read_file(large_x: Case) -> None:
    """dicompyler-core 0.5.6 imports ``pydicom.dicomio.read_file`` (gone in pydicom 3); the
    adapter provides it only while dicompyler-core is imported. Checked in a fresh
    interpreter, where the import really happens."""
    code = textwrap.dedent(f"""
        import pydicom.dicomio
        assert not hasattr(pydicom.dicomio, "read_file")
        import plancheck.dvh.dicompyler_adapter as adapter
        assert not hasattr(pydicom.dicomio, "read_file"), "after importing the adapter"
        dvh = adapter.dicompyler_dvh({str(large_x.rs)!r}, {str(large_x.rd)!r}, 1)
        assert dvh.volume_cc > 0
        import dicompylercore.dicomparser
        assert not hasattr(pydicom.dicomio, "read_file"), "after running dicompyler-core"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    # and in this process, after all the tests above
    import pydicom.dicomio

    assert not hasattr(pydicom.dicomio, "read_file")
