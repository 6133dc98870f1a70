"""The compiled kernels (numba, the [fast] extra) give numpy's bits, and are used only where
they pay for their import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require_extra
from toolkit.analysis import kernels
from toolkit.analysis.metrics import cell_moments, rerun_sums, resample_weights


@pytest.fixture
def compiled():
    require_extra("fast", "numba")
    kernels.set_enabled(True)
    assert kernels.rerun_block_sums() is not None
    yield
    kernels.set_enabled(False)


def _both(make):
    """``make()`` with the kernels and without them."""
    kernels.set_enabled(True)
    with_kernel = make()
    kernels.set_enabled(False)
    return with_kernel, make()


def _counts(rng, P, Q, K, n_max, missing=0.0):
    """Random count tensors: cells of 1..n_max answers on K points, some cells single-valued,
    some with answers missing (n differs between cells: many sampler batches)."""
    n = rng.integers(1, n_max + 1, size=(P, Q))
    n[rng.random((P, Q)) < missing] = 0
    probs = rng.dirichlet(np.full(K, 0.4), size=(P, Q))
    counts = np.stack([[rng.multinomial(n[p, q], probs[p, q]) for q in range(Q)] for p in range(P)])
    return counts.astype(np.int64)


@pytest.mark.parametrize(("P", "Q", "K", "n_max", "draws", "seed"), [
    (100, 30, 6, 10, 400, 0),  # the protocol: n = 10 on six points, an even number of draws
    (37, 12, 5, 12, 7, 1),  # an odd number of draws: the kernel's last draw goes alone
    (20, 7, 6, 13, 1, 2),  # n = 13 cells take the direct sampler (numpy in both), one draw
    (60, 30, 6, 4, 33, 3),  # small n: many batches, every pattern table tiny
])
def test_rerun_sums_are_bit_identical_with_and_without_the_kernel(compiled, P, Q, K, n_max, draws, seed):
    rng = np.random.default_rng(seed)
    counts = _counts(rng, P, Q, K, n_max, missing=0.05)
    _, mu, sigma = cell_moments(counts, np.arange(K))
    a, b = _both(lambda: rerun_sums(counts, np.arange(K), mu, sigma, draws, np.random.default_rng(seed)))
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_persona_multiplicities_are_identical(compiled):
    for P, draws in [(100, 2000), (3, 5), (250, 17)]:
        a, b = _both(lambda P=P, draws=draws: resample_weights(P, draws, np.random.default_rng(P)))
        assert a.dtype == b.dtype == np.float64 and a.tobytes() == b.tobytes()
        assert (a.sum(axis=1) == P).all()


def test_analyze_prints_the_same_csv_with_the_kernel(compiled, tmp_path, monkeypatch):
    """End to end in one process: an analysis large enough for the kernel (MIN_RUNS lowered so
    that the test stays small) prints byte for byte what numpy prints."""
    from toolkit.analysis.api import analyze
    from toolkit.analysis.options import AnalysisOptions
    from toolkit.ingest.simulate import Spec, simulate
    from toolkit.protocol.instrument import load_instrument
    from toolkit.store import Store

    store = Store(tmp_path / "store")
    simulate(store, load_instrument(), runs=3, spec=Spec(personas=30, repetitions=5), seed=9)
    options = AnalysisOptions(bootstrap=200, rerun_bootstrap=41, cache=False)
    monkeypatch.setattr(kernels, "MIN_RUNS", 3)
    fast = analyze(store, by_group=True, options=options).frame.write_csv()
    assert kernels.rerun_block_sums() is not None  # the analysis asked for the kernel
    monkeypatch.setattr(kernels, "MIN_RUNS", 4)
    plain = analyze(store, by_group=True, options=options).frame.write_csv()
    assert kernels.rerun_block_sums() is None
    assert fast == plain


def test_the_kernel_is_wanted_only_for_many_runs():
    assert not kernels.worth(kernels.MIN_RUNS - 1) and kernels.worth(kernels.MIN_RUNS)
    kernels.set_enabled(False)
    assert kernels.rerun_block_sums() is None and kernels.multiplicities() is None


SERVER_SCRIPT = '''
import os, sys
from pathlib import Path


def facts(_):
    from toolkit.analysis import kernels
    parent = os.getppid()
    threads = int(next(line.split()[1] for line in Path(f"/proc/{parent}/status").read_text().splitlines()
                       if line.startswith("Threads:")))
    loaded = "numba" in sys.modules and kernels._kernels is not None  # inherited, not loaded here
    return parent, threads, loaded


if __name__ == "__main__":
    from joblib import delayed
    from toolkit.parallel.forkserver import fork_server
    from toolkit.parallel.pool import Workers

    fork_server(trusted_main=True, kernels=True)
    print(Workers(jobs=2, backend="forkserver").run([delayed(facts)(i) for i in range(4)]))
'''


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads thread counts from /proc (Linux)")
def test_a_fork_server_asked_for_the_kernels_loads_them_and_stays_single_threaded(tmp_path):
    """Many runs: the server loads numba's kernels once, and forking from it stays safe."""
    require_extra("fast", "numba")
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    facts = ast.literal_eval(done.stdout.strip())
    assert len({parent for parent, _, _ in facts}) == 1
    assert all(threads == 1 and loaded for _, threads, loaded in facts), facts


def test_the_cli_asks_the_server_for_the_kernels_by_the_store_size(tmp_path, monkeypatch):
    from toolkit.cli.options import _many_runs
    from toolkit.ingest.simulate import Spec, simulate
    from toolkit.protocol.instrument import load_instrument
    from toolkit.store import Store

    require_extra("fast", "numba")
    store = Store(tmp_path / "store")
    simulate(store, load_instrument(), runs=4, spec=Spec(personas=5, repetitions=2), seed=1)
    monkeypatch.setattr(kernels, "MIN_RUNS", 2)
    assert _many_runs(str(store.root), 2) and not _many_runs(str(store.root), 4)  # 2 runs a worker, then 1
    assert not _many_runs(str(tmp_path / "nowhere"), 1)  # the command itself reports a missing store


def test_a_kernel_numba_cannot_compile_leaves_the_numpy_path(monkeypatch):
    """Another numba's typing rules must not stop an analysis: the kernels are then off."""
    require_extra("fast", "numba")

    def untypable(words, buckets, base, bound, stats, items, acc):  # an object numba cannot type
        acc[0, 0, 0] = len({object(): words})

    monkeypatch.setattr(kernels, "_block_sums", untypable)
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels, "_kernels", None)
    kernels.set_enabled(True)
    try:
        assert kernels.rerun_block_sums() is None and kernels.multiplicities() is None
    finally:
        kernels.set_enabled(False)
