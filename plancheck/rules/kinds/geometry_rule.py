"""Rule kind ``geometry``: nesting and margins of the target volumes of each lesion.

Protocol-file fields::

    - id: TGT-NEST-CTV-PTV
      kind: geometry
      title: CTV inside its PTV
      category: target
      target: {role: any}              # role (primary | metastasis | nodal | any) and
                                       # regime (any | sbrt | conventional); not 'volume'
      check: containment               # containment | margin
      inner: CTV                       # GTV | ITV | CTV, or a preference list: [CTV, GTV]
      outer: PTV                       # ITV | CTV | PTV, or a preference list
      limits: {unit: "%", upper: {per_protocol: 0, acceptable: 1}}   # % of the inner volume outside
      provenance: {source: ICRU 83, section: "§4", confidence: companion}

    - id: TGT-PTV-RADIAL
      kind: geometry
      title: PTV margin around the CTV (conventional)
      category: target
      target: {role: primary, regime: conventional}
      check: margin
      direction: radial                # radial | cranio_caudal
      statistic: minimum               # radial only: minimum (default) | median
      inner: CTV
      outer: PTV
      limits: {unit: mm, lower: {per_protocol: 4.5, acceptable: 3}}
      provenance: {source: consensus, section: "§4 TGT-PTV", confidence: provisional}

Measures (computed by :mod:`plancheck.dvh.geometry` on the contours' slab model):

* ``containment``: the volume of the inner ROI outside the outer ROI, % of the
  inner volume. Both are rasterised plane by plane on one fine lattice; an inner
  plane with no outer slab counts wholly outside.
* ``margin``, ``cranio_caudal``: the smaller of the superior and inferior margins,
  mm, from the slab extents (first/last plane ∓ half the contour spacing).
* ``margin``, ``radial``: signed in-plane distance from the inner contours to the
  outer contours on the planes where both exist, mm (negative: the inner contour
  lies outside). The minimum is reported by default (the tightest point, where
  a margin recipe would be checked); ``statistic: median`` suits margins cropped
  at anatomical barriers (the involved-field CTV of TGT-CTV). Details give both.

A note on limits: a margin of exactly 5 mm built by a planning system on 2–3 mm
slices and polygonised contours is typically measured 4.8–5.2 mm; a per-protocol
lower limit of 4.5 mm for a 5 mm recipe allows that without hiding a 3 mm margin.

References
----------
ICRU Report 83 (2010), section 4 (GTV, CTV, PTV and their nesting).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from plancheck.dvh.geometry import cranio_caudal_margins, radial_margins
from plancheck.protocol.schema import RuleBase
from plancheck.rules.base import TargetSelector, finding, not_evaluated
from plancheck.rules.context import CheckContext, TargetGroup
from plancheck.rules.findings import Finding, Status
from plancheck.rules.kinds.dvh_rule import no_target_found, target_subjects
from plancheck.rules.registry import RuleKind
from plancheck.rules.thresholds import Limits, grade

__all__ = ["GeometryRule", "GEOMETRY_KIND", "evaluate_geometry_rule"]

VolumeName = Literal["GTV", "ITV", "CTV", "PTV"]
_ORDER = {"GTV": 0, "ITV": 1, "CTV": 2, "PTV": 3}
_VERDICT = {Status.PASS: "within", Status.WARN: "outside per-protocol but within acceptable", Status.FAIL: "outside"}


class GeometryRule(RuleBase):
    kind: Literal["geometry"]
    target: TargetSelector = TargetSelector()
    check: Literal["containment", "margin"]
    inner: VolumeName | list[VolumeName]
    outer: VolumeName | list[VolumeName]
    direction: Literal["radial", "cranio_caudal"] | None = None
    statistic: Literal["minimum", "median"] | None = None
    limits: Limits

    @property
    def inner_choices(self) -> list[str]:
        return [self.inner] if isinstance(self.inner, str) else list(self.inner)

    @property
    def outer_choices(self) -> list[str]:
        return [self.outer] if isinstance(self.outer, str) else list(self.outer)

    @model_validator(mode="after")
    def _check(self) -> GeometryRule:
        if "volume" in self.target.model_fields_set:
            raise ValueError("target.volume is not used by a geometry rule: name the volumes in 'inner' and 'outer'")
        for field, choices in (("inner", self.inner_choices), ("outer", self.outer_choices)):
            if not choices:
                raise ValueError(f"'{field}' needs at least one volume (GTV, ITV, CTV or PTV)")
        for i in self.inner_choices:
            for o in self.outer_choices:
                if _ORDER[i] >= _ORDER[o]:
                    raise ValueError(f"inner {i} must be a smaller volume than outer {o} (GTV ⊂ ITV ⊂ CTV ⊂ PTV)")
        if self.check == "containment":
            if self.direction is not None or self.statistic is not None:
                raise ValueError("'direction' and 'statistic' apply to check: margin")
            if self.limits.unit != "%":
                raise ValueError(f"containment is measured in % of the inner volume: limits.unit must be '%', not {self.limits.unit!r}")
        else:
            if self.direction is None:
                raise ValueError("check: margin needs 'direction': radial or cranio_caudal")
            if self.statistic is not None and self.direction != "radial":
                raise ValueError("'statistic' applies to direction: radial")
            if self.limits.unit != "mm":
                raise ValueError(f"margins are measured in mm: limits.unit must be 'mm', not {self.limits.unit!r}")
        return self


def _pick(group: TargetGroup, choices: list[str]):
    for name in choices:
        roi = group.volumes.get(name)
        if roi is not None:
            return name, roi
    return None, None


def _result(rule: GeometryRule, status: Status, text: str, value: float, unit: str, names, details) -> Finding:
    limit = rule.limits.describe()
    return finding(rule, status, f"{text}: {_VERDICT[status]} {limit}", measured=value, unit=unit, limit=limit,
                   structures=names, details=details)


def _evaluate_group(rule: GeometryRule, group: TargetGroup, ctx: CheckContext) -> Finding:
    inner_kind, inner = _pick(group, rule.inner_choices)
    outer_kind, outer = _pick(group, rule.outer_choices)
    if inner is None or outer is None:
        choices = rule.inner_choices if inner is None else rule.outer_choices
        broken = [group.defective[k].defect_text for k in choices if k in group.defective]
        why = "; ".join(broken) if broken else f"target {group.label} has no {' or '.join(choices)}"
        return not_evaluated(rule, why, structures=(group.label,), details={"volumes": sorted(group.volumes)})
    names = (inner.name, outer.name)
    details: dict = {"inner": inner_kind, "outer": outer_kind}
    if rule.check == "containment":
        out = ctx.outside_volume(inner, outer)
        value = out.outside_percent
        details.update(outside_cc=out.outside_cc, inner_volume_cc=out.inner_volume_cc, lattice_step_mm=out.step_mm,
                       planes_without_outer_mm=list(out.planes_without_outer),
                       method="per-plane raster on a common lattice; inner planes without an outer slab count wholly outside")
        text = f"{inner.name} outside {outer.name}: {value:.3g} % ({out.outside_cc:.3g} cc of {out.inner_volume_cc:.4g} cc)"
        if out.planes_without_outer:
            text += f"; {len(out.planes_without_outer)} plane(s) of {inner.name} have no {outer.name}"
        return _result(rule, grade(value, rule.limits), text, value, "%", names, details)
    if rule.direction == "cranio_caudal":
        cc = cranio_caudal_margins(inner, outer)
        value = cc.minimum_mm
        details.update(superior_mm=cc.superior_mm, inferior_mm=cc.inferior_mm,
                       method="slab extents (first/last plane ∓ half the contour spacing); +z superior")
        text = (f"{outer.name} margin around {inner.name}, cranio-caudal: {value:.3g} mm "
                f"(superior {cc.superior_mm:.3g} mm, inferior {cc.inferior_mm:.3g} mm)")
        return _result(rule, grade(value, rule.limits), text, value, "mm", names, details)
    radial = radial_margins(inner, outer)
    if radial is None:
        return not_evaluated(rule, f"no plane of {inner.name} has a {outer.name} contour: the radial margin cannot be measured",
                             unit="mm", limit=rule.limits.describe(), structures=names, details=details)
    statistic = rule.statistic or "minimum"
    value = radial.minimum_mm if statistic == "minimum" else radial.median_mm
    details.update(statistic=statistic, minimum_mm=radial.minimum_mm, median_mm=radial.median_mm,
                   minimum_at_mm=list(radial.minimum_at_mm), planes_compared=radial.planes_compared,
                   planes_without_outer_mm=list(radial.planes_without_outer), points=radial.number_of_points,
                   method="signed point-to-segment distance from the inner contour (vertices and edge points ≤ 0.5 mm apart) "
                          "to the outer contour on the same plane")
    other = f"median {radial.median_mm:.3g} mm" if statistic == "minimum" else f"minimum {radial.minimum_mm:.3g} mm"
    x, y, z = radial.minimum_at_mm
    text = (f"{outer.name} margin around {inner.name}, radial {statistic}: {value:.3g} mm ({other}; "
            f"tightest at x={x:.1f}, y={y:.1f}, z={z:.1f} mm; {radial.planes_compared} planes)")
    if radial.planes_without_outer:
        text += f"; {len(radial.planes_without_outer)} plane(s) of {inner.name} have no {outer.name}"
    return _result(rule, grade(value, rule.limits), text, value, "mm", names, details)


def evaluate_geometry_rule(rule: GeometryRule, ctx: CheckContext) -> list[Finding]:
    subjects = target_subjects(rule, ctx, rule.target)
    if not subjects:
        return [no_target_found(rule, rule.target)]
    return [_evaluate_group(rule, group, ctx) for _, _, group in subjects]


GEOMETRY_KIND = RuleKind(model=GeometryRule, evaluate=evaluate_geometry_rule)
