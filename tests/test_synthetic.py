"""Tests of the synthetic case generator and its DICOM export (coarse specs keep them fast)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from testkit.write import write_case
from plancheck.model.case import load_case
from testkit.synthetic import COURSE_LABELS, CaseSpec, build_case
from testkit.synthetic.case import C1_FULL_ARCS, C1_PARTIAL_ARCS, arc_gantry_angles
from testkit.synthetic.case_file import write_case_file
from testkit.synthetic.shapes import Ellipsoid, Ring, planar_contours

#: coarse grids: same anatomy and dose models, a fraction of the voxels
COARSE = dict(ct_pixels=48, ct_slice_mm=6.0, dose_spacing_conventional_mm=6.0, dose_spacing_sbrt_mm=5.0,
              outline_tolerance_mm=0.01)


@pytest.fixture(scope="module")
def coarse_case():
    return build_case(CaseSpec(**COARSE))


@pytest.fixture(scope="module")
def coarse_violations():
    return build_case(CaseSpec(violations=True, include_ct=False, omit_courses=("C2_LungMet", "C3_VertMet"), **COARSE))


@pytest.fixture(scope="module")
def written(coarse_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("case")
    files = write_case(coarse_case, out)
    return out, files


def _mask(case, course, name):
    x0, y0, z0 = course.origin_mm
    dx, dy, dz = course.spacing_mm
    nz, ny, nx = course.dose_gy.shape
    x = x0 + dx * np.arange(nx)
    y = y0 + dy * np.arange(ny)
    z = z0 + dz * np.arange(nz)
    shape = case.anatomy.shape(name)
    return np.broadcast_to(shape.contains(x[None, None, :], y[None, :, None], z[:, None, None]), course.dose_gy.shape)


def test_ellipsoid_contour_matches_its_radius():
    # a sphere of radius 10 mm: the polygon vertices lie on the circle (bisection to < 1e-3 mm)
    contours = planar_contours(Ellipsoid((1.0, 2.0, 0.0), (10.0, 10.0, 10.0)), [0.0, 6.0, 12.0])
    assert len(contours) == 2  # z = 12 is outside
    radii = np.hypot(contours[0][:, 0] - 1.0, contours[0][:, 1] - 2.0)
    np.testing.assert_allclose(radii, 10.0, atol=1e-3)
    np.testing.assert_allclose(np.hypot(contours[1][:, 0] - 1.0, contours[1][:, 1] - 2.0), 8.0, atol=1e-3)
    assert np.all(contours[1][:, 2] == 6.0)


def test_outline_tolerance_bounds_the_vertex_error_and_enters_the_uids():
    # a sphere of radius 10 mm, rays bisected to 0.01 mm: every vertex within 0.01 mm of the circle
    [poly] = planar_contours(Ellipsoid((0.0, 0.0, 0.0), (10.0, 10.0, 10.0)), [0.0], outline_tolerance_mm=0.01)
    radii = np.hypot(poly[:, 0], poly[:, 1])
    assert np.all(np.abs(radii - 10.0) <= 0.01) and np.any(np.abs(radii - 10.0) > 1e-6)
    assert CaseSpec(outline_tolerance_mm=0.01).uid_key() != CaseSpec().uid_key() == repr(CaseSpec())
    with pytest.raises(ValueError, match="outline_tolerance_mm"):
        CaseSpec(outline_tolerance_mm=0.0)


def test_ring_writes_outer_and_hole():
    ring = Ring(Ellipsoid((0, 0, 0), (20, 20, 20)), Ellipsoid((0, 0, 0), (10, 10, 10)))
    (outer, hole) = planar_contours(ring, [0.0])
    assert np.hypot(*outer[:, :2].T).mean() == pytest.approx(20.0, abs=1e-3)
    assert np.hypot(*hole[:, :2].T).mean() == pytest.approx(10.0, abs=1e-3)


#: a very coarse jittered case (every random draw, a few planes): cheap to build twice
TINY = dict(seed=5, jitter=1.0, ct_pixels=16, ct_slice_mm=20.0, dose_spacing_conventional_mm=8.0,
            dose_spacing_sbrt_mm=8.0, outline_tolerance_mm=0.05)


def test_build_is_deterministic():
    first, again = build_case(CaseSpec(**TINY)), build_case(CaseSpec(**TINY))
    assert again.uid_key == first.uid_key
    for a, b in zip(first.courses, again.courses, strict=True):
        np.testing.assert_array_equal(a.dose_gy, b.dose_gy)
    for a, b in zip(first.structures, again.structures, strict=True):
        assert a.name == b.name and len(a.contours) == len(b.contours)
        for ca, cb in zip(a.contours, b.contours):
            np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(first.ct.hu, again.ct.hu)


def test_case_content(coarse_case):
    assert [c.label for c in coarse_case.courses] == list(COURSE_LABELS)
    names = [s.name for s in coarse_case.structures]
    for required in ("External", "Lung_L", "Lung_R", "Lungs", "Heart", "SpinalCord", "SpinalCord_PRV05",
                     "Esophagus", "Trachea", "Stomach", "Liver", "GTVp", "CTVp", "PTVp", "GTV_Met_Lung",
                     "PTV_Met_Lung", "GTV_Met_Vert", "PTV_Met_Vert",
                     # thoracic organs of TG-101 for the SBRT courses
                     "BrachialPlex_L", "BrachialPlex_R", "GreatVes", "Bronchus", "Chestwall", "Skin"):
        assert required in names
    # abdominal organs and the planning ring only in the clinical-size variant
    assert not {"Kidney_L", "Kidney_R", "Bowel_Small", "Duodenum", "Ring_PTVp"} & set(names)
    assert len(names) == 24
    # Skin: a rind (outer contour and hole) on every plane, the first and last included
    skin_z = [round(c[0, 2], 2) for c in coarse_case.structure("Skin").contours]
    assert all(skin_z.count(z) == 2 for z in skin_z)
    assert len(set(skin_z)) == len(coarse_case.anatomy.z_planes_mm)
    # Lungs: two islands on a plane; Trachea: an outer contour and its lumen on each plane
    lungs_z = [round(c[0, 2], 2) for c in coarse_case.structure("Lungs").contours]
    assert max(lungs_z.count(z) for z in lungs_z) == 2
    trachea_z = [round(c[0, 2], 2) for c in coarse_case.structure("Trachea").contours]
    assert all(trachea_z.count(z) == 2 for z in trachea_z)
    assert len(coarse_case.structure("External").contours) == len(coarse_case.anatomy.z_planes_mm)
    rx = {c.label: (c.prescription_gy, c.fractions) for c in coarse_case.courses}
    assert rx == {"C1_Eso": (60.0, 30), "C2_LungMet": (50.0, 5), "C3_VertMet": (30.0, 3)}


def test_doses_are_plausible_and_zero_outside_body(coarse_case):
    for course in coarse_case.courses:
        body = _mask(coarse_case, course, "External")
        assert np.all(course.dose_gy[~body] == 0.0)
        ptv = course.dose_gy[_mask(coarse_case, course, course.target_name)]
        d95 = np.percentile(ptv, 5) / course.prescription_gy
        # SBRT courses are normalised on the dose interpolated between voxels (as a DVH engine
        # reads it); on these coarse 5 mm grids that lifts D95% at voxel centres by up to ~10 %
        assert 0.97 < d95 < (1.05 if course.fractions > 5 else 1.12), course.label
        assert 1.03 < ptv.max() / course.prescription_gy < (1.35 if course.fractions > 5 else 1.42), course.label
    c1 = coarse_case.course("C1_Eso")
    assert c1.dose_gy[_mask(coarse_case, c1, "SpinalCord")].max() < 45.0
    c3 = coarse_case.course("C3_VertMet")
    assert c3.dose_gy[_mask(coarse_case, c3, "SpinalCord")].max() < 21.9
    # C3 spares the cord PRV: about 17 Gy at its surface (composite EQD2(2) of the PRV < 45 Gy)
    assert c3.dose_gy[_mask(coarse_case, c3, "SpinalCord_PRV05")].max() < 18.5
    # C1's two partial arcs: none through the lateral sectors (75-125 and 235-285 degrees)
    assert [(b.name, b.gantry_start_deg, b.gantry_stop_deg) for b in c1.beams] == [
        ("ARC1", 290.0, 70.0), ("ARC2", 230.0, 130.0)]
    angles = arc_gantry_angles(C1_PARTIAL_ARCS)
    assert not np.any(((angles > 75) & (angles < 125)) | ((angles > 235) & (angles < 285)))


def test_arc_gantry_angles():
    np.testing.assert_allclose(arc_gantry_angles((("A", 350.0, 10.0, "CW"),), step_deg=5.0), [350, 355, 0, 5, 10])
    np.testing.assert_allclose(arc_gantry_angles((("A", 10.0, 350.0, "CC"),), step_deg=10.0), [10, 0, 350])
    assert len(arc_gantry_angles(C1_FULL_ARCS, step_deg=2.0)) == 2 * 180


def test_case_files_validate_and_match_the_variants(tmp_path):
    sample = load_case(write_case_file(CaseSpec(), tmp_path / "sample"))
    assert [m.target for m in sample.metastases] == ["PTV_Met_Lung", "PTV_Met_Vert"]
    assert sample.histology == "squamous_cell_carcinoma" and sample.presentation == "synchronous"
    path = write_case_file(CaseSpec.variant("violations"), tmp_path / "violations")
    assert path.name == "case.yaml"
    violations = load_case(path)
    assert len(violations.metastases) == 6
    assert len({m.organ for m in violations.metastases}) == 4
    assert [m.target for m in violations.metastases].count(None) == 3
    assert "PTV_Met_Liver" in [m.target for m in violations.metastases]
    # deterministic, readable YAML: same bytes twice, no anchors
    text = path.read_text(encoding="utf-8")
    assert write_case_file(CaseSpec.variant("violations"), tmp_path / "again").read_text(encoding="utf-8") == text
    assert "&id" not in text and "*id" not in text


def test_violations_variant_breaks_limits(coarse_case, coarse_violations):
    assert [c.label for c in coarse_violations.courses] == ["C1_Eso"]
    good, bad = coarse_case.course("C1_Eso"), coarse_violations.course("C1_Eso")
    cord_good = good.dose_gy[_mask(coarse_case, good, "SpinalCord")].max()
    cord_bad = bad.dose_gy[_mask(coarse_violations, bad, "SpinalCord")].max()
    assert cord_bad > cord_good and cord_bad == pytest.approx(50.0, abs=3.0)
    lung_bad = bad.dose_gy[_mask(coarse_violations, bad, "Lungs")]
    assert np.mean(lung_bad >= 20.0) > 0.28
    ptv_bad = bad.dose_gy[_mask(coarse_violations, bad, "PTVp")] / 60.0
    # the cranial 3 cm under-dosed to about 92 %: D95% about 93 %, V100% well below 90 %
    assert np.percentile(ptv_bad, 5) == pytest.approx(0.93, abs=0.02)
    assert np.mean(ptv_bad >= 1.0) < 0.85


def test_omit_structures_and_jitter(coarse_case):
    spec = CaseSpec(seed=3, jitter=1.0, omit_structures=("PTV_Met_Vert",), include_ct=False,
                    omit_courses=("C1_Eso", "C2_LungMet"), **{**COARSE, "ct_slice_mm": 12.0})
    case = build_case(spec)
    assert "PTV_Met_Vert" not in [s.name for s in case.structures]
    # numbering is stable, so the plan keeps its (now dangling) reference
    assert case.course("C3_VertMet").target_roi_number == 18
    assert case.uid_key != coarse_case.uid_key
    # jitter moves the targets
    assert case.anatomy.isocenters_mm["C3_VertMet"] != coarse_case.anatomy.isocenters_mm["C3_VertMet"]
    with pytest.raises(ValueError, match=r"omit_courses names unknown courses \['C9'\]"):
        CaseSpec(omit_courses=("C9",))


def test_written_files_link_by_uid(written, coarse_case):
    out, files = written
    names = sorted(p.name for p in files)
    assert {"RS_sample.dcm", "RP_C1_Eso.dcm", "RD_C1_Eso.dcm", "RP_C3_VertMet.dcm", "CT_001.dcm"} <= set(names)
    datasets = {p.name: pydicom.dcmread(p) for p in files}
    rtss = datasets["RS_sample.dcm"]
    frame = rtss.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    assert {ds.FrameOfReferenceUID for ds in datasets.values()} == {frame}
    assert {ds.PatientID for ds in datasets.values()} == {"PC-SAMPLE-001"}
    assert {str(ds.PatientName) for ds in datasets.values()} == {"PLANCHECK^SAMPLE"}
    assert len({ds.StudyInstanceUID for ds in datasets.values()}) == 1
    roi_numbers = {r.ROINumber for r in rtss.StructureSetROISequence}
    for label in COURSE_LABELS:
        rtplan, rtdose = datasets[f"RP_{label}.dcm"], datasets[f"RD_{label}.dcm"]
        assert rtplan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rtss.SOPInstanceUID
        assert rtdose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rtplan.SOPInstanceUID
        assert rtplan.DoseReferenceSequence[0].ReferencedROINumber in roi_numbers
        assert (rtdose.DoseSummationType, rtdose.DoseUnits, rtdose.DoseType) == ("PLAN", "GY", "PHYSICAL")
        assert rtplan.RTPlanLabel == label and rtplan.ApprovalStatus == "APPROVED"
        assert {b.TreatmentMachineName for b in rtplan.BeamSequence} == {"TrueBeam1"}
        dose = rtdose.pixel_array * float(rtdose.DoseGridScaling)
        course = coarse_case.course(label)
        np.testing.assert_allclose(dose, course.dose_gy, atol=float(rtdose.DoseGridScaling))
    ct_uids = {ds.SOPInstanceUID for n, ds in datasets.items() if n.startswith("CT_")}
    first = rtss.ROIContourSequence[0].ContourSequence[0]
    assert first.ContourImageSequence[0].ReferencedSOPInstanceUID in ct_uids


def test_writing_twice_gives_identical_bytes(written, coarse_case, tmp_path):
    out, files = written
    again = write_case(coarse_case, tmp_path)
    for a, b in zip(files, again, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
