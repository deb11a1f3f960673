"""The examples in the documentation load: the protocol files of README.md and the user guide,
the case file of docs/case-file.md, and the images the user guide shows exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plancheck.model.case import load_case
from plancheck.protocol.loader import load_protocol

REPO = Path(__file__).resolve().parents[1]


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/user-guide.md"])
def test_the_institutional_protocol_examples_load(doc: str, tmp_path: Path) -> None:
    blocks = [b for b in _yaml_blocks(REPO / doc) if "schema_version:" in b]
    assert blocks, f"{doc} has no protocol example"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(block, encoding="utf-8")
        protocol = load_protocol(str(path))
        assert protocol.chain[-2:] == ("esophagus-oligomet-2025", "clinic-x-esophagus")
        rule = protocol.rule("OAR-LUNG-V20")
        assert rule.changed_by == ("clinic-x-esophagus",)  # the override is applied and attributed
        assert protocol.rule("X-HEART-V25").rule.provenance.confidence == "institutional"
        assert "OAR-KID-V20" not in {r.rule.id for r in protocol.rules}


def test_the_case_file_example_loads_and_matches_the_sample(tmp_path: Path) -> None:
    (block,) = _yaml_blocks(REPO / "docs" / "case-file.md")
    path = tmp_path / "case.yaml"
    path.write_text(block, encoding="utf-8")
    example, sample = load_case(path), load_case(REPO / "sample_dicom" / "case.yaml")
    assert example.model_copy(update={"courses": None}) == sample  # the sample's context, plus courses
    assert [(c.plan, c.technique) for c in example.courses] == [
        ("C1_Eso", "conventional"), ("C2_LungMet", "sbrt"), ("C3_VertMet", "sbrt")]


def test_the_images_of_the_user_guide_exist() -> None:
    guide = (REPO / "docs" / "user-guide.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", guide)
    assert images
    for image in images:
        data = (REPO / "docs" / image).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), image
