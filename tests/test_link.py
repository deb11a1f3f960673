"""read_export: classification, linking RTDOSE → RTPLAN → RTSTRUCT, dose summation."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from plancheck.dicom import read_export
from plancheck.errors import LinkError
from test_read import (
    RT_IMAGE, _base, linear_dose, make_rtdose, make_rtplan, make_rtstruct, save, square, write_export,
)


def test_plan_dose_export(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    (tmp_path / "notes.txt").write_text("not DICOM")
    save(_base(RT_IMAGE, "RTIMAGE"), tmp_path / "RI.dcm")
    export = read_export(tmp_path)
    assert export.patient_id == "PC-TEST-1"
    assert len(export.courses) == 1 and len(export.structure_sets) == 1
    course = export.courses[0]
    assert course.label == "C1_Test"
    assert course.structure_set is export.structure_sets[0]
    assert course.dose_summary == "PLAN dose RD.dcm used as is"
    assert course.dose.summation_type == "PLAN"
    assert course.dose.referenced_plan_uid == course.plan.sop_instance_uid
    assert course.dose.sources[0].path == str(paths["rtdose"])
    np.testing.assert_allclose(course.dose.dose_gy, linear_dose(), atol=1e-4)
    assert [(s.modality, s.number_of_images, s.slice_thickness_mm) for s in export.images] == [("CT", 3, 3.0)]
    reasons = {Path(s.path).name: s.reason for s in export.skipped}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "RT Image Storage" in reasons["RI.dcm"]
    # The RT Image is DICOM the physicist may have expected to be read, so it is named in the
    # report's one note on skipped files; notes.txt is only counted.
    assert export.warnings == (
        "2 file(s) of the input were not used — RI.dcm: SOP class RT Image Storage "
        "(1.2.840.10008.5.1.4.1.1.481.1) is not used by plancheck; 1 file(s) that are not DICOM",)


def test_list_of_files_and_zip(tmp_path: Path) -> None:
    paths = write_export(tmp_path / "x")
    export = read_export([paths["rtss"], paths["rtplan"], paths["rtdose"]])
    assert len(export.courses) == 1
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in (tmp_path / "x").rglob("*.dcm"):
            zf.write(file, file.relative_to(tmp_path / "x").as_posix())
    export = read_export(archive)
    assert export.courses[0].dose_summary == "PLAN dose RD.dcm used as is"
    assert export.courses[0].dose.sources[0].path == f"{archive}!RD.dcm"
    assert export.images[0].number_of_images == 3


def test_beam_doses_are_summed(tmp_path: Path) -> None:
    # Three BEAM doses: beam n holds n × linear_dose / 2 (at most 3 × 346 / 2 = 519 Gy, below the
    # 1000 Gy plancheck accepts in a file), so the sum is 6 / 2 = 3 × linear_dose.
    write_export(tmp_path, n_beams=3, summation="BEAM", dose_factor=0.5)
    course = read_export(tmp_path).courses[0]
    assert course.dose_summary == "3 BEAM doses summed on the grid of RD_b1.dcm"
    assert course.dose.summation_type == "SUMMED"
    assert [s.referenced_beam_numbers for s in course.dose.sources] == [(1,), (2,), (3,)]
    np.testing.assert_allclose(course.dose.dose_gy, 3 * linear_dose(), rtol=1e-5)


def test_beam_session_doses_are_scaled_by_fractions(tmp_path: Path) -> None:
    write_export(tmp_path, n_beams=2, summation="BEAM_SESSION", fractions=5)
    course = read_export(tmp_path).courses[0]
    assert "2 BEAM_SESSION doses summed" in course.dose_summary
    assert "RD_b1.dcm × 5 fractions" in course.dose_summary
    np.testing.assert_allclose(course.dose.dose_gy, 5 * 3 * linear_dose(), rtol=1e-5)


def test_beam_doses_on_different_grids_are_resampled(tmp_path: Path) -> None:
    rtss = make_rtstruct([(1, "BODY", "EXTERNAL", [square(0, 40)])])
    plan = make_rtplan(rtss_uid=rtss.SOPInstanceUID, beams=[(1, "B1", 100), (2, "B2", 100)])
    save(rtss, tmp_path / "RS.dcm")
    save(plan, tmp_path / "RP.dcm")
    # A field linear in x, y, z: trilinear resampling reproduces it exactly.
    def field(origin, spacing, shape):
        k, j, i = np.indices(shape)
        x, y, z = (origin[0] + spacing[0] * i, origin[1] + spacing[1] * j, origin[2] + spacing[2] * k)
        return 100 + x + 2 * y + 3 * z
    a_origin, a_spacing, a_shape = (-10.0, -20.0, -5.0), (2.0, 2.5, 3.0), (4, 5, 6)
    b_origin, b_spacing, b_shape = (-12.0, -22.0, -8.0), (1.0, 1.0, 1.5), (14, 16, 18)
    save(make_rtdose(field(a_origin, a_spacing, a_shape), plan_uid=plan.SOPInstanceUID, origin_mm=a_origin,
                     spacing_mm=a_spacing, summation="BEAM", beams=[1]), tmp_path / "RD_b1.dcm")
    save(make_rtdose(field(b_origin, b_spacing, b_shape), plan_uid=plan.SOPInstanceUID, origin_mm=b_origin,
                     spacing_mm=b_spacing, summation="BEAM", beams=[2]), tmp_path / "RD_b2.dcm")
    course = read_export(tmp_path).courses[0]
    assert "1 resampled trilinearly" in course.dose_summary
    assert course.dose.shape == a_shape
    np.testing.assert_allclose(course.dose.dose_gy, 2 * field(a_origin, a_spacing, a_shape), rtol=1e-5)


def _partial_beam_export(tmp_path: Path, b_origin_x: float) -> None:
    """Beam 1 on grid A (x -10..0 every 2 mm); beam 2 on a finer grid B of 8 columns from
    ``b_origin_x`` (1 mm apart), as tall and deep as A. Both doses are the linear field."""
    rtss = make_rtstruct([(1, "BODY", "EXTERNAL", [square(0, 40)])])
    plan = make_rtplan(rtss_uid=rtss.SOPInstanceUID, beams=[(1, "B1", 100), (2, "B2", 100)])
    save(rtss, tmp_path / "RS.dcm")
    save(plan, tmp_path / "RP.dcm")
    for beam, origin, spacing, shape in ((1, (-10.0, -20.0, -5.0), (2.0, 2.5, 3.0), (4, 5, 6)),
                                         (2, (b_origin_x, -22.0, -8.0), (1.0, 1.0, 1.5), (14, 16, 8))):
        k, j, i = np.indices(shape)
        field = 100 + (origin[0] + spacing[0] * i) + 2 * (origin[1] + spacing[1] * j) + 3 * (origin[2] + spacing[2] * k)
        save(make_rtdose(field, plan_uid=plan.SOPInstanceUID, origin_mm=origin, spacing_mm=spacing,
                         summation="BEAM", beams=[beam]), tmp_path / f"RD_b{beam}.dcm")


def test_beam_doses_are_summed_only_where_every_grid_covers(tmp_path: Path) -> None:
    # Grid B's columns are x = -12..-5 mm, its region reaches x = -4.5 mm (half a spacing). Grid
    # A's columns x = -4, -2, 0 lie beyond it: beam 2's dose there is not known, and a sum with
    # 0 Gy from it would let a structure there pass on a lower bound. The sum keeps A's columns
    # x = -10, -8, -6 (shape 4 × 5 × 3); there both doses are the linear field, so the sum is twice it.
    _partial_beam_export(tmp_path, b_origin_x=-12.0)
    export = read_export(tmp_path)
    course = export.courses[0]
    assert "cropped to the region every dose covers" in course.dose_summary
    assert course.dose.shape == (4, 5, 3)
    np.testing.assert_allclose(course.dose.x_mm, [-10.0, -8.0, -6.0])
    zz, yy, xx = np.meshgrid(course.dose.z_mm, course.dose.y_mm, course.dose.x_mm, indexing="ij")
    np.testing.assert_allclose(course.dose.dose_gy, 2 * (100 + xx + 2 * yy + 3 * zz), rtol=1e-5)
    (warning,) = [w for w in export.warnings if "RD_b2.dcm" in w]
    assert "does not cover 60 voxel(s) of the grid of RD_b1.dcm, where its dose is not known" in warning  # 3·5·4


def test_beam_doses_that_share_no_region_are_refused(tmp_path: Path) -> None:
    _partial_beam_export(tmp_path, b_origin_x=40.0)  # grid B: x 40..47 mm, grid A: x -10..0 mm
    with pytest.raises(LinkError, match=r"the BEAM doses of RT Plan .* \(RD_b1\.dcm, RD_b2\.dcm\) share no region"):
        read_export(tmp_path)


def test_plan_dose_supersedes_beam_doses(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    plan_uid = read_export(tmp_path).courses[0].plan.sop_instance_uid
    save(make_rtdose(linear_dose(), plan_uid=plan_uid, summation="BEAM", beams=[1]), tmp_path / "RD_beam.dcm")
    export = read_export(tmp_path)
    assert export.courses[0].dose.sources[0].path == str(paths["rtdose"])
    reasons = {Path(s.path).name: s.reason for s in export.skipped}
    assert reasons["RD_beam.dcm"].startswith("superseded by the PLAN dose")


def test_several_plans_share_one_structure_set(tmp_path: Path) -> None:
    rtss = make_rtstruct([(1, "BODY", "EXTERNAL", [square(0, 40)]), (2, "PTV", "PTV", [square(0, 5)])])
    save(rtss, tmp_path / "RS.dcm")
    for label in ("C1", "C2", "C3"):
        plan = make_rtplan(rtss_uid=rtss.SOPInstanceUID, label=label)
        save(plan, tmp_path / f"RP_{label}.dcm")
        save(make_rtdose(linear_dose(), plan_uid=plan.SOPInstanceUID), tmp_path / f"RD_{label}.dcm")
    # the three plans prescribe to the same PTV of the same structure set: alternatives, kept side by side
    export = read_export(tmp_path, alternatives="keep")
    assert [c.label for c in export.courses] == ["C1", "C2", "C3"]
    assert any("C1" in n and "C3" in n and "alternatives of one another" in n for n in export.course_notes)
    assert all(c.structure_set is export.structure_sets[0] for c in export.courses)
    assert [Path(c.dose.sources[0].path).name for c in export.courses] == ["RD_C1.dcm", "RD_C2.dcm", "RD_C3.dcm"]


def test_missing_beam_dose_is_an_error(tmp_path: Path) -> None:
    paths = write_export(tmp_path, n_beams=3, summation="BEAM")
    paths["rtdose2"].unlink()
    with pytest.raises(LinkError, match=r"RP\.dcm: .*BEAM doses but none for treatment beam\(s\) 2 'B2'"):
        read_export(tmp_path)


def test_multi_plan_dose_is_refused(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    plan_uid = read_export(tmp_path).courses[0].plan.sop_instance_uid
    paths["rtdose"].unlink()
    save(make_rtdose(linear_dose(), plan_uid=plan_uid, summation="MULTI_PLAN"), tmp_path / "RD_sum.dcm")
    with pytest.raises(LinkError, match=r"RP\.dcm: RT Plan 'C1_Test' has no usable dose.*RD_sum\.dcm is a "
                                        r"MULTI_PLAN dose \(a sum of several plans\), which plancheck refuses"):
        read_export(tmp_path)


def test_duplicate_file_is_skipped(tmp_path: Path) -> None:
    paths = write_export(tmp_path)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "RD_copy.dcm").write_bytes(paths["rtdose"].read_bytes())
    export = read_export(tmp_path)
    reasons = {Path(s.path).name: s.reason for s in export.skipped}
    assert "duplicate of" in reasons.get("RD.dcm", "") + reasons.get("RD_copy.dcm", "")


def test_duplicate_with_rewritten_file_meta_is_the_same_object(tmp_path: Path) -> None:
    # an export tool rewrites the File Meta Information (its own implementation name): same object
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths["rtplan"])
    ds.file_meta.ImplementationVersionName = "OTHER_TOOL_1"
    ds.save_as(tmp_path / "RP_copy.dcm")
    export = read_export(tmp_path)
    assert len(export.courses) == 1
    assert any("duplicate of" in s.reason for s in export.skipped)


@pytest.mark.parametrize("key", ["rtplan", "rtdose", "rtss"])
def test_two_different_objects_with_one_uid_are_refused(tmp_path: Path, key: str) -> None:
    # an edited object re-exported under its old SOP Instance UID beside the old file: which one is
    # current cannot be told, so neither is used (keeping the first by path could grade the old one)
    paths = write_export(tmp_path)
    ds = pydicom.dcmread(paths[key])
    ds.SeriesDescription = "edited"
    ds.save_as(tmp_path / "z_edited.dcm")
    with pytest.raises(LinkError, match=r"same SOP Instance UID but different contents: plancheck cannot tell "
                                        r"which one is current"):
        read_export(tmp_path)


def test_ct_in_other_frame_is_a_warning(tmp_path: Path) -> None:
    from test_read import make_ct
    write_export(tmp_path)
    save(make_ct(0.0, series_uid=generate_uid(), frame="1.2.3.999"), tmp_path / "MR" / "x.dcm")
    export = read_export(tmp_path)
    assert any("1.2.3.999" in w for w in export.warnings)


def test_fraction_session_dose_is_scaled(tmp_path: Path) -> None:
    paths = write_export(tmp_path, fractions=30)
    plan_uid = read_export(tmp_path).courses[0].plan.sop_instance_uid
    save(make_rtdose(linear_dose() / 30, plan_uid=plan_uid, summation="FRACTION_SESSION", fraction_group=1),
         paths["rtdose"])
    course = read_export(tmp_path).courses[0]
    assert course.dose_summary == ("FRACTION_SESSION dose RD.dcm multiplied by the fractions planned "
                                   "(RD.dcm × 30 fractions)")
    assert course.dose.summation_type == "SUMMED"
    np.testing.assert_allclose(course.dose.dose_gy, linear_dose(), rtol=1e-5)


def test_a_fraction_dose_of_a_group_the_plan_does_not_have_is_refused(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # The plan has fraction group 1 only. RD_g1 (group 1) holds 70 % of its dose, RD_g2 a 30 %
    # dose of a group 2 the plan does not have: before, both were summed into a 100 % course
    # and INT-DOSE-SUM passed. Now refused like the FRACTION_SESSION case.
    from plancheck.cli.main import main
    paths = write_export(tmp_path)
    plan_uid = read_export(tmp_path).courses[0].plan.sop_instance_uid
    paths["rtdose"].unlink()
    for group, share in ((1, 0.7), (2, 0.3)):
        save(make_rtdose(linear_dose() * share, plan_uid=plan_uid, summation="FRACTION", fraction_group=group),
             tmp_path / f"RD_g{group}.dcm")
    with pytest.raises(LinkError, match=r"RD_g2\.dcm: references fraction group 2 \(\(300C,0022\) 'Referenced "
                                        r"Fraction Group Number'\), which the plan 'C1_Test' does not have"):
        read_export(tmp_path)
    assert main(["check", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "RD_g2.dcm: references fraction group 2" in err and "Traceback" not in err
