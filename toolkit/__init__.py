"""Offline cached-replay toolkit for persona moral metrics.

Data flow (one sub-package per stage):
``instrument`` (what is asked) -> ``recorder`` / ``importers`` (how answers arrive)
-> ``store`` (immutable content-addressed Parquet segments + run manifests)
-> ``analysis`` (S, sigma_bar, R, profiles, curves; offline) -> ``report`` (tables, figures).
"""

__version__ = "0.1.0"
