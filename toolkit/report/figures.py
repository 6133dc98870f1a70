"""Figures (optional ``[plot]`` extra: matplotlib). Rendered headless to PNG."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import ToolkitError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ToolkitError("figures need matplotlib: pip install -e '.[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    axes[0].set_title("moral robustness R(T)")
    axes[1].set_title("moral susceptibility S(T)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
