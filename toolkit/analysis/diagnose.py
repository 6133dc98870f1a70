"""Where a change comes from: per persona and per item, what each contributes to S and sigma_bar,
and how it moved against the baseline run (`toolkit diagnose`).

S is a mean over items of tau_q, so item q contributes tau_q / Q; sigma_bar is a mean over
cells, so persona p contributes (its mean within-question std) / P and item q (its mean over
personas) / Q. A persona's weight in S is not additive (tau is a spread); its influence is
reported as S minus S without that persona (leave-one-out), which is positive when the persona
widens the spread. Against a baseline run of the same family and temperature the personas both
runs retain are compared one by one: the shift of the mean rating (signed and absolute, over
items) and of the within-question std.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..store import Store
from ..store.query import EVERY_RUN, Selection
from .cells import RunCounts
from .metrics import ItemGroups, cell_moments, instrument_groups
from .options import DEFAULT
from .paired import leave_one_out, point_metrics, unit_values
from .result import OnError, Result, collector, result
from .selection import retained_counts, with_baselines

PERSONA_COLUMNS = ["family", "model", "variant", "persona_id", "mean_rating", "sigma", "S_influence",
                   "base_mean_rating", "base_sigma", "base_S_influence", "shift_rating", "shift_abs", "shift_sigma",
                   "run_id", "baseline_run_id"]
ITEM_COLUMNS = ["family", "model", "variant", "item_id", "group", "mean_rating", "tau", "sigma", "base_mean_rating",
                "base_tau", "base_sigma", "shift_rating", "delta_tau", "delta_sigma", "run_id", "baseline_run_id"]


def _unit_stats(counts: np.ndarray, scale: np.ndarray, G: ItemGroups) -> dict[str, np.ndarray]:
    _, mu, sigma = cell_moments(counts, scale)
    loo = leave_one_out(unit_values(counts, scale, mu.mean(axis=0)), G)[:, 0, 0]  # S without each persona
    return {"mu": mu, "sigma": sigma, "S_influence": point_metrics(counts, scale, G)[0, 0] - loo}


def diagnose(store: Store | None = None, selection: Selection = EVERY_RUN, *, by: str = "persona",
             baseline: str = "base", family: Callable[[str], str] | None = None,
             on_error: OnError = "raise") -> Result:
    """One row per persona (``by="persona"``) or item (``by="item"``) of every selected persona
    run, with the baseline run's values and the shifts when the run has one (see module doc)."""
    from .api import strip_variant_suffix

    if by not in ("persona", "item"):
        raise ToolkitError(f"diagnose --by takes persona or item, not {by!r}")
    family = family or strip_variant_suffix
    store = store or Store()
    problems = collector(on_error)
    all_runs = store.runs()
    loaded = retained_counts(store, selection.for_modes(("persona",), "diagnose", store, among=all_runs), all_runs,
                             DEFAULT, problems)
    frames = [_rows(rc, ids, base, family(rc.manifest.model), by)
              for rc, ids, base, _ in with_baselines(loaded, baseline, family, problems)]
    columns = PERSONA_COLUMNS if by == "persona" else ITEM_COLUMNS
    if not frames:
        return result(pl.DataFrame(schema=dict.fromkeys(columns, pl.String)), problems)
    out = pl.concat(frames, how="diagonal_relaxed")
    missing = [c for c in columns if c not in out.columns]  # no run had a baseline: no shift columns
    return result(out.with_columns(pl.lit(None, pl.Float64).alias(c) for c in missing).select(columns), problems)


def _rows(rc: RunCounts, ids: np.ndarray, base: tuple[RunCounts, np.ndarray] | None, fam: str,
          by: str) -> pl.DataFrame:
    inst = rc.instrument
    G = instrument_groups(inst)
    common = np.intersect1d(ids, base[1]) if base is not None else ids
    if base is not None and common.size < 2:
        base, common = None, ids
    own = _unit_stats(rc.counts[np.isin(rc.persona_ids, common)], inst.scale, G)
    m = rc.manifest
    head = {"family": fam, "model": m.model, "variant": m.variant, "run_id": m.run_id,
            "baseline_run_id": base[0].manifest.run_id if base is not None else None}
    cols: dict[str, Any] = {}
    if by == "persona":
        cols = {"persona_id": common, "mean_rating": own["mu"].mean(axis=1), "sigma": own["sigma"].mean(axis=1),
                "S_influence": own["S_influence"]}
    else:
        cols = {"item_id": np.asarray(inst.item_ids), "group": [it.group for it in inst.items],
                "mean_rating": own["mu"].mean(axis=0), "tau": np.std(own["mu"], axis=0, ddof=1),
                "sigma": own["sigma"].mean(axis=0)}
    if base is not None:
        b_rc = base[0]
        other = _unit_stats(b_rc.counts[np.isin(b_rc.persona_ids, common)], inst.scale, G)
        shift = own["mu"] - other["mu"]
        if by == "persona":
            cols |= {"base_mean_rating": other["mu"].mean(axis=1), "base_sigma": other["sigma"].mean(axis=1),
                     "base_S_influence": other["S_influence"], "shift_rating": shift.mean(axis=1),
                     "shift_abs": np.abs(shift).mean(axis=1),
                     "shift_sigma": own["sigma"].mean(axis=1) - other["sigma"].mean(axis=1)}
        else:
            base_tau = np.std(other["mu"], axis=0, ddof=1)
            cols |= {"base_mean_rating": other["mu"].mean(axis=0), "base_tau": base_tau,
                     "base_sigma": other["sigma"].mean(axis=0), "shift_rating": shift.mean(axis=0),
                     "delta_tau": cols["tau"] - base_tau, "delta_sigma": cols["sigma"] - other["sigma"].mean(axis=0)}
    frame = pl.DataFrame(cols).with_columns(pl.lit(v).alias(k) for k, v in head.items())
    if by == "persona" and base is not None:
        frame = frame.sort("shift_abs", descending=True, maintain_order=True)
    return frame
