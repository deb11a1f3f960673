"""Bad input: each case gives one clear InputError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from plancheck.dicom import read_dose, read_export, read_plan, read_structure_set
from plancheck.errors import DicomConformanceError, DicomReadError, InputError, LinkError
from test_read import FRAME, linear_dose, make_rtdose, make_rtplan, make_rtstruct, save, square, write_export


def _replace(path: Path, ds) -> None:
    save(ds, path)


def test_not_dicom_given_explicitly(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DicomReadError, match=r"notes\.txt: not a DICOM file"):
        read_export([text])
    with pytest.raises(DicomReadError, match=r"notes\.txt: not a DICOM file"):
        read_dose(text)


def test_directory_without_usable_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(b"\x00" * 300)
    with pytest.raises(DicomReadError, match=r"no RT Plan found among 2 file\(s\) \(2 not DICOM"):
        read_export(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DicomReadError, match=r"nowhere: no such file or directory"):
        read_export(tmp_path / "nowhere")


@pytest.mark.parametrize("role", ["rtss", "rtplan", "rtdose"])
def test_truncated_file(tmp_path: Path, role: str) -> None:
    paths = write_export(tmp_path)
    data = paths[role].read_bytes()
    paths[role].write_bytes(data[: len(data) // 2])
    with pytest.raises(DicomReadError, match=rf"{paths[role].name}: the file is truncated"):
        read_export(tmp_path)


def test_dose_cut_exactly_before_its_pixel_data_is_truncated(tmp_path: Path) -> None:
    # cut at an element boundary, what is left parses: the grid's header (Rows, Columns) is there
    # and its Pixel Data is not. Also cut before the Dose Summation Type (3004,000A): before, that
    # read as a conformance error ("is missing") instead of a truncated file, by chance of the cut.
    paths = write_export(tmp_path)
    data = paths["rtdose"].read_bytes()
    for tag in (b"\xe0\x7f\x10\x00", b"\x04\x30\x0a\x00"):  # (7FE0,0010), (3004,000A), little endian
        paths["rtdose"].write_bytes(data[:data.rindex(tag)])
        with pytest.raises(DicomReadError, match=r"RD\.dcm: the file is truncated \(\d+ bytes\): it ends before its "
                                                 r"\(7FE0,0010\) 'Pixel Data'"):
            read_export(tmp_path)


def test_truncated_dose_pixel_data(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    data = paths["rtdose"].read_bytes()
    paths["rtdose"].write_bytes(data[:-100])
    with pytest.raises(DicomReadError, match=r"RD\.dcm: the file is truncated .*\(7FE0,0010\) 'Pixel Data' "
                                             r"declares 480 bytes but only 380 remain"):
        read_export(tmp_path)
    with pytest.raises(DicomReadError, match=r"RD\.dcm: the file is truncated"):
        read_dose(paths["rtdose"])


def test_pixel_data_shorter_than_the_grid(tmp_path: Path) -> None:
    # A well-formed file whose Pixel Data element holds fewer bytes than rows × columns × frames.
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    ds.PixelData = ds.PixelData[:240]
    path = save(ds, tmp_path / "RD.dcm")
    with pytest.raises(DicomReadError, match=r"RD\.dcm: \(7FE0,0010\) 'Pixel Data' holds 240 bytes.* = 480 "
                                             r"bytes are required: the file is truncated"):
        read_dose(path)


def test_relative_dose_units(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    ds.DoseUnits = "RELATIVE"
    _replace(paths["rtdose"], ds)
    with pytest.raises(DicomConformanceError, match=r"RD\.dcm: \(3004,0002\) 'Dose Units' is 'RELATIVE', "
                                                    r"plancheck needs absolute dose 'GY'"):
        read_dose(paths["rtdose"])


def test_dose_grid_scaling_missing(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    plan_uid = read_plan(paths["rtplan"]).sop_instance_uid
    ds = make_rtdose(linear_dose(), plan_uid=plan_uid)
    del ds.DoseGridScaling
    _replace(paths["rtdose"], ds)
    with pytest.raises(DicomConformanceError, match=r"RD\.dcm: \(3004,000E\) 'Dose Grid Scaling' is missing; "
                                                    r"it is required to convert the stored pixel values to Gy"):
        read_export(tmp_path)


def test_required_attribute_missing_names_tag(tmp_path: Path) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3")
    del ds.ImagePositionPatient
    with pytest.raises(DicomConformanceError, match=r"RD\.dcm: \(0020,0032\) 'Image Position \(Patient\)' is "
                                                    r"missing; it is required to place the dose grid"):
        read_dose(save(ds, tmp_path / "RD.dcm"))
    plan = make_rtplan(rtss_uid="1.2.3")
    del plan.FractionGroupSequence[0].FractionGroupNumber
    with pytest.raises(DicomConformanceError, match=r"RP\.dcm: \(300A,0071\) 'Fraction Group Number' in item 1 "
                                                    r"of \(300A,0070\) 'Fraction Group Sequence' is missing"):
        read_plan(save(plan, tmp_path / "RP.dcm"))


def test_invalid_bits_allocated(tmp_path: Path) -> None:
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3", bits=16)
    ds.BitsAllocated = 8
    with pytest.raises(DicomConformanceError, match=r"\(0028,0100\) 'Bits Allocated' value of 8 is invalid, "
                                                    r"it must be 16 or 32"):
        read_dose(save(ds, tmp_path / "RD.dcm"))


def test_dose_references_absent_plan(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    _replace(paths["rtdose"], make_rtdose(linear_dose(), plan_uid="1.2.3.4.5"))
    with pytest.raises(LinkError, match=r"RD\.dcm: references RT Plan 1\.2\.3\.4\.5 .*which is not in the input"):
        read_export(tmp_path)


def test_plan_without_dose(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    paths["rtdose"].unlink()
    with pytest.raises(LinkError, match=r"RP\.dcm: RT Plan 'C1_Test' has no usable dose"):
        read_export(tmp_path)


def test_plan_references_absent_structure_set(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    paths["rtss"].unlink()
    with pytest.raises(LinkError, match=r"RP\.dcm: references RT Structure Set .* which is not in the input"):
        read_export(tmp_path)


def test_mismatched_frame_of_reference(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    plan_uid = read_plan(paths["rtplan"]).sop_instance_uid
    _replace(paths["rtdose"], make_rtdose(linear_dose(), plan_uid=plan_uid, frame="1.2.3.77"))
    with pytest.raises(LinkError, match=r"'Frame of Reference UID' differs: .*RD\.dcm is in 1\.2\.3\.77 but "
                                        r".*RS\.dcm is in"):
        read_export(tmp_path)


@pytest.mark.parametrize("moved", [1, 2])
def test_an_roi_in_another_frame_is_a_defect_and_the_others_are_sound(tmp_path: Path, moved: int) -> None:
    # One ROI's (3006,0024) 'Referenced Frame of Reference UID' is another frame than that of
    # the two others (the structure set's, the plan's and the dose's): only that ROI is
    # defective, also when it is the first one declared.
    ds = make_rtstruct([(1, "Body", "EXTERNAL", [square(z, 40) for z in (0, 3, 6)]),
                        (2, "PTV", "PTV", [square(z, 5) for z in (0, 3, 6)]),
                        (3, "Cord", "ORGAN", [square(z, 2, cx=20) for z in (0, 3, 6)])])
    ds.StructureSetROISequence[moved - 1].ReferencedFrameOfReferenceUID = "1.2.3.77"
    structure_set = read_structure_set(save(ds, tmp_path / "RS.dcm"))
    assert structure_set.frame_of_reference_uid == FRAME
    assert {r.number: r.defects for r in structure_set.rois if r.number != moved} == {n: () for n in (1, 2, 3)
                                                                                    if n != moved}
    assert structure_set.roi_by_number(moved).defects == (
        f"it is defined in another frame of reference ((3006,0024) 'Referenced Frame of Reference UID' 1.2.3.77, "
        f"not {FRAME}): it cannot be placed in the dose grid",)


def test_two_patients_names_files_not_patients(tmp_path: Path) -> None:
    write_export(tmp_path / "a")
    write_export(tmp_path / "b", patient_id="OTHER-ID-42")
    with pytest.raises(LinkError, match=r"2 different patients .*e\.g\. .*\.dcm and .*\.dcm") as info:
        read_export(tmp_path)
    assert "OTHER-ID-42" not in str(info.value) and "PC-TEST-1" not in str(info.value)
    assert "Phantom" not in str(info.value)


def test_a_file_without_patient_id_is_named_as_such_not_as_a_second_patient(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtss"])
    del ds.PatientID  # as a header cut short loses it
    save(ds, paths["rtss"])
    with pytest.raises(LinkError, match=r"has no \(0010,0020\) 'Patient ID' while the other files have one") as info:
        read_export(tmp_path)
    assert info.value.path.endswith("RS.dcm") and "different patients" not in str(info.value)


def test_a_prescription_in_cgy_in_the_gy_field_is_refused(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtplan"])
    ds.DoseReferenceSequence[0].TargetPrescriptionDose = 6000  # 60 Gy written in cGy
    save(ds, paths["rtplan"])
    with pytest.raises(DicomConformanceError, match=r"'Target Prescription Dose'.* 6000 Gy is implausible"):
        read_export(tmp_path)


def test_closed_planar_contour_with_two_points_makes_the_roi_defective(tmp_path: Path) -> None:
    # Was an error for the whole structure set; now only Lung_L cannot be measured (its other
    # contour and every other ROI stay usable), and the reason names the degenerate contour.
    ds = make_rtstruct([(1, "BODY", "EXTERNAL", [square(z, 40) for z in (0, 3)]),
                        (4, "Lung_L", "ORGAN", [square(0, 5), np.array([[0, 0, 3.0], [1, 1, 3.0]])])])
    structure_set = read_structure_set(save(ds, tmp_path / "RS.dcm"))
    assert structure_set.roi_by_number(1).defects == ()
    (defect,) = structure_set.roi_by_number(4).defects
    assert defect == "1 closed contour(s) are degenerate (fewer than 3 distinct points or all on one line), on z = 3 mm"


def test_non_axial_dose_is_refused(tmp_path: Path) -> None:
    # A sagittal grid: rows along y, columns along -z.
    ds = make_rtdose(linear_dose(), plan_uid="1.2.3", orientation=(0, 1, 0, 0, 0, -1))
    with pytest.raises(DicomConformanceError, match=r"RD\.dcm: \(0020,0037\) 'Image Orientation \(Patient\)' "
                                                    r"value of \[0, 1, 0, 0, 0, -1\] is not axial"):
        read_dose(save(ds, tmp_path / "RD.dcm"))


def test_empty_structure_is_a_warning(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    rtss_uid = read_structure_set(paths["rtss"]).sop_instance_uid
    ds = make_rtstruct([(1, "BODY", "EXTERNAL", [square(0, 40)]), (2, "PTV", "PTV", [square(0, 5)]),
                        (9, "Bowel", "ORGAN", [])], uid=rtss_uid)
    _replace(paths["rtss"], ds)
    export = read_export(tmp_path)
    assert any("ROI 9 'Bowel' has no contours (empty structure)" in w and "RS.dcm" in w for w in export.warnings)
    bowel = export.structure_sets[0].roi_by_number(9)
    assert bowel.contours == () and bowel.is_empty


def test_errors_are_input_errors(tmp_path: Path) -> None:
    # Every reader failure is an InputError (CLI exit code 3), never a bare library exception.
    (tmp_path / "RD.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00")
    with pytest.raises(InputError, match=r"RD\.dcm: "):
        read_dose(tmp_path / "RD.dcm")
