"""Radiobiology: the linear-quadratic model (BED, EQD2, EQDx), voxel-wise dose
conversion, fractionation summaries and the α/β table.

Pure mathematics on Gy and days; no DICOM. Errors in the input raise
:class:`plancheck.errors.RadiobiologyError`; an invalid α/β table file raises
:class:`plancheck.errors.ProtocolError`.

Modules
-------
lq
    BED, EQD2, EQDx, their inverses, accelerated repopulation.
conversion
    ``DoseKind`` and ``DoseConversion`` (voxel-wise physical → BED/EQD2).
fractionation
    ``summarize_fractionation``: dose per fraction, BED₁₀, EQD2₁₀, regime.
alpha_beta
    The α/β table (``constraints/alpha_beta.yaml``) and its lookup.
"""

from plancheck.radiobiology.alpha_beta import (
    DEFAULT_ALPHA_BETA_RESOURCE,
    AlphaBetaChoice,
    AlphaBetaEntry,
    AlphaBetaOrigin,
    AlphaBetaTable,
    default_alpha_beta_table,
    load_alpha_beta_table,
)
from plancheck.radiobiology.conversion import DoseConversion, DoseKind
from plancheck.radiobiology.fractionation import (
    CONVENTIONAL_MAX_GY_PER_FRACTION,
    CONVENTIONAL_MIN_GY_PER_FRACTION,
    REGIME_TOLERANCE_GY,
    SBRT_MAX_FRACTIONS,
    SBRT_MIN_GY_PER_FRACTION,
    TUMOUR_ALPHA_BETA_GY,
    FractionationRegime,
    FractionationSummary,
    classify_regime,
    summarize_fractionation,
)
from plancheck.radiobiology.lq import (
    SQUAMOUS_CELL_CARCINOMA_REPOPULATION,
    RepopulationParameters,
    bed_gy,
    bed_to_eqd2_gy,
    dose_per_fraction_for_bed_gy,
    eqd2_gy,
    eqd2_to_bed_gy,
    eqdx_gy,
    repopulation_bed_gy,
    total_dose_for_bed_gy,
    total_dose_for_eqd2_gy,
)

__all__ = [
    # lq
    "bed_gy",
    "eqd2_gy",
    "eqdx_gy",
    "bed_to_eqd2_gy",
    "eqd2_to_bed_gy",
    "total_dose_for_bed_gy",
    "total_dose_for_eqd2_gy",
    "dose_per_fraction_for_bed_gy",
    "repopulation_bed_gy",
    "RepopulationParameters",
    "SQUAMOUS_CELL_CARCINOMA_REPOPULATION",
    # conversion
    "DoseKind",
    "DoseConversion",
    # fractionation
    "FractionationRegime",
    "FractionationSummary",
    "classify_regime",
    "summarize_fractionation",
    "CONVENTIONAL_MIN_GY_PER_FRACTION",
    "CONVENTIONAL_MAX_GY_PER_FRACTION",
    "SBRT_MIN_GY_PER_FRACTION",
    "SBRT_MAX_FRACTIONS",
    "REGIME_TOLERANCE_GY",
    "TUMOUR_ALPHA_BETA_GY",
    # alpha_beta
    "default_alpha_beta_table",
    "AlphaBetaTable",
    "AlphaBetaEntry",
    "AlphaBetaChoice",
    "AlphaBetaOrigin",
    "DEFAULT_ALPHA_BETA_RESOURCE",
    "load_alpha_beta_table",
]
