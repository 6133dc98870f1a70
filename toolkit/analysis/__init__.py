"""Offline analysis: S, sigma_bar, R, profiles, comparisons (and logit curves).

Imports nothing from the recording side and no HTTP client: "offline" is a property of the
import graph (a test holds it).
"""

from .api import analyze, compare, compare_summary, consistency, curves, excess, group_cv, pearson, profiles
from .selection import select_runs

__all__ = ["analyze", "compare", "compare_summary", "consistency", "curves", "excess", "group_cv", "pearson",
           "profiles", "select_runs"]
