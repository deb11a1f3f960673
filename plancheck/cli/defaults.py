"""Defaults the command line shows in its help, kept here so building the parser imports
nothing heavy (``tests/test_cli_startup.py`` checks they equal the library's)."""

from __future__ import annotations

__all__ = ["DEFAULT_PROTOCOL"]

DEFAULT_PROTOCOL = "esophagus-oligomet-2025"
"""The built-in protocol ``check``, ``batch`` and ``serve`` use by default
(= :data:`plancheck.protocol.loader.DEFAULT_PROTOCOL`)."""
