"""Offline analysis: S, sigma_bar, R, profiles, comparisons (and logit curves).

Imports nothing from the recording side and no HTTP client: "offline" is a property of the
import graph (a test holds it).

The public functions (``toolkit.analysis.api``) load on first use (PEP 562), so that importing
one of this package's modules does not import them all: analysis workers forked from the fork
server (toolkit.parallel) read and score runs with numpy and arrow only, and must not import
polars, whose import starts threads. The imports are spelled out below so that a reader (and
the import-graph test) sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["analyze", "compare", "compare_summary", "consistency", "curves", "excess", "group_cv",
           "paired_compare", "pearson", "persona_profiles", "persona_set_profiles", "profiles"]

PROFILES = ("persona_profiles", "persona_set_profiles", "profiles")  # in foundations.py; the rest in api.py

if TYPE_CHECKING:
    from .api import analyze, compare, compare_summary, consistency, curves, excess, group_cv, paired_compare, pearson
    from .foundations import persona_profiles, persona_set_profiles, profiles


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import api, foundations

    value = getattr(foundations if name in PROFILES else api, name)
    globals()[name] = value
    return value
