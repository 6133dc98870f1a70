"""A seeded generative model of persona answers, with ground truth: runs for benchmarks and for
checking the estimators, never presented as model data.

For persona p and item q the latent mean is ``m_pq = c_q + spread_personas * z_pq`` (c_q the
item's centre, z standard normal); the rating distribution of the cell is a normal of mean
m_pq and standard deviation ``spread_within`` discretised onto the instrument's scale points
(probability of point k proportional to the normal density at k; all mass on the nearest
point when spread_within is 0). Each repetition draws a rating from it; with probability
``invalid_share`` the answer is unparseable (rating -1). The truth reported for a run is
that of its generating distribution: ``true_S`` = mean over items of the (ddof=1) std over
its personas of the cells' exact means, ``true_sigma_bar`` = mean over cells of the cells'
exact standard deviations.

Runs are written like every other run (same segment writer, request keys, manifests and
fingerprints), with endpoint ``simulator`` and provenance ``simulated:...`` on every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .. import __version__
from ..analysis.model import Effect as Effect  # re-exported: simulate_pairs takes one
from ..analysis.model import discretised, pair_distributions, population_truths
from ..errors import ToolkitError
from ..hashing import canonical_json, request_keys, sha256_text
from ..protocol.instrument import Instrument
from ..store import ROW_SCHEMA, Store
from ..store.manifest import new_run

ENDPOINT = "simulator"


@dataclass(frozen=True)
class Spec:
    personas: int = 100
    repetitions: int = 10
    spread_personas: float = 0.8
    spread_within: float = 0.6
    invalid_share: float = 0.0
    temperature: float = 0.7
    variant: str = "simulated"

    def check(self) -> None:
        if self.personas < 2 or self.repetitions < 1:
            raise ToolkitError("a simulated run needs at least 2 personas and 1 repetition")
        if not (self.spread_personas >= 0 and self.spread_within >= 0 and 0 <= self.invalid_share < 1):
            raise ToolkitError("spreads must be >= 0 and the invalid share in [0, 1)")


@dataclass
class Truth:
    """A simulated run's population parameters over its drawn personas: ``true_S`` the spread of
    the cells' exact means (what S_corrected estimates), ``true_sigma_bar`` the cells' exact SDs
    and ``true_R`` its inverse; and, for paired designs, what the published estimators average
    to with the run's n repetitions a cell (``expected_*``: the sample SD of n answers is below
    the population SD, and finite repetitions add to the spread of the means)."""

    run_id: str
    true_S: float
    true_sigma_bar: float
    variant: str = ""
    true_R: float = float("nan")
    expected_S: float = float("nan")  # to first order: sqrt(true spread^2 + mean sigma^2 / n) per item
    expected_sigma_bar: float = float("nan")
    expected_R: float = float("nan")


def cell_distributions(instrument: Instrument, spec: Spec, rng: np.random.Generator) -> np.ndarray:
    """(P, Q, K) rating probabilities of every cell."""
    scale = instrument.scale.astype(np.float64)
    Q = len(instrument.items)
    centre = rng.uniform(scale[0] + 1.0, scale[-1] - 1.0, size=Q)
    latent = centre[None, :] + spec.spread_personas * rng.standard_normal((spec.personas, Q))
    return discretised(latent, spec.spread_within, scale)


@dataclass(frozen=True)
class PairSpec:
    """A paired design for benchmarks: ``personas`` drawn afresh for each pair, both runs on
    ``items`` items whose centres are fixed by ``item_seed`` (part of the generating model), run
    B with ``effect`` applied (`simulate --paired` draws the centres per pair instead)."""

    personas: int = 100
    items: int = 30
    repetitions: int = 10
    spread_personas: float = 0.8
    spread_within: float = 0.6
    effect: Effect = field(default_factory=Effect)
    item_seed: int = 0

    def centres(self, scale: np.ndarray) -> np.ndarray:
        return np.random.default_rng(self.item_seed).uniform(scale[0] + 1.0, scale[-1] - 1.0, size=self.items)

    def distributions(self, scale: np.ndarray, rng: np.random.Generator,
                      personas: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        z = self.spread_personas * rng.standard_normal((personas or self.personas, self.items))
        return pair_distributions(self.centres(scale), z, self.spread_within, self.effect, scale)


def pair_counts(spec: PairSpec, scale: np.ndarray, rng: np.random.Generator,
                personas: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One simulated pair of (P, Q, K) count tensors, row p the same persona in both."""
    probs_a, probs_b = spec.distributions(np.asarray(scale, dtype=np.float64), rng, personas)
    return (rng.multinomial(spec.repetitions, probs_a).astype(np.int64),
            rng.multinomial(spec.repetitions, probs_b).astype(np.int64))


