"""One frame, five renderings: table (terminal), csv, json, markdown, latex.

csv and json keep full float precision (shortest round-trip repr) because their numbers feed
other programs; table, markdown and latex round for human eyes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import polars as pl

from ..errors import ToolkitError
from ..formats import OUTPUT_FORMATS
from ..numerics import decimal_exponent
from ..store.manifest import mode_of


def _human(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 10**digits or (value != 0 and abs(value) < 1e-4):
            return f"{value:.{digits}g}"
        return _fixed(value, digits)
    return str(value)


def _fixed(value: float, digits: int) -> str:
    """Fixed-point with ``digits`` significant digits, never scientific for ordinary magnitudes."""
    if value == 0:
        return "0"
    magnitude = decimal_exponent(value)
    decimals = max(0, digits - 1 - magnitude)
    text = f"{value:.{decimals}f}"
    if decimals and decimal_exponent(float(text)) > magnitude:  # 0.99995 rounds to 1.0000: keep 4 digits, 1.000
        text = f"{value:.{decimals - 1}f}"
    return text


EXACT_COLUMNS = {"temperature", "T", "ci_level"}


def _exact(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def format_frame(df: pl.DataFrame, fmt: str = "table", *, digits: int = 4, caption: str | None = None) -> str:
    if fmt == "csv":
        return df.write_csv()
    if fmt == "json":
        rows = [{k: _json_value(v) for k, v in row.items()} for row in df.iter_rows(named=True)]
        return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    exact = [c in EXACT_COLUMNS for c in df.columns]  # labels, not measurements: 0.7, not 0.7000
    cells = [[_exact(v) if e else _human(v, digits) for v, e in zip(row, exact)] for row in df.iter_rows()]
    header = df.columns
    numeric = [dt.is_numeric() for dt in df.dtypes]
    if fmt == "table":
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

        def line(vals: list[str]) -> str:
            return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)).rstrip()

        out = [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
        return "\n".join(out) + "\n"
    if fmt == "markdown":
        align = ["---:" if num else ":---" for num in numeric]
        out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
        return "\n".join(out) + "\n"
    if fmt == "latex":
        spec = "".join("r" if num else "l" for num in numeric)
        esc = _latex_escape
        out = ["\\begin{table}[t]", "\\centering", f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
        out.append(" & ".join(esc(h) for h in header) + " \\\\")
        out.append("\\midrule")
        out += [" & ".join(esc(c) for c in r) + " \\\\" for r in cells]
        out += ["\\bottomrule", "\\end{tabular}"]
        if caption:
            out.append(f"\\caption{{{esc(caption)}}}")
        out.append("\\end{table}")
        return "\n".join(out) + "\n"
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(OUTPUT_FORMATS)}")


def _latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "±": r"$\pm$", "Δ": r"$\Delta$"}
    return "".join(repl.get(ch, ch) for ch in text)


def _pm(value: float | None, se: float | None, decimals: int) -> str:
    """value ± SE with the SE to two significant digits (``decimals`` without an SE)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "" if value is None else str(value)
    if se is None or not math.isfinite(se):
        return f"{value:.{decimals}f}"
    if se > 0:
        decimals = min(5, max(0, 1 - decimal_exponent(se)))
    return f"{value:.{decimals}f} ± {se:.{decimals}f}"


def metrics_view(metrics: pl.DataFrame) -> pl.DataFrame:
    """`analyze` for a person: model, variant, T, mode (a persona run and a logprob run of one
    model are otherwise two alike rows), group, S ± SE, R ± SE, S_corrected and the
    personas × items behind them, each at a precision its size needs. The full frame (every
    SE part, repetition counts, run id) stays in --format csv/json, or --columns. P is personas."""
    rows = []
    for r in metrics.iter_rows(named=True):
        rows.append({
            "model": r["model"], "variant": r["variant"], "T": f"{r['temperature']:g}",
            "mode": mode_of(r["run_id"]) if r.get("run_id") else "", "group": r["group"],
            "S ± SE": _pm(r["S"], r["S_se"], 3),
            "R ± SE": _pm(r["R"], r["R_se"], 2),
            "S_corr": _pm(r.get("S_corrected"), None, 3),
            "P×items": f"{r['personas']}×{r['items']}",
        })
    return pl.DataFrame(rows, schema=dict.fromkeys(["model", "variant", "T", "mode", "group", "S ± SE", "R ± SE",
                                                    "S_corr", "P×items"], pl.String))


