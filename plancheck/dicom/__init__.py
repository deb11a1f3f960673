"""DICOM boundary of plancheck: read RT Plan, Structure Set and Dose files into models.

pydicom is imported only inside this package; everything it returns is a frozen
:mod:`plancheck.model` object (dose in Gy, coordinates in mm in the patient frame).

* :func:`read_export` reads a directory, a ``.zip`` archive or a list of files, classifies
  them by SOP Class UID, links RTDOSE → RTPLAN → RTSTRUCT and sums BEAM/FRACTION doses.
* :func:`read_plan`, :func:`read_structure_set`, :func:`read_dose` read one file each.
"""

from plancheck.dicom.link import read_export
from plancheck.dicom.read import read_dose, read_plan, read_structure_set

__all__ = ["read_export", "read_plan", "read_structure_set", "read_dose"]
