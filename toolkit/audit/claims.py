"""Claims files (data): the numbers a paper prints, and how each is checked.

Format ``toolkit-claims/1`` (JSON)::

    {"format": "toolkit-claims/1", "paper": "...", "dataset": "...", "baseline": "base",
     "display_names": {"gpt-4o": "GPT-4o"},
     "claims": [{"id": "T1-gpt-4o-base-S", "table": "Table 1 (S)", "model": "gpt-4o",
                 "variant": "base", "group": "all", "metric": "S", "printed": "0.79"}]}

``printed`` is a string so its precision is known: the tolerance is half a unit of its last
digit unless ``tolerance`` (absolute) is given; ``rel_tolerance`` adds a relative margin (used
for bootstrap SEs, which are Monte-Carlo estimates); ``within_se: k`` grants WITHIN-SE when the
difference is inside k recomputed standard errors (for a relative change, the SE propagated
from the two values' SEs). Optional fields: ``temperature`` (when a model has runs at several),
``dataset`` (the claim is checked against another catalogued dataset, which the audit needs at
hand) and ``unverifiable`` (the reason no published data can check it: it is counted, never
silently left out). docs/claims.md describes the format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import ToolkitError
from ..hashing import parse_json
from ..numerics import fmean

FORMAT = "toolkit-claims/1"
RUN_METRICS = {"S", "S_se", "R", "R_se", "sigma_bar", "sigma_bar_se", "delta_S_pct", "delta_R_pct",
               "delta_sigma_bar_pct", "excess_R_pp", "excess_S_pp"}
SELF_METRICS = {"profile_mean", "profile_std"}
VARIANT_METRICS = {"mean_delta_S_pct", "mean_delta_R_pct", "mean_delta_sigma_bar_pct", "mean_excess_R_pp",
                   "mean_excess_S_pp"}
RANGE_METRICS = {"min_S", "max_S", "min_R", "max_R"}  # over the claim's ``models``, e.g. "0.66 <= S <= 0.83"
SE_OF = {"S": "S_se", "R": "R_se", "sigma_bar": "sigma_bar_se"}
CLAIM_COLUMNS = ["id", "table", "model", "variant", "group", "metric", "printed", "recomputed", "diff", "diff_units",
                 "diff_se", "tolerance", "status", "note"]
STATUSES = ("PASS", "WITHIN-SE", "FAIL", "UNVERIFIABLE")


@dataclass(frozen=True)
class Claim:
    id: str
    table: str
    model: str | None
    variant: str
    metric: str
    printed: str
    group: str = "all"
    mode: str = "persona"
    control: str | None = None
    tolerance: float | None = None
    rel_tolerance: float | None = None
    within_se: float | None = None
    temperature: float | None = None
    dataset: str | None = None
    unverifiable: str | None = None
    models: tuple[str, ...] | None = None
    reason: str | None = None  # why a tolerance wider than the printed number is right (required then)

    @property
    def value(self) -> float:
        return float(self.printed)

    @property
    def unit(self) -> float:
        """One unit of the last printed digit."""
        exponent = Decimal(self.printed.lstrip("+")).as_tuple().exponent
        return 10.0 ** int(exponent)

    def allowed(self) -> float:
        """Rounding tolerance, plus the relative one when given: the two errors add up
        (a printed SE is rounded *and* a Monte-Carlo estimate)."""
        tol = self.tolerance if self.tolerance is not None else self.unit / 2
        if self.rel_tolerance:
            tol += self.rel_tolerance * abs(self.value)
        return tol


@dataclass
class ClaimSet:
    source: str
    paper: str
    dataset: str
    baseline: str
    claims: list[Claim]
    display_names: dict[str, str] = field(default_factory=dict)


def is_claims_file(path: Path) -> bool:
    """A claims file (``format`` toolkit-claims/1): the only file ``claims draft`` replaces."""
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def load_claims(name_or_path: str | Path) -> ClaimSet:
    """A shipped claims file by name (``costa2026-em.json``) or any claims file by path."""
    path = Path(name_or_path)
    if path.is_file():
        data, source = path.read_bytes(), str(path)
    else:
        res = resources.files("toolkit") / "data" / "claims" / str(name_or_path)
        if not res.is_file():
            raise ToolkitError("no such claims file", path=str(name_or_path))
        data, source = res.read_bytes(), f"claims/{name_or_path}"
    try:
        raw = parse_json(data.decode("utf-8"))
    except ValueError as exc:
        raise ToolkitError(f"malformed claims file: {exc}", path=source) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("claims"), list):
        raise ToolkitError(f"malformed claims file: expected format {FORMAT!r} with a 'claims' list", path=source)
    for key in ("paper", "dataset", "baseline"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ToolkitError(f"malformed claims file: {key!r} must be a string", path=source)
    names = raw.get("display_names", {})
    if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise ToolkitError("malformed claims file: 'display_names' must map names to names (strings)", path=source)
    claims, seen = [], set()
    for i, c in enumerate(raw["claims"]):
        where = f"claim #{i} ({c.get('id', '?') if isinstance(c, dict) else '?'})"
        try:
            claim = _typed_claim(c)
        except (TypeError, ValueError, InvalidOperation, AttributeError) as exc:
            raise ToolkitError(f"malformed {where}: {exc}", path=source) from None
        known = RUN_METRICS | SELF_METRICS | VARIANT_METRICS | RANGE_METRICS
        if claim.metric not in known:
            raise ToolkitError(f"{where}: unknown metric {claim.metric!r}", path=source)
        if claim.metric in VARIANT_METRICS | RANGE_METRICS and claim.model is not None:
            raise ToolkitError(f"{where}: {claim.metric} is not a claim about one model; set model to null",
                               path=source)
        if (claim.metric in RANGE_METRICS) != bool(claim.models):
            raise ToolkitError(f"{where}: a models list goes with (and only with) {', '.join(sorted(RANGE_METRICS))}",
                               path=source)
        if claim.metric not in VARIANT_METRICS | RANGE_METRICS and not claim.model:
            raise ToolkitError(f"{where}: {claim.metric} needs a model", path=source)
        if claim.metric.startswith(("excess", "mean_excess")) and not claim.control:
            raise ToolkitError(f"{where}: an excess claim needs a control variant", path=source)
        if claim.id in seen:
            raise ToolkitError(f"{where}: duplicate claim id", path=source)
        seen.add(claim.id)
        claims.append(claim)
    return ClaimSet(source, str(raw.get("paper") or ""), str(raw.get("dataset") or ""),
                    str(raw.get("baseline", "base")), claims, dict(raw.get("display_names", {})))


_TEXT_FIELDS = {"id": False, "table": False, "variant": False, "metric": False, "printed": False, "group": False,
                "mode": False, "model": True, "control": True, "dataset": True, "unverifiable": True, "reason": True}
_NUMBER_FIELDS = ("tolerance", "rel_tolerance", "within_se", "temperature")
MAX_WITHIN_SE = 3.0  # "within k SEs" beyond this needs a reason


def _typed_claim(c: object) -> Claim:
    """A claim from its JSON object, every field of its type: the schema of a claims file.
    Tolerances are finite numbers >= 0 (a boolean is not a number); one that would pass any
    value (wider than the printed number itself, or more than MAX_WITHIN_SE standard errors)
    is refused unless the claim gives its ``reason``."""
    if not isinstance(c, dict):
        raise TypeError("a claim is a JSON object")
    unknown = set(c) - set(_TEXT_FIELDS) - set(_NUMBER_FIELDS) - {"models"}
    if unknown:
        raise TypeError(f"unknown field {sorted(unknown)[0]!r}")
    for key, optional in _TEXT_FIELDS.items():
        if key not in c:
            if not optional and key not in ("group", "mode"):
                raise TypeError(f"missing field {key!r}")
            continue
        if not (isinstance(c[key], str) or (optional and c[key] is None)):
            raise TypeError(f"{key!r} must be a string{' or null' if optional else ''}, not {c[key]!r}")
    for key in _NUMBER_FIELDS:
        v = c.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{key!r} must be a finite number >= 0, not {v!r}")
    models = c.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise TypeError("'models' must be a list of model names")
    claim = Claim(**{**c, "models": tuple(models) if models else None})
    value = float(claim.printed)
    Decimal(claim.printed.lstrip("+"))
    if not math.isfinite(value):
        raise ValueError(f"printed {claim.printed!r} is not a finite number")
    if not claim.reason:
        wide = []
        if claim.tolerance is not None and claim.tolerance > max(abs(value), claim.unit):
            wide.append(f"tolerance {claim.tolerance!r} is wider than the printed {claim.printed}")
        if claim.rel_tolerance is not None and claim.rel_tolerance > 1:
            wide.append(f"rel_tolerance {claim.rel_tolerance!r} exceeds 1 (the whole printed value)")
        if claim.within_se is not None and claim.within_se > MAX_WITHIN_SE:
            wide.append(f"within_se {claim.within_se!r} exceeds {MAX_WITHIN_SE:g} standard errors")
        if wide:
            raise ValueError(f"{wide[0]}: a tolerance that passes any value needs a 'reason'")
    return claim


def check_against_runs(claims: ClaimSet, runs: set[tuple[str, str, str]]) -> None:
    """Every claim the dataset checks must refer to a run (model, variant, mode) or variant it has."""
    variants = {v for _, v, _ in runs}
    for c in claims.claims:
        if c.unverifiable or (c.dataset and c.dataset != claims.dataset):
            continue
        if c.metric in VARIANT_METRICS:
            ok = c.variant in variants and (c.control is None or c.control in variants)
        else:
            mode = "self" if c.metric in SELF_METRICS else "persona"
            ok = (c.model, c.variant, mode) in runs
        if not ok:
            raise ToolkitError(f"claim {c.id} refers to a run that is not in the dataset "
                               f"(model={c.model}, variant={c.variant})", path=claims.source)


def _row(frame: pl.DataFrame, **keys: Any) -> dict[str, Any] | None:
    sub = frame
    for k, v in keys.items():
        sub = sub.filter(pl.col(k) == v)
    return sub.row(0, named=True) if len(sub) else None


def evaluate_claims(claims: ClaimSet, *, metrics: pl.DataFrame, comparison: pl.DataFrame, summary: pl.DataFrame,
                    excess: dict[str, pl.DataFrame], profiles: pl.DataFrame, family: Callable[[str], str],
                    within_se: float | None = None) -> pl.DataFrame:
    rows = []
    for c in claims.claims:
        if c.unverifiable:
            rows.append(unverifiable_row(c, c.unverifiable))
            continue
        value, se = _recompute(c, metrics, comparison, summary, excess, profiles, family)
        diff = value - c.value if value is not None else None
        k = c.within_se if c.within_se is not None else within_se
        allowed = c.allowed()
        if diff is None or math.isnan(diff):
            status = "FAIL"
        elif abs(diff) <= allowed * (1 + 1e-9):
            status = "PASS"
        elif k is not None and se and abs(diff) <= k * se:
            status = "WITHIN-SE"
        else:
            status = "FAIL"
        rows.append({
            "id": c.id, "table": c.table, "model": c.model, "variant": c.variant, "group": c.group,
            "metric": c.metric, "printed": c.printed, "recomputed": value, "diff": diff,
            "diff_units": diff / c.unit if diff is not None else None,
            "diff_se": diff / se if (diff is not None and se) else None, "tolerance": allowed, "status": status,
            "note": None if value is not None else "no recomputed value: the run or group is not in the data",
        })
    return claims_frame(rows)


CLAIM_SCHEMA = {"id": pl.String, "table": pl.String, "model": pl.String, "variant": pl.String, "group": pl.String,
                "metric": pl.String, "printed": pl.String, "recomputed": pl.Float64, "diff": pl.Float64,
                "diff_units": pl.Float64, "diff_se": pl.Float64, "tolerance": pl.Float64, "status": pl.String,
                "note": pl.String}


def claims_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CLAIM_SCHEMA).select(CLAIM_COLUMNS)


def unverifiable_row(c: Claim, reason: str) -> dict[str, Any]:
    """A claim no data at hand can check: listed and counted, neither passing nor failing."""
    return {"id": c.id, "table": c.table, "model": c.model, "variant": c.variant, "group": c.group,
            "metric": c.metric, "printed": c.printed, "recomputed": None, "diff": None, "diff_units": None,
            "diff_se": None, "tolerance": c.allowed(), "status": "UNVERIFIABLE", "note": reason}


def _recompute(c: Claim, metrics: pl.DataFrame, comparison: pl.DataFrame, summary: pl.DataFrame,
               excess: dict[str, pl.DataFrame], profiles: pl.DataFrame,
               family: Callable[[str], str]) -> tuple[float | None, float | None]:
    if c.metric in SELF_METRICS:
        r = _row(profiles, model=c.model, variant=c.variant, group=c.group, **_at(c))
        return (None, None) if r is None else (r["mean" if c.metric == "profile_mean" else "std"], None)
    if c.metric in RANGE_METRICS:
        which, metric = c.metric.split("_", 1)
        sub = metrics.filter(pl.col("model").is_in(list(c.models or ())) & (pl.col("variant") == c.variant)
                             & (pl.col("group") == c.group))
        if sub["model"].n_unique() != len(c.models or ()):
            return None, None  # a model of the range is not in the data
        extreme: Any = sub[metric].min() if which == "min" else sub[metric].max()
        return float(extreme), None
    if c.metric in VARIANT_METRICS:
        if c.metric.startswith("mean_excess"):
            frame = excess.get(f"{c.variant}|{c.control}|{c.metric.split('_')[2]}")
            if frame is None or frame.is_empty():
                return None, None
            sub = frame.filter(pl.col("group") == c.group)
            return fmean(sub[sub.columns[-1]].to_list()), None
        r = _row(summary, variant=c.variant, group=c.group)
        return (None, None) if r is None else (r[c.metric], None)
    if c.metric.startswith("excess"):
        frame = excess.get(f"{c.variant}|{c.control}|{c.metric.split('_')[1]}")
        if frame is None or c.model is None:
            return None, None
        r = _row(frame, family=family(c.model), group=c.group)
        return (None, None) if r is None else (r[frame.columns[-1]], None)
    if c.metric.startswith("delta"):
        r = _row(comparison, model=c.model, variant=c.variant, group=c.group, **_at(c))
        return (None, None) if r is None else (r[c.metric], r[f"{c.metric}_se"])
    r = _row(metrics, model=c.model, variant=c.variant, group=c.group, **_at(c))
    if r is None:
        return None, None
    se = r.get(SE_OF[c.metric]) if c.metric in SE_OF else None
    return r[c.metric], se


def _at(c: Claim) -> dict[str, float]:
    return {} if c.temperature is None else {"temperature": float(c.temperature)}