def corrected_view(metrics: pl.DataFrame) -> pl.DataFrame:
    """`analyze --corrected` for a person: the published sigma_bar and R beside their
    bias-corrected companions, and the cells the companions leave out (fewer than 2 answers)."""
    rows = []
    for r in metrics.iter_rows(named=True):
        rows.append({
            "model": r["model"], "variant": r["variant"], "T": f"{r['temperature']:g}", "group": r["group"],
            "σ̄ ± SE": _pm(r["sigma_bar"], r["sigma_bar_se"], 2),
            "σ̄_corr ± SE": _pm(r["sigma_bar_corrected"], r["sigma_bar_corrected_se"], 2),
            "R ± SE": _pm(r["R"], r["R_se"], 2),
            "R_corr ± SE": _pm(r["R_corrected"], r["R_corrected_se"], 2),
            "cells left out": "" if r["cells_excluded"] is None else str(r["cells_excluded"]),
        })
    return pl.DataFrame(rows, schema=dict.fromkeys(["model", "variant", "T", "group", "σ̄ ± SE", "σ̄_corr ± SE",
                                                    "R ± SE", "R_corr ± SE", "cells left out"], pl.String))


def comparison_view(comparison: pl.DataFrame, baseline: str = "base") -> pl.DataFrame:
    """`compare` for a person: each run's S and R with their SEs and their change from the
    baseline in percent (± its propagated SE). Every column stays in csv/json and --columns."""
    rows = []
    for r in comparison.iter_rows(named=True):
        base = r["variant"] == baseline
        rows.append({"model": r["model"], "variant": r["variant"], "T": f"{r['temperature']:g}", "group": r["group"],
                     "S ± SE": _pm(r["S"], r["S_se"], 3),
                     "ΔS % ± SE": "baseline" if base else _pm(r["delta_S_pct"], r["delta_S_pct_se"], 1),
                     "R ± SE": _pm(r["R"], r["R_se"], 2),
                     "ΔR % ± SE": "baseline" if base else _pm(r["delta_R_pct"], r["delta_R_pct_se"], 1)})
    return pl.DataFrame(rows, schema=dict.fromkeys(["model", "variant", "T", "group", "S ± SE", "ΔS % ± SE", "R ± SE",
                                                    "ΔR % ± SE"], pl.String))


def runs_view(runs: pl.DataFrame) -> pl.DataFrame:
    """`runs` for a person: the run id (which names model, variant, temperature and mode), its
    rows, the share of valid ratings where a run has ratings, the tokens it cost where the
    server reported them, and a short fingerprint."""
    return runs.select(
        "run_id", "rows",
        pl.when(pl.col("mode") == "logprob").then(pl.lit("n/a: digit probabilities"))
        .otherwise((pl.col("valid_share") * 100).round(2).cast(pl.String) + "%").alias("valid ratings"),
        pl.when(pl.col("prompt_tokens").is_null() & pl.col("completion_tokens").is_null()).then(pl.lit("—"))
        .otherwise(pl.col("prompt_tokens").cast(pl.String).fill_null("?") + " / "
                   + pl.col("completion_tokens").cast(pl.String).fill_null("?")).alias("tokens in / out"),
        "segments", (pl.col("fingerprint").str.slice(0, 12) + "…").alias("fingerprint"))


def curves_view(curve: pl.DataFrame) -> pl.DataFrame:
    """`curves` for a person: per run, group and temperature, S, sigma_bar and R with their
    (persona-bootstrap) SEs and the personas × items behind them."""
    rows = []
    for r in curve.iter_rows(named=True):
        rows.append({"model": r["model"], "variant": r["variant"], "group": r["group"], "T": f"{r['temperature']:g}",
                     "S ± SE": _pm(r["S"], r["S_se"], 3), "σ̄ ± SE": _pm(r["sigma_bar"], r["sigma_bar_se"], 3),
                     "R ± SE": _pm(r["R"], r["R_se"], 2), "P×items": f"{r['personas']}×{r['items']}"})
    return pl.DataFrame(rows, schema=dict.fromkeys(["model", "variant", "group", "T", "S ± SE", "σ̄ ± SE", "R ± SE",
                                                    "P×items"], pl.String))


def chosen_columns(df: pl.DataFrame, columns: str | None, fmt: str,
                   compact: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> pl.DataFrame:
    """What a table command prints: the ``columns`` asked for (comma-separated), else for the
    terminal the compact view (``compact``, default the metrics view), else (csv, json,
    markdown, latex) every column."""
    if columns:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in df.columns]
        if unknown:
            raise ToolkitError(f"--columns: no column {', '.join(unknown)} (there are: {', '.join(df.columns)})")
        return df.select(chosen)
    if fmt == "table" and len(df):
        return (compact or metrics_view)(df)
    return df


SHOWN_TEMPERATURES = 5  # curves in the terminal: evenly spaced temperatures of the grid, ends included


def curves_shown(df: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
    """The rows of a curve table the terminal shows: SHOWN_TEMPERATURES evenly spaced
    temperatures of the grid (ends included), and a line saying so (None when all are shown)."""
    grid = df["temperature"].unique().sort() if len(df) else None
    if grid is None or len(grid) <= SHOWN_TEMPERATURES:
        return df, None
    at = grid.gather([round(i * (len(grid) - 1) / (SHOWN_TEMPERATURES - 1)) for i in range(SHOWN_TEMPERATURES)])
    return (df.filter(df["temperature"].is_in(at.implode())),
            f"({SHOWN_TEMPERATURES} of {len(grid)} temperatures shown: --all for every one, --format csv for the data)")
