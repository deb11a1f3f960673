"""Tests of the α/β table (constraints/alpha_beta.yaml) and its lookup."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from plancheck.errors import ProtocolError, RadiobiologyError
from plancheck.radiobiology import (
    AlphaBetaOrigin,
    AlphaBetaTable,
    load_alpha_beta_table,
)

VALID = """\
version: 1
default_target_gy: 10
default_target_source: "consensus"
default_normal_tissue_gy: 3
default_normal_tissue_source: "consensus"
entries:
  - structures: [SpinalCord, SpinalCord_PRV*]
    alpha_beta_gy: 2
    source: "QUANTEC"
"""


@pytest.fixture(scope="module")
def table() -> AlphaBetaTable:
    return load_alpha_beta_table()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alpha_beta.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- packaged table


def test_packaged_table_loads_with_defaults(table):
    assert table.version == 1
    assert table.default_target_gy == 10
    assert table.default_normal_tissue_gy == 3
    assert table.path is not None and table.path.endswith("alpha_beta.yaml")
    assert all(entry.source for entry in table.entries)


@pytest.mark.parametrize(
    ("name", "is_target", "alpha_beta_gy", "origin", "pattern"),
    [
        ("SpinalCord", False, 2.0, AlphaBetaOrigin.TABLE, "SpinalCord"),
        ("spinalcord", False, 2.0, AlphaBetaOrigin.TABLE, "SpinalCord"),  # case-insensitive
        ("SpinalCord_PRV05", False, 2.0, AlphaBetaOrigin.TABLE, "SpinalCord_*"),
        ("SpinalCord_Thor", False, 2.0, AlphaBetaOrigin.TABLE, "SpinalCord_*"),
        ("SpinalCanal_PRV03", False, 2.0, AlphaBetaOrigin.TABLE, "SpinalCanal_*"),
        ("Brainstem_Surf", False, 2.0, AlphaBetaOrigin.TABLE, "Brainstem_*"),
        ("Lung_RUL", False, 3.0, AlphaBetaOrigin.TABLE, "Lung_*"),
        ("Esophagus_NAdj", False, 3.0, AlphaBetaOrigin.TABLE, "Esophagus_*"),
        ("Pericardium", False, 3.0, AlphaBetaOrigin.TABLE, "Pericardium"),
        ("CaudaEquina", False, 2.0, AlphaBetaOrigin.TABLE, "CaudaEquina"),
        ("BrachialPlex_L", False, 2.0, AlphaBetaOrigin.TABLE, "BrachialPlex*"),
        ("Brainstem", False, 2.0, AlphaBetaOrigin.TABLE, "Brainstem"),
        ("Lungs", False, 3.0, AlphaBetaOrigin.TABLE, "Lungs"),
        ("Lungs-GTV", False, 3.0, AlphaBetaOrigin.TABLE, "Lungs-*"),
        ("Heart", False, 3.0, AlphaBetaOrigin.TABLE, "Heart"),
        ("Esophagus", False, 3.0, AlphaBetaOrigin.TABLE, "Esophagus"),
        ("Rectum", False, 3.0, AlphaBetaOrigin.TABLE, "Rectum"),
        ("PTV_High", True, 10.0, AlphaBetaOrigin.TABLE, "PTV*"),
        ("GTVp", True, 10.0, AlphaBetaOrigin.TABLE, "GTV*"),
        ("ITV", True, 10.0, AlphaBetaOrigin.TABLE, "ITV*"),
        ("Boost_Lesion", True, 10.0, AlphaBetaOrigin.DEFAULT_TARGET, None),
        ("Parotid_L", False, 3.0, AlphaBetaOrigin.DEFAULT_NORMAL_TISSUE, None),
    ],
)
def test_packaged_lookups(table, name, is_target, alpha_beta_gy, origin, pattern):
    choice = table.lookup(name, is_target)
    assert choice.alpha_beta_gy == alpha_beta_gy
    assert choice.origin is origin
    assert choice.pattern == pattern
    assert choice.source


def test_table_entry_wins_over_target_flag(table):
    # the name decides when an entry matches; is_target only picks the default
    assert table.lookup("SpinalCord", is_target=True).alpha_beta_gy == 2.0


def test_describe_names_origin_and_source(table):
    text = table.lookup("SpinalCord_PRV05", False).describe()
    assert text.startswith("α/β = 2 Gy (table entry 'SpinalCord_*'; source: ")
    assert "Nieder" in text and "Kirkpatrick" not in text  # QUANTEC estimates 0.87 Gy: not the source of 2 Gy

# --------------------------------------------------------------------------- overrides


def test_override_exact_beats_glob_and_table(table):
    choice = table.lookup("SpinalCord", False, {"Spinal*": 2.5, "SPINALCORD": 1.5})
    assert choice.alpha_beta_gy == 1.5
    assert choice.origin is AlphaBetaOrigin.OVERRIDE
    assert choice.pattern == "SPINALCORD"
    assert "override 'SPINALCORD' = 1.5 Gy" in choice.source


def test_override_glob_and_no_match(table):
    assert table.lookup("Lung_L", False, {"lung*": 4}).alpha_beta_gy == 4.0
    assert table.lookup("Heart", False, {"lung*": 4}).origin is AlphaBetaOrigin.TABLE


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.0, r"'overrides\['SpinalCord'\]' value of 0 Gy is invalid, it must be > 0 Gy"),
        (float("nan"), r"'overrides\['SpinalCord'\]' value of nan is invalid, it must be finite"),
        ("2", r"'overrides\['SpinalCord'\]' value of '2' \(str\) is invalid"),
    ],
)
def test_override_values_validated(table, value, message):
    with pytest.raises(RadiobiologyError, match=message):
        table.lookup("SpinalCord", False, {"SpinalCord": value})


def test_empty_structure_name_rejected(table):
    with pytest.raises(RadiobiologyError, match=r"'structure_name' value of '  ' is invalid"):
        table.lookup("  ", False)


# --------------------------------------------------------------------------- file validation


def test_valid_file_loads(tmp_path):
    table = load_alpha_beta_table(write(tmp_path, VALID))
    assert table.lookup("SpinalCord_PRV03", False).alpha_beta_gy == 2.0
    assert table.path == str(tmp_path / "alpha_beta.yaml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    source: \"QUANTEC\"\n",
            "    source: \"QUANTEC\"\n    alpha_beta: 2\n",
            r"unknown field 'entries\[0\]\.alpha_beta' \(the entry for SpinalCord, "
            r"SpinalCord_PRV\*\) \(misspelled\?\)",
        ),
        (
            "    alpha_beta_gy: 2\n",
            "    alpha_beta_gy: -2\n",
            r"field 'entries\[0\]\.alpha_beta_gy' \(the entry for .*\) = -2: "
            r"Input should be greater than 0",
        ),
        (
            "    alpha_beta_gy: 2\n",
            "    alpha_beta_gy: \"2\"\n",
            r"field 'entries\[0\]\.alpha_beta_gy' .* = '2': Input should be a valid number",
        ),
        (
            "    source: \"QUANTEC\"\n",
            "",
            r"field 'entries\[0\]\.source' \(the entry for .*\) is missing; it is required",
        ),
        ("version: 1\n", "version: 2\n", r"field 'version' = 2: Input should be 1"),
        (
            "  - structures: [SpinalCord, SpinalCord_PRV*]\n",
            "  - structures: []\n",
            r"field 'entries\[0\]\.structures' .* should have at least 1 item",
        ),
        (
            "default_normal_tissue_source: \"consensus\"\n",
            "default_normal_tissue_source: \"consensus\"\ndefault_normal_tisue_gy: 3\n",
            r"unknown field 'default_normal_tisue_gy' \(misspelled\?\)",
        ),
    ],
)
def test_invalid_file_names_file_and_field(tmp_path, old, new, message):
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    with pytest.raises(ProtocolError, match=message) as info:
        load_alpha_beta_table(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: invalid α/β table: ")


def test_duplicate_pattern_rejected(tmp_path):
    text = VALID + (
        "  - structures: [spinalcord]\n    alpha_beta_gy: 3\n    source: \"elsewhere\"\n"
    )
    with pytest.raises(ProtocolError, match=r"'spinalcord' appears in entries\[0\] and entries\[1\]"):
        load_alpha_beta_table(write(tmp_path, text))


def test_duplicate_yaml_key_rejected(tmp_path):
    text = VALID.replace("default_target_gy: 10\n", "default_target_gy: 10\ndefault_target_gy: 8\n")
    with pytest.raises(ProtocolError, match=r"line 3: key 'default_target_gy' is given twice in one mapping"):
        load_alpha_beta_table(write(tmp_path, text))


def test_not_yaml_or_not_a_mapping(tmp_path):
    with pytest.raises(ProtocolError, match=r"not valid YAML"):
        load_alpha_beta_table(write(tmp_path, "entries: [unclosed\n"))
    with pytest.raises(ProtocolError, match=r"the top level is a list; it must be a mapping"):
        load_alpha_beta_table(write(tmp_path, "- 1\n- 2\n"))


def test_missing_file(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ProtocolError, match=r"nowhere\.yaml: cannot read α/β table"):
        load_alpha_beta_table(missing)


def test_every_packaged_pattern_matches_a_tg263_name(table):
    # A misspelled name in alpha_beta.yaml would silently fall back to the default;
    # check each pattern against the TG-263 primary names shipped with plancheck.
    import csv
    import fnmatch
    from importlib.resources import files

    resource = files("plancheck.constraints") / "tg263_nomenclature.csv"
    if not resource.is_file():
        pytest.skip("tg263_nomenclature.csv is not packaged")
    with resource.open(encoding="utf-8", newline="") as handle:
        names = [row["TG263-Primary Name"].casefold() for row in csv.DictReader(handle)]
    unmatched = [
        pattern
        for entry in table.entries
        for pattern in entry.structures
        if not fnmatch.filter(names, pattern.casefold())
    ]
    assert unmatched == []
