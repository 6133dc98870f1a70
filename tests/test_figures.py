"""Paper-ready figures: PNG, PDF or SVG by the file name, a chosen resolution, the same bytes
for the same data, no label under a legend, and foundations in instrument order everywhere."""

from __future__ import annotations

import hashlib
import struct

import pytest

from conftest import ROOT, run_cli

DEMO = ["--store", str(ROOT / "parquet")]


def test_figure_formats_resolution_and_reproducible_bytes(tmp_path):
    pytest.importorskip("matplotlib")
    from toolkit.analysis import curves
    from toolkit.report.figures import plot_curves
    from toolkit.store import Store

    frame = curves(Store(ROOT / "parquet"), points=9).frame
    for name in ("c.png", "c.pdf", "c.svg"):
        first = hashlib.sha256(plot_curves(frame, tmp_path / name).read_bytes()).hexdigest()
        again = hashlib.sha256(plot_curves(frame, tmp_path / name).read_bytes()).hexdigest()
        assert first == again, name  # no timestamp or random id in any format
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-" and b"<svg" in (tmp_path / "c.svg").read_bytes()
    res = run_cli("curves", "--points", "9", "--plot", str(tmp_path / "hi.png"), "--dpi", "200", *DEMO)
    assert res.returncode == 0 and f"figure: {tmp_path / 'hi.png'}" in res.stderr, res.stderr  # it says where
    assert struct.unpack(">II", (tmp_path / "hi.png").read_bytes()[16:24]) == (2000, 800)  # 10 x 4 in at 200 dpi
    bad = run_cli("curves", "--plot", str(tmp_path / "c.jpg"), *DEMO)
    assert bad.returncode == 2 and "written as .png, .pdf or .svg" in bad.stderr and bad.stdout == ""
    assert run_cli("curves", "--plot", str(tmp_path / "x.png"), "--dpi", "5", *DEMO).returncode == 2


def test_no_axis_label_lies_under_the_radar_legend(em_store):
    pytest.importorskip("matplotlib")
    from toolkit.analysis import profiles
    from toolkit.analysis.api import strip_variant_suffix
    from toolkit.report.figures import radar_figure

    fig = radar_figure(profiles(em_store).frame, family=strip_variant_suffix)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    labels = [t for ax in fig.axes if ax.get_visible() for t in ax.get_xticklabels() + [ax.title]]
    assert len(labels) == 4 * 6  # 4 models: 5 foundation labels and a title each
    covered = [t.get_text() for t in labels if t.get_window_extent(renderer).overlaps(legend)]
    assert covered == []


def test_foundation_tables_follow_the_instrument_order(em_store):
    from toolkit.analysis import analyze, profiles
    from toolkit.analysis.api import strip_variant_suffix
    from toolkit.analysis.options import AnalysisOptions
    from toolkit.protocol.instrument import load_instrument
    from toolkit.report.paper_tables import foundation_table, profile_table

    groups = load_instrument().groups
    metrics = analyze(em_store, by_group=True, options=AnalysisOptions(bootstrap=0, rerun_bootstrap=0)).frame
    assert foundation_table(metrics, "R", family=strip_variant_suffix).columns[2:] == groups  # Table 4 (5 alike)
    assert profile_table(profiles(em_store).frame, family=strip_variant_suffix).columns[2:] == groups  # Table 3
