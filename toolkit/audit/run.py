"""One audit: take the files, verify them and the store, recompute, compare with the claims."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..analysis import analyze, compare, compare_summary, excess, profiles
from ..analysis.api import paired_compare, strip_variant_suffix
from ..analysis.options import DEFAULT, AnalysisOptions
from ..datasets.catalogue import Dataset, get_dataset
from ..datasets.fetch import fetch
from ..errors import StoreCorrupt
from ..store import Store
from .claims import ClaimSet, check_against_runs, evaluate_claims, load_claims


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
    files: list = field(default_factory=list)  # (DatasetFile, local path)
    skipped: list[str] = field(default_factory=list)  # runs that could not be analyzed, with the reason

    @property
    def counts(self) -> dict[str, int]:
        return {s: int((self.table["status"] == s).sum()) for s in ("PASS", "WITHIN-SE", "FAIL")}

    @property
    def passed(self) -> bool:
        return self.counts["FAIL"] == 0


def audit(name: str, *, source: str | Path | None = None, claims: str | Path | None = None,
          store: Store | None = None, options: AnalysisOptions = DEFAULT, within_se: float | None = None,
          progress: bool = True) -> AuditResult:
    dataset = get_dataset(name)
    claim_set = load_claims(claims or dataset.claims)
    check_against_runs(claim_set, dataset.runs())  # bad claims fail before any file is touched
    store = store or Store(Path(tempfile.mkdtemp(prefix=f"audit-{name}-")) / "store")
    from ..datasets.fetch import collect

    files = collect(dataset, source, progress=progress)
    fetch(store, dataset, source, progress=False)
    problems = store.verify()
    if problems:
        raise StoreCorrupt("; ".join(str(p) for p in problems[:5]))
    models = sorted({f.model for f in dataset.files if f.mode == "persona"})
    skipped: list[str] = []  # one partial run must not stop the audit of the others
    metrics = analyze(store, by_group=True, options=options, model=models, mode="persona", problems=skipped)
    baseline = claim_set.baseline
    has_baseline = (metrics["variant"] == baseline).any()
    comparison = compare(metrics, baseline=baseline, problems=skipped) if has_baseline else metrics.head(0)
    paired = (paired_compare(store, baseline=baseline, by_group=True, options=options, model=models, problems=[])
              if has_baseline else pl.DataFrame())
    summary = compare_summary(comparison, baseline=baseline) if has_baseline else pl.DataFrame()
    excesses = {}
    variants = sorted(set(metrics["variant"]) - {baseline}) if has_baseline else []
    for a in variants:
        for b in variants:
            if a != b:
                for metric in ("R", "S"):
                    excesses[f"{a}|{b}|{metric}"] = excess(comparison, a, b, metric)
    self_models = sorted({f.model for f in dataset.files if f.mode == "self"})
    prof = profiles(store, model=self_models, problems=skipped) if self_models else pl.DataFrame()
    table = evaluate_claims(claim_set, metrics=metrics, comparison=comparison, summary=summary, excess=excesses,
                            profiles=prof, family=strip_variant_suffix, within_se=within_se)
    return AuditResult(dataset, claim_set, store, table, metrics, comparison, summary, prof, paired, files, skipped)
