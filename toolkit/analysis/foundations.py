"""Moral-foundation profiles: what a model answers, per group of items (paper Table 3 and
Appendix C).

* ``profiles``: no-persona ("self") runs: per group, the mean of the item means and the mean of
  the per-item std over repetitions (ddof=1).
* ``persona_profiles``: persona runs, per persona and group: the mean rating over the group's
  items and the mean within-question std, i.e. the same two numbers as a self run, persona by
  persona.
* ``persona_set_profiles``: over a set of personas (e.g. the paper's "toxic" personas): per
  group, the mean of the per-persona group scores and their across-persona std (ddof=1). The
  set is every retained persona (valid on all items, as for S and R) that the filter admits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..hashing import canonical_json, sha256_text
from ..protocol.personas import read_persona_json
from ..store import RunManifest, Store
from ..store.query import EVERY_RUN, Selection
from .cells import load_counts
from .metrics import cell_moments
from .options import DEFAULT
from .result import OnError, Result, collector, result
from .selection import read_runs, retained_counts, skip

SELF_SCHEMA = {"model": pl.String, "variant": pl.String, "temperature": pl.Float64, "group": pl.String,
               "mean": pl.Float64, "std": pl.Float64, "items": pl.Int64, "ratings": pl.Int64, "run_id": pl.String}
PERSONA_SCHEMA = {"model": pl.String, "variant": pl.String, "temperature": pl.Float64, "persona_id": pl.Int64,
                  "group": pl.String, "mean": pl.Float64, "std": pl.Float64, "items": pl.Int64, "ratings": pl.Int64,
                  "run_id": pl.String}
SET_SCHEMA = {"model": pl.String, "variant": pl.String, "temperature": pl.Float64, "persona_set": pl.String,
              "group": pl.String, "mean": pl.Float64, "std": pl.Float64, "personas": pl.Int64, "run_id": pl.String}


@dataclass(frozen=True)
class PersonaFilter:
    """Which personas of a run a profile covers: ``include`` ids (None: all) minus ``exclude``;
    with ``persona_set``, only runs recorded with that persona file (matched by its digest)."""

    include: tuple[int, ...] | None = None
    exclude: tuple[int, ...] = ()
    persona_set: str | None = None  # digest of a persona file's descriptions
    label: str = "all personas"

    def admits(self, manifest: RunManifest) -> bool:
        """Whether a run is covered: any run, or with ``persona_set`` one recorded with that set."""
        return self.persona_set is None or (manifest.protocol.get("personas") or {}).get("digest") == self.persona_set

    def select(self, ids: np.ndarray) -> np.ndarray:
        keep = np.ones(ids.size, bool) if self.include is None else np.isin(ids, self.include)
        return ids[keep & ~np.isin(ids, self.exclude)]


def persona_filter(personas_file: str | Path | None = None, ids: list[int] | None = None,
                   exclude: list[int] | None = None) -> PersonaFilter:
    """A filter from the command line's options. ``personas_file`` is either a JSON list of
    persona ids, or a persona file as `record --personas` takes (a list of descriptions, or
    {"name": ..., "personas": [...]}): the runs recorded with exactly that set."""
    include = tuple(ids) if ids else None
    digest, label = None, "all personas"
    if personas_file is not None:
        path = Path(personas_file)
        label, raw = read_persona_json(path)
        if isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            include = tuple(sorted(set(raw) & set(include))) if include is not None else tuple(raw)
        elif isinstance(raw, list) and raw and all(isinstance(x, str) and x.strip() for x in raw):
            digest = sha256_text(canonical_json(raw))  # what the recorder stores as the persona set's digest
        else:
            raise ToolkitError("a persona file holds a JSON list of persona ids or of persona descriptions",
                               path=str(path))
    if include is not None and personas_file is None:
        label = f"personas {','.join(map(str, include))}"
    if exclude:
        label += f" without {','.join(map(str, exclude))}"
    return PersonaFilter(include, tuple(exclude or ()), digest, label)


def _group_scores(n: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                  member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row (persona): mean of mu and of sigma over the member items that have ratings, the
    number of such items and of ratings."""
    valid = (n > 0) & member
    k = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, mu, 0.0).sum(axis=-1) / k
        std = np.where(valid, sigma, 0.0).sum(axis=-1) / k
    return mean, std, k, np.where(valid, n, 0).sum(axis=-1)


def profiles(store: Store | None = None, selection: Selection = EVERY_RUN, *,
             on_error: OnError = "raise") -> Result:
    """Moral-foundation profile of no-persona ("self") runs (paper Table 3).

    Per group: mean of the item means, and mean of the per-item std over repetitions (ddof=1).
    """
    store = store or Store()
    problems = collector(on_error)
    rows = []
    for rc in read_runs(selection.for_modes(("self",), "profiles", store), lambda m: load_counts(store, m),
                        problems):
        m, inst = rc.manifest, rc.instrument
        counts = rc.counts.sum(axis=0)  # (Q, K): a self run has one (null) persona
        n, mu, sigma = cell_moments(counts, inst.scale)
        for name, member in inst.group_masks():
            used = member & (n > 0)
            rows.append({"model": m.model, "variant": m.variant, "temperature": m.temperature, "group": name,
                         "mean": float(mu[used].mean()) if used.any() else float("nan"),
                         "std": float(sigma[used].mean()) if used.any() else float("nan"),
                         "items": int(used.sum()), "ratings": int(n[used].sum()), "run_id": m.run_id})
    return result(pl.DataFrame(rows, schema=SELF_SCHEMA), problems)


