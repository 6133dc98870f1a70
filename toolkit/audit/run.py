"""One audit: take the data, verify it and the store, recompute, compare with the claims,
and explain the failures.

``audit`` checks a catalogued dataset (its files fetched or taken from a folder, every digest
checked); ``audit_store`` checks any store or bundle against a claims file an author shipped,
with no catalogue entry at all. Both give the same ``AuditResult`` and the same reports.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..analysis import analyze, compare, compare_summary, excess, profiles
from ..analysis.api import ANALYZE_SCHEMA, paired_compare, strip_variant_suffix
from ..analysis.options import DEFAULT, AnalysisOptions
from ..datasets.catalogue import Dataset, get_dataset
from ..datasets.fetch import fetch, fetch_versions
from ..errors import StoreCorrupt, ToolkitError
from ..store import Store
from ..store.query import EVERY_RUN, Selection
from .claims import STATUSES, ClaimSet, check_against_runs, claims_frame, evaluate_claims, load_claims, unverifiable_row
from .coverage import Coverage, coverage
from .explain import Candidates, explain


@dataclass
class AuditResult:
    dataset: Dataset
    claims: ClaimSet
    store: Store
    table: pl.DataFrame  # one row per claim
    metrics: pl.DataFrame
    comparison: pl.DataFrame
    summary: pl.DataFrame
    profiles: pl.DataFrame
    paired: pl.DataFrame = field(default_factory=pl.DataFrame)  # compare --paired, every group
    files: list[Any] = field(default_factory=list[Any])  # (DatasetFile, local path)
    skipped: list[str] = field(default_factory=list)  # runs that could not be analyzed, with the reason
    notes: list[str] = field(default_factory=list)  # what the audit could not use to explain a failure
    coverage: Coverage | None = None  # the paper's printed numbers against the claims, when its LaTeX is at hand

    @property
    def counts(self) -> dict[str, int]:
        return {s: int((self.table["status"] == s).sum()) for s in STATUSES}

    @property
    def passed(self) -> bool:
        return self.counts["FAIL"] == 0


@dataclass
class _Frames:
    metrics: pl.DataFrame
    comparison: pl.DataFrame
    summary: pl.DataFrame
    profiles: pl.DataFrame
    paired: pl.DataFrame
    excess: dict[str, Any]


def _analyse(store: Store, baseline: str, options: AnalysisOptions, skipped: list[str], *,
             models: list[str] | None = None, self_models: list[str] | None = None, paired: bool = True) -> _Frames:
    """Every frame a claim can be checked against, for the persona and self runs of ``store``."""
    sel = Selection(model=models, mode="persona") if models else EVERY_RUN
    if not any(m.mode in ("persona", "logprob") and (not models or m.model in models) for m in store.runs()):
        metrics = pl.DataFrame(schema=ANALYZE_SCHEMA)  # a store of self runs: profiles alone
    else:
        analysis = analyze(store, sel, by_group=True, options=options, on_error="skip")
        metrics = _with_failures(store, analysis.frame)
        skipped += analysis.skipped
    has_baseline = (metrics["variant"] == baseline).any() and (metrics["variant"] != baseline).any()
    comparison = metrics.head(0)
    if has_baseline:
        compared = compare(metrics, baseline=baseline, on_error="skip")
        comparison = compared.frame
        skipped += compared.skipped
    pairs = (paired_compare(store, Selection(model=models), baseline=baseline, by_group=True, options=options,
                            on_error="skip").frame
             if has_baseline and paired else pl.DataFrame())
    summary = compare_summary(comparison, baseline=baseline) if has_baseline else pl.DataFrame()
    excesses = {}
    variants = sorted(set(metrics["variant"]) - {baseline}) if has_baseline else []
    for a in variants:
        for b in variants:
            if a != b:
                for metric in ("R", "S", "sigma_bar"):
                    excesses[f"{a}|{b}|{metric}"] = excess(comparison, a, b, metric)
    has_self = any(m.mode == "self" and (not self_models or m.model in self_models) for m in store.runs())
    prof = pl.DataFrame()
    if has_self:
        selves = profiles(store, Selection(model=self_models), on_error="skip")
        prof = selves.frame
        skipped += selves.skipped
    return _Frames(metrics, comparison, summary, prof, pairs, excesses)


def _with_failures(store: Store, metrics: pl.DataFrame) -> pl.DataFrame:
    """The metrics with each run's mean failed attempts per slot (``mean_failures``, over the
    rows the analysis reads): a number papers print about their recording protocol."""
    import pyarrow.compute as pc

    means = {}
    for run_id in metrics["run_id"].unique().to_list():
        m = store.get_run(run_id)
        if m is None or not m.rows:
            continue
        failures = store.read_run(m, ["failures"], generations="newest")["failures"]
        means[run_id] = float(pc.mean(failures).as_py() or 0.0)
    return metrics.with_columns(pl.col("run_id").replace_strict(means, default=None, return_dtype=pl.Float64)
                                .alias("mean_failures"))


def _evaluate(claim_set: ClaimSet, frames: _Frames, within_se: float | None) -> pl.DataFrame:
    return evaluate_claims(claim_set, metrics=frames.metrics, comparison=frames.comparison, summary=frames.summary,
                           excess=frames.excess, profiles=frames.profiles, family=strip_variant_suffix,
                           within_se=within_se)


def _candidates(frames: _Frames, labels: dict[str, str] | None = None) -> Candidates:
    return Candidates(frames.metrics, frames.comparison, frames.profiles, labels or {})


def audit(name: str | Dataset, *, source: str | Path | None = None, claims: str | Path | None = None,
          store: Store | None = None, options: AnalysisOptions = DEFAULT, within_se: float | None = None,
          progress: bool = True, others: Mapping[str, str | Path] | None = None,
          paper_source: str | Path | None = None) -> AuditResult:
    """Audit a catalogued dataset. ``others`` maps another catalogued dataset to a folder with
    its files, for the claims that quote it; without it those claims are UNVERIFIABLE.
    ``paper_source``: the paper's LaTeX, for the coverage of its printed numbers (default: a
    ``paper/main.tex`` in the ``source`` folder, when there is one)."""
    dataset = name if isinstance(name, Dataset) else get_dataset(name)
    options = options.but(cache=False)  # an audit recomputes every number from the hashed rows
    claim_set = load_claims(claims or dataset.claims)
    check_against_runs(claim_set, dataset.runs())  # bad claims fail before any file is touched
    store = store or Store(Path(tempfile.mkdtemp(prefix=f"audit-{dataset.name}-")) / "store")
    from ..datasets.fetch import collect

    quoted = {c.dataset for c in claim_set.claims if c.dataset and c.dataset != dataset.name}
    for other in others or {}:  # every other dataset's files are checked before any work is done
        if other not in quoted:
            raise ToolkitError(f"--with {other}: no claim of {claim_set.source} quotes that dataset"
                               + (f" (they quote {', '.join(sorted(quoted))})" if quoted else ""))
        collect(get_dataset(other), (others or {})[other], progress=False)
    files = collect(dataset, source, progress=progress)
    fetch(store, dataset, source, progress=False)
    problems = store.verify()
    if problems:
        raise StoreCorrupt("; ".join(str(p) for p in problems[:5]))
    models = sorted({f.model for f in dataset.files if f.mode == "persona"})
    self_models = sorted({f.model for f in dataset.files if f.mode == "self"})
    skipped: list[str] = []  # one partial run must not stop the audit of the others
    frames = _analyse(store, claim_set.baseline, options, skipped, models=models, self_models=self_models)
    own = [c for c in claim_set.claims if not c.dataset or c.dataset == dataset.name]
    table = _evaluate(dataclasses.replace(claim_set, claims=own), frames, within_se)
    table = explain(table, own, _candidates(frames))
    failing = set(table.filter(pl.col("status") == "FAIL")["model"].drop_nulls())
    notes: list[str] = []
    versions = fetch_versions(store, dataset, failing, source, progress=False, problems=notes)  # earlier collections
    if versions:
        runs = [run_id for run_id, _ in versions]
        again = analyze(store, Selection(run_id=runs), by_group=True, options=options, on_error="skip")
        extra = again.frame
        skipped += again.skipped
        table = explain(table, own, Candidates(extra, extra.head(0), pl.DataFrame(), dict(versions)))
    table = pl.concat([table, _cross_dataset(claim_set, dataset.name, others or {}, options, within_se)])
    return AuditResult(dataset, claim_set, store, table, frames.metrics, frames.comparison, frames.summary,
                       frames.profiles, frames.paired, files, skipped, notes,
                       _coverage(paper_source, source, claim_set))


def _coverage(paper_source: str | Path | None, source: str | Path | None, claim_set: ClaimSet) -> Coverage | None:
    """The coverage of the paper's LaTeX, given or found beside the data (paper/main.tex)."""
    if paper_source is None and source is not None and (Path(source) / "paper" / "main.tex").is_file():
        paper_source = Path(source) / "paper" / "main.tex"
    return coverage(paper_source, claim_set) if paper_source is not None else None


