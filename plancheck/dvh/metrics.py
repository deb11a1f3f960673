"""DVH metrics written in AAPM TG-263 §9 syntax, parsed once into a typed spec.

Accepted forms (case-sensitive, as TG-263 writes them)::

    D95%[Gy]   D0.03cc[Gy]   D2cc[Gy]   D95%[%]        dose to the hottest x % / x cc
    DC95%[Gy]  DC700cc[Gy]                             dose to the coldest x % / x cc ("dose complement")
    V20Gy[%]   V20Gy[cc]     V95%[%]   V2000cGy[%]     volume receiving at least a dose
    CV20Gy[cc] CV15Gy[%]                               volume receiving less than a dose ("complement volume")
    Mean[Gy]   Max[Gy]       Min[Gy]   Mean[%]          statistics (``[%]``: relative to the prescription)
    Volume[cc]                                         structure volume

Doses written ``…%`` after D/V (e.g. ``V95%``) and results in ``[%]`` for dose
metrics are relative to the prescription dose, which must then be given.
``cGy`` is accepted and converted.

How a value is obtained: D metrics invert the cumulative DVH with linear
interpolation between knots; V metrics interpolate the curve; Mean, Max, Min
are exact over the samples. When part of the structure lies outside the dose
grid, every metric is evaluated twice — with the missing volume at 0 Gy and
at an unbounded dose — and is *undefined* unless both agree; the bounds are
kept so a rule can still tell a certain violation.

References
----------
Mayo CS et al. AAPM Task Group 263: Standardizing nomenclatures in radiation
oncology. Int J Radiat Oncol Biol Phys 2018;100(4):1057-1066, section 9
(DVH metric nomenclature).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from plancheck.dvh.dvh import DVH
from plancheck.errors import MetricSpecError

__all__ = ["MetricSpec", "MetricValue", "parse_metric", "evaluate_metric", "DEFAULT_METRICS"]

MetricKind = Literal["D", "DC", "V", "CV", "Mean", "Max", "Min", "Volume"]

DEFAULT_METRICS = ("Volume[cc]", "Min[Gy]", "Mean[Gy]", "Max[Gy]", "D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "D0.03cc[Gy]")

_DV = re.compile(r"^(?P<kind>DC|CV|D|V)(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<unit>%|cc|cGy|Gy)\[(?P<res>cGy|Gy|%|cc)\]$")
_STAT = re.compile(r"^(?P<kind>Mean|Max|Min)\[(?P<res>cGy|Gy|%)\]$")

_HELP = (
    "expected TG-263 forms such as D95%[Gy], D0.03cc[Gy], DC700cc[Gy], V20Gy[%], V20Gy[cc], "
    "CV15Gy[cc], V95%[%], Mean[Gy], Max[Gy], Min[Gy], Volume[cc]"
)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed DVH metric.

    Attributes
    ----------
    text
        The metric as written (TG-263).
    kind
        ``D``/``DC`` (dose at a volume), ``V``/``CV`` (volume at a dose), or a statistic.
    threshold
        The number after D/V (a volume for D/DC, a dose for V/CV), in ``threshold_unit``.
    threshold_unit
        ``%`` or ``cc`` for D/DC; ``Gy`` or ``%`` (of prescription) for V/CV (cGy converted to Gy).
    result_unit
        ``Gy``, ``cGy`` or ``%`` (of prescription) for doses; ``%`` (of volume) or ``cc`` for volumes.
    """

    text: str
    kind: MetricKind
    threshold: float | None = None
    threshold_unit: str | None = None
    result_unit: str = "Gy"

    @property
    def needs_prescription(self) -> bool:
        """True when the metric is relative to the prescription dose."""
        dose_result = self.kind in ("D", "DC", "Mean", "Max", "Min") and self.result_unit == "%"
        dose_threshold = self.kind in ("V", "CV") and self.threshold_unit == "%"
        return dose_result or dose_threshold

    @property
    def is_dose(self) -> bool:
        """True when the metric's value is a dose (else a volume)."""
        return self.kind in ("D", "DC", "Mean", "Max", "Min")

    @property
    def never_lower_on_a_larger_volume(self) -> bool:
        """True when the metric of a structure can only be higher (or equal) on any larger
        structure that contains it: the dose to the hottest x cc (``D2cc``), the maximum,
        the volume in cc receiving a dose (``V20Gy[cc]``). Then a violation of an upper
        limit on a part of a structure is a violation on the whole."""
        absolute_dose = self.kind == "D" and self.threshold_unit == "cc"
        absolute_volume = self.kind == "V" and self.result_unit == "cc"
        return absolute_dose or absolute_volume or self.kind == "Max"


