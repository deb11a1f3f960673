"""The ``integrity`` rule kind (consensus.md §6) on the sample and on manipulated in-memory exports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from plancheck.dicom import read_export
from plancheck.model.dose import DoseSource
from plancheck.protocol.loader import load_protocol
from plancheck.rules.base import RuleNotApplicable
from plancheck.rules.context import CheckContext
from plancheck.rules.findings import Status
from plancheck.rules.kinds.integrity_rule import IntegrityRule, coverage_pct, evaluate_integrity_rule

INTEGRITY_RULE = TypeAdapter(IntegrityRule)  # the union of the integrity checks' models, on 'check'
from plancheck.rules.runner import run_check

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"


@pytest.fixture(scope="module")
def export():
    return read_export(SAMPLE)


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("plan-integrity")


def rule_of(protocol, rule_id: str, **changes) -> IntegrityRule:
    base = protocol.rule(rule_id).rule
    return INTEGRITY_RULE.validate_python({**base.model_dump(), **changes}) if changes else base


def evaluate(protocol, export, rule_id: str, **changes):
    ctx = CheckContext(export, protocol)
    return evaluate_integrity_rule(rule_of(protocol, rule_id, **changes), ctx)


def with_course(export, index: int, *, plan=None, dose=None, structure_set=None):
    courses = list(export.courses)
    c = courses[index]
    courses[index] = dataclasses.replace(c, plan=plan or c.plan, dose=dose or c.dose,
                                         structure_set=structure_set or c.structure_set)
    return dataclasses.replace(export, courses=tuple(courses))


def with_beams(export, index: int, **beam_changes):
    plan = export.courses[index].plan
    beams = tuple(dataclasses.replace(b, **beam_changes) if b.number == 1 else b for b in plan.beams)
    return with_course(export, index, plan=dataclasses.replace(plan, beams=beams))


def test_plan_integrity_protocol_passes_on_the_sample(export, protocol):
    assert {r.rule.id for r in protocol.rules} == {
        "INT-PATIENT", "INT-REFS", "INT-DOSE-UNITS", "INT-DOSE-SUM", "INT-GRID-COVER", "INT-GRID-SPACING",
        "INT-HETERO", "INT-RX-DOSE", "INT-FRACTIONATION", "INT-ISO", "INT-MACHINE", "INT-ENERGY", "INT-MU"}
    for r in protocol.rules:
        assert r.rule.category == "integrity" and r.rule.provenance.section.startswith("plan integrity")
        assert r.rule.provenance.confidence in ("companion", "provisional")
    report = run_check(export, protocol)
    assert not report.not_applicable
    bad = [(f.rule_id, f.status, f.message) for f in report.findings if f.status is not Status.PASS]
    assert bad == []
    # one finding per course for per-course checks
    assert sum(f.rule_id == "INT-MU" for f in report.findings) == 3


def test_same_patient(export, protocol):
    rtss = dataclasses.replace(export.structure_sets[0], patient_id="SOMEONE-ELSE")
    f = evaluate(protocol, dataclasses.replace(export, structure_sets=(rtss,)), "INT-PATIENT")[0]
    assert f.status is Status.FAIL and "differs from the plan's" in f.message and "SOMEONE-ELSE" not in f.message
    f = evaluate(protocol, dataclasses.replace(export, patient_id=""), "INT-PATIENT")[0]
    assert f.status is Status.NOT_EVALUATED and "'Patient ID' of the RT Plan is empty" in f.message


def test_references(export, protocol):
    c = export.courses[1]
    broken = with_course(export, 1, dose=dataclasses.replace(c.dose, referenced_plan_uid="1.2.3", frame_of_reference_uid="9.9"))
    f = evaluate(protocol, broken, "INT-REFS")[1]
    assert f.status is Status.FAIL and "references RT Plan 1.2.3" in f.message and "frame of reference 9.9" in f.message
    unref = with_course(export, 0, plan=dataclasses.replace(export.courses[0].plan, referenced_structure_set_uid=""))
    assert evaluate(protocol, unref, "INT-REFS")[0].status is Status.WARN


def test_dose_type(export, protocol):
    effective = with_course(export, 0, dose=dataclasses.replace(export.courses[0].dose, dose_type="EFFECTIVE"))
    f = evaluate(protocol, effective, "INT-DOSE-UNITS")[0]
    assert f.status is Status.FAIL and "'Dose Type' is 'EFFECTIVE', the protocol expects PHYSICAL" in f.message
    assert evaluate(protocol, effective, "INT-DOSE-UNITS", allowed_dose_types=["PHYSICAL", "EFFECTIVE"])[0].status is Status.PASS


def test_dose_summation(export, protocol):
    c = export.courses[0]
    beam = dataclasses.replace(c.dose, summation_type="SUMMED", sources=(DoseSource("RD1.dcm", "1.1", "BEAM", (1,)),))
    f = evaluate(protocol, with_course(export, 0, dose=beam), "INT-DOSE-SUM")[0]
    assert f.status is Status.FAIL and "BEAM doses hold beams [1] but the plan's treatment beams are [1, 2]" in f.message
    f = evaluate(protocol, with_course(export, 0, dose=beam), "INT-DOSE-SUM", accepted_summation_types=["PLAN"])[0]
    assert f.status is Status.FAIL and "'Dose Summation Type' BEAM is not accepted" in f.message


def cropped(dose, z_lo_mm: float, z_hi_mm: float):
    keep = (dose.z_mm >= z_lo_mm) & (dose.z_mm <= z_hi_mm)
    return dataclasses.replace(dose, dose_gy=dose.dose_gy[keep], z_mm=dose.z_mm[keep])


def test_grid_covers_and_equals_the_dvh_coverage(export, protocol):
    # PTVp spans z -57..57 mm: a grid ending at z = 0 covers about half of it
    short = with_course(export, 0, dose=cropped(export.courses[0].dose, -150, 0))
    ctx = CheckContext(short, protocol)
    roi, info = ctx.roi_named("PTVp"), ctx.courses[0]
    pct = coverage_pct(ctx, roi, info)
    assert 40 < pct < 60
    assert pct == pytest.approx(ctx.dvh(roi, [info]).dose_coverage_pct, abs=1e-9)
    f = evaluate_integrity_rule(rule_of(protocol, "INT-GRID-COVER"), ctx)[0]
    assert f.status is Status.FAIL and f"{pct:.1f}% of PTVp" in f.message and "PTVp" in f.structures
    # a list of standard names; the External is excluded by default
    listed = evaluate(protocol, short, "INT-GRID-COVER", structures=["Stomach", "NoSuchOrgan"])[0]
    assert listed.status is Status.PASS and listed.details["not_in_structure_set"] == ["NoSuchOrgan"]


def test_grid_spacing_4_mm_fails(export, protocol):
    d = export.courses[0].dose
    coarse = dataclasses.replace(d, dose_gy=d.dose_gy[::1, ::1, :30], x_mm=d.x_mm[0] + 4.0 * np.arange(30))
    f = evaluate(protocol, with_course(export, 0, dose=coarse), "INT-GRID-SPACING")[0]
    assert f.status is Status.FAIL and "largest 4 mm outside ≤ 3 mm" in f.message
    # the 2 mm SBRT limit: a 3 mm grid fails for an SBRT course
    d2 = export.courses[1].dose
    sbrt3 = dataclasses.replace(d2, dose_gy=d2.dose_gy[:, :, :50], x_mm=d2.x_mm[0] + 3.0 * np.arange(50))
    f = evaluate(protocol, with_course(export, 1, dose=sbrt3), "INT-GRID-SPACING")[1]
    assert f.status is Status.FAIL and "(SBRT course)" in f.message


def test_heterogeneity(export, protocol):
    water = with_course(export, 0, dose=dataclasses.replace(export.courses[0].dose, heterogeneity_correction=("WATER",)))
    f = evaluate(protocol, water, "INT-HETERO")[0]
    assert f.status is Status.FAIL and "WATER" in f.message and "without heterogeneity correction" in f.message
    absent = with_course(export, 0, dose=dataclasses.replace(export.courses[0].dose, heterogeneity_correction=()))
    assert evaluate(protocol, absent, "INT-HETERO")[0].status is Status.NOT_EVALUATED
    with pytest.raises(RuleNotApplicable, match="none of Brain is contoured"):
        evaluate(protocol, water, "INT-HETERO", only_if_structures=["Brain"])


def test_prescription_matches_dose(export, protocol):
    plan = export.courses[0].plan
    refs = (dataclasses.replace(plan.dose_references[0], target_prescription_dose_gy=70.0),)
    f = evaluate(protocol, with_course(export, 0, plan=dataclasses.replace(plan, dose_references=refs)), "INT-RX-DOSE")[0]
    # D95% = 60.16 Gy is 85.9% of 70 Gy: below the acceptable 90%
    assert f.status is Status.FAIL and f.measured == pytest.approx(100 * 60.164 / 70, abs=0.05)


def test_fractions_match_protocol(export, protocol):
    plan = export.courses[0].plan
    sbrt = dataclasses.replace(plan, fraction_groups=(dataclasses.replace(plan.fraction_groups[0], fractions_planned=5),),
                               dose_references=(dataclasses.replace(plan.dose_references[0], target_prescription_dose_gy=40.0),))
    f = evaluate(protocol, with_course(export, 0, plan=sbrt), "INT-FRACTIONATION")[0]
    assert f.status is Status.FAIL and "primary: sbrt is not expected" in f.message
    dpf = evaluate(protocol, export, "INT-FRACTIONATION",
                   dose_per_fraction_by_role={"primary": {"unit": "Gy", "lower": {"per_protocol": 1.8}, "upper": {"per_protocol": 1.9}}})[0]
    assert dpf.status is Status.FAIL and "2 Gy per fraction outside 1.8–1.9 Gy" in dpf.message


def test_isocenter_outside_the_body(export, protocol):
    beside = with_beams(export, 0, isocenter_mm=(0.0, 300.0, 0.0))
    f = evaluate(protocol, beside, "INT-ISO")[0]
    assert f.status is Status.FAIL and "isocenter (0, 300, 0) mm of ARC1: outside the contour" in f.message
    beyond = with_beams(export, 0, isocenter_mm=(0.0, 25.0, 400.0))
    f = evaluate(protocol, beyond, "INT-ISO")[0]
    assert f.status is Status.FAIL and "outside the External contours (z -135 to 135 mm)" in f.message
    # ARC1 starts at the sample's isocenter (0, 25, 0) mm, inside, and moves 300 mm aside in a
    # later control point: the second position is checked too
    moved = with_beams(export, 0, later_isocenters_mm=((0.0, 300.0, 0.0),))
    f = evaluate(protocol, moved, "INT-ISO")[0]
    assert f.status is Status.FAIL and "isocenter (0, 300, 0) mm of ARC1: outside the contour" in f.message


def test_two_machines(export, protocol):
    f = evaluate(protocol, with_beams(export, 2, machine="TrueBeam2"), "INT-MACHINE")[2]
    assert f.status is Status.FAIL and "2 machines: TrueBeam1, TrueBeam2" in f.message


def test_beam_energy(export, protocol):
    mixed = with_beams(export, 0, energy_mev=15.0)
    assert evaluate(protocol, mixed, "INT-ENERGY")[0].status is Status.WARN
    assert evaluate(protocol, mixed, "INT-ENERGY", mixed_energies="fail")[0].status is Status.FAIL
    f = evaluate(protocol, with_beams(export, 0, energy_mev=23.0), "INT-ENERGY", mixed_energies="pass")[0]
    assert f.status is Status.FAIL and "23 MV photon not among the allowed" in f.message
    # every beam starts at 6 MV, but beam 1 switches to 18 MV in a later control point: mixed
    switched = evaluate(protocol, with_beams(export, 0, later_energies_mev=(18.0,)), "INT-ENERGY")[0]
    assert switched.status is Status.WARN and "mixes energies (6 MV photon, 18 MV photon)" in switched.message
    f = evaluate(protocol, with_beams(export, 0, later_energies_mev=(25.0,)), "INT-ENERGY", mixed_energies="pass")[0]
    assert f.status is Status.FAIL and "25 MV photon not among the allowed" in f.message


def test_meterset(export, protocol):
    zero = evaluate(protocol, with_beams(export, 0, meterset_mu=0.0), "INT-MU")[0]
    assert zero.status is Status.FAIL and "ARC1 have a (300B,0086) 'Beam Meterset' ≤ 0 MU" in zero.message
    # 1000 + 125 MU per fraction × 30 fx / 60 Gy = 562.5 MU/Gy: beyond the acceptable 400
    high = evaluate(protocol, with_beams(export, 0, meterset_mu=1000.0), "INT-MU")[0]
    assert high.status is Status.FAIL and high.measured == pytest.approx(562.5)
    # 300 + 125 → 212.5 MU/Gy: fine
    assert evaluate(protocol, with_beams(export, 0, meterset_mu=300.0), "INT-MU")[0].status is Status.PASS
    missing = evaluate(protocol, with_beams(export, 0, meterset_mu=None), "INT-MU")[0]
    assert missing.status is Status.NOT_EVALUATED


def test_strict_fields():
    base = {"id": "X", "kind": "integrity", "title": "t", "category": "integrity",
            "provenance": {"source": "s", "section": "s", "confidence": "provisional"}}
    with pytest.raises(ValidationError, match="field 'allowed_mv' does not apply to check 'meterset'"):
        INTEGRITY_RULE.validate_python({**base, "check": "meterset", "allowed_mv": [6],
                                      "limits_by_regime": {"sbrt": {"unit": "MU/Gy", "upper": {"per_protocol": 600}}}})
    with pytest.raises(ValidationError, match=r"grid_spacing\.limits_by_regime\n  Field required"):
        INTEGRITY_RULE.validate_python({**base, "check": "grid_spacing"})
    with pytest.raises(ValidationError, match="takes limits in 'mm', not 'cm'"):
        INTEGRITY_RULE.validate_python({**base, "check": "grid_spacing",
                                      "limits_by_regime": {"sbrt": {"unit": "cm", "upper": {"per_protocol": 0.2}}}})
    with pytest.raises(ValidationError, match="must be a dose in Gy"):
        INTEGRITY_RULE.validate_python({**base, "check": "prescription_matches_dose", "metric": "V20Gy[%]",
                                      "limits": {"unit": "%", "lower": {"per_protocol": 95}}})


def test_override_of_an_integrity_rule_revalidates(tmp_path):
    path = tmp_path / "clinic.yaml"
    path.write_text("schema_version: 1\nid: clinic\ntitle: c\nversion: '1'\nextends: [plan-integrity]\n"
                    "overrides:\n  INT-MU: {limits_by_regime: {sbrt: {unit: MU/Gy, upper: {per_protocol: 600, acceptable: 700}}}}\n")
    p = load_protocol(str(path))
    mu = p.rule("INT-MU")
    assert mu.rule.limits_by_regime.sbrt.upper.acceptable == 700 and mu.changed_by == ("clinic",)


def test_the_schema_tells_which_fields_belong_to_each_check():
    """Each integrity check is a model of its own: the protocol file's JSON Schema lists, per check,
    exactly its fields and which are required (the discriminator is ``check``)."""
    from plancheck.protocol.loader import protocol_file_model

    defs = protocol_file_model().model_json_schema()["$defs"]
    common = {"id", "kind", "title", "category", "provenance", "description", "check"}
    assert set(defs["GridSpacing"]["properties"]) - common == {"course", "limits_by_regime"}
    assert "limits_by_regime" in defs["GridSpacing"]["required"]
    assert set(defs["SamePatient"]["properties"]) - common == set()  # the patient, not a course
    assert set(defs["BeamEnergy"]["properties"]) - common == {"course", "allowed_mv", "mixed_energies"}
    assert set(defs["Classification"]["properties"]) - common == {"on_violation", "synchronous_max_months"}
    assert {"on_violation", "synchronous_max_months"} <= set(defs["Classification"]["required"])
    # a rule in a protocol file keeps its shape: kind and check side by side
    rule = INTEGRITY_RULE.validate_python({"id": "X", "kind": "integrity", "check": "single_machine", "title": "t",
                                           "category": "integrity",
                                           "provenance": {"source": "s", "section": "s", "confidence": "provisional"}})
    assert type(rule).__name__ == "SingleMachine" and rule.course == "all"


def test_grid_cover_checks_the_structures_of_lists_and_combinations():
    # The cord rules name [SpinalCord_PRV05, SpinalCord], the airway rules Trachea ∪ Bronchus: their
    # structures are evaluated too. Both lie at z 60..100 mm, the grid's last voxel centre is at
    # z = 80 mm (rt_cases: 5 mm voxels): about half of each is outside — 20/40 = 50 % to the last
    # centre, 22.5/40 = 56.25 % with its half voxel. Before, only single-name rules were checked: PASS.
    from rt_cases import Box, banded_dose, box_roi, plan, treatment

    from plancheck.rules.runner import protocol_for_check, run_check
    rois = [box_roi(1, "SpinalCord", Box(10, 16, -3, 3)), box_roi(2, "SpinalCord_PRV05", Box(5, 21, -8, 8, z0=60, z1=100)),
            box_roi(3, "Trachea", Box(100, 120, z0=60, z1=100)), box_roi(4, "PTV_Eso", Box(40, 60), interpreted_type="PTV")]
    export = treatment(rois, [(plan("C1", 60.0, 30, 4), banded_dose([(32.5, 67.5, 60.0)]))])
    report = run_check(export, protocol_for_check("esophagus-oligomet-2025"), threads=1)
    (f,) = [f for f in report.findings if f.rule_id == "INT-GRID-COVER"]
    assert f.status is Status.FAIL and set(f.structures) == {"SpinalCord_PRV05", "Trachea"}
    assert 50.0 <= f.measured <= 56.25 + 0.01
