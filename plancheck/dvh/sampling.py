"""Volume model of an ROI: weighted sample points that fill it.

The geometric model (one model for volume and dose):

* Each contour plane at ``z_k`` stands for a slab whose faces lie half-way to
  the neighbouring planes; the first and last slabs (and slabs next to a gap in
  the stack) extend ``e · s`` beyond their plane, ``s`` the nominal contour spacing
  and ``e`` the ``end_cap_spacings`` of the ROI's volume model
  (:mod:`plancheck.model.volume_model`): ½ for the slab model (the "½-slice end-cap"
  convention of the Nelms 2015 benchmark), 1/12 for the Eclipse model, 0 for none.
  Models with ``surface_extremes=False`` take minimum and maximum from the sample
  cells only (no surface points below).
* In a slab the cross-section is the plane's even-odd region. It is sampled on
  a square lattice of side ``step_mm`` (super-sampling the dose grid); through
  the slab each lattice point becomes a column split at the dose planes, so
  every sample cell lies between two dose planes, where trilinear dose is
  linear in z. The DVH engine spreads each cell's volume over the range of
  dose inside it (from the local gradient), so dose is integrated through the
  slab — end-cap slabs included — rather than read at a few points.
* The weights of a plane's samples are scaled so that they add up to the
  exact polygon area (shoelace formula, even-odd nesting) times the slab
  thickness: the ROI volume is exact for the model, whatever the lattice step.
* Zero-weight *extreme points* (contour vertices and edge points on both slab
  faces and at the dose planes between them, and the end-cap faces) let the
  minimum and maximum dose be found on the structure surface, where they lie
  for a smooth dose.

The lattice step adapts to the ROI so that about ``target_samples`` lattice
points are used over all planes, within ``[min_step_mm, max_step_mm]``: small
structures are sampled finely (≈0.05–0.2 mm), large ones no coarser than the
dose grid.

*Thin structures.* The step is also capped at the ROI's characteristic thickness
``T`` (the area-weighted median over the planes of ``2·A/P``, plane area over
contour perimeter, holes included: the radius of a disc, the width ``w`` of a rind
such as a skin ring, whatever its full end planes) divided by ``THICKNESS_SAMPLES``. A lattice coarser than a shell's width
misses the rind on some rows and doubles it on others (aliasing along the
contour): a 3 mm skin rind on a 4 mm lattice had D2 % off by 5–11 %. With
about ``THICKNESS_SAMPLES`` lattice points across the width the aliasing
averages out. The cap never goes below ``min_step_mm``.

Implementation: the cells are described as columns (:class:`~plancheck.dvh.interpolate.PointColumns`:
a lattice point and the z-segments of its plane), so the engine interpolates the
dose column by column (the in-plane part once per column and dose plane) and the
geometry is vectorised over all polygons of the ROI (no Python loop per plane).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plancheck.dvh.interpolate import PointColumns
from plancheck.dvh.rasterize import PlaneLattice, PolygonSet, plane_areas_mm2, rasterize_polygon_set
from plancheck.errors import StructureDefectError
from plancheck.model.structures import ON_SLICE_TOLERANCE_MM, Roi
from plancheck.model.volume_model import VolumeModel

__all__ = ["slab_bounds", "RoiSampling", "sample_roi", "characteristic_thickness_mm", "DEFAULT_TARGET_SAMPLES", "THICKNESS_SAMPLES"]

DEFAULT_TARGET_SAMPLES = 150_000
"""Sample cells aimed for per ROI (lattice points x segments, before clipping the step)."""

THICKNESS_SAMPLES = 3.0
"""Lattice points across the characteristic thickness ``2·ΣA/ΣP`` of an ROI (see the module docstring)."""

_GAP_FACTOR = 1.5
"""Planes further apart than this many nominal spacings are a gap in the stack (when the image
slices are not known, see :func:`slab_bounds`)."""


@dataclass(frozen=True, eq=False)
class RoiSampling:
    """Weighted sample points filling an ROI.

    Attributes
    ----------
    points_mm
        ``(N, 3)`` x, y, z in mm of the centres of the sample cells. For a sampling
        made by :func:`sample_roi` the cells come slot-major (see ``cell_columns``)
        and the array is built from the columns on first use (None may be passed).
    heights_mm
        ``(N,)`` height (z extent) of each cell, mm; its x and y extent is ``step_mm``
        (built from the columns on first use when None is passed).
    weights_cc
        ``(N,)`` volume represented by each sample, cc; sums to ``volume_cc``.
    extreme_points_mm
        ``(M, 3)`` surface points (zero weight) used for minimum and maximum dose
        (built from ``extreme_columns`` on first use when None is passed).
    volume_cc
        Volume of the ROI in the slab model, cc.
    step_mm
        In-plane lattice step, mm.
    thickness_mm
        Nominal contour spacing used for end caps, mm.
    notes
        Remarks on the geometry (assumed thickness, non-nested contours ...).
    cell_columns
        The sample cells as columns (lattice point x z-segments of its plane),
        together in the order of ``points_mm`` (slot-major: the first segment of
        every column, then the second ...); lets the dose be interpolated column
        by column. None for a sampling built by other means.
    extreme_columns
        The extreme points as columns, together in the order of ``extreme_points_mm``
        (empty when not known).
    characteristic_thickness_mm
        The ROI's characteristic thickness (area-weighted median of ``2·A/P`` over its
        planes), mm; the hot-tail refinement samples thin ROIs across it.
    """

    points_mm: np.ndarray
    heights_mm: np.ndarray
    weights_cc: np.ndarray
    extreme_points_mm: np.ndarray
    volume_cc: float
    step_mm: float
    thickness_mm: float
    notes: tuple[str, ...] = ()
    cell_columns: tuple[PointColumns, ...] | None = None
    extreme_columns: tuple[PointColumns, ...] | None = None
    characteristic_thickness_mm: float = math.inf
    """Characteristic thickness of the ROI (see :func:`characteristic_thickness_mm`), mm."""
    slab_lo_mm: np.ndarray | None = None
    """Lower face of each contour plane's slab (in the order of :attr:`Roi.planes`), mm; None
    for a sampling built by other means."""
    slab_hi_mm: np.ndarray | None = None
    """Upper face of each contour plane's slab, mm (see ``slab_lo_mm``)."""
    surface_extremes: bool = True
    """Whether the volume model takes the minimum and maximum on the surface and at the dose-grid
    points inside (:attr:`plancheck.model.volume_model.VolumeModel.surface_extremes`)."""

    @property
    def number_of_samples(self) -> int:
        return int(len(self.weights_cc))


