"""Shared helpers of the DICOM readers: opening files, SOP classes, required attributes.

Every failure here becomes a :class:`plancheck.errors.InputError` subclass whose
message names the file, the tag, its keyword, the value found and what is
required, e.g. ``(3004,000E) 'Dose Grid Scaling' is missing; it is required ...``.

References
----------
DICOM PS3.5 §7.1 (data element encoding), §7.5 (nesting of data sets),
PS3.10 §7.1 (DICOM File Meta Information), PS3.4 Annex B.5 (SOP Class UIDs).
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.datadict import dictionary_description, dictionary_has_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RTDoseStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    RTStructureSetStorage,
)

from plancheck.errors import DicomConformanceError, DicomReadError, InputError

__all__ = [
    "IMAGE_SOP_CLASSES", "SourceFile",
    "kind_of", "sop_class_name", "tag_text", "require", "optional_str", "optional_float",
    "optional_int", "as_int", "as_float", "float_vector", "check_not_truncated", "read_header",
    "read_full", "read_single", "not_dicom_reason", "is_damaged_reason", "same_object", "looks_like_dicom",
    "sop_class_of", "kind_of_dataset",
    "MAX_FILE_BYTES",
]

logger = logging.getLogger(__name__)

#: Image storage SOP classes plancheck records (identity only; pixels are never read).
IMAGE_SOP_CLASSES: dict[str, str] = {
    CTImageStorage: "CT",
    EnhancedCTImageStorage: "CT",
    MRImageStorage: "MR",
    EnhancedMRImageStorage: "MR",
    PositronEmissionTomographyImageStorage: "PT",
}
_KINDS = {RTPlanStorage: "RTPLAN", RTIonPlanStorage: "RTPLAN", RTStructureSetStorage: "RTSTRUCT", RTDoseStorage: "RTDOSE"}
#: The root of the UIDs the DICOM standard defines (PS3.5 §9.2, PS3.6 Annex A).
_DICOM_UID_ROOT = "1.2.840.10008."
#: Deflated Image Frame Compression (PS3.6 2024): not named by pydicom 3.0.
_DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"
#: Largest file (or archive member) plancheck reads into memory: no RT object comes near it
#: (a 64-million-voxel dose grid is 256 MB).
MAX_FILE_BYTES = 1 << 30
_KIND_NAMES = {"RTPLAN": "an RT Plan", "RTSTRUCT": "an RT Structure Set", "RTDOSE": "an RT Dose",
               "IMAGE": "an image"}


def kind_of(sop_class_uid: str) -> str | None:
    """``RTPLAN``, ``RTSTRUCT``, ``RTDOSE``, ``IMAGE`` or None for a SOP Class UID."""
    if sop_class_uid in _KINDS:
        return _KINDS[sop_class_uid]
    if sop_class_uid in IMAGE_SOP_CLASSES:
        return "IMAGE"
    return None


def sop_class_name(sop_class_uid: str) -> str:
    """A readable name of a SOP class, e.g. ``'RT Image Storage (1.2.840...481.1)'``."""
    name = UID(sop_class_uid).name if sop_class_uid else ""
    if name and name != sop_class_uid:
        return f"{name} ({sop_class_uid})"
    return sop_class_uid or "(no SOP Class UID)"


@dataclass(frozen=True)
class SourceFile:
    """A file to read: on disk (``path``) or in memory (``data``, e.g. a zip member).

    Attributes
    ----------
    label
        How the file is named in messages (the path, or ``archive.zip!member``).
    path
        The file on disk, or None for an in-memory member.
    data
        The member's bytes, or None for a file on disk.
    explicit
        True when the caller named the file itself (then a non-DICOM file is an
        error, not a skipped file).
    """

    label: str
    path: Path | None = None
    data: bytes | None = None
    explicit: bool = False

    def read_bytes(self) -> bytes:
        """The whole file (at most :data:`MAX_FILE_BYTES`).

        Raises
        ------
        DicomReadError
            The file cannot be read, or is larger than :data:`MAX_FILE_BYTES`.
        """
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            size = self.path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise DicomReadError(f"is {size / 2**20:.0f} MB, larger than the {MAX_FILE_BYTES / 2**20:.0f} MB "
                                     "plancheck reads for one RT object", self.label)
            return self.path.read_bytes()
        except OSError as exc:
            raise DicomReadError(f"cannot be read: {exc.strerror or exc}", self.label) from exc

    def head(self, size: int = 256) -> bytes:
        """The first ``size`` bytes (for :func:`looks_like_dicom`); b"" when unreadable."""
        if self.data is not None:
            return self.data[:size]
        assert self.path is not None
        try:
            with self.path.open("rb") as fh:
                return fh.read(size)
        except OSError:
            return b""

    def open(self) -> Any:
        """A binary file object for :func:`pydicom.dcmread`."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path


