"""Structure-name matching (TG-263 + synonyms) and target-name parsing."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plancheck.errors import ProtocolError, UsageError
from plancheck.names import structures as names_module
from plancheck.names.nomenclature import (
    default_synonyms,
    default_tg263_table,
    load_synonyms,
    load_tg263_table,
)
from plancheck.names.structures import MatchStatus, StructureNameMatcher, normalize_name, prv_of
from plancheck.names.targets import TargetKind, TargetRole, parse_target_name


@pytest.fixture(scope="module")
def matcher() -> StructureNameMatcher:
    return StructureNameMatcher()


# --------------------------------------------------------------------------- data files


def test_tg263_table_is_the_2017_worksheet() -> None:
    table = default_tg263_table()
    assert len(table) == 717  # rows of TG263_Nomenclature_Worksheet_20170815
    by_name = {row.primary_name: row for row in table}
    assert by_name["Lung_L"].reverse_name == "L_Lung"
    assert by_name["SpinalCord"].fma_id == 7647
    assert by_name["SpinalCord_PRVxx"].is_template
    assert not by_name["Cervix"].is_template  # an "x" in a word is not a placeholder


def test_data_files_are_utf8_and_carry_their_provenance() -> None:
    from importlib.resources import files

    pkg = files("plancheck.constraints")
    csv_text = pkg.joinpath("tg263_nomenclature.csv").read_bytes().decode("utf-8")
    assert csv_text.startswith("Target Type,Major Category,Minor Category,Anatomic Group,N Characters,")
    yaml_text = pkg.joinpath("structure_synonyms.yaml").read_text(encoding="utf-8")
    assert "2017-08-15" in yaml_text and "TG-263" in yaml_text
    assert "2017-08-15" in (names_module.__doc__ or "")


def test_default_data_are_parsed_once() -> None:
    assert default_synonyms() is default_synonyms()
    assert default_tg263_table() is default_tg263_table()
    assert StructureNameMatcher()._idx is StructureNameMatcher({"Lungs": "X"})._idx


# --------------------------------------------------------------------------- normalisation


def test_normalisation_ignores_case_spaces_underscores_and_dots() -> None:
    assert normalize_name("Spinal Cord") == normalize_name("SPINAL_CORD") == normalize_name(" SpinalCord ")
    assert normalize_name("Lung L+R") == normalize_name("LUNG_L+R") == "lungl+r"
    assert normalize_name("SpinalCord_PRV05") == normalize_name("spinalcord prv5")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Lung_L", "Lung_R"),
        ("Lung_L", "Lungs"),
        ("SpinalCord", "SpinalCord_PRV05"),
        ("Kidney_L", "Kidneys"),
        ("Lungs-PTV", "Lungs_PTV"),  # "-" is TG-263's minus
        ("Cord+0.5cm", "Cord+5cm"),  # a decimal point is not a separator
        ("E-PTV_Ev05_5000", "E-PTV_Ev055000"),  # numbers are not glued together
        ("SpinalCord_PRV05", "SpinalCord_PRV50"),
    ],
)
def test_normalisation_keeps_distinct_names_apart(a: str, b: str) -> None:
    assert normalize_name(a) != normalize_name(b)


def test_tg263_names_do_not_collide_after_normalisation_except_vb_s(matcher: StructureNameMatcher) -> None:
    keys: dict[str, set[str]] = defaultdict(set)
    for row in default_tg263_table():
        keys[normalize_name(row.primary_name)].add(row.primary_name)
        keys[normalize_name(row.reverse_name)].add(row.primary_name)
    collisions = sorted(tuple(sorted(v)) for v in keys.values() if len(v) > 1)
    # the one collision of the 2017 worksheet: sacral vertebra vs vertebral bodies;
    # the matcher separates them by their separators
    assert collisions == [("VB_S", "VBs")]
    assert matcher.standard_name_of("VB_S") == "VB_S"
    assert matcher.standard_name_of("vb s") == "VB_S"
    assert matcher.standard_name_of("VBS") == "VBs"
    assert matcher.match("VBs", ["VB_S"]).status is MatchStatus.MISSING
    assert matcher.match("VB_S", ["VBs", "VB_S"]).roi_name == "VB_S"


def test_every_synonym_and_generated_variant_denotes_one_structure(matcher: StructureNameMatcher) -> None:
    idx = names_module._default_index()
    assert idx.dropped_variants == []
    for entry in default_synonyms().structures:
        for syn in entry.synonyms:
            assert matcher.standard_name_of(syn) == entry.standard, syn
            assert matcher.standard_name_of(syn.upper()) == entry.standard, syn


_ascii_names = st.text(alphabet="abcdefLRxyz_ .-+0123456789", max_size=20)


@given(_ascii_names)
def test_normalisation_is_idempotent_and_case_blind(name: str) -> None:
    key = normalize_name(name)
    assert normalize_name(key) == key
    assert normalize_name(name.upper()) == key


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("roi", "standard"),
    [
        ("Lung_Total", "Lungs"),
        ("LUNG_TOTAL", "Lungs"),
        ("Lung L+R", "Lungs"),
        ("Both Lungs", "Lungs"),
        ("Cord", "SpinalCord"),
        ("Spinal Cord", "SpinalCord"),
        ("Oesophagus", "Esophagus"),
        ("ESO", "Esophagus"),
        ("Cor", "Heart"),
        ("Great Vessels", "GreatVes"),
        ("Small_Bowel", "Bowel_Small"),
        ("Outline", "External"),
        ("Cord+5mm", "SpinalCord_PRV05"),
        ("Cord+0.5cm", "SpinalCord_PRV05"),
        ("SpinalCord_PRV5", "SpinalCord_PRV05"),
        ("PRV05_SpinalCord", "SpinalCord_PRV05"),
        ("L_Lung", "Lung_L"),
        ("Left Lung", "Lung_L"),
        ("Lung Lt", "Lung_L"),
        ("BrachialPlexus Right", "BrachialPlex_R"),
        ("Cauda Equina", "CaudaEquina"),
    ],
)
def test_synonyms_resolve(matcher: StructureNameMatcher, roi: str, standard: str) -> None:
    result = matcher.match(standard, ["zRing", roi, "PTV_6000"])
    assert result.status is MatchStatus.MATCHED
    assert result.roi_name == roi
    assert matcher.standard_name_of(roi) == standard


@pytest.mark.parametrize(
    ("standard", "roi"),
    [
        ("Lungs", "Lung_L"),
        ("Lungs", "Lung"),  # singular is not mapped (both lungs or the treated lung?)
        ("Lungs", "Lungs-PTV"),
        ("Lungs-PTV", "Lung_PTV"),
        ("SpinalCord", "SpinalCord_PRV05"),
        ("SpinalCord", "SpinalCanal"),
        ("SpinalCord_PRV05", "SpinalCord_PRV"),  # margin not stated
        ("SpinalCord_PRV05", "SpinalCord_PRV03"),
        ("SpinalCord_PRV05", "Cord+5cm"),
        ("Kidneys", "Kidney_L"),
        ("Lung_L", "Right Lung"),
        ("External", "Skin"),
        ("Chestwall", "Rib"),
        ("Heart", "Pericardium"),
        ("Bowel_Small", "Bowel"),
    ],
)
def test_no_false_matches(matcher: StructureNameMatcher, standard: str, roi: str) -> None:
    result = matcher.match(standard, [roi])
    assert result.status is MatchStatus.MISSING
    assert result.roi_name is None


def test_prv_is_found_when_asked_for(matcher: StructureNameMatcher) -> None:
    rois = ["SpinalCord", "SpinalCord_PRV05", "SpinalCanal"]
    assert matcher.match("SpinalCord", rois).roi_name == "SpinalCord"
    prv = matcher.match("SpinalCord_PRV05", rois)
    assert (prv.roi_name, prv.how) == ("SpinalCord_PRV05", "exact TG-263 name")


def test_exact_name_beats_synonym_and_shadowed_are_reported(matcher: StructureNameMatcher) -> None:
    result = matcher.match("Lungs", ["Lung_Total", "Lungs", "LUNGS"])
    assert result.status is MatchStatus.MATCHED
    assert (result.roi_name, result.how) == ("Lungs", "exact TG-263 name")
    assert result.shadowed == ("LUNGS", "Lung_Total")


def test_precedence_levels_are_named(matcher: StructureNameMatcher) -> None:
    assert matcher.match("SpinalCord", ["SPINAL CORD", "Cord"]).how == (
        "TG-263 name in other case or separators ('SPINAL CORD')"
    )
    assert matcher.match("Lung_L", ["L_Lung", "Left Lung"]).how == "TG-263 reverse-order name 'L_Lung'"
    assert matcher.match("Lungs", ["Lung_Total"]).how == "synonym 'Lung_Total'"
    assert matcher.match("Lung_L", ["Left Lung"]).how == "side written differently ('Left Lung')"


def test_several_rois_at_the_same_level_are_ambiguous(matcher: StructureNameMatcher) -> None:
    result = matcher.match("Lungs", ["Lung_Total", "Lung L+R", "Lung_L"])
    assert result.status is MatchStatus.AMBIGUOUS
    assert result.roi_name is None
    assert result.candidates == ("Lung_Total", "Lung L+R")
    assert result.reason == (
        "2 structures could be Lungs: 'Lung_Total', 'Lung L+R' — add a mapping Lungs: <ROI name> to say which one"
    )


def test_the_same_name_twice_is_ambiguous(matcher: StructureNameMatcher) -> None:
    result = matcher.match("Heart", ["Heart", "Heart"])
    assert result.status is MatchStatus.AMBIGUOUS
    assert "the same name more than once" in result.reason


def test_user_mapping_wins(matcher: StructureNameMatcher) -> None:
    mapped = StructureNameMatcher({"SpinalCord": "SpinalCanal", "Lungs": "lung total"})
    rois = ["SpinalCord", "SpinalCanal", "Lungs", "Lung_Total"]
    cord = mapped.match("SpinalCord", rois)
    assert (cord.status, cord.roi_name, cord.how) == (MatchStatus.MATCHED, "SpinalCanal", "user mapping")
    lungs = mapped.match("Lungs", rois)
    assert (lungs.roi_name, lungs.how) == ("Lung_Total", "user mapping ('lung total' ≈ 'Lung_Total')")
    assert mapped.standard_name_of("SpinalCanal") == "SpinalCord"
    assert matcher.standard_name_of("SpinalCanal") == "SpinalCanal"  # the shared matcher is untouched


def test_user_mapping_to_an_absent_roi_is_missing_not_a_fallback() -> None:
    mapped = StructureNameMatcher({"Heart": "Heart_Eval"})
    result = mapped.match("Heart", ["Heart"])
    assert result.status is MatchStatus.MISSING
    assert result.reason == (
        "the mapping says Heart is 'Heart_Eval', but the structure set has no structure of that name"
    )


def test_missing_gives_a_reason_with_synonyms_and_similar_names(matcher: StructureNameMatcher) -> None:
    result = matcher.match("SpinalCord", ["SpinalCord_PRV", "Heart"])
    assert result.status is MatchStatus.MISSING
    assert result.reason.startswith(
        "no structure named SpinalCord or a known synonym (Cord, SC, Cord_Spinal, SpCord, Sp_Cord, …) "
        "in the structure set"
    )
    assert "similar names present: 'SpinalCord_PRV'" in result.reason
    assert "add a mapping SpinalCord: <ROI name>" in result.reason
    plain = matcher.match("Parotid_L", ["Heart"])
    assert plain.reason == "no structure named Parotid_L or a known synonym (L_Parotid) in the structure set"


def test_body_stands_in_for_external_only_when_external_is_absent(matcher: StructureNameMatcher) -> None:
    alone = matcher.match("External", ["BODY", "Skin"])
    assert alone.roi_name == "BODY"
    assert alone.how == "stand-in: TG-263 structure Body ('BODY') accepted in place of External"
    both = matcher.match("External", ["BODY", "External"])
    assert (both.roi_name, both.shadowed) == ("External", ("BODY",))
    assert matcher.standard_name_of("BODY") == "Body"
    assert "Body would also be accepted" in matcher.match("External", []).reason


def test_standard_names_are_canonicalised(matcher: StructureNameMatcher) -> None:
    assert matcher.canonical_name("spinal cord") == "SpinalCord"
    assert matcher.canonical_name("SpinalCord_PRV5") == "SpinalCord_PRV05"
    assert matcher.canonical_name("Lung_Total") is None
    assert matcher.match("lungs", ["Lungs"]).standard_name == "Lungs"
    brainstem = matcher.match("Brainstem_PRV03", ["PRV03_Brainstem"])  # a template instance not in the file
    assert (brainstem.roi_name, brainstem.how) == ("PRV03_Brainstem", "TG-263 reverse-order name 'PRV03_Brainstem'")


def test_standard_name_of_unknown_is_none(matcher: StructureNameMatcher) -> None:
    for roi in ("PTV_6000", "zOpt_Ring", "", "Lung"):
        assert matcher.standard_name_of(roi) is None


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"'Heart' maps to 3; it must be an exported ROI name"):
        StructureNameMatcher({"Heart": 3})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="roi_names must be a sequence of ROI names, not one string"):
        StructureNameMatcher().match("Heart", "Heart")


# --------------------------------------------------------------------------- malformed synonyms files

_MINIMAL = """\
format_version: 1
source: test
structures:
{structures}
target_names:
  metastasis: [Met]
  primary: [Primary]
  nodal: [Node]