@lru_cache(maxsize=1024)
def parse_metric(text: str) -> MetricSpec:
    """Parse a TG-263 metric string.

    Raises
    ------
    MetricSpecError
        With the offending text and the accepted forms.
    """
    s = text.strip()
    if s == "Volume[cc]":
        return MetricSpec(s, "Volume", result_unit="cc")
    m = _STAT.match(s)
    if m:
        res = m["res"]
        return MetricSpec(s, m["kind"], result_unit=res)  # type: ignore[arg-type]
    m = _DV.match(s)
    if not m:
        raise MetricSpecError(f"cannot parse DVH metric {text!r}: {_HELP}")
    kind, num, unit, res = m["kind"], float(m["num"]), m["unit"], m["res"]
    if kind in ("D", "DC"):
        if unit not in ("%", "cc"):
            raise MetricSpecError(f"{text!r}: a dose metric {kind}x needs a volume x in % or cc, not {unit!r}")
        if res not in ("Gy", "cGy", "%"):
            raise MetricSpecError(f"{text!r}: a dose metric is reported in [Gy], [cGy] or [%] (of prescription), not [{res}]")
        if unit == "%" and num > 100:
            raise MetricSpecError(f"{text!r}: a volume of {num:g}% is more than the whole structure")
    else:
        if unit not in ("Gy", "cGy", "%"):
            raise MetricSpecError(f"{text!r}: a volume metric {kind}x needs a dose x in Gy, cGy or % (of prescription), not {unit!r}")
        if res not in ("%", "cc"):
            raise MetricSpecError(f"{text!r}: a volume metric is reported in [%] (of the structure) or [cc], not [{res}]")
        if unit == "cGy":
            num, unit = num / 100.0, "Gy"
    return MetricSpec(s, kind, num, unit, res)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MetricValue:
    """The value of a metric on a DVH.

    Attributes
    ----------
    metric
        The metric string.
    value
        The value in ``unit``; None when undefined (see ``reason``).
    unit
        ``Gy``, ``cGy``, ``%`` or ``cc``.
    lower, upper
        Bounds when part of the structure is outside the dose grid (equal to
        ``value`` otherwise); ``upper`` may be ``inf``. None when not computable at all.
    reason
        Why the value is undefined, or None.
    method
        How it was obtained, e.g. ``"interpolated on the cumulative DVH"``.
    """

    metric: str
    value: float | None
    unit: str
    lower: float | None = None
    upper: float | None = None
    reason: str | None = None
    method: str = ""

    @property
    def is_defined(self) -> bool:
        return self.value is not None


def _undefined(spec: MetricSpec, unit: str, reason: str, lower=None, upper=None) -> MetricValue:
    return MetricValue(spec.text, None, unit, lower, upper, reason)


