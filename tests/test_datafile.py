"""The strict reader of YAML data files (plancheck.datafile) and every loader that uses it:
nothing in a protocol, α/β table, synonyms or case file may change a value silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plancheck.cli.main import main
from plancheck.datafile import MAX_BYTES, load_data_file, load_data_text
from plancheck.errors import ProtocolError
from plancheck.model.case import load_case
from plancheck.protocol.loader import load_protocol
from plancheck.names.nomenclature import load_synonyms
from plancheck.radiobiology.alpha_beta import load_alpha_beta_table

RULE = """\
schema_version: 1
id: clinic
title: Clinic
version: "1"
rules:
  - id: CORD
    kind: dvh
    title: cord
    category: oar
    structure: SpinalCord
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    limits: {unit: Gy, upper: {per_protocol: 45}}
    provenance: {source: test, section: "1", confidence: institutional}
"""


def write(tmp_path: Path, text: str | bytes, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    # the mistake the issue reports: `upper` written twice turned 45 Gy into 450 Gy
    text = RULE.replace("limits: {unit: Gy, upper: {per_protocol: 45}}",
                        "limits:\n      unit: Gy\n      upper: {per_protocol: 45}\n      upper: {per_protocol: 450}")
    with pytest.raises(ProtocolError, match=r"file\.yaml: line 16: key 'upper' is given twice in one mapping "
                                            r"\(first at line 15\)"):
        load_protocol(str(write(tmp_path, text)))


def test_a_rule_id_given_twice_is_an_error(tmp_path: Path) -> None:
    text = RULE + RULE[RULE.index("  - id: CORD"):]
    with pytest.raises(ProtocolError, match=r"rule ids must be unique in a protocol file: CORD \(rules #1, #2\)"):
        load_protocol(str(write(tmp_path, text)))


@pytest.mark.parametrize("value, match", [
    (".inf", r"line 13: '\.inf' is not a finite number"),
    (".nan", r"line 13: '\.nan' is not a finite number"),
    ("-.Inf", r"line 13: '-\.Inf' is not a finite number"),
    ("1.0e400", r"line 13: '1\.0e400' is not a finite number"),
    ("1e400", r"line 13: '1e400' is not a finite number"),  # a number, as YAML 1.2 reads it
])
def test_a_number_that_is_not_finite_is_an_error(tmp_path: Path, value: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        load_protocol(str(write(tmp_path, RULE.replace("per_protocol: 45", f"per_protocol: {value}"))))


def test_invalid_utf8_is_an_error_naming_the_line(tmp_path: Path) -> None:
    raw = RULE.replace("title: cord", "title: cord \udcff").encode("utf-8", "surrogateescape")
    with pytest.raises(ProtocolError, match=r"line 8: a protocol file must be UTF-8 text \(invalid byte 0xff"):
        load_protocol(str(write(tmp_path, raw)))


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    assert load_protocol(str(write(tmp_path, "\ufeff" + RULE))).id == "clinic"


def test_deep_nesting_and_alias_bombs_are_refused() -> None:
    with pytest.raises(ProtocolError, match="nested more than 40 levels deep"):
        load_data_text("a: " + "[" * 60 + "]" * 60, "x.yaml")
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcde", "bcdef"))
    with pytest.raises(ProtocolError, match="expands to more than"):
        load_data_text(bomb, "x.yaml")


def test_a_file_larger_than_the_bound_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, b"# " + b"x" * MAX_BYTES)
    with pytest.raises(ProtocolError, match="is at most 4 MB"):
        load_data_file(path, what="protocol file")


def test_every_data_file_uses_the_strict_reader(tmp_path: Path) -> None:
    duplicate = "histology: adenocarcinoma\nhistology: other\n"
    with pytest.raises(ProtocolError, match="key 'histology' is given twice"):
        load_case(write(tmp_path, duplicate, "case.yaml"))
    with pytest.raises(ProtocolError, match=r"ab\.yaml: line 1: '\.nan' is not a finite number"):
        load_alpha_beta_table(write(tmp_path, "default_target_gy: .nan\n", "ab.yaml"))
    ab = "version: 1\nversion: 1\n"
    with pytest.raises(ProtocolError, match="key 'version' is given twice"):
        load_alpha_beta_table(write(tmp_path, ab, "ab.yaml"))
    syn = "format_version: 1\nformat_version: 1\n"
    with pytest.raises(ProtocolError, match="key 'format_version' is given twice"):
        load_synonyms(write(tmp_path, syn, "syn.yaml"))
    with pytest.raises(ProtocolError, match=r"'\.nan' is not a finite number"):
        load_case(write(tmp_path, "metastases:\n  - organ: lung\n    size_mm: .nan\n", "case.yaml"))


def test_case_file_dates_stay_text_for_pydantic(tmp_path: Path) -> None:
    assert load_data_text("d: 2025-01-06\n", "c.yaml", dates_as_text=True) == {"d": "2025-01-06"}
    with pytest.raises(ProtocolError, match=r"primary\.diagnosis_date"):
        load_case(write(tmp_path, "primary: {diagnosis_date: 2025-13-40}\n", "case.yaml"))


def test_the_cli_reports_a_bad_protocol_with_exit_3_and_one_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, RULE.replace("per_protocol: 45", "per_protocol: .inf"))
    code = main(["check", str(tmp_path), "--protocol", str(path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "is not a finite number" in err and "Traceback" not in err


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_any_bytes_give_data_or_one_protocol_error(raw: bytes) -> None:
    # never another exception type: the CLI turns ProtocolError into exit 3
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        load_data_text(text, "fuzz.yaml")
    except ProtocolError as exc:
        assert str(exc).startswith("fuzz.yaml: ")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(list("ab:{}[]-&*!\n .,'\"0123456789#|>")), max_size=120))
def test_yaml_like_text_gives_data_or_one_protocol_error(text: str) -> None:
    try:
        load_data_text(text, "fuzz.yaml")
    except ProtocolError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