def tag_text(keyword: str) -> str:
    """``"(3004,000E) 'Dose Grid Scaling'"`` for a keyword, as pydicom words its messages."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return f"'{keyword}'"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{dictionary_description(tag)}'"


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return value.strip() == "" if isinstance(value, str) else len(value) == 0
    try:
        return len(value) == 0
    except TypeError:
        return False


def require(ds: Dataset, keyword: str, label: str, *, where: str = "", why: str = "") -> Any:
    """The value of a required (Type 1) attribute, or a clear conformance error.

    Parameters
    ----------
    ds
        The dataset (or sequence item) holding the attribute.
    keyword
        DICOM keyword, e.g. ``"DoseGridScaling"``.
    label
        The file, named in the message.
    where
        Where in the file, e.g. ``" in item 2 of (300A,00B0) 'Beam Sequence'"``.
    why
        What the attribute is needed for, appended to the message.

    Raises
    ------
    DicomConformanceError
        When the attribute is absent or empty.
    """
    try:
        value = ds.get(keyword)
    except Exception as exc:  # a value pydicom cannot decode
        raise DicomConformanceError(
            f"{tag_text(keyword)}{where} cannot be decoded ({exc}); it is required", label
        ) from exc
    if _is_empty(value):
        state = "is missing" if keyword not in ds else "is empty"
        reason = f" {why}" if why else ""
        raise DicomConformanceError(f"{tag_text(keyword)}{where} {state}; it is required{reason}", label)
    return value


def optional_str(ds: Dataset, keyword: str, default: str = "") -> str:
    """A text attribute as ``str`` (stripped), or ``default`` when absent or empty."""
    try:
        value = ds.get(keyword)
    except Exception:  # undecodable optional text is treated as absent
        return default
    if _is_empty(value):
        return default
    return str(value).strip()


def as_int(value: Any, keyword: str, label: str, where: str = "") -> int:
    """``int(value)``, or a conformance error naming the tag and the value found."""
    try:
        number = float(value)
        if not number.is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError) as exc:
        raise DicomConformanceError(
            f"{tag_text(keyword)}{where} value of {str(value)!r} is invalid, it must be an integer", label
        ) from exc


def as_float(value: Any, keyword: str, label: str, where: str = "") -> float:
    """``float(value)`` (finite), or a conformance error naming the tag and the value found."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise DicomConformanceError(
            f"{tag_text(keyword)}{where} value of {str(value)!r} is invalid, it must be a number", label
        ) from exc
    if not np.isfinite(number):
        raise DicomConformanceError(
            f"{tag_text(keyword)}{where} value of {str(value)!r} is invalid, it must be a finite number", label
        )
    return number


def optional_float(ds: Dataset, keyword: str, label: str, where: str = "") -> float | None:
    """A numeric attribute as float, None when absent/empty; invalid values are errors."""
    value = ds.get(keyword)
    if _is_empty(value):
        return None
    return as_float(value, keyword, label, where)


def optional_int(ds: Dataset, keyword: str, label: str, where: str = "") -> int | None:
    """An integer attribute, None when absent/empty; invalid values are errors."""
    value = ds.get(keyword)
    if _is_empty(value):
        return None
    return as_int(value, keyword, label, where)


