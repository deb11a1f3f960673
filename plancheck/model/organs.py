"""Lesion organs: the one vocabulary of the case file's ``metastases[].organ``.

Every rule that reads a lesion's organ (the definition counts DEF-SCC, DEF-AC and TIM-PROG,
the prescription rules' ``organ`` filter DOS-MET-SBRT, the reference schedules of DOS-SITE)
asks this module what the organ is, so that one spelling means the same to all of them. The
case file's ``organ`` is free text, compared ignoring case, spaces, ``_``, ``-`` and ``.``
(``Lymph node`` = ``lymph_node``); :func:`canonical_organ` gives the organ's canonical name,
or ``None`` for a spelling that is not recognised (a rule that depends on the organ is then
NOT EVALUATED with the reason, never "not applicable").

A lymph-node metastasis is, by definition, a node beyond the regional nodes of the primary
(regional nodes are locoregional disease): ``non_regional_lymph_node``,
``extra_regional_lymph_node``, ``distant_lymph_node`` and plain ``lymph_node`` all mean the
canonical :data:`NON_REGIONAL_LYMPH_NODE` (the "extra-regional lymph-node station" of the
adenocarcinoma definition, OMEC).

The vocabulary is plancheck's own; a spelling missing here is a change to this module (with a
test), not to a rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["NON_REGIONAL_LYMPH_NODE", "ORGAN_SPELLINGS", "canonical_organ", "is_non_regional_node", "organ_key",
           "recognised_organs"]

NON_REGIONAL_LYMPH_NODE = "non_regional_lymph_node"

ORGAN_SPELLINGS: Mapping[str, tuple[str, ...]] = {
    "lung": ("lung", "lungs", "pulmonary"),
    "liver": ("liver", "hepatic"),
    "adrenal": ("adrenal", "adrenal_gland", "adrenals"),
    "bone": ("bone", "bones", "osseous", "skeletal"),
    "brain": ("brain", "cerebral"),
    NON_REGIONAL_LYMPH_NODE: (NON_REGIONAL_LYMPH_NODE, "nonregional_lymph_node", "extra_regional_lymph_node",
                              "extraregional_lymph_node", "distant_lymph_node", "lymph_node", "lymph_nodes",
                              "non_regional_node", "extra_regional_node", "distant_node"),
    "pleura": ("pleura", "pleural"),
    "peritoneum": ("peritoneum", "peritoneal"),
    "kidney": ("kidney", "renal"),
    "spleen": ("spleen", "splenic"),
    "pancreas": ("pancreas", "pancreatic"),
    "skin": ("skin", "cutaneous"),
    "soft_tissue": ("soft_tissue",),
}
"""Canonical organ → the spellings that mean it (compared by :func:`organ_key`)."""


def organ_key(text: str) -> str:
    """The comparison key of an organ spelling: case, spaces, ``_``, ``-`` and ``.`` ignored.

    >>> organ_key("Extra-regional lymph node") == organ_key("extra_regional_lymph_node")
    True
    """
    return re.sub(r"[^a-z0-9]", "", text.casefold())


_BY_KEY = {organ_key(spelling): organ for organ, spellings in ORGAN_SPELLINGS.items() for spelling in spellings}


def canonical_organ(text: str | None) -> str | None:
    """The canonical organ a spelling means, or ``None`` when it is not recognised.

    >>> canonical_organ("Distant lymph node"), canonical_organ("Lungs"), canonical_organ("thyroid")
    ('non_regional_lymph_node', 'lung', None)
    """
    if text is None:
        return None
    return _BY_KEY.get(organ_key(text))


def is_non_regional_node(text: str | None) -> bool:
    """Whether a lesion organ spelling means a non-regional (extra-regional) lymph node."""
    return canonical_organ(text) == NON_REGIONAL_LYMPH_NODE


def recognised_organs() -> str:
    """The canonical organs, for messages."""
    return ", ".join(ORGAN_SPELLINGS)
