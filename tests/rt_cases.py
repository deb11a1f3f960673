"""Small in-memory treatments for rule tests, whose doses are known by construction.

Every structure is a box (or a few boxes on the same planes) contoured every 2.5 mm
so its slabs tile its z extent exactly; every course's dose grid (5 mm voxels) holds a
*uniform* dose over bands of x. A box lies at least one voxel inside its band, so every
voxel centre trilinear interpolation uses inside the box carries the band's dose: the
dose in the box is exactly that value, and its DVH is a step at that dose. Expected
values in the tests are therefore plain arithmetic on the band doses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plancheck.model import Contour, Course, DoseGrid, DoseReference, FractionGroup, Plan, PlanExport, Roi, StructureSet

__all__ = ["FRAME", "Box", "box_roi", "banded_dose", "plan", "treatment", "SLICE_MM", "VOXEL_MM"]

FRAME = "1.2.826.0.1.3680043.8.498.4242"
SLICE_MM = 2.5
VOXEL_MM = 5.0
_X = np.arange(-50.0, 400.0 + VOXEL_MM, VOXEL_MM)
_Y = np.arange(-40.0, 40.0 + VOXEL_MM, VOXEL_MM)
_Z = np.arange(-20.0, 80.0 + VOXEL_MM, VOXEL_MM)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, mm: x0..x1, y0..y1, z0..z1 (z0, z1 multiples of 2.5 mm)."""

    x0: float
    x1: float
    y0: float = -10.0
    y1: float = 10.0
    z0: float = 0.0
    z1: float = 30.0

    @property
    def volume_cc(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0) * (self.z1 - self.z0) / 1000.0


def box_roi(number: int, name: str, *boxes: Box, interpreted_type: str = "ORGAN") -> Roi:
    """One ROI made of the boxes (disjoint in x-y where they share planes: islands).
    Contour planes at z0 + 1.25, z0 + 3.75, ... so the slabs tile [z0, z1]."""
    contours = []
    for b in boxes:
        for z in np.arange(b.z0 + SLICE_MM / 2, b.z1, SLICE_MM):
            square = [[b.x0, b.y0, z], [b.x1, b.y0, z], [b.x1, b.y1, z], [b.x0, b.y1, z]]
            contours.append(Contour(np.array(square, dtype=float)))
    return Roi(number, name, interpreted_type, tuple(contours))


def banded_dose(bands: Sequence[tuple[float, float, float]]) -> DoseGrid:
    """A 5 mm grid over x -50..400, y -40..40, z -20..80 mm whose voxel centres with
    ``x0 <= x < x1`` hold ``dose_gy`` for each band ``(x0, x1, dose_gy)``; 0 Gy elsewhere."""
    dose_x = np.zeros(len(_X))
    for x0, x1, d in bands:
        dose_x[(_X >= x0) & (_X < x1)] = d
    dose = np.broadcast_to(dose_x, (len(_Z), len(_Y), len(_X))).copy()
    return DoseGrid(dose, _X.copy(), _Y.copy(), _Z.copy(), FRAME)


def plan(label: str, prescription_gy: float | None, fractions: int | None, target_roi: int | None = None) -> Plan:
    """An RT Plan with one fraction group and (when given) a target prescription."""
    refs = ()
    if prescription_gy is not None:
        refs = (DoseReference(1, "VOLUME", "TARGET", referenced_roi_number=target_roi,
                              target_prescription_dose_gy=prescription_gy),)
    return Plan(f"1.2.826.0.1.3680043.8.498.4242.{label.encode().hex()}", label=label,
                fraction_groups=(FractionGroup(1, fractions),), dose_references=refs, frame_of_reference_uid=FRAME)


def treatment(rois: Sequence[Roi], courses: Sequence[tuple[Plan, DoseGrid]]) -> PlanExport:
    """An export of one structure set and the given courses."""
    rtss = StructureSet("1.2.826.0.1.3680043.8.498.4242.1", FRAME, "RS", tuple(rois))
    return PlanExport("TEST", "TEST^CASE", FRAME, (rtss,),
                      tuple(Course(p, rtss, d, "PLAN dose used as is") for p, d in courses))
