"""plancheck's data files: protocols, structure nomenclature, α/β table.

This folder is installed as the ``plancheck.constraints`` package so that the
data travel with the code; read them with ``importlib.resources``.
"""
