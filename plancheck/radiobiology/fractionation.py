"""Summary of a prescription's fractionation: dose per fraction, BED₁₀, EQD2₁₀, regime.

Regimes, by dose per fraction d = prescription / fractions (boundaries
inclusive as written, compared with a tolerance of
:data:`REGIME_TOLERANCE_GY` so that e.g. 6.6 Gy / 3 fx = 2.1999999999999997 Gy
in floating point still counts as 2.2 Gy):

=============================  =========================================
regime                         rule
=============================  =========================================
hyperfractionated              d < 1.8 Gy
conventional                   1.8 Gy <= d <= 2.2 Gy
SBRT                           d >= 4 Gy and n <= 12 fractions
moderately hypofractionated    2.2 Gy < d < 5 Gy, not SBRT
other                          d >= 5 Gy and n > 12 fractions
=============================  =========================================

SBRT by numbers is the range over which published SBRT normal-tissue tables
are used (1–8 fractions in the UK SABR consortium guidance; 60 Gy in 8–12
fractions and 45–50 Gy in 10 fractions to central lesions), so that such a
course is never checked as conventional (see docs/clinical-basis.md). The
classification uses numbers only, not technique or intent: a palliative 8 Gy
single fraction is "SBRT" here; a case file can declare it otherwise
(:class:`plancheck.model.case.CourseDeclaration`, applied by the check).
"Hyperfractionated" is a name for d < 1.8 Gy whatever the number of fractions
per day.

References
----------
.. [1] Fowler JF. The linear-quadratic formula and progress in fractionated
   radiotherapy. Br J Radiol. 1989;62:679–694.
.. [2] Bentzen SM et al. Radiother Oncol. 2012;105:266–268.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from plancheck.radiobiology._checks import check_fractions, check_positive
from plancheck.radiobiology.lq import bed_gy, eqd2_gy

__all__ = [
    "CONVENTIONAL_MIN_GY_PER_FRACTION",
    "CONVENTIONAL_MAX_GY_PER_FRACTION",
    "SBRT_MIN_GY_PER_FRACTION",
    "SBRT_MAX_FRACTIONS",
    "REGIME_TOLERANCE_GY",
    "TUMOUR_ALPHA_BETA_GY",
    "FractionationRegime",
    "FractionationSummary",
    "classify_regime",
    "summarize_fractionation",
]

#: Lowest dose per fraction (Gy) of conventional fractionation.
CONVENTIONAL_MIN_GY_PER_FRACTION = 1.8
#: Highest dose per fraction (Gy) of conventional fractionation.
CONVENTIONAL_MAX_GY_PER_FRACTION = 2.2
#: Lowest dose per fraction (Gy) of SBRT by numbers (docs/clinical-basis.md, "Which courses are SBRT").
SBRT_MIN_GY_PER_FRACTION = 4.0
#: Most fractions of SBRT by numbers (docs/clinical-basis.md, "Which courses are SBRT").
SBRT_MAX_FRACTIONS = 12
#: Lowest dose per fraction (Gy) of the "other" regime (not SBRT: more than 12 fractions).
_OTHER_MIN_GY_PER_FRACTION = 5.0
#: Tolerance (Gy) on the dose-per-fraction boundaries, for floating-point rounding of D/n.
REGIME_TOLERANCE_GY = 1e-9
#: α/β (Gy) used for the prescription's BED₁₀ and EQD2₁₀ (tumour; docs/clinical-basis.md).
TUMOUR_ALPHA_BETA_GY = 10.0


class FractionationRegime(enum.Enum):
    """Fractionation regime of a prescription (see the module docstring)."""

    HYPERFRACTIONATED = "hyperfractionated"
    CONVENTIONAL = "conventional"
    MODERATELY_HYPOFRACTIONATED = "moderately hypofractionated"
    SBRT = "SBRT"
    OTHER = "other"


@dataclass(frozen=True)
class FractionationSummary:
    """The radiobiological summary of one prescription.

    Attributes
    ----------
    prescription_gy
        Prescribed total dose, Gy.
    fractions
        Number of fractions.
    dose_per_fraction_gy
        prescription / fractions, Gy.
    bed10_gy
        BED of the prescription with α/β = 10 Gy, Gy (no repopulation term).
    eqd2_10_gy
        EQD2 of the prescription with α/β = 10 Gy, Gy.
    regime
        :class:`FractionationRegime`.
    """

    prescription_gy: float
    fractions: int
    dose_per_fraction_gy: float
    bed10_gy: float
    eqd2_10_gy: float
    regime: FractionationRegime

    def describe(self) -> str:
        """E.g. ``50 Gy / 5 fx (10 Gy/fx, SBRT): BED10 100 Gy, EQD2(10) 83.33 Gy``."""
        return (
            f"{self.prescription_gy:g} Gy / {self.fractions} fx "
            f"({self.dose_per_fraction_gy:.4g} Gy/fx, {self.regime.value}): "
            f"BED10 {self.bed10_gy:.4g} Gy, EQD2(10) {self.eqd2_10_gy:.4g} Gy"
        )


def classify_regime(dose_per_fraction_gy: float, fractions: int) -> FractionationRegime:
    """Regime from dose per fraction (Gy) and number of fractions (module docstring table)."""
    d_gy = check_positive(dose_per_fraction_gy, "dose_per_fraction_gy", "Gy")
    n = check_fractions(fractions)
    tol = REGIME_TOLERANCE_GY
    if d_gy < CONVENTIONAL_MIN_GY_PER_FRACTION - tol:
        return FractionationRegime.HYPERFRACTIONATED
    if d_gy <= CONVENTIONAL_MAX_GY_PER_FRACTION + tol:
        return FractionationRegime.CONVENTIONAL
    if d_gy >= SBRT_MIN_GY_PER_FRACTION - tol and n <= SBRT_MAX_FRACTIONS:
        return FractionationRegime.SBRT
    if d_gy < _OTHER_MIN_GY_PER_FRACTION - tol:
        return FractionationRegime.MODERATELY_HYPOFRACTIONATED
    return FractionationRegime.OTHER


def summarize_fractionation(prescription_gy: float, fractions: int) -> FractionationSummary:
    """Dose per fraction, BED₁₀, EQD2₁₀ and regime of a prescription.

    ``d = D/n``; ``BED₁₀ = D·(1 + d/10)``; ``EQD2₁₀ = BED₁₀ / 1.2``; the regime
    follows the thresholds in the module docstring (conventional
    1.8–2.2 Gy/fx; SBRT >= 4 Gy/fx in <= 12 fractions; moderately
    hypofractionated > 2.2 and < 5 Gy/fx otherwise; hyperfractionated < 1.8 Gy/fx; other).

    Parameters
    ----------
    prescription_gy
        Prescribed total dose, Gy (> 0).
    fractions
        Number of fractions, a whole number >= 1.

    Returns
    -------
    FractionationSummary

    Raises
    ------
    RadiobiologyError
        For a prescription <= 0 or non-finite, or an invalid number of fractions.

    References
    ----------
    Fowler JF. Br J Radiol. 1989;62:679–694; docs/clinical-basis.md (which courses are SBRT).

    Examples
    --------
    >>> summarize_fractionation(54.0, 3).regime.value
    'SBRT'
    """
    dose_gy = check_positive(prescription_gy, "prescription_gy", "Gy")
    n = check_fractions(fractions)
    d_gy = dose_gy / n
    return FractionationSummary(
        prescription_gy=dose_gy,
        fractions=n,
        dose_per_fraction_gy=d_gy,
        bed10_gy=bed_gy(dose_gy, n, TUMOUR_ALPHA_BETA_GY),
        eqd2_10_gy=eqd2_gy(dose_gy, n, TUMOUR_ALPHA_BETA_GY),
        regime=classify_regime(d_gy, n),
    )