def float_vector(ds: Dataset, keyword: str, label: str, length: int | None = None, *,
                 where: str = "", why: str = "") -> np.ndarray:
    """A required multi-valued numeric attribute as a float array, length-checked."""
    value = require(ds, keyword, label, where=where, why=why)
    items = list(value) if not isinstance(value, (str, bytes, int, float)) else [value]
    try:
        array = np.array([float(v) for v in items], dtype=float)
    except (TypeError, ValueError) as exc:
        raise DicomConformanceError(
            f"{tag_text(keyword)}{where} value of {str(value)!r} is invalid, it must be numbers", label
        ) from exc
    if length is not None and array.size != length:
        raise DicomConformanceError(
            f"{tag_text(keyword)}{where} has {array.size} values, it must have {length}", label
        )
    if not np.all(np.isfinite(array)):
        raise DicomConformanceError(f"{tag_text(keyword)}{where} holds a non-finite value", label)
    return array


# ----------------------------------------------------------------------------------------------
# Truncation check.

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT",
                       b"SV", b"UV"})
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF


class _Truncated(Exception):
    """Raised by the walker: ``(offset, tag or None, declared length, bytes remaining)``."""


def _walk(data: bytes, pos: int, end: int, explicit: bool, little: bool, until_delimiter: bool) -> int:
    """Walk data elements from ``pos``; return the position after the delimiter (or ``end``)."""
    order = "<" if little else ">"
    tag_fmt, u16, u32 = struct.Struct(order + "HH"), struct.Struct(order + "H"), struct.Struct(order + "I")
    while pos < end:
        if pos + 8 > end:
            raise _Truncated(pos, None, 8, end - pos)
        group, element = tag_fmt.unpack_from(data, pos)
        tag = (group << 16) | element
        if tag in (_ITEM_END, _SEQ_END):
            if until_delimiter:
                return pos + 8
            raise _Truncated(pos, None, 0, end - pos)
        if explicit and group != 0xFFFE:
            vr = data[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise _Truncated(pos, tag, 12, end - pos)
                (length,) = u32.unpack_from(data, pos + 8)
                pos += 12
            else:
                (length,) = u16.unpack_from(data, pos + 6)
                pos += 8
        else:
            (length,) = u32.unpack_from(data, pos + 4)
            pos += 8
        if length == _UNDEFINED:
            pos = _walk(data, pos, end, explicit, little, until_delimiter=True)
        else:
            if pos + length > end:
                raise _Truncated(pos, tag, length, end - pos)
            pos += length
    if until_delimiter:
        raise _Truncated(pos, None, 8, 0)
    return pos


def check_not_truncated(data: bytes, ds: Dataset, label: str) -> None:
    """Raise :class:`DicomReadError` if the element structure of a Part 10 file runs past its end.

    pydicom reads a truncated file silently (the last value comes back short), so the
    element structure is walked here: every defined length must fit in the file and every
    undefined-length value must reach its delimiter (PS3.5 §7.1, §7.5). Deflated transfer
    syntaxes are not walked (zlib checks the deflate stream).
    """
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if data[128:132] != b"DICM" or syntax in (DeflatedExplicitVRLittleEndian, _DEFLATED_IMAGE_FRAME_COMPRESSION):
        return
    pos = 132
    try:
        # File meta group: always explicit VR little endian.
        while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
            pos = _meta_step(data, pos)
        explicit = syntax != ImplicitVRLittleEndian
        little = syntax != ExplicitVRBigEndian
        _walk(data, pos, len(data), explicit, little, until_delimiter=False)
    except _Truncated as exc:
        offset, tag, declared, remaining = exc.args
        if tag is not None and tag != _ITEM:
            name = dictionary_description(tag) if dictionary_has_tag(tag) else "private or unknown element"
            what = (f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{name}' declares {declared} bytes "
                    f"but only {remaining} remain")
        else:
            what = f"the data stops at byte {offset} inside a sequence or element header"
        raise DicomReadError(f"the file is truncated ({len(data)} bytes): {what}; export it again",
                             label) from None
    pixel_tag = b"\xe0\x7f\x10\x00" if little else b"\x7f\xe0\x00\x10"
    if kind_of(sop_class_of(ds)) == "RTDOSE" and "Rows" in ds and pixel_tag not in data:
        # cut exactly between two elements: what is left parses, but an RT Dose grid (it has Rows;
        # a DVH-only RT Dose has none) without its (7FE0,0010) Pixel Data has lost its end
        raise DicomReadError(f"the file is truncated ({len(data)} bytes): it ends before its (7FE0,0010) "
                             "'Pixel Data'; export it again", label)


def _meta_step(data: bytes, pos: int) -> int:
    vr = data[pos + 4:pos + 6]
    if vr in _LONG_VRS:
        (length,) = struct.unpack_from("<I", data, pos + 8)
        pos += 12
    else:
        (length,) = struct.unpack_from("<H", data, pos + 6)
        pos += 8
    if pos + length > len(data):
        raise _Truncated(pos, None, length, len(data) - pos)
    return pos + length


# ----------------------------------------------------------------------------------------------


def _dcmread(fp: Any, stop_before_pixels: bool, specific_tags: Sequence[str] | None = None) -> Dataset:
    """dcmread, accepting a data set without the Part 10 preamble/meta (old exports) only when
    it carries a DICOM SOP Class UID; anything else raises InvalidDicomError."""
    tags = list(specific_tags) + ["SOPClassUID"] if specific_tags else None
    try:
        return dcmread(fp, stop_before_pixels=stop_before_pixels, specific_tags=tags)
    except InvalidDicomError:
        if hasattr(fp, "seek"):
            fp.seek(0)
        try:
            ds = dcmread(fp, stop_before_pixels=stop_before_pixels, force=True, specific_tags=tags)
            sop_class = str(ds.get("SOPClassUID", ""))
        except Exception:
            sop_class = ""
        if not sop_class.startswith(_DICOM_UID_ROOT):
            raise InvalidDicomError("no DICOM File Meta Information and no SOP Class UID") from None
        logger.debug("data set without DICOM File Meta Information read (SOP Class %s)", sop_class)
        return ds


def read_header(source: SourceFile, specific_tags: Sequence[str] | None = None) -> Dataset:
    """Read a file's data set without pixel data — the one header reader of every entry
    point (``check``/``dvh``/``fractionation``, ``batch`` and the receiver's index).

    A cheap test of the first bytes (:func:`looks_like_dicom`) comes first, so a large
    file that is not DICOM costs one short read, never a parse. A data set without the
    Part 10 preamble and File Meta Information (Monaco writes such files) is read when it
    starts like a DICOM data set and carries a DICOM SOP Class UID.

    Parameters
    ----------
    source
        The file (on disk or in memory).
    specific_tags
        Read only these keywords (faster indexing); None reads the whole header.

    Raises
    ------
    pydicom.errors.InvalidDicomError
        Passed through for the caller to decide (skip or fail) when the file is not DICOM.
    DicomReadError
        When the file starts like DICOM but cannot be parsed, or cannot be read.
    """
    if not looks_like_dicom(source.head()):
        raise InvalidDicomError(not_dicom_reason(source))
    try:
        return _dcmread(source.open(), stop_before_pixels=True, specific_tags=specific_tags)
    except InvalidDicomError:
        raise
    except OSError as exc:
        raise DicomReadError(f"cannot be read: {exc.strerror or exc}", source.label) from exc
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise DicomReadError(f"is not a readable DICOM file (truncated or corrupt): {type(exc).__name__}: {exc}",
                             source.label) from exc


def sop_class_of(ds: Dataset) -> str:
    """The SOP Class UID of a data set (from its File Meta Information when the data set
    itself lacks it), "" when neither says."""
    sop_class = optional_str(ds, "SOPClassUID")
    if not sop_class and hasattr(ds, "file_meta"):
        sop_class = optional_str(ds.file_meta, "MediaStorageSOPClassUID")
    return sop_class


def kind_of_dataset(ds: Dataset) -> str | None:
    """``RTPLAN``, ``RTSTRUCT``, ``RTDOSE``, ``IMAGE`` or None (a SOP class plancheck does
    not use): the one classifier of every entry point."""
    return kind_of(sop_class_of(ds))


_EXPLICIT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
                          b"UL UN UR US UT UV".split())


