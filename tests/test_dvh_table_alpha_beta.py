"""``plancheck dvh --dose-kind eqd2``: the α/β each structure gets from the table, by name."""

from __future__ import annotations

import pytest

from plancheck.analysis.dvh_tables import DoseKindRequest, _conversion_for
from plancheck.radiobiology import DoseKind
from rt_cases import Box, box_roi

EQD2 = DoseKindRequest(DoseKind.EQD2)


@pytest.mark.parametrize("name", ["SC_PRV07", "Cord+7mm", "PRV5_SC", "SpinalCord_PRV5mm"])
def test_a_cord_prv_spelling_no_table_lists_takes_the_cords_alpha_beta(name: str) -> None:
    # constraints/alpha_beta.yaml: spinal cord (and its PRVs) 2 Gy; unknown organs 3 Gy. A cord
    # PRV spelt as no table lists read 3 Gy, an EQD2 too low for the cord at > 2 Gy/fx.
    _, ab, source = _conversion_for(box_roi(7, name, Box(0, 10)), EQD2)
    assert ab == 2.0
    # read as the cord's PRV, or matched by the table's own 'SpinalCord_*' entry
    assert source.startswith(f"{name} is a PRV of SpinalCord") or "table entry 'SpinalCord_*'" in source


def test_an_unknown_name_keeps_the_default() -> None:
    _, ab, source = _conversion_for(box_roi(7, "Foo_7mm_bar", Box(0, 10)), EQD2)
    assert ab == 3.0 and "is a PRV" not in source
