"""The synthetic thorax: organs and targets of an oligometastatic esophageal cancer case.

Coordinates are DICOM patient coordinates for a head-first supine patient (mm):
x to the patient's left, y posterior, z superior. The body is centred on
x = y = 0; the primary tumour sits in the mid-thoracic esophagus at z ≈ 0, a
peripheral metastasis in the right upper lung and one in a thoracic vertebral
body above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testkit.synthetic.shapes import (
    Difference,
    Ellipsoid,
    EllipticTube,
    Offset,
    Ring,
    Shape,
    SuperEllipticPrism,
    Union,
)
from testkit.synthetic.spec import CaseSpec

__all__ = ["RoiDef", "Anatomy", "build_anatomy"]


@dataclass(frozen=True)
class RoiDef:
    """One ROI of the synthetic structure set: identity and analytic shape."""

    number: int
    name: str
    interpreted_type: str
    color_rgb: tuple[int, int, int]
    shape: Shape


@dataclass(frozen=True)
class Anatomy:
    """The analytic anatomy of a case.

    Attributes
    ----------
    rois
        ROIs in structure-set order (all of them, before ``omit_structures``).
    bone
        Bone shapes for the CT (vertebral bodies and posterior elements), not ROIs.
    z_planes_mm
        CT slice / contour plane positions, mm.
    isocenters_mm
        Isocentre (x, y, z) per course label, mm.
    """

    rois: tuple[RoiDef, ...]
    bone: tuple[Shape, ...]
    z_planes_mm: np.ndarray
    isocenters_mm: dict[str, tuple[float, float, float]]

    def shape(self, name: str) -> Shape:
        """The shape of the ROI called ``name``."""
        for roi in self.rois:
            if roi.name == name:
                return roi.shape
        raise KeyError(f"no synthetic ROI named {name!r}")


def _tube(x: float, y: float, a: float, b: float, z_lo: float, z_hi: float,
          rounding: float = 0.0, knots: tuple[tuple[float, float, float], ...] | None = None) -> EllipticTube:
    if knots is None:
        knots = ((z_lo, x, y), (z_hi, x, y))
    zs, xs, ys = zip(*knots)
    return EllipticTube(tuple(zs), tuple(xs), tuple(ys), (a, b), (z_lo, z_hi), rounding)


def build_anatomy(spec: CaseSpec) -> Anatomy:
    """Build the analytic anatomy for ``spec`` (pure, deterministic).

    Parameters
    ----------
    spec
        The case knobs; ``seed`` and ``jitter`` perturb positions and sizes.

    Returns
    -------
    Anatomy
    """
    rng = np.random.default_rng(spec.seed)
    j = float(spec.jitter)

    def move(scale_mm: float = 3.0) -> float:
        return float(np.round(rng.normal(0.0, scale_mm * j), 1)) if j > 0 else 0.0

    def size(rel: float = 0.08) -> float:
        return float(np.clip(1.0 + rng.normal(0.0, rel * j), 1 - 2 * rel, 1 + 2 * rel)) if j > 0 else 1.0

    z_first, z_last = spec.scan_range_mm
    dz = spec.resolved_ct_slice_mm
    n_planes = int(np.floor((z_last - z_first) / dz + 1e-6)) + 1
    z_planes = np.round(z_first + dz * np.arange(n_planes), 3)
    half = dz / 2.0
    z_lo, z_hi = float(z_planes[0] - half), float(z_planes[-1] + half)

    body_scale = size(0.025)
    external = SuperEllipticPrism((0.0, 0.0), (170.0 * body_scale, 115.0 * body_scale), (6.0, 4.0),
                                  (560.0, 440.0), 2.6, (z_lo, z_hi))

    # --- spine -----------------------------------------------------------------------
    vb_x, vb_y = move(1.0), 55.0 + move(1.0)
    vertebral_body = _tube(vb_x, vb_y, 20.0, 17.0, z_lo, z_hi)
    cord = _tube(vb_x, vb_y + 29.0, 6.0, 5.0, z_lo, z_hi)
    posterior_arch = Ring(_tube(vb_x, vb_y + 31.0, 16.0, 14.0, z_lo, z_hi), _tube(vb_x, vb_y + 29.0, 9.0, 8.0, z_lo, z_hi))
    cord_prv = Offset(cord, 5.0)

    # --- mediastinum -----------------------------------------------------------------
    eso_x, eso_y = move(2.0), 25.0 + move(1.5)
    esophagus = _tube(eso_x, eso_y, 9.0, 7.0, -88.0, z_hi, rounding=4.0,
                      knots=((-88.0, eso_x + 30.0, eso_y - 20.0), (-40.0, eso_x, eso_y), (z_hi, eso_x, eso_y)))
    trachea_outer = _tube(eso_x, eso_y - 26.0, 10.0, 9.0, 40.0, z_hi, rounding=3.0)
    trachea_lumen = _tube(eso_x, eso_y - 26.0, 8.0, 7.0, 38.0, z_hi + 2.0, rounding=3.0)
    trachea = Ring(trachea_outer, trachea_lumen)
    heart = Ellipsoid((20.0 + move(4.0), -40.0 + move(3.0), -35.0 + move(5.0)),
                      (55.0 * size(), 45.0 * size(), 50.0 * size()))
    great_vessels = _tube(eso_x + 28.0, eso_y + 14.0, 12.0, 12.0, -100.0, 80.0, rounding=10.0)
    # main bronchi: two tubes that stay 3 mm apart at the carina (one ROI's contours must not overlap)
    bronchi = Union((
        _tube(0, 0, 7.0, 6.0, 12.0, 44.0, 4.0, knots=((12.0, eso_x - 38.0, eso_y - 24.0), (44.0, eso_x - 8.5, eso_y - 26.0))),
        _tube(0, 0, 7.0, 6.0, 12.0, 44.0, 4.0, knots=((12.0, eso_x + 38.0, eso_y - 24.0), (44.0, eso_x + 8.5, eso_y - 26.0))),
    ))

    # --- abdomen ---------------------------------------------------------------------
    liver_base = Ellipsoid((-60.0 + move(3.0), -10.0, -128.0 + move(3.0)), (85.0 * size(), 80.0, 48.0))
    stomach = Ellipsoid((70.0 + move(3.0), -20.0, -115.0 + move(3.0)), (40.0 * size(), 40.0, 35.0))
    kidney_l = Ellipsoid((75.0, 77.0, -150.0), (30.0, 22.0, 50.0))
    kidney_r = Ellipsoid((-75.0, 77.0, -160.0), (30.0, 22.0, 50.0))
    liver = Difference(liver_base, (Offset(kidney_r, 2.0),)) if spec.clinical_size else liver_base
    bowel = Difference(Ellipsoid((45.0, -70.0, -160.0), (45.0, 30.0, 30.0)), (Offset(stomach, 2.0), Offset(liver_base, 2.0)))
    duodenum = _tube(25.0, 15.0, 10.0, 8.0, -168.0, -122.0, rounding=5.0)

    # --- lungs -----------------------------------------------------------------------
    lung_cuts: tuple[Shape, ...] = (Offset(heart, 3.0), Offset(great_vessels, 2.0), Offset(bronchi, 2.0))
    lung_l = Difference(Ellipsoid((85.0 + move(2.0), 5.0, 20.0), (55.0 * size(0.05), 70.0, 105.0)), lung_cuts,
                        center_shift_mm=(10.0, 15.0))
    lung_r = Difference(Ellipsoid((-85.0 + move(2.0), 5.0, 20.0), (55.0 * size(0.05), 70.0, 105.0)), lung_cuts,
                        center_shift_mm=(-10.0, 15.0))
    lungs = Union((lung_l, lung_r))

    # --- primary: mid-thoracic esophagus -----------------------------------------------
    gtv_len = 50.0 * size(0.12)
    gtv_z = 0.0 + move(4.0)
    gtv_a, gtv_b = 15.0 * size(), 13.0 * size()
    gtvp = _tube(eso_x, eso_y, gtv_a, gtv_b, gtv_z - gtv_len / 2, gtv_z + gtv_len / 2, rounding=8.0)
    ctvp = _tube(eso_x, eso_y, gtv_a + 6.0, gtv_b + 6.0, gtv_z - gtv_len / 2 - 30.0, gtv_z + gtv_len / 2 + 30.0, rounding=10.0)
    ptvp = Offset(ctvp, 5.0)

    # --- lung metastasis: peripheral right upper lobe ----------------------------------
    r_met = 10.0 * size(0.12)
    met_lung_c = (-115.0 + move(3.0), 10.0 + move(3.0), 50.0 + move(5.0))
    gtv_met_lung = Ellipsoid(met_lung_c, (r_met, r_met * 0.95, r_met * 1.05))
    ptv_met_lung = Offset(gtv_met_lung, 5.0)

    # --- vertebral metastasis ------------------------------------------------------------
    # violations: the lesion reaches back towards the canal (its PTV overlaps the cord PRV)
    met_vert_c = (vb_x, vb_y + (7.0 if spec.violations else 1.0), 95.0 + move(4.0))
    gtv_met_vert = Ellipsoid(met_vert_c, (14.0 * size(0.06), 12.0, 12.0 * size(0.06)))
    ptv_met_vert = Offset(gtv_met_vert, 3.0)

    # --- thoracic organs for SBRT (TG-101) and clinical-size extras ---------------------------------------------------------------
    # brachial plexus: about 5 cc each (TG-101's D3cc needs more than 3 cc)
    plexus_l = _tube(0, 0, 6.5, 5.5, 88.0, z_hi, 2.0, knots=((88.0, 42.0, 10.0), (z_hi, 72.0, 12.0)))
    plexus_r = _tube(0, 0, 6.5, 5.5, 88.0, z_hi, 2.0, knots=((88.0, -42.0, 10.0), (z_hi, -72.0, 12.0)))
    chestwall = Ring(Offset(lung_r, 20.0), lung_r)
    # skin: a 3 mm rind inside the External on every plane (the body shrunk in-plane only, so the
    # first and last planes hold a rind, not a full disc)
    body_core = SuperEllipticPrism(external.center_xy_mm,
                                   (external.semi_axes_mm[0] - 3.0, external.semi_axes_mm[1] - 3.0),
                                   external.modulation_mm, external.period_mm, external.exponent, external.z_range_mm)
    skin = Ring(external, body_core)
    ring_ptvp = Ring(Offset(ptvp, 20.0), Offset(ptvp, 5.0))

    red, green, blue = (255, 0, 0), (0, 160, 0), (0, 90, 255)
    defs: list[tuple[str, str, tuple[int, int, int], Shape, bool]] = [
        ("External", "EXTERNAL", (0, 255, 0), external, False),
        ("Lung_L", "ORGAN", (0, 200, 200), lung_l, False),
        ("Lung_R", "ORGAN", (0, 160, 200), lung_r, False),
        ("Lungs", "ORGAN", (0, 180, 220), lungs, False),
        ("Heart", "ORGAN", (200, 0, 60), heart, False),
        ("SpinalCord", "ORGAN", (255, 255, 0), cord, False),
        ("SpinalCord_PRV05", "AVOIDANCE", (255, 200, 0), cord_prv, False),
        ("Esophagus", "ORGAN", (160, 100, 40), esophagus, False),
        ("Trachea", "ORGAN", (120, 200, 255), trachea, False),
        ("Stomach", "ORGAN", (230, 150, 100), stomach, False),
        ("Liver", "ORGAN", (150, 70, 30), liver, False),
        ("GTVp", "GTV", red, gtvp, False),
        ("CTVp", "CTV", (255, 120, 0), ctvp, False),
        ("PTVp", "PTV", blue, ptvp, False),
        ("GTV_Met_Lung", "GTV", red, gtv_met_lung, False),
        ("PTV_Met_Lung", "PTV", blue, ptv_met_lung, False),
        ("GTV_Met_Vert", "GTV", red, gtv_met_vert, False),
        ("PTV_Met_Vert", "PTV", blue, ptv_met_vert, False),
        ("Kidney_L", "ORGAN", (180, 120, 60), kidney_l, True),
        ("Kidney_R", "ORGAN", (180, 100, 60), kidney_r, True),
        ("BrachialPlex_L", "ORGAN", (255, 0, 255), plexus_l, False),
        ("BrachialPlex_R", "ORGAN", (220, 0, 255), plexus_r, False),
        ("GreatVes", "ORGAN", (255, 60, 60), great_vessels, False),
        ("Bronchus", "ORGAN", (100, 200, 255), bronchi, False),
        ("Chestwall", "ORGAN", (200, 200, 120), chestwall, False),
        ("Skin", "ORGAN", (255, 200, 170), skin, False),
        ("Bowel_Small", "ORGAN", (240, 200, 0), bowel, True),
        ("Duodenum", "ORGAN", (200, 160, 0), duodenum, True),
        ("Ring_PTVp", "CONTROL", (128, 128, 128), ring_ptvp, True),
    ]
    rois = tuple(
        RoiDef(number=i + 1, name=name, interpreted_type=kind, color_rgb=color, shape=shape)
        for i, (name, kind, color, shape, clinical_only) in enumerate(defs)
        if spec.clinical_size or not clinical_only
    )
    isocenters = {
        "C1_Eso": (round(eso_x, 1), round(eso_y, 1), round(gtv_z, 1)),
        "C2_LungMet": tuple(round(v, 1) for v in met_lung_c),
        "C3_VertMet": tuple(round(v, 1) for v in met_vert_c),
    }
    return Anatomy(rois=rois, bone=(vertebral_body, posterior_arch), z_planes_mm=z_planes,
                   isocenters_mm=isocenters)  # type: ignore[arg-type]