def _lazy_coordinates(attr: str, columns_attr: str) -> property:
    """A field that, given as None, is built on first use from the column description
    (the coordinates of every cell are rarely needed: the engine works on the columns)."""
    key = "_" + attr

    def get(self: RoiSampling) -> np.ndarray:
        value = self.__dict__.get(key)
        if value is None:
            columns = getattr(self, columns_attr) or ()
            value = np.concatenate([c.points_mm() for c in columns]) if columns else np.zeros((0, 3))
            self.__dict__[key] = value
        return value

    def set_(self: RoiSampling, value: np.ndarray | None) -> None:
        self.__dict__[key] = value

    return property(get, set_, doc=f"``(N, 3)`` coordinates ({attr}); see the class docstring.")


RoiSampling.points_mm = _lazy_coordinates("points_mm", "cell_columns")  # type: ignore[assignment]


def _get_heights(self: RoiSampling) -> np.ndarray:
    value = self.__dict__.get("_heights_mm")
    if value is None:
        columns = self.cell_columns or ()
        value = np.concatenate([c.slot_major(c.z_extent_mm) for c in columns]) if columns else np.zeros(0)
        self.__dict__["_heights_mm"] = value
    return value


def _set_heights(self: RoiSampling, value: np.ndarray | None) -> None:
    self.__dict__["_heights_mm"] = value


RoiSampling.heights_mm = property(_get_heights, _set_heights, doc="``(N,)`` height (z extent) of each cell, mm.")  # type: ignore[assignment]
RoiSampling.extreme_points_mm = _lazy_coordinates("extreme_points_mm", "extreme_columns")  # type: ignore[assignment]


