"""``python -m plancheck`` runs the command line."""

from plancheck.cli.main import run

run()
