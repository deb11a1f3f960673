"""Single-file readers: one RT Structure Set, RT Dose or RT Plan file → one model.

Use :func:`plancheck.dicom.read_export` for a whole export (classification, linking,
dose summation); these readers serve tools that have, e.g., a structure set and a dose
grid without a plan (DVH benchmarks).

References
----------
DICOM PS3.3 C.8.8.3 (RT Dose), C.8.8.5/6/8 (Structure Set, ROI Contour, RT ROI
Observations), C.8.8.9–14 (RT Plan modules).
"""

from __future__ import annotations

import logging
from pathlib import Path

from plancheck.dicom.read_common import read_single
from plancheck.dicom.read_dose import dose_grid_from_dataset
from plancheck.dicom.read_plan import plan_from_dataset
from plancheck.dicom.read_structures import structure_set_from_dataset
from plancheck.model import DoseGrid, Plan, StructureSet

__all__ = ["read_structure_set", "read_dose", "read_plan"]

logger = logging.getLogger(__name__)


def read_structure_set(path: str | Path) -> StructureSet:
    """Read one RT Structure Set file.

    Parameters
    ----------
    path
        The RTSTRUCT file.

    Returns
    -------
    StructureSet
        ROIs with number, name, interpreted type, colour and contours (``(N, 3)`` mm).
        An ROI without contours is kept (empty) and logged as a warning.

    Raises
    ------
    DicomReadError
        Missing, not DICOM, truncated or unreadable file.
    DicomConformanceError
        Not an RT Structure Set, a required attribute missing or invalid, a
        CLOSED_PLANAR contour with fewer than 3 points.
    """
    structure_set, warnings = read_single(path, "RTSTRUCT", structure_set_from_dataset)
    for warning in warnings:
        logger.warning("%s", warning)
    return structure_set


def read_dose(path: str | Path) -> DoseGrid:
    """Read one RT Dose file as it is (no summation, no per-session scaling).

    Parameters
    ----------
    path
        The RTDOSE file.

    Returns
    -------
    DoseGrid
        Dose in Gy (float32, pixel × DoseGridScaling) on increasing x/y/z voxel centres.

    Raises
    ------
    DicomReadError
        Missing, not DICOM, truncated file or truncated pixel data.
    DicomConformanceError
        Not an RT Dose, Dose Units not GY, Dose Grid Scaling missing, oblique or
        non-axial orientation, other required attribute missing or invalid.
    """
    return read_single(path, "RTDOSE", dose_grid_from_dataset, pixels=True)


def read_plan(path: str | Path) -> Plan:
    """Read one RT Plan (or RT Ion Plan) file.

    Parameters
    ----------
    path
        The RTPLAN file.

    Returns
    -------
    Plan

    Raises
    ------
    DicomReadError
        Missing, not DICOM, truncated or unreadable file.
    DicomConformanceError
        Not an RT Plan, or a required attribute missing or invalid.
    """
    return read_single(path, "RTPLAN", plan_from_dataset)
