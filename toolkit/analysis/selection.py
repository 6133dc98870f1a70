"""Choosing runs and the personas they keep (the published retention rule)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ToolkitError
from ..store import RunManifest, Store
from .cells import RunCounts

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
    among: list[RunManifest] | None = None,
) -> list[RunManifest]:
    """Runs matching every given filter (each filter may list several values), from the store
    or from manifests already read from it (``among``)."""
    models, variants, modes, ids = _as_list(model), _as_list(variant), _as_list(mode), _as_list(run_id)
    temps = None
    if temperature is not None:
        listed = [temperature] if isinstance(temperature, (int, float)) else list(temperature)
        temps = [float(t) for t in listed]
    out = []
    for m in store.runs() if among is None else among:
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


def _family(m: RunManifest) -> tuple:
    return (m.model, m.variant, m.mode, m.instrument["digest"])


def sibling_runs(all_runs: list[RunManifest], selected: list[RunManifest]) -> list[RunManifest]:
    """Every run of the selected runs' families (same model, variant, mode and instrument at
    any temperature): retention intersects their valid personas."""
    wanted = {_family(m) for m in selected}
    return [m for m in all_runs if _family(m) in wanted]


def retained_personas(loaded: list[RunCounts], selected: set[str]) -> dict[str, np.ndarray]:
    """Persona ids kept per selected run (``loaded`` holds the selected runs and their siblings).

    A persona is kept when every item has a valid rating. When the same model (and variant,
    mode, instrument) has runs at several temperatures, only personas valid in all of them
    are kept; runs with fewer than 50 valid personas stay out of that intersection and keep
    their own valid set.
    """
    families: dict[tuple, list[RunCounts]] = defaultdict(list)
    for rc in loaded:
        families[_family(rc.manifest)].append(rc)
    out: dict[str, np.ndarray] = {}
    for members in families.values():
        valid = {rc.manifest.run_id: rc.persona_ids[rc.valid_personas] for rc in members}
        eligible = [v for v in valid.values() if v.size >= MIN_PERSONAS_FOR_INTERSECTION]
        common: np.ndarray | None = None
        if eligible:
            common = eligible[0]
            for v in eligible[1:]:
                common = np.intersect1d(common, v)
        for run_id, own in valid.items():
            if run_id not in selected:
                continue
            keep_common = common is not None and own.size >= MIN_PERSONAS_FOR_INTERSECTION
            out[run_id] = np.intersect1d(own, common) if keep_common and common is not None else own
    return out
