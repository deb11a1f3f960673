"""Shape measures (plancheck.dvh.geometry) on analytic phantoms, and the ``geometry`` rule kind.

Expected answers are derived by hand in each test for the slab model: a plane at
``z_k`` stands for the slab between the mid-points to its neighbours, the end
slabs extend half the contour spacing.

Tolerances
----------
* Outside volume of rectangles whose edges fall on lattice cell boundaries: exact
  up to rounding (1e-9 cc).
* Outside volume of circles: the raster error of a plane is at most the cells cut
  by the two boundaries, ``step × (perimeter_in + perimeter_out)``; the test uses
  that bound, with the polygon (not the circle) areas as the expected answer.
* Radial margins of concentric regular n-gons with the same phase: the distance
  from every inner contour point to the outer polygon is exactly
  ``(R − r)·cos(π/n)`` (the perpendicular to the outer edge), to 1e-9 mm.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from phantoms import circle, rectangle, shoelace_mm2
from plancheck.dvh.geometry import (
    cranio_caudal_margins,
    point_to_segments_distance_mm,
    radial_margins,
    slab_extent_mm,
    volume_outside,
)
from plancheck.dicom import read_export
from plancheck.model import Contour, Roi
from plancheck.protocol.loader import Protocol
from plancheck.rules.context import CheckContext, TargetGroup
from plancheck.rules.findings import Status
from plancheck.rules.kinds.geometry_rule import GeometryRule, evaluate_geometry_rule

N = 128
PROV = {"source": "ICRU 83", "section": "§4 TGT-NEST", "confidence": "companion"}
SAMPLE = Path(__file__).resolve().parents[1] / "sample_dicom"


@pytest.fixture(scope="module")
def sample_context() -> CheckContext:
    if not SAMPLE.is_dir():
        pytest.skip("sample_dicom not present")
    protocol = Protocol("test", "test", "0", "", ("test",), (), {}, {}, "")
    return CheckContext(read_export(SAMPLE), protocol)


def stack(name: str, number: int, z_planes, make) -> Roi:
    """An ROI with one contour per plane: ``make(z)`` gives the (N, 2) polygon."""
    contours = []
    for z in z_planes:
        xy = make(z)
        contours.append(Contour(np.column_stack([xy, np.full(len(xy), float(z))])))
    return Roi(number, name, "", tuple(contours))


def cylinder(name: str, number: int, r: float, z_planes, cx: float = 0.0, cy: float = 0.0) -> Roi:
    return stack(name, number, z_planes, lambda z: circle(cx, cy, r, N))


# ------------------------------------------------------------------------------ geometry

def test_point_to_segment_distance_by_hand():
    # segment from (0,0) to (10,0): (5,3) → 3 (perpendicular); (-3,4) → 5 (to the end (0,0)); (10,0) → 0
    seg = np.array([[0.0, 0.0, 10.0, 0.0]])
    d = point_to_segments_distance_mm(np.array([[5.0, 3.0], [-3.0, 4.0], [10.0, 0.0]]), seg)
    assert d == pytest.approx([3.0, 5.0, 0.0], abs=1e-12)


def test_concentric_cylinders_margins_and_containment():
    # inner r = 10 on z = -10..10 (2 mm), outer R = 15 on z = -16..16: slab extents ±11 and ±17
    inner = cylinder("CTV", 1, 10.0, np.arange(-10, 11, 2))
    outer = cylinder("PTV", 2, 15.0, np.arange(-16, 17, 2))
    assert slab_extent_mm(inner) == pytest.approx((-11.0, 11.0))
    cc = cranio_caudal_margins(inner, outer)
    assert (cc.superior_mm, cc.inferior_mm) == pytest.approx((6.0, 6.0))
    radial = radial_margins(inner, outer)
    expected = 5.0 * math.cos(math.pi / N)
    assert radial.minimum_mm == pytest.approx(expected, abs=1e-9)
    assert radial.median_mm == pytest.approx(expected, abs=1e-9)
    assert radial.planes_compared == 11 and radial.planes_without_outer == ()
    out = volume_outside(inner, outer)
    assert out.outside_cc == 0.0
    assert out.inner_volume_cc == pytest.approx(shoelace_mm2(circle(0, 0, 10.0, N)) * 22 / 1000, rel=1e-9)


def test_outer_on_other_slices_uses_the_slab_containing_the_plane():
    # outer contoured every 3 mm (z = -15..15, slab ±16.5) around inner on 2 mm slices: still inside
    inner = cylinder("GTV", 1, 10.0, np.arange(-10, 11, 2))
    outer = cylinder("PTV", 2, 13.0, np.arange(-15, 16, 3))
    assert volume_outside(inner, outer).outside_cc == 0.0
    assert cranio_caudal_margins(inner, outer).minimum_mm == pytest.approx(5.5)
    assert radial_margins(inner, outer).minimum_mm == pytest.approx(3.0 * math.cos(math.pi / N), abs=1e-9)


def test_rectangle_poking_out_by_a_known_volume():
    # inner: [0,10]×[0,10] mm on z = 0..8 (2 mm): slabs [-1, 9], volume 100 mm² × 10 mm = 1 cc.
    # outer: [-5,7]×[-5,15] on z = -4..4: slabs [-5, 5].
    # planes z = 0, 2, 4 (slabs 2 mm each): x in (7, 10] outside = 30 mm² × 2 mm × 3 = 180 mm³;
    # planes z = 6, 8 lie in no outer slab: 100 mm² × 2 mm × 2 = 400 mm³ → 0.58 cc = 58 %.
    inner = stack("GTV", 1, range(0, 9, 2), lambda z: rectangle(0, 10, 0, 10))
    outer = stack("CTV", 2, range(-4, 5, 2), lambda z: rectangle(-5, 7, -5, 15))
    out = volume_outside(inner, outer)
    assert out.inner_volume_cc == pytest.approx(1.0, abs=1e-12)
    assert out.outside_cc == pytest.approx(0.58, abs=1e-9)
    assert out.outside_percent == pytest.approx(58.0, abs=1e-7)
    assert out.planes_without_outer == (6.0, 8.0)
    cc = cranio_caudal_margins(inner, outer)
    assert (cc.superior_mm, cc.inferior_mm) == (-4.0, 4.0)
    radial = radial_margins(inner, outer)
    # on z = 0..4 the edge x = 10 is 3 mm outside x = 7: signed −3 mm
    assert radial.minimum_mm == pytest.approx(-3.0, abs=1e-12)
    assert radial.planes_without_outer == (6.0, 8.0)


def test_offset_circle_poking_out():
    # GTV r = 10 centred 8 mm off a CTV R = 15: it pokes out by r + δ − R = 3 mm.
    r, big, delta, planes = 10.0, 15.0, 8.0, np.arange(-4, 5, 2)
    inner = cylinder("GTV", 1, r, planes, cx=delta)
    outer = cylinder("CTV", 2, big, planes)
    out = volume_outside(inner, outer)
    # expected: polygon area of the inner minus the polygons' intersection, per plane × 2 mm × 5 planes;
    # intersection of the two circles (lens), corrected to polygons by the raster bound below.
    d = delta
    lens = (r * r * math.acos((d * d + r * r - big * big) / (2 * d * r))
            + big * big * math.acos((d * d + big * big - r * r) / (2 * d * big))
            - 0.5 * math.sqrt((-d + r + big) * (d + r - big) * (d - r + big) * (d + r + big)))
    outside_circle_mm2 = math.pi * r * r - lens
    inner_poly = shoelace_mm2(circle(delta, 0, r, N))
    # polygon vs circle: each boundary moves inwards by at most r(1 − cos(π/N)); plus the raster bound
    perimeters = 2 * math.pi * (r + big)
    tol_mm2 = out.step_mm * perimeters + perimeters * big * (1 - math.cos(math.pi / N))
    assert out.outside_cc * 1000 / 10 == pytest.approx(outside_circle_mm2, abs=tol_mm2)
    assert out.inner_volume_cc == pytest.approx(inner_poly * 10 / 1000, rel=1e-9)
    radial = radial_margins(inner, outer)
    assert radial.minimum_mm == pytest.approx(-(r + delta - big), abs=big * (1 - math.cos(math.pi / N)) + 1e-9)


def test_outside_cells_by_mask_and_by_sorting_agree(monkeypatch):
    # volume_outside marks the outer cells in a boolean mask, or (beyond _MAX_MASK_CELLS) sorts
    # them: the same cells are outside either way, so the same volume, to the last bit.
    import plancheck.dvh.geometry as geometry

    planes = np.arange(-4, 5, 2)
    inner = cylinder("GTV", 1, 10.0, planes, cx=8.0)
    outer = cylinder("CTV", 2, 15.0, planes[1:])
    by_mask = volume_outside(inner, outer)
    monkeypatch.setattr(geometry, "_MAX_MASK_CELLS", 0)
    by_sorting = volume_outside(inner, outer)
    assert by_mask == by_sorting
    assert 0 < by_mask.outside_cc < by_mask.inner_volume_cc


def test_empty_roi_is_an_error():
    with pytest.raises(ValueError, match="'GTV' has no closed planar contours"):
        volume_outside(Roi(1, "GTV"), cylinder("CTV", 2, 5.0, [0.0]))


# ------------------------------------------------------------------------------ the rule

def rule(**fields) -> GeometryRule:
    base = {"id": "TGT-NEST", "kind": "geometry", "title": "nesting", "category": "target", "provenance": PROV,
            "check": "containment", "inner": "GTV", "outer": "CTV",
            "limits": {"unit": "%", "upper": {"per_protocol": 0, "acceptable": 1}}}
    base.update(fields)
    return GeometryRule.model_validate(base)


def ctx_with(*groups: TargetGroup) -> SimpleNamespace:
    """The part of CheckContext the geometry rule uses: the target groups and the outside volume."""
    return SimpleNamespace(targets=groups, outside_volume=volume_outside)


def group(**volumes: Roi) -> TargetGroup:
    return TargetGroup(role="primary", key=("primary", "", None), volumes=volumes, course=None, how="no plan")


def test_rule_fails_a_gtv_outside_its_ctv():
    inner = stack("GTVp", 1, range(0, 9, 2), lambda z: rectangle(0, 10, 0, 10))
    outer = stack("CTVp", 2, range(-4, 5, 2), lambda z: rectangle(-5, 7, -5, 15))
    [f] = evaluate_geometry_rule(rule(), ctx_with(group(GTV=inner, CTV=outer)))
    assert f.status is Status.FAIL
    assert f.measured == pytest.approx(58.0, abs=1e-7)
    assert "2 plane(s) of GTVp have no CTVp" in f.message
    assert f.details["outside_cc"] == pytest.approx(0.58)


def test_rule_margins_and_preference_lists():
    gtv = cylinder("GTV_Met", 1, 10.0, np.arange(-10, 11, 2))
    ptv = cylinder("PTV_Met", 2, 15.0, np.arange(-16, 17, 2))
    g = group(GTV=gtv, PTV=ptv)
    limits = {"unit": "mm", "lower": {"per_protocol": 4.5, "acceptable": 3}}
    [rad] = evaluate_geometry_rule(rule(check="margin", direction="radial", inner=["CTV", "GTV"], outer="PTV",
                                        limits=limits), ctx_with(g))
    assert rad.status is Status.PASS and rad.measured == pytest.approx(5 * math.cos(math.pi / N))
    assert rad.details["inner"] == "GTV"
    [cc] = evaluate_geometry_rule(rule(check="margin", direction="cranio_caudal", inner="GTV", outer="PTV",
                                       limits=limits), ctx_with(g))
    assert cc.status is Status.PASS and cc.measured == pytest.approx(6.0)
    [missing] = evaluate_geometry_rule(rule(inner="CTV", outer="PTV"), ctx_with(g))
    assert missing.status is Status.NOT_EVALUATED and missing.message == "target PTV_Met has no CTV"


def test_rule_on_the_sample(sample_context):
    r = rule(target={"role": "primary"}, check="margin", direction="radial", inner="CTV", outer="PTV",
             limits={"unit": "mm", "lower": {"per_protocol": 4.5, "acceptable": 3}})
    [f] = evaluate_geometry_rule(r, sample_context)
    assert f.status is Status.PASS and f.structures == ("CTVp", "PTVp")
    assert 4.5 < f.measured < 5.5


@pytest.mark.parametrize(("fields", "message"), [
    ({"inner": "PTV", "outer": "CTV"}, "inner PTV must be a smaller volume than outer CTV"),
    ({"direction": "radial"}, "'direction' and 'statistic' apply to check: margin"),
    ({"limits": {"unit": "cc", "upper": {"per_protocol": 0}}}, "limits.unit must be '%'"),
    ({"check": "margin", "limits": {"unit": "mm", "lower": {"per_protocol": 4}}}, "needs 'direction'"),
    ({"check": "margin", "direction": "cranio_caudal", "statistic": "median",
      "limits": {"unit": "mm", "lower": {"per_protocol": 4}}}, "'statistic' applies to direction: radial"),
    ({"check": "margin", "direction": "radial", "limits": {"unit": "%", "lower": {"per_protocol": 4}}},
     "margins are measured in mm"),
    ({"target": {"volume": "PTV"}}, "target.volume is not used"),
    ({"outer": []}, "'outer' needs at least one volume"),
    ({"margin_mm": 5}, "Extra inputs are not permitted"),
])
def test_rule_validation(fields, message):
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_the_context_measures_each_pair_once():
    # two containment rules of one target group (GTV in PTV for the nesting of the GTV and of
    # the PTV) ask the context for the same pair: measured once, the same answer as measured directly
    inner = stack("GTVp", 1, range(0, 9, 2), lambda z: rectangle(0, 10, 0, 10))
    outer = stack("CTVp", 2, range(-4, 5, 2), lambda z: rectangle(-5, 7, -5, 15))
    protocol = Protocol("test", "test", "0", "", ("test",), (), {}, {}, "")
    ctx = CheckContext(SimpleNamespace(courses=(), structure_sets=()), protocol)
    first = ctx.outside_volume(inner, outer)
    assert ctx.outside_volume(inner, outer) is first
    assert first == volume_outside(inner, outer)
    assert ctx.outside_volume(outer, inner) is not first  # the other way round is another question


def test_volume_fraction_below_x():
    # a box x 0..10 mm on planes z 1.25..28.75 (rt_cases): x < 2.5 holds 2.5/10 = 25 % of it; the
    # lattice step is about sqrt(area of all planes / 40 000) = sqrt(12 · 200 / 40 000) ≈ 0.24 mm, so a
    # column of samples may fall either side of x = 2.5: ± one step / 10 mm ≈ 2.5 % (tolerance 3 %)
    from rt_cases import Box, box_roi

    from plancheck.dvh.geometry import volume_fraction_below_x
    roi = box_roi(1, "B", Box(0, 10))
    assert volume_fraction_below_x(roi, 2.5) == pytest.approx(0.25, abs=0.03)
    assert volume_fraction_below_x(roi, -1.0) == 0.0 and volume_fraction_below_x(roi, 11.0) == 1.0
