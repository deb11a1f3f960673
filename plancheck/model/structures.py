"""Structure set model: ROIs and their planar contours, in mm in the patient frame.

References
----------
DICOM PS3.3 C.8.8.5 (Structure Set module), C.8.8.6 (ROI Contour module),
C.8.8.8 (RT ROI Observations module).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from plancheck.model.volume_model import SLAB, VolumeModel

__all__ = ["Contour", "Roi", "StructureSet", "CLOSED_TYPES", "ON_SLICE_TOLERANCE_MM"]

#: Contour Geometric Types that enclose an area (PS3.3 C.8.8.6.3).
CLOSED_TYPES = frozenset({"CLOSED_PLANAR", "CLOSEDPLANAR_XOR"})


@dataclass(frozen=True, eq=False)
class Contour:
    """One closed planar contour.

    Attributes
    ----------
    points_mm
        ``(N, 3)`` float array of x, y, z in mm (DICOM patient coordinates);
        all z equal for an axial contour. N >= 3.
    geometric_type
        DICOM Contour Geometric Type (``CLOSED_PLANAR`` or ``CLOSEDPLANAR_XOR``, both
        combined with the other contours of their plane by the even-odd rule; ``POINT``,
        ``OPEN_PLANAR`` and ``OPEN_NONPLANAR`` contours are kept but carry no volume: an
        ROI made only of them is not a volume, and one that mixes them with closed
        contours is a defect, see :mod:`plancheck.dicom.roi_checks`).
    image_uid
        Referenced SOP Instance UID of the image the contour was drawn on (Contour Image
        Sequence (3006,0016)), or "" when not given.
    """

    points_mm: np.ndarray
    geometric_type: str = "CLOSED_PLANAR"
    image_uid: str = ""

    @property
    def z_mm(self) -> float:
        """The contour's plane position (mean z, mm)."""
        return float(np.mean(self.points_mm[:, 2]))

    @property
    def is_closed_planar(self) -> bool:
        """True for ``CLOSED_PLANAR`` and ``CLOSEDPLANAR_XOR`` (PS3.3 C.8.8.6.3): contours
        that enclose an area. plancheck combines every closed contour of a plane with the
        even-odd rule, which is the XOR the second type states explicitly."""
        return self.geometric_type in CLOSED_TYPES


ON_SLICE_TOLERANCE_MM = 0.05
"""A contour plane this close to an image slice (mm) lies on it (:attr:`Roi.image_slices_z_mm`)."""


