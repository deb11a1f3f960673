"""The DVHs a planning system embedded in an RT Dose (DVH Sequence), as stored.

Used to compare plancheck's DVHs with the planning system's own (``benchmarks/eclipse_agreement.py``
and the tests). Values are returned as the file states them, without unit guessing: an Eclipse
export may label percent values ``GY`` (see ``tests/data/eclipse_example/README.md``).

References
----------
DICOM PS3.3 C.8.8.4 (RT DVH module): DVH Type, Dose Units, DVH Dose Scaling, DVH Volume Units,
DVH Number of Bins, DVH Data (bin width, value pairs), DVH Minimum/Maximum/Mean Dose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from plancheck.dicom.read_common import optional_str
from plancheck.errors import DicomConformanceError, DicomReadError

__all__ = ["EmbeddedDVH", "embedded_dvhs"]


@dataclass(frozen=True, eq=False)
class EmbeddedDVH:
    """One item of the DVH Sequence.

    Attributes
    ----------
    roi_number
        Referenced ROI Number.
    dvh_type
        ``CUMULATIVE``, ``DIFFERENTIAL`` or ``NATURAL``.
    dose_units, volume_units
        As stated (``GY``/``RELATIVE``; ``CM3``/``PERCENT``/``PER_U``).
    bin_widths
        Width of each bin in dose units (DVH Dose Scaling applied).
    values
        Volume of each bin (cumulative: volume receiving at least the bin's lower edge).
    minimum, maximum, mean
        DVH Minimum/Maximum/Mean Dose as stored (None when absent).
    """

    roi_number: int
    dvh_type: str
    dose_units: str
    volume_units: str
    bin_widths: np.ndarray
    values: np.ndarray
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None


def _float(item, keyword: str) -> float | None:
    value = item.get(keyword)
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def embedded_dvhs(path: str | Path) -> tuple[EmbeddedDVH, ...]:
    """The DVH Sequence items of an RT Dose file (empty when it has none).

    Raises
    ------
    DicomReadError
        The file cannot be read as DICOM.
    DicomConformanceError
        An item without a referenced ROI or with DVH Data that are not (width, value) pairs.
    """
    label = str(path)
    try:
        ds = pydicom.dcmread(label, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise DicomReadError(f"cannot be read as DICOM: {exc}", label) from None
    out = []
    for index, item in enumerate(ds.get("DVHSequence") or (), start=1):
        refs = item.get("DVHReferencedROISequence") or ()
        if not refs or refs[0].get("ReferencedROINumber") in (None, ""):
            raise DicomConformanceError(f"DVH Sequence item {index} references no ROI", label)
        data = np.asarray([float(v) for v in (item.get("DVHData") or ())], dtype=float)
        if data.size == 0 or data.size % 2:
            raise DicomConformanceError(f"DVH Sequence item {index}: DVH Data must be (bin width, value) pairs", label)
        scaling = _float(item, "DVHDoseScaling") or 1.0
        out.append(EmbeddedDVH(
            roi_number=int(refs[0].ReferencedROINumber),
            dvh_type=optional_str(item, "DVHType"),
            dose_units=optional_str(item, "DoseUnits"),
            volume_units=optional_str(item, "DVHVolumeUnits"),
            bin_widths=data[0::2] * scaling,
            values=data[1::2],
            minimum=_float(item, "DVHMinimumDose"),
            maximum=_float(item, "DVHMaximumDose"),
            mean=_float(item, "DVHMeanDose"),
        ))
    return tuple(out)