def looks_like_dicom(head: bytes) -> bool:
    """A cheap test of a file's first bytes (at least 140 of them when the file is that long).

    True for a Part 10 file (``DICM`` at byte 128, PS3.10 §7.1), and for a data set written
    without preamble and File Meta Information whose first element is a plausible group
    0002 or 0008 element, little endian, explicit VR (a known VR) or implicit VR (a length
    that is not absurd). Anything else — text, zero-filled or random bytes, another format
    — is not DICOM and is never parsed.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group, element = struct.unpack_from("<HH", head, 0)
    if group not in (0x0002, 0x0008) or element > 0x3FFF:
        return False
    vr = head[4:6]
    if vr in _EXPLICIT_VRS:
        return True
    (length,) = struct.unpack_from("<I", head, 4)
    return length < (1 << 16)


def read_full(source: SourceFile, data: bytes) -> Dataset:
    """Read a whole data set, pixel data included, from bytes already loaded."""
    try:
        return _dcmread(io.BytesIO(data), stop_before_pixels=False)
    except Exception as exc:
        raise DicomReadError(f"is not a readable DICOM file (truncated or corrupt): {exc}",
                             source.label) from exc


def same_object(a: SourceFile, b: SourceFile) -> bool:
    """Whether two files of one SOP Instance UID hold the same object: the same bytes, or data sets
    equal element by element (the File Meta Information, which export tools rewrite, is not
    compared). An unreadable file is not the same object."""
    try:
        data_a, data_b = a.read_bytes(), b.read_bytes()
        if data_a == data_b:
            return True
        return read_full(a, data_a) == read_full(b, data_b)
    except DicomReadError:
        return False


DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
"""File name endings that say the file was meant to be DICOM (compared case-insensitively)."""

PART10_HEADER_BYTES = 132
"""The 128-byte preamble and the ``DICM`` prefix of a DICOM Part 10 file (PS3.10 §7.1)."""


def not_dicom_reason(source: SourceFile, head: bytes | None = None) -> str:
    """Why ``source`` is not read as DICOM, for the skipped-file list and error messages.

    An empty file, or a file named like DICOM (``.dcm``) that is shorter than a Part 10
    header, is called what it most likely is — a file cut short in the export or the copy —
    rather than "not DICOM": :func:`is_damaged_reason` is True for those reasons, so callers
    can name the file when a needed object turns out to be missing. ``head`` is the file's
    first bytes when the caller already has them (a zip member), else they are read.
    """
    first = source.head(PART10_HEADER_BYTES) if head is None else head[:PART10_HEADER_BYTES]
    if not first:
        return "empty file (0 bytes): cut short in the export or the copy? Export it again"
    if len(first) < PART10_HEADER_BYTES and source.label.lower().endswith(DICOM_SUFFIXES):
        return (f"only {len(first)} bytes, shorter than a DICOM file header: cut short in the export or the "
                "copy? Export it again")
    return "not a DICOM file (no 'DICM' prefix and no DICOM data set at its start)"


def is_damaged_reason(reason: str) -> bool:
    """True for a :func:`not_dicom_reason` that says the file was cut short (empty or too short)."""
    return reason.startswith(("empty file", "only ")) and reason.endswith("Export it again")


def read_single(path: str | Path, expected_kind: str,
                parse: Callable[[Dataset, str], Any], *, pixels: bool = False) -> Any:
    """Read one file that must be of ``expected_kind`` and parse it with ``parse(ds, label)``.

    Raises
    ------
    DicomReadError
        Missing, not DICOM, truncated or unreadable file.
    DicomConformanceError
        A file of another SOP class, or a required attribute missing.
    """
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise DicomReadError("no such file", label)
    source = SourceFile(label=label, path=path, explicit=True)
    if not looks_like_dicom(source.head()):
        raise DicomReadError(not_dicom_reason(source), label)
    data = source.read_bytes()
    try:
        ds = _dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
    except InvalidDicomError as exc:
        raise DicomReadError(not_dicom_reason(source), label) from exc
    except Exception as exc:
        raise DicomReadError(f"is not a readable DICOM file (truncated or corrupt): {exc}", label) from exc
    sop_class = sop_class_of(ds)
    kind = kind_of(sop_class)
    if kind != expected_kind:
        raise DicomConformanceError(
            f"{tag_text('SOPClassUID')} is {sop_class_name(sop_class)}, it must be "
            f"{_KIND_NAMES[expected_kind]} ({'/'.join(u for u, k in _KINDS.items() if k == expected_kind)})",
            label,
        )
    check_not_truncated(data, ds, label)
    try:
        return parse(ds, label)
    except InputError:
        raise
    except Exception as exc:  # never let a pydicom/KeyError traceback through
        raise DicomReadError(f"cannot be interpreted: {type(exc).__name__}: {exc}", label) from exc
