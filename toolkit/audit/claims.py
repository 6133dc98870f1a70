"""Claims files (data): the numbers a paper prints, and how each is checked.

Format ``toolkit-claims/2`` (JSON; files of format 1 load unchanged)::

    {"format": "toolkit-claims/2", "paper": "...", "dataset": "...", "baseline": "base",
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
silently left out). Format 2 adds ``where`` (the LaTeX labels a number is printed at, for
`claims coverage`), ``expr`` (ordinal and derived claims, expr.py) and the top-level
``excluded`` list. docs/claims.md describes the format.
"""

from __future__ import annotations

import functools
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
from .expr import ExprError, Node, described, evaluate, is_statement, parse

FORMAT = "toolkit-claims/2"  # /2 adds where, expr and excluded; /1 files load unchanged
FORMATS = ("toolkit-claims/1", FORMAT)
RUN_METRICS = {"S", "S_se", "R", "R_se", "sigma_bar", "sigma_bar_se", "delta_S_pct", "delta_R_pct",
               "delta_sigma_bar_pct", "excess_R_pp", "excess_S_pp", "excess_sigma_bar_pp",
               "mean_failures"}  # mean_failures: failed attempts per slot, over the run's rows
SELF_METRICS = {"profile_mean", "profile_std"}
# mean_cv_X: over the variant's models, the coefficient of variation (population SD / mean) of X
# across the groups (foundations), as the paper defines it
VARIANT_METRICS = {"mean_delta_S_pct", "mean_delta_R_pct", "mean_delta_sigma_bar_pct", "mean_excess_R_pp",
                   "mean_excess_S_pp", "mean_excess_sigma_bar_pp", "mean_cv_S", "mean_cv_sigma_bar", "mean_cv_R"}
# numbers a paper prints about data no run holds (judge scores, attempt counts): only ever UNVERIFIABLE
EXTERNAL_METRICS = {"alignment", "alignment_se", "coherence", "coherence_se", "count"}
EXPR = "expr"  # the metric of a claim checked by its ``expr`` (toolkit/audit/expr.py)
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
    where: tuple[str, ...] = ()  # the LaTeX labels where the paper prints it (`claims coverage`)
    expr: str | None = None  # an ordinal or derived claim (metric "expr"): expr.py's grammar

    @property
    def value(self) -> float:
        return float(self.printed)

    @property
    def unit(self) -> float:
        """One unit of the last printed digit (1 for a statement, which prints no number)."""
        if not self.printed:
            return 1.0
        exponent = Decimal(self.printed.lstrip("+")).as_tuple().exponent
        return 10.0 ** int(exponent)

    def allowed(self) -> float:
        """Rounding tolerance, plus the relative one when given: the two errors add up
        (a printed SE is rounded *and* a Monte-Carlo estimate)."""
        tol = self.tolerance if self.tolerance is not None else self.unit / 2
        if self.rel_tolerance:
            tol += self.rel_tolerance * abs(self.value)
        return tol


@dataclass(frozen=True)
class Exclusion:
    """Printed numbers that are not results (a year, a sample size, a hyper-parameter, a list
    number), with the reason: matched by value (``printed``, any when absent), by ``where``
    (labels; anywhere when absent) and by table ``column``."""

    reason: str
    printed: str | None = None
    where: tuple[str, ...] = ()
    column: int | None = None


@dataclass
class ClaimSet:
    source: str
    paper: str
    dataset: str
    baseline: str
    claims: list[Claim]
    display_names: dict[str, str] = field(default_factory=dict)
    excluded: list[Exclusion] = field(default_factory=list)


def is_claims_file(path: Path) -> bool:
    """A claims file (``format`` toolkit-claims/1 or /2): the only file ``claims draft`` replaces."""
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") in FORMATS


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
    if not isinstance(raw, dict) or raw.get("format") not in FORMATS or not isinstance(raw.get("claims"), list):
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
        if claim.metric == EXPR or claim.expr is not None:
            _check_expr(claim, where, source)
        else:
            _check_metric(claim, where, source)
        if claim.id in seen:
            raise ToolkitError(f"{where}: duplicate claim id", path=source)
        seen.add(claim.id)
        claims.append(claim)
    return ClaimSet(source, str(raw.get("paper") or ""), str(raw.get("dataset") or ""),
                    str(raw.get("baseline", "base")), claims, dict(raw.get("display_names", {})),
                    _exclusions(raw.get("excluded", []), source))


