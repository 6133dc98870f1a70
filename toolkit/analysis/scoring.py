"""What an analysis worker does with its share of ``analyze``: read runs from the store by
path, apply retention, score, and send back rows.

numpy and arrow only, never polars: workers are forked from the fork server
(toolkit.workers), which must stay single-threaded, and polars starts threads on import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..protocol.instrument import Instrument
from ..store import RunManifest, Store
from . import kernels
from .metrics import Estimates, ItemGroups, bootstrap_se, estimate, instrument_groups
from .options import AnalysisOptions
from .seeds import rng_for
from .selection import Unit, read_unit


def metrics_task(counts: np.ndarray, scale: np.ndarray, G: ItemGroups, content: str, options: AnalysisOptions,
                 ) -> Estimates:
    """One run's estimates, its random streams drawn from its own counts (seeds.py)."""
    return estimate(
        counts,
        scale,
        G,
        persona_draws=options.bootstrap,
        rerun_draws=options.rerun_bootstrap,
        rng_persona=rng_for(content, "metrics", options.seed, "persona"),
        rng_rerun=rng_for(content, "metrics", options.seed, "rerun"),
    )


def score_units(root: str, units: list[Unit], by_group: bool, options: AnalysisOptions,
                compiled: bool = False) -> list[Any]:
    """A worker's share of ``analyze``: read each unit, apply retention, score. Returns, per
    selected run, (run id, rows, partial-items note, None), or (run id, [], None, (why it is
    left out, the read error if any)). ``compiled``: use the compiled kernels when installed
    (kernels.worth: the process has enough runs in all to pay for importing them)."""
    store = Store(root)
    kernels.set_enabled(compiled)
    out: list[Any] = []
    for unit in units:
        kept, refused = read_unit(store, unit, options.retention)
        out += [(run_id, [], None, why) for run_id, why in refused.items()]
        for rc, ids in kept:
            counts = rc.counts[np.isin(rc.persona_ids, ids)]
            inst = rc.instrument
            est = metrics_task(counts, inst.scale, instrument_groups(inst), rc.input_digest, options)
            note = (f"run {rc.manifest.run_id}: recorded on {len(inst.items)} of the instrument's "
                    f"{rc.items_total} items; its values are over those items (and their groups) only"
                    if rc.partial else None)
            out.append((rc.manifest.run_id, metric_rows(rc.manifest, inst, counts, est, by_group), note, None))
    return out


def _root_sum_squares(a: float, b: float) -> float:
    """sqrt(a**2 + b**2) in three correctly rounded IEEE operations. Not np.hypot: that is the
    system libm's hypot, whose last bits differ between C libraries and their versions."""
    a, b = float(a), float(b)
    return float(np.sqrt(a * a + b * b))


def _companions(sc: float, se: float, excluded: int) -> dict[str, Any]:
    """The bias-corrected sigma_bar and R (metrics.py), in the rows only `analyze --corrected` prints."""
    ok = sc > 0
    return {"sigma_bar_corrected": sc, "sigma_bar_corrected_se": se, "R_corrected": 1.0 / sc if ok else float("inf"),
            "R_corrected_se": se / (sc * sc) if ok else float("nan"), "cells_excluded": excluded}


def metric_rows(m: RunManifest, inst: Instrument, counts: np.ndarray, est: Estimates, by_group: bool,
                ) -> list[dict[str, Any]]:
    """The ``analyze`` rows of one run: overall, then each group with ``by_group``."""
    n = counts.sum(axis=2)
    se_sp, se_sr = bootstrap_se(est.S_persona), bootstrap_se(est.S_rerun)
    se_gp, se_gr = bootstrap_se(est.sigma_persona), bootstrap_se(est.sigma_rerun)
    se_cp, se_cr = bootstrap_se(est.S_corrected_persona), bootstrap_se(est.S_corrected_rerun)
    assert est.sigma_corrected is not None and est.sigma_corrected_persona is not None
    assert est.sigma_corrected_rerun is not None and est.cells_excluded is not None
    se_kp, se_kr = bootstrap_se(est.sigma_corrected_persona), bootstrap_se(est.sigma_corrected_rerun)
    rows = []
    for g, (name, member) in enumerate(inst.group_masks()[: None if by_group else 1]):
        ng = n[:, member]
        sb = float(est.sigma_bar[g])
        sig_se = _root_sum_squares(se_gp[g], se_gr[g])
        rows.append({
            "model": m.model, "variant": m.variant, "temperature": m.temperature, "group": name,
            "S": float(est.S[g]), "S_se": _root_sum_squares(se_sp[g], se_sr[g]),
            "sigma_bar": sb, "sigma_bar_se": sig_se,
            "R": 1.0 / sb if sb > 0 else float("inf"), "R_se": sig_se / sb**2 if sb > 0 else float("nan"),
            "S_corrected": float(est.S_corrected[g]), "S_corrected_se": _root_sum_squares(se_cp[g], se_cr[g]),
            "personas": counts.shape[0], "items": int(member.sum()),
            "S_se_persona": float(se_sp[g]), "S_se_rerun": float(se_sr[g]),
            "sigma_bar_se_persona": float(se_gp[g]), "sigma_bar_se_rerun": float(se_gr[g]),
            "min_reps": int(ng.min()), "median_reps": float(np.median(ng)), "max_reps": int(ng.max()),
            "run_id": m.run_id, **_companions(float(est.sigma_corrected[g]), _root_sum_squares(se_kp[g], se_kr[g]),
                                              int(est.cells_excluded[g])),
        })
    return rows
