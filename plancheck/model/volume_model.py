"""How a stack of planar contours becomes a volume: the DVH volume models.

Planning systems agree on a contour's cross-section but not on how far a structure
reaches along z beyond its first and last contour (the "end caps"), nor on whether the
reported minimum and maximum dose are taken on the structure's surface or at interior
sample points. plancheck offers these conventions as *volume models*; the model of a
structure set is chosen from the export's Manufacturer (0008,0070) by default
(:func:`volume_model_for_manufacturer`) and can be overridden (``--volume-model`` on
``plancheck dvh`` and ``plancheck check``; :meth:`plancheck.model.StructureSet.with_volume_model`,
``volume_model=`` of :func:`plancheck.dvh.engine.compute_dvh` and
:func:`plancheck.dicom.read_export`).

Every model keeps the slab geometry inside the stack: a contour plane at ``z_k`` stands
for the slab between the mid-points to its neighbouring planes, with the plane's even-odd
region as cross-section. The models differ in

* ``end_cap_spacings``: how far the first and last slab (and the slabs beside a gap in the
  stack) reach beyond their contour plane, in nominal contour spacings ``s``. A single-plane
  structure is a slab of ``2 · end_cap_spacings · t`` (``t``: the assumed thickness, the dose
  grid's z spacing unless given);
* ``surface_extremes``: whether the minimum and maximum dose include points on the
  structure's surface (contour edges on the slab faces and the end-cap faces) or only the
  interior sample cells.

Analytic consequence (used by the tests): a cylinder of radius ``r`` contoured on ``N``
planes at spacing ``s`` has volume ``π r² ((N − 1) s + 2 e s)`` with ``e = end_cap_spacings``:
``π r² N s`` for ``slab`` (e = ½), ``π r² (N − 1) s`` for ``no-caps`` (e = 0).

Where each model comes from, with sources and confidence: ``docs/volume-conventions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "VolumeModel",
    "SLAB",
    "NO_CAPS",
    "ECLIPSE",
    "RAYSTATION",
    "PINNACLE",
    "MONACO",
    "TOMOTHERAPY",
    "GAMMAPLAN",
    "VOLUME_MODELS",
    "volume_model_named",
    "volume_model_for_manufacturer",
]


@dataclass(frozen=True)
class VolumeModel:
    """A convention for turning planar contours into a volume (see the module docstring).

    Attributes
    ----------
    name
        Identifier used on the command line and in reports (``slab``, ``eclipse`` ...).
    end_cap_spacings
        How far the end slabs reach beyond the first/last contour plane (and beside a gap),
        in nominal contour spacings (½ for the slab model, 0 for none).
    surface_extremes
        True: minimum and maximum dose include surface points; False: only the interior
        sample cells (as a planning system that samples its structure on a grid reports them).
    geometry
        One line for reports saying what the model does.
    basis
        One line for reports saying where the model comes from and how sure that is.
    """

    name: str
    end_cap_spacings: float
    surface_extremes: bool = True
    geometry: str = ""
    basis: str = ""

    def describe(self) -> str:
        """``eclipse: ends 1/12 spacing beyond the first/last contour; ...`` for report headers."""
        parts = [self.geometry or _geometry_text(self)]
        if self.basis:
            parts.append(self.basis)
        return f"{self.name}: " + "; ".join(parts)


def _fraction_text(x: float) -> str:
    f = Fraction(x).limit_denominator(48)
    return "½" if f == Fraction(1, 2) else str(f)


def _geometry_text(model: VolumeModel) -> str:
    ends = ("structure ends at the first and last contour" if model.end_cap_spacings == 0
            else f"ends {_fraction_text(model.end_cap_spacings)} spacing beyond the first/last contour")
    extremes = "min/max on the surface" if model.surface_extremes else "min/max at interior samples"
    return f"contour slabs, {ends}, {extremes}"


def _model(name: str, end_cap_spacings: float, surface_extremes: bool, basis: str) -> VolumeModel:
    m = VolumeModel(name, end_cap_spacings, surface_extremes, basis=basis)
    return VolumeModel(name, end_cap_spacings, surface_extremes, _geometry_text(m), basis)


SLAB = _model("slab", 0.5, True, "the Nelms 2015 analytical convention (½-slice end caps)")
"""Half a spacing beyond the end contours (the Nelms 2015 benchmark's convention)."""

NO_CAPS = _model("no-caps", 0.0, True, "no end caps: the structure ends at its outermost contours")
"""The structure ends exactly at its first and last contour plane."""

ECLIPSE = _model("eclipse", 1.0 / 12.0, False,
                 "fitted to Eclipse's own DVHs of one Eclipse export (dicompyler-core 0.5.6 example); low confidence")
"""Varian Eclipse: 1/12 spacing end caps (0.25 mm at 3 mm), min/max at interior samples (a fit)."""

RAYSTATION = _model("raystation", 0.5, True, "= slab; RayStation's convention not verified (no public source found)")
PINNACLE = _model("pinnacle", 0.5, True, "= slab; Nelms 2015 benchmark files come from Pinnacle3; not verified against Pinnacle's own DVHs")
MONACO = _model("monaco", 0.5, True, "= slab; Monaco's convention not verified (no public source found)")
TOMOTHERAPY = _model("tomotherapy", 0.5, True, "= slab; TomoTherapy's convention not verified (no public source found)")
GAMMAPLAN = _model("gammaplan", 0.5, True, "= slab; GammaPlan's convention not verified (no public source found)")

VOLUME_MODELS: dict[str, VolumeModel] = {
    m.name: m for m in (SLAB, NO_CAPS, ECLIPSE, RAYSTATION, PINNACLE, MONACO, TOMOTHERAPY, GAMMAPLAN)
}
"""Every model by name (the ``--volume-model`` choices besides ``auto``)."""


def volume_model_named(name: str) -> VolumeModel:
    """The model called ``name`` (case-insensitive).

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known ones.
    """
    key = name.strip().lower()
    if key not in VOLUME_MODELS:
        raise KeyError(f"unknown volume model {name!r} (known: {', '.join(VOLUME_MODELS)})")
    return VOLUME_MODELS[key]


# Manufacturer (0008,0070) / Manufacturer's Model Name (0008,1090) as written by each system
# (seen in real exports, see docs/volume-conventions.md): lower-case substrings, first match wins.
_MANUFACTURERS: tuple[tuple[str, str, VolumeModel], ...] = (
    ("varian", "", ECLIPSE),            # "Varian Medical Systems" (Eclipse, ARIA RadOnc)
    ("raysearch", "", RAYSTATION),      # "RaySearch Laboratories"
    ("adac", "", PINNACLE),             # "ADAC" (Pinnacle3)
    ("philips", "pinnacle", PINNACLE),  # "Philips" ... "Pinnacle3"
    ("", "pinnacle", PINNACLE),
    ("", "monaco", MONACO),             # "CMS, Inc." / "Elekta" ... "Monaco"
    ("cms", "", MONACO),
    ("tomotherapy", "", TOMOTHERAPY),   # "TomoTherapy Incorporated"
    ("accuray", "", TOMOTHERAPY),
    ("", "gammaplan", GAMMAPLAN),       # "Elekta Instrument AB" ... "Leksell GammaPlan"
    ("elekta instrument", "", GAMMAPLAN),
)


def volume_model_for_manufacturer(manufacturer: str, model_name: str = "") -> VolumeModel | None:
    """The volume model of the planning system that wrote a file, or None if not recognised.

    Parameters
    ----------
    manufacturer
        Manufacturer (0008,0070) of the file.
    model_name
        Manufacturer's Model Name (0008,1090), when given (tells Monaco from GammaPlan,
        both written by Elekta companies).
    """
    who = (manufacturer or "").strip().lower()
    what = (model_name or "").strip().lower()
    if not who and not what:
        return None
    for maker, product, model in _MANUFACTURERS:
        if (not maker or maker in who) and (not product or product in what):
            return model
    return None
