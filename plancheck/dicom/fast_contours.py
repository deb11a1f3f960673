"""Fast path for the ROI Contour module: walk the raw bytes of the ROI Contour Sequence.

pydicom converts every element of every contour item into Python objects (a Dataset per
item, a DataElement per attribute), which costs ~0.2 s for a clinical structure set of a
few thousand contours. This module reads the few attributes plancheck needs straight from
the bytes of the still-raw ``ROIContourSequence`` (3006,0039):

* per ROI Contour item: Referenced ROI Number (3006,0084), ROI Display Color (3006,002A)
  and the Contour Sequence (3006,0040);
* per Contour item: Contour Geometric Type (3006,0042), Number of Contour Points
  (3006,0046), Contour Data (3006,0050) and the Referenced SOP Instance UID (0008,1155)
  of the first item of its Contour Image Sequence (3006,0016).

Little endian only (explicit or implicit VR), defined or undefined lengths of sequences
and items (PS3.5 §7.1, §7.5). The fast path is for well-formed data only: it returns
None on anything unusual — a converted (non-raw) element, big endian, an attribute that
is missing, empty, multi-valued or not a number, a point-count mismatch, a short closed
contour, an undeclared ROI, a truncated structure — and the caller then reads the
sequence through pydicom, whose path produces the conformance messages. So the messages
and warnings are those of the pydicom path by construction.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = ["RawRoiContours", "read_roi_contours"]

_ROI_CONTOUR_SEQUENCE = 0x30060039
_REFERENCED_ROI_NUMBER = 0x30060084
_ROI_DISPLAY_COLOR = 0x3006002A
_CONTOUR_SEQUENCE = 0x30060040
_CONTOUR_GEOMETRIC_TYPE = 0x30060042
_NUMBER_OF_CONTOUR_POINTS = 0x30060046
_CONTOUR_DATA = 0x30060050
_CONTOUR_IMAGE_SEQUENCE = 0x30060016
_REFERENCED_SOP_INSTANCE_UID = 0x00081155

_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})

_U32 = struct.Struct("<I")
_HDR_IMPLICIT = struct.Struct("<HHI")
_HDR_EXPLICIT_SHORT = struct.Struct("<HH2sH")


class _Unusual(Exception):
    """Anything the fast path does not handle: the caller falls back to pydicom."""


RawRoiContours = tuple[int, "tuple[int, int, int] | None", list[tuple[str, np.ndarray, str]]]
"""One ROI Contour item: referenced ROI number, display colour (or None), and its
contours as ``(geometric type, (N, 3) points in mm, referenced image UID or "")``."""


def _element(buf: bytes, pos: int, implicit: bool) -> tuple[int, int, int, bool]:
    """Tag, value start, value length (``_UNDEFINED`` possible) and whether it is a sequence."""
    if implicit:
        group, elem, length = _HDR_IMPLICIT.unpack_from(buf, pos)
        tag = (group << 16) | elem
        return tag, pos + 8, length, length == _UNDEFINED
    group, elem, vr, short = _HDR_EXPLICIT_SHORT.unpack_from(buf, pos)
    tag = (group << 16) | elem
    if group == 0xFFFE:  # item / delimiters: no VR
        return tag, pos + 8, _U32.unpack_from(buf, pos + 4)[0], False
    if vr in _LONG_VRS:
        length = _U32.unpack_from(buf, pos + 8)[0]
        if length == _UNDEFINED and vr != b"SQ":
            raise _Unusual("undefined length outside a sequence")  # e.g. UN holding implicit VR data
        return tag, pos + 12, length, vr == b"SQ"
    return tag, pos + 8, short, False


def _skip_undefined(buf: bytes, pos: int, end: int, implicit: bool) -> int:
    """Position after the Sequence Delimitation Item of an undefined-length sequence
    whose first item starts at ``pos``."""
    while True:
        if pos + 8 > end:
            raise _Unusual("truncated")
        tag, start, length, _ = _element(buf, pos, implicit)
        if tag == _SEQ_END:
            return start
        if tag != _ITEM:
            raise _Unusual("not an item")
        if length == _UNDEFINED:
            pos = _item_end(buf, start, end, implicit)
        else:
            pos = start + length


def _item_end(buf: bytes, pos: int, end: int, implicit: bool) -> int:
    """Position after the Item Delimitation of an undefined-length item starting at ``pos``."""
    while True:
        if pos + 8 > end:
            raise _Unusual("truncated")
        tag, start, length, _ = _element(buf, pos, implicit)
        if tag == _ITEM_END:
            return start
        pos = _skip_value(buf, start, length, end, implicit)


def _skip_value(buf: bytes, start: int, length: int, end: int, implicit: bool) -> int:
    if length == _UNDEFINED:
        return _skip_undefined(buf, start, end, implicit)
    stop = start + length
    if stop > end:
        raise _Unusual("truncated")
    return stop


def _items(buf: bytes, pos: int, end: int, implicit: bool):
    """``(start, stop, undefined)`` of the items of a sequence value ``buf[pos:end]``;
    ``end`` is the end of a defined-length value, or of the buffer for an undefined one
    (the walk then stops at the Sequence Delimitation Item)."""
    while pos + 8 <= end:
        tag, start, length, _ = _element(buf, pos, implicit)
        if tag == _SEQ_END:
            return
        if tag != _ITEM:
            raise _Unusual("not an item")
        if length == _UNDEFINED:
            yield start, end, True
            pos = _item_end(buf, start, end, implicit)
        else:
            stop = start + length
            if stop > end:
                raise _Unusual("truncated")
            yield start, stop, False
            pos = stop
    if pos != end:
        raise _Unusual("truncated")


def _fields(buf: bytes, pos: int, end: int, undefined: bool, implicit: bool, wanted: frozenset) -> dict[int, tuple[int, int, int]]:
    """The wanted elements of one item: tag -> (value start, length, end of the item walk)."""
    found: dict[int, tuple[int, int, int]] = {}
    while pos + 8 <= end:
        tag, start, length, _ = _element(buf, pos, implicit)
        if tag == _ITEM_END:
            if not undefined:
                raise _Unusual("delimiter in a defined-length item")
            return found
        if tag in wanted:
            if tag in found:
                raise _Unusual("repeated element")
            found[tag] = (start, length, end)
        pos = _skip_value(buf, start, length, end, implicit)
    if undefined or pos != end:
        raise _Unusual("truncated")
    return found


def _text(buf: bytes, field: tuple[int, int, int] | None) -> str | None:
    if field is None:
        return None
    start, length, _ = field
    if length == _UNDEFINED:
        raise _Unusual("undefined length text")
    return buf[start:start + length].decode("ascii").strip(" \x00")


def _int(text: str) -> int:
    if not text or "\\" in text:
        raise _Unusual("not one value")
    return int(text)


def _image_uid(buf: bytes, field: tuple[int, int, int] | None, implicit: bool) -> str:
    """The Referenced SOP Instance UID of the first item of a raw Contour Image Sequence."""
    if field is None:
        return ""
    start, length, end = field
    stop = end if length == _UNDEFINED else start + length
    for i0, i1, undefined in _items(buf, start, stop, implicit):
        f = _fields(buf, i0, i1, undefined, implicit, frozenset((_REFERENCED_SOP_INSTANCE_UID,)))
        return _text(buf, f.get(_REFERENCED_SOP_INSTANCE_UID)) or ""
    return ""


def _contours(buf: bytes, field: tuple[int, int, int], implicit: bool) -> list[tuple[str, np.ndarray, str]]:
    start, length, end = field
    stop = end if length == _UNDEFINED else start + length
    types: list[str] = []
    data: list[bytes] = []
    declared: list[int | None] = []
    images: list[str] = []
    wanted = frozenset((_CONTOUR_GEOMETRIC_TYPE, _NUMBER_OF_CONTOUR_POINTS, _CONTOUR_DATA, _CONTOUR_IMAGE_SEQUENCE))
    for i0, i1, undefined in _items(buf, start, stop, implicit):
        f = _fields(buf, i0, i1, undefined, implicit, wanted)
        geometric_type = _text(buf, f.get(_CONTOUR_GEOMETRIC_TYPE))
        if not geometric_type or "\\" in geometric_type:
            raise _Unusual("geometric type")
        cd = f.get(_CONTOUR_DATA)
        if cd is None or cd[1] == 0 or cd[1] == _UNDEFINED:
            raise _Unusual("contour data")
        number = _text(buf, f.get(_NUMBER_OF_CONTOUR_POINTS))
        types.append(geometric_type)
        data.append(buf[cd[0]:cd[0] + cd[1]])
        declared.append(_int(number) if number else None)
        images.append(_image_uid(buf, f.get(_CONTOUR_IMAGE_SEQUENCE), implicit))
    return _finish(types, data, declared, images)


def _raw_bytes(item: Any, tag: int) -> bytes | None:
    """The still-raw value bytes of an element of a pydicom item (None when absent)."""
    element = item.get_item(tag)
    if element is None:
        return None
    if not getattr(element, "is_raw", False) or not isinstance(element.value, (bytes, bytearray)) \
            or not element.is_little_endian:
        raise _Unusual("converted element")
    return bytes(element.value)


def _image_uid_of_item(item: Any) -> str:
    """The Referenced SOP Instance UID of the first Contour Image Sequence item of a
    pydicom contour item (raw or already split into items)."""
    element = item.get_item(_CONTOUR_IMAGE_SEQUENCE)
    if element is None:
        return ""
    if getattr(element, "is_raw", False):
        if not isinstance(element.value, (bytes, bytearray)) or not element.is_little_endian:
            raise _Unusual("contour image sequence")
        buf = bytes(element.value)
        return _image_uid(buf, (0, len(buf), len(buf)), bool(element.is_implicit_VR))
    for image in element.value or ():
        uid = _raw_bytes(image, _REFERENCED_SOP_INSTANCE_UID)
        return uid.decode("ascii").strip(" \x00") if uid is not None else ""
    return ""


def _contours_from_items(sequence: Any) -> list[tuple[str, np.ndarray, str]]:
    """Contours of a Contour Sequence pydicom has already split into items (undefined-length
    sequences are read eagerly): the elements of the items are still raw."""
    types: list[str] = []
    data: list[bytes] = []
    declared: list[int | None] = []
    images: list[str] = []
    for item in sequence:
        gt = _raw_bytes(item, _CONTOUR_GEOMETRIC_TYPE)
        geometric_type = gt.decode("ascii").strip(" \x00") if gt is not None else None
        if not geometric_type or "\\" in geometric_type:
            raise _Unusual("geometric type")
        cd = _raw_bytes(item, _CONTOUR_DATA)
        if not cd:
            raise _Unusual("contour data")
        number = _raw_bytes(item, _NUMBER_OF_CONTOUR_POINTS)
        number_text = number.decode("ascii").strip(" \x00") if number is not None else ""
        types.append(geometric_type)
        data.append(cd)
        declared.append(_int(number_text) if number_text else None)
        images.append(_image_uid_of_item(item))
    return _finish(types, data, declared, images)


def _finish(types: list[str], data: list[bytes], declared: list[int | None],
            images: list[str]) -> list[tuple[str, np.ndarray, str]]:
    if not data:
        return []
    # One compiled pass for the whole ROI, giving the doubles float() gives (values beyond
    # the exact fast path are converted by float() itself); a value that is not a number
    # (empty, stray characters, NaN, infinity) makes the caller fall back to pydicom.
    from plancheck.kernels import parse_decimal_strings

    values_per_contour = np.array([d.count(b"\\") + 1 for d in data], dtype=np.int64)
    joined = b"\\".join(data)
    expected = int(values_per_contour.sum())
    flat, status, starts, ends, count = parse_decimal_strings(np.frombuffer(joined, dtype=np.uint8), expected)
    if count != expected or np.any(status == 2):
        raise _Unusual("contour data values")
    for k in np.flatnonzero(status == 1):
        flat[k] = float(joined[starts[k]:ends[k]])
    if np.any(values_per_contour % 3) or not np.all(np.isfinite(flat)):
        raise _Unusual("contour data values")
    points = np.split(flat.reshape(-1, 3), np.cumsum(values_per_contour // 3)[:-1])
    out = []
    for geometric_type, pts, n, image in zip(types, points, declared, images):
        if n is not None and n != len(pts):
            raise _Unusual("point count")
        if geometric_type == "CLOSED_PLANAR" and len(pts) < 3:
            raise _Unusual("short contour")
        out.append((geometric_type, pts, image))
    return out


def read_roi_contours(ds: Any, declared_rois: set[int] | dict[int, Any]) -> list[RawRoiContours] | None:
    """The ROI Contour Sequence of ``ds`` read from its raw bytes, or None to fall back.

    Returns one entry per ROI Contour item, in order. None when the sequence is absent,
    already converted by pydicom, not little endian, or anything in it is unusual (see
    the module docstring); the caller then uses the pydicom path.
    """
    try:
        raw = ds.get_item(_ROI_CONTOUR_SEQUENCE)
    except Exception:
        return None
    if raw is None:
        return None
    if not getattr(raw, "is_raw", False):
        return _from_items(raw.value, declared_rois)
    if not isinstance(raw.value, (bytes, bytearray)) or not raw.is_little_endian:
        return None
    buf = bytes(raw.value)
    implicit = bool(raw.is_implicit_VR)
    try:
        out: list[RawRoiContours] = []
        wanted = frozenset((_REFERENCED_ROI_NUMBER, _ROI_DISPLAY_COLOR, _CONTOUR_SEQUENCE))
        for i0, i1, undefined in _items(buf, 0, len(buf), implicit):
            f = _fields(buf, i0, i1, undefined, implicit, wanted)
            number = _int(_text(buf, f.get(_REFERENCED_ROI_NUMBER)) or "")
            if number not in declared_rois:
                raise _Unusual("undeclared ROI")
            colour = None
            colour_text = _text(buf, f.get(_ROI_DISPLAY_COLOR))
            if colour_text:
                parts = colour_text.split("\\")
                if len(parts) != 3:
                    raise _Unusual("colour")
                colour = tuple(int(p) for p in parts)
            seq = f.get(_CONTOUR_SEQUENCE)
            contours = _contours(buf, seq, implicit) if seq is not None else []
            out.append((number, colour, contours))
        return out
    except (_Unusual, ValueError, UnicodeDecodeError, struct.error):
        return None


def _from_items(sequence: Any, declared_rois) -> list[RawRoiContours] | None:
    """The same from a ROI Contour Sequence pydicom has already split into items."""
    try:
        out: list[RawRoiContours] = []
        for item in sequence or ():
            ref = _raw_bytes(item, _REFERENCED_ROI_NUMBER)
            number = _int(ref.decode("ascii").strip(" \x00") if ref is not None else "")
            if number not in declared_rois:
                raise _Unusual("undeclared ROI")
            colour = None
            colour_raw = _raw_bytes(item, _ROI_DISPLAY_COLOR)
            colour_text = colour_raw.decode("ascii").strip(" \x00") if colour_raw is not None else ""
            if colour_text:
                parts = colour_text.split("\\")
                if len(parts) != 3:
                    raise _Unusual("colour")
                colour = tuple(int(p) for p in parts)
            element = item.get_item(_CONTOUR_SEQUENCE)
            if element is None:
                contours = []
            elif getattr(element, "is_raw", False):
                if not isinstance(element.value, (bytes, bytearray)) or not element.is_little_endian:
                    raise _Unusual("contour sequence")
                buf = bytes(element.value)
                contours = _contours(buf, (0, len(buf), len(buf)), bool(element.is_implicit_VR))
            else:
                contours = _contours_from_items(element.value)
            out.append((number, colour, contours))
        return out
    except (_Unusual, ValueError, UnicodeDecodeError, struct.error, TypeError, AttributeError):
        return None
