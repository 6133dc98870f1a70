"""Choosing runs, reading them, and the personas they keep (the published retention rule)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ToolkitError
from ..parallel import delayed
from ..parallel.pool import chunks
from ..store import RunManifest, Store
from .cells import RunCounts, load_counts
from .options import AnalysisOptions

MIN_PERSONAS_FOR_INTERSECTION = 50


def family_key(m: RunManifest) -> tuple[Any, ...]:
    """A run's family: same model, variant, mode and instrument, at any temperature."""
    return (m.model, m.variant, m.mode, m.instrument["digest"])


def sibling_runs(all_runs: list[RunManifest], selected: list[RunManifest]) -> list[RunManifest]:
    """Every run of the selected runs' families (same model, variant, mode and instrument at
    any temperature): retention intersects their valid personas."""
    wanted = {family_key(m) for m in selected}
    return [m for m in all_runs if family_key(m) in wanted]


def retained_personas(loaded: list[RunCounts], selected: set[str], rule: str = "family") -> dict[str, np.ndarray]:
    """Persona ids kept per selected run (``loaded`` holds the selected runs and their siblings).

    A persona is kept when every item has a valid rating. With the ``family`` rule (the
    papers'), when the same model (and variant, mode, instrument) has runs at several
    temperatures, only personas valid in all of them are kept; runs with fewer than 50 valid
    personas stay out of that intersection and keep their own valid set. With ``run``, each
    run keeps its own valid set.
    """
    families: dict[tuple[Any, ...], list[RunCounts]] = defaultdict(list)
    for rc in loaded:
        families[family_key(rc.manifest)].append(rc)
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
            keep_common = rule == "family" and common is not None and own.size >= MIN_PERSONAS_FOR_INTERSECTION
            out[run_id] = np.intersect1d(own, common) if keep_common and common is not None else own
    return out


def _load_chunk(root: str, manifests: list[Any]) -> list[Any]:
    """Read runs in a worker: it opens the store by path (any worker that sees the folder can)."""
    return read_each(Store(root), manifests)


def read_each(store: Store, manifests: list[RunManifest]) -> list[RunCounts | ToolkitError]:
    """Each run's counts; a run that cannot be read comes back as its error, so it cannot hide
    the others."""
    out: list[RunCounts | ToolkitError] = []
    for m in manifests:
        try:
            out.append(load_counts(store, m))
        except ToolkitError as exc:
            out.append(exc)
    return out


def read_runs(runs: list[RunManifest], load: Callable[[RunManifest], Any], problems: list[str] | None) -> list[Any]:
    """Each run read by ``load``; one that cannot be read is left out and named in ``problems``."""
    out = []
    for m in runs:
        try:
            out.append(load(m))
        except ToolkitError as exc:
            skip(problems, f"run {m.run_id}: cannot be read: {exc}", exc)
    return out


def skip(problems: list[str] | None, message: str, exc: ToolkitError | None = None) -> None:
    """Record why a run is left out; without a list to record in, the first one is an error."""
    if problems is None:
        raise exc if exc is not None else ToolkitError(message)
    problems.append(message)


def retained_counts(store: Store, runs: list[RunManifest], all_runs: list[RunManifest], options: AnalysisOptions,
                    problems: list[str] | None) -> list[tuple[RunCounts, np.ndarray]]:
    """Each selected persona run read (in workers) with the persona ids the retention rule keeps;
    a run that cannot be read, or keeps fewer than 2 personas, is left out and named."""
    selected = {m.run_id for m in runs}
    siblings = sibling_runs(all_runs, runs)  # runs retention needs beyond the selection
    to_load = runs + [m for m in siblings if m.run_id not in selected]
    read = [rc for part in options.workers.run([delayed(_load_chunk)(str(store.root), c)
                                                for c in chunks(to_load, options.jobs)]) for rc in part]
    for m, rc in zip(to_load, read):  # read in workers: same rule as read_runs
        if isinstance(rc, ToolkitError) and m.run_id in selected:
            skip(problems, f"run {m.run_id}: cannot be read: {rc}", rc)
    kept, refused = retain([rc for rc in read if not isinstance(rc, ToolkitError)], selected, options.retention)
    for message in refused.values():
        skip(problems, message)
    return kept


