"""Frozen, typed models of what plancheck reads: plans, structure sets, dose grids, courses."""

from plancheck.model.dose import DoseGrid, DoseSource
from plancheck.model.export import Course, ImageSeries, PlanExport, SkippedFile
from plancheck.model.plan import Beam, DoseReference, FractionGroup, Plan
from plancheck.model.structures import Contour, Roi, StructureSet
from plancheck.model.volume_model import VOLUME_MODELS, VolumeModel, volume_model_for_manufacturer, volume_model_named

__all__ = [
    "Beam", "Contour", "Course", "DoseGrid", "DoseReference", "DoseSource", "FractionGroup",
    "ImageSeries", "Plan", "PlanExport", "Roi", "SkippedFile", "StructureSet",
    "VOLUME_MODELS", "VolumeModel", "volume_model_for_manufacturer", "volume_model_named",
]