@dataclass(frozen=True, eq=False)
class Roi:
    """A region of interest of a structure set.

    Holes and multiple islands are encoded as several contours on one plane;
    plancheck combines them with the even-odd rule (a point is inside when it
    is inside an odd number of the plane's contours).

    Attributes
    ----------
    number
        ROI Number (3006,0022).
    name
        ROI Name (3006,0026) as exported.
    interpreted_type
        RT ROI Interpreted Type (3006,00A4), e.g. ``EXTERNAL``, ``PTV``,
        ``ORGAN``; empty string when absent.
    contours
        The ROI's contours (all geometric types).
    color_rgb
        ROI Display Color, if given.
    volume_model
        How the contours become a volume (end caps, surface extremes): the structure
        set's model (see :mod:`plancheck.model.volume_model`); the slab model by default.
    defects
        Why the ROI cannot be measured reliably although it was read (one line each, in
        words a dosimetrist understands, without patient data), e.g. two ROIs sharing
        its ROI Number, contours crossing each other, contours far from the CT slices
        they reference. Empty for a sound ROI. Every consumer refuses to measure a
        defective ROI: rules on it are NOT EVALUATED with these reasons, ``plancheck dvh``
        reports it as not computed (see ``docs/input-validation.md``).
    image_slices_z_mm
        z (mm, ascending) of the slices of the image series the ROI was contoured on, when
        that series is in the export and every contour plane lies on one of its slices;
        empty otherwise. It tells a gap in the contour stack (an image slice between two
        contour planes without a contour) from a change of slice spacing, and gives the end
        slabs the local slice spacing (:func:`plancheck.dvh.sampling.slab_bounds`).
    """

    number: int
    name: str
    interpreted_type: str = ""
    contours: tuple[Contour, ...] = ()
    color_rgb: tuple[int, int, int] | None = None
    volume_model: VolumeModel = SLAB
    defects: tuple[str, ...] = ()
    image_slices_z_mm: tuple[float, ...] = ()

    @property
    def defect_text(self) -> str:
        """``ROI 'Heart' cannot be measured: reason; reason`` ("" for a sound ROI)."""
        if not self.defects:
            return ""
        return f"structure {self.name!r} cannot be measured: " + "; ".join(self.defects)

    @cached_property
    def planes(self) -> Mapping[float, tuple[np.ndarray, ...]]:
        """Closed planar polygons grouped by plane, ``{z_mm: ((N, 2) xy arrays, ...)}``,
        sorted by z. Planes closer than 1e-3 mm are merged. Contours of other geometric
        types are not part of the volume (an ROI mixing them with closed contours carries
        a defect, so it is never measured)."""
        by_z: dict[float, list[np.ndarray]] = {}
        for contour in self.contours:
            if not contour.is_closed_planar or len(contour.points_mm) < 3:
                continue
            z = round(contour.z_mm, 3)
            by_z.setdefault(z, []).append(np.ascontiguousarray(contour.points_mm[:, :2], dtype=float))
        return {z: tuple(by_z[z]) for z in sorted(by_z)}

    @property
    def is_empty(self) -> bool:
        """True when the ROI has no closed planar contour (no volume)."""
        return not self.planes

    @property
    def number_of_contours(self) -> int:
        return sum(len(p) for p in self.planes.values())

    @property
    def number_of_points(self) -> int:
        """Vertices of all closed planar contours (a measure of the work the ROI takes)."""
        return sum(len(polygon) for polygons in self.planes.values() for polygon in polygons)


@dataclass(frozen=True, eq=False)
class StructureSet:
    """An RT Structure Set.

    Attributes
    ----------
    sop_instance_uid
        SOP Instance UID of the RTSTRUCT.
    frame_of_reference_uid
        The frame of reference the contours are defined in.
    label
        Structure Set Label.
    rois
        ROIs in file order.
    path
        The file it was read from (empty when built in memory).
    manufacturer
        Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090) of the file,
        joined by " / " when both are given (empty when absent).
    volume_model
        The volume model its ROIs carry (see :mod:`plancheck.model.volume_model`).
    volume_model_source
        Why that model: e.g. ``"Manufacturer 'Varian Medical Systems' of the RT Structure Set"``,
        ``"--volume-model"``, or ``"default: Manufacturer not recognised"``.
    """

    sop_instance_uid: str
    frame_of_reference_uid: str
    label: str = ""
    rois: tuple[Roi, ...] = ()
    path: str = ""
    patient_id: str = field(default="", repr=False)
    manufacturer: str = ""
    volume_model: VolumeModel = SLAB
    volume_model_source: str = "default"

    def with_volume_model(self, model: VolumeModel, source: str) -> StructureSet:
        """A copy whose ROIs (and itself) carry ``model``; ``source`` says why (for reports).

        Parameters
        ----------
        model
            The volume model (see :mod:`plancheck.model.volume_model`).
        source
            One phrase naming where the choice came from, e.g. ``"--volume-model"``.
        """
        rois = tuple(r if r.volume_model == model else replace(r, volume_model=model) for r in self.rois)
        return replace(self, rois=rois, volume_model=model, volume_model_source=source)

    @property
    def volume_model_description(self) -> str:
        """``eclipse: ... (from Manufacturer ...)``: the model and why, for report headers."""
        return f"{self.volume_model.describe()} (chosen by {self.volume_model_source})"

    def roi_by_number(self, number: int) -> Roi:
        for roi in self.rois:
            if roi.number == number:
                return roi
        raise KeyError(f"no ROI number {number} in structure set {self.label!r}")

    def roi_by_name(self, name: str) -> Roi:
        """The ROI whose name equals ``name`` exactly (case-sensitive)."""
        for roi in self.rois:
            if roi.name == name:
                return roi
        raise KeyError(f"no ROI named {name!r} in structure set {self.label!r}")
