"""``inside_grid_extent``: a ROI whose bounding box lies in the dose grid's region has no
uncovered volume, so the isodose-volume rules need not compute its whole DVH to know it.

A cylinder of radius 10 mm, 20 mm high, contoured every 2 mm (slab model: ½-spacing end caps),
on a 2 mm grid whose voxel centres enclose it with a margin of 2 voxels (the region covered is
the voxel centres ± half a spacing): inside. The same grid cut so that its last voxel centre
lies 3 mm inside the cylinder's top: not inside, and the DVH indeed has uncovered volume.
"""

from __future__ import annotations

import numpy as np

from phantoms import LinearDose, cylinder_z, linear_dose_grid
from plancheck.dvh.engine import compute_dvh, grid_coverage_pct, inside_grid_extent
from plancheck.model import DoseGrid


def test_a_roi_inside_the_grid_has_no_uncovered_volume() -> None:
    phantom = cylinder_z(10.0, 20.0, 2.0)
    grid = linear_dose_grid(LinearDose(2, 10.0, 0.5), phantom.bounds_mm(), 2.0)
    roi = phantom.roi
    assert inside_grid_extent(roi, grid)
    assert compute_dvh(roi, grid).uncovered_volume_cc == 0.0
    assert grid_coverage_pct(roi, grid) == 100.0


def test_a_roi_beyond_the_grid_is_not_inside() -> None:
    phantom = cylinder_z(10.0, 20.0, 2.0)
    grid = linear_dose_grid(LinearDose(2, 10.0, 0.5), phantom.bounds_mm(), 2.0)
    top = phantom.bounds_mm()[2][1]
    keep = grid.z_mm <= top - 3.0 - 1.0  # region ends half a spacing (1 mm) above the last centre
    cut = DoseGrid(np.ascontiguousarray(grid.dose_gy[keep]), grid.x_mm, grid.y_mm, grid.z_mm[keep], grid.frame_of_reference_uid)
    roi = phantom.roi
    assert not inside_grid_extent(roi, cut)
    assert compute_dvh(roi, cut).uncovered_volume_cc > 0.0
    assert grid_coverage_pct(roi, cut) < 100.0


def test_a_roi_without_contours_is_not_inside() -> None:
    phantom = cylinder_z(10.0, 20.0, 2.0)
    grid = linear_dose_grid(LinearDose(2, 10.0, 0.5), phantom.bounds_mm(), 2.0)
    empty = type(phantom.roi)(99, "Empty", "ORGAN", ())
    assert not inside_grid_extent(empty, grid)
