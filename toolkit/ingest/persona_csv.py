"""The published persona CSV: one row per (persona, item, repetition).

Columns: persona_id, question_id, run_index, rating (-1 = unparseable) and, optionally,
failures, response, collected_at. Other columns are ignored (named in the import summary).
"""

from __future__ import annotations

from .base import FormatRows, SourceFormat, rating_rows
from .source import Source

REQUIRED = ("persona_id", "question_id", "run_index", "rating")
OPTIONAL = ("failures", "response", "collected_at")


def parse(src: Source) -> FormatRows:
    src.ignore_extra(set(REQUIRED + OPTIONAL))
    rows = rating_rows(src, persona="persona_id", item="question_id", repetition="run_index", rating="rating",
                       failures="failures", response="response", collected_at="collected_at")
    return FormatRows("persona", rows)


FORMAT = SourceFormat(
    name="persona-csv", mode="persona", required=lambda inst: REQUIRED,
    matches=lambda cols, inst: "question_id" in cols and "persona_id" in cols and "rating" in cols,
    parse=parse, summary="published persona runs: persona_id, question_id, run_index, rating[, failures, response, "
                         "collected_at]",
)
