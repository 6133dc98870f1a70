"""The logit method: rating distributions from next-token digit log-probabilities.

For a cell with digit log-probabilities l_0..l_K, p_r(T) = softmax(l_r / T) over the scale's
digits, mu(T) = sum r p_r, sigma(T) = sqrt(sum (r - mu)^2 p_r). S(T) and R(T) = 1/sigma_bar(T)
follow exactly as for sampled runs (tau_q = std over personas, ddof=1), at any temperature,
from one recording. Digits missing from an API's top-k list are imputed with the minimum
log-probability of that cell's top-k list (the published rule); every imputation is counted.

Numerics are one tensor computation per chunk of temperatures: cells x temperatures x
bootstrap draws, with the persona resampling written as a matrix product on integer-valued
operands (numerics.exact_products) and the exponential computed by numerics.exp: results
are bit-identical for any --jobs, thread count, BLAS kernel and CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..hashing import parse_json
from ..numerics import exact_products, exp
from ..parallel import delayed
from ..protocol.instrument import Instrument
from ..store import RunManifest, Store
from .metrics import ItemGroups, instrument_groups, resample_weights
from .options import AnalysisOptions
from .seeds import input_digest, rng_for

CHUNK = 16  # temperatures per task; fixed so that results never depend on --jobs
CURVE_COLUMNS = ["model", "variant", "group", "temperature", "S", "S_se", "sigma_bar", "sigma_bar_se", "R", "R_se",
                 "personas", "items", "imputed_digits", "run_id"]


@dataclass
class LogprobRun:
    manifest: RunManifest
    instrument: Instrument
    persona_ids: np.ndarray  # (P,) personas with every item present
    logprobs: np.ndarray  # (P, Q, K) after imputation
    imputed: int  # digits imputed in the kept cells

    @property
    def input_digest(self) -> str:
        """What the seeds derive from: the analysis input, never a manifest field."""
        return input_digest(self.instrument.digest, self.persona_ids.astype(np.int64), self.logprobs)


def _topk_min(raw: str | None) -> float | None:
    """Minimum log-probability in a stored top-k list (published or OpenAI-style JSON)."""
    if not raw:
        return None
    try:
        entries = parse_json(raw)
    except ValueError:
        return None
    if isinstance(entries, dict):
        entries = entries.get("top_logprobs") or entries.get("content") or []
    values = [float(e["logprob"]) for e in entries if isinstance(e, dict) and "logprob" in e]
    return min(values) if values else None


def load_logprobs(store: Store, manifest: RunManifest) -> LogprobRun:
    if manifest.mode != "logprob":
        raise ToolkitError(f"run {manifest.run_id} is a {manifest.mode} run: it has no digit log-probabilities")
    inst = store.instrument(manifest.instrument["digest"])
    K = inst.n_points
    columns = ["persona_id", "item_id", "repetition", "digit_logprobs", "top_logprobs"]
    df = pl.from_arrow(store.read_run(manifest, columns, generations="newest"))
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(pl.col("persona_id").fill_null(-1))
    df = df.sort(["persona_id", "item_id", "repetition"])
    df = df.unique(["persona_id", "item_id"], keep="first", maintain_order=True)
    lp = df["digit_logprobs"]
    if lp.null_count() or (lp.list.len() != K).any():
        bad = df.filter(lp.is_null() | (lp.list.len() != K)).row(0, named=True)
        raise ToolkitError(f"run {manifest.run_id}: persona {bad['persona_id']} item {bad['item_id']} has no "
                           f"{K} digit log-probabilities")
    L = np.asarray(lp.explode().cast(pl.Float64).to_numpy(), dtype=np.float64).reshape(-1, K)
    missing = np.isnan(L)
    rows_missing = np.flatnonzero(missing.any(axis=1))
    if rows_missing.size:
        all_gone = missing.all(axis=1)
        if all_gone.any():
            r = df.row(int(np.flatnonzero(all_gone)[0]), named=True)
            raise ToolkitError(f"run {manifest.run_id}: persona {r['persona_id']} item {r['item_id']}: every digit "
                               "is missing from the top-k list; nothing to impute from")
        tops = df["top_logprobs"].gather(rows_missing).to_list()
        for row, raw in zip(rows_missing, tops):
            fill = _topk_min(raw)
            if fill is None:  # no stored list: the smallest digit log-probability we do have
                fill = float(np.nanmin(L[row]))
            L[row, missing[row]] = fill
    persona_ids = np.unique(df["persona_id"].to_numpy())
    item_ids = np.asarray(inst.item_ids)
    p = np.searchsorted(persona_ids, df["persona_id"].to_numpy())
    item_pos = {iid: i for i, iid in enumerate(item_ids)}
    try:
        q = np.array([item_pos[i] for i in df["item_id"].to_list()], dtype=np.int64)
    except KeyError as exc:
        raise ToolkitError(f"run {manifest.run_id} holds item {exc} outside its instrument") from None
    P, Q = len(persona_ids), len(item_ids)
    cube = np.full((P, Q, K), np.nan)
    cube[p, q] = L
    present = np.zeros((P, Q), bool)
    present[p, q] = True
    imputed = np.zeros((P, Q), np.int64)
    imputed[p, q] = missing.sum(axis=1)
    keep = present.all(axis=1)
    return LogprobRun(manifest, inst, persona_ids[keep], cube[keep], int(imputed[keep].sum()))


def cell_moments_at(L: np.ndarray, temps: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu and sigma of softmax(L / T) for every cell and temperature: (P, Q, T) each.

    The exponential and the sums over the scale are the machine-independent ones of
    numerics (no SIMD exp, no einsum), so curves are bit-identical on every CPU."""
    shifted = L - L.max(axis=2, keepdims=True)  # <= 0: exp never overflows
    w = exp(shifted[..., None] * (1.0 / temps))  # (P, Q, K, T)
    w /= w.sum(axis=2, keepdims=True)
    r = np.asarray(scale, dtype=np.float64)[None, None, :, None]
    mu = (w * r).sum(axis=2)
    dev = r - mu[:, :, None, :]
    dev *= dev
    var = (w * dev).sum(axis=2)  # two-pass: exact even for near-deterministic cells
    return mu, np.sqrt(var)


