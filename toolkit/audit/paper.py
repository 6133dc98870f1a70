"""`toolkit paper-table N`: the tables of arXiv 2605.12850 recomputed from a store, in the paper's
layout, with the display names of the paper's claims file."""

from __future__ import annotations

import polars as pl

from ..analysis.api import analyze, compare, paired_compare, strip_variant_suffix
from ..analysis.foundations import profiles
from ..analysis.options import DEFAULT, AnalysisOptions
from ..errors import ToolkitError
from ..report.paper_tables import foundation_table, paired_table, profile_table, variant_table
from ..store import EVERY_RUN, Selection, Store
from .claims import load_claims

PAPER_CLAIMS = "costa2026-em.json"  # the shipped claims file of the paper: display names
CAPTIONS = {1: "Moral susceptibility (S)", 2: "Moral robustness (R)", 3: "Moral foundations profiles",
            4: "Per-foundation moral robustness (R)", 5: "Per-foundation moral susceptibility (S)"}


def paper_table(store: Store, number: int, selection: Selection = EVERY_RUN, *, options: AnalysisOptions = DEFAULT,
                paired: bool = False, claims: str = PAPER_CLAIMS) -> tuple[pl.DataFrame, str]:
    """Table ``number`` (1 S, 2 R with Δ%, 3 self profiles, 4 R and 5 S per foundation) and its
    caption. ``paired`` (tables 1 and 2): the paired change from base with its interval and
    p-value instead of value ± SE."""
    if number not in CAPTIONS:
        raise ToolkitError(f"the paper has tables 1 to {len(CAPTIONS)}, not {number}")
    if paired and number not in (1, 2):
        raise ToolkitError("--paired applies to tables 1 (S) and 2 (R)")
    display = load_claims(claims).display_names
    caption = CAPTIONS[number]
    if paired:
        frame = paired_table(paired_compare(store, selection, options=options).frame,
                             metrics=("S",) if number == 1 else ("R",), display=display)
        return frame, caption + f" — paired change from base ({round(100 * options.ci_level)}% {options.ci_method} " \
                                "interval)"
    if number == 3:
        return profile_table(profiles(store, selection).frame, family=strip_variant_suffix, display=display), caption
    metrics = analyze(store, selection, by_group=number in (4, 5), options=options).frame
    if number in (1, 2):
        return variant_table(compare(metrics).frame, "S" if number == 1 else "R", display=display), caption
    return foundation_table(metrics, "R" if number == 4 else "S", family=strip_variant_suffix,
                            decimals=1 if number == 4 else 2, display=display), caption
