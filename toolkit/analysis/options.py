"""How an analysis resamples and where it runs: one typed object instead of the same
parameters repeated through every analysis signature.

Only ``retention`` (which personas a run keeps) changes a point estimate. ``seed`` and the
draw counts change the bootstrap replicates (reproducibly: streams derive from the data and
the seed, never from time);
``jobs``, ``backend``, ``scheduler`` and ``cache`` change nothing but the speed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import ToolkitError
from ..parallel import DEFAULT_BACKEND, check_workers

if TYPE_CHECKING:
    from ..parallel.pool import Workers

CI_METHODS = ("bca", "percentile")
RETENTION = ("family", "run")  # personas valid at all of a model's temperatures, or each run's own


@dataclass(frozen=True)
class AnalysisOptions:
    bootstrap: int = 2000  # persona bootstrap draws (a paired comparison's draws, too)
    rerun_bootstrap: int = 400  # rerun (repetition) bootstrap draws
    seed: int = 0  # user seed, combined with each run's content digest
    jobs: int = 1  # joblib workers
    # where they run (toolkit.parallel.BACKENDS); forkserver needs a script's __main__ guard
    backend: str = DEFAULT_BACKEND
    scheduler: str | None = None  # dask.distributed scheduler address
    ci_level: float = 0.95  # confidence level of intervals
    ci_method: str = "bca"  # bca or percentile
    permutations: int = 2000  # permutation-test draws of a paired comparison
    retention: str = "family"  # which complete personas a run keeps (selection.retained_personas)
    min_shared: float = 0.8  # a comparison is paired only when the runs share this share of their personas
    cache: bool = True  # read and write the store's results cache (analysis/cache.py); False recomputes

    def __post_init__(self) -> None:
        if self.bootstrap < 0 or self.rerun_bootstrap < 0 or self.permutations < 0:
            raise ToolkitError("bootstrap, rerun bootstrap and permutation counts must be >= 0")
        check_workers(self.jobs, self.backend)
        if not 0 < self.ci_level < 1:
            raise ToolkitError(f"the confidence level must be between 0 and 1, not {self.ci_level}")
        if not 0 < self.min_shared <= 1:
            raise ToolkitError(f"the share of personas a paired comparison needs is in (0, 1], not {self.min_shared}")
        if self.retention not in RETENTION:
            raise ToolkitError(f"unknown retention rule {self.retention!r} (choose from {', '.join(RETENTION)})")
        if self.ci_method not in CI_METHODS:
            raise ToolkitError(f"unknown interval method {self.ci_method!r} (choose from {', '.join(CI_METHODS)})")

    def numbers(self) -> dict[str, Any]:
        """The fields that can change a number (all but where the work runs and the cache):
        what a cache key of a whole result holds."""
        return {k: v for k, v in asdict(self).items() if k not in ("jobs", "backend", "scheduler", "cache")}

    def but(self, **changes: Any) -> AnalysisOptions:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @property
    def workers(self) -> Workers:
        from ..parallel.pool import Workers

        return Workers(self.jobs, self.backend, self.scheduler)


DEFAULT = AnalysisOptions()
