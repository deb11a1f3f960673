"""``--volume-model``: the DVH volume model option shared by ``plancheck dvh`` and ``plancheck check``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from plancheck.model.volume_model import VOLUME_MODELS, volume_model_named

if TYPE_CHECKING:
    from plancheck.model.export import PlanExport

__all__ = ["add_volume_model_option", "apply_volume_model"]

AUTO = "auto"


def add_volume_model_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--volume-model auto|slab|no-caps|eclipse|...`` (default ``auto``)."""
    parser.add_argument(
        "--volume-model", choices=(AUTO, *VOLUME_MODELS), default=AUTO, metavar="MODEL",
        help=("how contours become a volume for DVHs (end caps beyond the first/last contour, min/max on the surface "
              f"or at samples): {', '.join((AUTO, *VOLUME_MODELS))}. Default auto: from the Manufacturer of the "
              "RT Structure Set (else RT Dose, else RT Plan); slab when not recognised. See docs/volume-conventions.md"),
    )


def apply_volume_model(export: PlanExport, name: str) -> PlanExport:
    """The export with every structure set on the named model (``auto``: unchanged)."""
    if name == AUTO:
        return export
    return export.with_volume_model(volume_model_named(name), "--volume-model")