def slab_bounds(
    z: np.ndarray, default_thickness_mm: float | None, end_cap_spacings: float = 0.5,
    image_slices_z_mm: Sequence[float] = (),
) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Lower and upper face of each plane's slab, and the nominal spacing.

    Inside the stack a slab's faces lie half-way to the neighbouring planes. The first and
    last slab, and the slabs beside a gap, reach ``end_cap_spacings`` of a spacing beyond
    their plane. What is a gap, and which spacing:

    * with the image slices the ROI was contoured on (``image_slices_z_mm``, every plane on
      a slice: :attr:`plancheck.model.structures.Roi.image_slices_z_mm`): a gap is an image
      slice between two contour planes (a slice without a contour); the reach is taken of the
      spacing to the next image slice on that side (the series' end spacing on its first or
      last slice). A CT whose slice spacing changes (1 mm through the target, 3 mm
      elsewhere) then has no gap where the spacing changes;
    * without them: planes further apart than ``_GAP_FACTOR`` times the nominal spacing
      (the median of the plane gaps) are a gap, and the reach is taken of the nominal spacing.

    Parameters
    ----------
    z
        Plane positions, mm, ascending.
    default_thickness_mm
        Assumed spacing of a single-plane ROI (1 mm when not given).
    end_cap_spacings
        Reach of the end slabs (and of slabs beside a gap) beyond their plane, in spacings
        (the volume model's ``end_cap_spacings``; ½: the slab model).
    image_slices_z_mm
        z (mm, ascending) of the image slices, or empty when unknown.

    Returns
    -------
    lo, hi, spacing_mm, notes
        Slab faces (mm), the nominal spacing (median of the plane gaps), remarks.
    """
    notes: list[str] = []
    if len(z) == 1:
        t = default_thickness_mm if default_thickness_mm and default_thickness_mm > 0 else 1.0
        notes.append(f"single contour plane: slab thickness {2 * end_cap_spacings * t:g} mm assumed "
                     f"({2 * end_cap_spacings:g} × {t:g} mm)")
        return z - end_cap_spacings * t, z + end_cap_spacings * t, t, notes
    gaps = np.diff(z)
    t = float(np.median(gaps))
    slices = np.asarray(image_slices_z_mm, dtype=float)
    if slices.size >= 2:
        big, below, above = _gaps_by_image_slices(z, slices)
        reach_lo = end_cap_spacings * below
        reach_hi = end_cap_spacings * above
        why = "image slices without a contour"
    else:
        big = gaps > _GAP_FACTOR * t
        reach_lo = reach_hi = np.full(len(z), end_cap_spacings * t)
        why = ""
    lo = np.empty_like(z)
    hi = np.empty_like(z)
    lo[0] = z[0] - reach_lo[0]
    hi[-1] = z[-1] + reach_hi[-1]
    mid = (z[:-1] + z[1:]) / 2
    hi[:-1] = np.where(big, z[:-1] + reach_hi[:-1], mid)
    lo[1:] = np.where(big, z[1:] - reach_lo[1:], mid)
    if big.any():
        if why:
            notes.append(f"{int(big.sum())} gap(s) in the contour stack ({why}): slabs end "
                         f"{end_cap_spacings:g} of the slice spacing from the plane")
        else:
            notes.append(f"{int(big.sum())} gap(s) in the contour stack: slabs end {end_cap_spacings * t:g} mm from the plane")
    return lo, hi, t, notes


def _gaps_by_image_slices(z: np.ndarray, slices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For contour planes ``z`` lying on image slices ``slices`` (both ascending, mm): whether an
    image slice lies between each pair of neighbouring planes (a gap), and the spacing from
    each plane to the next image slice below and above it (the series' first or last slice
    spacing for a plane on its first or last slice)."""
    tol = ON_SLICE_TOLERANCE_MM
    between = np.searchsorted(slices, z[1:] - tol, side="left") - np.searchsorted(slices, z[:-1] + tol, side="right")
    i_below = np.searchsorted(slices, z - tol, side="left") - 1
    i_above = np.searchsorted(slices, z + tol, side="right")
    below = np.where(i_below >= 0, z - slices[np.clip(i_below, 0, len(slices) - 1)], slices[1] - slices[0])
    above = np.where(i_above < len(slices), slices[np.clip(i_above, 0, len(slices) - 1)] - z, slices[-1] - slices[-2])
    return between > 0, below, above


def characteristic_thickness_mm(pset: PolygonSet, plane_areas_mm2: np.ndarray) -> float:
    """Characteristic thickness of an ROI, mm: the area-weighted median over its planes of
    ``2·A/P`` (plane area over its contour perimeter, holes included) — the radius of a
    disc, the width of a thin rind (a skin ring whose end planes are full discs keeps the
    width of its rind); inf without edges."""
    verts = pset.vertices
    if len(verts) == 0:
        return math.inf
    delta = verts[pset.next_index] - verts
    length = np.hypot(delta[:, 0], delta[:, 1])
    perimeter = np.bincount(np.repeat(pset.plane, pset.length), weights=length, minlength=len(plane_areas_mm2))
    area = np.asarray(plane_areas_mm2, dtype=float)
    ok = (perimeter > 0) & (area > 0)
    if not ok.any():
        return math.inf
    t = 2.0 * area[ok] / perimeter[ok]
    order = np.argsort(t)
    cum = np.cumsum(area[ok][order])
    return float(t[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _edge_points(pset: PolygonSet, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices plus points along each edge no further apart than ``step_mm``, and
    the plane of each point."""
    from plancheck.kernels import edge_points

    return edge_points(np.ascontiguousarray(pset.vertices, dtype=float), pset.next_index,
                       np.repeat(pset.plane, pset.length), float(step_mm))


def sample_roi(
    roi: Roi,
    *,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
    min_step_mm: float = 0.1,
    max_step_mm: float = 3.0,
    default_thickness_mm: float | None = None,
    split_z_mm: np.ndarray | None = None,
    surface_step_mm: float | None = None,
    volume_model: VolumeModel | None = None,
) -> RoiSampling:
    """Fill an ROI with weighted sample points (see the module docstring for the model).

    Parameters
    ----------
    roi
        The ROI; only its closed planar contours are used.
    target_samples
        Lattice points aimed for, over all planes.
    min_step_mm, max_step_mm
        Bounds of the lattice step, mm. Callers pass the dose grid's smallest
        spacing as ``max_step_mm`` so a large organ is never sampled coarser
        than its dose.
    default_thickness_mm
        Slab thickness for an ROI contoured on a single plane (e.g. the CT
        slice thickness or dose grid spacing); 1 mm when not given.
    split_z_mm
        z positions of the dose planes: cells are split there, and surface
        points are added there, so extremes between faces are not missed.
    surface_step_mm
        Surface points lie along the contour edges no further apart than the
        larger of this and the lattice step (callers pass ¼ of the dose spacing:
        between dose-grid lines the trilinear dose along an edge is at most
        quadratic, so the largest value missed between two points is below
        1/128 of the dose's second difference over one voxel). Contour vertices
        are always surface points.
    volume_model
        End caps and extremes convention (:mod:`plancheck.model.volume_model`); default:
        the ROI's own ``volume_model`` (its structure set's).

    Returns
    -------
    RoiSampling
        Empty (zero samples, zero volume) for an ROI without closed contours.

    Raises
    ------
    StructureDefectError
        The ROI has defects (``Roi.defects``): it is never measured.
    """
    if roi.defects:  # read but not measurable: never sampled (see Roi.defects)
        raise StructureDefectError(roi.defect_text)
    model = volume_model if volume_model is not None else roi.volume_model
    planes = roi.planes
    if not planes:
        empty = np.zeros((0, 3))
        return RoiSampling(empty, np.zeros(0), np.zeros(0), empty, 0.0, 0.0, 0.0, ("no closed planar contours",))
    z = np.array(list(planes.keys()), dtype=float)
    polys = list(planes.values())
    pset = PolygonSet.from_planes(polys)
    lo, hi, thickness, notes = slab_bounds(z, default_thickness_mm, model.end_cap_spacings, roi.image_slices_z_mm)
    slab = hi - lo
    if not np.any(slab > 0):
        empty = np.zeros((0, 3))
        return RoiSampling(empty, np.zeros(0), np.zeros(0), empty, 0.0, 0.0, thickness,
                           tuple(notes + [f"no volume under the {model.name} volume model (a single plane without end caps)"]))

    areas = plane_areas_mm2(pset)
    nested = ~np.isnan(areas)
    for k in np.flatnonzero(~nested):
        notes.append(f"contours at z={z[k]:g} mm overlap without nesting: area from the raster")
    rough = np.zeros(len(z))
    np.add.at(rough, pset.plane, np.abs(pset.signed_areas_mm2()))
    rough_area = np.where(nested, areas, rough)
    split = np.unique(np.asarray(split_z_mm, dtype=float)) if split_z_mm is not None else np.zeros(0)
    seg_lo, seg_hi, seg_count = _segments(lo, hi, split)
    area_estimate = float(np.sum(rough_area * seg_count))  # lattice cells x segments, per mm^2 of step
    if area_estimate <= 0:
        empty = np.zeros((0, 3))
        return RoiSampling(empty, np.zeros(0), np.zeros(0), empty, 0.0, 0.0, thickness, tuple(notes + ["zero-area contours"]))
    step = (area_estimate / target_samples) ** 0.5
    roi_thickness = characteristic_thickness_mm(pset, rough_area)
    thickness_cap = roi_thickness / THICKNESS_SAMPLES
    step = float(min(max(min(step, thickness_cap), min_step_mm), max_step_mm))

    all_xy = pset.vertices
    x0 = math.floor(all_xy[:, 0].min() / step) * step - step
    y0 = math.floor(all_xy[:, 1].min() / step) * step - step
    nx = int(math.ceil((all_xy[:, 0].max() - x0) / step)) + 2
    ny = int(math.ceil((all_xy[:, 1].max() - y0) / step)) + 2
    lattice = PlaneLattice(x0, y0, step, nx, ny)
    plane_idx, col, row = rasterize_polygon_set(pset, lattice)
    counts = np.bincount(plane_idx, minlength=len(z))
    area = np.where(nested, areas, counts * step * step)
    # A plane whose polygons are smaller than one lattice cell: one sample at its centroid.
    tiny = np.flatnonzero((counts == 0) & (area > 0))
    n_lattice = len(plane_idx)
    tiny_xy = np.zeros((0, 2))
    if tiny.size:
        tiny_xy = np.array([np.vstack(polys[k]).mean(axis=0) for k in tiny], dtype=float).reshape(-1, 2)
        plane_idx = np.concatenate([plane_idx, tiny])
        counts = np.bincount(plane_idx, minlength=len(z))
    area_per_sample = np.divide(area, counts, out=np.zeros_like(area), where=counts > 0)

    # Columns through each slab, split at the dose planes (cells slot-major, see PointColumns).
    z_cells = (seg_lo + seg_hi) / 2
    heights_table = seg_hi - seg_lo
    # lattice columns: in-plane positions computed from the lattice when needed
    cell_columns = [PointColumns(None, plane_idx[:n_lattice], z_cells, seg_count, lattice, col, row, heights_table)]
    if tiny.size:
        cell_columns.append(PointColumns(tiny_xy, plane_idx[n_lattice:], z_cells, seg_count, z_extent_mm=heights_table))
    weights_table = area_per_sample[:, None] * heights_table / 1000.0
    weights_cc = np.concatenate([c.slot_major(weights_table) for c in cell_columns])

    if model.surface_extremes:
        extreme_columns = _extreme_columns(pset, z, lo, hi, max(step, surface_step_mm or 0.0), cell_columns, split)
    else:
        extreme_columns = ()  # minimum and maximum from the sample cells only
    return RoiSampling(
        points_mm=None,  # built from the columns when used
        heights_mm=None,  # built from the columns when used
        weights_cc=weights_cc,
        extreme_points_mm=None,
        volume_cc=float(np.sum(area * slab) / 1000.0),
        step_mm=step,
        thickness_mm=thickness,
        notes=tuple(notes),
        cell_columns=tuple(cell_columns),
        extreme_columns=extreme_columns,
        characteristic_thickness_mm=roi_thickness,
        slab_lo_mm=lo,
        slab_hi_mm=hi,
        surface_extremes=model.surface_extremes,
    )


def _segments(lo: np.ndarray, hi: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each slab ``[lo_k, hi_k]`` at the ``split`` positions strictly inside it
    (by more than 1e-6 mm).

    Returns the lower and upper z of the segments of each plane as ``(planes, S)``
    tables (rows padded by repeating the last segment) and the number of segments of
    each plane.
    """
    first = np.searchsorted(split, lo + 1e-6, side="right")
    stop = np.searchsorted(split, hi - 1e-6, side="left")
    inner = np.maximum(stop - first, 0)
    count = inner + 1
    s = int(count.max())
    # bounds[k, i] for i <= count[k]: lo, the inner splits, hi; then hi repeated
    bounds = np.empty((len(lo), s + 1))
    idx = first[:, None] + np.arange(s + 1)[None, :] - 1
    bounds[:] = split[np.clip(idx, 0, max(len(split) - 1, 0))] if len(split) else 0.0
    bounds[:, 0] = lo
    col = np.arange(s + 1)[None, :]
    bounds = np.where(col > inner[:, None], hi[:, None], bounds)
    seg_lo = bounds[:, :-1].copy()
    seg_hi = bounds[:, 1:].copy()
    pad = np.arange(s)[None, :] >= count[:, None]
    last = count - 1
    rows = np.arange(len(lo))
    seg_lo = np.where(pad, seg_lo[rows, last][:, None], seg_lo)
    seg_hi = np.where(pad, seg_hi[rows, last][:, None], seg_hi)
    return seg_lo, seg_hi, count


def _extreme_columns(pset: PolygonSet, z, lo, hi, step, cell_columns, extra) -> tuple[PointColumns, ...]:
    """Surface points: contour edges on both slab faces (and at extra z inside the
    slab), and the interior samples on the outer faces of end slabs."""
    out = []
    edge, edge_plane = _edge_points(pset, step)
    # z of each plane: lo, hi, then the extra positions strictly inside
    if extra.size:
        first = np.searchsorted(extra, lo, side="right")
        inner = np.maximum(np.searchsorted(extra, hi, side="left") - first, 0)
    else:
        first = inner = np.zeros(len(z), dtype=np.int64)
    count = inner + 2
    s = int(count.max())
    table = np.empty((len(z), s))
    table[:, 0] = lo
    table[:, 1] = hi
    if s > 2:
        idx = first[:, None] + np.arange(s - 2)[None, :]
        valid = np.arange(s - 2)[None, :] < inner[:, None]
        table[:, 2:] = np.where(valid, extra[np.clip(idx, 0, len(extra) - 1)], hi[:, None])
    if len(edge):
        out.append(PointColumns(edge, edge_plane, table, count))
    # End caps: faces not shared with a neighbouring slab.
    shared_below = np.zeros(len(z), dtype=bool)
    shared_below[1:] = np.isclose(lo[1:], hi[:-1])
    shared_above = np.zeros(len(z), dtype=bool)
    shared_above[:-1] = shared_below[1:]
    caps = (~shared_below).astype(np.int64) + (~shared_above)
    cap_table = np.column_stack([np.where(shared_below, hi, lo), hi])
    for columns in cell_columns:
        sel = caps[columns.plane] > 0
        if sel.any():
            if columns.xy_mm is None:  # lattice columns: positions of the selected ones only
                lat = columns.lattice
                xy = np.column_stack([lat.x0_mm + (columns.col[sel] + 0.5) * lat.step_mm,
                                      lat.y0_mm + (columns.row[sel] + 0.5) * lat.step_mm])
            else:
                xy = columns.xy_mm[sel]
            out.append(PointColumns(xy, columns.plane[sel], cap_table, caps))
    return tuple(out)
