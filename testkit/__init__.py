"""plancheck's test kit: synthetic cases and DICOM writers for tests, benchmarks and scripts.

Not part of the installed package (the product never imports it): the tests import it from the
repository root (pytest's ``pythonpath``), benchmarks and ``scripts/make_sample_dicom.py`` put the
root on ``sys.path`` first.

* :mod:`testkit.synthetic` — a deterministic thoracic case with three courses (pure numpy);
* :mod:`testkit.write` — RT Structure Set, RT Dose, RT Plan and CT datasets from plain inputs,
  and :func:`testkit.write.write_case` for a whole synthetic case.
"""
