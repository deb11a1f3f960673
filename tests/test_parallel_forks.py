"""The rules of one check in forked processes (:func:`plancheck.parallel.map_in_forks`,
:func:`plancheck.rules.runner.run_check` with ``processes``).

* :func:`~plancheck.parallel.map_in_forks`: the plain loop's results, in input order, computed
  in two processes; a child that dies, raises or cannot send its results costs time, not
  results (its items are computed again in the parent); an exception in the parent's own
  items is raised and leaves no child behind;
* the check: the findings and the HTML report (with its DVH plots of DVHs computed in the
  other process) are the same with one and with two processes;
* the grouping: rules about one structure stay together, and a group's estimated work grows
  with its structure's contour points;
* a combined structure sent back from another process is taken only where its number means
  the same combination here (so a plot never shows another structure's DVH).

Forking is refused while other threads run (the test runner's workers have some), so the
forking tests run in a fresh interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fresh_interpreter import run_fresh

import plancheck.rules.runner as runner
from plancheck.dicom import read_export
from plancheck.model.case import find_case_file, load_case
from plancheck.protocol.loader import DEFAULT_PROTOCOL
from plancheck.rules.context import CheckContext

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forking is used on Linux only")


def test_map_in_forks_gives_the_plain_loops_results_from_two_processes() -> None:
    got = run_fresh("""
        import json, os, time
        from plancheck.parallel import can_fork, map_in_forks
        assert can_fork()
        def work(x):
            time.sleep(0.02)  # long enough for the child to take items too, even on a busy machine
            return x * x, os.getpid()
        out = map_in_forks(work, range(40), processes=2, cost=lambda x: x % 7)
        try:
            os.waitpid(-1, os.WNOHANG); zombies = True
        except ChildProcessError:
            zombies = False
        print(json.dumps({"values": [v for v, _ in out], "pids": sorted({p for _, p in out}),
                          "me": os.getpid(), "zombies": zombies}))
    """)
    assert got["values"] == [x * x for x in range(40)]
    assert len(got["pids"]) == 2 and got["me"] in got["pids"]
    assert not got["zombies"]


@pytest.mark.parametrize("failure", ["dies", "raises", "unpicklable"])
def test_a_failing_child_costs_time_not_results(failure: str) -> None:
    got = run_fresh(f"""
        import json, os, time
        from plancheck.parallel import map_in_forks
        parent = os.getpid()
        def work(x):
            time.sleep(0.01)
            if os.getpid() != parent:
                if {failure!r} == "dies":
                    os._exit(3)
                if {failure!r} == "raises":
                    raise RuntimeError("a bug in the child")
                return lambda: x  # a result that cannot be pickled
            return x + 1
        out = map_in_forks(work, range(20), processes=2)
        out = [v() + 1 if callable(v) else v for v in out]
        print(json.dumps({{"values": out}}))
    """)
    assert got["values"] == [x + 1 for x in range(20)]


def test_an_exception_in_the_parent_is_raised_and_leaves_no_child() -> None:
    got = run_fresh("""
        import json, os, time
        from plancheck.parallel import map_in_forks
        parent = os.getpid()
        def work(x):
            time.sleep(0.05)
            if os.getpid() == parent:
                raise ValueError(f"item {x}")
            return x
        try:
            map_in_forks(work, range(10), processes=2)
            raised = None
        except ValueError as exc:
            raised = str(exc)
        try:
            os.waitpid(-1, os.WNOHANG); children = True
        except ChildProcessError:
            children = False
        print(json.dumps({"raised": raised, "children": children}))
    """)
    assert got["raised"] is not None and got["raised"].startswith("item ")
    assert not got["children"]


def test_check_findings_and_html_report_identical_with_one_and_two_processes(tmp_path: Path) -> None:
    got = run_fresh(f"""
        import json, os, re
        from plancheck.analysis.check_treatment import read_case
        from plancheck.dicom import read_export
        from plancheck.report import render_report
        from plancheck.rules import runner
        sample = {str(SAMPLE)!r}
        protocol = runner.protocol_for_check({DEFAULT_PROTOCOL!r})
        case = read_case(os.path.join(sample, "case.yaml"))
        seen_file = os.path.join(os.environ["SEEN_DIR"], "pids")
        real = runner.map_in_threads
        def spy(func, items, **kw):  # which processes evaluate rules (a child's memory stays in the child)
            with open(seen_file, "a") as fh:
                fh.write(f"{{os.getpid()}}\\n")
            return real(func, items, **kw)
        runner.map_in_threads = spy
        out = {{}}
        for processes in (1, 2):
            open(seen_file, "w").close()
            report = runner.run_check(read_export(sample), protocol, case=case, processes=processes)
            html = render_report(report, "html")
            html = re.sub(r"in [0-9.]+ s</dd>", "", html)
            html = re.sub(r"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}} [0-9:]+ UTC", "", html)
            out[processes] = {{
                "findings": [[f.rule_id, str(f.status), f.measured, f.message, list(f.structures)]
                             for f in report.findings],
                "not_applicable": [n.rule_id for n in report.not_applicable],
                "html": html, "plots": html.count("<svg"),
                "processes": len(set(open(seen_file).read().split()))}}
        print(json.dumps(out))
    """, SEEN_DIR=str(tmp_path))
    one, two = got["1"], got["2"]
    assert one["processes"] == 1 and two["processes"] == 2
    assert len(one["findings"]) > 100 and one["findings"] == two["findings"]
    assert one["not_applicable"] == two["not_applicable"]
    assert one["plots"] >= 3 and one["html"] == two["html"]


def _protocol_and_context() -> tuple:
    protocol = runner.protocol_for_check(DEFAULT_PROTOCOL)
    case_path = find_case_file(SAMPLE)
    export = read_export(SAMPLE)

    def context() -> CheckContext:
        return CheckContext(export, protocol, load_case(case_path), str(case_path), {})

    return protocol, context


def test_work_groups_keep_a_structures_rules_together_and_weigh_its_size() -> None:
    protocol, context = _protocol_and_context()
    rules = protocol.rules
    points = {"Skin": 40_000, "Heart": 4_000}
    groups = runner.work_groups(rules, lambda name: points.get(name, 0))
    assert sorted(i for members, _ in groups for i in members) == list(range(len(rules)))
    by_rule = {rules[i].rule.id: (members, cost) for members, cost in groups for i in members}
    # every rule on the skin in one group, with nothing else in it
    skin = [r.rule.id for r in rules if r.rule.kind == "dvh" and r.rule.structure == "Skin"]
    members, skin_cost = by_rule[skin[0]]
    assert len(skin) == 2 and sorted(rules[i].rule.id for i in members) == sorted(skin)
    # two single-course DVH rules, each weighing 1 + 40 000 / 10 000
    assert skin_cost == pytest.approx(2 * (1 + 40_000 / runner.POINTS_PER_COST_UNIT))
    heart = {rules[i].rule.id for i in by_rule["OAR-HEART-V30"][0]}
    assert {"OAR-HEART-V30", "OAR-HEART-MEAN", "TG101-HEART-MAX"} <= heart
    # the rules selecting targets share the targets' volumes: one group
    targets = {rules[i].rule.id for i in by_rule["COV-SBRT-CI"][0]}
    assert {"COV-SBRT-CI", "TGT-NEST-PTV", "COV-CONV-V100", "DOS-PRIM"} <= targets
    assert runner.structure_names(["GreatVes", "A_Aorta"]) == ["GreatVes", "A_Aorta"]


def test_a_combined_structure_from_another_process_is_taken_only_where_its_number_agrees(monkeypatch) -> None:
    _, context = _protocol_and_context()
    child = context()
    info = child.courses[0]
    lung_l, lung_r, heart = (child.structure_set.roi_by_name(n) for n in ("Lung_L", "Lung_R", "Heart"))
    mark = child.mark()
    lungs = child.combined_roi("Lung_L ∪ Lung_R", [lung_l, lung_r])
    lungs_dvh = child.dvh(lungs, [info])
    computed = child.computed_since(mark)
    assert lungs.number < 0 and set(computed[1]) == {((lung_l.number, lung_r.number), ())}

    # the same combination: taken, with its DVH (the object sent, not computed again)
    parent = context()
    parent.adopt(computed)
    assert parent.roi_named("Lung_L ∪ Lung_R") is lungs
    assert parent.dvh(lungs, [info]) is lungs_dvh

    # here that number already means another combination: neither the structure nor its DVH is taken
    other = context()
    monkeypatch.setattr(other, "_combined_number", lambda key: lungs.number)
    heart_and_lung = other.combined_roi("Heart ∪ Lung_L", [heart, lung_l])
    assert heart_and_lung.number == lungs.number
    other.adopt(computed)
    assert other.roi_named("Lung_L ∪ Lung_R") is None
    mine = other.dvh(heart_and_lung, [info])  # computed here, of its own structure
    parts = other.dvh(heart, [info]).volume_cc + other.dvh(lung_l, [info]).volume_cc
    assert mine is not lungs_dvh and mine.volume_cc == pytest.approx(parts, rel=0.02)
    assert abs(mine.volume_cc - lungs_dvh.volume_cc) > 0.1 * lungs_dvh.volume_cc