def truth_of(probs: np.ndarray, scale: np.ndarray) -> tuple[float, float]:
    mu = (probs * scale).sum(axis=-1)  # ufunc sums, not a BLAS product: the same bits on every CPU
    sd = np.sqrt(np.maximum((probs * (scale * scale)).sum(axis=-1) - mu * mu, 0.0))
    return float(np.std(mu, axis=0, ddof=1).mean()), float(sd.mean())


def simulate_run(store: Store, instrument: Instrument, model: str, spec: Spec, seed: int) -> Truth:
    """Draw one run and commit it to the store; return its ground truth."""
    spec.check()
    params = _params(spec, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(sha256_text(canonical_json(params))[:16], 16)]))
    probs = cell_distributions(instrument, spec, rng)
    run_id = _commit(store, instrument, model, spec, params, _draw(probs, spec, instrument, rng),
                     personas=_population(f"simulated population of {model}", params))
    S, sigma_bar = truth_of(probs, instrument.scale.astype(np.float64))
    return Truth(run_id, S, sigma_bar)


def _params(spec: Spec, seed: int) -> dict[str, Any]:
    return {"seed": seed, "personas": spec.personas, "repetitions": spec.repetitions,
            "spread_personas": spec.spread_personas, "spread_within": spec.spread_within,
            "invalid_share": spec.invalid_share}


def _population(name: str, params: dict[str, Any]) -> dict[str, str]:
    """The persona set a simulated run records: its own draw of personas (the two runs of a pair
    share one), so that `compare --paired` pairs exactly the runs that share their personas."""
    return {"name": name, "digest": sha256_text("simulated population:" + canonical_json(params))}


def _draw(probs: np.ndarray, spec: Spec, instrument: Instrument, rng: np.random.Generator) -> np.ndarray:
    """(P, Q, n) ratings drawn from the cells' distributions; -1 for an unparseable answer."""
    P, Q, K = probs.shape
    n = spec.repetitions
    cdf = np.cumsum(probs, axis=2)
    u = rng.random((P, Q, n))
    k = np.minimum((u[..., None] >= cdf[:, :, None, :-1]).sum(axis=3), K - 1)  # inverse CDF
    ratings = (instrument.scale_min + k).astype(np.int64)
    invalid = rng.random((P, Q, n)) < spec.invalid_share
    ratings[invalid] = -1
    return np.asarray(ratings)


