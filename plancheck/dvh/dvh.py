"""plancheck's DVH type: a fine differential histogram of the covered volume,
exact minimum, maximum and mean, and the volume the dose grid does not cover.

Conventions
-----------
* Doses in Gy (physical, or EQD2/BED as ``dose_kind`` says), volumes in cc.
* The differential histogram has uniform bins of ``bin_width_gy`` from 0 Gy;
  bin ``k`` holds the volume with dose in ``[k·w, (k+1)·w)``.
* The cumulative curve V(D) (volume receiving at least D) is piecewise linear
  through the bin edges, starting at the exact minimum dose (full covered
  volume) and ending at the exact maximum (zero volume): within a bin the dose
  is taken as uniformly spread. D(v) is the inverse of that curve, so
  metrics are interpolated, never read off the nearest bin.
* Volume outside the dose grid (``uncovered_volume_cc``) has unknown dose. It
  is not in the histogram; metrics that depend on it are undefined (see
  :mod:`plancheck.dvh.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["DVH", "DEFAULT_BIN_WIDTH_GY", "DOSE_EQUAL_GY", "MAX_BINS"]

DEFAULT_BIN_WIDTH_GY = 0.001
"""Histogram bin width, Gy (1 mGy: far below any clinical tolerance)."""

DOSE_EQUAL_GY = 1e-9
"""Doses this close to the minimum count as the minimum in V(D) (volume receiving at least D):
floating-point sums and LQ conversions put a plateau meant to be exactly D a few 1e-15 Gy below
it (10 + 20 Gy from two courses, or an EQD2 of exactly D), and V(D) must not drop from the whole
volume to 0 for that (a V30Gy limit passed at 0 % for a structure all at 30 Gy)."""

MAX_BINS = 400_000
"""The bin width grows beyond the default when the maximum dose would need more bins."""


def sample_stats(doses: np.ndarray, weights: np.ndarray) -> tuple[float, float, float, float, int]:
    """Minimum, maximum, volume and dose-volume integral of the covered samples (NaN
    doses left out, negative doses taken as 0), and their number."""
    from plancheck.kernels import sample_stats as kernel

    lo, hi, w_sum, dw_sum, n = kernel(np.ascontiguousarray(doses, dtype=float), np.ascontiguousarray(weights, dtype=float))
    return float(lo), float(hi), float(w_sum), float(dw_sum), int(n)


SampleSet = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]
"""Doses (Gy), weights (cc) and optional spread widths (Gy) of a set of samples."""


def _histogram(parts: Sequence[SampleSet], lo: float, hi: float, width: float) -> np.ndarray:
    """Differential histogram (bins of ``width`` from 0) of the samples of all parts:
    doses ``d`` (NaN: not covered, left out; negative: 0) with volumes ``w``, each spread
    uniformly over ``d ± spread/2`` within ``[lo, hi]``.

    A uniform spread of density ρ over [a, b] contributes
    G(x) = ρ·(clip(x, a, b) − a) to the integral of volume below x; G at every bin
    edge is a difference of cumulative sums, so the exact bin contents come
    from four accumulated arrays (one compiled pass over the samples,
    :func:`plancheck.kernels.spread_histogram`). Spreads narrower than a bin
    are put at their centre.
    """
    from plancheck.kernels import spread_histogram

    nbins = int(hi / width) + 1
    hist = np.zeros(nbins)
    r1a = np.zeros(nbins + 2)
    r2a = np.zeros(nbins + 2)
    r1b = np.zeros(nbins + 2)
    r2b = np.zeros(nbins + 2)
    spread_total = 0.0
    for d, w, spread in parts:
        spread_arg = np.zeros(0) if spread is None else np.ascontiguousarray(spread, dtype=float)
        spread_total += spread_histogram(np.ascontiguousarray(d, dtype=float), np.ascontiguousarray(w, dtype=float),
                                         spread_arg, float(lo), float(hi), float(width), hist, r1a, r2a, r1b, r2b)
    if spread_total > 0:
        edges = np.arange(nbins + 1) * width
        below = edges * (np.cumsum(r1a)[: nbins + 1] - np.cumsum(r1b)[: nbins + 1]) - (
            np.cumsum(r2a)[: nbins + 1] - np.cumsum(r2b)[: nbins + 1]
        )
        hist += np.diff(below)
        hist[-1] += spread_total - below[-1]  # rounding only: every b lies below the last edge
    return np.maximum(hist, 0.0)


@dataclass(frozen=True, eq=False)
class DVH:
    """A dose-volume histogram of one structure.

    Attributes
    ----------
    name
        Structure name as exported.
    bin_width_gy
        Width of the differential bins, Gy.
    differential_cc
        Covered volume in each dose bin, cc.
    volume_cc
        Whole structure volume (covered and not), cc.
    min_gy, max_gy, mean_gy
        Exact minimum, maximum (surface points included) and mean (volume
        weighted) over the covered part; None when nothing is covered.
    dose_kind
        ``"physical"``, or e.g. ``"EQD2 (α/β = 3 Gy)"``.
    engine
        Which engine computed it (``"plancheck"`` or ``"dicompyler-core"``).
    notes
        Remarks (geometry assumptions, summation, sampling step).
    """

    name: str
    bin_width_gy: float
    differential_cc: np.ndarray
    volume_cc: float
    min_gy: float | None
    max_gy: float | None
    mean_gy: float | None
    dose_kind: str = "physical"
    engine: str = "plancheck"
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(
        cls,
        name: str,
        doses_gy: np.ndarray,
        weights_cc: np.ndarray,
        *,
        volume_cc: float | None = None,
        extreme_doses_gy: np.ndarray | None = None,
        dose_kind: str = "physical",
        engine: str = "plancheck",
        notes: tuple[str, ...] = (),
        bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
        spread_gy: np.ndarray | None = None,
        more_samples: Sequence[SampleSet] = (),
    ) -> DVH:
        """Build a DVH from weighted dose samples.

        Parameters
        ----------
        doses_gy
            Dose at each sample; NaN for samples outside the dose grid.
        weights_cc
            Volume each sample stands for, cc.
        volume_cc
            Whole structure volume; defaults to the sum of the weights.
        extreme_doses_gy
            Zero-weight doses (surface points) that only widen min and max;
            NaN entries are ignored.
        spread_gy
            Optional width (Gy) of the dose range inside each sample's cell:
            the sample's volume is spread uniformly over ``dose ± spread/2``
            (clipped to the minimum and maximum) instead of being put at one dose.
        more_samples
            Further sets of (doses, weights, spread or None) taken together with the
            first (e.g. refined sub-cells), without concatenating the arrays.
        """
        parts = [(np.asarray(doses_gy, dtype=float), np.asarray(weights_cc, dtype=float),
                  None if spread_gy is None else np.asarray(spread_gy, dtype=float))]
        parts += [(np.asarray(d, dtype=float), np.asarray(w, dtype=float), None if sp is None else np.asarray(sp, dtype=float))
                  for d, w, sp in more_samples]
        total = float(sum(w.sum() for _, w, _ in parts)) if volume_cc is None else float(volume_cc)
        # one compiled pass per part: range, volume and dose integral of the covered samples (dose clipped at 0)
        lo, hi, w_sum, dw_sum, n_covered = np.inf, -np.inf, 0.0, 0.0, 0
        for d, w, _ in parts:
            p_lo, p_hi, p_w, p_dw, p_n = sample_stats(d, w)
            if p_n:
                lo, hi = min(lo, p_lo), max(hi, p_hi)
                w_sum, dw_sum, n_covered = w_sum + p_w, dw_sum + p_dw, n_covered + p_n
        if n_covered == 0 or w_sum <= 0:
            return cls(name, bin_width_gy, np.zeros(0), total, None, None, None, dose_kind, engine, notes)
        if extreme_doses_gy is not None:
            ext = np.asarray(extreme_doses_gy, dtype=float)
            ext = ext[~np.isnan(ext)]
            if ext.size:
                lo, hi = min(lo, float(max(ext.min(), 0.0))), max(hi, float(ext.max()))
        width = max(bin_width_gy, hi / MAX_BINS)
        hist = _histogram(parts, lo, hi, width)
        mean = dw_sum / w_sum
        return cls(name, width, hist, total, lo, hi, mean, dose_kind, engine, notes)

    @classmethod
    def from_differential(
        cls,
        name: str,
        bin_width_gy: float,
        differential_cc: np.ndarray,
        *,
        volume_cc: float | None = None,
        min_gy: float | None = None,
        max_gy: float | None = None,
        mean_gy: float | None = None,
        dose_kind: str = "physical",
        engine: str = "plancheck",
        notes: tuple[str, ...] = (),
    ) -> DVH:
        """Build a DVH from a differential histogram with uniform bins from 0 Gy.

        Min, max and mean default to values derived from the bins (edges of the
        first and last non-empty bin, bin-centre mean).
        """
        hist = np.asarray(differential_cc, dtype=float)
        total = float(hist.sum()) if volume_cc is None else float(volume_cc)
        nonzero = np.flatnonzero(hist > 0)
        if nonzero.size == 0:
            return cls(name, bin_width_gy, np.zeros(0), total, None, None, None, dose_kind, engine, notes)
        centres = (np.arange(hist.size) + 0.5) * bin_width_gy
        lo = float(nonzero[0] * bin_width_gy) if min_gy is None else float(min_gy)
        hi = float((nonzero[-1] + 1) * bin_width_gy) if max_gy is None else float(max_gy)
        mean = float(np.dot(centres, hist) / hist.sum()) if mean_gy is None else float(mean_gy)
        return cls(name, bin_width_gy, hist, total, lo, hi, mean, dose_kind, engine, notes)

    # ------------------------------------------------------------------ volumes
    @property
    def covered_volume_cc(self) -> float:
        """Volume inside the dose grid, cc."""
        return float(self.differential_cc.sum())

    @property
    def uncovered_volume_cc(self) -> float:
        """Volume outside the dose grid (dose unknown), cc; tiny rounding is 0."""
        u = self.volume_cc - self.covered_volume_cc
        return u if u > 1e-6 * max(self.volume_cc, 1e-9) else 0.0

    @property
    def dose_coverage_pct(self) -> float:
        """Percentage of the structure volume inside the dose grid."""
        if self.volume_cc <= 0:
            return 0.0
        return 100.0 * (1.0 - self.uncovered_volume_cc / self.volume_cc)

    @property
    def is_empty(self) -> bool:
        return self.min_gy is None

    # ------------------------------------------------------------------ cumulative curve
    @cached_property
    def _knots(self) -> tuple[np.ndarray, np.ndarray]:
        """Knots of the covered cumulative curve: dose ascending, volume non-increasing."""
        hist = self.differential_cc
        w = self.bin_width_gy
        nonzero = np.flatnonzero(hist > 0)
        k0, k1 = int(nonzero[0]), int(nonzero[-1])
        tail = np.cumsum(hist[::-1])[::-1]  # tail[k] = volume in bins >= k
        inner_edges = np.arange(k0 + 1, k1 + 1)
        dose = np.concatenate([[self.min_gy], inner_edges * w, [self.max_gy]])
        volume = np.concatenate([[tail[k0]], tail[inner_edges], [0.0]])
        dose = np.maximum.accumulate(dose)  # min below the first bin or max inside the last keeps order
        return dose, volume

    def covered_volume_at_dose_cc(self, dose_gy: float) -> float:
        """Covered volume receiving at least ``dose_gy``, cc (linear between knots)."""
        if self.is_empty:
            return 0.0
        if dose_gy <= self.min_gy + DOSE_EQUAL_GY:  # type: ignore[operator]
            return self.covered_volume_cc
        if dose_gy > self.max_gy + DOSE_EQUAL_GY:  # type: ignore[operator]
            return 0.0
        d, v = self._knots
        return float(np.interp(dose_gy, d, v))

    def covered_dose_at_volume_gy(self, volume_cc: float) -> float:
        """Largest dose D such that at least ``volume_cc`` of the covered part receives D.

        ``volume_cc`` must lie in ``[0, covered_volume_cc]``; 0 gives the maximum.
        """
        d, v = self._knots
        if volume_cc <= 0:
            return float(self.max_gy)  # type: ignore[arg-type]
        # last knot with V >= volume (V is non-increasing)
        j = int(np.searchsorted(-v, -volume_cc, side="right")) - 1
        if j < 0:
            return float(d[0])
        if j >= len(d) - 1:
            return float(d[-1])
        if v[j] == v[j + 1]:
            return float(d[j + 1])
        frac = (v[j] - volume_cc) / (v[j] - v[j + 1])
        return float(d[j] + frac * (d[j + 1] - d[j]))

    def cumulative(self, step_gy: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The covered cumulative curve sampled every ``step_gy`` (default: 100 bins
        per 1 % of the maximum, at least the bin width): ``(dose_gy, volume_cc)``."""
        if self.is_empty:
            return np.zeros(1), np.array([0.0])
        step = step_gy or max(self.bin_width_gy, float(self.max_gy) / 1000.0)
        doses = np.arange(0.0, float(self.max_gy) + step, step)
        d, v = self._knots
        volumes = np.interp(doses, d, v)
        volumes[doses <= float(self.min_gy)] = self.covered_volume_cc  # type: ignore[arg-type]
        volumes[doses > float(self.max_gy)] = 0.0  # type: ignore[arg-type]
        return doses, volumes
