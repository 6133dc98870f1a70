"""Bit-identical output on any CPU: the snapshot pipelines re-run in subprocesses with numpy's
optional SIMD code paths switched off (NPY_DISABLE_CPU_FEATURES) and with one BLAS thread
instead of several, and must print the same bytes.

What this proves: no printed number depends on which SIMD kernels numpy dispatches to on this
machine, on the BLAS thread count, or on the worker count. Together with exact integer BLAS
products (tests/test_numerics.py) it is the evidence behind the README's guarantee of
bit-identical results across x86-64 and arm64 machines. OPENBLAS_CORETYPE is deliberately not
touched here: on some processors it must stay as the machine sets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

PIPELINES = textwrap.dedent("""
    import os
    import sys
    from toolkit.analysis import analyze, compare, compare_summary, curves, profiles
    from toolkit.analysis.api import paired_compare
    from toolkit.analysis.options import AnalysisOptions
    from toolkit.report import format_frame
    from toolkit.store import Store

    em, logit, jobs = Store(sys.argv[1]), Store(sys.argv[2]), int(sys.argv[3])
    backend = os.environ.get("BACKEND", "loky") if jobs > 1 else None
    out = []
    metrics = analyze(em, by_group=True,
                      options=AnalysisOptions(bootstrap=500, rerun_bootstrap=200, jobs=jobs, backend=backend))
    out.append(format_frame(metrics, "csv"))
    comparison = compare(metrics)
    out.append(format_frame(comparison, "csv"))
    out.append(format_frame(compare_summary(comparison), "csv"))
    out.append(format_frame(profiles(em), "csv"))
    parallel = AnalysisOptions(jobs=jobs, backend=backend)
    paired = parallel.but(bootstrap=400, permutations=400)
    out.append(format_frame(paired_compare(em, by_group=True, options=paired), "csv"))
    out.append(format_frame(paired_compare(em, options=paired.but(ci_method="percentile"), unpaired=True), "csv"))
    out.append(format_frame(curves(logit, points=9, by_group=True, options=parallel), "csv"))
    embedded = Store(sys.argv[4])
    out.append(format_frame(analyze(embedded, by_group=True, options=parallel), "csv"))
    out.append(format_frame(curves(embedded, points=5, by_group=True), "csv"))
    sys.stdout.write("\\n".join(out))
""")


def _dispatch_features() -> list[str]:
    """numpy's optional (runtime-dispatched) CPU features on this build, best last."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    return list(__cpu_dispatch__)


def _settings() -> list[tuple[str, dict[str, str]]]:
    feats = _dispatch_features()
    settings = [("baseline SIMD only", {"NPY_DISABLE_CPU_FEATURES": " ".join(feats)})]
    if len(feats) > 1:  # e.g. x86-64: keep AVX2 but not AVX-512
        settings.append(("without the widest SIMD", {"NPY_DISABLE_CPU_FEATURES": " ".join(feats[1:])}))
    settings.append(("one BLAS thread, two loky workers", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                                                            "JOBS": "2"}))
    settings.append(("two workers forked from the fork server", {"JOBS": "2", "BACKEND": "forkserver"}))
    return settings


def _run(em_store, logit_store, extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_NUM_THREADS", "BACKEND")}
    jobs = extra_env.pop("JOBS", "1")
    env.update(extra_env)
    res = subprocess.run([sys.executable, "-c", PIPELINES, str(em_store.root), str(logit_store.root), jobs,
                          str(ROOT / "parquet")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_same_bytes_without_simd_paths_and_with_other_thread_counts(em_store, logit_store):
    reference = _run(em_store, logit_store, {})
    assert reference.count("\n") > 100  # the pipelines really printed their tables
    for name, env in _settings():
        assert _run(em_store, logit_store, dict(env)) == reference, name


CANARY = ("import numpy as np, hashlib; x = np.linspace(-20, 20, 100001); "
          "print(hashlib.sha256(np.tanh(x).tobytes()).hexdigest())")


def test_the_cpu_feature_mask_really_changes_numpy_code_paths():
    """Guard against a mask that silently does nothing: on x86-64 with AVX2, numpy's tanh has a
    SIMD kernel whose last bits differ from the baseline one, so masking must change them."""
    feats = _dispatch_features()
    from numpy._core._multiarray_umath import __cpu_features__

    if not (__cpu_features__.get("AVX2") and "X86_V3" in feats):
        pytest.skip("the canary is calibrated for x86-64 machines with AVX2")

    def digest(mask: str) -> str:
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": mask}
        return subprocess.run([sys.executable, "-c", CANARY], capture_output=True, text=True, env=env,
                              check=True).stdout

    assert digest("") != digest(" ".join(feats))
