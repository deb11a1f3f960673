"""Damaged inputs, built by hand: each is an input error (exit 3, one message naming the file)
or makes the affected structure unmeasurable (its rules NOT EVALUATED with the reason) —
the decisions of ``docs/input-validation.md``, one test each.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import fuzz_mutations as fm
import plancheck.dicom.read_common as read_common
from plancheck.cli.main import main
from plancheck.cli.exit_codes import ExitCode
from plancheck.dicom import read_dose, read_export, read_plan, read_structure_set
from plancheck.dicom.store import index_objects
from plancheck.errors import DicomConformanceError, LinkError, UnsupportedInputError
from test_read import linear_dose, make_rtdose, make_rtplan, make_rtstruct, save, square, write_export


#: A Part 10 file that starts like DICOM (preamble, 'DICM', a File Meta group) and then breaks:
#: a sequence of undefined length that never ends. pydicom cannot parse its header.
JUNK = (b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\x1c\x00\x00\x00"
        + b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"
        + b"\x08\x00\x16\x00SQ\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return int(code), captured.out, captured.err


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fm.build_base(tmp_path_factory.mktemp("validation") / "base")


@pytest.fixture(scope="module")
def protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fm.write_fuzz_protocol(tmp_path_factory.mktemp("validation-protocol"))


def _results(out: str) -> dict[str, dict]:
    return {r["rule_id"]: r for r in json.loads(out)["results"]}


def _copy_with_rs(base: Path, tmp_path: Path, edit) -> Path:
    case = fm.apply(fm.Mutation("none", "RS.dcm", 0), base, tmp_path / "case")
    ds = pydicom.dcmread(case / "RS.dcm")
    edit(ds)
    ds.save_as(case / "RS.dcm", enforce_file_format=True)
    return case


# ------------------------------------------------------------------------------- structure sets

def test_cord_with_the_hearts_roi_number_is_not_evaluated(base: Path, protocol: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # The case: the cord declared with the heart's ROI Number. Before, the cord rule
    # was measured on the heart's contours and passed; now neither ROI is measured.
    def give_cord_the_hearts_number(ds: Dataset) -> None:
        numbers = {i.ROIName: int(i.ROINumber) for i in ds.StructureSetROISequence}
        cord, heart = numbers["SpinalCord"], numbers["Heart"]
        for item in ds.StructureSetROISequence:
            if item.ROIName == "SpinalCord":
                item.ROINumber = heart
        for item in list(ds.ROIContourSequence) + list(ds.RTROIObservationsSequence):
            if int(item.ReferencedROINumber) == cord:
                item.ReferencedROINumber = heart

    case = _copy_with_rs(base, tmp_path, give_cord_the_hearts_number)
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json", "--strict"], capsys)
    results = _results(out)
    for rule in ("FUZZ-CORD-MAX", "FUZZ-HEART-MEAN"):
        assert results[rule]["status"] == "NOT_EVALUATED"
        assert "'ROI Number' 5 is used by 2 ROIs ('Heart', 'SpinalCord'): their contours cannot be told apart" \
            in results[rule]["message"]
    assert code == 4  # --strict: nothing failed, something not evaluated


def test_stacked_cord_contours_are_not_evaluated(base: Path, protocol: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Every cord contour moved to one z (the issue: 25.6 cc became 0.19 cc and passed).
    case = fm.apply(fm.Mutation("contour", "RS.dcm", 1, "stack", roi="SpinalCord"), base, tmp_path / "case")
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    cord = _results(out)["FUZZ-CORD-MAX"]
    assert cord["status"] == "NOT_EVALUATED"
    assert "SpinalCord: structure 'SpinalCord' cannot be measured: contours drawn on different images are stacked " \
           "on one plane" in cord["message"]


def _cord(ds: Dataset) -> tuple[int, list[Dataset]]:
    """The cord's ROI Number and its contour items."""
    number = next(int(i.ROINumber) for i in ds.StructureSetROISequence if i.ROIName == "SpinalCord")
    item = next(i for i in ds.ROIContourSequence if int(i.ReferencedROINumber) == number)
    return number, list(item.ContourSequence)