def _commit(store: Store, instrument: Instrument, model: str, spec: Spec, params: dict[str, Any],
            ratings: np.ndarray, personas: dict[str, str] | None = None) -> str:
    """Write drawn ratings as a run (``personas``: the simulated population's name and digest,
    which pairing compares); its id."""
    P, Q, n = ratings.shape
    protocol: dict[str, Any] = {"origin": "simulation", "endpoint": ENDPOINT, "simulation": params}
    if personas is not None:
        protocol["personas"] = personas
    try:
        manifest = new_run(model=model, variant=spec.variant, temperature=spec.temperature, mode="persona",
                           instrument=instrument, protocol=protocol)
    except ValueError as exc:
        raise ToolkitError(str(exc)) from None
    run_id = manifest.run_id
    persona = np.repeat(np.arange(P), Q * n)
    items = np.tile(np.repeat(np.asarray(instrument.item_ids), n), P)
    reps = np.tile(np.arange(1, n + 1), P * Q)
    sim = canonical_json(params)
    head = (f'{{"endpoint":"{ENDPOINT}","instrument":"{instrument.digest}","item_id":')
    mid = f',"mode":"persona","model":{json.dumps(model, ensure_ascii=False)},"persona_id":'
    tail = f',"simulation":{sim},"temperature":{json.dumps(float(spec.temperature))}}}'
    requests = [f"{head}{q}{mid}{p},\"repetition\":{r}{tail}" for p, q, r in zip(persona.tolist(), items.tolist(),
                                                                                 reps.tolist())]
    flat = ratings.ravel()
    response = np.where(flat >= 0, flat.astype(str), "unparseable")
    table = pa.table({
        "run_id": pa.array([run_id] * len(flat)), "instrument": pa.array([instrument.digest] * len(flat)),
        "persona_id": pa.array(persona, pa.int32()), "item_id": pa.array(items, pa.int32()),
        "repetition": pa.array(reps, pa.int32()),
        "request_key": request_keys(pl.Series(requests)).to_arrow(), "request": pa.array(requests),
        "response": pa.array(response.tolist()), "rating": pa.array(flat, pa.int16()),
        "failures": pa.array(np.zeros(len(flat), np.int16)),
        "provenance": pa.array([f"simulated:toolkit-{__version__}"] * len(flat)),
    })
    full = pa.table({f.name: table[f.name] if f.name in table.column_names else pa.nulls(len(flat), f.type)
                     for f in ROW_SCHEMA})
    store.put_instrument(instrument)
    existing = store.get_run(run_id)
    if existing is not None and existing.protocol != manifest.protocol:
        raise ToolkitError(f"run {run_id} already exists with other parameters; use another --model-prefix")
    if existing is None:
        store.commit_run(manifest, [full])
    return run_id


def simulate(store: Store, instrument: Instrument, *, runs: int, spec: Spec, seed: int = 0,
             model_prefix: str = "sim") -> list[Truth]:
    """``runs`` independent runs (models ``<prefix>-0000``, ...), each seeded from (seed, index)."""
    width = max(4, len(str(runs - 1)))
    return [simulate_run(store, instrument, f"{model_prefix}-{i:0{width}d}", spec, seed * 1_000_003 + i)
            for i in range(runs)]


def simulate_pairs(store: Store, instrument: Instrument, *, pairs: int, spec: Spec, effect: Effect,
                   seed: int = 0, model_prefix: str = "sim") -> list[Truth]:
    """``pairs`` paired designs (models ``<prefix>-0000``, ...): for each, a ``base`` run and an
    ``effect.variant`` run answered by the same simulated personas (same persona set digest, so
    `compare --paired` pairs them) on the same items, the effect applied to the second. Each
    run's truth says what the estimators should find, and what they average to at n."""
    from ..analysis.metrics import instrument_groups

    spec.check()
    effect.check()
    scale = instrument.scale.astype(np.float64)
    G = instrument_groups(instrument)
    width = max(4, len(str(pairs - 1)))
    out: list[Truth] = []
    for i in range(pairs):
        pair_seed = seed * 1_000_003 + i
        params = {**_params(spec, pair_seed), "effect": {"shift": effect.shift, "persona_factor": effect.persona_factor,
                                                        "within_factor": effect.within_factor}}
        digest = sha256_text(canonical_json(params))
        rng = np.random.default_rng(np.random.SeedSequence([pair_seed, int(digest[:16], 16)]))
        centre = rng.uniform(scale[0] + 1.0, scale[-1] - 1.0, size=len(instrument.items))
        z = spec.spread_personas * rng.standard_normal((spec.personas, len(instrument.items)))
        population = _population(f"simulated population of {model_prefix}-{i:0{width}d}", params)
        model = f"{model_prefix}-{i:0{width}d}"
        for variant, probs, within in zip(("base", effect.variant),
                                          pair_distributions(centre, z, spec.spread_within, effect, scale),
                                          (spec.spread_within, spec.spread_within * effect.within_factor)):
            run_spec = Spec(**{**spec.__dict__, "variant": variant, "spread_within": within})
            run_id = _commit(store, instrument, model, run_spec, {**params, "variant": variant},
                             _draw(probs, run_spec, instrument, rng), personas=population)
            S, sigma_bar = truth_of(probs, scale)
            exp_S, exp_sigma, exp_R, _ = truth_metrics(probs, spec.repetitions, instrument.scale, G.of_items, G.n)[:, 0]
            out.append(Truth(run_id, S, sigma_bar, variant, 1.0 / sigma_bar, float(exp_S), float(exp_sigma),
                             float(exp_R)))
    return out