def _curve_chunk(L: np.ndarray, temps: np.ndarray, scale: np.ndarray, G: ItemGroups,
                 W: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point values and persona-bootstrap SEs of S and sigma_bar, shape (G+1, T) each."""
    P, Q, _ = L.shape
    nT = len(temps)
    mu, sigma = cell_moments_at(L, temps, scale)
    S = G.means(np.std(mu, axis=0, ddof=1), axis=0)  # (G+1, T)
    sig = G.means(sigma.mean(axis=0), axis=0)
    if W is None:
        nan = np.full_like(S, np.nan)
        return S, sig, nan, nan
    draws = W.shape[0]
    centred = (mu - mu.mean(axis=0))[:, G.order]  # items in group order: the group means need no copy
    sig_pg = G.means(sigma, axis=1)  # (P, G+1, T)
    X = np.concatenate([centred.reshape(P, -1), (centred * centred).reshape(P, -1), sig_pg.reshape(P, -1)], axis=1)
    # Exact integer products in float32 BLAS (bit-identical on every kernel), then the
    # replicate arithmetic in float32 too: IEEE elementwise operations round the same way
    # everywhere, and their ~1e-7 relative error is far below the bootstrap's own. Point
    # values above stay float64.
    sums = exact_products(W, X, allow_single=True)
    f = sums.dtype.type
    m1 = sums[:, : Q * nT].reshape(draws, Q, nT)
    m2 = sums[:, Q * nT : 2 * Q * nT].reshape(draws, Q, nT)
    tau = m1 * m1  # in place from here: this tensor is draws x items x temperatures
    tau *= f(-1.0 / P)
    tau += m2
    tau *= f(1.0 / (P - 1))
    np.maximum(tau, f(0.0), out=tau)
    np.sqrt(tau, out=tau)
    S_b = G.means(tau, axis=1, presorted=True)  # (B, G+1, T)
    sig_b = sums[:, 2 * Q * nT :].reshape(draws, G.width, nT) / f(P)
    return S, sig, np.std(S_b, axis=0, ddof=1, dtype=np.float64), np.std(sig_b, axis=0, ddof=1, dtype=np.float64)


def temperature_grid(tmin: float = 0.35, tmax: float = 1.25, points: int = 201,
                     temperatures: list[float] | None = None) -> np.ndarray:
    if not temperatures and not (tmin < tmax and points >= 2):
        raise ToolkitError(f"a temperature grid needs --tmin < --tmax and at least 2 --points (got tmin {tmin:g}, "
                           f"tmax {tmax:g}, {points} points); --temperatures lists single values")
    temps = np.asarray(temperatures if temperatures else np.linspace(tmin, tmax, points), dtype=np.float64)
    if temps.size == 0 or not np.all(np.isfinite(temps)) or (temps <= 0).any():
        raise ToolkitError("temperatures must be finite and > 0")
    return temps


def curve_frames(runs: list[LogprobRun], temps: np.ndarray, *, by_group: bool,
                 options: AnalysisOptions) -> pl.DataFrame:
    bootstrap = options.bootstrap
    tasks, where = [], []
    for i, run in enumerate(runs):
        if run.persona_ids.size < 2:
            raise ToolkitError(f"run {run.manifest.run_id}: fewer than 2 personas have every item")
        inst = run.instrument
        G = instrument_groups(inst)
        rng = rng_for(run.input_digest, "curves", options.seed, "persona")  # the same draws for every chunk
        W = resample_weights(run.persona_ids.size, bootstrap, rng) if bootstrap >= 2 else None
        for lo in range(0, len(temps), CHUNK):
            tasks.append(delayed(_curve_chunk)(run.logprobs, temps[lo : lo + CHUNK], inst.scale, G, W))
            where.append((i, lo))
    results = options.workers.run(tasks)
    parts: dict[int, list[Any]] = {}
    for (i, _), res in zip(where, results):
        parts.setdefault(i, []).append(res)
    frames = []
    for i, run in enumerate(runs):
        S, sig, S_se, sig_se = (np.concatenate([p[k] for p in parts[i]], axis=1) for k in range(4))
        inst = run.instrument
        masks = inst.group_masks()
        for g, (name, member) in enumerate(masks if by_group else masks[:1]):
            items = int(member.sum())
            frames.append(pl.DataFrame({
                "model": run.manifest.model, "variant": run.manifest.variant, "group": name, "temperature": temps,
                "S": S[g], "S_se": S_se[g], "sigma_bar": sig[g], "sigma_bar_se": sig_se[g], "R": 1.0 / sig[g],
                "R_se": sig_se[g] / sig[g] ** 2, "personas": run.persona_ids.size, "items": items,
                "imputed_digits": run.imputed, "run_id": run.manifest.run_id,
            }))
    return pl.concat(frames).select(CURVE_COLUMNS)
