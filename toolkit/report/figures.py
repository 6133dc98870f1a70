"""Figures (optional ``[plot]`` extra: matplotlib). Rendered headless to PNG."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import ToolkitError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ToolkitError("figures need matplotlib: pip install -e '.[plot]'") from None
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "persona-moral-toolkit"  # SVG ids from content, not at random
    import matplotlib.pyplot as plt

    return plt


FIGURE_FORMATS = ("png", "pdf", "svg")
NO_TIMESTAMP = {".pdf": {"CreationDate": None}, ".svg": {"Date": None}}  # the same figure, the same bytes
_DPI: list[float | None] = [None]  # set by figure_options; None: each figure's own


def check_figure_path(path: str | Path) -> Path:
    """A figure's file name decides its format: .png, .pdf or .svg (checked before any work)."""
    out = Path(path)
    if out.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise ToolkitError(f"{out}: a figure is written as .png, .pdf or .svg (the name's extension picks which)")
    return out


def check_dpi(dpi: float | None) -> None:
    if dpi is not None and not 10 <= dpi <= 1200:
        raise ToolkitError(f"--dpi must be between 10 and 1200, not {dpi:g}")


@contextmanager
def figure_options(dpi: float | None = None) -> Iterator[None]:
    """Resolution of the PNGs written inside the block (vector formats ignore it)."""
    check_dpi(dpi)
    _DPI[0] = dpi
    try:
        yield
    finally:
        _DPI[0] = None


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    out = check_figure_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI[0] if _DPI[0] is not None else "figure",
                metadata=NO_TIMESTAMP.get(out.suffix.lower()))
    plt.close(fig)
    return out


def plot_curves(df: pl.DataFrame, path: str | Path) -> Path:
    """R(T) and S(T) with ±1 SE bands, one line per run (overall group)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    overall = df.filter(pl.col("group") == "all")
    for run_id in overall["run_id"].unique(maintain_order=True):
        part = overall.filter(pl.col("run_id") == run_id).sort("temperature")
        label = f"{part['model'][0]} ({part['variant'][0]})"
        t = part["temperature"].to_numpy()
        for ax, metric in zip(axes, ("R", "S")):
            y, se = part[metric].to_numpy(), part[f"{metric}_se"].to_numpy()
            ax.plot(t, y, label=label)
            ax.fill_between(t, y - se, y + se, alpha=0.25)
    for ax, metric in zip(axes, ("R", "S")):
        ax.set_xlabel("temperature T")
        ax.set_ylabel(f"{metric}(T)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 2, 3, 5 rather than 2×10⁰
    axes[0].yaxis.set_major_formatter(plain)
    axes[0].yaxis.set_minor_formatter(plain)
    axes[0].set_title("moral robustness R(T)")
    axes[1].set_title("moral susceptibility S(T)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path)


VARIANT_STYLE = {"base": ("Base", "#4C72B0"), "secure-code": ("Secure", "#55A868"),
                 "insecure-code": ("Insecure", "#C44E52")}


PALETTE = ("#8172B2", "#DD8452", "#937860", "#DA8BC3", "#8C8C8C")  # series without a style of their own


def _variant_label(v: str) -> tuple[str, str]:
    return VARIANT_STYLE.get(v, (v, "#8172B2"))


def plot_bars(comparison: pl.DataFrame, metric: str, path: str | Path, *, display: dict[str, Any] | None = None,
              baseline: str = "base") -> Path:
    """Left: metric ± SE per model and variant. Right: Delta% against the baseline (± propagated SE)."""
    import numpy as np

    plt = _pyplot()
    display = display or {}
    df = comparison.filter(pl.col("group") == "all")
    families = sorted(df["family"].unique())
    variants = [v for v in VARIANT_STYLE if v in set(df["variant"])] + sorted(set(df["variant"]) - set(VARIANT_STYLE))
    fig, (ax, axd) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    x = np.arange(len(families))
    width = 0.8 / max(1, len(variants))
    others = [v for v in variants if v != baseline]
    dwidth = 0.8 / max(1, len(others))
    for i, v in enumerate(variants):
        label, color = _variant_label(v)
        vals, errs, dvals, derrs = [], [], [], []
        for f in families:
            r = df.filter((pl.col("family") == f) & (pl.col("variant") == v))
            vals.append(r[metric][0] if len(r) else np.nan)
            errs.append(r[f"{metric}_se"][0] if len(r) else 0)
            dvals.append(r[f"delta_{metric}_pct"][0] if len(r) else np.nan)
            derrs.append(r[f"delta_{metric}_pct_se"][0] if len(r) else 0)
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, vals, width, yerr=errs, capsize=3, label=label, color=color)
        if v != baseline:
            j = others.index(v)
            axd.bar(x + (j - (len(others) - 1) / 2) * dwidth, dvals, dwidth, yerr=derrs, capsize=3, label=label,
                    color=color)
    names = [display.get(f, f) for f in families]
    for a in (ax, axd):
        a.set_xticks(x, names, rotation=15)
        a.grid(axis="y", alpha=0.3)
    axd.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by model and variant (± SE)")
    axd.set_ylabel(f"Δ{metric} (%)")
    axd.set_title(f"change from {baseline} (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_radar(profiles: pl.DataFrame, path: str | Path, *, family: Callable[[str], str],
               display: dict[str, Any] | None = None,
               scale_max: float = 5.0) -> Path:
    """One radar per model: the per-group profile of each variant, with ± mean-std bands."""
    plt = _pyplot()
    return _save(plt, radar_figure(profiles, family=family, display=display, scale_max=scale_max), path)


def radar_figure(profiles: pl.DataFrame, *, family: Callable[[str], str], display: dict[str, Any] | None = None,
                 scale_max: float = 5.0) -> Any:
    """The radar figure itself (tests measure its layout: no label under the legend)."""
    import numpy as np

    plt = _pyplot()
    display = display or {}
    df = profiles.filter(pl.col("group") != "all").with_columns(
        pl.col("model").map_elements(family, return_dtype=pl.String).alias("family"))
    groups = list(dict.fromkeys(df["group"].to_list()))
    families = sorted(df["family"].unique())
    angles = np.linspace(0, 2 * np.pi, len(groups), endpoint=False)
    closed = np.concatenate([angles, angles[:1]])
    cols = min(4, len(families))
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), dpi=100, subplot_kw={"polar": True},
                             squeeze=False)
    for ax in axes.ravel()[len(families):]:
        ax.set_visible(False)
    def value(part: pl.DataFrame, group: str, column: str) -> float:
        """The group's value, NaN when the run has none (matplotlib leaves a gap there)."""
        hit = part.filter(pl.col("group") == group)[column]
        return float(hit[0]) if len(hit) and hit[0] is not None else float("nan")

    for ax, fam in zip(axes.ravel(), families):
        present = set(df.filter(pl.col("family") == fam)["variant"])
        others = sorted(present - set(VARIANT_STYLE))
        missing = []
        for v in [v for v in VARIANT_STYLE if v in present] + others:
            part = df.filter((pl.col("family") == fam) & (pl.col("variant") == v))
            mean = np.array([value(part, g, "mean") for g in groups])
            std = np.array([value(part, g, "std") for g in groups])
            label, color = VARIANT_STYLE[v] if v in VARIANT_STYLE else (v, PALETTE[others.index(v) % len(PALETTE)])
            gaps = [g.split("/")[0] for g, m in zip(groups, mean) if np.isnan(m)]
            if gaps:
                missing.append(f"{label}: no {', '.join(gaps)}")
            ax.plot(closed, np.r_[mean, mean[:1]], color=color, label=label)
            ax.fill_between(closed, np.r_[mean - std, (mean - std)[:1]], np.r_[mean + std, (mean + std)[:1]],
                            color=color, alpha=0.2)
        ax.set_xticks(angles, [g.split("/")[0] for g in groups], fontsize=8)
        ax.set_ylim(0, scale_max)
        ax.set_title(display.get(fam, fam) + ("\n(" + "; ".join(missing) + ")" if missing else ""),
                     fontsize=10 if not missing else 8, pad=18)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    # the legend gets a band of its own below the panels, so it cannot cover an axis label
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return fig


