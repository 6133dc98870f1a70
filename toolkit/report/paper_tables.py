"""Tables in the layout of arXiv 2605.12850 (rows: models; columns: variants or foundations),
as frames that `format_frame` renders to any format, LaTeX included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

VARIANT_COLUMNS = (("base", "Base"), ("secure-code", "Secure"), ("insecure-code", "Insecure"))


def _cell(value: float | None, se: float | None, decimals: int, delta: float | None = None) -> str:
    if value is None:
        return ""
    text = f"{value:.{decimals}f} ± {se:.{decimals}f}" if se is not None else f"{value:.{decimals}f}"
    if delta is not None:
        text += f" ({delta:+.0f}%)"
    return text


def variant_table(comparison: pl.DataFrame, metric: str, *, decimals: int = 2, display: dict[str, Any] | None = None,
                  group: str = "all") -> pl.DataFrame:
    """Tables 1-2: metric ± SE per variant, with Delta% against base for the others."""
    display = display or {}
    rows = []
    sub = comparison.filter(pl.col("group") == group)
    for family in sorted(sub["family"].unique()):
        fam = sub.filter(pl.col("family") == family)
        row = {"Model": display.get(family, family)}
        for variant, label in VARIANT_COLUMNS:
            r = fam.filter(pl.col("variant") == variant)
            if len(r):
                d = None if variant == "base" else r[f"delta_{metric}_pct"][0]
                row[label if variant == "base" else f"{label} (Δ%)"] = _cell(r[metric][0], r[f"{metric}_se"][0],
                                                                             decimals, d)
        rows.append(row)
    return pl.DataFrame(rows)


def _rows_by_family_variant(frame: pl.DataFrame, family: Callable[[str], str], display: dict[str, Any] | None,
                            cell: Callable[[pl.DataFrame], str]) -> pl.DataFrame:
    """One row per (model family, variant), variants in base/secure/insecure order, one column
    per group; ``cell(rows_of_that_group)`` renders each entry."""
    display = display or {}
    df = frame.filter(pl.col("group") != "all").with_columns(
        pl.col("model").map_elements(family, return_dtype=pl.String).alias("family"))
    groups = list(dict.fromkeys(df["group"].to_list()))
    order = {v: i for i, (v, _) in enumerate(VARIANT_COLUMNS)}
    keys = sorted({(f, v) for f, v in zip(df["family"], df["variant"])}, key=lambda k: (k[0], order.get(k[1], 9), k[1]))
    rows = []
    for fam, variant in keys:
        part = df.filter((pl.col("family") == fam) & (pl.col("variant") == variant))
        row = {"Model": display.get(fam, fam), "Variant": dict(VARIANT_COLUMNS).get(variant, variant)}
        for g in groups:
            r = part.filter(pl.col("group") == g)
            row[g] = cell(r) if len(r) else ""
        rows.append(row)
    return pl.DataFrame(rows)


def foundation_table(metrics: pl.DataFrame, metric: str, *, family: Callable[[str], str], decimals: int = 2,
                     display: dict[str, Any] | None = None) -> pl.DataFrame:
    """Tables 4-5: per-foundation metric ± SE, one row per model and variant."""
    # groups in instrument order, as analyze emits them and as Table 3 shows them
    return _rows_by_family_variant(metrics, family, display,
                                   lambda r: _cell(r[metric][0], r[f"{metric}_se"][0], decimals))


def profile_table(profiles: pl.DataFrame, *, family: Callable[[str], str], decimals: int = 2,
                  display: dict[str, Any] | None = None) -> pl.DataFrame:
    """Table 3: per-foundation mean ± mean item std of no-persona runs (instrument order)."""
    return _rows_by_family_variant(profiles, family, display, lambda r: _cell(r["mean"][0], r["std"][0], decimals))


def paired_table(paired: pl.DataFrame, *, metrics: tuple[str, ...] = ("S", "R"), group: str = "all",
                 decimals: int = 2, display: dict[str, Any] | None = None) -> pl.DataFrame:
    """Paired differences from the baseline (`compare --paired`): per model and variant, each
    metric's change with its interval, and the permutation p-value (Holm-adjusted across the
    groups when the comparison covered them)."""
    display = display or {}
    sub = paired.filter(pl.col("group") == group)
    order = {v: i for i, (v, _) in enumerate(VARIANT_COLUMNS)}
    keys = sorted({(f, v) for f, v in zip(sub["family"], sub["variant"])}, key=lambda k: (k[0], order.get(k[1], 9)))
    rows = []
    for fam, variant in keys:
        part = sub.filter((pl.col("family") == fam) & (pl.col("variant") == variant))
        row = {"Model": display.get(fam, fam), "Variant": dict(VARIANT_COLUMNS).get(variant, variant)}
        for metric in metrics:
            r = part.filter(pl.col("metric") == metric).row(0, named=True)
            level = round(100 * r["ci_level"]) if "ci_level" in r else 95
            row[f"Δ{metric} [{level}% CI]"] = (f"{r['delta']:+.{decimals}f} [{r['ci_low']:+.{decimals}f}, "
                                               f"{r['ci_high']:+.{decimals}f}] ({r['delta_pct']:+.0f}%)")
            row[f"p ({metric})"] = _p(r["p_holm"])
        rows.append(row)
    return pl.DataFrame(rows)


def _p(p: float | None) -> str:
    if p is None or p != p:
        return ""
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"