def retain(loaded: list[RunCounts], selected: set[str], rule: str,
           ) -> tuple[list[tuple[RunCounts, np.ndarray]], dict[str, str]]:
    """The selected runs of ``loaded`` (which holds whole families) with the persona ids the
    retention rule keeps, and, by run id, why a run keeping fewer than 2 personas is left out."""
    keep = retained_personas(loaded, selected, rule)
    out, refused = [], {}
    for rc in loaded:
        run_id = rc.manifest.run_id
        if run_id not in selected:
            continue
        ids = keep[run_id]
        complete = int(rc.valid_personas.sum())
        if ids.size < 2 and complete >= 2:
            refused[run_id] = (
                f"run {run_id}: {complete} personas have a valid rating on all "
                f"{rc.counts.shape[1]} items, but only {ids.size} of them also in every other run of "
                f"{rc.manifest.model} ({rc.manifest.variant}) at another temperature, and the retention "
                "rule 'family' keeps only those; S and R need at least 2 (--retention run keeps each "
                "run's own complete personas)")
        elif ids.size < 2:
            refused[run_id] = (
                f"run {run_id}: only {ids.size} persona(s) have a valid rating on all "
                f"{rc.counts.shape[1]} items (retention keeps a persona only when every item has one); "
                "S and R need at least 2. Answers never recorded: `toolkit record` sends only what the "
                "store lacks; answers stored but unparseable (rating -1): re-ask them with `toolkit record "
                "--refresh`, a new generation that analysis prefers")
        else:
            out.append((rc, ids))
    return out, refused


Unit = tuple[list[RunManifest], list[str]]  # runs to read, and the ids among them to analyze


def family_units(all_runs: list[RunManifest], runs: list[RunManifest], rule: str,
                 largest: int | None = 8) -> list[Unit]:
    """The selection cut into units a worker can analyze on its own: a few selected runs with
    every run their retention reads (the whole family under the ``family`` rule, themselves
    under ``run``). A family with more than ``largest`` selected runs is split, each part
    reading the family again, so that a temperature sweep still spreads over the workers
    (``None``: never split, for a single worker)."""
    if rule == "run":
        return [([m], [m.run_id]) for m in runs]
    family_of: dict[tuple[Any, ...], list[RunManifest]] = defaultdict(list)
    for m in all_runs:
        family_of[family_key(m)].append(m)
    chosen: dict[tuple[Any, ...], list[RunManifest]] = defaultdict(list)
    for m in runs:
        chosen[family_key(m)].append(m)
    units: list[Unit] = []
    for key, members in chosen.items():
        step = largest or len(members)
        for lo in range(0, len(members), step):
            units.append((family_of[key], [m.run_id for m in members[lo : lo + step]]))
    return units


def read_unit(store: Store, unit: Unit, rule: str,
              ) -> tuple[list[tuple[RunCounts, np.ndarray]], dict[str, tuple[str, ToolkitError | None]]]:
    """One unit read and its retention rule applied: the analyzable runs with their persona ids, and,
    by run id, why any other selected run is left out (with the read error, to raise as is)."""
    manifests, ids = unit
    selected = set(ids)
    read = read_each(store, manifests)
    refused: dict[str, tuple[str, ToolkitError | None]] = {
        m.run_id: (f"run {m.run_id}: cannot be read: {rc}", rc)
        for m, rc in zip(manifests, read) if isinstance(rc, ToolkitError) and m.run_id in selected}
    kept, short = retain([rc for rc in read if not isinstance(rc, ToolkitError)], selected, rule)
    return kept, refused | {k: (v, None) for k, v in short.items()}


Paired = tuple[RunCounts, np.ndarray]  # a run and the persona ids it retains


def with_baselines(loaded: list[Paired], baseline: str, family: Callable[[str], str],
                   problems: list[str] | None) -> list[tuple[RunCounts, np.ndarray, Paired | None, str | None]]:
    """Each run with the run it is compared with: the one run of variant ``baseline`` of its
    family (``family(model)``) and temperature, on the same instrument items. A run with
    several such candidates is left out and named in ``problems``; one with none gets None and
    the reason; a baseline run gets None and no reason."""
    bases: dict[tuple[Any, ...], list[Paired]] = defaultdict(list)
    for rc, ids in loaded:
        if rc.manifest.variant == baseline:
            bases[(family(rc.manifest.model), rc.manifest.temperature)].append((rc, ids))
    out: list[tuple[RunCounts, np.ndarray, Paired | None, str | None]] = []
    for rc, ids in loaded:
        m = rc.manifest
        if m.variant == baseline:
            out.append((rc, ids, None, None))
            continue
        fam, temp = family(m.model), m.temperature
        candidates = bases.get((fam, temp), [])
        if len(candidates) > 1:
            skip(problems, f"run {m.run_id}: several {baseline!r} runs of family {fam!r} at temperature {temp}; "
                           "narrow the selection")
        elif not candidates:
            out.append((rc, ids, None, f"no {baseline!r} run of family {fam!r} at temperature {temp} to compare "
                                       "with (--baseline names another variant)"))
        elif (candidates[0][0].instrument.digest, candidates[0][0].instrument.item_ids) != \
                (rc.instrument.digest, rc.instrument.item_ids):
            out.append((rc, ids, None, f"its instrument or items differ from those of "
                                       f"{candidates[0][0].manifest.run_id}"))
        else:
            out.append((rc, ids, candidates[0], None))
    return out
