"""Data from elsewhere into the store: one module per source format, one pipeline for all.

A format detects itself from a file's column names and turns the file into rows
(``base.py``); ``pipeline.py`` does the rest the same way for every format.
"""

from __future__ import annotations

from . import logprob_csv, long_format, persona_csv, self_csv
from .base import SourceFormat

# Tried in this order; the first whose columns match reads the file.
SOURCE_FORMATS: list[SourceFormat] = [logprob_csv.FORMAT, persona_csv.FORMAT, self_csv.FORMAT, long_format.FORMAT]


def format_named(name: str) -> SourceFormat:
    for f in SOURCE_FORMATS:
        if f.name == name:
            return f
    raise KeyError(name)
