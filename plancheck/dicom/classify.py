"""Find the files of an export and sort them by SOP class, reading headers only.

Input is a directory (searched recursively), a ``.zip`` file (members read in memory),
a single file, or a sequence of any of these. Every file is read with
``stop_before_pixels=True`` first; CT/MR pixels are never read.

References
----------
DICOM PS3.4 Annex B.5 (Standard SOP Classes), PS3.10 §7 (DICOM file format).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from plancheck.dicom.read_common import (
    MAX_FILE_BYTES, SourceFile, is_damaged_reason, kind_of, looks_like_dicom, not_dicom_reason, read_header,
    sop_class_name, sop_class_of,
)
from plancheck.errors import DicomReadError
from plancheck.model import SkippedFile

__all__ = ["ClassifiedFile", "Classified", "gather_sources", "classify"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifiedFile:
    """A DICOM file of a kind plancheck uses, with its header (no pixel data)."""

    source: SourceFile
    kind: str  # RTPLAN, RTSTRUCT, RTDOSE, IMAGE
    header: Dataset

    @property
    def label(self) -> str:
        return self.source.label


@dataclass
class Classified:
    """The result of classification: usable files by kind, and skipped files."""

    files: list[ClassifiedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    not_dicom: int = 0
    unreadable: int = 0

    def of_kind(self, kind: str) -> list[ClassifiedFile]:
        return [f for f in self.files if f.kind == kind]


def _zip_members(archive: Path) -> tuple[list[SourceFile], list[SkippedFile]]:
    """The members of a zip archive worth reading, and those passed over with the reason.

    Each member's first bytes are read first (:func:`looks_like_dicom`): a member that is
    not DICOM is never decompressed further, and one larger than :data:`MAX_FILE_BYTES`
    is not read at all.
    """
    members: list[SourceFile] = []
    skipped: list[SkippedFile] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                label = f"{archive}!{info.filename}"
                if info.file_size > MAX_FILE_BYTES:
                    skipped.append(SkippedFile(label, f"{info.file_size / 2**20:.0f} MB, larger than the "
                                                      f"{MAX_FILE_BYTES / 2**20:.0f} MB plancheck reads for one file"))
                    continue
                with zf.open(info) as fh:
                    head = fh.read(256)
                    if not looks_like_dicom(head):
                        skipped.append(SkippedFile(label, not_dicom_reason(SourceFile(label), head)))
                        continue
                    data = head + fh.read()
                members.append(SourceFile(label=label, data=data))
            return members, skipped
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, EOFError, ValueError,
            NotImplementedError) as exc:
        raise DicomReadError(f"is not a readable zip archive: {exc}", archive) from exc


def gather_sources(paths: str | Path | Sequence[str | Path]) -> tuple[list[SourceFile], list[SkippedFile]]:
    """Expand the input into the files to read.

    Parameters
    ----------
    paths
        A directory (recursive), a ``.zip`` archive, a file, or a sequence of them.

    Returns
    -------
    sources, skipped
        Files to read (sorted per input), and files set aside without reading (zip
        archives found inside a directory; archive members that are not DICOM or too large).

    Raises
    ------
    DicomReadError
        A path that does not exist, an unreadable zip archive, or no input at all.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise DicomReadError("no input given: pass a directory, a .zip file or DICOM files")
    sources: list[SourceFile] = []
    skipped: list[SkippedFile] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() == ".zip":
                    skipped.append(SkippedFile(str(file), "zip archive inside a directory is not opened; "
                                                          "pass it directly"))
                else:
                    sources.append(SourceFile(label=str(file), path=file))
        elif path.is_file():
            if path.suffix.lower() == ".zip":
                members, passed_over = _zip_members(path)
                sources.extend(members)
                skipped.extend(passed_over)
            else:
                sources.append(SourceFile(label=str(path), path=path, explicit=True))
        else:
            raise DicomReadError("no such file or directory", path)
    return sources, skipped


def classify(sources: Sequence[SourceFile]) -> Classified:
    """Read each file's header and sort it by SOP Class UID.

    Non-DICOM files found in a directory or archive (a cheap test of their first bytes,
    never a parse), files whose header cannot be parsed (junk that starts like DICOM), and
    DICOM files of other SOP classes (RT Image, RT Treatment Record, ...) are listed as
    skipped with the reason.

    Raises
    ------
    DicomReadError
        A file the caller named explicitly is not DICOM or cannot be parsed.
    """
    result = Classified()
    for source in sources:
        try:
            ds = read_header(source)
        except InvalidDicomError as exc:
            if source.explicit:
                raise DicomReadError(not_dicom_reason(source), source.label) from exc
            reason = not_dicom_reason(source)
            result.skipped.append(SkippedFile(source.label, reason))
            if is_damaged_reason(reason):
                result.unreadable += 1
            else:
                result.not_dicom += 1
            continue
        except DicomReadError as exc:
            if source.explicit:
                raise
            result.skipped.append(SkippedFile(source.label, exc.message))
            result.unreadable += 1
            continue
        sop_class = sop_class_of(ds)
        kind = kind_of(sop_class)
        if kind is None:
            result.skipped.append(SkippedFile(source.label, f"SOP class {sop_class_name(sop_class)} "
                                                            "is not used by plancheck"))
            continue
        result.files.append(ClassifiedFile(source=source, kind=kind, header=ds))
    logger.debug("classified %d files: %s", len(result.files),
                 {k: len(result.of_kind(k)) for k in ("RTPLAN", "RTSTRUCT", "RTDOSE", "IMAGE")})
    return result