"""


def _write(tmp_path: Path, structures: str, text: str | None = None) -> Path:
    path = tmp_path / "synonyms.yaml"
    path.write_text(text if text is not None else _MINIMAL.format(structures=structures), encoding="utf-8")
    return path


def test_a_valid_custom_file_is_used(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: Heart\n    synonyms: [Herz]")
    custom = StructureNameMatcher(synonyms=load_synonyms(path))
    assert custom.match("Heart", ["Herz"]).how == "synonym 'Herz'"
    assert custom.standard_name_of("Cord") is None


def test_unknown_key_names_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: Heart\n    synonym: [Cor]")
    with pytest.raises(ProtocolError, match=r"synonyms\.yaml: .*structures\[0\] \(Heart\)\.synonym: unknown key"):
        load_synonyms(path)


def test_wrong_type_names_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: Heart\n    synonyms: Cor")
    expected = r"synonyms\.yaml: .*structures\[0\] \(Heart\)\.synonyms: Input should be a valid list"
    with pytest.raises(ProtocolError, match=expected):
        load_synonyms(path)


def test_missing_field_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "", text="format_version: 1\nsource: x\nstructures: []\n")
    with pytest.raises(ProtocolError, match=r"synonyms\.yaml: invalid synonyms file: target_names: Field required"):
        load_synonyms(path)


def test_duplicate_synonym_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: Heart\n    synonyms: [Cor, COR]")
    with pytest.raises(ProtocolError, match=r"structures\[0\] \(Heart\)\.synonyms: 'COR' is listed twice"):
        load_synonyms(path)


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "", text="format_version: 1\nstructures: [\n")
    with pytest.raises(ProtocolError, match=r"synonyms\.yaml: line \d+: not valid YAML \(column \d+\)"):
        load_synonyms(path)


def test_standard_must_be_a_tg263_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: Lung\n    synonyms: [Lung_Total]")
    expected = r"synonyms\.yaml: structures\[0\] \(Lung\)\.standard: 'Lung' is not a TG-263 primary name"
    with pytest.raises(ProtocolError, match=expected):
        StructureNameMatcher(synonyms=load_synonyms(path))


def test_synonym_that_is_another_tg263_structure_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: External\n    synonyms: [Outline, Skin]")
    expected = r"synonyms\.yaml: structures\[0\] \(External\)\.synonyms\[1\]: 'Skin' is the TG-263 structure 'Skin'"
    with pytest.raises(ProtocolError, match=expected):
        StructureNameMatcher(synonyms=load_synonyms(path))
    path = _write(tmp_path, "  - standard: SpinalCord\n    synonyms: [Spinal Canal]")
    with pytest.raises(ProtocolError, match=r"'Spinal Canal' is the TG-263 structure 'SpinalCanal', not 'SpinalCord'"):
        StructureNameMatcher(synonyms=load_synonyms(path))


def test_synonym_of_two_structures_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - standard: Heart\n    synonyms: [Cor]\n  - standard: Pericardium\n    synonyms: [COR]")
    expected = r"synonyms\.yaml: structures\[1\] \(Pericardium\)\.synonyms\[0\]: 'COR' is already a synonym of 'Heart'"
    with pytest.raises(ProtocolError, match=expected):
        StructureNameMatcher(synonyms=load_synonyms(path))


def test_unreadable_tg263_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tg263.csv"
    path.write_text("Target Type,TG263-Primary Name\nAnatomic,Heart\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"tg263\.csv: column\(s\) 'Major Category'.* missing from the header"):
        load_tg263_table(path)


# --------------------------------------------------------------------------- target names


@pytest.mark.parametrize(
    ("name", "kind", "role", "site", "dose_gy", "index"),
    [
        ("GTV_Met_Lung", TargetKind.GTV, TargetRole.METASTASIS, "Lung", None, None),
        ("PTV_Met_Vert", TargetKind.PTV, TargetRole.METASTASIS, "Vert", None, None),
        ("PTVm1", TargetKind.PTV, TargetRole.METASTASIS, None, None, 1),
        ("PTV_Met1", TargetKind.PTV, TargetRole.METASTASIS, None, None, 1),
        ("PTV-Met2_L4_3000", TargetKind.PTV, TargetRole.METASTASIS, "L4", 30.0, 2),
        ("GTVp", TargetKind.GTV, TargetRole.PRIMARY, None, None, None),
        ("CTVp", TargetKind.CTV, TargetRole.PRIMARY, None, None, None),
        ("PTVp1_CT1_7000", TargetKind.PTV, TargetRole.PRIMARY, None, 70.0, 1),
        ("PTV_Primary", TargetKind.PTV, TargetRole.PRIMARY, None, None, None),
        ("PTV_Eso", TargetKind.PTV, TargetRole.PRIMARY, "Esophagus", None, None),
        ("GTVn2", TargetKind.GTV, TargetRole.NODAL, None, None, 2),
        ("CTV_LN", TargetKind.CTV, TargetRole.NODAL, None, None, None),
        ("GTV-T", TargetKind.GTV, TargetRole.PRIMARY, None, None, None),
        # a dose alone does not say what the target treats
        ("PTV_6000", TargetKind.PTV, TargetRole.UNKNOWN, None, 60.0, None),
        ("PTV5040", TargetKind.PTV, TargetRole.UNKNOWN, None, 50.4, None),
        ("PTV60", TargetKind.PTV, TargetRole.UNKNOWN, None, 60.0, None),
        ("PTV_50.4Gy", TargetKind.PTV, TargetRole.UNKNOWN, None, 50.4, None),
        ("PTV1", TargetKind.PTV, TargetRole.UNKNOWN, None, None, 1),
        ("IGTV", TargetKind.ITV, TargetRole.UNKNOWN, None, None, None),
        ("PTV_Liver_20Gyx3", TargetKind.PTV, TargetRole.UNKNOWN, "Liver", 60.0, None),
        ("PTVp_Met", TargetKind.PTV, TargetRole.UNKNOWN, None, None, None),  # markers disagree
        ("PTV504", TargetKind.PTV, TargetRole.UNKNOWN, None, None, None),  # 3 attached digits: not read
        ("PTV_6000_5000", TargetKind.PTV, TargetRole.UNKNOWN, None, None, None),  # two doses: not read
        ("Lungs-PTV", None, TargetRole.UNKNOWN, None, None, None),
        ("zPTV_Opt", None, TargetRole.UNKNOWN, None, None, None),
        ("Heart", None, TargetRole.UNKNOWN, None, None, None),
    ],
)
def test_parse_target_name(
    name: str, kind: TargetKind | None, role: TargetRole, site: str | None, dose_gy: float | None, index: int | None
) -> None:
    parsed = parse_target_name(name)
    assert (parsed.kind, parsed.role, parsed.site, parsed.index) == (kind, role, site, index)
    if dose_gy is None:
        assert parsed.dose_gy is None
    else:
        assert parsed.dose_gy == pytest.approx(dose_gy, abs=1e-9)


def test_parse_target_name_details() -> None:
    assert parse_target_name("PTV_Liver_20Gyx3").n_fractions == 3
    assert parse_target_name("PTV!_5000").type_token == "PTV!"
    assert parse_target_name("PTV_High").dose_level == "High"
    assert parse_target_name("PTV60").notes == ("'60' read as Gy (two digits are not a plausible dose in cGy)",)
    assert parse_target_name("PTVp_Met").notes == ("role markers disagree (metastasis, primary)",)
    cropped = parse_target_name("PTV_6000-05")
    assert (cropped.dose_gy, cropped.derived) == (60.0, False)
    derived = parse_target_name("PTV_6000-Rectum")
    assert derived.derived and derived.site is None


def test_interpreted_type_gives_the_kind_of_a_name_without_one() -> None:
    met = parse_target_name("Met1_L4", "PTV")
    assert (met.kind, met.role, met.index, met.site) == (TargetKind.PTV, TargetRole.METASTASIS, 1, "L4")
    vertebra = parse_target_name("T12_Met", "PTV")  # T12 is a vertebra, not the "T" (primary) marker
    assert (vertebra.role, vertebra.site) == (TargetRole.METASTASIS, "T12")
    assert parse_target_name("Met1_L4", "ORGAN").kind is None
    clash = parse_target_name("PTV_Met1", "ORGAN")
    assert clash.kind is TargetKind.PTV
    assert clash.notes == ("the name says PTV but RT ROI Interpreted Type is ORGAN",)


@pytest.mark.parametrize("name, organ, margin_mm", [
    ("SpinalCord_PRV05", "SpinalCord", 5),
    ("SpinalCord_PRV", "SpinalCord", None),
    ("OpticNrv_PRV03_L", "OpticNrv_L", 3),
    ("Brainstem_PRV", "Brainstem", None),
])
def test_prv_names_are_read(name: str, organ: str, margin_mm: int | None) -> None:
    prv = prv_of(name)
    assert prv is not None and (prv.organ, prv.margin_mm) == (organ, margin_mm)


@pytest.mark.parametrize("name", ["SpinalCord", "Lungs", "SpinalCanal", "PRV_SpinalCord"])
def test_names_that_are_not_prvs(name: str) -> None:
    assert prv_of(name) is None  # a standard name only (the reverse-order name is made one first)


def test_other_prvs_of_the_same_organ_are_found_by_any_name(matcher: StructureNameMatcher) -> None:
    rois = ["SpinalCord", "SpinalCord_PRV05", "Cord_PRV5", "SpinalCord_PRV03", "PRV10_SpinalCord",
            "Cord_PRV", "Cord+3mm", "SpinalCanal_PRV03", "Brainstem_PRV03", "Lungs"]
    found = [(roi, prv.name) for roi, prv in matcher.other_prvs("SpinalCord_PRV05", rois)]
    assert found == [("SpinalCord_PRV03", "SpinalCord_PRV03"), ("PRV10_SpinalCord", "SpinalCord_PRV10"),
                     ("Cord_PRV", "SpinalCord_PRV"), ("Cord+3mm", "SpinalCord_PRV03")]
    assert matcher.other_prvs("SpinalCord", rois) == []


# PRV spellings that are in no list: read from the organ's name or synonym and a PRV word or a
# margin (constraints/structure_synonyms.yaml, prv_words). The margin a name states, in mm: a
# number right after the PRV word is mm (TG-263 "SpinalCord_PRVxx"), "0.7cm" = 7 mm.
@pytest.mark.parametrize("name, organ, margin_mm", [
    ("SC_PRV07", "SpinalCord", 7),
    ("PRV07_Cord", "SpinalCord", 7),
    ("SCPRV07", "SpinalCord", 7),          # PRV glued to a synonym
    ("PRV_SC", "SpinalCord", None),
    ("Cord 5mm PRV", "SpinalCord", 5),
    ("SpinalCord_PRV_5_mm", "SpinalCord", 5),
    ("Cord+0.7cm", "SpinalCord", 7),
    ("Cord+7", "SpinalCord", None),        # "+7" without a unit states no margin
    ("Cord_7mm", "SpinalCord", 7),
    ("Cord_exp", "SpinalCord", None),
    ("Esophagus_PRV05", "Esophagus", 5),
    ("Lung_L_PRV5", "Lung_L", 5),
])
def test_unlisted_prv_spellings_are_read(matcher: StructureNameMatcher, name: str, organ: str,
                                         margin_mm: int | None) -> None:
    read = matcher.expansion_of(name)
    assert read is not None and (read.organ, read.margin_mm) == (organ, margin_mm)


@pytest.mark.parametrize("name", ["Lung L+R", "Heart+Pericardium", "Lungs-PTV", "Expander", "SpinalCord", "z_cord",
                                  "Cord_expiration", "PRV", "Lung_1"])
def test_names_not_read_as_expansions(matcher: StructureNameMatcher, name: str) -> None:
    assert matcher.expansion_of(name) is None


def test_an_unlisted_prv_of_the_listed_margin_is_that_prv(matcher: StructureNameMatcher) -> None:
    hit = matcher.match("SpinalCord_PRV05", ["SpinalCord", "SpinalCord_PRV5mm", "SC_PRV07"])
    assert (hit.status, hit.roi_name) == (MatchStatus.MATCHED, "SpinalCord_PRV5mm")
    assert "read as SpinalCord with a 5 mm margin" in hit.how
    # two ROIs that both are the 5 mm PRV: never a guess
    two = matcher.match("SpinalCord_PRV05", ["Cord+5mm", "SpinalCord_PRV_5mm"])
    assert two.status is MatchStatus.AMBIGUOUS
    assert matcher.match("SpinalCord_PRV05", ["SpinalCord", "SC_PRV07"]).status is MatchStatus.MISSING


def test_other_prvs_include_unlisted_spellings(matcher: StructureNameMatcher) -> None:
    rois = ["SpinalCord", "SC_PRV07", "Cord+7mm", "PRV_SC", "SpinalCord_05", "Cord_PRV_old", "SC_old", "Heart_PRV"]
    found = [(roi, prv.margin_mm) for roi, prv in matcher.other_prvs("SpinalCord_PRV05", rois)]
    # a bare number after the organ (SpinalCord_05) may be a margin: read, margin not stated
    assert found == [("SC_PRV07", 7), ("Cord+7mm", 7), ("PRV_SC", None), ("SpinalCord_05", None),
                     ("Cord_PRV_old", None)]


@pytest.mark.parametrize("name, interpreted_type", [
    ("PTV_Ring", "ORGAN"), ("PTV_ring2cm", ""), ("PTVp_Shell", "PTV"), ("PTV_6000", "CONTROL"), ("GTV_Met1", "AVOIDANCE"),
])
def test_planning_helpers_are_not_targets(name: str, interpreted_type: str) -> None:
    t = parse_target_name(name, interpreted_type)
    assert t.kind is None and "planning helper" in t.notes[0]


def test_a_site_that_only_starts_like_a_helper_word_is_a_target() -> None:
    assert parse_target_name("PTV_Ringfinger", "PTV").kind is TargetKind.PTV  # whole word, or word + number


def test_lungs_total_is_both_lungs(matcher: StructureNameMatcher) -> None:
    assert matcher.standard_name_of("Lungs_total") == "Lungs"


@settings(deadline=None)  # the first example builds the name index (once per process)
@given(st.text(alphabet="CordSPRVexpmc_ .-+0123456789", max_size=24))
def test_reading_any_name_as_an_expansion_never_fails(name: str) -> None:
    # ROI names are untrusted: any text is read or not, never an exception; a margin read is ≥ 0
    read = StructureNameMatcher().expansion_of(name)
    assert read is None or (read.mentioned and (read.margin_mm is None or read.margin_mm >= 0))
