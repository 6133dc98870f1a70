"""Choosing runs and the personas they keep (the published retention rule)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ToolkitError
from ..store import RunManifest, Store
from .cells import RunCounts, load_counts

MIN_PERSONAS_FOR_INTERSECTION = 50


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return list(value)


def select_runs(
    store: Store,
    *,
    model: str | Sequence[str] | None = None,
    variant: str | Sequence[str] | None = None,
    temperature: float | Sequence[float] | None = None,
    mode: str | Sequence[str] | None = None,
    run_id: str | Sequence[str] | None = None,
) -> list[RunManifest]:
    """Runs matching every given filter (each filter may list several values)."""
    models, variants, modes, ids = _as_list(model), _as_list(variant), _as_list(mode), _as_list(run_id)
    temps = None
    if temperature is not None:
        listed = [temperature] if isinstance(temperature, (int, float)) else list(temperature)
        temps = [float(t) for t in listed]
    out = []
    for m in store.runs():
        if models is not None and m.model not in models:
            continue
        if variants is not None and m.variant not in variants:
            continue
        if modes is not None and m.mode not in modes:
            continue
        if ids is not None and m.run_id not in ids:
            continue
        if temps is not None and not any(abs(m.temperature - t) < 1e-12 for t in temps):
            continue
        out.append(m)
    if not out:
        filters = {k: v for k, v in dict(model=model, variant=variant, temperature=temperature, mode=mode,
                                            run_id=run_id).items() if v is not None}
        desc = ", ".join(f"{k}={v}" for k, v in filters.items()) or "no filter"
        raise ToolkitError(f"no run in store {store.root} matches {desc}")
    return out


def require_mode(runs: Iterable[RunManifest], modes: tuple[str, ...], command: str) -> None:
    for m in runs:
        if m.mode not in modes:
            raise ToolkitError(f"{command} needs {' or '.join(modes)} runs; {m.run_id} is a {m.mode} run"
                               " (narrow the selection with --mode)")


def retained_personas(store: Store, selected: list[RunCounts]) -> dict[str, np.ndarray]:
    """Persona ids kept per run.

    A persona is kept when every item has a valid rating. When the same model (and variant,
    mode, instrument) has runs at several temperatures, only personas valid in all of them
    are kept; runs with fewer than 50 valid personas stay out of that intersection and keep
    their own valid set.
    """
    def family(m: RunManifest) -> tuple:
        return (m.model, m.variant, m.mode, m.instrument["digest"])

    by_id = {rc.manifest.run_id: rc for rc in selected}
    siblings: dict[tuple, list[RunManifest]] = defaultdict(list)
    wanted = {family(rc.manifest) for rc in selected}
    for m in store.runs():
        if family(m) in wanted:
            siblings[family(m)].append(m)

    out: dict[str, np.ndarray] = {}
    for members in siblings.values():
        valid = {}
        for m in members:
            rc = by_id.get(m.run_id) or load_counts(store, m)
            valid[m.run_id] = rc.persona_ids[rc.valid_personas]
        eligible = [v for v in valid.values() if v.size >= MIN_PERSONAS_FOR_INTERSECTION]
        common: np.ndarray | None = None
        if eligible:
            common = eligible[0]
            for v in eligible[1:]:
                common = np.intersect1d(common, v)
        for m in members:
            if m.run_id not in by_id:
                continue
            own = valid[m.run_id]
            keep_common = common is not None and own.size >= MIN_PERSONAS_FOR_INTERSECTION
            out[m.run_id] = np.intersect1d(own, common) if keep_common and common is not None else own
    return out
