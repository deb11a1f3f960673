"""Real exports of planning systems (``tests/data/real_exports``, see its README for origin
and licences): what plancheck reads from each, and what each command answers.

Expectations come from the files themselves (their DICOM headers, read with pydicom here)
and from what each export lacks (a structure set, a dose).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest

from plancheck.cli.main import main
from plancheck.dicom import read_dose, read_export, read_plan, read_structure_set
from plancheck.dicom.classify import classify, gather_sources
from plancheck.dicom.store import group_plans, index_objects
from plancheck.errors import LinkError

DATA = Path(__file__).parent / "data" / "real_exports"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return int(code), captured.out, captured.err


def one(folder: str, prefix: str) -> Path:
    (path,) = sorted((DATA / folder).glob(prefix + "*"))
    return path


@pytest.mark.parametrize(("folder", "prefix", "rois"), [
    ("eclipse_srs_nodose", "RS", 17), ("tomo_nodose", "RS", 15), ("gammaplan_gk", "RTSS", 1),
    ("gammaplan_nodose", "RTSTRUCT", 8), ("rs_proton_sobp", "RS", 5), ("rs_proton_ramp_full", "RS", 5),
    ("pydicom_rt", "rtstruct", 3),
])
def test_real_structure_sets_have_no_defects(folder: str, prefix: str, rois: int) -> None:
    # Real planning systems' contours are sound: the plausibility checks find nothing to
    # refuse (no false alarm), on 150 000 points of Eclipse and 114 000 of TomoTherapy too.
    path = one(folder, prefix)
    structure_set = read_structure_set(path)
    declared = len(pydicom.dcmread(path, stop_before_pixels=True, force=True).StructureSetROISequence)
    assert len(structure_set.rois) == declared == rois
    assert [(r.name, r.defects) for r in structure_set.rois if r.defects] == []


@pytest.mark.parametrize(("folder", "missing"), [
    ("eclipse_srs_nodose", "has no usable dose"),
    ("gammaplan_nodose", "has no usable dose"),
    ("tomo_nodose", "has no usable dose"),
    ("monaco_nostruct", "references RT Structure Set 1.2.840.10008.5.1.4.1.1.481.3.1520614558"),
    ("pinnacle_nostruct", "references RT Structure Set 2.16.840.1.113669.2.931128.305045163.20180315140847.391501"),
])
def test_partial_exports_say_what_is_missing(folder: str, missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    # (dvh and fractionation read exports with the same reader: checked once, on Monaco, below)
    code, out, err = run(["check", str(DATA / folder)], capsys)
    assert code == 3 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("plancheck: unusable input: ") and missing in line


def test_every_command_names_what_a_partial_export_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["dvh", str(DATA / "monaco_nostruct")], capsys)
    assert code == 3 and out == "" and "references RT Structure Set" in err
    # fractionation works from the plan alone and says what it could not compute
    code, out, err = run(["fractionation", str(DATA / "monaco_nostruct")], capsys)
    assert code == 0 and err == ""
    assert "AIMRT2: D95% not computed: references RT Structure Set" in out


def test_monaco_plan_without_file_meta_is_read_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Monaco writes bare data sets (no preamble, no File Meta Information). check, batch and
    # the receiver's index read it the same way; before, batch passed it over without a word.
    plan_file = one("monaco_nostruct", "2018CompLung")
    assert plan_file.read_bytes()[128:132] != b"DICM"
    plan = read_plan(plan_file)
    assert plan.label == str(pydicom.dcmread(plan_file, force=True).RTPlanLabel)
    (classified,) = classify(gather_sources(plan_file)[0]).files
    (indexed,) = index_objects(plan_file.parent).objects
    assert classified.kind == indexed.kind == "RTPLAN"
    (group,) = group_plans([indexed])
    assert group.missing == ("RT Structure Set 1.2.840.10008.5.1.4.1.1.481.3.1520614558 referenced by the plan is "
                             "not present", "no RT Dose references RT Plan " + plan.sop_instance_uid)
    code, out, err = run(["batch", str(plan_file.parent), "--reports", str(tmp_path / "reports"), "--workers", "0"],
                         capsys)
    assert code == 3  # the plan could not be checked: its ERROR row says why
    assert "references RT Structure Set" in (tmp_path / "reports" / "summary.csv").read_text(encoding="utf-8")


def test_pinnacle_fraction_dose_is_read() -> None:
    path = one("pinnacle_nostruct", "RTDOSE")
    ds = pydicom.dcmread(path)
    grid = read_dose(path)
    assert grid.summation_type == str(ds.DoseSummationType) == "FRACTION"
    assert grid.shape == (int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    # the largest stored value times Dose Grid Scaling, as float32
    assert grid.max_dose_gy == pytest.approx(float(ds.pixel_array.max()) * float(ds.DoseGridScaling), rel=1e-6)


def test_pydicom_files_of_three_patients_are_refused() -> None:
    with pytest.raises(LinkError, match=r"the input holds files of 3 different patients"):
        read_export(DATA / "pydicom_rt")


def test_gammaplan_placeholder_beam_is_never_passed(capsys: pytest.CaptureFixture[str]) -> None:
    # GammaPlan exports a placeholder beam: machine "BOGUS NAME", Nominal Beam Energy 0, no
    # meterset. The beam rules are NOT EVALUATED with the reason (before: machine PASS,
    # energy FAIL on "0 MV").
    code, out, _ = run(["check", str(DATA / "gammaplan_gk"), "--format", "json"], capsys)
    results = {r["rule_id"]: r for r in json.loads(out)["results"]}
    assert {rule: results[rule]["status"] for rule in ("INT-MACHINE", "INT-ENERGY", "INT-MU")} == dict.fromkeys(
        ("INT-MACHINE", "INT-ENERGY", "INT-MU"), "NOT_EVALUATED")
    assert "'BOGUS NAME' is a placeholder" in results["INT-MACHINE"]["message"]
    assert "'Nominal Beam Energy' of 0 or less" in results["INT-ENERGY"]["message"]
    assert "no (300B,0086) 'Beam Meterset'" in results["INT-MU"]["message"]
    assert code == 0  # nothing failed: the plan's beam could not be judged at all


def test_proton_plan_energy_and_mu_rules_do_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", str(DATA / "rs_proton_sobp"), "--format", "json"], capsys)
    doc = json.loads(out)
    not_applicable = {n["rule_id"]: n["reason"] for n in doc["not_applicable"]}
    assert not_applicable["INT-ENERGY"] == ("Cube101010 is an RT Ion Plan: the beam-energy check is for photon beams "
                                            "(nominal energies in MV)")
    assert not_applicable["INT-MU"] == "Cube101010 is an RT Ion Plan: the MU per Gy ranges are for photon beams"
    assert "INT-ENERGY" not in {r["rule_id"] for r in doc["results"]}
    assert read_plan(one("rs_proton_sobp", "RP")).is_ion


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RayStation EFFECTIVE-dose export with the plan's Patient ID made equal to the other
    files' (as exported they differ, and plancheck refuses mixed patients)."""
    folder = tmp_path_factory.mktemp("ramp")
    for path in (DATA / "rs_proton_ramp_full").iterdir():
        if path.suffix == ".dcm":
            shutil.copyfile(path, folder / path.name)
    structures = pydicom.dcmread(one("rs_proton_ramp_full", "RS"), stop_before_pixels=True)
    plan = pydicom.dcmread(folder / "ramped_2Gy_ver2_full.dcm")
    plan.PatientID = structures.PatientID
    plan.save_as(folder / "ramped_2Gy_ver2_full.dcm")
    return folder


