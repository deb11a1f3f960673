"""Adding a rule kind from outside plancheck: a worked example.

A package adds a kind by exporting a :class:`plancheck.rules.registry.RuleKind` —
its protocol-file model (a ``RuleBase`` subclass with ``kind: Literal[...]``) and
its evaluator — and declaring it in its ``pyproject.toml``::

    [project.entry-points."plancheck.rules"]
    max-beams = "plancheck_beams.rules:MAX_BEAMS_KIND"

plancheck then loads it on first use (:func:`plancheck.rules.registry.rule_kinds`), the
protocol-file schema gains the new ``kind``, and protocol files can use it. An
embedding application or a test registers one directly with
:func:`plancheck.rules.registry.register_kind`.

The example kind ``max-beams`` counts the treatment beams of each course's plan.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest
from pydantic import Field

from plancheck.dicom import read_export
from plancheck.errors import ProtocolError
from plancheck.protocol import kinds as registry
from plancheck.protocol.loader import load_protocol, protocol_json_schema
from plancheck.protocol.schema import RuleBase
from plancheck.rules.base import finding, not_evaluated
from plancheck.rules.findings import Status
from plancheck.rules.registry import ENTRY_POINT_GROUP, RuleKind, register_kind, rule_kinds
from plancheck.rules.runner import run_check

SAMPLE = Path(__file__).resolve().parents[1] / "sample_dicom"


# ------------------------------------------------------------------------------ the example kind

class MaxBeamsRule(RuleBase):
    """``kind: max-beams``: at most ``max_beams`` treatment beams per plan."""

    kind: Literal["max-beams"]
    max_beams: int = Field(ge=1)


def evaluate_max_beams(rule: MaxBeamsRule, ctx) -> list:
    if not ctx.courses:
        return [not_evaluated(rule, "the export has no course")]
    out = []
    for info in ctx.courses:
        n = len(info.course.plan.treatment_beams)
        status = Status.PASS if n <= rule.max_beams else Status.FAIL
        out.append(finding(rule, status, f"plan {info.label} has {n} treatment beam(s): limit {rule.max_beams}",
                           measured=float(n), unit="", limit=f"≤ {rule.max_beams}", courses=(info.label,)))
    return out


MAX_BEAMS_KIND = RuleKind(model=MaxBeamsRule, evaluate=evaluate_max_beams)

PROTOCOL = """\
schema_version: 1
id: beams
title: Beam count
version: "1"
rules:
  - id: INT-BEAMS
    kind: max-beams
    title: At most {n} treatment beams per plan
    category: integrity
    max_beams: {n}
    provenance: {{source: clinic, section: "QA sheet", confidence: institutional}}
"""


@pytest.fixture
def clean_registry():
    """Leave the registry as it was found (run-time registrations and discovered kinds)."""
    registry.forget_discovered_kinds()
    yield
    registry._extra.pop("max-beams", None)
    registry.forget_discovered_kinds()


@pytest.fixture(scope="module")
def export():
    if not SAMPLE.is_dir():
        pytest.skip("sample_dicom not present")
    return read_export(SAMPLE)


def _write(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "beams.yaml"
    path.write_text(PROTOCOL.format(n=n), encoding="utf-8")
    return path


def test_unknown_kind_is_a_protocol_error(tmp_path, clean_registry):
    with pytest.raises(ProtocolError, match="rule INT-BEAMS.*'max-beams'"):
        load_protocol(str(_write(tmp_path, 2)))


def test_register_kind_and_run(tmp_path, export, clean_registry):
    load_protocol("plan-integrity")  # a protocol loaded before the kind exists does not hide it later
    register_kind(MAX_BEAMS_KIND)
    assert rule_kinds()["max-beams"] is MAX_BEAMS_KIND
    assert "max-beams" in protocol_json_schema()
    report = run_check(export, load_protocol(str(_write(tmp_path, 2))))
    assert [f.status for f in report.findings] == [Status.PASS] * 3  # two arcs per plan in the sample
    assert report.findings[0].provenance.protocol == "beams"
    report = run_check(export, load_protocol(str(_write(tmp_path, 1))))
    assert [f.status for f in report.findings] == [Status.FAIL] * 3
    assert report.findings[0].message == "plan C1_Eso has 2 treatment beam(s): limit 1"
    with pytest.raises(ProtocolError, match="rule INT-BEAMS, field max_beams: Input should be greater than or equal to 1"):
        load_protocol(str(_write(tmp_path, 0)))


class FakeEntryPoint:
    """What ``importlib.metadata.entry_points(group=...)`` yields: a name and ``load()``."""

    def __init__(self, name: str, loaded=None, error: Exception | None = None):
        self.name, self.group, self.value = name, ENTRY_POINT_GROUP, f"fake_package:{name}"
        self._loaded, self._error = loaded, error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._loaded


def test_entry_point_is_loaded(tmp_path, export, monkeypatch, caplog, clean_registry):
    seen_groups = []

    def entry_points(*, group):
        seen_groups.append(group)
        return [FakeEntryPoint("max-beams", MAX_BEAMS_KIND),
                FakeEntryPoint("broken", error=ImportError("No module named 'fake_package'")),
                FakeEntryPoint("not-a-kind", loaded=object())]

    monkeypatch.setattr(registry, "metadata", SimpleNamespace(entry_points=entry_points))
    with caplog.at_level(logging.WARNING, logger="plancheck.protocol.kinds"):
        kinds = rule_kinds()
    assert seen_groups == ["plancheck.rules"]
    assert kinds["max-beams"] is MAX_BEAMS_KIND
    assert "dvh" in kinds  # built-ins stay
    assert "entry point broken could not be loaded: No module named 'fake_package'" in caplog.text
    assert "entry point not-a-kind is not a plancheck RuleKind; ignored" in caplog.text
    report = run_check(export, load_protocol(str(_write(tmp_path, 2))))
    assert {f.rule_id for f in report.findings} == {"INT-BEAMS"}
    assert all(f.status is Status.PASS for f in report.findings)
