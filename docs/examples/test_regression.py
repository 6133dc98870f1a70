"""Regression tests for your own model's S and R: copy this file into your repository's tests/.

It pins two things, and fails when either moves:
- every number of `analyze --by group` on your store, as a syrupy snapshot (full precision: the
  toolkit gives the same bytes on any machine for the same store);
- the claims you print (a claims file, e.g. drafted with `toolkit claims draft`), checked as
  `toolkit check` checks them.

Needs `pip install persona-moral-toolkit pytest syrupy`. Set TOOLKIT_STORE to your store folder
or bundle and TOOLKIT_CLAIMS to your claims file; the first run is
`pytest --snapshot-update` (commit the snapshot it writes), every later run is `pytest`.
"""

from __future__ import annotations

import os

import polars as pl

from toolkit.analysis import analyze
from toolkit.audit.report import check_lines
from toolkit.audit.run import audit_store
from toolkit.store import Store, open_store


def _store() -> Store:
    return open_store(os.environ.get("TOOLKIT_STORE", "parquet"))  # a folder or a bundle


def test_metrics_match_the_snapshot(snapshot):
    assert analyze(_store(), by_group=True).frame.write_csv() == snapshot


def test_printed_claims_hold():
    result = audit_store(_store(), os.environ.get("TOOLKIT_CLAIMS", "claims.json"))
    failing = result.table.filter(pl.col("status") == "FAIL")
    assert failing.is_empty(), "\n" + check_lines(result)