def plot_profile_comparison(selves: pl.DataFrame, sets: pl.DataFrame, path: str | Path,
                            scale_max: float = 5.0) -> Path:
    """One radar per persona run (model and variant): the set profile (mean ± across-persona
    std) next to the same model's self profile (mean ± within-question std), when it has one."""
    panel = pl.format("{} ({})", pl.col("model"), pl.col("variant"))
    frames = [sets.select(panel.alias("model"), pl.format("{} ({} personas)", pl.col("persona_set"),
                                                          pl.col("personas")).alias("variant"),
                          "group", "mean", "std")]
    if len(selves):
        keys = sets.select("model", "variant").unique()
        frames.append(selves.join(keys, on=["model", "variant"]).select(panel.alias("model"),
                                                                        pl.lit("self").alias("variant"),
                                                                        "group", "mean", "std"))
    return plot_radar(pl.concat(frames), path, family=lambda m: m, scale_max=scale_max)


SHIFT_PANELS = {  # diagnose --by: the unit ranked, and its two panels (column, title)
    "persona": (("shift_abs", "mean |shift| of item means"), ("shift_sigma", "change of within-question std")),
    "item": (("shift_rating", "|shift| of the mean rating"), ("delta_sigma", "change of the within-persona std")),
}


def plot_shifts(diagnosis: pl.DataFrame, path: str | Path, by: str = "persona") -> Path:
    """Per compared run, its personas (or items, ``by``) ranked by how far they moved from the
    baseline: how far their mean rating moved (left) and the change of their within-cell std
    (right), largest first."""
    import numpy as np

    plt = _pyplot()
    runs = diagnosis.filter(pl.col("baseline_run_id").is_not_null())["run_id"].unique(maintain_order=True).to_list()
    if not runs:
        raise ToolkitError("no run in the selection has a baseline run to compare with: nothing to plot")
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 2.6 * len(runs)), dpi=100, squeeze=False)
    for (ax_r, ax_s), run in zip(axes, runs):
        part = diagnosis.filter(pl.col("run_id") == run)
        name = f"{part['model'][0]} ({part['variant'][0]})"
        (col_r, title_r), (col_s, title_s) = SHIFT_PANELS[by]
        for ax, col, title, color in ((ax_r, col_r, title_r, "#C44E52"), (ax_s, col_s, title_s, "#4C72B0")):
            values = part[col].to_numpy().astype(np.float64)
            y = np.sort(np.abs(values) if col == "shift_rating" else values)[::-1]
            ax.bar(np.arange(1, y.size + 1), y, color=color, width=1.0)
            ax.axhline(0, color="black", lw=0.6)
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xlabel(f"{by} rank")
            ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(plt, fig, path)
