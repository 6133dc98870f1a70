"""The same scoring on a real dask.distributed cluster (two worker processes on 127.0.0.1),
through joblib's dask backend: bit-identical to --jobs 1. Workers read the store by path."""

from __future__ import annotations

import pytest

from conftest import require_extra, run_cli
from toolkit.ingest.simulate import Spec, simulate
from toolkit.protocol.instrument import load_instrument
from toolkit.store import Store


@pytest.fixture(scope="module")
def cluster():
    require_extra("dask", "dask.distributed")
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c.scheduler_address


def test_dask_cluster_gives_the_same_bytes_as_one_job(cluster, tmp_path):
    store = Store(tmp_path / "s")
    simulate(store, load_instrument(), runs=6, spec=Spec(personas=15, repetitions=4), seed=4)
    common = ["--by", "group", "--bootstrap", "200", "--rerun-bootstrap", "50", "--format", "csv",
              "--store", str(store.root)]
    local = run_cli("analyze", *common)
    remote = run_cli("analyze", *common, "--parallel-backend", "dask", "--scheduler", cluster, "--jobs", "2")
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert len(local.stdout.splitlines()) == 1 + 6 * 6


def test_dask_without_a_scheduler_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "s")
    simulate(store, load_instrument(), runs=1, spec=Spec(personas=5, repetitions=2), seed=1)
    res = run_cli("analyze", "--backend", "dask", "--store", str(store.root))  # the old option name still works
    assert res.returncode == 2 and "--scheduler" in res.stderr
    assert "note: --backend is now --parallel-backend" in res.stderr