def persona_profiles(store: Store | None = None, selection: Selection = EVERY_RUN, *,
                     personas: PersonaFilter = PersonaFilter(), on_error: OnError = "raise") -> Result:
    """Per persona and group of every selected persona run: the mean rating over the group's
    items and the mean within-question std (ddof=1); every persona the filter admits, also one
    that lacks some items (``items`` says how many of the group's items it answered)."""
    store = store or Store()
    problems = collector(on_error)
    rows: list[dict[str, Any]] = []
    for rc in read_runs(_covered(selection.for_modes(("persona",), "profiles", store), personas),
                        lambda m: load_counts(store, m), problems):
        m, inst = rc.manifest, rc.instrument
        keep = np.isin(rc.persona_ids, personas.select(rc.persona_ids))
        n, mu, sigma = cell_moments(rc.counts[keep], inst.scale)
        ids = rc.persona_ids[keep]
        for name, member in inst.group_masks():
            mean, std, k, ratings = _group_scores(n, mu, sigma, member)
            rows.extend({"model": m.model, "variant": m.variant, "temperature": m.temperature, "persona_id": int(p),
                         "group": name, "mean": float(a), "std": float(b), "items": int(c), "ratings": int(d),
                         "run_id": m.run_id} for p, a, b, c, d in zip(ids.tolist(), mean, std, k, ratings))
    return result(pl.DataFrame(rows, schema=PERSONA_SCHEMA).sort(["run_id", "persona_id"], maintain_order=True),
                  problems)


def persona_set_profiles(store: Store | None = None, selection: Selection = EVERY_RUN, *,
                         personas: PersonaFilter = PersonaFilter(), on_error: OnError = "raise") -> Result:
    """Per group of every selected persona run, over the retained personas the filter admits: the
    mean of the per-persona group scores and their across-persona std (ddof=1)."""
    store = store or Store()
    problems = collector(on_error)
    all_runs = store.runs()
    runs = _covered(selection.for_modes(("persona",), "profiles", store, among=all_runs), personas)
    rows: list[dict[str, Any]] = []
    for rc, retained in retained_counts(store, runs, all_runs, DEFAULT, problems):
        m, inst = rc.manifest, rc.instrument
        ids = personas.select(retained)
        if ids.size < 2:
            skip(problems, f"run {m.run_id}: {ids.size} of its personas with every item answered are in "
                           f"{personas.label!r}; a set profile needs at least 2")
            continue
        n, mu, sigma = cell_moments(rc.counts[np.isin(rc.persona_ids, ids)], inst.scale)
        for name, member in inst.group_masks():
            score = _group_scores(n, mu, sigma, member)[0]
            rows.append({"model": m.model, "variant": m.variant, "temperature": m.temperature,
                         "persona_set": personas.label, "group": name, "mean": float(score.mean()),
                         "std": float(score.std(ddof=1)), "personas": int(ids.size), "run_id": m.run_id})
    return result(pl.DataFrame(rows, schema=SET_SCHEMA), problems)


def _covered(runs: list[RunManifest], personas: PersonaFilter) -> list[RunManifest]:
    """The runs a persona-file filter covers (those recorded with that set); none is an error."""
    out = [m for m in runs if personas.admits(m)]
    if not out:
        raise ToolkitError(f"no selected persona run was recorded with the persona set {personas.label!r} (the "
                           "runs' manifests name their persona set; `toolkit runs` lists them)")
    return out


PROFILE_KINDS = ("self", "set", "persona")


def profile_kind(of: str | None, personas: PersonaFilter | None) -> str:
    """Which profiles are asked for: of no-persona runs ("self", the default), of a set of
    personas ("set", the default when a persona filter is given), or of each persona."""
    filtered = personas is not None and personas != PersonaFilter()
    of = of or ("set" if filtered else "self")
    if of not in PROFILE_KINDS:
        raise ToolkitError(f"profiles of {of!r}? choose from {', '.join(PROFILE_KINDS)}")
    if of == "self" and filtered:
        raise ToolkitError("--personas, --persona-ids and --exclude-persona-ids need --of set or persona")
    return of


def profiles_of(store: Store | None = None, selection: Selection = EVERY_RUN, *, of: str | None = None,
                personas: PersonaFilter | None = None, on_error: OnError = "raise") -> Result:
    """The profiles `toolkit profiles` prints, of the kind ``profile_kind`` gives."""
    kind = profile_kind(of, personas)
    if kind == "self":
        return profiles(store, selection, on_error=on_error)
    chosen = personas or PersonaFilter()
    if kind == "persona":
        return persona_profiles(store, selection, personas=chosen, on_error=on_error)
    return persona_set_profiles(store, selection, personas=chosen, on_error=on_error)


def self_profiles_of_models(store: Store, selection: Selection, models: list[str]) -> pl.DataFrame:
    """The no-persona profiles of these models within the selection's variants and
    temperatures (what a set profile is drawn against); empty when there are none."""
    try:
        return profiles(store, selection.but(model=models, run_id=None, mode=None)).frame
    except ToolkitError:  # no self run of these models: the set profiles alone
        return pl.DataFrame(schema=SELF_SCHEMA)