def _check_metric(claim: Claim, where: str, source: str) -> None:
    """A metric claim: a known metric, with the model, models list and control it needs."""
    known = RUN_METRICS | SELF_METRICS | VARIANT_METRICS | RANGE_METRICS
    if claim.metric in EXTERNAL_METRICS and not claim.unverifiable:
        raise ToolkitError(f"{where}: {claim.metric} is not in any run: such a claim is UNVERIFIABLE and says why",
                           path=source)
    if claim.metric not in known | EXTERNAL_METRICS:
        raise ToolkitError(f"{where}: unknown metric {claim.metric!r}", path=source)
    if claim.metric in VARIANT_METRICS | RANGE_METRICS and claim.model is not None:
        raise ToolkitError(f"{where}: {claim.metric} is not a claim about one model; set model to null",
                           path=source)
    if (claim.metric in RANGE_METRICS) != bool(claim.models):
        raise ToolkitError(f"{where}: a models list goes with (and only with) {', '.join(sorted(RANGE_METRICS))}",
                           path=source)
    if claim.metric not in VARIANT_METRICS | RANGE_METRICS and not claim.model and not claim.unverifiable:
        raise ToolkitError(f"{where}: {claim.metric} needs a model", path=source)
    if claim.metric.startswith(("excess", "mean_excess")) and not claim.control:
        raise ToolkitError(f"{where}: an excess claim needs a control variant", path=source)


def _labels(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"{what!r} must be a label or a list of labels")


def _exclusions(raw: object, source: str) -> list[Exclusion]:
    if not isinstance(raw, list):
        raise ToolkitError("malformed claims file: 'excluded' must be a list", path=source)
    out = []
    for i, e in enumerate(raw):
        try:
            if not isinstance(e, dict) or set(e) - {"printed", "where", "column", "reason"}:
                raise TypeError("an exclusion is an object with printed, where, column and reason")
            if not isinstance(e.get("reason"), str) or not e["reason"].strip():
                raise TypeError("an exclusion needs its reason")
            printed = e.get("printed")
            if printed is not None and (not isinstance(printed, str) or not math.isfinite(float(printed))):
                raise TypeError(f"printed {printed!r} must be a number written as a string")
            column = e.get("column")
            if column is not None and (isinstance(column, bool) or not isinstance(column, int) or column < 1):
                raise TypeError("column must be a whole number from 1")
            if printed is None and not e.get("where"):
                raise TypeError("an exclusion of every number anywhere says nothing: give printed or where")
            out.append(Exclusion(e["reason"], printed, _labels(e.get("where"), "where"), column))
        except (TypeError, ValueError) as exc:
            raise ToolkitError(f"malformed exclusion #{i}: {exc}", path=source) from None
    return out


@functools.lru_cache(maxsize=1024)
def expression(text: str) -> Node:
    """A claim's parsed expression: parsed once (at load), reused when it is checked."""
    return parse(text, frozenset(RUN_METRICS | SELF_METRICS | VARIANT_METRICS))


def _check_expr(claim: Claim, where: str, source: str) -> None:
    """An expression claim: metric "expr", a parsable expression, and a printed number exactly
    when the expression is a value (a statement prints none of its own)."""

    if claim.metric != EXPR or not claim.expr:
        raise ToolkitError(f"{where}: an expression claim has metric {EXPR!r} and an 'expr'", path=source)
    try:
        node = expression(claim.expr)
    except ExprError as exc:
        raise ToolkitError(f"{where}: expr {claim.expr!r}: {exc}", path=source) from None
    if not is_statement(node) and not claim.printed:
        raise ToolkitError(f"{where}: a value expression needs the 'printed' number", path=source)


_TEXT_FIELDS = {"id": False, "table": False, "variant": False, "metric": False, "printed": False, "group": False,
                "mode": False, "model": True, "control": True, "dataset": True, "unverifiable": True, "reason": True,
                "expr": True}
_NUMBER_FIELDS = ("tolerance", "rel_tolerance", "within_se", "temperature")
MAX_WITHIN_SE = 3.0  # "within k SEs" beyond this needs a reason


def _typed_claim(c: object) -> Claim:
    """A claim from its JSON object, every field of its type: the schema of a claims file.
    Tolerances are finite numbers >= 0 (a boolean is not a number); one that would pass any
    value (wider than the printed number itself, or more than MAX_WITHIN_SE standard errors)
    is refused unless the claim gives its ``reason``."""
    if not isinstance(c, dict):
        raise TypeError("a claim is a JSON object")
    unknown = set(c) - set(_TEXT_FIELDS) - set(_NUMBER_FIELDS) - {"models", "where"}
    if unknown:
        raise TypeError(f"unknown field {sorted(unknown)[0]!r}")
    for key, optional in _TEXT_FIELDS.items():
        if key not in c:
            if not optional and key not in ("group", "mode") and not (key == "printed" and c.get("expr")):
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
    claim = Claim(**{**c, "models": tuple(models) if models else None, "where": _labels(c.get("where"), "where"),
                     "printed": c.get("printed", "")})
    if claim.expr is not None and not claim.printed:
        return claim  # a statement: nothing printed to check a tolerance against
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
        if c.unverifiable or c.expr is not None or (c.dataset and c.dataset != claims.dataset):
            continue  # an expression names its runs inside; a missing one fails it with the reason
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
    frames = (metrics, comparison, summary, excess, profiles, family)
    for c in claims.claims:
        if c.unverifiable:
            rows.append(unverifiable_row(c, c.unverifiable))
            continue
        if c.expr is not None and _is_statement(c):
            rows.append(_statement_row(c, frames))
            continue
        value, se = _expr_value(c, frames) if c.expr is not None else _recompute(c, *frames)
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


