"""Where an export's case file is, its text, and the plans its ``courses:`` list names —
without validating it (:mod:`plancheck.model.case` does that, with pydantic).

The case file of an export (:func:`find_case`) is ``case.yaml`` (or ``.yml``/``.json``) in
the export folder; for a ``.zip`` export, the one inside the archive (the shallowest if
several), else the one next to the archive. Inside an archive it is named
``ARCHIVE.zip!member/path``.

This module imports no validation library, so that ``plancheck check`` can start reading
the DICOM files (which plans are courses depends on the case file) in a forked process
while the case file is validated (:mod:`plancheck.analysis.read_ahead`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from plancheck.datafile import load_data_text, read_data_text
from plancheck.errors import PlancheckError, ProtocolError

__all__ = ["CASE_FILE_NAMES", "ARCHIVE_SEPARATOR", "find_case_file", "find_case", "find_treatment_case",
           "read_case_text", "declared_plans"]

CASE_FILE_NAMES = ("case.yaml", "case.yml", "case.json")
"""The names a case file has, in order of preference."""

ARCHIVE_SEPARATOR = "!"
"""Separates an archive's path from a member's name in a case-file source."""


def find_case_file(export_path: str | Path) -> Path | None:
    """``case.yaml`` (or .yml/.json) in the export directory (or next to a file/zip), if present."""
    p = Path(export_path)
    folder = p if p.is_dir() else p.parent
    for name in CASE_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _case_in_archive(archive: Path) -> str | None:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if PurePosixPath(n).name in CASE_FILE_NAMES
                     and not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(n).parts)]
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return None
    if not names:
        return None
    names.sort(key=lambda n: (len(PurePosixPath(n).parts), CASE_FILE_NAMES.index(PurePosixPath(n).name), n))
    return f"{archive}{ARCHIVE_SEPARATOR}{names[0]}"


def find_case(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> str | None:
    """The case file of an export, if there is one (see the module docstring).

    Parameters
    ----------
    paths
        The export as given to :func:`plancheck.dicom.read_export`: its first item decides.

    Returns
    -------
    str or None
        A file path, ``ARCHIVE.zip!member``, or None.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        return None
    first = Path(items[0])
    if first.is_file() and first.suffix.lower() == ".zip":
        inside = _case_in_archive(first)
        if inside:
            return inside
    found = find_case_file(first)
    return str(found) if found else None


def find_treatment_case(plan_paths: Sequence[Path], all_paths: Sequence[Path]) -> list[str]:
    """The case files of a treatment found among files (``plancheck batch``, ``plancheck
    watch``): for each plan, the nearest case file in its folder or a folder above it, up to
    the export folder (the deepest folder holding every file of the treatment, ``all_paths``),
    as ``plancheck check EXPORT`` finds ``EXPORT/case.yaml`` when the plans lie in a subfolder
    (``EXPORT/RTPLAN/``); a plan inside a ``.zip`` has the archive's case file (:func:`find_case`).

    Returns
    -------
    list of str
        The distinct case files found, in plan order (several: the caller reports the conflict).
    """
    folders = [p.parent for p in all_paths if p.suffix.lower() != ".zip"]
    top = Path(os.path.commonpath([str(f) for f in folders])) if folders else None
    found: list[str] = []
    for path in plan_paths:
        case = None
        if path.suffix.lower() == ".zip" or top is None:
            case = find_case(path if path.suffix.lower() == ".zip" else path.parent)
        else:
            folder = path.parent
            while case is None:
                hit = find_case_file(folder)
                case = str(hit) if hit else None
                if folder == top or folder == folder.parent or top not in folder.parents:
                    break
                folder = folder.parent
        if case and case not in found:
            found.append(case)
    return found


def read_case_text(source: str | os.PathLike[str]) -> tuple[str, str]:
    """The text of a case file (a path, or ``ARCHIVE.zip!member`` for one inside an archive)
    and how messages name it (``source``; a path as :class:`pathlib.Path` writes it).

    Raises
    ------
    ProtocolError
        The file cannot be read, is too large, or is not UTF-8 (naming ``source``).
    """
    text = str(source)
    archive, sep, member = text.partition(ARCHIVE_SEPARATOR)
    if sep and Path(archive).suffix.lower() == ".zip" and Path(archive).is_file():
        try:
            with zipfile.ZipFile(archive) as zf:
                data = zf.read(member)
        except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
            raise ProtocolError(f"cannot read case file: {exc}", text) from exc
        try:
            return data.decode("utf-8"), text
        except UnicodeDecodeError as exc:
            raise ProtocolError("case file is not UTF-8 text", text) from exc
    path = Path(text)
    return read_data_text(path, what="case file"), str(path)


def declared_plans(source: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The ``plan`` of each entry of the case file's ``courses:`` list, read without validating
    the file: None when there is no such list, or when the file does not read as a case file
    (its validation, :func:`plancheck.model.case.case_from_text`, then says why). A guess that
    the caller checks against the validated case before relying on it."""
    try:
        data = load_data_text(*read_case_text(source), dates_as_text=True)
    except PlancheckError:
        return None
    courses = data.get("courses") if isinstance(data, dict) else None
    if not isinstance(courses, list) or not courses:
        return None
    plans = [c.get("plan") if isinstance(c, dict) else None for c in courses]
    if not all(isinstance(p, str) and p for p in plans):
        return None
    return tuple(plans)  # type: ignore[arg-type]
