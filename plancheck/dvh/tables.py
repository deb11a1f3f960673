"""The DVH table of a course: its structures' DVHs and TG-263 metrics in one dose kind.

Computed by :func:`plancheck.analysis.dvh_tables.dvh_tables` (``plancheck dvh``) and rendered by
:mod:`plancheck.report.dvh_tables` (text, JSON, CSV); the types live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass

from plancheck.dvh.dvh import DVH
from plancheck.dvh.metrics import MetricValue
from plancheck.model.structures import Roi

__all__ = ["StructureDVH", "CourseDVHs"]


@dataclass(frozen=True, eq=False)
class StructureDVH:
    """One structure's DVH and metrics.

    ``dvh`` is None and ``not_computed`` says why for a structure that was read but cannot
    be measured (``Roi.defects``): its metrics are then undefined with that reason.
    """

    roi: Roi
    dvh: DVH | None
    metrics: tuple[MetricValue, ...]
    dose_kind: str
    alpha_beta_gy: float | None = None
    alpha_beta_source: str = ""
    prescription_gy: float | None = None
    not_computed: str = ""


@dataclass(frozen=True, eq=False)
class CourseDVHs:
    """The DVH table of one course (or of a composite of courses)."""

    label: str
    sop_instance_uid: str
    fractions: int | None
    prescription_gy: float | None
    dose_summary: str
    structures: tuple[StructureDVH, ...]
    engine: str
    composite_of: tuple[str, ...] = ()
    volume_model: str = ""
    """The DVH volume model and why it was chosen (``StructureSet.volume_model_description``)."""
    dose_type: str = "PHYSICAL"
