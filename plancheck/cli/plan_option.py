"""``--plan LABEL|UID``: the plans that are the courses, shared by ``dvh``, ``check``,
``fractionation`` and ``batch`` (see :mod:`plancheck.model.course_selection`)."""

from __future__ import annotations

import argparse

__all__ = ["add_plan_option"]


def add_plan_option(parser: argparse.ArgumentParser, *, batch: bool = False) -> None:
    """Add ``--plan LABEL|UID`` (repeatable; default: every plan, alternatives told apart)."""
    scope = ("in every treatment, only the plans with these labels or UIDs are courses; treatments without any "
             "are not checked" if batch else "only these plans are courses (the others are left out, with the "
             "reason in the report)")
    parser.add_argument(
        "--plan", action="append", default=[], metavar="LABEL|UID",
        help=f"RT Plan Label or SOP Instance UID of a course (repeatable): {scope}. Default: the case file's "
             "'courses:' list, else every plan; plans that are alternatives of one another (same structure set, "
             "same targets) are never summed",
    )
