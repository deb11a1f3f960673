"""``inside_grid_extent``: a ROI whose bounding box lies in the dose grid's region has no
uncovered volume, so the isodose-volume rules need not compute its whole DVH to know it.

A cylinder of radius 10 mm, 20 mm high, contoured every 2 mm (slab model: ½-spacing end caps),
on a 2 mm grid whose voxel centres enclose it with a margin of 2 voxels (the region covered is
the voxel centres ± half a spacing): inside. The same grid cut so that its last voxel centre
lies 3 mm inside the cylinder's top: not inside, and the DVH indeed has uncovered volume.
"""

from __future__ import annotations

import numpy as np
import pytest

from phantoms import LinearDose, cylinder_z, linear_dose_grid
from plancheck.dvh.engine import compute_dvh, grid_coverage_pct, grid_uncovered_volume_cc, inside_grid_extent, sample_for_grid
from plancheck.dvh.interpolate import columns_covered_by_grid, covered_by_grid
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


def test_coverage_from_the_cell_columns_is_the_coverage_of_the_cell_points() -> None:
    """The coverage mask computed column by column (no ``(N, 3)`` coordinates) is, point for
    point, the mask of ``covered_by_grid`` at the cells' coordinates, for a grid cut in z (top
    3 mm uncovered) and in x (the grid region ends 4 mm inside the cylinder's +x side); and the
    uncovered volume is the one the DVH reports (the same cells and weights; 1e-9 relative: the
    DVH sums its histogram bins, in another order)."""
    phantom = cylinder_z(10.0, 20.0, 2.0)
    grid = linear_dose_grid(LinearDose(2, 10.0, 0.5), phantom.bounds_mm(), 2.0)
    top = phantom.bounds_mm()[2][1]
    right = phantom.bounds_mm()[0][1]
    keep_z = grid.z_mm <= top - 3.0 - 1.0
    keep_x = grid.x_mm <= right - 4.0 - 1.0
    dose = np.ascontiguousarray(grid.dose_gy[keep_z][:, :, keep_x])
    cut = DoseGrid(dose, grid.x_mm[keep_x], grid.y_mm, grid.z_mm[keep_z], grid.frame_of_reference_uid)
    roi = phantom.roi
    sampling = sample_for_grid(roi, cut)
    assert sampling.cell_columns
    by_columns = np.concatenate([columns_covered_by_grid(cut, c) for c in sampling.cell_columns])
    by_points = covered_by_grid(cut, np.concatenate([c.points_mm() for c in sampling.cell_columns]))
    assert 0 < by_points.sum() < len(by_points)  # partly covered
    np.testing.assert_array_equal(by_columns, by_points)
    uncovered = grid_uncovered_volume_cc(roi, cut, lambda: sampling)
    assert uncovered > 0.0
    assert uncovered == pytest.approx(compute_dvh(roi, cut, sampling=sampling).uncovered_volume_cc, rel=1e-9)