def test_ramp_as_exported_is_refused_for_its_two_patient_ids(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", str(DATA / "rs_proton_ramp_full")], capsys)
    assert code == 3 and "2 different patients" in err


def test_effective_dose_is_labelled_in_dvh_outputs(ramp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert str(pydicom.dcmread(one("rs_proton_ramp_full", "RD"), stop_before_pixels=True).DoseType) == "EFFECTIVE"
    code, out, _ = run(["dvh", str(ramp), "--structure", "Cube101010", "--metric", "Mean[Gy]"], capsys)
    assert "dose: RBE-weighted (EFFECTIVE)" in out.splitlines()[0]
    assert "Dose Type EFFECTIVE: RBE-weighted dose, Gy(RBE)" in out
    assert "physical" not in out
    code, out, _ = run(["dvh", str(ramp), "--structure", "Cube101010", "--metric", "Mean[Gy]", "--format", "json"],
                       capsys)
    (table,) = json.loads(out)["plans"]
    assert table["dose_type"] == "EFFECTIVE" and table["structures"][0]["dose_kind"] == "RBE-weighted (EFFECTIVE)"
    code, out, _ = run(["dvh", str(ramp), "--structure", "Cube101010", "--metric", "Mean[Gy]", "--format", "csv"],
                       capsys)
    assert ",RBE-weighted (EFFECTIVE),," in out.splitlines()[1]
    # Converting an RBE-weighted dose to EQD2 says which dose was converted.
    code, out, _ = run(["dvh", str(ramp), "--structure", "Cube101010", "--metric", "Mean[Gy]", "--dose-kind", "eqd2",
                        "--alpha-beta", "10", "--format", "json"], capsys)
    assert json.loads(out)["plans"][0]["structures"][0]["dose_kind"] == "EQD2(α/β=10 Gy) of RBE-weighted dose"


#: one physical-dose rule on the External, to see how RBE-weighted dose is labelled in a check
RAMP_PROTOCOL = """\
schema_version: 1
id: ramp
title: RBE-weighted dose labels
version: "1"
rules:
  - id: EXT-MEAN
    kind: dvh
    title: External mean
    category: oar
    structure: External
    metric: "Mean[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 100}}
    provenance: {source: test, section: "1", confidence: institutional}
"""


def test_effective_dose_is_labelled_in_check_and_fractionation(ramp: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    protocol = tmp_path / "ramp.yaml"
    protocol.write_text(RAMP_PROTOCOL, encoding="utf-8")
    code, out, _ = run(["check", str(ramp), "--protocol", str(protocol), "--format", "json"], capsys)
    doc = json.loads(out)
    assert doc["plans"][0]["dose_type"] == "EFFECTIVE"
    (result,) = [r for r in doc["results"] if r["rule_id"] == "EXT-MEAN"]
    assert "Mean[Gy] in Slope101010E_o_1: RBE-weighted (EFFECTIVE) dose = " in result["message"]
    assert result["details"]["dose_type"] == "EFFECTIVE"
    code, out, _ = run(["check", str(ramp), "--protocol", str(protocol)], capsys)
    assert "dose RBE-weighted (EFFECTIVE)" in out.splitlines()[1]
    code, out, _ = run(["fractionation", str(ramp), "--format", "json"], capsys)
    (course,) = json.loads(out)["courses"]
    assert course["dose_type"] == "EFFECTIVE"
    assert "the dose is RBE-weighted (Dose Type EFFECTIVE): D95% is in Gy(RBE)" in course["remarks"]


def test_effective_dose_is_labelled_in_the_html_plots(ramp: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    protocol = tmp_path / "ramp.yaml"
    protocol.write_text(RAMP_PROTOCOL, encoding="utf-8")
    out = tmp_path / "report.html"
    code, _, _ = run(["check", str(ramp), "--protocol", str(protocol), "--format", "html", "--output", str(out)],
                     capsys)
    html = out.read_text(encoding="utf-8")
    assert "Slope101010E_o_1: RBE-weighted (EFFECTIVE) dose" in html and "Dose [Gy(RBE)]" in html
    assert ": physical dose" not in html  # (the rule INT-DOSE-UNITS is titled "Dose in Gy, physical dose")