def _lookup(frames: tuple[Any, ...]) -> Callable[[Any], list[float]]:
    """Resolve an expression's metric reference against the audit's frames: one value, or
    for model="*" one per model of the variant."""
    metrics, comparison = frames[0], frames[1]

    def values(ref: Any) -> list[float]:
        keys = dict(ref.keys)
        base = {"id": "expr", "table": "", "model": keys.get("model"), "variant": keys.get("variant", ""),
                "metric": ref.metric, "printed": "0", "group": keys.get("group", "all"), "control": keys.get("control"),
                "temperature": float(keys["temperature"]) if "temperature" in keys else None}
        if base["model"] == "*":
            source = comparison if ref.metric.startswith("delta") else metrics
            models = sorted(set(source.filter(pl.col("variant") == base["variant"])["model"]))
            found = [_recompute(Claim(**{**base, "model": m}), *frames)[0] for m in models]
            return [v for v in found if v is not None]
        value = _recompute(Claim(**base), *frames)[0]
        return [] if value is None or math.isnan(value) else [float(value)]

    return values


def _expr_value(c: Claim, frames: tuple[Any, ...]) -> tuple[float | None, float | None]:

    try:
        value = evaluate(expression(c.expr or ""), _lookup(frames))
    except ExprError:
        return None, None
    return float(value), None


def _is_statement(c: Claim) -> bool:

    return is_statement(expression(c.expr or ""))


def _statement_row(c: Claim, frames: tuple[Any, ...]) -> dict[str, Any]:
    """A comparison claim: PASS when it holds, FAIL (with both sides evaluated) when not."""

    node = expression(c.expr or "")
    lookup = _lookup(frames)
    try:
        holds, note = bool(evaluate(node, lookup)), described(node, lookup)
        note = f"{note}: {'holds' if holds else 'does not hold'}"
    except ExprError as exc:
        holds, note = False, f"cannot be evaluated: {exc}"
    return {"id": c.id, "table": c.table, "model": c.model, "variant": c.variant, "group": c.group,
            "metric": c.metric, "printed": c.printed or c.expr, "recomputed": None, "diff": None, "diff_units": None,
            "diff_se": None, "tolerance": None, "status": "PASS" if holds else "FAIL", "note": note}


def _excess_metric(metric: str) -> str:
    """The metric an excess claim is about: excess_sigma_bar_pp -> sigma_bar."""
    return metric.removeprefix("mean_").removeprefix("excess_").removesuffix("_pp")


def _mean_cv(metrics: pl.DataFrame, variant: str, metric: str) -> float | None:
    """Over the variant's models, the mean of each model's population coefficient of variation
    (SD with divisor n, over the mean) of ``metric`` across its groups other than "all"."""
    sub = metrics.filter((pl.col("variant") == variant) & (pl.col("group") != "all"))
    cvs = []
    for _, part in sorted(sub.group_by("model"), key=lambda kv: str(kv[0])):
        vals = part[metric].to_list()
        mean = fmean(vals)
        spread = math.sqrt(math.fsum((v - mean) * (v - mean) for v in vals) / len(vals))
        cvs.append(spread / mean)
    return fmean(cvs) if cvs else None


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
        if c.metric.startswith("mean_cv_"):
            return _mean_cv(metrics, c.variant, c.metric.removeprefix("mean_cv_")), None
        if c.metric.startswith("mean_excess"):
            frame = excess.get(f"{c.variant}|{c.control}|{_excess_metric(c.metric)}")
            if frame is None or frame.is_empty():
                return None, None
            sub = frame.filter(pl.col("group") == c.group)
            return fmean(sub[sub.columns[-1]].to_list()), None
        r = _row(summary, variant=c.variant, group=c.group)
        return (None, None) if r is None else (r[c.metric], None)
    if c.metric.startswith("excess"):
        frame = excess.get(f"{c.variant}|{c.control}|{_excess_metric(c.metric)}")
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
