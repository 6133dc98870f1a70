"""Notebook-facing analysis API: frames in, frames out.

Work is split into tasks (one per run and analysis) and run through joblib; every task gets
its random stream from a digest of the run's analysis input, the analysis name and the user seed,
so results are bit-identical for any number of workers and any backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..numerics import fmean, fstd
from ..parallel import delayed
from ..parallel.pool import chunks
from ..store import RunManifest, Store
from ..store.query import EVERY_RUN, Selection
from . import kernels
from .cache import AnalysisCache, Memo
from .cells import RunCounts
from .foundations import persona_profiles, persona_set_profiles, profiles  # noqa: F401  (the API)
from .intervals import holm
from .logit import curve_frames as curves_for
from .logit import load_logprobs, temperature_grid
from .metrics import instrument_groups
from .options import DEFAULT, AnalysisOptions
from .paired import PairResult, compare_pair
from .result import OnError, Result, collector, result
from .scoring import score_units
from .seeds import rng_for
from .selection import family_units, read_runs, retained_counts, skip, with_baselines

ANALYZE_COLUMNS = [
    "model", "variant", "temperature", "group", "S", "S_se", "sigma_bar", "sigma_bar_se", "R", "R_se",
    "personas", "items", "S_se_persona", "S_se_rerun", "sigma_bar_se_persona", "sigma_bar_se_rerun",
    "min_reps", "median_reps", "max_reps", "run_id", "S_corrected", "S_corrected_se",
]
ANALYZE_SCHEMA = dict(zip(ANALYZE_COLUMNS, [pl.String, pl.String, pl.Float64, pl.String] + [pl.Float64] * 6
                          + [pl.Int64, pl.Int64] + [pl.Float64] * 4 + [pl.Int64, pl.Float64, pl.Int64, pl.String]
                          + [pl.Float64] * 2))
CORRECTED_COLUMNS = ["sigma_bar_corrected", "sigma_bar_corrected_se", "R_corrected", "R_corrected_se",
                     "cells_excluded"]  # analyze(corrected=True): the bias-corrected companions (metrics.py)
CORRECTED_SCHEMA = {c: pl.Int64 if c == "cells_excluded" else pl.Float64 for c in CORRECTED_COLUMNS}
ROW_SCHEMA = ANALYZE_SCHEMA | CORRECTED_SCHEMA  # what scoring.metric_rows gives, and the cache keeps
DEFAULT_VARIANT_SUFFIXES = ("-misaligned", "-insecure", "-secure")


def analyze(
    store: Store | None = None,
    selection: Selection = EVERY_RUN,
    *,
    by_group: bool = False,
    options: AnalysisOptions = DEFAULT,
    on_error: OnError = "raise",
    corrected: bool = False,
) -> Result:
    """S, sigma_bar, R and S_corrected with bootstrap SEs for every selected persona (or
    logprob-sampled) run; with ``corrected``, also the bias-corrected sigma_bar and R
    (CORRECTED_COLUMNS; null for logprob runs, whose distributions are exact).

    Each worker reads its runs from the store by path and scores them, so only rows travel back
    (``options``: jobs, and the backend: forkserver, loky, threading, or dask with a scheduler
    address); the result is bit-identical for any. A run that cannot be analyzed (unreadable,
    too few complete personas) is an error, or with ``on_error="skip"`` left out and named in
    the result. A run recorded on a subset of the items is analyzed on those (``items`` says
    how many), and the result's notes say so. Each run's rows come from the store's results
    cache when an earlier call computed them (``options.cache``; analysis/cache.py), the same
    values bit for bit.
    """
    store = store or Store()
    problems, notes = collector(on_error), []
    all_runs = store.runs()  # read once: selection and retention both need them
    runs = selection.for_modes(("persona", "logprob"), "analyze", store, among=all_runs)
    logprob_runs = [m for m in runs if m.mode == "logprob"]
    runs = [m for m in runs if m.mode == "persona"]
    logit_rows = _logprob_point_rows(store, logprob_runs, by_group, options, problems)
    columns, schema = ANALYZE_COLUMNS, dict(ANALYZE_SCHEMA)
    if corrected:
        columns, schema = ANALYZE_COLUMNS + CORRECTED_COLUMNS, schema | CORRECTED_SCHEMA
        logit_rows = logit_rows.with_columns(pl.lit(None, t).alias(c) for c, t in CORRECTED_SCHEMA.items())
    if not runs:
        return result(logit_rows, problems)
    cache = AnalysisCache(store, all_runs, options, ROW_SCHEMA) if options.cache else None
    hits = cache.lookup(runs) if cache else {}
    misses = [m for m in runs if m.run_id not in hits]
    fresh = _score(store, all_runs, misses, options)
    outcomes = []
    for m in runs:  # the selection's order, whatever the units' order
        got = hits.get(m.run_id)
        outcomes.append(fresh[m.run_id] if got is None else
                        (got.frame, got.note, (got.refusal, None) if got.refusal else None))
    if cache is not None:  # a read error is not a result
        cache.save([(m, frame, note, refusal[0] if refusal else None) for m, (frame, note, refusal)
                    in zip(runs, outcomes) if m.run_id not in hits and (refusal is None or refusal[1] is None)])
    frames = []
    for frame, note, refusal in outcomes:
        if refusal is not None:
            skip(problems, *refusal)
        if note:
            notes.append(note)
        frames.append(frame)
    sampled = pl.concat(frames) if frames else pl.DataFrame(schema=ROW_SCHEMA)
    sampled = (sampled if by_group else sampled.filter(pl.col("group") == "all")).select(columns)
    return result(pl.concat([sampled, logit_rows]) if len(logit_rows) else sampled, problems, notes)


def _score(store: Store, all_runs: list[RunManifest], runs: list[RunManifest], options: AnalysisOptions,
           ) -> dict[str, tuple[pl.DataFrame, str | None, tuple[str, ToolkitError | None] | None]]:
    """Each run read and scored in the workers: its rows for every group (so that one cache
    entry serves --by group and not), its partial-items note, and why it is left out. The
    rows of all runs are one frame, each run's a slice of it (a frame per run cost 1 ms a run)."""
    if not runs:
        return {}
    units = family_units(all_runs, runs, options.retention, largest=None if options.jobs == 1 else 8)
    root = str(store.root.resolve())  # workers may start in another folder
    compiled = kernels.worth(-(-len(runs) // options.jobs))  # each process's share of the runs
    tasks = [delayed(score_units)(root, part, True, options, compiled) for part in chunks(units, options.jobs)]
    done = {result[0]: result[1:] for part in options.workers.run(tasks) for result in part}
    rows: list[dict[str, Any]] = []
    spans = {}
    for m in runs:
        spans[m.run_id] = (len(rows), len(done[m.run_id][0]))
        rows += done[m.run_id][0]
    frame = pl.DataFrame(rows, schema=ROW_SCHEMA)
    return {m.run_id: (frame.slice(*spans[m.run_id]), *done[m.run_id][1:]) for m in runs}


def _logprob_point_rows(store: Store, runs: list[RunManifest], by_group: bool, options: AnalysisOptions,
                        problems: list[str] | None = None) -> pl.DataFrame:
    """Logprob runs in `analyze`: the logit-method values at the run's own temperature.

    The SE is the persona bootstrap alone: the rating distribution is exact, so there is no
    repetition noise to resample, and S_corrected is S.
    """
    schema: Any = ANALYZE_SCHEMA
    frames = []
    for m in runs:
        try:  # one run that cannot be analyzed never stops the others
            loaded = load_logprobs(store, m)
        except ToolkitError as exc:
            skip(problems, f"run {m.run_id}: cannot be analyzed: {exc.reason.removeprefix(f'run {m.run_id}: ')}", exc)
            continue
        curve = curves_for([loaded], temperature_grid(temperatures=[m.temperature]), by_group=by_group,
                           options=options)
        frames.append(curve.with_columns(
            pl.lit(m.temperature).alias("temperature"), pl.col("S").alias("S_corrected"),
            pl.col("S_se").alias("S_corrected_se"), pl.col("S_se").alias("S_se_persona"),
            pl.lit(float("nan")).alias("S_se_rerun"), pl.col("sigma_bar_se").alias("sigma_bar_se_persona"),
            pl.lit(float("nan")).alias("sigma_bar_se_rerun"), pl.lit(None, pl.Int64).alias("min_reps"),
            pl.lit(None, pl.Float64).alias("median_reps"), pl.lit(None, pl.Int64).alias("max_reps"),
        ).select(ANALYZE_COLUMNS).cast(schema))
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def curves(
    store: Store | None = None,
    selection: Selection = EVERY_RUN,
    *,
    tmin: float = 0.35,
    tmax: float = 1.25,
    points: int = 201,
    temperatures: Sequence[float] | None = None,
    by_group: bool = False,
    options: AnalysisOptions = DEFAULT,
    on_error: OnError = "raise",
) -> Result:
    """R(T), S(T) and sigma_bar(T) with persona-bootstrap SEs for logprob runs (logit method).
    A run that cannot be used is an error, or with ``on_error="skip"`` left out and named. The
    result is kept in the store's results cache (``options.cache``; analysis/cache.py: Memo)."""
    store = store or Store()
    temps = temperature_grid(tmin, tmax, points, list(temperatures) if temperatures else None)
    all_runs = store.runs()
    runs = selection.for_modes(("logprob",), "curves", store, among=all_runs)
    what = ["curves", sorted(m.run_id for m in runs), temps.tolist(), by_group, on_error, options.numbers()]
    return Memo(store, options.cache).result(what, all_runs,
                                             partial(_curves, store, runs, temps, by_group, options, on_error))


def _curves(store: Store, runs: list[RunManifest], temps: np.ndarray, by_group: bool, options: AnalysisOptions,
            on_error: OnError) -> Result:
    problems = collector(on_error)
    loaded = []
    for run in read_runs(runs, lambda m: load_logprobs(store, m), problems):
        if run.persona_ids.size < 2:
            skip(problems, f"run {run.manifest.run_id}: fewer than 2 personas have a digit distribution for every "
                           "item")
        else:
            loaded.append(run)
    if not loaded:
        return result(pl.DataFrame(), problems)
    return result(curves_for(loaded, temps, by_group=by_group, options=options), problems)


def consistency(store: Store | None = None, selection: Selection = EVERY_RUN, *,
                options: AnalysisOptions = DEFAULT) -> pl.DataFrame:
    """The two estimation methods side by side: for every logprob run and every sampled
    (persona) run of the same model and variant, S and R from sampling at the run's
    temperature next to the logit-method values at that temperature."""
    store = store or Store()
    logit_runs = selection.but(mode="logprob").resolve(store)
    rows, why = [], []
    for lr in logit_runs:
        try:
            sampled = analyze(store, Selection(model=[lr.model], variant=[lr.variant], mode="persona"),
                              options=options).frame
        except ToolkitError as exc:  # say why this model has no sampled side
            why.append(f"{lr.model} ({lr.variant}): {exc}")
            continue
        temps = sampled["temperature"].unique().sort().to_list()
        curve = curves_for([load_logprobs(store, lr)], temperature_grid(temperatures=temps), by_group=False,
                           options=options)
        joined = sampled.select("model", "variant", "temperature", "S", "S_se", "R", "R_se", "personas").join(
            curve.select("temperature", pl.col("S").alias("S_logit"), pl.col("S_se").alias("S_logit_se"),
                         pl.col("R").alias("R_logit"), pl.col("R_se").alias("R_logit_se"),
                         pl.col("personas").alias("personas_logit")), on="temperature")
        rows.append(joined.rename({"S": "S_sampled", "S_se": "S_sampled_se", "R": "R_sampled", "R_se": "R_sampled_se",
                                   "personas": "personas_sampled"}))
    if not rows:
        raise ToolkitError("no model has both a logprob run and a sampled persona run in the selection"
                           + "".join(f"; {w}" for w in why))
    return pl.concat(rows)

def strip_variant_suffix(model: str, suffixes: Sequence[str] = DEFAULT_VARIANT_SUFFIXES) -> str:
    """Default model-family key: ``gpt-4o-misaligned`` and ``gpt-4o-secure`` -> ``gpt-4o``."""
    for suf in suffixes:
        if model.endswith(suf):
            return model[: -len(suf)]
    return model


def compare(
    metrics: pl.DataFrame,
    *,
    baseline: str = "base",
    family: Callable[[str], str] = strip_variant_suffix,
    on_error: OnError = "raise",
) -> Result:
    """Relative change of S, R and sigma_bar against the baseline variant of the same family.

    Delta X = (X - X_base) / X_base in percent, matched on family, temperature and group.
    A run without a baseline to compare with is an error, or with ``on_error="skip"`` left out
    and named.
    """
    problems = collector(on_error)
    df = metrics.with_columns(pl.col("model").map_elements(family, return_dtype=pl.String).alias("family"))
    base = df.filter(pl.col("variant") == baseline)
    if base.is_empty():
        raise ToolkitError(f"no run of baseline variant {baseline!r} in the selection")
    keys = ["family", "temperature", "group"]
    dup = base.group_by(keys).len().filter(pl.col("len") > 1)
    if not dup.is_empty():
        raise ToolkitError(f"several baseline runs for family {dup['family'][0]!r}; narrow the selection")
    metrics3 = ("S", "R", "sigma_bar")
    joined = df.join(base.select(keys + [pl.col(c).alias(f"{c}_base") for c in metrics3]
                                 + [pl.col(f"{c}_se").alias(f"{c}_se_base") for c in metrics3]), on=keys, how="left")
    if joined["S_base"].null_count():
        lost = joined.filter(pl.col("S_base").is_null())
        if problems is None:
            missing = lost["model"].unique().to_list()
            raise ToolkitError(f"no {baseline!r} run to compare with for model(s) {', '.join(missing)}")
        for rid, fam, temp in lost.select("run_id", "family", "temperature").unique(maintain_order=True).iter_rows():
            problems.append(f"run {rid}: no {baseline!r} run of family {fam!r} at temperature {temp} to compare with "
                            "(--baseline names another variant)")
        joined = joined.filter(pl.col("S_base").is_not_null())
    # SE of the ratio X / X_base by first-order propagation (the base row itself gets 0).
    out = joined.with_columns(
        [((pl.col(c) - pl.col(f"{c}_base")) / pl.col(f"{c}_base") * 100).alias(f"delta_{c}_pct") for c in metrics3]
        + [pl.when(pl.col("variant") == baseline).then(0.0).otherwise(
            (pl.col(c) / pl.col(f"{c}_base")) * 100
            * ((pl.col(f"{c}_se") / pl.col(c)) ** 2 + (pl.col(f"{c}_se_base") / pl.col(f"{c}_base")) ** 2).sqrt()
        ).alias(f"delta_{c}_pct_se") for c in metrics3]
    )
    return result(out.select(
        ["family", "model", "variant", "temperature", "group", "S", "S_se", "R", "R_se", "sigma_bar", "sigma_bar_se",
         "delta_S_pct", "delta_S_pct_se", "delta_R_pct", "delta_R_pct_se", "delta_sigma_bar_pct",
         "delta_sigma_bar_pct_se", "personas", "run_id"]
    ).sort(["group", "family", "variant"], maintain_order=True), problems)


def compare_runs(store: Store | None = None, selection: Selection = EVERY_RUN, *, baseline: str = "base",
                 family: Callable[[str], str] = strip_variant_suffix, by_group: bool = False,
                 options: AnalysisOptions = DEFAULT) -> Result:
    """`analyze` then `compare` of the selected runs; runs that cannot be analyzed or have no
    baseline are left out and named. A selection of baseline runs alone is an error: there is
    nothing to compare."""
    analysis = analyze(store, selection, by_group=by_group, options=options, on_error="skip")
    compared = compare(analysis.frame, baseline=baseline, family=family, on_error="skip")
    skipped = analysis.skipped + compared.skipped
    if not skipped and not (compared.frame["variant"] != baseline).any():
        raise ToolkitError(f"nothing to compare: every selected run is of the baseline variant {baseline!r} (compare "
                           "needs runs of another variant of the same model; --baseline names the baseline)")
    return Result(compared.frame, skipped)


def pairing_notes(paired: pl.DataFrame) -> list[str]:
    """Why each comparison that was asked to pair was compared unpaired, one line a run."""
    unpaired = paired.filter(~pl.col("paired")).unique(["run_id"], maintain_order=True)
    return [f"{r['run_id']} against {r['baseline_run_id']}: {r['pairing']}" for r in unpaired.iter_rows(named=True)]


PAIRED_COLUMNS = ["family", "model", "variant", "group", "metric", "baseline", "estimate", "delta", "delta_pct",
                  "delta_se", "ci_low", "ci_high", "ci_method", "p_value", "p_holm", "paired"]
PAIRED_EXTRA = ["pairing", "temperature", "delta_pct_se", "delta_pct_ci_low", "delta_pct_ci_high", "ci_level",
                "bootstrap", "permutations", "personas", "baseline_personas", "run_id", "baseline_run_id"]


PAIRED_READING = ("Which question: S_corrected = did personas move the answers more (persona spread alone); "
                  "S = persona spread plus within-cell noise; sigma_bar and R = is one persona less "
                  "consistent (docs/statistics.md)")


def pairing(base: RunCounts, base_ids: np.ndarray, other: RunCounts, other_ids: np.ndarray, unpaired: bool,
            options: AnalysisOptions) -> tuple[np.ndarray | None, str]:
    """The one pairing rule: the persona ids to pair on (None: compare as independent samples),
    and what the ``pairing`` column says. Two runs are paired only when
    - they were answered by the same persona set, where both runs record theirs (imported runs
      do not: they are paired by persona id, and the column says so);
    - they share at least ``options.min_shared`` of the personas of the larger run (pairing on
      3 of 100 personas discarded 194 rows and reported a p-value that contradicted its interval);
    - the shared personas are enough for the permutation p-value to reach the interval's verdict:
      k swapped personas give p >= 2**(1-k), which must be below 1 - ci_level."""
    if unpaired:
        return None, "unpaired (asked)"
    digests = [(m.protocol.get("personas") or {}).get("digest") for m in (base.manifest, other.manifest)]
    if all(digests) and digests[0] != digests[1]:
        return None, "unpaired: the runs were answered by different persona sets"
    common = np.intersect1d(base_ids, other_ids)
    most = max(len(base_ids), len(other_ids))
    if common.size < options.min_shared * most:
        return None, f"unpaired: {common.size} of {most} personas shared (pairing needs {options.min_shared:.0%})"
    alpha = 1.0 - options.ci_level
    if common.size < 2 or math.ldexp(1.0, 1 - int(common.size)) > alpha:  # 2**(1-k), exactly
        return None, (f"unpaired: {common.size} shared personas cannot give a permutation p-value below "
                      f"{alpha:.3g}")
    basis = "the same persona set" if all(digests) else "persona ids (a run does not record its persona set)"
    return common, f"paired on {common.size} personas, {basis}"


def _pair_task(base: RunCounts, base_ids: np.ndarray, other: RunCounts, other_ids: np.ndarray,
               common: np.ndarray | None, options: AnalysisOptions, corrected: bool) -> PairResult:
    """One comparison, paired on ``common`` (``pairing``'s verdict) or as independent samples;
    seeds come from both runs' content."""
    paired = common is not None
    a_ids, b_ids = (common, common) if common is not None else (base_ids, other_ids)
    a = base.counts[np.isin(base.persona_ids, a_ids)]
    b = other.counts[np.isin(other.persona_ids, b_ids)]
    content = f"{base.input_digest}|{other.input_digest}|{'paired' if paired else 'unpaired'}"
    rngs = (rng_for(content, "compare", options.seed, "bootstrap"), rng_for(content, "compare", options.seed, "test"))
    return compare_pair(a, b, base.instrument.scale, instrument_groups(base.instrument), options, rngs, paired,
                        corrected)


def _pair_chunk(jobs: list[tuple[Any, ...]], options: AnalysisOptions, corrected: bool) -> list[PairResult]:
    return [_pair_task(a, a_ids, b, b_ids, common, options, corrected) for a, a_ids, b, b_ids, common in jobs]


def paired_compare(
    store: Store | None = None,
    selection: Selection = EVERY_RUN,
    *,
    baseline: str = "base",
    family: Callable[[str], str] = strip_variant_suffix,
    by_group: bool = False,
    unpaired: bool = False,
    corrected: bool = False,
    options: AnalysisOptions = DEFAULT,
    on_error: OnError = "raise",
) -> Result:
    """Each run against the baseline-variant run of its family at its temperature: for S,
    sigma_bar, R and S_corrected (with ``corrected``, also sigma_bar_corrected and R_corrected,
    as `analyze --corrected` computes them) the difference with its bootstrap SE, a ``ci_level`` interval
    (BCa or percentile), a two-sided permutation p-value and, across the groups of one metric,
    Holm-adjusted p-values. Runs answered by the same personas are compared paired (on the
    personas both retain); otherwise, or with ``unpaired``, as independent samples, and the
    ``paired`` column says which. See paired.py for the resampling and the test. The result is
    kept in the store's results cache (``options.cache``, analysis/cache.py: Memo) when
    ``family`` is the default rule (another function cannot be part of a key)."""
    store = store or Store()
    all_runs = store.runs()
    runs = selection.for_modes(("persona",), "compare --paired", store, among=all_runs)
    compute = partial(_paired_compare, store, all_runs, runs, baseline, family, by_group, unpaired, corrected, options,
                      on_error)
    if family is not strip_variant_suffix:
        return compute()
    what = ["compare-paired", sorted(m.run_id for m in runs), baseline, by_group, unpaired, corrected, on_error,
            options.numbers()]
    return Memo(store, options.cache).result(what, all_runs, compute)


def _paired_compare(store: Store, all_runs: list[RunManifest], runs: list[RunManifest], baseline: str,
                    family: Callable[[str], str], by_group: bool, unpaired: bool, corrected: bool,
                    options: AnalysisOptions, on_error: OnError) -> Result:
    problems = collector(on_error)
    loaded = retained_counts(store, runs, all_runs, options, problems)
    if not any(rc.manifest.variant == baseline for rc, _ in loaded):
        raise ToolkitError(f"no run of baseline variant {baseline!r} in the selection")
    jobs_in, meta = [], []
    for rc, ids, base, why in with_baselines(loaded, baseline, family, problems):
        m = rc.manifest
        if m.variant == baseline:
            continue
        if base is None:
            skip(problems, f"run {m.run_id}: {why}")
            continue
        base_rc, base_ids = base
        common, how = pairing(base_rc, base_ids, rc, ids, unpaired, options)
        jobs_in.append((base_rc, base_ids, rc, ids, common))
        meta.append((family(m.model), m, base_rc.manifest, ["all"] + rc.instrument.groups, how))
    tasks = [delayed(_pair_chunk)(c, options, corrected) for c in chunks(jobs_in, options.jobs)]
    results = [r for part in options.workers.run(tasks) for r in part]
    rows = []
    for (fam, m, bm, names, how), res in zip(meta, results):
        width = len(names) if by_group else 1
        holm_p = np.stack([holm(res.p_value[k, :width]) for k in range(len(res.metrics))])
        for g in range(width):
            for k, metric in enumerate(res.metrics):
                rows.append({
                    "family": fam, "model": m.model, "variant": m.variant, "group": names[g], "metric": metric,
                    "baseline": res.baseline[k, g], "estimate": res.estimate[k, g], "delta": res.delta[k, g],
                    "delta_pct": res.delta_pct[k, g], "delta_se": res.delta_se[k, g], "ci_low": res.ci_low[k, g],
                    "ci_high": res.ci_high[k, g], "ci_method": options.ci_method, "p_value": res.p_value[k, g],
                    "p_holm": holm_p[k, g], "paired": res.paired, "pairing": how, "temperature": m.temperature,
                    "delta_pct_se": res.pct_se[k, g], "delta_pct_ci_low": res.pct_low[k, g],
                    "delta_pct_ci_high": res.pct_high[k, g], "ci_level": options.ci_level,
                    "bootstrap": options.bootstrap, "permutations": options.permutations,
                    "personas": res.personas[1], "baseline_personas": res.personas[0], "run_id": m.run_id,
                    "baseline_run_id": bm.run_id,
                })
    text = ("family", "model", "variant", "group", "metric", "ci_method", "run_id", "baseline_run_id", "pairing")
    counts = ("bootstrap", "permutations", "personas", "baseline_personas")
    schema: dict[str, Any] = {c: pl.String if c in text else pl.Int64 if c in counts else pl.Float64
                              for c in PAIRED_COLUMNS + PAIRED_EXTRA}
    schema["paired"] = pl.Boolean
    return result(pl.DataFrame(rows, schema=schema).select(PAIRED_COLUMNS + PAIRED_EXTRA), problems)


def compare_summary(comparison: pl.DataFrame, *, baseline: str = "base") -> pl.DataFrame:
    """Mean relative changes per variant, and each variant's Delta R minus the others' (pp)."""
    non_base = comparison.filter(pl.col("variant") != baseline)
    cols = ["delta_S_pct", "delta_R_pct", "delta_sigma_bar_pct"]
    summary = non_base.group_by(["variant", "group"], maintain_order=True).agg(
        pl.len().alias("models"), *[pl.col(c).alias(f"mean_{c}") for c in cols])
    summary = summary.with_columns(pl.col(f"mean_{c}").map_elements(fmean, return_dtype=pl.Float64) for c in cols)
    return summary.sort(["group", "variant"], maintain_order=True)


def excess(comparison: pl.DataFrame, variant: str, control: str, metric: str = "R") -> pl.DataFrame:
    """Misalignment-specific excess: Delta X(variant) - Delta X(control) per family, in pp."""
    col = f"delta_{metric}_pct"
    a = comparison.filter(pl.col("variant") == variant).select("family", "temperature", "group", pl.col(col).alias("a"))
    b = comparison.filter(pl.col("variant") == control).select("family", "temperature", "group", pl.col(col).alias("b"))
    return a.join(b, on=["family", "temperature", "group"]).select(
        "family", "temperature", "group", (pl.col("a") - pl.col("b")).alias(f"excess_{metric}_pp"))


def group_cv(metrics: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Coefficient of variation (sample std / mean) of a metric across the groups of each run."""
    return (metrics.filter(pl.col("group") != "all")
            .group_by(["model", "variant", "temperature", "run_id"], maintain_order=True)
            .agg(pl.col(metric).alias(f"{metric}_cv"))
            .with_columns(pl.col(f"{metric}_cv").map_elements(lambda v: fstd(v) / fmean(v), return_dtype=pl.Float64)))


def pearson(frame: pl.DataFrame, x: str, y: str) -> tuple[float, float]:
    """Pearson r (and two-sided p) between two metric columns across the frame's rows."""
    from scipy.stats import pearsonr

    res = pearsonr(frame[x].to_numpy(), frame[y].to_numpy())
    return float(res.statistic), float(res.pvalue)