def evaluate_metric(spec: MetricSpec | str, dvh: DVH, prescription_gy: float | None = None) -> MetricValue:
    """Evaluate a metric on a DVH.

    Parameters
    ----------
    spec
        A parsed spec or a TG-263 string.
    dvh
        The DVH.
    prescription_gy
        Prescription dose (whole course, in the DVH's dose kind) for metrics
        relative to it.

    Returns
    -------
    MetricValue
        Never 0 for a value that could not be computed: None with a reason.
    """
    if isinstance(spec, str):
        spec = parse_metric(spec)
    unit = spec.result_unit
    total = dvh.volume_cc
    if spec.kind == "Volume":
        return MetricValue(spec.text, total, "cc", total, total, method="exact volume of the slab model")
    if spec.needs_prescription and not (prescription_gy and prescription_gy > 0):
        return _undefined(spec, unit, f"{spec.text} is relative to the prescription, which is not known")
    if total <= 0:
        return _undefined(spec, unit, "the structure has no volume")
    if dvh.is_empty:
        return _undefined(spec, unit, "no part of the structure is inside the dose grid")
    unc = dvh.uncovered_volume_cc
    cov = dvh.covered_volume_cc

    def dose_out(x: float) -> float:
        if unit == "%":
            return 100.0 * x / prescription_gy  # type: ignore[operator]
        return x * 100.0 if unit == "cGy" else x

    def vol_out(x: float) -> float:
        return 100.0 * x / total if unit == "%" else x

    if spec.kind in ("D", "DC"):
        v = spec.threshold * total / 100.0 if spec.threshold_unit == "%" else spec.threshold  # type: ignore[operator]
        if v > total * (1 + 1e-9):
            return _undefined(spec, unit, f"the structure ({total:.3g} cc) is smaller than {spec.threshold:g} cc")
        if spec.kind == "DC":
            v = total - v
        if unc == 0:
            v = min(v, cov)  # histogram sums may fall a rounding error short of the volume
        lo = dvh.covered_dose_at_volume_gy(v) if v <= cov else 0.0
        hi = math.inf if v <= unc and unc > 0 else dvh.covered_dose_at_volume_gy(max(v - unc, 0.0))
        method = "interpolated on the cumulative DVH"
        lo_o, hi_o = dose_out(lo), (math.inf if math.isinf(hi) else dose_out(hi))
    elif spec.kind in ("V", "CV"):
        d = spec.threshold * prescription_gy / 100.0 if spec.threshold_unit == "%" else spec.threshold  # type: ignore[operator]
        vc = dvh.covered_volume_at_dose_cc(d) if d > 0 else cov
        lo, hi = vc, vc + (unc if d > 0 else unc)
        if spec.kind == "CV":
            lo, hi = total - hi, total - lo
        method = "interpolated on the cumulative DVH"
        lo_o, hi_o = vol_out(lo), vol_out(hi)
    elif spec.kind == "Mean":
        lo = dvh.mean_gy * cov / total  # type: ignore[operator]
        hi = math.inf if unc > 0 else dvh.mean_gy
        method = "exact volume-weighted mean of the samples"
        lo_o, hi_o = dose_out(lo), (math.inf if math.isinf(hi) else dose_out(hi))  # type: ignore[arg-type]
    elif spec.kind == "Max":
        lo, hi = dvh.max_gy, (math.inf if unc > 0 else dvh.max_gy)
        method = "maximum over volume samples and surface points"
        lo_o, hi_o = dose_out(lo), (math.inf if math.isinf(hi) else dose_out(hi))  # type: ignore[arg-type]
    else:  # Min
        lo, hi = (0.0 if unc > 0 else dvh.min_gy), dvh.min_gy
        method = "minimum over volume samples and surface points"
        lo_o, hi_o = dose_out(lo), dose_out(hi)  # type: ignore[arg-type]

    if unc == 0 or math.isclose(lo_o, hi_o, rel_tol=1e-9, abs_tol=1e-9):
        return MetricValue(spec.text, lo_o, unit, lo_o, lo_o, method=method)
    reason = (
        f"{dvh.dose_coverage_pct:.1f}% of the structure is inside the dose grid; "
        f"{spec.text} depends on the {unc:.3g} cc outside it (between {lo_o:.4g} and {hi_o:.4g} {unit})"
    )
    return MetricValue(spec.text, None, unit, lo_o, hi_o, reason, method)
