"""Structure and target names (AAPM TG-263), shared by every layer that meets an ROI name.

* :mod:`plancheck.names.structures` — which exported ROI is a protocol's standard structure
  (``Cord`` is ``SpinalCord``), or why none is;
* :mod:`plancheck.names.targets` — a target ROI name read into kind, role, site and dose;
* :mod:`plancheck.names.nomenclature` — the data behind both: the TG-263 table and
  ``structure_synonyms.yaml``.

A neutral package: it depends only on :mod:`plancheck.errors` and :mod:`plancheck.datafile`,
so the DVH tables, the α/β lookup, the protocol's rules and the case-file draft match names
the same way without depending on one another.
"""
