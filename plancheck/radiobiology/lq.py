"""Linear-quadratic (LQ) model: BED, EQD2, EQDx, their inverses and repopulation.

All doses are in Gy, times in days, α in Gy⁻¹, α/β in Gy. Every dose function
accepts either a number (and returns a ``float``) or a ``numpy`` array of
voxel total doses delivered over the *same* number of fractions (and returns
an array of the same shape), so a dose grid can be converted voxel by voxel:
each voxel's dose per fraction is its own total dose divided by ``fractions``.

Formulas (n fractions of d Gy, total dose D = n·d)::

    BED  = n·d·(1 + d/(α/β))                         [Fowler 1989]
    EQDx = BED / (1 + x/(α/β))   (EQD2: x = 2 Gy)     [Bentzen et al. 2012]
    BED_T = BED − ln2·max(0, T − Tk) / (α·Tpot)       [Fowler 1989]

The model assumes complete repair between fractions and is least trustworthy
at very large doses per fraction (roughly above 8–10 Gy), where it is widely
thought to overestimate cell kill; plancheck reports the LQ value and leaves
that judgement to the reader.

References
----------
.. [1] Fowler JF. The linear-quadratic formula and progress in fractionated
   radiotherapy. Br J Radiol. 1989;62:679–694.
.. [2] Bentzen SM, Dörr W, Gahbauer R, et al. Bioeffect modeling and
   equieffective dose concepts in radiation oncology – terminology, quantities
   and units. Radiother Oncol. 2012;105:266–268.
.. [3] Joiner MC, van der Kogel AJ (eds). Basic Clinical Radiobiology, 4th ed.
   London: Hodder Arnold; 2009 (chapters on the LQ approach and on time
   factors).
.. [4] Withers HR, Taylor JMG, Maciejewski B. The hazard of accelerated tumor
   clonogen repopulation during radiotherapy. Acta Oncol. 1988;27:131–146.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plancheck.errors import RadiobiologyError
from plancheck.radiobiology._checks import (
    DoseT,
    as_dose_array,
    check_alpha_beta_gy,
    check_finite,
    check_fractions,
    check_positive,
    restore_kind,
)

__all__ = [
    "RepopulationParameters",
    "SQUAMOUS_CELL_CARCINOMA_REPOPULATION",
    "repopulation_bed_gy",
    "bed_gy",
    "eqd2_gy",
    "eqdx_gy",
    "bed_to_eqd2_gy",
    "eqd2_to_bed_gy",
    "total_dose_for_bed_gy",
    "total_dose_for_eqd2_gy",
    "dose_per_fraction_for_bed_gy",
]

_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- repopulation


def repopulation_bed_gy(
    treatment_days: float,
    kickoff_days: float,
    alpha_per_gy: float,
    potential_doubling_days: float,
) -> float:
    """BED lost to accelerated tumour repopulation (Gy).

    ``BED_rep = ln2 · max(0, T − Tk) / (α · Tpot)``

    Parameters
    ----------
    treatment_days
        Overall treatment time T, days: elapsed time from the first to the
        last fraction (first fraction on day 0; five fractions Monday–Friday
        give T = 4). Some authors count inclusively (T + 1); the difference
        is one day's loss (≈ 0.8 Gy for the squamous-cell preset).
    kickoff_days
        Tk, days: time after the start of treatment at which accelerated
        repopulation is assumed to begin. Must be >= 0.
    alpha_per_gy
        α, Gy⁻¹: the linear LQ coefficient of the tumour clonogens. > 0.
    potential_doubling_days
        Tpot, days: potential doubling time of the clonogens during
        accelerated repopulation. > 0.

    Returns
    -------
    float
        BED (Gy) to subtract from the LQ BED; 0 when T <= Tk.

    Raises
    ------
    RadiobiologyError
        For a negative or non-finite time, or α, Tpot <= 0.

    References
    ----------
    Fowler JF. Br J Radiol. 1989;62:679–694 (the time term of the BED).
    """
    t_days = check_finite(treatment_days, "treatment_days")
    if t_days < 0:
        raise RadiobiologyError(
            f"A 'treatment_days' value of {t_days:g} days is invalid, it must be >= 0 days"
        )
    tk_days = check_finite(kickoff_days, "kickoff_days")
    if tk_days < 0:
        raise RadiobiologyError(
            f"A 'kickoff_days' value of {tk_days:g} days is invalid, it must be >= 0 days"
        )
    alpha = check_positive(alpha_per_gy, "alpha_per_gy", "/Gy")
    tpot_days = check_positive(potential_doubling_days, "potential_doubling_days", "days")
    return _LN2 * max(0.0, t_days - tk_days) / (alpha * tpot_days)


@dataclass(frozen=True)
class RepopulationParameters:
    """Parameters of the accelerated-repopulation term of the BED.

    Attributes
    ----------
    kickoff_days
        Tk, days (>= 0).
    potential_doubling_days
        Tpot, days (> 0).
    alpha_per_gy
        α, Gy⁻¹ (> 0).
    source
        Where the values come from (shown in reports).

    Raises
    ------
    RadiobiologyError
        On construction with out-of-range values.
    """

    kickoff_days: float
    potential_doubling_days: float
    alpha_per_gy: float
    source: str = ""

    def __post_init__(self) -> None:
        # repopulation_bed_gy validates all three numbers; T = 0 is always valid.
        repopulation_bed_gy(0.0, self.kickoff_days, self.alpha_per_gy, self.potential_doubling_days)

    @property
    def bed_loss_per_day_gy(self) -> float:
        """BED lost per day after the kick-off, ``ln2 / (α·Tpot)`` (Gy/day)."""
        return _LN2 / (self.alpha_per_gy * self.potential_doubling_days)

    def bed_loss_gy(self, overall_time_days: float) -> float:
        """BED lost over an overall time T (days); see :func:`repopulation_bed_gy`."""
        return repopulation_bed_gy(
            overall_time_days, self.kickoff_days, self.alpha_per_gy, self.potential_doubling_days
        )


#: Accelerated repopulation of squamous-cell carcinoma (head and neck values,
#: commonly borrowed for oesophageal SCC): Tk = 21 days, Tpot = 3 days,
#: α = 0.3 Gy⁻¹, i.e. ln2/(0.3 · 3) ≈ 0.77 Gy of BED₁₀ lost per day after day 21.
#:
#: Uncertainty, stated honestly: these are population-level modelling values,
#: not measurements for one patient. Published estimates span Tk ≈ 21–35 days
#: (Withers 1988 found an onset near 4 weeks), Tpot ≈ 2–5 days or more and
#: α ≈ 0.2–0.4 Gy⁻¹, i.e. a loss of roughly 0.5–1 Gy BED₁₀ per day; Withers'
#: estimate of 0.6 Gy EQD2 per day corresponds to 0.72 Gy BED₁₀ per day.
#: Oesophagus-specific estimates are scarce and were not verified for this
#: preset; it borrows the head-and-neck SCC values. Use it for sensitivity
#: estimates, never as a silent default.
SQUAMOUS_CELL_CARCINOMA_REPOPULATION = RepopulationParameters(
    kickoff_days=21.0,
    potential_doubling_days=3.0,
    alpha_per_gy=0.3,
    source=(
        "Head-and-neck squamous-cell carcinoma values (Tk 21 d, Tpot 3 d, alpha 0.3/Gy) "
        "after Fowler, Br J Radiol 1989;62:679-694 and Joiner & van der Kogel, "
        "Basic Clinical Radiobiology 4th ed. 2009; onset of accelerated repopulation "
        "near 3-4 weeks per Withers et al., Acta Oncol 1988;27:131-146. "
        "Uncertain (Tk 21-35 d, Tpot 2-5 d, alpha 0.2-0.4/Gy); not oesophagus-specific."
    ),
)


def _repopulation_term_gy(
    repopulation: RepopulationParameters | None, overall_time_days: float | None
) -> float:
    """The BED to subtract; insists both arguments are given together."""
    if repopulation is None and overall_time_days is None:
        return 0.0
    if repopulation is None:
        raise RadiobiologyError(
            f"'overall_time_days' was given ({overall_time_days!r}) without 'repopulation'; "
            "give RepopulationParameters too, or neither"
        )
    if overall_time_days is None:
        raise RadiobiologyError(
            "'repopulation' was given without 'overall_time_days'; the overall treatment "
            "time (days, first to last fraction) must be stated explicitly"
        )
    return repopulation.bed_loss_gy(overall_time_days)


# --------------------------------------------------------------------------- forward


def bed_gy(
    total_dose_gy: DoseT,
    fractions: int,
    alpha_beta_gy: float,
    *,
    repopulation: RepopulationParameters | None = None,
    overall_time_days: float | None = None,
) -> DoseT:
    """Biologically effective dose (Gy), optionally corrected for repopulation.

    ``BED = n·d·(1 + d/(α/β)) − ln2·max(0, T − Tk)/(α·Tpot)``, with d = D/n.

    Parameters
    ----------
    total_dose_gy
        Total physical dose D, Gy (>= 0): a number or an array of voxel doses,
        all delivered in the same ``fractions``.
    fractions
        Number of fractions n, a whole number >= 1.
    alpha_beta_gy
        α/β ratio, Gy (> 0).
    repopulation
        Accelerated-repopulation parameters, or None for no time correction.
        There is no hidden default: pass e.g.
        :data:`SQUAMOUS_CELL_CARCINOMA_REPOPULATION` explicitly.
    overall_time_days
        Overall treatment time T, days (first to last fraction). Required if
        and only if ``repopulation`` is given.

    Returns
    -------
    float or numpy.ndarray
        BED in Gy, of the same kind as ``total_dose_gy``. With repopulation the
        result can be negative for low doses (the model then says repopulation
        outweighs cell kill); it is returned as computed.

    Raises
    ------
    RadiobiologyError
        For n not a whole number >= 1, negative or non-finite dose,
        α/β <= 0, or repopulation without overall time (or the reverse).

    References
    ----------
    Fowler JF. Br J Radiol. 1989;62:679–694.

    Examples
    --------
    >>> bed_gy(60.0, 30, 10.0)
    72.0
    """
    dose, is_scalar = as_dose_array(total_dose_gy, "total_dose_gy")
    n = check_fractions(fractions)
    ab_gy = check_alpha_beta_gy(alpha_beta_gy)
    loss_gy = _repopulation_term_gy(repopulation, overall_time_days)
    bed = dose * (1.0 + (dose / n) / ab_gy) - loss_gy
    return restore_kind(bed, is_scalar)  # type: ignore[return-value]


def bed_to_eqd2_gy(bed: DoseT, alpha_beta_gy: float) -> DoseT:
    """Convert BED (Gy) to EQD2 (Gy): ``EQD2 = BED / (1 + 2/(α/β))``.

    Parameters
    ----------
    bed
        BED in Gy (a number or an array; any finite value, as a
        repopulation-corrected BED may be negative).
    alpha_beta_gy
        α/β ratio, Gy (> 0).

    Returns
    -------
    float or numpy.ndarray
        EQD2 in Gy, of the same kind as ``bed``.

    References
    ----------
    Bentzen SM et al. Radiother Oncol. 2012;105:266–268.
    """
    return _bed_to_eqdx(bed, alpha_beta_gy, 2.0)


def eqd2_to_bed_gy(eqd2: DoseT, alpha_beta_gy: float) -> DoseT:
    """Convert EQD2 (Gy) to BED (Gy): ``BED = EQD2 · (1 + 2/(α/β))``.

    Parameters
    ----------
    eqd2
        EQD2 in Gy (a number or an array; any finite value).
    alpha_beta_gy
        α/β ratio, Gy (> 0).

    Returns
    -------
    float or numpy.ndarray
        BED in Gy, of the same kind as ``eqd2``.

    References
    ----------
    Bentzen SM et al. Radiother Oncol. 2012;105:266–268.
    """
    values, is_scalar = as_dose_array(eqd2, "eqd2", allow_negative=True)
    ab_gy = check_alpha_beta_gy(alpha_beta_gy)
    return restore_kind(values * (1.0 + 2.0 / ab_gy), is_scalar)  # type: ignore[return-value]


def _bed_to_eqdx(bed: DoseT, alpha_beta_gy: float, reference_gy: float) -> DoseT:
    values, is_scalar = as_dose_array(bed, "bed", allow_negative=True)
    ab_gy = check_alpha_beta_gy(alpha_beta_gy)
    return restore_kind(values / (1.0 + reference_gy / ab_gy), is_scalar)  # type: ignore[return-value]


def eqd2_gy(
    total_dose_gy: DoseT,
    fractions: int,
    alpha_beta_gy: float,
    *,
    repopulation: RepopulationParameters | None = None,
    overall_time_days: float | None = None,
) -> DoseT:
    """Equivalent dose in 2 Gy fractions (Gy): ``EQD2 = BED / (1 + 2/(α/β))``.

    Parameters are those of :func:`bed_gy`; the repopulation correction, if
    given, is applied to the BED before conversion.

    Returns
    -------
    float or numpy.ndarray
        EQD2 in Gy, of the same kind as ``total_dose_gy``.

    Raises
    ------
    RadiobiologyError
        As :func:`bed_gy`.

    References
    ----------
    Bentzen SM et al. Radiother Oncol. 2012;105:266–268 (EQDX notation).

    Examples
    --------
    >>> round(eqd2_gy(30.0, 3, 2.0), 9)
    90.0
    """
    bed = bed_gy(
        total_dose_gy,
        fractions,
        alpha_beta_gy,
        repopulation=repopulation,
        overall_time_days=overall_time_days,
    )
    return _bed_to_eqdx(bed, alpha_beta_gy, 2.0)


def eqdx_gy(
    total_dose_gy: DoseT,
    fractions: int,
    alpha_beta_gy: float,
    reference_dose_per_fraction_gy: float,
) -> DoseT:
    """Equivalent dose in fractions of x Gy (Gy): ``EQDx = BED / (1 + x/(α/β))``.

    Parameters
    ----------
    total_dose_gy
        Total physical dose D, Gy (>= 0), number or voxel array.
    fractions
        Number of fractions n, a whole number >= 1.
    alpha_beta_gy
        α/β ratio, Gy (> 0).
    reference_dose_per_fraction_gy
        x, the reference dose per fraction, Gy (> 0). x = 2 gives EQD2.

    Returns
    -------
    float or numpy.ndarray
        EQDx in Gy, of the same kind as ``total_dose_gy``. When x equals the
        actual dose per fraction D/n, EQDx equals D.

    Raises
    ------
    RadiobiologyError
        As :func:`bed_gy`, and for x <= 0.

    References
    ----------
    Bentzen SM et al. Radiother Oncol. 2012;105:266–268.
    """
    x_gy = check_positive(reference_dose_per_fraction_gy, "reference_dose_per_fraction_gy", "Gy")
    bed = bed_gy(total_dose_gy, fractions, alpha_beta_gy)
    return _bed_to_eqdx(bed, alpha_beta_gy, x_gy)


# --------------------------------------------------------------------------- inverse


def dose_per_fraction_for_bed_gy(
    bed: DoseT,
    fractions: int,
    alpha_beta_gy: float,
    *,
    repopulation: RepopulationParameters | None = None,
    overall_time_days: float | None = None,
) -> DoseT:
    """Dose per fraction d (Gy) that gives a BED in n fractions.

    Solves ``n·d + n·d²/(α/β) = BED + BED_rep`` for d >= 0::

        d = (α/β)/2 · (√(1 + 4·B/(n·α/β)) − 1) = 2·(B/n) / (1 + √(1 + 4·B/(n·α/β)))

    with B = BED + BED_rep; the second (algebraically equal) form is used
    because it does not lose precision when B/n is small against α/β.

    Parameters
    ----------
    bed
        Required BED, Gy (>= 0), number or array.
    fractions
        Number of fractions n, a whole number >= 1.
    alpha_beta_gy
        α/β ratio, Gy (> 0).
    repopulation, overall_time_days
        As in :func:`bed_gy`: if given, ``bed`` is the repopulation-corrected
        BED to be reached, so the repopulation loss is added before solving.

    Returns
    -------
    float or numpy.ndarray
        Dose per fraction in Gy, of the same kind as ``bed``.

    Raises
    ------
    RadiobiologyError
        For negative or non-finite BED, n not a whole number >= 1, α/β <= 0.

    References
    ----------
    Fowler JF. Br J Radiol. 1989;62:679–694.
    """
    values, is_scalar = as_dose_array(bed, "bed")
    n = check_fractions(fractions)
    ab_gy = check_alpha_beta_gy(alpha_beta_gy)
    target = values + _repopulation_term_gy(repopulation, overall_time_days)
    bed_per_fraction = target / n
    d_gy = 2.0 * bed_per_fraction / (1.0 + np.sqrt(1.0 + 4.0 * bed_per_fraction / ab_gy))
    return restore_kind(d_gy, is_scalar)  # type: ignore[return-value]


def total_dose_for_bed_gy(
    bed: DoseT,
    fractions: int,
    alpha_beta_gy: float,
    *,
    repopulation: RepopulationParameters | None = None,
    overall_time_days: float | None = None,
) -> DoseT:
    """Total physical dose n·d (Gy) that gives a BED in n fractions.

    The inverse of :func:`bed_gy`; see :func:`dose_per_fraction_for_bed_gy`
    for the solution of the quadratic.

    Returns
    -------
    float or numpy.ndarray
        Total dose in Gy, of the same kind as ``bed``.

    Raises
    ------
    RadiobiologyError
        As :func:`dose_per_fraction_for_bed_gy`.

    References
    ----------
    Fowler JF. Br J Radiol. 1989;62:679–694.

    Examples
    --------
    >>> round(total_dose_for_bed_gy(72.0, 30, 10.0), 9)
    60.0
    """
    n = check_fractions(fractions)
    d_gy = dose_per_fraction_for_bed_gy(
        bed, n, alpha_beta_gy, repopulation=repopulation, overall_time_days=overall_time_days
    )
    return d_gy * n


def total_dose_for_eqd2_gy(
    eqd2: DoseT,
    fractions: int,
    alpha_beta_gy: float,
    *,
    repopulation: RepopulationParameters | None = None,
    overall_time_days: float | None = None,
) -> DoseT:
    """Total physical dose (Gy) in n fractions that gives an EQD2.

    ``BED = EQD2·(1 + 2/(α/β))``, then :func:`total_dose_for_bed_gy`.

    Parameters
    ----------
    eqd2
        Required EQD2, Gy (>= 0), number or array.
    fractions, alpha_beta_gy, repopulation, overall_time_days
        As in :func:`total_dose_for_bed_gy`.

    Returns
    -------
    float or numpy.ndarray
        Total dose in Gy, of the same kind as ``eqd2``.

    Raises
    ------
    RadiobiologyError
        As :func:`dose_per_fraction_for_bed_gy`.

    References
    ----------
    Bentzen SM et al. Radiother Oncol. 2012;105:266–268.
    """
    as_dose_array(eqd2, "eqd2")  # negative EQD2 has no dose; say so under its own name
    bed = eqd2_to_bed_gy(eqd2, alpha_beta_gy)
    return total_dose_for_bed_gy(
        bed, fractions, alpha_beta_gy, repopulation=repopulation, overall_time_days=overall_time_days
    )
