"""Voxel-wise dose conversion: physical dose, BED or EQD2 of a dose array.

A :class:`DoseConversion` says which quantity a DVH or dose grid holds and
converts a physical dose array into it. The TG-263 metric string keeps its
unit as ``[Gy]`` (``D95%[Gy]``); the kind of dose travels separately in this
object and is shown through :attr:`DoseConversion.label`,
:attr:`DoseConversion.unit` and :meth:`DoseConversion.describe`.

References
----------
.. [1] Bentzen SM, Dörr W, Gahbauer R, et al. Bioeffect modeling and
   equieffective dose concepts in radiation oncology – terminology, quantities
   and units. Radiother Oncol. 2012;105:266–268 (EQD2 and BED notation; the
   α/β used must always be stated).
.. [2] Mayo CS, Moran JM, Bosch W, et al. AAPM Task Group 263: standardizing
   nomenclatures in radiation oncology. Int J Radiat Oncol Biol Phys.
   2018;100:1057–1066.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from plancheck.errors import RadiobiologyError
from plancheck.radiobiology._checks import as_dose_array, check_alpha_beta_gy, check_fractions
from plancheck.radiobiology.lq import bed_gy, eqd2_gy

__all__ = ["DoseKind", "DoseConversion"]


class DoseKind(enum.Enum):
    """The quantity a dose value represents."""

    PHYSICAL = "physical"
    BED = "BED"
    EQD2 = "EQD2"


@dataclass(frozen=True)
class DoseConversion:
    """How physical dose is turned into the quantity a check evaluates.

    Attributes
    ----------
    kind
        :class:`DoseKind` of the result.
    alpha_beta_gy
        α/β ratio, Gy: required (> 0) for BED and EQD2, must be None for
        physical dose (so a physical DVH can never look like an EQD2 one).

    Raises
    ------
    RadiobiologyError
        On construction with a missing, superfluous or invalid α/β.

    Examples
    --------
    >>> DoseConversion(DoseKind.EQD2, 3.0).label
    'EQD2(α/β=3 Gy)'
    """

    kind: DoseKind
    alpha_beta_gy: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, DoseKind):
            raise RadiobiologyError(
                f"A 'kind' value of {self.kind!r} is invalid, it must be a DoseKind "
                f"({', '.join(k.name for k in DoseKind)})"
            )
        if self.kind is DoseKind.PHYSICAL:
            if self.alpha_beta_gy is not None:
                raise RadiobiologyError(
                    f"An 'alpha_beta_gy' of {self.alpha_beta_gy!r} was given for physical dose; "
                    "it must be None (α/β applies only to BED and EQD2)"
                )
            return
        if self.alpha_beta_gy is None:
            raise RadiobiologyError(
                f"'alpha_beta_gy' is required for {self.kind.value}; it must be > 0 Gy"
            )
        object.__setattr__(self, "alpha_beta_gy", check_alpha_beta_gy(self.alpha_beta_gy))

    @classmethod
    def physical(cls) -> DoseConversion:
        """No conversion: physical dose."""
        return cls(DoseKind.PHYSICAL)

    @classmethod
    def bed(cls, alpha_beta_gy: float) -> DoseConversion:
        """Conversion to BED with the given α/β (Gy)."""
        return cls(DoseKind.BED, alpha_beta_gy)

    @classmethod
    def eqd2(cls, alpha_beta_gy: float) -> DoseConversion:
        """Conversion to EQD2 with the given α/β (Gy)."""
        return cls(DoseKind.EQD2, alpha_beta_gy)

    def apply(self, total_dose_gy: np.ndarray, fractions: int) -> np.ndarray:
        """Convert an array of voxel total doses (Gy), delivered in ``fractions``.

        Each voxel's dose per fraction is its own total dose divided by
        ``fractions`` (Bentzen et al. 2012). Physical dose is returned
        unchanged (the same array object), after the same checks.

        Parameters
        ----------
        total_dose_gy
            Physical total dose per voxel, Gy, any shape, all >= 0 and finite.
        fractions
            Number of fractions, a whole number >= 1.

        Returns
        -------
        numpy.ndarray
            The converted doses, Gy, same shape.

        Raises
        ------
        RadiobiologyError
            For negative or non-finite doses or an invalid number of fractions.
        """
        if self.kind is DoseKind.PHYSICAL:
            as_dose_array(total_dose_gy, "total_dose_gy")
            check_fractions(fractions)
            return total_dose_gy
        dose = np.asarray(total_dose_gy)
        assert self.alpha_beta_gy is not None  # guaranteed by __post_init__
        if self.kind is DoseKind.BED:
            return bed_gy(dose, fractions, self.alpha_beta_gy)
        return eqd2_gy(dose, fractions, self.alpha_beta_gy)

    def derivative(self, total_dose_gy: np.ndarray, fractions: int) -> np.ndarray:
        """Slope of :meth:`apply` with respect to the physical total dose, per voxel
        (dimensionless): 1 for physical dose; ``1 + 2D/(n·α/β)`` for BED; that over
        ``1 + 2/(α/β)`` for EQD2 (D the voxel's total dose, n the fractions).

        Raises
        ------
        RadiobiologyError
            For negative or non-finite doses or an invalid number of fractions.
        """
        dose, _ = as_dose_array(total_dose_gy, "total_dose_gy")
        n = check_fractions(fractions)
        if self.kind is DoseKind.PHYSICAL:
            return np.ones_like(dose)
        assert self.alpha_beta_gy is not None  # guaranteed by __post_init__
        slope = 1.0 + 2.0 * dose / (n * self.alpha_beta_gy)
        if self.kind is DoseKind.EQD2:
            slope = slope / (1.0 + 2.0 / self.alpha_beta_gy)
        return slope

    def convert_total_dose(self, total_dose_gy: float | None, fractions: int | None) -> float | None:
        """A scalar total dose (e.g. a prescription, Gy) in this dose kind, delivered in
        ``fractions``; None when the dose is unknown, or the fractions are unknown for
        BED/EQD2 (physical dose needs no fractions)."""
        if total_dose_gy is None:
            return None
        if self.kind is DoseKind.PHYSICAL:
            return float(total_dose_gy)
        if not fractions:
            return None
        return float(self.apply(np.asarray(float(total_dose_gy)), int(fractions)))

    @property
    def label(self) -> str:
        """Short label, e.g. ``physical``, ``BED(α/β=10 Gy)``, ``EQD2(α/β=3 Gy)``."""
        if self.kind is DoseKind.PHYSICAL:
            return "physical"
        return f"{self.kind.value}(α/β={self.alpha_beta_gy:g} Gy)"

    @property
    def unit(self) -> str:
        """Unit tag: ``Gy`` for physical dose, ``Gy(BED)`` or ``Gy(EQD2)`` otherwise."""
        if self.kind is DoseKind.PHYSICAL:
            return "Gy"
        return f"Gy({self.kind.value})"

    def describe(self) -> str:
        """One sentence for reports, e.g. ``EQD2 with α/β = 3 Gy, in Gy(EQD2)``."""
        if self.kind is DoseKind.PHYSICAL:
            return "physical dose, in Gy"
        return f"{self.kind.value} with α/β = {self.alpha_beta_gy:g} Gy, in {self.unit}"
