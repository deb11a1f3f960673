"""Deterministic synthetic radiotherapy cases (pure numpy; no DICOM here).

A thoracic case of oligometastatic esophageal cancer with three courses
(conventional esophagus, SBRT lung metastasis, SBRT vertebral metastasis):
analytic anatomy → planar contours, a CT-like HU volume and phenomenological
dose distributions. :func:`testkit.write.write_case` writes it as DICOM and
:func:`testkit.synthetic.case_file.write_case_file` its clinical context (``case.yaml``).

Example
-------
>>> from testkit.synthetic import CaseSpec, build_case
>>> case = build_case(CaseSpec.variant("violations"))   # doctest: +SKIP
"""

from testkit.synthetic.case import (
    BeamSpec,
    SyntheticCase,
    SyntheticCourse,
    SyntheticImage,
    SyntheticStructure,
    build_case,
)
from testkit.synthetic.spec import COURSE_LABELS, CaseSpec

__all__ = [
    "BeamSpec",
    "COURSE_LABELS",
    "CaseSpec",
    "SyntheticCase",
    "SyntheticCourse",
    "SyntheticImage",
    "SyntheticStructure",
    "build_case",
]
