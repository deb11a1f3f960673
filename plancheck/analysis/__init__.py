"""The analyses of one treatment that every entry point shares.

The command line (``check``, ``dvh``, ``fractionation``, ``case``), the DICOM receiver, the
watched folder and the batch runner all call these, so a treatment gets the same answer
however it arrives:

* :mod:`~plancheck.analysis.check_treatment` — read a treatment's files, choose its courses,
  load its case file, run the protocol's rules, write the reports;
* :mod:`~plancheck.analysis.treatment_versions` — check each version of a treatment once and
  write its reports once (the receiver, the watched folder);
* :mod:`~plancheck.analysis.processes` — a check in a worker process of its own, with time and
  memory limits;
* :mod:`~plancheck.analysis.dvh_tables` — DVHs and metrics of every structure of every course
  (``plancheck dvh``);
* :mod:`~plancheck.analysis.fractionation` — each plan's fractionation, BED and EQD2
  (``plancheck fractionation``);
* :mod:`~plancheck.analysis.case_draft` — a case file drafted from an export (``plancheck case init``).
"""
