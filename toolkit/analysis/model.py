"""The generating model of simulated answers, shared by `toolkit simulate` (which writes runs
from it) and `toolkit power --simulate` (which plants a change in a run's fitted copy of it).

For persona p and item q the latent mean is ``m_pq = c_q + z_pq`` (c_q the item's centre, z_pq
the persona's normal deviation); a cell's rating distribution is a normal of mean m_pq and SD
``spread_within`` put onto the scale points. An ``Effect`` turns one run into its changed twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ToolkitError
from ..numerics import exp
from .metrics import ItemGroups


@dataclass(frozen=True)
class Effect:
    """What differs between the two runs of a simulated pair, which share their personas (the same
    latent draws) and item centres: every latent mean moves by ``shift`` scale points, the
    personas' spread around the item centres is multiplied by ``persona_factor`` and the
    within-cell spread by ``within_factor`` (0, 1, 1: no effect)."""

    shift: float = 0.0
    persona_factor: float = 1.0
    within_factor: float = 1.0
    variant: str = "effect"

    def check(self) -> None:
        if not (self.persona_factor >= 0 and self.within_factor >= 0) or self.variant in ("", "base"):
            raise ToolkitError("effect factors must be >= 0, and the effect variant a name other than 'base'")


def discretised(latent: np.ndarray, spread_within: float, scale: np.ndarray) -> np.ndarray:
    """Rating probabilities of cells with these latent means: a normal of sd ``spread_within``
    put onto the scale points (all mass on the nearest point when the spread is 0)."""
    if spread_within == 0:
        nearest = np.abs(latent[..., None] - scale).argmin(axis=-1)
        return np.asarray(np.eye(len(scale))[nearest])
    z = (scale - latent[..., None]) / spread_within
    dens = exp(-0.5 * (z * z))  # the portable exp: np.exp's last bits differ by CPU
    return np.asarray(dens / dens.sum(axis=-1, keepdims=True))


def pair_distributions(centre: np.ndarray, z: np.ndarray, spread_within: float, effect: Effect,
                       scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a paired design, (P, Q, K) each: personas whose latent means sit ``z``
    (already scaled by the persona spread) from the items' centres answer run A; run B is the
    same personas with ``effect`` applied. The one definition `simulate --paired`, the
    coverage benchmark and the truths share."""
    probs_a = discretised(centre[None, :] + z, spread_within, scale)
    probs_b = discretised(centre[None, :] + effect.shift + effect.persona_factor * z,
                          spread_within * effect.within_factor, scale)
    return probs_a, probs_b


def population_truths(probs: np.ndarray, n: int, scale: np.ndarray, G: ItemGroups) -> np.ndarray:
    """(3, G) population values of personas with these cell distributions: S with n repetitions a
    cell (the spread of the cells' sample means: true spread plus sigma^2/n), S_corrected (the
    spread of the cells' true means) and the mean population SD of a cell. The one definition
    the simulator's truths, the coverage benchmark and `power --simulate` share."""
    s = np.asarray(scale, dtype=np.float64)
    m = (probs * s).sum(axis=-1)
    v = (probs * (s * s)).sum(axis=-1) - m * m
    spread = np.var(m, axis=0, ddof=1)
    return np.stack([G.means(np.sqrt(spread + v.mean(axis=0) / n)), G.means(np.sqrt(spread)),
                     G.means(np.sqrt(np.maximum(v, 0.0)).mean(axis=0))])
