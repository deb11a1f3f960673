"""The ``clinical`` rule kind (consensus.md §1–§2) on in-memory case files and the sample export."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from plancheck.dicom import read_export
from plancheck.errors import ProtocolError
from plancheck.model.case import Case, load_case
from plancheck.model.organs import NON_REGIONAL_LYMPH_NODE, ORGAN_SPELLINGS
from plancheck.protocol.loader import Protocol, load_protocol
from plancheck.rules.base import RuleNotApplicable
from plancheck.rules.context import CheckContext
from plancheck.rules.findings import Status
from plancheck.rules.kinds.clinical_rule import NO_CASE_FILE, ClinicalRule, evaluate_clinical_rule

CLINICAL_RULE = TypeAdapter(ClinicalRule)  # the union of the clinical checks' models, on 'check'

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"
PROV = {"source": "test", "section": "§1", "confidence": "consensus"}
SCC = {"max_lesions": 5, "max_organs": 3, "max_per_organ": 3}
AC = {"max_organs": 1, "max_lesions": 3, "or_max_node_stations": 1}

RULES = {
    "definition_count": {"by_histology": {"squamous_cell_carcinoma": SCC, "adenocarcinoma": AC}, "on_violation": "fail"},
    "lesions_treated": {"on_violation": "fail"},
    "classification": {"synchronous_max_months": 6, "on_violation": "warn"},
    "restaging": {"modalities": ["PET/CT"], "max_days_before_rt": 60, "on_violation": "warn"},
    "systemic_before_rt": {"min_cycles": 4, "max_cycles": 6, "agents_any_of": ["camrelizumab", "tislelizumab"],
                           "on_violation": "warn"},
    "disease_free_interval": {"min_months_for_upfront": 24, "on_violation": "warn"},
    "progression": {"by_histology": {"squamous_cell_carcinoma": SCC, "adenocarcinoma": AC}, "on_violation": "fail",
                    "on_progression_within_definition": "warn"},
}


def rule(check: str, **extra) -> ClinicalRule:
    fields = {**RULES[check], **extra}
    return CLINICAL_RULE.validate_python({"id": f"T-{check}", "kind": "clinical", "check": check, "title": check,
                                        "category": "definition", "provenance": PROV, **fields})


@pytest.fixture(scope="module")
def export():
    return read_export(SAMPLE)


@pytest.fixture(scope="module")
def sample_case() -> Case:
    return load_case(SAMPLE / "case.yaml")


PROTOCOL = Protocol("t", "t", "1", "", ("t",), (), {}, {}, "t")


def run(check: str, export, case: Case | None, **extra):
    ctx = CheckContext(export, PROTOCOL, case, "case.yaml" if case else None)
    findings = evaluate_clinical_rule(rule(check, **extra), ctx)
    assert len(findings) == 1
    return findings[0]


def change(case: Case, **update) -> Case:
    """A copy of the case with fields replaced (nested models given as dicts are validated)."""
    return Case.model_validate({**case.model_dump(), **update})


# ------------------------------------------------------------------ no case file, missing fields
@pytest.mark.parametrize("check", sorted(RULES))
def test_no_case_file_is_not_evaluated(check, export):
    f = run(check, export, None)
    assert f.status is Status.NOT_EVALUATED and f.message == NO_CASE_FILE


@pytest.mark.parametrize("check, field", [
    ("definition_count", "histology"), ("lesions_treated", "metastases"), ("restaging", "restaging"),
    ("systemic_before_rt", "presentation"), ("disease_free_interval", "presentation"), ("progression", "intent"),
])
def test_missing_field_is_named(check, field, export):
    f = run(check, export, Case())
    assert f.status is Status.NOT_EVALUATED
    assert f"does not give {field}" in f.message and f.details["missing_field"] == field


def test_sample_case_passes_every_applicable_check(export, sample_case):
    for check in RULES:
        try:
            f = run(check, export, sample_case)
        except RuleNotApplicable as exc:
            assert check == "disease_free_interval" and "synchronous" in exc.reason
            continue
        assert f.status is Status.PASS, (check, f.message)


# ------------------------------------------------------------------ definition
def lesions(*organs: str) -> list[dict]:
    return [{"organ": o} for o in organs]


def test_scc_definition_limits(export):
    base = Case(histology="squamous_cell_carcinoma")
    assert run("definition_count", export, change(base, metastases=lesions("lung", "lung", "liver", "bone", "bone"))).status is Status.PASS
    six = run("definition_count", export, change(base, metastases=lesions("lung", "lung", "liver", "bone", "bone", "bone")))
    assert six.status is Status.FAIL and "more than 5 lesions" in six.message and "no longer oligometastatic" in six.message
    organs = run("definition_count", export, change(base, metastases=lesions("lung", "liver", "bone", "adrenal")))
    assert organs.status is Status.FAIL and "more than 3 organ(s)" in organs.message
    per_organ = run("definition_count", export, change(base, metastases=lesions("lung", "lung", "lung", "lung")))
    assert per_organ.status is Status.FAIL and "more than 3 in lung" in per_organ.message


def test_adenocarcinoma_organ_or_node_station(export):
    base = Case(histology="adenocarcinoma")
    assert run("definition_count", export, change(base, metastases=lesions("liver", "liver", "liver"))).status is Status.PASS
    assert run("definition_count", export, change(base, metastases=lesions("liver", "lung"))).status is Status.FAIL
    nodes = change(base, metastases=lesions("non_regional_lymph_node"), extra_regional_node_stations=1)
    assert run("definition_count", export, nodes).status is Status.PASS
    two = run("definition_count", export, change(nodes, extra_regional_node_stations=2))
    assert two.status is Status.FAIL and "2 extra-regional station(s)" in two.message
    unknown = run("definition_count", export, change(nodes, extra_regional_node_stations=None))
    assert unknown.status is Status.NOT_EVALUATED and "extra_regional_node_stations" in unknown.message


# consensus §1, SCC: ≤ 5 metastatic lesions in ≤ 3 organs, ≤ 3 in any one organ. An involved
# extra-regional node station holds at least one lesion.
def test_node_stations_count_as_at_least_one_lesion_each(export):
    base = Case(histology="squamous_cell_carcinoma")
    # 3 lung + 2 liver + 2 stations whose nodes are not listed: at least 7 lesions > 5 (before: PASS, "5 lesion(s)")
    f = run("definition_count", export, change(base, metastases=lesions("lung", "lung", "lung", "liver", "liver"),
                                               extra_regional_node_stations=2))
    assert f.status is Status.FAIL and "at least 7 lesion(s)" in f.message and "more than 5 lesions" in f.message
    assert f.measured == 7


def test_unlisted_nodal_lesions_within_the_limits_are_not_evaluated(export):
    # 2 lung + 1 liver + 1 station: at least 4 lesions, but a station can hold several nodes
    base = Case(histology="squamous_cell_carcinoma")
    f = run("definition_count", export, change(base, metastases=lesions("lung", "lung", "liver"), extra_regional_node_stations=1))
    assert f.status is Status.NOT_EVALUATED
    assert "at least 4 lesion(s)" in f.message and "the number of lesions is not known" in f.message


def test_nodal_lesions_listed_for_every_station_are_counted_as_listed(export):
    base = Case(histology="squamous_cell_carcinoma")
    one = run("definition_count", export, change(base, metastases=lesions("lung", "lung", "liver", "lymph_node"),
                                                 extra_regional_node_stations=1))
    assert one.status is Status.PASS and one.message.startswith("4 lesion(s) in 3 organ(s)")
    two_in_one = run("definition_count", export, change(base, metastases=lesions("lung", "distant_lymph_node", "lymph_node"),
                                                        extra_regional_node_stations=1))
    assert two_in_one.status is Status.PASS and two_in_one.message.startswith("3 lesion(s) in 2 organ(s)")


def test_progression_counts_node_stations_too(export, sample_case):
    # the sample: lung + bone. 2 unlisted stations and 2 new lesions: at least 2 + 2 + 2 = 6 > 5
    # (before: "4 lesion(s)", WARN within the definition)
    beyond = change(sample_case, extra_regional_node_stations=2,
                    restaging={"modality": "PET/CT", "progression": True, "new_lesions": 2})
    f = run("progression", export, beyond)
    assert f.status is Status.FAIL and "at least 6 lesion(s) (2 new at restaging)" in f.message
    unknown = run("progression", export, change(beyond, restaging={"modality": "PET/CT", "progression": True, "new_lesions": 1}))
    assert unknown.status is Status.NOT_EVALUATED and "at least 5 lesion(s)" in unknown.message


@pytest.mark.parametrize("spelling", ORGAN_SPELLINGS[NON_REGIONAL_LYMPH_NODE])
def test_the_definition_reads_node_organs_from_the_one_vocabulary(export, spelling):
    # every spelling the vocabulary gives a non-regional node is counted as one: 1 node lesion in
    # 1 station is the adenocarcinoma definition's nodal alternative (OMEC): PASS
    nodes = change(Case(histology="adenocarcinoma"), metastases=lesions(spelling), extra_regional_node_stations=1)
    f = run("definition_count", export, nodes)
    assert f.status is Status.PASS and "extra-regional lymph nodes: 1" in f.message


def test_the_case_draft_writes_canonical_organs():
    from plancheck.analysis.case_draft import _ORGANS
    from plancheck.model.organs import canonical_organ

    assert all(canonical_organ(organ) == organ for organ in _ORGANS.values())


def test_definition_merges_spellings_of_one_organ(export):
    # "Lungs" and "lung" are one organ: 3 lesions in 1 organ, adenocarcinoma (1 organ, ≤ 3 lesions): PASS
    f = run("definition_count", export, change(Case(histology="adenocarcinoma"), metastases=lesions("lung", "Lungs", "pulmonary")))
    assert f.status is Status.PASS and "in 1 organ(s) (lung: 3)" in f.message


def test_other_histology_not_evaluated_and_absent_histology_not_applicable(export):
    f = run("definition_count", export, Case(histology="other", metastases=[]))
    assert f.status is Status.NOT_EVALUATED and "histology is 'other'" in f.message
    with pytest.raises(RuleNotApplicable, match="the rule is for squamous_cell_carcinoma; the case is adenocarcinoma"):
        run("definition_count", export, change(Case(histology="adenocarcinoma"), metastases=lesions("liver")),
            by_histology={"squamous_cell_carcinoma": SCC})


# ------------------------------------------------------------------ lesions treated
def test_untreated_lesions_are_named(export, sample_case):
    case = change(sample_case, metastases=[
        {"organ": "lung", "target": "PTV_Met_Lung"}, {"organ": "liver", "site": "S7"},
        {"organ": "adrenal", "target": "PTV_Adrenal"}, {"organ": "lung", "target": "Heart"}])
    f = run("lesions_treated", export, case)
    assert f.status is Status.FAIL
    assert f.message.startswith("3 of 4 declared lesion(s) not treated")
    assert "liver (S7): no target declared" in f.message
    assert "adrenal → PTV_Adrenal: no structure of that name" in f.message
    assert "lung → Heart: no course with a prescription treats it" in f.message


# ------------------------------------------------------------------ classification
def test_classification_synchronous_de_novo(export, sample_case):
    f = run("classification", export, sample_case)
    assert f.status is Status.PASS and "de novo synchronous oligometastatic disease" in f.message


def test_classification_contradiction_warns(export, sample_case):
    f = run("classification", export, change(sample_case, presentation="metachronous"))
    assert f.status is Status.WARN
    assert "declares metachronous but the dates give synchronous" in f.message


def test_classification_metachronous_subclasses(export):
    base = {"histology": "squamous_cell_carcinoma", "omd_type": "de_novo", "presentation": "metachronous",
            "primary": {"diagnosis_date": "2022-01-10"}, "metastases": [{"organ": "lung", "detected_date": "2025-01-10"}]}
    recurrence = run("classification", export, Case.model_validate({**base, "systemic_therapy": {"cycles": 0}}))
    assert recurrence.status is Status.PASS and "metachronous oligorecurrence" in recurrence.message
    on_therapy = {"cycles": 6, "start_date": "2024-10-01", "end_date": "2025-03-01"}
    prog = run("classification", export, Case.model_validate({**base, "systemic_therapy": {**on_therapy, "response_at_restaging": "PD"}}))
    assert prog.status is Status.PASS and "metachronous oligoprogression" in prog.message
    repeat = run("classification", export, Case.model_validate({**base, "omd_type": "repeat",
                                                                "systemic_therapy": {**on_therapy, "response_at_restaging": "SD"}}))
    assert repeat.status is Status.PASS and "repeat oligopersistence" in repeat.message
    unknown = run("classification", export, Case.model_validate(base))
    assert unknown.status is Status.NOT_EVALUATED and "systemic_therapy missing" in unknown.message


def test_classification_undeterminable(export):
    f = run("classification", export, Case(histology="adenocarcinoma"))
    assert f.status is Status.NOT_EVALUATED and "undeterminable" in f.message
    f = run("classification", export, Case(presentation="synchronous"))
    assert f.status is Status.NOT_EVALUATED and "omd_type missing" in f.message


# ------------------------------------------------------------------ restaging
def test_restaging_paths(export, sample_case):
    ct = run("restaging", export, change(sample_case, restaging={"modality": "CT", "date": "2025-04-28"}))
    assert ct.status is Status.WARN and "restaging by CT, not PET/CT" in ct.message
    early = run("restaging", export, change(sample_case, restaging={"modality": "PET-CT", "date": "2025-04-01"}))
    assert early.status is Status.WARN and "before the end of systemic therapy (2025-04-10)" in early.message
    late = run("restaging", export, change(sample_case, restaging={"modality": "PET/CT", "date": "2025-06-10"}))
    assert late.status is Status.WARN and "after the first RT plan date (2025-06-02)" in late.message
    old = run("restaging", export, change(sample_case, restaging={"modality": "PET/CT", "date": "2025-03-01"},
                                          systemic_therapy={"cycles": 4, "end_date": "2025-02-20"}))
    assert old.status is Status.WARN and "93 days before RT (> 60 days)" in old.message
    fail = run("restaging", export, change(sample_case, restaging={"modality": "CT", "date": "2025-04-28"}), on_violation="fail")
    assert fail.status is Status.FAIL
    nodate = run("restaging", export, change(sample_case, restaging={"modality": "PET/CT"}))
    assert nodate.status is Status.NOT_EVALUATED and "restaging.date" in nodate.message


# ------------------------------------------------------------------ timing
def test_systemic_before_rt(export, sample_case):
    two = run("systemic_before_rt", export, change(sample_case, systemic_therapy={**sample_case.systemic_therapy.model_dump(), "cycles": 2}))
    assert two.status is Status.WARN and "2 cycle(s) of systemic therapy, expected 4–6" in two.message
    chemo_only = run("systemic_before_rt", export, change(sample_case, systemic_therapy={
        **sample_case.systemic_therapy.model_dump(), "agents": ["paclitaxel", "cisplatin"]}))
    assert chemo_only.status is Status.WARN and "include none of camrelizumab, tislelizumab" in chemo_only.message
    progressed = run("systemic_before_rt", export, change(sample_case, restaging={"modality": "PET/CT", "progression": True}))
    assert progressed.status is Status.WARN and "progression at restaging" in progressed.message
    no_cycles = run("systemic_before_rt", export, change(sample_case, systemic_therapy={"agents": ["camrelizumab"]}))
    assert no_cycles.status is Status.NOT_EVALUATED and "systemic_therapy.cycles" in no_cycles.message
    with pytest.raises(RuleNotApplicable, match="presentation is metachronous"):
        run("systemic_before_rt", export, change(sample_case, presentation="metachronous"))


def test_disease_free_interval(export):
    base = {"presentation": "metachronous", "metastases": [{"organ": "lung", "detected_date": "2025-03-01"}]}
    long = run("disease_free_interval", export, Case.model_validate({**base, "disease_free_interval_months": 30}))
    assert long.status is Status.PASS and "upfront local treatment acceptable" in long.message
    short_none = run("disease_free_interval", export, Case.model_validate({
        **base, "primary": {"treatment_end_date": "2024-03-01"}, "systemic_therapy": {"cycles": 0}}))
    assert short_none.status is Status.WARN and "12.0 months" in short_none.message
    assert "no systemic therapy before RT" in short_none.message
    short_given = run("disease_free_interval", export, Case.model_validate({
        **base, "disease_free_interval_months": 12, "systemic_therapy": {"cycles": 4, "start_date": "2025-03-10"}}))
    assert short_given.status is Status.PASS and "systemic therapy given first" in short_given.message
    unknown = run("disease_free_interval", export, Case.model_validate(base))
    assert unknown.status is Status.NOT_EVALUATED and "disease_free_interval_months" in unknown.message


def test_progression(export, sample_case):
    beyond = change(sample_case, restaging={"modality": "PET/CT", "progression": True, "new_lesions": 4})
    f = run("progression", export, beyond)
    assert f.status is Status.FAIL and "6 lesion(s) (4 new at restaging)" in f.message and "more than 5 lesions" in f.message
    within = run("progression", export, change(sample_case, restaging={"modality": "PET/CT", "progression": True, "new_lesions": 1}))
    assert within.status is Status.WARN and "still within the definition" in within.message
    with pytest.raises(RuleNotApplicable, match="intent is palliative"):
        run("progression", export, change(beyond, intent="palliative"))
    unknown = run("progression", export, change(sample_case, restaging={"modality": "PET/CT"}, systemic_therapy=None))
    assert unknown.status is Status.NOT_EVALUATED and "restaging.progression" in unknown.message


# ------------------------------------------------------------------ strict fields
def test_field_of_another_check_is_refused():
    with pytest.raises(ValidationError, match="field 'min_cycles' does not apply to check 'restaging'"):
        rule("restaging", min_cycles=4)


def test_required_field_missing():
    with pytest.raises(ValidationError, match=r"classification\.synchronous_max_months\n  Field required"):
        CLINICAL_RULE.validate_python({"id": "X", "kind": "clinical", "check": "classification", "title": "t",
                                     "category": "definition", "provenance": PROV, "on_violation": "warn"})


def test_bad_limits_refused():
    with pytest.raises(ValidationError, match="min_cycles \\(6\\) must be ≤ max_cycles \\(4\\)"):
        rule("systemic_before_rt", min_cycles=6, max_cycles=4)
    with pytest.raises(ValidationError, match="max_lessions"):
        rule("definition_count", by_histology={"squamous_cell_carcinoma": {"max_lessions": 5}})
    with pytest.raises(ValidationError, match="Input should be 'warn' or 'fail'"):
        rule("lesions_treated", on_violation="pass")


def test_removed_nodal_organs_field_is_refused_with_the_reason(tmp_path: Path) -> None:
    # A clinic protocol written before the organ vocabulary was unified still sets nodal_organs:
    # it must not load silently with a second list of nodal organs, and must say what to do.
    path = tmp_path / "clinic.yaml"
    path.write_text('schema_version: 1\nid: clinic-old\ntitle: Old clinic protocol\nversion: "1"\n'
                    "extends: [esophagus-oligomet-2025]\n"
                    "overrides:\n  DEF-SCC: {nodal_organs: [lymph_node]}\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"DEF-SCC.*'nodal_organs' was removed.*delete the field"):
        load_protocol(str(path))