def expected_sd(probs: np.ndarray, n: int, scale: np.ndarray) -> np.ndarray:
    """E[sample sd (ddof=1) of n ratings] for cells with these rating probabilities, exactly:
    summed over every outcome (count vector) with its multinomial probability
    n!/prod(c_k!) * prod(p_k**c_k). The powers are repeated products and the coefficient an exact
    integer, so no exp, log or BLAS kernel (each differs by CPU) touches the result."""
    from math import factorial

    from ..analysis.metrics import compositions, sample_sd

    K = probs.shape[-1]
    comp = compositions(n, K)  # (M, K)
    s1, s2 = comp @ scale.astype(np.int64), comp @ (scale.astype(np.int64) ** 2)
    sd = sample_sd(np.full(len(comp), n), s1, s2)
    coef = np.array([factorial(n) // np.prod([factorial(c) for c in row], dtype=object) for row in comp.tolist()],
                    dtype=np.float64)  # exact below 2**53 for every n the simulator takes
    flat = probs.reshape(-1, K)
    out = np.empty(len(flat))
    chunk = max(1, (1 << 21) // len(comp))  # about 16 MB a temporary
    for lo in range(0, len(flat), chunk):
        p = flat[lo : lo + chunk]
        powers = np.empty(p.shape + (n + 1,))
        powers[..., 0] = 1.0
        for c in range(1, n + 1):
            powers[..., c] = powers[..., c - 1] * p
        pmf = np.broadcast_to(coef, (len(p), len(comp))).copy()
        for k in range(K):
            pmf *= powers[:, k, comp[:, k]]
        out[lo : lo + chunk] = (pmf * sd).sum(axis=-1)
    return out.reshape(probs.shape[:-1])


def truth_metrics(probs: np.ndarray, n: int, scale: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """What S, sigma_bar, R and S_corrected estimate for a population of personas with these cell
    distributions and n repetitions a cell, (4, G): S from the spread of the cells' sample means
    (true spread plus sigma^2/n), sigma_bar the mean expected sample sd, S_corrected the spread of
    the cells' true means."""
    from ..analysis.metrics import ItemGroups

    G = ItemGroups(groups, n_groups)
    S, S_corrected, _ = population_truths(probs, n, scale, G)
    sigma_bar = G.means(expected_sd(probs, n, scale).mean(axis=0))
    return np.stack([S, sigma_bar, 1.0 / sigma_bar, S_corrected])


def pair_truth(spec: PairSpec, scale: np.ndarray, groups: np.ndarray, n_groups: int, personas: int = 20_000,
               seed: int = 0) -> np.ndarray:
    """The generating model's true B - A of S, sigma_bar, R and S_corrected per group, (4, G),
    over one large draw of personas shared by A and B (so no change gives exactly 0)."""
    scale = np.asarray(scale)
    probs_a, probs_b = spec.distributions(scale.astype(np.float64), np.random.default_rng(seed), personas)
    n = spec.repetitions
    after = truth_metrics(probs_b, n, scale, groups, n_groups)
    return np.asarray(after - truth_metrics(probs_a, n, scale, groups, n_groups))
