"""The one module that talks to dicompyler-core: DVH conversion and its engine.

* :func:`to_dicompyler` / :func:`from_dicompyler` convert between plancheck's
  :class:`~plancheck.dvh.dvh.DVH` and ``dicompylercore.dvh.DVH``.
* :func:`dicompyler_dvh` runs dicompyler-core's ``dvhcalc.get_dvh`` (its
  reference algorithm: dose-voxel centres tested inside each contour, no
  partial volume, no interpolation between dose planes, 0.01 Gy bins) on the
  same files, for ``--engine dicompyler`` and for cross-checks.

dicompyler-core 0.5.6 needs a pydicom 2 name at import; see
:mod:`plancheck.dicom.compat` for how plancheck provides it without changing pydicom.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plancheck.dicom.compat import load_dataset, pydicom_read_file_alias
from plancheck.dvh.dvh import DVH
from plancheck.errors import UsageError

__all__ = ["to_dicompyler", "from_dicompyler", "dicompyler_dvh", "DICOMPYLER_BIN_WIDTH_GY"]

DICOMPYLER_BIN_WIDTH_GY = 0.01
"""dicompyler-core's histogram resolution (1 cGy)."""


def _dvh_module() -> Any:
    from dicompylercore import dvh as dc_dvh

    return dc_dvh


def _dvhcalc_module() -> Any:
    with pydicom_read_file_alias():
        from dicompylercore import dicomparser  # noqa: F401  (imported once, under the alias)
        from dicompylercore import dvhcalc
    return dvhcalc


def to_dicompyler(dvh: DVH, bin_width_gy: float = DICOMPYLER_BIN_WIDTH_GY) -> Any:
    """A cumulative ``dicompylercore.dvh.DVH`` (Gy, cm³) of the covered part of ``dvh``.

    The fine plancheck histogram is re-binned to ``bin_width_gy`` (a multiple of
    plancheck's bin width is exact; otherwise the cumulative curve is interpolated).
    """
    dc_dvh = _dvh_module()
    if dvh.is_empty:
        return dc_dvh.DVH(np.array([0.0]), np.array([0.0, bin_width_gy]), dvh_type="differential", name=dvh.name).cumulative
    edges = np.arange(0.0, float(dvh.max_gy) + 2 * bin_width_gy, bin_width_gy)
    cumulative = np.array([dvh.covered_volume_at_dose_cc(e) for e in edges])
    differential = -np.diff(cumulative)
    return dc_dvh.DVH(differential, edges, dvh_type="differential", dose_units="Gy", volume_units="cm3", name=dvh.name).cumulative


def from_dicompyler(dc: Any, *, name: str | None = None, volume_cc: float | None = None, notes: tuple[str, ...] = ()) -> DVH:
    """A plancheck DVH from a ``dicompylercore.dvh.DVH`` in absolute dose (Gy) and volume (cm³).

    dicompyler-core's bins must be uniform and start at 0 Gy (as ``dvhcalc`` makes them).
    """
    if getattr(dc, "dose_units", "Gy") != "Gy" or getattr(dc, "volume_units", "cm3") != "cm3":
        raise UsageError(f"dicompyler-core DVH must be in Gy and cm3, got {dc.dose_units} and {dc.volume_units}")
    diff = dc.differential
    bins = np.asarray(diff.bins, dtype=float)
    widths = np.diff(bins)
    if bins.size < 2 or abs(bins[0]) > 1e-12 or not np.allclose(widths, widths[0]):
        raise UsageError("dicompyler-core DVH bins must be uniform from 0 Gy to convert")
    counts = np.asarray(diff.counts, dtype=float)
    return DVH.from_differential(
        name or dc.name or "",
        float(widths[0]),
        counts,
        volume_cc=volume_cc,
        min_gy=float(dc.min),
        max_gy=float(dc.max),
        mean_gy=float(dc.mean),
        engine="dicompyler-core",
        notes=notes,
    )


def dicompyler_dvh(structure_set_path: str, dose_path: str, roi_number: int, *, name: str = "", covered_fraction: float = 1.0) -> DVH:
    """Compute a DVH with dicompyler-core's ``dvhcalc.get_dvh`` (default settings).

    Parameters
    ----------
    structure_set_path, dose_path
        The RTSTRUCT and a single RTDOSE file (dicompyler-core cannot sum doses).
    roi_number
        ROI Number of the structure.
    covered_fraction
        Fraction of the structure volume inside the dose grid, as measured by
        plancheck's geometry (dicompyler-core does not report it); the rest is
        kept as uncovered volume so coverage-dependent metrics stay undefined.
    """
    dvhcalc = _dvhcalc_module()
    dc = dvhcalc.get_dvh(load_dataset(structure_set_path), load_dataset(dose_path), roi_number)
    notes = ("dicompyler-core 0.5.6 dvhcalc.get_dvh, default settings",)
    if dc.volume == 0 or not np.any(np.asarray(dc.counts) > 0):
        return DVH(name, DICOMPYLER_BIN_WIDTH_GY, np.zeros(0), float(dc.volume), None, None, None, engine="dicompyler-core", notes=notes)
    dvh = from_dicompyler(dc, name=name, notes=notes)
    if covered_fraction < 1.0:
        return DVH(
            dvh.name, dvh.bin_width_gy, dvh.differential_cc * covered_fraction, dvh.volume_cc,
            dvh.min_gy, dvh.max_gy, dvh.mean_gy, dvh.dose_kind, dvh.engine, dvh.notes,
        )
    return dvh
