"""Cumulative DVH plots as inline SVG text (no matplotlib, no fonts or scripts fetched).

The plot is plain data in, SVG text out: curves of dose (Gy) against relative
volume (%), and the protocol's constraint points drawn on top:

* a volume limit ``V20Gy[%] ≤ 28`` is a marker at (20 Gy, 28 %): the curve must
  pass below it (an upper limit) or above it (a lower limit);
* a dose limit ``D95%[Gy] ≥ 57`` is a marker at (57 Gy, 95 %);
* a dose limit on a tiny volume or a statistic (``D0.03cc[Gy] ≤ 45``,
  ``Max[Gy]``, ``Mean[Gy]``) is a vertical line at the limiting dose.

Markers and lines take the colour of the finding's status; an acceptable-variation
limit is drawn hollow (marker) or dotted (line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Curve", "Marker", "dvh_svg", "nice_ticks", "PALETTE", "STATUS_COLOURS"]

PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#0b3d91", "#ff9896")
"""Colours of the curves, in order (Tableau 10 without its green and red, which mark statuses)."""

STATUS_COLOURS = {
    "PASS": "#1a7f37",
    "WARN": "#b7791f",
    "FAIL": "#c62828",
    "NOT_EVALUATED": "#6f42c1",
    "ERROR": "#000000",
}


@dataclass(frozen=True)
class Curve:
    """One cumulative DVH: dose (Gy) and volume (% of the structure), same length."""

    label: str
    dose_gy: Sequence[float]
    volume_pct: Sequence[float]


@dataclass(frozen=True)
class Marker:
    """A constraint drawn on the plot.

    Attributes
    ----------
    dose_gy
        Dose of the point (or of the vertical line).
    volume_pct
        Volume of the point; None draws a vertical line at ``dose_gy``.
    label
        Short text, e.g. ``OAR-LUNG V20Gy[%] ≤ 28``.
    status
        The finding's status (``PASS`` ...): the colour.
    acceptable
        True for the acceptable-variation limit (drawn hollow / dotted).
    rule_id
        Carried into a ``data-rule-id`` attribute.
    """

    dose_gy: float
    volume_pct: float | None
    label: str
    status: str = "PASS"
    acceptable: bool = False
    rule_id: str = ""


def nice_ticks(upper: float, count: int = 6) -> list[float]:
    """Round tick values from 0 to at least ``upper`` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if not upper > 0 or not math.isfinite(upper):
        return [0.0, 1.0]
    raw = upper / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(upper / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _num(x: float) -> str:
    return f"{x:.1f}"


def _tick_label(x: float) -> str:
    return f"{x:g}"


def dvh_svg(
    curves: Sequence[Curve],
    markers: Sequence[Marker] = (),
    *,
    title: str = "",
    x_label: str = "Dose [Gy]",
    width: int = 760,
    height: int = 400,
    element_id: str | None = None,
    legend_width: int = 250,
) -> str:
    """An ``<svg>`` element (text) with the curves, axes, grid, markers and a legend.

    Parameters
    ----------
    curves
        The cumulative DVHs (volume in % of each structure).
    markers
        Constraint points and lines.
    title
        Drawn above the plot and given as the SVG ``<title>`` (accessible name).
    x_label
        Axis label, e.g. ``Dose [Gy]`` or ``EQD2 [Gy]``.
    width, height
        Size in px of the view box (the element scales to its container).
    element_id
        Optional ``id`` attribute.
    legend_width
        Width in px of the legend on the right.
    """
    left, right, top, bottom = 58, legend_width, 30 if title else 12, 46
    curve_chars, limit_chars = max((legend_width - 38) // 6, 12), max((legend_width - 30) // 5, 14)
    pw, ph = width - left - right, height - top - bottom
    # the dose axis ends where the last curve falls below 0.5 % (a hot tail of a few voxels,
    # e.g. an SBRT boost in EQD2, would squeeze everything else), or at the furthest limit
    x_max_data = 0.0
    for c in curves:
        reached = [float(d) for d, v in zip(c.dose_gy, c.volume_pct) if float(v) >= 0.5 and math.isfinite(float(d))]
        if reached:
            x_max_data = max(x_max_data, max(reached))
    for m in markers:
        if math.isfinite(m.dose_gy):
            x_max_data = max(x_max_data, m.dose_gy)
    x_ticks = nice_ticks(x_max_data * 1.02 if x_max_data > 0 else 1.0)
    x_max = x_ticks[-1]
    y_ticks = [0, 20, 40, 60, 80, 100]

    def sx(d: float) -> float:
        return left + pw * min(max(d, 0.0), x_max) / x_max

    def sy(v: float) -> float:
        return top + ph * (1 - min(max(v, 0.0), 100.0) / 100.0)

    out: list[str] = []
    attrs = f' id={quoteattr(element_id)}' if element_id else ""
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" class="dvh-plot" viewBox="0 0 {width} {height}" '
               f'width="100%" role="img" font-family="sans-serif" font-size="12"{attrs}>')
    out.append(f"<title>{escape(title or 'Cumulative DVH')}</title>")
    out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')
    if title:
        out.append(f'<text x="{left}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>')
    # grid and axes
    for t in x_ticks:
        x = sx(t)
        out.append(f'<line x1="{_num(x)}" y1="{top}" x2="{_num(x)}" y2="{top + ph}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{_num(x)}" y="{top + ph + 16}" text-anchor="middle">{_tick_label(t)}</text>')
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{_num(y)}" x2="{left + pw}" y2="{_num(y)}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end">{t}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(16 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">Volume [%]</text>')
    # curves
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{_num(sx(float(d)))},{_num(sy(float(v)))}" for d, v in zip(c.dose_gy, c.volume_pct)
                       if math.isfinite(float(d)) and math.isfinite(float(v)))
        if pts:
            out.append(f'<polyline class="dvh-curve" data-structure={quoteattr(c.label)} points="{pts}" '
                       f'fill="none" stroke="{colour}" stroke-width="2"/>')
    # markers
    for m in markers:
        if not math.isfinite(m.dose_gy):
            continue
        colour = STATUS_COLOURS.get(m.status, "#000000")
        x = sx(m.dose_gy)
        rid = f" data-rule-id={quoteattr(m.rule_id)}" if m.rule_id else ""
        tip = f"<title>{escape(m.label)}</title>"
        if m.volume_pct is None or not math.isfinite(m.volume_pct):
            dash = "2,3" if m.acceptable else "6,3"
            out.append(f'<g class="dvh-limit-line"{rid}>{tip}<line x1="{_num(x)}" y1="{top}" x2="{_num(x)}" '
                       f'y2="{top + ph}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}"/></g>')
        else:
            y = sy(m.volume_pct)
            fill = "#ffffff" if m.acceptable else colour
            d = 6
            out.append(f'<g class="dvh-limit-point"{rid}>{tip}<path d="M{_num(x)},{_num(y - d)} L{_num(x + d)},{_num(y)} '
                       f'L{_num(x)},{_num(y + d)} L{_num(x - d)},{_num(y)} Z" fill="{fill}" stroke="{colour}" '
                       f'stroke-width="1.5"/></g>')
    # legend (curves, then constraints)
    lx, ly = left + pw + 14, top + 8
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 18}" y2="{ly}" stroke="{colour}" stroke-width="2.5"/>')
        out.append(f'<text x="{lx + 24}" y="{ly + 4}" font-size="11">{escape(_short(c.label, curve_chars))}</text>')
        ly += 16
    seen: set[str] = set()
    shown = [m for m in markers if not m.acceptable and not (m.label in seen or seen.add(m.label))]  # type: ignore[func-returns-value]
    if shown:
        ly += 6
        out.append(f'<text x="{lx}" y="{ly + 4}" font-size="11" font-weight="bold">Limits</text>')
        ly += 16
        for m in shown[:14]:
            colour = STATUS_COLOURS.get(m.status, "#000000")
            if m.volume_pct is None:
                out.append(f'<line x1="{lx + 9}" y1="{ly - 6}" x2="{lx + 9}" y2="{ly + 6}" stroke="{colour}" '
                           f'stroke-width="1.5" stroke-dasharray="6,3"/>')
            else:
                out.append(f'<path d="M{lx + 9},{ly - 5} L{lx + 14},{ly} L{lx + 9},{ly + 5} L{lx + 4},{ly} Z" '
                           f'fill="{colour}"/>')
            out.append(f'<text x="{lx + 24}" y="{ly + 4}" font-size="10">{escape(_short(m.label, limit_chars))}</text>')
            ly += 15
    out.append("</svg>")
    return "".join(out)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