def _cross_dataset(claim_set: ClaimSet, home: str, others: Mapping[str, str | Path], options: AnalysisOptions,
                   within_se: float | None) -> pl.DataFrame:
    """The claims that quote another catalogued dataset: checked against it when its folder is
    given, else UNVERIFIABLE with the way to check them."""
    rows = []
    frames = []
    for name in sorted({c.dataset for c in claim_set.claims if c.dataset and c.dataset != home}):
        mine = [c for c in claim_set.claims if c.dataset == name]
        if name not in others:
            rows += [unverifiable_row(c, f"quotes dataset {name}, not at hand (audit with --with {name}=DIR to "
                                         "check it)") for c in mine]
            continue
        other = get_dataset(name)
        store = Store(Path(tempfile.mkdtemp(prefix=f"audit-{name}-")) / "store")
        fetch(store, other, others[name], progress=False)
        found = _analyse(store, claim_set.baseline, options, [], paired=False)
        subset = dataclasses.replace(claim_set, claims=mine, dataset=name)
        frames.append(explain(_evaluate(subset, found, within_se), mine, _candidates(found)))
    return pl.concat([claims_frame(rows), *frames])


def audit_store(store: Store, claims: str | Path, *, options: AnalysisOptions = DEFAULT,
                within_se: float | None = None, label: str | None = None,
                paper_source: str | Path | None = None) -> AuditResult:
    """Check a claims file against any store (or opened bundle): no catalogue entry needed.
    Claims quoting a catalogued dataset are UNVERIFIABLE here (audit that dataset to check them)."""
    claim_set = load_claims(claims)
    options = options.but(cache=False)  # never a cached number, whoever wrote the store or bundle
    skipped: list[str] = []
    frames = _analyse(store, claim_set.baseline, options, skipped)
    own = [c for c in claim_set.claims if not c.dataset]
    table = explain(_evaluate(dataclasses.replace(claim_set, claims=own), frames, within_se), own,
                    _candidates(frames))
    quoted = [unverifiable_row(c, f"quotes dataset {c.dataset}: `toolkit audit {c.dataset}` checks it")
              for c in claim_set.claims if c.dataset]
    name = label or claim_set.dataset or store.root.name
    described = Dataset(name=name, title=claim_set.paper or f"claims {claim_set.source}", paper=claim_set.paper or "",
                        repository=str(store.root), commit="", claims=claim_set.source, files=())
    return AuditResult(described, claim_set, store, pl.concat([table, claims_frame(quoted)]), frames.metrics,
                       frames.comparison, frames.summary, frames.profiles, frames.paired, [], skipped,
                       coverage=_coverage(paper_source, None, claim_set))


