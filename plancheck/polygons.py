"""Planar polygons: the even-odd point-in-polygon test, one definition for every layer.

The RT Structure Set reader's plausibility checks (:mod:`plancheck.dicom.roi_checks`: are
contours nested or cancelling?), the DVH engine (:mod:`plancheck.dvh.geometry`: margins, end
caps) and the rules (:mod:`plancheck.rules.kinds.integrity_rule`: is the isocenter inside the
body?) all ask whether a point lies inside a plane's polygons, and get the same answer here.
(The engine's rasteriser tests lattice points against a table of row crossings, compiled:
:mod:`plancheck.kernels.jit`; it is compared with this test in ``tests/test_kernels.py``.)

Convention: a horizontal ray to +x from the point; an edge counts when its end points lie on
different sides of the ray's line (half-open in y: ``y0 <= y`` differs from ``y1 <= y``) and it
crosses the ray strictly right of the point; inside when the count is odd. Holes and islands
follow from the parity (even-odd rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["points_in_polygons"]


def points_in_polygons(points: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Even-odd inside test of arbitrary points against a plane's polygons.

    Parameters
    ----------
    points
        ``(M, 2)`` x, y in mm.
    polygons
        The plane's polygons, ``(N, 2)`` each.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` bool.
    """
    inside = np.zeros(len(points), dtype=bool)
    px = points[:, 0][:, None]
    py = points[:, 1][:, None]
    for poly in polygons:
        x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
        nxt = np.roll(poly, -1, axis=0)
        x1, y1 = nxt[:, 0][None, :], nxt[:, 1][None, :]
        straddles = (y0 <= py) != (y1 <= py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        crossings = np.count_nonzero(straddles & (px < x_cross), axis=1)
        inside ^= (crossings % 2).astype(bool)
    return inside
