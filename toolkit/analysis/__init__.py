"""Offline analysis: S, sigma_bar, R, profiles, comparisons (and logit curves).

Imports nothing from the recording side and no HTTP client: "offline" is a property of the
import graph (a test holds it).

The public functions load on first use (PEP 562), so that importing one of this package's
modules does not import them all: analysis workers forked from the fork server
(toolkit.workers) read and score runs with numpy and arrow only, and must not import polars,
whose import starts threads.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__all__ = ["analyze", "compare", "compare_summary", "consistency", "curves", "excess", "group_cv", "pearson",
           "profiles", "select_runs"]
_HOME = {name: "selection" if name == "select_runs" else "api" for name in __all__}  # where each one lives

if TYPE_CHECKING:
    from .api import analyze, compare, compare_summary, consistency, curves, excess, group_cv, pearson, profiles
    from .selection import select_runs


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """This package's module type. ``toolkit.analysis.profiles`` is the API's function, as it
    always was, never the submodule of the same name, which the import system would otherwise
    set on the package once something imports it (the submodule stays in sys.modules)."""

    @property
    def profiles(self) -> Any:
        return __getattr__("profiles")

    @profiles.setter
    def profiles(self, _submodule: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