@contextmanager
def audit_session(name: str | None, *, store: str | None = None, claims: str | Path | None = None,
                  source: str | Path | None = None, options: AnalysisOptions = DEFAULT,
                  within_se: float | None = None, others: Mapping[str, str | Path] | None = None,
                  progress: bool = True, paper_source: str | Path | None = None) -> Iterator[AuditResult]:
    """What `toolkit audit` and `toolkit check` run. With ``name``, a catalogued audit: its files
    fetched into ``store`` (a folder), else into a temporary store removed when the block ends.
    Without it, the audit of ``store`` (a folder or a bundle) against the ``claims`` file."""
    from ..store.store import open_store

    if name is None:
        if not claims:
            raise ToolkitError("give a dataset NAME from the catalogue, or --claims FILE to check a store of your own")
        if others:
            raise ToolkitError("--with checks catalogued datasets a catalogued audit quotes: give the dataset NAME")
        yield audit_store(open_store(store), claims, options=options, within_se=within_se,
                          label=Path(store).stem if store else None, paper_source=paper_source)
        return
    with tempfile.TemporaryDirectory(prefix=f"audit-{name}-") as tmp:
        target = open_store(store or str(Path(tmp) / "store"), write=True)
        yield audit(name, source=source, claims=claims, store=target, options=options, within_se=within_se,
                    progress=progress, others=others, paper_source=paper_source)
