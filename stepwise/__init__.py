"""Stepwise's Django-free core: the pipeline spec (parse, validate, serialize), importable
without the server (`pip install .` from a checkout)."""
