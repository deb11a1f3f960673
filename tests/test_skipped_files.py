"""Files of the input that are not used: named when they matter, and a damaged file is named
when the object it should have held turns out to be missing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from plancheck.dicom import read_export
from plancheck.dicom.link import SKIPPED_FILES_SHOWN, _worth_naming, skipped_files_note
from plancheck.errors import LinkError
from plancheck.model import SkippedFile
from test_read import RT_IMAGE, _base, save, write_export


def test_empty_dose_file_is_named_when_the_plan_has_no_dose(tmp_path: Path) -> None:
    # The export's dose file was cut to 0 bytes in the copy: the plan then has no dose, and
    # the message must name the empty file, not only the plan.
    paths = write_export(tmp_path)
    paths["rtdose"].write_bytes(b"")
    with pytest.raises(LinkError, match=r"no usable dose.*could not be read.*RD\.dcm: empty file \(0 bytes\)"):
        read_export(tmp_path)


def test_short_dicom_named_file_is_called_cut_short(tmp_path: Path) -> None:
    # 100 bytes are less than the 128-byte preamble + 'DICM' of a Part 10 file (132 bytes):
    # a file named .dcm that short was cut short, not "not DICOM".
    paths = write_export(tmp_path)
    paths["rtdose"].write_bytes(paths["rtdose"].read_bytes()[:100])
    with pytest.raises(LinkError, match=r"RD\.dcm: only 100 bytes, shorter than a DICOM file header"):
        read_export(tmp_path)


def test_short_file_in_zip_is_called_cut_short(tmp_path: Path) -> None:
    paths = write_export(tmp_path / "x")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for key in ("rtss", "rtplan"):
            zf.write(paths[key], paths[key].name)
        zf.writestr("RD.dcm", b"")
    with pytest.raises(LinkError, match=r"export\.zip!RD\.dcm: empty file \(0 bytes\)"):
        read_export(archive)


def test_skipped_dicom_is_a_report_warning_by_file_name_only(tmp_path: Path) -> None:
    # A folder named after the patient must not reach the report: files by name only.
    folder = tmp_path / "DOE_JOHN"
    write_export(folder)
    save(_base(RT_IMAGE, "RTIMAGE"), folder / "RI.dcm")
    (folder / "readme.txt").write_text("export notes")
    export = read_export(folder)
    (note,) = [w for w in export.warnings if "not used" in w]
    assert note.startswith("2 file(s) of the input were not used — RI.dcm: SOP class RT Image Storage")
    assert note.endswith("; 1 file(s) that are not DICOM")
    assert "DOE_JOHN" not in note


def test_only_non_dicom_files_skipped_gives_no_warning(tmp_path: Path) -> None:
    write_export(tmp_path)
    (tmp_path / "case.yaml").write_text("courses: {}\n")
    export = read_export(tmp_path)
    assert not any("not used" in w for w in export.warnings)
    assert [Path(s.path).name for s in export.skipped] == ["case.yaml"]


def test_note_names_at_most_the_shown_number_and_counts_the_rest() -> None:
    n = SKIPPED_FILES_SHOWN + 3
    skipped = [SkippedFile(f"/in/RI{k}.dcm", "SOP class RT Image Storage is not used by plancheck") for k in range(n)]
    skipped.append(SkippedFile("/in/a.zip!sub/notes.txt", "not a DICOM file (no 'DICM' prefix)"))
    skipped.append(SkippedFile("/in/RD_C1.dcm", "dose of plan C1, which is not a course of this check (not "
                                                "selected by --plan)"))
    note = skipped_files_note(skipped)
    assert note.startswith(f"{n + 2} file(s) of the input were not used — RI0.dcm: ")
    assert f"RI{SKIPPED_FILES_SHOWN - 1}.dcm" in note and f"RI{SKIPPED_FILES_SHOWN}.dcm" not in note
    assert note.endswith("; 3 more; 1 dose file(s) of the plans left out; 1 file(s) that are not DICOM")
    assert "/in/" not in note


def test_doses_of_plans_left_out_give_no_note_of_their_own() -> None:
    # --plan leaves a plan out: the plan's own warning says so; its dose file is not named again
    assert not _worth_naming(SkippedFile("RD.dcm", "dose of plan C1, which is not a course of this check (x)"))
    assert _worth_naming(SkippedFile("RD.dcm", "superseded by the PLAN dose RD2.dcm"))
    assert not _worth_naming(SkippedFile("a.txt", "not a DICOM file (no 'DICM' prefix)"))
