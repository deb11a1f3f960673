"""The raw-bytes contour reader gives exactly what the pydicom path gives.

``plancheck.dicom.fast_contours`` walks the ROI Contour Sequence bytes itself (10x
faster than pydicom's element conversion); on anything unusual it returns None and
the reader falls back to pydicom. These tests force the fallback and compare, on
the sample and on re-encoded copies (implicit VR, undefined sequence lengths).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

import plancheck.dicom.read_structures as read_structures
from plancheck.dicom import read_structure_set

SAMPLE_RS = Path(__file__).parents[1] / "sample_dicom" / "RS_sample.dcm"


def _signature(structure_set) -> list[tuple]:
    out = []
    for roi in structure_set.rois:
        out.append((roi.number, roi.name, roi.interpreted_type, roi.color_rgb,
                    tuple((c.geometric_type, c.points_mm.shape, c.points_mm.tobytes()) for c in roi.contours)))
    return out


def _read_without_fast_path(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(read_structures, "read_roi_contours", lambda ds, names: None)
    try:
        return read_structure_set(path)
    finally:
        monkeypatch.undo()


def _reencoded(tmp_path: Path, *, implicit: bool, undefined_lengths: bool) -> Path:
    ds = pydicom.dcmread(SAMPLE_RS)
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    for item in ds.ROIContourSequence:
        item.ContourSequence.is_undefined_length = undefined_lengths
        for contour in item.ContourSequence:
            contour.is_undefined_length_sequence_item = undefined_lengths
    ds.ROIContourSequence.is_undefined_length = undefined_lengths
    out = tmp_path / f"rs_{implicit}_{undefined_lengths}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize(("implicit", "undefined_lengths"), [(False, False), (True, False), (False, True), (True, True)])
def test_fast_path_equals_pydicom_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implicit: bool, undefined_lengths: bool) -> None:
    path = SAMPLE_RS if not (implicit or undefined_lengths) else _reencoded(tmp_path, implicit=implicit, undefined_lengths=undefined_lengths)
    fast = read_structure_set(path)
    slow = _read_without_fast_path(path, monkeypatch)
    assert _signature(fast) == _signature(slow)
    assert sum(len(r.contours) for r in fast.rois) > 500


def test_sample_contours_are_finite_and_planar() -> None:
    for roi in read_structure_set(SAMPLE_RS).rois:
        for contour in roi.contours:
            assert np.isfinite(contour.points_mm).all()
            assert np.ptp(contour.points_mm[:, 2]) == 0.0


@pytest.mark.parametrize("implicit", [False, True])
def test_fast_path_is_taken_for_well_formed_files(tmp_path: Path, implicit: bool) -> None:
    from plancheck.dicom.fast_contours import read_roi_contours

    path = _reencoded(tmp_path, implicit=True, undefined_lengths=False) if implicit else SAMPLE_RS
    ds = pydicom.dcmread(path)
    numbers = {int(item.ROINumber) for item in ds.StructureSetROISequence}
    assert read_roi_contours(ds, numbers) is not None
