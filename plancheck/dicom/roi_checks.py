"""Plausibility of an ROI's contours: the defects that make a structure unmeasurable.

A structure set can be readable and still describe no measurable volume: contours that
cross each other (the even-odd rule then cannot tell inside from outside), identical
contours on one plane (they cancel), contours stacked on one plane although they were
drawn on different CT slices, a coordinate at 1e9 mm. plancheck does not guess what such
a structure was meant to be. It reads it, records the reasons on the ROI
(:attr:`plancheck.model.Roi.defects`), and every consumer refuses to measure it: the
rules on it are NOT EVALUATED with the reason, ``plancheck dvh`` prints it as not
computed. The table of decisions (input error or defect, per case) is in
``docs/input-validation.md``.

Checks (the closed planar contours of every ROI that has some, whatever its RT ROI
Interpreted Type: the rules measure an ROI from its closed contours, so a ``MARKER`` drawn
as a volume is checked like an organ; only a point ROI — Interpreted Type ``MARKER``,
``ISOCENTER``, ``REGISTRATION`` — whose closed contours all lack an area, i.e. points
stored as closed contours, is left at the geometric-type and coordinate checks):

* unknown Contour Geometric Type (PS3.3 C.8.8.6.3 defines ``POINT``, ``OPEN_PLANAR``,
  ``OPEN_NONPLANAR``, ``CLOSED_PLANAR``, ``CLOSEDPLANAR_XOR``);
* closed contours mixed with ``POINT``, ``OPEN_PLANAR`` or ``OPEN_NONPLANAR`` contours in
  one ROI: the ROI is measured as a volume from its closed contours only, so the planes
  drawn with the other types would silently be left out of it (an ROI made only of points
  or open contours, e.g. a marker, is simply not a volume);
* a coordinate beyond ±:data:`MAX_COORDINATE_MM` or an extent beyond
  :data:`MAX_EXTENT_MM` along an axis (no patient structure is that large; it also bounds
  the DVH engine's work, which grows with the area it samples);
* a closed contour whose points are not in one axial plane (z spread >
  :data:`PLANAR_TOLERANCE_MM`);
* degenerate polygons: fewer than 3 distinct points, or all points on one line (zero area;
  a figure-of-eight also has zero signed area but is caught as crossing);
* edges that cross on a plane (a self-intersecting contour, or two contours of one plane
  overlapping partly) — touching and collinear edges (keyhole contours) are allowed;
* identical contours on one plane, or a plane whose even-odd area is below
  :data:`CANCELLATION_FRACTION` of its largest contour (contours cancelling each other:
  the volume far below what the contours enclose);
* all contours on one plane (the structure's extent along z is unknown);
* contours of one plane drawn on different images (Contour Image Sequence), and contours
  far from the CT slice they reference (:func:`slice_defects`, when the CT is in the
  export).

References
----------
DICOM PS3.3 C.8.8.6 (ROI Contour module: Contour Geometric Type, Contour Image Sequence,
Contour Data), C.8.8.8 (RT ROI Interpreted Type).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from plancheck.kernels import contour_measures, crossing_flags
from plancheck.model.structures import CLOSED_TYPES, Contour, Roi
from plancheck.polygons import points_in_polygons

__all__ = [
    "KNOWN_GEOMETRIC_TYPES", "POINT_ROI_TYPES", "MAX_COORDINATE_MM", "MAX_EXTENT_MM", "PLANAR_TOLERANCE_MM",
    "CANCELLATION_FRACTION", "contour_defects", "slice_defects", "crossing_planes",
]

#: Contour Geometric Types of PS3.3 C.8.8.6.3.
KNOWN_GEOMETRIC_TYPES = frozenset({"POINT", "OPEN_PLANAR", "OPEN_NONPLANAR"}) | CLOSED_TYPES
#: RT ROI Interpreted Types of ROIs that are points, not volumes (PS3.3 C.8.8.8.1).
POINT_ROI_TYPES = frozenset({"MARKER", "ISOCENTER", "REGISTRATION"})
#: No patient coordinate is farther from the frame's origin than this (mm).
MAX_COORDINATE_MM = 10_000.0
#: No patient structure spans more than this along an axis (mm); a whole body is under 2 m.
MAX_EXTENT_MM = 2_500.0
#: The points of a closed planar contour lie in one axial plane to within this (mm).
PLANAR_TOLERANCE_MM = 0.5
#: A plane whose even-odd area is below this fraction of its largest contour's area is made
#: of contours cancelling each other (a 1 mm rind of a 300 mm body keeps 1.3 %).
CANCELLATION_FRACTION = 0.005



def _z_text(z: float) -> str:
    return f"z = {z:g} mm"


def _examples(zs: Sequence[float], limit: int = 3) -> str:
    shown = ", ".join(f"{z:g}" for z in list(dict.fromkeys(round(float(v), 2) for v in zs))[:limit])
    return f"z = {shown} mm" + (" ..." if len(set(np.round(zs, 2))) > limit else "")


def crossing_planes(planes: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """For each plane (a list of ``(N, 2)`` polygons, repeated points removed), whether two
    of its edges cross properly: each edge's endpoints strictly on both sides of the other.

    Edges sharing a vertex, touching at a point or running along each other (keyhole
    contours) do not count (see :func:`_crossing_flags`).

    Returns
    -------
    numpy.ndarray of bool, one per plane.
    """
    polys = [(p, poly) for p, polygons in enumerate(planes) for poly in polygons if len(poly) >= 3]
    if not polys:
        return np.zeros(len(planes), dtype=bool)
    xy = np.concatenate([poly for _, poly in polys])
    sizes = np.array([len(poly) for _, poly in polys])
    plane_of_poly = np.array([p for p, _ in polys])
    return _crossing_flags(xy, sizes, plane_of_poly, len(planes))


def _crossing_flags(xy: np.ndarray, sizes: np.ndarray, plane_of_poly: np.ndarray, n_planes: int) -> np.ndarray:
    """:func:`crossing_planes` on concatenated polygons: ``xy`` holds the polygons one after
    the other (``sizes`` points each, all >= 3), ``plane_of_poly`` their plane index. A
    compiled sweep per plane: edges sorted by their lowest x, only pairs whose x and y ranges
    overlap tested (:func:`plancheck.kernels.contour_checks.crossing_flags`)."""
    if len(sizes) == 0:
        return np.zeros(n_planes, dtype=bool)
    return crossing_flags(np.ascontiguousarray(xy, dtype=float), np.ascontiguousarray(sizes, dtype=np.int64),
                          np.ascontiguousarray(plane_of_poly, dtype=np.int64), int(n_planes))


def _plane_area_ratio(polygons: Sequence[np.ndarray], areas: Sequence[float]) -> float:
    """Even-odd area of a plane of non-crossing polygons over its largest polygon's area:
    each polygon (``(N, 2)`` vertices) counts with the sign of its nesting depth (holes
    subtract): the number of other polygons that contain its first vertex."""
    magnitudes = [abs(x) for x in areas]
    largest = max(magnitudes)
    if largest <= 0:
        return 0.0
    if sum(magnitudes) - largest < (1.0 - CANCELLATION_FRACTION) * largest:
        return 1.0  # even if every other polygon were a hole, the plane keeps enough area
    total = 0.0
    for k, polygon in enumerate(polygons):
        depth = sum(bool(points_in_polygons(polygon[:1], [other])[0]) for m, other in enumerate(polygons) if m != k)
        total += magnitudes[k] * (-1.0 if depth % 2 else 1.0)
    return total / largest


def _mixed_type_defects(roi: Roi) -> tuple[str, ...]:
    """A defect when an ROI with closed contours also has ``POINT``, ``OPEN_PLANAR`` or
    ``OPEN_NONPLANAR`` contours: naming each such type, its number of contours and planes.

    The volume of an ROI is made of its closed contours alone (:attr:`Roi.planes`): the
    planes drawn with another type would vanish from it without a word (a cord whose
    high-dose planes were OPEN_PLANAR was graded at half its dose).
    """
    others: dict[str, list[float]] = {}
    for contour in roi.contours:
        if contour.geometric_type in KNOWN_GEOMETRIC_TYPES and contour.geometric_type not in CLOSED_TYPES:
            zs = others.setdefault(contour.geometric_type, [])
            if len(contour.points_mm):
                zs.append(round(contour.z_mm, 3))
    if not others:
        return ()
    parts = [f"{len(zs)} {kind}" + (f" on {_examples(zs)}" if zs else "") for kind, zs in sorted(others.items())]
    return ("contours of another (3006,0042) 'Contour Geometric Type' are mixed with the closed ones: "
            f"{', '.join(parts)}; the ROI is measured as a volume from its closed contours only, so those "
            "planes would be left out of it",)


def contour_defects(roi: Roi) -> tuple[str, ...]:
    """The defects of an ROI that its contours alone reveal (see the module docstring).

    Parameters
    ----------
    roi
        The ROI as read (contours in mm).

    Returns
    -------
    tuple of str
        One line per kind of defect, with numbers and example planes; empty when sound.
    """
    defects: list[str] = []
    if not roi.contours:
        return ()
    unknown = sorted({c.geometric_type for c in roi.contours if c.geometric_type not in KNOWN_GEOMETRIC_TYPES})
    if unknown:
        count = sum(c.geometric_type in unknown for c in roi.contours)
        defects.append(f"{count} contour(s) have the unknown (3006,0042) 'Contour Geometric Type' "
                       f"{', '.join(repr(t) for t in unknown)} (POINT, OPEN_PLANAR, OPEN_NONPLANAR, "
                       "CLOSED_PLANAR or CLOSEDPLANAR_XOR are defined)")
    all_points = np.concatenate([c.points_mm for c in roi.contours if len(c.points_mm)]) \
        if any(len(c.points_mm) for c in roi.contours) else np.zeros((0, 3))
    if len(all_points):
        if not np.isfinite(all_points).all():
            defects.append("a contour coordinate is not a finite number: a coordinate is corrupt")
            return tuple(defects)
        far = float(np.max(np.abs(all_points)))
        span = np.ptp(all_points, axis=0)
        if far > MAX_COORDINATE_MM:
            defects.append(f"a contour point lies {far:.3g} mm from the origin of the frame of reference "
                           f"(more than {MAX_COORDINATE_MM:g} mm): a coordinate is corrupt")
            return tuple(defects)
        if float(span.max()) > MAX_EXTENT_MM:
            axis = "xyz"[int(np.argmax(span))]
            defects.append(f"the contours span {float(span.max()):.0f} mm along {axis} (more than "
                           f"{MAX_EXTENT_MM:g} mm, larger than any patient): a coordinate is corrupt")
            return tuple(defects)
    closed = [c for c in roi.contours if c.geometric_type in CLOSED_TYPES]
    if not closed:
        return tuple(defects)

    sizes = np.array([len(c.points_mm) for c in closed], dtype=np.int64)
    points = np.concatenate([np.asarray(c.points_mm, dtype=float).reshape(-1, 3) for c in closed])
    # per contour (compiled, one pass): z spread; the points kept once repeated consecutive
    # points are dropped (cyclically: a repeated closing point too); the shoelace area and the
    # second moments of the kept points about their mean (exact to rounding for far-off contours)
    z_spread, keep, clean_sizes, areas, z_mean, sxx, syy, sxy = contour_measures(np.ascontiguousarray(points), sizes)
    non_planar = z_spread > PLANAR_TOLERANCE_MM
    if non_planar.any():
        defects.append(f"{int(non_planar.sum())} closed contour(s) are not in one axial plane (their points' z differ "
                       f"by up to {float(z_spread.max()):.3g} mm; at most {PLANAR_TOLERANCE_MM:g} mm is accepted)")
    xy = points[keep, :2]
    clean_starts = np.concatenate([[0], np.cumsum(clean_sizes)[:-1]])
    # collinear points: the 2 × 2 covariance of the contour's points is singular
    collinear = sxx * syy - sxy * sxy <= 1e-12 * (sxx + syy) ** 2 + 1e-18
    without_area = (clean_sizes < 3) | collinear
    if roi.interpreted_type.upper() in POINT_ROI_TYPES and without_area.all():
        return tuple(defects)  # a point ROI whose points are stored as "closed" contours: no volume
    defects += _mixed_type_defects(roi)
    degenerate_mask = ~non_planar & without_area
    if degenerate_mask.any():
        defects.append(f"{int(degenerate_mask.sum())} closed contour(s) are degenerate (fewer than 3 distinct points "
                       f"or all on one line), on {_examples(np.round(z_mean[degenerate_mask], 3))}")
    usable = np.flatnonzero(~non_planar & ~degenerate_mask)
    if usable.size == 0:
        return tuple(defects)
    plane_z = np.round(z_mean[usable], 3)
    zs_array, plane_index = np.unique(plane_z, return_inverse=True)
    by_z: dict[float, list[tuple[Contour, int]]] = {}
    for k, p in zip(usable, plane_index):
        by_z.setdefault(float(zs_array[p]), []).append((closed[k], k))
    zs = [float(z) for z in zs_array]
    order = np.argsort(plane_index, kind="stable")
    poly_sel = usable[order]
    crossing = _crossing_flags(
        np.concatenate([xy[clean_starts[k]:clean_starts[k] + clean_sizes[k]] for k in poly_sel]),
        clean_sizes[poly_sel], plane_index[order], len(zs))
    if crossing.any():
        bad = [z for z, c in zip(zs, crossing) if c]
        defects.append(f"contour edges cross on {len(bad)} plane(s) ({_examples(bad)}): a contour crossing itself or "
                       "two contours overlapping partly leave inside and outside undefined")
    duplicated, cancelled, mixed_images = [], [], []
    for z, crossed in zip(zs, crossing):
        members = by_z[z]
        if len({c.image_uid for c, _ in members if c.image_uid}) > 1:
            mixed_images.append(z)
        if len(members) < 2 or crossed:
            continue
        polygons = [xy[clean_starts[k]:clean_starts[k] + clean_sizes[k]] for _, k in members]
        keys = [np.round(a[np.lexsort((a[:, 1], a[:, 0]))], 2).tobytes() for a in polygons]
        if len(set(keys)) < len(keys):
            duplicated.append(z)
            continue
        if _plane_area_ratio(polygons, [float(areas[k]) for _, k in members]) < CANCELLATION_FRACTION:
            cancelled.append(z)
    if mixed_images:
        defects.append(f"contours drawn on different images are stacked on one plane ({len(mixed_images)} plane(s), "
                       f"{_examples(mixed_images)}): their z positions were altered")
    if duplicated:
        defects.append(f"identical contours are repeated on {len(duplicated)} plane(s) ({_examples(duplicated)}): "
                       "they cancel each other under the even-odd rule")
    if cancelled:
        defects.append(f"the contours of {len(cancelled)} plane(s) ({_examples(cancelled)}) cancel each other: the "
                       f"area they leave is below {100 * CANCELLATION_FRACTION:g} % of the largest contour's")
    if len(zs) == 1 and not defects:
        defects.append(f"all {len(by_z[zs[0]])} closed contour(s) lie on one plane ({_z_text(zs[0])}): the "
                       "structure's extent along z is unknown")
    return tuple(defects)


def slice_defects(roi: Roi, slice_z_mm: Mapping[str, float], tolerance_mm: Mapping[str, float]) -> tuple[str, ...]:
    """Contours far from the CT slice they reference (Contour Image Sequence).

    Every ROI's closed contours of 3 points or more are checked, whatever its RT ROI
    Interpreted Type (a point stored as a closed contour is no cross-section of a volume).

    Parameters
    ----------
    roi
        The ROI.
    slice_z_mm
        z (mm) of each image of the export by SOP Instance UID (axial images only).
    tolerance_mm
        Per image: how far a contour may lie from it (half the series' slice spacing).

    Returns
    -------
    tuple of str
        One line when contours lie farther than the tolerance from their slice.
    """
    off: list[tuple[float, float, float]] = []
    for contour in roi.contours:
        if not contour.is_closed_planar or not contour.image_uid or contour.image_uid not in slice_z_mm:
            continue
        if len(contour.points_mm) < 3:  # a point, not a cross-section (a marker's; else a degenerate-contour defect)
            continue
        z, z_slice = contour.z_mm, slice_z_mm[contour.image_uid]
        if abs(z - z_slice) > tolerance_mm[contour.image_uid]:
            off.append((z, z_slice, tolerance_mm[contour.image_uid]))
    if not off:
        return ()
    z, z_slice, tol = max(off, key=lambda t: abs(t[0] - t[1]))
    return (f"{len(off)} contour(s) lie far from the CT slice they reference (e.g. a contour at z = {z:g} mm drawn "
            f"on the slice at z = {z_slice:g} mm; at most ±{tol:.3g} mm, half the slice spacing, is accepted)",)
