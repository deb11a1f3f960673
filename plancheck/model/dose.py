"""Dose grid model: a 3-D dose distribution in Gy on an axis-aligned grid in the patient frame.

References
----------
DICOM PS3.3 C.8.8.3 (RT Dose module), C.7.6.2 (Image Plane module).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["DoseGrid", "DoseSource", "RBE_WEIGHTED", "dose_kind_label"]

#: How an RBE-weighted dose (Dose Type EFFECTIVE, PS3.3 C.8.8.3) is named in every output.
RBE_WEIGHTED = "RBE-weighted (EFFECTIVE)"


def dose_kind_label(kind_label: str, dose_type: str) -> str:
    """The dose kind of a result, saying when the dose is RBE-weighted.

    Parameters
    ----------
    kind_label
        ``physical`` or a conversion's label such as ``EQD2(α/β=3 Gy)``.
    dose_type
        The grid's Dose Type (3004,0004): ``PHYSICAL`` or ``EFFECTIVE``.

    Returns
    -------
    str
        ``kind_label`` for a physical dose; for an EFFECTIVE dose ``RBE-weighted
        (EFFECTIVE)`` instead of ``physical``, and e.g. ``EQD2(α/β=3 Gy) of RBE-weighted
        dose`` for a conversion (EQD2/BED computed from the RBE-weighted dose, not from the
        physical dose).

    Examples
    --------
    >>> dose_kind_label("physical", "EFFECTIVE")
    'RBE-weighted (EFFECTIVE)'
    >>> dose_kind_label("EQD2(α/β=3 Gy)", "EFFECTIVE")
    'EQD2(α/β=3 Gy) of RBE-weighted dose'
    """
    if dose_type.strip().upper() != "EFFECTIVE":
        return kind_label
    return RBE_WEIGHTED if kind_label == "physical" else f"{kind_label} of RBE-weighted dose"


@dataclass(frozen=True)
class DoseSource:
    """One RTDOSE file that contributed to a dose grid.

    Attributes
    ----------
    path
        The file.
    sop_instance_uid
        Its SOP Instance UID.
    summation_type
        Dose Summation Type (3004,000A): ``PLAN``, ``FRACTION``, ``BEAM``, ...
    referenced_beam_numbers
        For BEAM doses, the beams it holds.
    """

    path: str
    sop_instance_uid: str
    summation_type: str
    referenced_beam_numbers: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class DoseGrid:
    """A dose distribution on an axis-aligned rectilinear grid.

    Conventions: ``dose_gy[k, j, i]`` is the dose (Gy, DoseGridScaling applied)
    at the voxel centre ``(x_mm[i], y_mm[j], z_mm[k])`` in DICOM patient
    coordinates; all three coordinate vectors are strictly increasing (a grid
    stored with reversed axes is flipped when read). Each voxel is taken to
    fill the box of half a spacing around its centre, so the grid covers
    ``x_mm[0] - dx/2 .. x_mm[-1] + dx/2`` (and likewise in y and z).

    Attributes
    ----------
    dose_gy
        ``(nz, ny, nx)`` float array, Gy.
    x_mm, y_mm, z_mm
        Voxel-centre coordinates along each axis, mm, increasing.
    frame_of_reference_uid
        Frame of reference of the grid.
    dose_type
        ``PHYSICAL`` or ``EFFECTIVE`` (3004,0004); ``""`` when the file does not say (read
        as physical; the dose summary says so and INT-DOSE-UNITS warns). The readers refuse
        ``ERROR``, which is not a dose.
    summation_type
        ``PLAN`` for a plan dose, or ``SUMMED`` when plancheck summed several
        BEAM/FRACTION files (see ``sources``), else the file's own value.
    heterogeneity_correction
        Tissue Heterogeneity Correction (3004,0014) values, e.g. ``("IMAGE",)``;
        empty when not given.
    referenced_plan_uid
        SOP Instance UID of the RT Plan the dose belongs to.
    sources
        The RTDOSE file(s) it was made from.
    fractions_in_dose
        How many fractions the dose represents: the planned number for a PLAN
        dose, 1 for a FRACTION dose (plancheck scales FRACTION doses to the
        plan before summing and records it here as the planned number).
    """

    dose_gy: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray
    frame_of_reference_uid: str
    dose_type: str = "PHYSICAL"
    summation_type: str = "PLAN"
    heterogeneity_correction: tuple[str, ...] = ()
    referenced_plan_uid: str = ""
    sources: tuple[DoseSource, ...] = ()
    description: str = field(default="")

    def __post_init__(self) -> None:
        shape = (len(self.z_mm), len(self.y_mm), len(self.x_mm))
        if self.dose_gy.shape != shape:
            raise ValueError(f"dose array shape {self.dose_gy.shape} does not match coordinates {shape}")
        for name in ("x_mm", "y_mm", "z_mm"):
            axis = np.asarray(getattr(self, name))
            if axis.size > 1 and not np.all(np.diff(axis) > 0):
                raise ValueError(f"{name} must be strictly increasing")

    @property
    def is_rbe_weighted(self) -> bool:
        """True for Dose Type EFFECTIVE (RBE-weighted dose, e.g. protons: Gy(RBE))."""
        return self.dose_type.strip().upper() == "EFFECTIVE"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.dose_gy.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Mean voxel spacing (dx, dy, dz) in mm; 0 along an axis with one voxel."""
        return tuple(float(np.mean(np.diff(a))) if len(a) > 1 else 0.0 for a in (self.x_mm, self.y_mm, self.z_mm))  # type: ignore[return-value]

    @cached_property
    def regular_steps_mm(self) -> tuple[float | None, float | None, float | None]:
        """The constant voxel spacing (mm) along x, y and z, or None along an axis whose
        spacings differ (by more than 1e-6 relative and 1e-6 mm) or that has one voxel.
        Computed once per grid (the dose interpolation asks for it on every call)."""
        out = []
        for axis in (self.x_mm, self.y_mm, self.z_mm):
            steps = np.diff(np.asarray(axis, dtype=float))
            regular = steps.size > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=1e-6)
            out.append(float(steps[0]) if regular else None)
        return tuple(out)  # type: ignore[return-value]

    @property
    def max_dose_gy(self) -> float:
        return float(np.max(self.dose_gy))

    @property
    def number_of_voxels(self) -> int:
        return int(self.dose_gy.size)
