"""A patient's treatment is the unit of checking everywhere (issue 9 §3), and alternative plans
are never summed as courses (issue 10).

The export (:func:`treatment_exports.two_course_export`) has two courses whose cord doses are
25 Gy each: per course 25 Gy ≤ 45 Gy PASS, composite 25 + 25 = 50 Gy > 45 Gy FAIL (derivation
in :mod:`treatment_exports`). ``check`` and ``batch`` must give the same verdict for every rule
and course; the receiver's verdicts are compared in ``test_serve.py``.

With ``alternatives=True`` a third plan C_A_IMRT treats PTV_A on the same structure set (an
alternative of C_A) with a cord dose of 40 Gy: summed silently, the composite would be
25 + 25 + 40 = 90 Gy.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from plancheck.batch import BatchOptions, run_batch
from plancheck.analysis.check_treatment import check_treatment, find_case, read_case
from plancheck.cli.main import main
from plancheck.model.course_selection import LeftOutPlan, PlanFacts, PlanSelection, choose_courses
from plancheck.dicom import read_export
from plancheck.errors import LinkError, ProtocolError, UsageError
from treatment_exports import protocol, protocol_file, two_course_export  # noqa: F401 (protocol fixtures)



@pytest.fixture(scope="module")
def two_courses(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two")
    two_course_export(out)
    return out


@pytest.fixture(scope="module")
def with_alternative(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("alt")
    two_course_export(out, key="alt", alternatives=True)
    return out


def _verdicts_of_json(report: dict) -> set[tuple[str, str, str]]:
    return {(r["rule_id"], "; ".join(r["courses"]), r["status"]) for r in report["results"]}


def _cord(report) -> dict[tuple[str, str], tuple[str, float]]:
    return {(f.rule_id, ", ".join(f.courses)): (str(f.status), f.measured) for f in report.findings}


# ------------------------------------------------------------------------------ same verdict


def test_composite_fails_where_every_course_passes(two_courses, protocol):
    report = check_treatment(two_courses, protocol)
    cord = _cord(report)
    # 25 Gy per course, 50 Gy summed; 0.01 Gy: the dose grid's 16-bit scaling
    assert cord[("CORD-COURSE", "C_A")][0] == "PASS" and cord[("CORD-COURSE", "C_A")][1] == pytest.approx(25, abs=0.01)
    assert cord[("CORD-COURSE", "C_B")][0] == "PASS"
    assert cord[("CORD-COMPOSITE", "C_A, C_B")][0] == "FAIL"
    assert cord[("CORD-COMPOSITE", "C_A, C_B")][1] == pytest.approx(50, abs=0.02)


def test_batch_gives_the_verdicts_of_check(two_courses, protocol_file, tmp_path, capsys):
    assert main(["check", str(two_courses), "--protocol", str(protocol_file), "--format", "json",
                 "--output", str(tmp_path / "check.json")]) == 1
    checked = _verdicts_of_json(json.loads((tmp_path / "check.json").read_text(encoding="utf-8")))
    assert ("CORD-COMPOSITE", "C_A; C_B", "FAIL") in checked
    assert main(["batch", str(two_courses), "--reports", str(tmp_path / "reports"), "--protocol",
                 str(protocol_file), "--workers", "1"]) == 1
    capsys.readouterr()
    with (tmp_path / "reports" / "summary.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["rule_id"], r["courses"], r["status"]) for r in rows} == checked
    assert {r["plans"] for r in rows} == {"C_A; C_B"}


# ------------------------------------------------------------------------------ alternatives


def test_check_refuses_alternative_plans_naming_them_and_the_way_out(with_alternative, protocol, capsys,
                                                                      protocol_file):
    with pytest.raises(LinkError, match=r"plans C_A \(UNAPPROVED, dated 2025-06-02\); C_A_IMRT \(UNAPPROVED, "
                                        r"dated 2025-06-02\) are alternatives of one another: same structure set, "
                                        r"same target\(s\) PTV_A\. .*--plan LABEL"):
        check_treatment(with_alternative, protocol)
    assert main(["check", str(with_alternative), "--protocol", str(protocol_file)]) == 3
    assert "alternatives of one another" in capsys.readouterr().err


def test_plan_option_selects_the_courses_and_reports_the_left_out_plan(with_alternative, protocol_file, tmp_path):
    out = tmp_path / "r.json"
    assert main(["check", str(with_alternative), "--protocol", str(protocol_file), "--plan", "C_A_IMRT",
                 "--plan", "C_B", "--format", "json", "--output", str(out)]) == 1
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [p["label"] for p in report["plans"]] == ["C_A_IMRT", "C_B"]
    assert [(p["label"], p["reason"]) for p in report["left_out_plans"]] == [("C_A", "not selected by --plan")]
    assert any("plan C_A is not a course of this check" in w for w in report["warnings"])
    composite = next(r for r in report["results"] if r["rule_id"] == "CORD-COMPOSITE")
    assert composite["measured"] == pytest.approx(65, abs=0.02)  # 40 + 25 Gy


def test_plan_option_leaving_out_a_course_the_case_file_declares_leaves_the_composite_not_evaluated(
        two_courses, protocol_file, tmp_path):
    # the case file says the treatment is C_A and C_B; --plan C_B checks one of them: the composite
    # cord limit (50 Gy summed, a FAIL) must not PASS on C_B alone (25 Gy)
    case = tmp_path / "case.yaml"
    case.write_text("courses:\n  - plan: C_A\n  - plan: C_B\n", encoding="utf-8")
    out = tmp_path / "r.json"
    main(["check", str(two_courses), "--protocol", str(protocol_file), "--case", str(case), "--plan", "C_B",
          "--format", "json", "--output", str(out)])  # exit 1: the synthetic export's integrity FAILs
    report = json.loads(out.read_text(encoding="utf-8"))
    composite = next(r for r in report["results"] if r["rule_id"] == "CORD-COMPOSITE")
    assert composite["status"] == "NOT_EVALUATED"
    assert "declares C_A as course(s) of this treatment, but this check leaves it out" in composite["message"]
    per_course = next(r for r in report["results"] if r["rule_id"] == "CORD-COURSE")
    assert per_course["status"] == "PASS"  # a limit per course is still graded on the course checked


def test_unknown_plan_is_a_usage_error_naming_the_plans(with_alternative, protocol, capsys, protocol_file):
    with pytest.raises(UsageError, match=r"--plan: no plan has the label or SOP Instance UID 'C_X' "
                                         r"\(plans: C_A, C_A_IMRT, C_B\)"):
        check_treatment(with_alternative, protocol, selection=PlanSelection(("C_X",)))
    assert main(["check", str(with_alternative), "--protocol", str(protocol_file), "--plan", "C_X"]) == 2


def test_case_file_courses_are_the_selection(with_alternative, protocol, tmp_path):
    case = tmp_path / "case.yaml"
    case.write_text("courses:\n  - plan: C_A\n  - plan: C_B\n", encoding="utf-8")
    report = check_treatment(with_alternative, protocol, case=read_case(case), case_source=str(case))
    assert [c.label for c in report.export.courses] == ["C_A", "C_B"]
    [left] = report.export.left_out
    assert left.label == "C_A_IMRT" and left.reason == "not selected by the case file's 'courses:' list"
    case.write_text("courses:\n  - plan: C_Z\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"case\.yaml: the case file's 'courses:' list: no plan has the label "
                                            r"or SOP Instance UID 'C_Z'"):
        check_treatment(with_alternative, protocol, case=read_case(case), case_source=str(case))


def test_batch_checks_each_alternative_with_the_other_courses(with_alternative, protocol, tmp_path):
    outcome = run_batch(with_alternative, tmp_path / "reports", protocol, BatchOptions(workers=0))
    by_plans = {r.plan_labels: r for r in outcome.results}
    assert set(by_plans) == {("C_A", "C_B"), ("C_A_IMRT", "C_B")}
    for plans, alternative in ((("C_A", "C_B"), "C_A_IMRT"), (("C_A_IMRT", "C_B"), "C_A")):
        result = by_plans[plans]
        assert result.status == "FAIL"
        [row] = [r for r in result.rows if r["rule_id"] == "CORD-COMPOSITE"]
        assert row["left_out"].startswith(f"{alternative}: alternative of ")
        assert "checked in its own report" in row["left_out"]
    composite = {plans: next(r["measured"] for r in res.rows if r["rule_id"] == "CORD-COMPOSITE")
                 for plans, res in by_plans.items()}
    assert composite[("C_A", "C_B")] == pytest.approx(50, abs=0.02)       # 25 + 25 Gy
    assert composite[("C_A_IMRT", "C_B")] == pytest.approx(65, abs=0.02)  # 25 + 40 Gy, never 90
    assert len({r.treatment_id for r in outcome.results}) == 2


def test_batch_plan_option_and_case_file_in_a_zip(with_alternative, protocol, tmp_path):
    archive = tmp_path / "exports" / "alt.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(with_alternative.iterdir()):
            zf.write(f, f"export/{f.name}")
        zf.writestr("export/case.yaml", "courses:\n  - plan: C_A_IMRT\n  - plan: C_B\n")
    assert find_case(archive) == f"{archive}!export/case.yaml"
    outcome = run_batch(tmp_path / "exports", tmp_path / "reports", protocol, BatchOptions(workers=0))
    [result] = outcome.results
    assert result.plan_labels == ("C_A_IMRT", "C_B")
    report = json.loads(next(Path(p) for p in result.report_files if p.endswith(".json")).read_text("utf-8"))
    assert report["case_file"] == f"{archive}!export/case.yaml"
    assert [p["label"] for p in report["left_out_plans"]] == ["C_A"]
    # check reads the same case file from the archive
    assert [c.label for c in check_treatment(archive, protocol, case=read_case(find_case(archive)),
                                             case_source=find_case(archive)).export.courses] == ["C_A_IMRT", "C_B"]
    # batch --plan: only those plans are courses
    picked = run_batch(with_alternative, tmp_path / "r2", protocol, BatchOptions(workers=0, plans=("C_A",)))
    assert [r.plan_labels for r in picked.results] == [("C_A",)]


def test_resume_fingerprint_follows_case_file_content_and_selection(two_courses, protocol, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    for f in two_courses.iterdir():
        (export / f.name).write_bytes(f.read_bytes())
    case = export / "case.yaml"
    case.write_text("histology: adenocarcinoma\n", encoding="utf-8")
    old = case.stat().st_mtime - 100
    import os

    os.utime(case, (old, old))
    reports = tmp_path / "reports"
    run_batch(export, reports, protocol, BatchOptions(workers=0))
    assert run_batch(export, reports, protocol, BatchOptions(workers=0)).resumed == 1
    case.write_text("histology: squamous_cell_carcinoma\n", encoding="utf-8")  # same length, same old time
    os.utime(case, (old, old))
    assert run_batch(export, reports, protocol, BatchOptions(workers=0)).resumed == 0
    assert run_batch(export, reports, protocol, BatchOptions(workers=0)).resumed == 1
    assert run_batch(export, reports, protocol, BatchOptions(workers=0, plans=("C_A", "C_B"))).resumed == 0


# ------------------------------------------------------------------------------ selection rules


def _facts(uid: str, rtss: str = "RS1", targets=(1,), status: str = "UNAPPROVED") -> PlanFacts:
    return PlanFacts(uid, uid, status, "2025-01-06", rtss, frozenset(targets))


def test_courses_and_alternatives_are_told_apart():
    # different targets on one structure set: courses; same targets on another structure set: not alternatives
    plans = [_facts("A", targets=(1,)), _facts("B", targets=(2,)), _facts("C", rtss="RS2", targets=(1,))]
    [choice] = choose_courses(plans)
    assert choice.courses == ("A", "B", "C") and choice.left_out == () and choice.notes == ()
    # a phase-2 boost to a subset of the targets is a course
    [choice] = choose_courses([_facts("P1", targets=(1, 2)), _facts("P2", targets=(2,))])
    assert choice.courses == ("P1", "P2")


def test_rejected_alternative_is_left_out_and_undecidable_plans_are_noted():
    [choice] = choose_courses([_facts("A"), _facts("B", status="REJECTED"), _facts("C", targets=(5,))])
    assert choice.courses == ("A", "C")
    assert choice.left_out[0].uid == "B" and "approval status REJECTED" in choice.left_out[0].reason
    [choice] = choose_courses([_facts("A", targets=()), _facts("B", targets=())])
    assert choice.courses == ("A", "B") and "cannot tell courses from alternative plans" in choice.notes[0]


def test_variants_are_every_combination_of_alternatives():
    plans = [_facts("A1"), _facts("A2"), _facts("B1", targets=(2,)), _facts("B2", targets=(2,)), _facts("C", targets=(3,))]
    choices = choose_courses(plans, alternatives="variants")
    assert [c.courses for c in choices] == [("A1", "B1", "C"), ("A1", "B2", "C"), ("A2", "B1", "C"), ("A2", "B2", "C")]
    assert [c.variant for c in choices] == [1, 2, 3, 4]
    assert all(isinstance(p, LeftOutPlan) and "checked in its own report" in p.reason
               for c in choices for p in c.left_out)
    with pytest.raises(LinkError, match=r"4 combinations, more than the 3 plancheck checks one by one"):
        choose_courses(plans, alternatives="variants", max_variants=3)


def test_a_label_shared_by_two_plans_needs_the_uid():
    plans = [PlanFacts("1.2.1", "Plan1"), PlanFacts("1.2.2", "Plan1")]
    with pytest.raises(UsageError, match=r"2 plans have the label 'Plan1'; name one by its SOP Instance UID: "
                                         r"1\.2\.1, 1\.2\.2"):
        choose_courses(plans, PlanSelection(("Plan1",)))
    [choice] = choose_courses(plans, PlanSelection(("1.2.2",)))
    assert choice.courses == ("1.2.2",)


# ------------------------------------------------------------------------------ plan alone


def test_fractionation_works_from_the_plan_alone(two_courses, tmp_path, capsys):
    export = tmp_path / "plans-only"
    export.mkdir()
    for name in ("RP_C_A.dcm", "RP_C_B.dcm"):
        (export / name).write_bytes((two_courses / name).read_bytes())
    assert main(["fractionation", str(export), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # 50 Gy / 25 fx: 2 Gy/fx, BED10 = 50 (1 + 2/10) = 60 Gy; 30 Gy / 10 fx: 3 Gy/fx, BED10 = 30 (1.3) = 39 Gy
    rows = {c["label"]: c for c in doc["courses"]}
    assert rows["C_A"]["bed10_gy"] == pytest.approx(60.0) and rows["C_B"]["bed10_gy"] == pytest.approx(39.0)
    assert rows["C_A"]["target_d95_gy"] is None
    assert any("D95% not computed" in r and "Structure Set" in r for r in rows["C_A"]["remarks"])
    with pytest.raises(LinkError, match=r"Referenced Structure Set Sequence"):
        read_export(export)  # a check still needs the structure set and dose


def test_dvh_shows_alternatives_per_course_and_refuses_to_sum_them(with_alternative, capsys):
    assert main(["dvh", str(with_alternative), "--structure", "SpinalCord", "--metric", "D0.03cc[Gy]",
                 "--format", "json"]) == 0
    assert main(["dvh", str(with_alternative), "--structure", "SpinalCord", "--composite"]) == 3
    assert "alternatives of one another" in capsys.readouterr().err
    assert main(["dvh", str(with_alternative), "--structure", "SpinalCord", "--metric", "D0.03cc[Gy]",
                 "--composite", "--plan", "C_A", "--plan", "C_B", "--format", "csv"]) == 0
    [cord] = [r for r in csv.DictReader(capsys.readouterr().out.splitlines()) if r["structure"] == "SpinalCord"]
    assert float(cord["value"]) == pytest.approx(50, abs=0.02)  # 25 + 25 Gy, C_A_IMRT left out


from hypothesis import given, settings, strategies as st  # noqa: E402

_PLAN = st.tuples(st.sampled_from(["RS1", "RS2", ""]), st.frozensets(st.integers(1, 3), max_size=2),
                  st.sampled_from(["APPROVED", "UNAPPROVED", "REJECTED", ""]))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(_PLAN, min_size=1, max_size=6))
def test_alternatives_are_never_summed_whatever_the_plans(plans):
    facts = [PlanFacts(f"1.2.{k}", f"P{k}", status, "", rtss, targets) for k, (rtss, targets, status) in enumerate(plans)]

    def alternatives(a, b):
        return a.structure_set_uid and a.structure_set_uid == b.structure_set_uid and a.target_rois \
            and a.target_rois == b.target_rois

    try:
        choices = choose_courses(facts, alternatives="variants", max_variants=64)
    except LinkError:
        return  # more combinations than allowed: refused, never summed
    for choice in choices:
        courses = [f for f in facts if f.uid in choice.courses]
        assert not any(alternatives(a, b) for i, a in enumerate(courses) for b in courses[i + 1:])
        # every plan is a course or left out with a reason, exactly once
        assert sorted(choice.courses + tuple(p.uid for p in choice.left_out)) == sorted(f.uid for f in facts)
        assert all(p.reason for p in choice.left_out)
    has_alternatives = len(choices) > 1
    if has_alternatives:
        with pytest.raises(LinkError, match=r"are alternatives of one another"):
            choose_courses(facts, alternatives="refuse")
