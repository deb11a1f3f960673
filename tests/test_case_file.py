"""The case file: validation errors name the file, the line and the field; the sample's case file loads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from plancheck.errors import ProtocolError
from plancheck.model.case import Case, find_case_file, load_case

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"


def test_sample_case_file_matches_the_synthetic_case():
    case = load_case(SAMPLE / "case.yaml")
    assert case.histology == "squamous_cell_carcinoma"
    assert case.presentation == "synchronous" and case.omd_type == "de_novo" and case.intent == "curative"
    assert [(m.organ, m.target) for m in case.metastases] == [("lung", "PTV_Met_Lung"), ("bone", "PTV_Met_Vert")]
    assert case.systemic_therapy.cycles == 4 and case.systemic_therapy.response_at_restaging == "PR"
    assert case.concurrent_chemotherapy is False and case.concurrent_immunotherapy is False
    # restaging after systemic therapy and before the plans (RT Plan Date 2025-06-02)
    assert case.systemic_therapy.end_date < case.restaging.date < dt.date(2025, 6, 2)
    assert case.restaging.modality == "FDG-PET/CT" and case.restaging.progression is False
    assert find_case_file(SAMPLE) == SAMPLE / "case.yaml"


def test_unknown_key_names_file_and_field(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text("histology: squamous_cell_carcinoma\nmetastases:\n  - organ: lung\n    tagret: PTV1\n")
    with pytest.raises(ProtocolError, match=r"case\.yaml: line 4: field metastases\.0\.tagret: Extra inputs are not permitted"):
        load_case(path)


def test_misspelt_top_level_key(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text("histolgy: adenocarcinoma\n")
    with pytest.raises(ProtocolError, match=r"case\.yaml: line 1: field histolgy: Extra inputs"):
        load_case(path)


def test_bad_date_names_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("restaging:\n  modality: FDG-PET/CT\n  date: 2025-13-40\n")
    with pytest.raises(ProtocolError, match=r"c\.yaml: line 3: field restaging\.date: Input should be a valid date"):
        load_case(path)


def test_bad_histology_value(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text("histology: scc\n")
    with pytest.raises(ProtocolError, match=r"field histology: Input should be 'squamous_cell_carcinoma', 'adenocarcinoma' or 'other'"):
        load_case(path)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ProtocolError, match="a case file must be a mapping"):
        load_case(path)
    path.write_text("histology: [unclosed\n")
    with pytest.raises(ProtocolError, match=r"case\.yaml: line 2: not valid YAML \(column 1\): while parsing a flow sequence"):
        load_case(path)


def test_empty_case_file_is_an_empty_case(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text("")
    assert load_case(path) == Case()
