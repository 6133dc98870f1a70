"""Which runs a command works on: one frozen ``Selection`` that every library function and
command takes, resolved against a store in one place.

Why one object: the filters (model, variant, temperature, mode, run id) used to travel as a
keyword dict that each caller built and each function checked on its own; a frozen value is
built once (from the command line or a script), printed the same way everywhere, and
resolved by the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from ..errors import ToolkitError
from .manifest import MODES, RunManifest

if TYPE_CHECKING:
    from .store import Store

TEMPERATURE_TOLERANCE = 1e-12  # a run's temperature label matches a filter value this close


def _strings(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"a,b"``, ``["a", "b"]`` or None: a comma-separated text lists several values."""
    if value is None:
        return None
    listed = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(v).strip() for v in listed if str(v).strip())
    return out or None


def _floats(value: float | Sequence[float] | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    listed = [value] if isinstance(value, (int, float)) else list(value)
    return tuple(float(t) for t in listed) or None


@dataclass(frozen=True)
class Selection:
    """Runs matching every given filter; each filter lists the values it accepts (None: any).

    ``Selection(model="a,b", temperature=0.7)`` and ``Selection(model=["a", "b"],
    temperature=[0.7])`` are the same selection."""

    model: tuple[str, ...] | None = None
    variant: tuple[str, ...] | None = None
    temperature: tuple[float, ...] | None = None
    mode: tuple[str, ...] | None = None
    run_id: tuple[str, ...] | None = None

    def __init__(self, model: str | Sequence[str] | None = None, variant: str | Sequence[str] | None = None,
                 temperature: float | Sequence[float] | None = None, mode: str | Sequence[str] | None = None,
                 run_id: str | Sequence[str] | None = None) -> None:
        modes = _strings(mode)
        unknown = [m for m in modes or () if m not in MODES]
        if unknown:
            raise ToolkitError(f"unknown mode {', '.join(unknown)} (choose from {', '.join(MODES)})")
        object.__setattr__(self, "model", _strings(model))
        object.__setattr__(self, "variant", _strings(variant))
        object.__setattr__(self, "temperature", _floats(temperature))
        object.__setattr__(self, "mode", modes)
        object.__setattr__(self, "run_id", _strings(run_id))

    def but(self, **changes: str | Sequence[str] | float | Sequence[float] | None) -> Selection:
        """A copy with some filters changed (None drops a filter)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        return Selection(**{**current, **changes})

    def matches(self, m: RunManifest) -> bool:
        return ((self.model is None or m.model in self.model)
                and (self.variant is None or m.variant in self.variant)
                and (self.mode is None or m.mode in self.mode)
                and (self.run_id is None or m.run_id in self.run_id)
                and (self.temperature is None
                     or any(abs(m.temperature - t) < TEMPERATURE_TOLERANCE for t in self.temperature)))

    def resolve(self, store: Store, among: Iterable[RunManifest] | None = None, *,
                empty_ok: bool = False) -> list[RunManifest]:
        """The matching runs of ``store`` (or of manifests already read from it), in the store's
        order. None is an error that names the filters, except for no filter at all with
        ``empty_ok`` (listing an empty store is not a mistake)."""
        out = [m for m in (store.runs() if among is None else among) if self.matches(m)]
        if not out and not (empty_ok and self == EVERY_RUN):
            raise ToolkitError(f"no run in store {store.root} matches {self.describe() or 'no filter'}")
        return out

    def for_modes(self, modes: tuple[str, ...], command: str, store: Store,
                  among: Iterable[RunManifest] | None = None) -> list[RunManifest]:
        """The runs of a command that reads ``modes``: without an explicit run id the selection
        is narrowed to those modes; an explicit run of another mode is an error."""
        chosen = self if self.run_id or self.mode else replace(self, mode=modes)
        runs = chosen.resolve(store, among)
        for m in runs:
            if m.mode not in modes:
                raise ToolkitError(f"{command} needs {' or '.join(modes)} runs; {m.run_id} is a {m.mode} run"
                                   " (narrow the selection with --mode)")
        return runs

    def describe(self) -> str:
        """The filters as a person writes them: ``model a or b, temperature 0.7``."""
        parts = []
        for f in fields(self):
            values = getattr(self, f.name)
            if values is not None:
                shown = " or ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
                parts.append(f"{f.name.replace('_', ' ')} {shown}")
        return ", ".join(parts)


EVERY_RUN = Selection()

