"""Structures made of others: the union of several ROIs, minus others, as one ROI.

Some limits apply to a volume that no single exported ROI holds: AAPM TG-101 gives
the trachea and the ipsilateral bronchus *one* 4 cc allowance together; a limit on the
esophagus *outside* the target excludes the PTV. :func:`combine_rois` builds such a
volume as an ordinary :class:`~plancheck.model.structures.Roi`, plane by plane, so the
DVH engine samples it as one volume (an overlap of two members counts once).

The model is the engine's slab model (:mod:`plancheck.dvh.sampling`): a member's
contour plane stands for the slab half-way to its neighbouring planes (half a spacing
beyond its first and last plane). On each plane of the union members, the combined
region is the union of every member's region whose slab contains that plane, minus the
regions of the subtracted ROIs whose slab contains it. A member's region on a plane is
the even-odd combination of its contours there (holes and islands). Planes where
nothing is left are dropped, so the engine treats them as a gap in the stack (its slabs
end half a spacing from the neighbouring planes).

With every member contoured on the same planes (one CT) this is exact for the model:
the combined ROI's volume is the volume of the union (minus the subtracted part).

References
----------
Benedict SH et al. Stereotactic body radiation therapy: the report of AAPM Task Group 101.
Med Phys 2010;37:4078-4101, Table III (trachea and ipsilateral bronchus: one 4 cc allowance).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import numpy as np

from plancheck.dvh.sampling import slab_bounds
from plancheck.model.structures import Contour, Roi

__all__ = ["combine_rois", "PLANE_TOLERANCE_MM", "MIN_RING_AREA_MM2"]

PLANE_TOLERANCE_MM = 1e-3
"""A plane lying on a slab face (within this, mm) belongs to that slab."""

MIN_RING_AREA_MM2 = 1e-6
"""Rings smaller than this (slivers left by boolean operations) are dropped, mm²."""


class _Member:
    """One ROI's planes, their slabs and (lazily) their even-odd regions."""

    def __init__(self, roi: Roi) -> None:
        self.roi = roi
        self.z = np.array(list(roi.planes.keys()), dtype=float)
        self.polygons = list(roi.planes.values())
        if len(self.z):
            self.lo, self.hi, _, _ = slab_bounds(self.z, None, image_slices_z_mm=roi.image_slices_z_mm)
        self._regions: dict[int, object] = {}

    def region_at(self, z_mm: float):
        """The member's region (a shapely geometry) on the plane at ``z_mm``, or None
        when no slab of the member contains it."""
        if not len(self.z):
            return None
        inside = np.flatnonzero((self.lo - PLANE_TOLERANCE_MM <= z_mm) & (z_mm <= self.hi + PLANE_TOLERANCE_MM))
        if inside.size == 0:
            return None
        k = int(inside[np.argmin(np.abs(self.z[inside] - z_mm))])
        if k not in self._regions:
            self._regions[k] = _even_odd_region(self.polygons[k])
        return self._regions[k]


def _even_odd_region(polygons: Sequence[np.ndarray]):
    """The even-odd region of one plane's polygons: their symmetric difference (each
    polygon first made valid, so a self-touching contour still has its area)."""
    from shapely import make_valid
    from shapely.geometry import Polygon

    shapes = [make_valid(Polygon(p)) for p in polygons if len(p) >= 3]
    if not shapes:
        return None
    return reduce(lambda a, b: a.symmetric_difference(b), shapes)


def _rings(region) -> list[np.ndarray]:
    """Exterior and interior rings of every polygon of a shapely geometry, ``(N, 2)`` each;
    the even-odd combination of the rings is the region."""
    from shapely.geometry import MultiPolygon, Polygon

    if region is None or region.is_empty:
        return []
    parts = []
    if isinstance(region, Polygon):
        parts = [region]
    elif isinstance(region, MultiPolygon):
        parts = list(region.geoms)
    elif hasattr(region, "geoms"):  # a collection: keep its areas (lines and points carry no volume)
        for g in region.geoms:
            parts.extend(p for p in ([g] if isinstance(g, Polygon) else getattr(g, "geoms", [])) if isinstance(p, Polygon))
    rings = []
    for poly in parts:
        if poly.area < MIN_RING_AREA_MM2:
            continue
        for ring in (poly.exterior, *poly.interiors):
            xy = np.asarray(ring.coords, dtype=float)[:-1]  # shapely repeats the first point
            if len(xy) >= 3 and abs(_shoelace_mm2(xy)) >= MIN_RING_AREA_MM2:
                rings.append(xy)
    return rings


def _shoelace_mm2(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def combine_rois(name: str, number: int, union: Sequence[Roi], minus: Sequence[Roi] = (),
                 interpreted_type: str = "ORGAN") -> Roi:
    """One ROI holding the union of ``union`` minus every ROI of ``minus``.

    Parameters
    ----------
    name
        Name of the combined ROI (e.g. ``"Trachea ∪ Bronchus"``), shown in reports.
    number
        Its ROI number: must differ from every exported ROI's (callers use negative numbers).
    union
        The ROIs whose volumes are joined (an overlap counts once). At least one.
    minus
        ROIs removed from the union.
    interpreted_type
        RT ROI Interpreted Type of the result.

    Returns
    -------
    Roi
        Closed planar contours on the planes of the ``union`` members (see the module
        docstring); no contours when nothing is left. It carries the volume model of the
        first member (every ROI of one structure set carries the same) and the members' image
        slices when they all have the same. When a member has
        defects (``Roi.defects``), the result has no contours and carries them.
    """
    if not union:
        raise ValueError("a combined structure needs at least one member")
    broken = tuple(f"{r.name}: {d}" for r in (*union, *minus) for d in r.defects)
    if broken:  # a member that cannot be measured (Roi.defects): neither can the combination
        return Roi(number=number, name=name, interpreted_type=interpreted_type, volume_model=union[0].volume_model,
                   defects=broken)
    members = [_Member(r) for r in union]
    removed = [_Member(r) for r in minus]
    planes = sorted({round(float(z), 3) for m in members for z in m.z})
    contours: list[Contour] = []
    for z in planes:
        regions = [g for g in (m.region_at(z) for m in members) if g is not None and not g.is_empty]
        if not regions:
            continue
        region = reduce(lambda a, b: a.union(b), regions)
        for m in removed:
            cut = m.region_at(z)
            if cut is not None and not cut.is_empty:
                region = region.difference(cut)
        for xy in _rings(region):
            points = np.column_stack([xy, np.full(len(xy), z)])
            contours.append(Contour(points, "CLOSED_PLANAR"))
    slices = {r.image_slices_z_mm for r in (*union, *minus)}
    return Roi(number=number, name=name, interpreted_type=interpreted_type, contours=tuple(contours),
               volume_model=union[0].volume_model,
               image_slices_z_mm=slices.pop() if len(slices) == 1 else ())
