"""The published no-persona ("self") CSV: the persona CSV without persona_id."""

from __future__ import annotations

from .base import FormatRows, SourceFormat, rating_rows
from .persona_csv import OPTIONAL
from .source import Source

REQUIRED = ("question_id", "run_index", "rating")


def parse(src: Source) -> FormatRows:
    src.ignore_extra(set(REQUIRED + OPTIONAL))
    rows = rating_rows(src, persona=None, item="question_id", repetition="run_index", rating="rating",
                       failures="failures", response="response", collected_at="collected_at")
    return FormatRows("self", rows)


FORMAT = SourceFormat(
    name="self-csv", mode="self", required=lambda inst: REQUIRED,
    matches=lambda cols, inst: "question_id" in cols and "rating" in cols and "persona_id" not in cols,
    parse=parse, summary="published self runs: question_id, run_index, rating[, failures, response, collected_at]",
)