@pytest.mark.parametrize("geometric_type", ["OPEN_PLANAR", "POINT"])
def test_a_cord_with_open_or_point_planes_is_not_evaluated(base: Path, protocol: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           geometric_type: str) -> None:
    # Every other cord contour re-typed: before, those planes vanished from the volume and the
    # cord was graded on the rest (the audit's cord PASSed at half its dose).
    def retype_every_other_plane(ds: Dataset) -> None:
        for contour in _cord(ds)[1][::2]:
            contour.ContourGeometricType = geometric_type

    case = _copy_with_rs(base, tmp_path, retype_every_other_plane)
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    cord = _results(out)["FUZZ-CORD-MAX"]
    assert cord["status"] == "NOT_EVALUATED"
    assert "structure 'SpinalCord' cannot be measured: contours of another (3006,0042) 'Contour Geometric Type' " \
           f"are mixed with the closed ones: " in cord["message"] and f" {geometric_type} on z = " in cord["message"]
    assert _results(out)["FUZZ-HEART-MEAN"]["status"] == "PASS"  # other ROIs unaffected


def test_a_cord_typed_marker_is_still_checked(base: Path, protocol: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # RT ROI Interpreted Type MARKER and one contour repeated (the two cancel under the
    # even-odd rule): before, the marker type switched the checks off and the cord PASSed.
    def mark_and_repeat(ds: Dataset) -> None:
        number, contours = _cord(ds)
        next(i for i in ds.RTROIObservationsSequence if int(i.ReferencedROINumber) == number) \
            .RTROIInterpretedType = "MARKER"
        item = next(i for i in ds.ROIContourSequence if int(i.ReferencedROINumber) == number)
        copy = Dataset()
        copy.update(contours[len(contours) // 2])
        item.ContourSequence.append(copy)

    case = _copy_with_rs(base, tmp_path, mark_and_repeat)
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    cord = _results(out)["FUZZ-CORD-MAX"]
    assert cord["status"] == "NOT_EVALUATED"
    assert "structure 'SpinalCord' cannot be measured: identical contours are repeated on 1 plane(s)" in cord["message"]


def test_a_cord_declared_in_another_frame_of_reference_is_not_evaluated(base: Path, protocol: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # The cord's (3006,0024) points to another frame (e.g. drawn on a registered MR): its
    # coordinates cannot be placed in the dose grid. Before, it was measured as if in the
    # plan's frame, with only a general warning.
    other = "1.2.826.0.1.3680043.8.498.77"

    def move_the_cord_to_another_frame(ds: Dataset) -> None:
        number = _cord(ds)[0]
        next(i for i in ds.StructureSetROISequence if int(i.ROINumber) == number).ReferencedFrameOfReferenceUID = other

    case = _copy_with_rs(base, tmp_path, move_the_cord_to_another_frame)
    frame = str(pydicom.dcmread(case / "RD.dcm", stop_before_pixels=True).FrameOfReferenceUID)
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    results = _results(out)
    assert results["FUZZ-CORD-MAX"]["status"] == "NOT_EVALUATED"
    assert (f"structure 'SpinalCord' cannot be measured: it is defined in another frame of reference ((3006,0024) "
            f"'Referenced Frame of Reference UID' {other}, not {frame}): it cannot be placed in the dose grid") \
        in results["FUZZ-CORD-MAX"]["message"]
    assert results["FUZZ-HEART-MEAN"]["status"] == "PASS"
    number = _cord(pydicom.dcmread(case / "RS.dcm"))[0]
    assert any(f"RS.dcm: ROI {number} 'SpinalCord' cannot be measured: it is defined in another frame of reference"
               in warning for warning in json.loads(out)["warnings"])


def test_a_defective_ptv_stops_the_prescription_check(base: Path, protocol: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    case = fm.apply(fm.Mutation("contour", "RS.dcm", 2, "far_point", roi="PTVp"), base, tmp_path / "case")
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    results = _results(out)
    assert results["INT-RX-DOSE"]["status"] == "NOT_EVALUATED"
    assert results["INT-RX-DOSE"]["message"].startswith("dose reference 1 → ROI 14: structure 'PTVp' cannot be "
                                                        "measured: a contour point lies 1e+09 mm")
    assert results["FUZZ-PTV-D95"]["status"] == "NOT_EVALUATED"


def test_dvh_reports_a_defective_roi_as_not_computed(base: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    case = fm.apply(fm.Mutation("contour", "RS.dcm", 4, "duplicate", roi="Heart"), base, tmp_path / "case")
    code, out, _ = run(["dvh", str(case), "--structure", "Heart", "--structure", "SpinalCord",
                        "--metric", "Mean[Gy]"], capsys)
    assert code == 0
    heart_row = next(line for line in out.splitlines() if line.startswith("Heart"))
    assert heart_row.split()[1:] == ["—", "—", "—"]
    assert "Heart: not computed: identical contours are repeated on 1 plane(s)" in out
    code, out, _ = run(["dvh", str(case), "--structure", "Heart", "--metric", "Mean[Gy]", "--format", "json"], capsys)
    (heart,) = json.loads(out)["plans"][0]["structures"]
    assert heart["volume_cc"] is None and heart["metrics"] == {"Mean[Gy]": None}
    assert heart["not_computed"].startswith("structure 'Heart' cannot be measured: identical contours")
    code, out, _ = run(["dvh", str(case), "--structure", "Heart", "--metric", "Mean[Gy]", "--format", "csv"], capsys)
    assert out.splitlines()[1].startswith("C1_Eso,Heart,5,,,physical,,Mean[Gy],,Gy,structure 'Heart' cannot be")


def test_duplicate_roi_names_are_both_defective(tmp_path: Path) -> None:
    ds = make_rtstruct([(1, "Heart", "ORGAN", [square(z, 10) for z in (0, 3)]),
                        (2, "Heart", "ORGAN", [square(z, 5) for z in (0, 3)])])
    rois = read_structure_set(save(ds, tmp_path / "RS.dcm")).rois
    assert [r.defects for r in rois] == [("(3006,0026) 'ROI Name' 'Heart' is used by 2 ROIs (numbers 1, 2): which "
                                          "one a rule means is ambiguous",)] * 2


def test_contours_of_an_undeclared_roi_are_ignored_with_a_warning(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtss"])
    ds.ROIContourSequence[1].ReferencedROINumber = 99  # the PTV's 3 contours now belong to no declared ROI
    ds.save_as(paths["rtss"])
    export = read_export(tmp_path)
    assert any("item 2 references ROI number 99, which is not declared; its 3 contour(s) are ignored" in w
               for w in export.warnings)
    assert export.structure_sets[0].roi_by_number(2).is_empty


def test_a_point_count_that_disagrees_makes_the_roi_defective(tmp_path: Path) -> None:
    ds = make_rtstruct([(1, "BODY", "EXTERNAL", [square(z, 40) for z in (0, 3)]),
                        (2, "PTV", "PTV", [square(z, 10) for z in (0, 3, 6)])])
    ds.ROIContourSequence[1].ContourSequence[0].NumberOfContourPoints = 5  # ContourData holds 4
    structure_set = read_structure_set(save(ds, tmp_path / "RS.dcm"))
    assert structure_set.roi_by_number(1).defects == ()
    (defect,) = structure_set.roi_by_number(2).defects
    assert defect.startswith("1 contour(s) cannot be read, e.g. (3006,0046) 'Number of Contour Points' of contour 1 "
                             "of ROI 2 'PTV' is 5 but (3006,0050) 'Contour Data' holds 4 points")


def _reference_images(ds: Dataset, image_uids: list[str]) -> None:
    for contour, uid in zip(ds.ROIContourSequence[1].ContourSequence, image_uids):
        image = Dataset()
        image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        image.ReferencedSOPInstanceUID = uid
        contour.ContourImageSequence = DicomSequence([image])


def test_contours_far_from_their_ct_slices_are_a_defect(tmp_path: Path) -> None:
    # CT slices at z = 0, 3, 6 mm (write_export); the PTV's contour at z = 0 references the
    # slice at z = 6: 6 mm from it, more than 1.5 mm (half the 3 mm spacing).
    paths = write_export(tmp_path)
    ct = {float(pydicom.dcmread(p).ImagePositionPatient[2]): str(pydicom.dcmread(p).SOPInstanceUID)
          for p in sorted((tmp_path / "CT").iterdir())}
    ds = pydicom.dcmread(paths["rtss"])
    _reference_images(ds, [ct[6.0], ct[3.0], ct[6.0]])
    ds.save_as(paths["rtss"])
    export = read_export(tmp_path)
    ptv = export.structure_sets[0].roi_by_number(2)
    assert [c.image_uid for c in ptv.contours] == [ct[6.0], ct[3.0], ct[6.0]]  # read on the fast path
    assert ptv.defects == ("1 contour(s) lie far from the CT slice they reference (e.g. a contour at z = 0 mm drawn "
                           "on the slice at z = 6 mm; at most ±1.5 mm, half the slice spacing, is accepted)",)
    assert export.structure_sets[0].roi_by_number(1).defects == ()


def test_a_roi_with_its_contours_on_their_slices_is_sound(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    by_z = {float(pydicom.dcmread(p).ImagePositionPatient[2]): str(pydicom.dcmread(p).SOPInstanceUID)
            for p in sorted((tmp_path / "CT").iterdir())}
    ds = pydicom.dcmread(paths["rtss"])
    _reference_images(ds, [by_z[0.0], by_z[3.0], by_z[6.0]])
    ds.save_as(paths["rtss"])
    assert all(not r.defects for r in read_export(tmp_path).structure_sets[0].rois)


# ------------------------------------------------------------------------------------- doses

def _dose_file(tmp_path: Path, ds: Dataset) -> Path:
    return save(ds, tmp_path / "RD.dcm")


def test_a_dose_type_error_grid_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Dose Type ERROR: an estimate of a dose's error, not a dose. Before, `check` graded the
    # DVH rules on it (INT-DOSE-UNITS alone failed) and `dvh` printed it in Gy, exit 0.
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtdose"])
    ds.DoseType = "ERROR"
    ds.save_as(paths["rtdose"])
    message = (r"RD\.dcm: \(3004,0004\) 'Dose Type' is 'ERROR': the grid holds an estimate of the error of a dose, "
               r"not a dose distribution; plancheck needs a PHYSICAL or EFFECTIVE dose")
    with pytest.raises(DicomConformanceError, match=message):
        read_dose(paths["rtdose"])
    with pytest.raises(DicomConformanceError, match=message):
        read_export(tmp_path)
    for command in ("check", "dvh"):
        code, out, err = run([command, str(tmp_path)], capsys)
        assert code == ExitCode.INPUT_ERROR == 3 and out == ""
        assert "RD.dcm: (3004,0004) 'Dose Type' is 'ERROR'" in err and "Traceback" not in err


def test_a_dose_type_error_grid_beside_the_plan_dose_is_set_aside(tmp_path: Path) -> None:
    # An error grid exported with the plan dose (both PLAN doses of the plan): the plan dose is
    # used, the error grid is listed as skipped with the reason (not "2 PLAN doses").
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtdose"])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.DoseType = "ERROR"
    ds.save_as(tmp_path / "RD_error.dcm")
    export = read_export(tmp_path)
    assert export.courses[0].dose_summary == "PLAN dose RD.dcm used as is"
    reasons = {Path(s.path).name: s.reason for s in export.skipped}
    assert reasons["RD_error.dcm"] == ("(3004,0004) 'Dose Type' ERROR: the grid holds an estimate of the error of a "
                                       "dose, not a dose distribution")


def test_an_absent_dose_type_is_read_as_physical_and_said_so(base: Path, protocol: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Dose Type is Type 1. Before, the reader filled in PHYSICAL: INT-DOSE-UNITS passed on
    # "Dose Type PHYSICAL" and nothing said the file was silent.
    case = fm.apply(fm.Mutation("none", "RD.dcm", 0), base, tmp_path / "case")
    ds = pydicom.dcmread(case / "RD.dcm")
    del ds.DoseType
    ds.save_as(case / "RD.dcm")
    assert read_dose(case / "RD.dcm").dose_type == ""
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    doc = json.loads(out)
    units = _results(out)["INT-DOSE-UNITS"]
    assert (units["status"], units["message"]) == (
        "WARN", "(3004,0004) 'Dose Type' is empty: plancheck treats the dose as PHYSICAL")
    assert doc["plans"][0]["dose_type"] == "PHYSICAL"
    assert doc["plans"][0]["dose_summary"] == ("PLAN dose RD.dcm used as is; (3004,0004) 'Dose Type' absent from "
                                               "RD.dcm: read as physical dose")
    assert _results(out)["FUZZ-HEART-MEAN"]["status"] == "PASS"  # still measured, as physical dose
    code, out, _ = run(["dvh", str(case), "--structure", "Heart", "--metric", "Mean[Gy]"], capsys)
    assert code == 0 and "dose: PLAN dose RD.dcm used as is; (3004,0004) 'Dose Type' absent from RD.dcm: read as " \
                         "physical dose" in out


def test_negative_doses_are_refused(tmp_path: Path) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    values = np.frombuffer(ds.PixelData, dtype=np.uint32).astype(np.int32)
    values[:7] *= -1  # 7 negative stored values, the lowest -(1 + 0 + 0 + 0) Gy / scaling of voxel 0
    ds.PixelRepresentation = 1
    ds.PixelData = values.tobytes()
    with pytest.raises(DicomConformanceError, match=r"RD\.dcm: \(7FE0,0010\) 'Pixel Data' holds 7 negative dose "
                                                    r"value\(s\) .*a dose cannot be negative"):
        read_dose(_dose_file(tmp_path, ds))


def test_values_beyond_bits_stored_are_refused(tmp_path: Path) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3", bits=16)
    ds.BitsStored, ds.HighBit = 12, 11  # 16-bit pixels scaled to 32767 at the maximum: beyond 2^12 - 1 = 4095
    with pytest.raises(DicomConformanceError, match=r"holds stored values up to 32767, beyond the 4095 that "
                                                    r"\(0028,0101\) 'Bits Stored' 12 allows"):
        read_dose(_dose_file(tmp_path, ds))
    ds.BitsStored = 40
    with pytest.raises(DicomConformanceError, match=r"\(0028,0101\) 'Bits Stored' value of 40 is invalid, it must be "
                                                    r"between 1 and \(0028,0100\) 'Bits Allocated' 16"):
        read_dose(_dose_file(tmp_path, ds))


@pytest.mark.parametrize(("scaling", "message"), [
    ("inf", r"'Dose Grid Scaling' value of 'inf' is invalid, it must be a finite number"),
    # 2147483647 × 1e30 overflows float32: the largest dose is inf
    ("1e30", r"the largest dose is inf Gy \(stored value 2147483647 × \(3004,000E\) 'Dose Grid Scaling' 1e\+30\)"),
    # 2147483647 × 1e-6 = 2147.5 Gy > 1000 Gy
    ("1e-6", r"the largest dose is 2147 Gy .*no plan dose reaches 1000 Gy"),
])
@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_absurd_dose_grid_scaling_is_refused(tmp_path: Path, scaling: str, message: str) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    ds.DoseGridScaling = scaling
    with pytest.raises(DicomConformanceError, match=message):
        read_dose(_dose_file(tmp_path, ds))


def test_absurd_grid_spacing_is_refused_before_the_pixels_are_read(tmp_path: Path) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    ds.PixelSpacing = [30, 30]
    ds.PixelData = b""  # never reached: the spacing is refused first
    with pytest.raises(DicomConformanceError, match=r"\(0028,0030\) 'Pixel Spacing' value of \[30, 30\] mm is "
                                                    r"outside 0\.1–10 mm"):
        read_dose(_dose_file(tmp_path, ds))
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    ds.GridFrameOffsetVector = [0, 30, 60, 90]
    with pytest.raises(DicomConformanceError, match=r"'Grid Frame Offset Vector' spacing of 30 to 30 mm is outside"):
        read_dose(_dose_file(tmp_path, ds))


def test_a_huge_grid_is_refused_without_allocating_it(tmp_path: Path) -> None:
    # 10 000 × 10 000 × 1000 = 1e11 voxels (400 GB as float32), declared over 480 bytes of pixels.
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    ds.Rows = ds.Columns = 10_000
    ds.NumberOfFrames = 1000
    ds.GridFrameOffsetVector = [3.0 * k for k in range(1000)]
    with pytest.raises(DicomConformanceError, match=r"the dose grid has 10000 × 10000 × 1000 = 100,000,000,000 "
                                                    r"voxels .* plancheck reads at most 64,000,000"):
        read_dose(_dose_file(tmp_path, ds))


# ------------------------------------------------------------------------------------- plans

@pytest.mark.parametrize(("edit", "message"), [
    (lambda ds: setattr(ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", 0),
     r"RP\.dcm: \(300A,0078\) 'Number of Fractions Planned' in item 1 of \(300A,0070\) 'Fraction Group Sequence' "
     r"value of 0 is invalid, it must be at least 1"),
    (lambda ds: setattr(ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", -3), r"value of -3 is invalid"),
    (lambda ds: setattr(ds.DoseReferenceSequence[0], "TargetPrescriptionDose", -60),
     r"RP\.dcm: \(300A,0026\) 'Target Prescription Dose' in item 1 of \(300A,0010\) 'Dose Reference Sequence' value "
     r"of -60 Gy is invalid, a target's prescription dose must be > 0 Gy"),
    (lambda ds: setattr(ds.DoseReferenceSequence[0], "TargetPrescriptionDose", 0), r"value of 0 Gy is invalid"),
], ids=["zero-fractions", "negative-fractions", "negative-prescription", "zero-prescription"])
def test_nonsense_fractions_or_prescription_are_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             edit, message: str) -> None:
    # Before: exit 70 with a traceback (the LQ formulas refused n <= 0 deep inside a rule).
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtplan"])
    edit(ds)
    ds.save_as(paths["rtplan"])
    with pytest.raises(DicomConformanceError, match=message):
        read_plan(paths["rtplan"])
    for command in ("check", "dvh", "fractionation"):
        code, out, err = run([command, str(tmp_path)], capsys)
        assert code == 3 and out == ""
        assert err.startswith("plancheck: unusable input: ") and "Traceback" not in err


def test_a_brachytherapy_plan_is_not_supported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtplan"])
    ds.BrachyTreatmentType = "HDR"
    ds.ApplicationSetupSequence = DicomSequence([Dataset()])
    ds.save_as(paths["rtplan"])
    with pytest.raises(UnsupportedInputError, match=r"RP\.dcm: is a brachytherapy plan .*brachytherapy is not "
                                                     r"supported"):
        read_plan(paths["rtplan"])
    code, _, err = run(["check", str(tmp_path)], capsys)
    assert code == 3 and "brachytherapy is not supported" in err


def test_a_placeholder_beam_is_not_evaluated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Energy 0 and a machine named "BOGUS NAME" (what GammaPlan exports): the beam rules say
    # why they cannot judge it instead of passing (or failing) it.
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtplan"])
    ds.BeamSequence[0].TreatmentMachineName = "BOGUS NAME"
    ds.BeamSequence[0].ControlPointSequence[0].NominalBeamEnergy = 0
    ds.save_as(paths["rtplan"])
    code, out, _ = run(["check", str(tmp_path), "--protocol", "plan-integrity", "--format", "json"], capsys)
    results = _results(out)
    assert results["INT-MACHINE"]["status"] == "NOT_EVALUATED"
    assert "'BOGUS NAME' is a placeholder" in results["INT-MACHINE"]["message"]
    assert results["INT-ENERGY"]["status"] == "NOT_EVALUATED"
    assert "'Nominal Beam Energy' of 0 or less" in results["INT-ENERGY"]["message"]


# ------------------------------------------------------------------------------- one reader

def test_junk_beside_an_export_is_skipped_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_export(tmp_path)
    (tmp_path / "junk.dcm").write_bytes(JUNK)
    export = read_export(tmp_path)
    skipped = {Path(s.path).name: s.reason for s in export.skipped}
    assert skipped["junk.dcm"].startswith("cannot be read: ")
    # ... the same reason in the batch/receiver index
    index = {p.name: reason for p, reason in index_objects(tmp_path).skipped}
    assert index["junk.dcm"] == skipped["junk.dcm"]
    # named explicitly, it is an input error
    code, _, err = run(["check", str(tmp_path / "junk.dcm")], capsys)
    assert code == 3 and "junk.dcm: cannot be read: " in err


def test_a_large_file_that_is_not_dicom_is_never_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_export(tmp_path)
    with (tmp_path / "zeros.bin").open("wb") as fh:
        fh.truncate(50 * 2**20)  # 50 MB of zeros: the 22 s file
    parsed: list[str] = []
    real = read_common.dcmread

    def counting(fp, *args, **kwargs):
        parsed.append(str(getattr(fp, "name", fp)))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(read_common, "dcmread", counting)
    export = read_export(tmp_path)
    assert "zeros.bin" not in " ".join(parsed)
    assert any(s.path.endswith("zeros.bin") and s.reason.startswith("not a DICOM file") for s in export.skipped)
    index = index_objects(tmp_path)
    assert "zeros.bin" not in " ".join(parsed)
    assert [r for p, r in index.skipped if p.name == "zeros.bin"] == [
        "not a DICOM file (no 'DICM' prefix and no DICOM data set at its start)"]


def test_zip_members_are_tested_before_they_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_export(tmp_path / "export")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for role in ("rtss", "rtplan", "rtdose"):
            zf.write(paths[role], paths[role].name)
        zf.writestr("zeros.bin", b"\0" * (5 * 2**20))
        zf.writestr("big.dcm", b"\0" * 128 + b"DICM" + b"\0" * (6 * 2**20))
    # big.dcm (6 MB) is larger than the limit (patched to 5.5 MB) and not read; zeros.bin is
    # within it but fails the header test.
    monkeypatch.setattr("plancheck.dicom.classify.MAX_FILE_BYTES", int(5.5 * 2**20))
    export = read_export(archive)
    reasons = {s.path.split("!")[-1]: s.reason for s in export.skipped}
    assert reasons["zeros.bin"].startswith("not a DICOM file")
    assert reasons["big.dcm"] == "6 MB, larger than the 6 MB plancheck reads for one file"
    assert len(export.courses) == 1


def test_batch_lists_every_file_it_passed_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "archive"
    write_export(root / "patient1")
    (root / "notes.txt").write_text("=HYPERLINK(\"http://x\")\n")
    (root / "junk.dcm").write_bytes(JUNK)
    reports = tmp_path / "reports"
    code, _, err = run(["batch", str(root), "--reports", str(reports), "--workers", "0",
                        "--protocol", "plan-integrity"], capsys)
    # write_export's isocentre (z = 10 mm) lies outside its BODY contours (z 0-6 mm): INT-ISO fails
    assert code == ExitCode.RULES_FAILED
    rows = (reports / "skipped.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "path,reason"
    by_name = {Path(r.split(",")[0]).name: r for r in rows[1:]}
    assert set(by_name) == {"notes.txt", "junk.dcm"}
    assert "not a DICOM file" in by_name["notes.txt"] and "cannot be read: " in by_name["junk.dcm"]
    assert "2 file(s) passed over" in err


# ---------------------------------------------------------------------------- output hygiene

def test_escape_sequences_in_names_are_shown_not_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An ROI named to move the cursor up and erase a line (it could hide a FAIL row), and one
    # named like a spreadsheet formula.
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtss"])
    ds.StructureSetROISequence[1].ROIName = "PTV\x1b[1A\x1b[2K"
    ds.StructureSetROISequence[0].ROIName = "=HYPERLINK(\"http://x\",\"BODY\")"
    ds.save_as(paths["rtss"])
    code, out, _ = run(["dvh", str(tmp_path), "--metric", "Mean[Gy]"], capsys)
    assert "\x1b" not in out and "PTV\\x1b[1A\\x1b[2K" in out
    code, out, _ = run(["dvh", str(tmp_path), "--metric", "Mean[Gy]", "--format", "csv"], capsys)
    names = [line.split(",")[1] for line in out.splitlines()[1:]]
    assert names[0] == "'=HYPERLINK(\"http://x\"" or out.splitlines()[1].split(",", 2)[1].startswith("\"'=HYPERLINK")
    code, out, _ = run(["check", str(tmp_path), "--protocol", "plan-integrity"], capsys)
    assert "\x1b" not in out


def test_an_unreadable_structure_set_is_named_when_the_plan_misses_it(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    paths["rtss"].write_bytes(JUNK)  # the export's structure set, destroyed
    with pytest.raises(LinkError, match=r"RP\.dcm: references RT Structure Set .* which is not in the input "
                                        r"\(1 file\(s\) of the input could not be read and were skipped, e\.g\. "
                                        r".*RS\.dcm: cannot be read: "):
        read_export(tmp_path)


def test_a_composite_of_rbe_weighted_and_physical_doses_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rtss = make_rtstruct([(1, "BODY", "EXTERNAL", [square(z, 40) for z in (0, 3, 6)]),
                          (2, "PTV", "PTV", [square(z, 5) for z in (0, 3, 6)])])
    save(rtss, tmp_path / "RS.dcm")
    for label, dose_type in (("Photons", "PHYSICAL"), ("Protons", "EFFECTIVE")):
        plan = make_rtplan(rtss_uid=rtss.SOPInstanceUID, label=label)
        save(plan, tmp_path / f"RP_{label}.dcm")
        dose = make_rtdose(linear_dose() / 10, plan_uid=plan.SOPInstanceUID)
        dose.DoseType = dose_type
        save(dose, tmp_path / f"RD_{label}.dcm")
    # the two plans treat the same PTV: named as courses, not refused as alternatives
    code, out, err = run(["dvh", str(tmp_path), "--composite", "--metric", "Mean[Gy]", "--plan", "Photons",
                          "--plan", "Protons"], capsys)
    assert code == 2 and out == ""
    assert err == ("plancheck: error: --composite: the courses mix RBE-weighted (Dose Type EFFECTIVE) and physical "
                   "doses (Photons (physical), Protons (RBE-weighted)); their sum has no meaning\n")


_LIST_PROTOCOL = """\
schema_version: 1
id: lists
title: Structure lists and combinations
version: "1"
rules:
  - id: FIRST-CONTOURED
    kind: dvh
    title: Heart, else cord
    category: oar
    structure: [Heart, SpinalCord]
    metric: "Max[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 100}}
    provenance: {source: test, section: "1", confidence: institutional}
  - id: UNION
    kind: dvh
    title: Heart and cord together
    category: oar
    structure: {union: [Heart, SpinalCord]}
    metric: "Max[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 100}}
    provenance: {source: test, section: "2", confidence: institutional}
  - id: OUTSIDE-PTV
    kind: dvh
    title: Body outside the PTV
    category: oar
    structure: {union: [External], minus_targets: PTV}
    metric: "Max[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 100}}
    provenance: {source: test, section: "3", confidence: institutional}
"""


@pytest.mark.parametrize(("roi", "expected"), [
    # The heart is listed first: when it cannot be measured, the cord is not measured in its
    # place (a different organ), and the union with it cannot be measured either.
    ("Heart", {"FIRST-CONTOURED": "Heart: structure 'Heart' cannot be measured",
               "UNION": "Heart: structure 'Heart' cannot be measured"}),
    # A target to subtract that cannot be measured: the remainder is unknown.
    ("PTVp", {"OUTSIDE-PTV": "PTV to subtract: structure 'PTVp' cannot be measured"}),
])
def test_lists_and_combinations_never_stand_in_for_a_defective_structure(
        base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], roi: str, expected: dict[str, str]) -> None:
    protocol = tmp_path / "lists.yaml"
    protocol.write_text(_LIST_PROTOCOL, encoding="utf-8")
    case = fm.apply(fm.Mutation("contour", "RS.dcm", 4, "duplicate", roi=roi), base, tmp_path / "case")
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    results = _results(out)
    for rule, reason in expected.items():
        assert results[rule]["status"] == "NOT_EVALUATED" and results[rule]["message"].find(reason) >= 0, results[rule]
    # with sound structures all three are measured
    code, out, _ = run(["check", str(base), "--protocol", str(protocol), "--format", "json"], capsys)
    statuses = {r: v["status"] for r, v in _results(out).items()}
    assert {r: statuses[r] for r in ("FIRST-CONTOURED", "UNION", "OUTSIDE-PTV")} == dict.fromkeys(
        ("FIRST-CONTOURED", "UNION", "OUTSIDE-PTV"), "PASS")


def test_a_defective_body_has_no_stand_in(base: Path, protocol: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    case = fm.apply(fm.Mutation("contour", "RS.dcm", 4, "geometric_type", roi="External"), base, tmp_path / "case")
    code, out, _ = run(["check", str(case), "--protocol", str(protocol), "--format", "json"], capsys)
    iso = _results(out)["INT-ISO"]
    assert iso["status"] == "NOT_EVALUATED"
    assert iso["message"].startswith("no body contour: External: structure 'External' cannot be measured: ")


def test_log_lines_show_control_characters_and_no_traceback_without_debug() -> None:
    import logging
    import sys as _sys

    from plancheck.cli.main import _SafeFormatter

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = _sys.exc_info()
    record = logging.LogRecord("plancheck.dicom.link", logging.WARNING, __file__, 1,
                               "RS.dcm: ROI 3 %r has no contours", ("Cord\x1b[2K",), exc_info)
    assert _SafeFormatter(debug=False).format(record) == (
        "WARNING plancheck.dicom.link: RS.dcm: ROI 3 'Cord\\x1b[2K' has no contours")
    record.exc_text = None
    shown = _SafeFormatter(debug=True).format(record)
    assert "Traceback (most recent call last)" in shown and "RuntimeError: boom" in shown


def test_library_warnings_do_not_reach_the_user(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A command during which pydicom logs and warns, and numpy overflows: without --debug
    # none of it is shown; plancheck's own message is.
    import logging
    import warnings as _warnings

    import plancheck.cli.check_command as check_command

    def noisy(args) -> int:
        logging.getLogger("pydicom").warning("Invalid value for VR DS")
        _warnings.warn("Expected explicit VR, but found implicit VR", UserWarning, stacklevel=1)
        np.float32(3e38) * np.float32(10)
        raise DicomConformanceError("the problem", "RD.dcm")

    monkeypatch.setattr(check_command, "run_check_command", noisy)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        code, out, err = run(["check", str(tmp_path)], capsys)
    assert code == 3 and err == "plancheck: unusable input: RD.dcm: the problem\n"
    assert caught == [] and not [r for r in caplog.records if r.name == "pydicom"]
