"""Bit-identical output on any CPU, proved three ways.

1. **Same bytes under other machine settings.** Every pipeline whose numbers the toolkit prints,
   stores or hashes (analyze, compare with paired BCa intervals, curves, profiles, diagnose,
   power, simulate, the report's pages, the claims audit) is re-run in a subprocess with
   numpy's optional SIMD kernels switched off (NPY_DISABLE_CPU_FEATURES), with Arrow's SIMD
   off (ARROW_USER_SIMD_LEVEL=NONE), with one BLAS thread and with worker processes, and must
   print the same bytes.
2. **A runtime guard that sees kernels this CPU lacks.** The same pipelines run once more with
   numpy's transcendental kernels (power, exp, log, trigonometric, hyperbolic) made fatal in
   every process (tests/kernel_guard): a call anywhere on the path fails the test on any CPU,
   including one without the AVX-512 kernels whose last bits differ.
3. **A static rule** (tests/test_numeric_rules.py) over the source.

OPENBLAS_CORETYPE is deliberately not touched: on some processors it must stay as the machine
sets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

GUARD_DIR = ROOT / "tests" / "kernel_guard"
pytestmark = pytest.mark.e2e  # every pipeline in fresh processes under other CPUs' settings

PIPELINES = textwrap.dedent("""
    import hashlib
    import os
    import sys
    import tempfile
    from pathlib import Path

    from toolkit.analysis import analyze, compare, compare_summary, curves, profiles
    from toolkit.analysis.api import paired_compare
    from toolkit.analysis.diagnose import diagnose
    from toolkit.analysis.options import AnalysisOptions
    from toolkit.analysis.power import power
    from toolkit.audit.run import audit_store
    from toolkit.protocol.instrument import load_instrument
    from toolkit.report import format_frame
    from toolkit.report.site import gather, write_site
    from toolkit.ingest.simulate import Spec, simulate
    from toolkit.store import Selection, Store

    em, logit, jobs = Store(sys.argv[1]), Store(sys.argv[2]), int(sys.argv[3])
    embedded, claims = Store(sys.argv[4]), sys.argv[5]
    backend = os.environ.get("BACKEND", "loky")
    out = []
    metrics = analyze(em, by_group=True,
                      options=AnalysisOptions(bootstrap=500, rerun_bootstrap=200, jobs=jobs, backend=backend)).frame
    out.append(format_frame(metrics, "csv"))
    comparison = compare(metrics).frame
    out.append(format_frame(comparison, "csv"))
    out.append(format_frame(compare_summary(comparison), "csv"))
    out.append(format_frame(profiles(em).frame, "csv"))
    parallel = AnalysisOptions(jobs=jobs, backend=backend)
    paired = parallel.but(bootstrap=400, permutations=400)
    out.append(format_frame(paired_compare(em, by_group=True, options=paired).frame, "csv"))
    out.append(format_frame(paired_compare(em, options=paired.but(ci_method="percentile"), unpaired=True).frame, "csv"))
    out.append(format_frame(curves(logit, points=9, by_group=True, options=parallel).frame, "csv"))
    out.append(format_frame(analyze(embedded, by_group=True, options=parallel).frame, "csv"))
    out.append(format_frame(curves(embedded, points=5, by_group=True).frame, "csv"))
    out.append(format_frame(diagnose(em, Selection(model="qwen3-235b"), by="persona").frame, "csv"))
    out.append(format_frame(diagnose(em, Selection(model="gpt-4o"), by="item").frame, "csv"))
    out.append(format_frame(power(em, Selection(model="gpt-4o", variant="base"), metric="S", sims=40), "csv"))
    out.append(format_frame(power(em, Selection(model="gpt-4o", variant="base"), metric="R", sims=40), "csv"))
    with tempfile.TemporaryDirectory() as tmp:
        sim = Store(Path(tmp) / "sim")
        truths = simulate(sim, load_instrument("mfq30"), runs=2, seed=3,
                          spec=Spec(personas=20, repetitions=3, invalid_share=0.1))
        out.append(repr([(t.run_id, t.true_S, t.true_sigma_bar) for t in truths]))
        out.append(format_frame(analyze(sim, by_group=True, options=parallel).frame, "csv"))
        site = write_site(gather(em, Selection(model=["gpt-4o", "gpt-4o-misaligned", "gpt-4o-secure"]),
                                 options=parallel.but(bootstrap=200, rerun_bootstrap=100, permutations=200)),
                          Path(tmp) / "site", figure_format="svg")
        for page in sorted(site.rglob("*.html")):
            out.append(f"{page.relative_to(site)} {hashlib.sha256(page.read_bytes()).hexdigest()}")
    result = audit_store(em, claims, options=parallel.but(bootstrap=300, rerun_bootstrap=100, permutations=200))
    out.append(format_frame(result.table, "csv"))
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
    settings.append(("Arrow without SIMD", {"ARROW_USER_SIMD_LEVEL": "NONE"}))
    settings.append(("one BLAS thread, two loky workers", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                                                            "JOBS": "2"}))
    settings.append(("two workers forked from the fork server", {"JOBS": "2", "BACKEND": "forkserver"}))
    return settings


GUARDED = {"TOOLKIT_KERNEL_GUARD": "1", "PYTHONPATH": str(GUARD_DIR), "JOBS": "2", "BACKEND": "forkserver"}


def _run(em_store, logit_store, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_NUM_THREADS", "BACKEND", "ARROW_USER_SIMD_LEVEL",
                        "TOOLKIT_KERNEL_GUARD")}
    jobs = extra_env.pop("JOBS", "1")
    env.update(extra_env)
    claims = ROOT / "toolkit" / "data" / "claims" / "costa2026-em.json"
    return subprocess.run([sys.executable, "-c", PIPELINES, str(em_store.root), str(logit_store.root), jobs,
                           str(ROOT / "parquet"), str(claims)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=900)


@pytest.fixture(scope="module")
def reference(em_store, logit_store) -> str:
    res = _run(em_store, logit_store, {})
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") > 300  # the pipelines really printed their tables
    assert res.stdout.count(".html ") >= 5  # and the report wrote its pages
    return res.stdout


@pytest.mark.parametrize("name", [name for name, _ in _settings()])
def test_same_bytes_under_other_machine_settings(em_store, logit_store, reference, name):
    res = _run(em_store, logit_store, dict(dict(_settings())[name]))
    assert res.returncode == 0, res.stderr
    assert res.stdout == reference, name


def test_no_dispatched_transcendental_kernel_on_any_printed_path(em_store, logit_store, reference):
    """The guard ends any process that reaches a forbidden kernel (exit 97, naming the line)."""
    res = _run(em_store, logit_store, dict(GUARDED))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == reference


def test_the_guard_catches_a_forbidden_call_in_a_scratch_module(tmp_path):
    """Proof that the guard is armed in every process: a scratch module's ``x ** 1.5`` and
    ``np.exp`` end it with the guard's exit code and name the offending line, also inside a
    worker process; scalar arithmetic and squares pass."""
    (tmp_path / "scratch.py").write_text(textwrap.dedent("""
        import numpy as np

        def fine(x):
            return x * x, x ** 2, np.sqrt(x), np.float64(2.0) ** 1.5

        def power(x):
            return x ** 1.5

        def exponential(x):
            return np.exp(-x)
    """))
    env = {**os.environ, "TOOLKIT_KERNEL_GUARD": "1", "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(tmp_path)])}
    for fn, line in (("power", 8), ("exponential", 11)):
        code = f"import numpy as np, scratch; scratch.fine(np.arange(3.0)); scratch.{fn}(np.arange(3.0))"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 97, res.stderr
        assert f"scratch.py:{line}" in res.stderr.splitlines()[0]
    worker = ("from concurrent.futures import ProcessPoolExecutor\n"
              "import multiprocessing as mp, numpy as np, scratch\n"
              "if __name__ == '__main__':\n"
              "    with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as ex:\n"
              "        ex.submit(scratch.exponential, np.arange(3.0)).result()\n")
    (tmp_path / "main.py").write_text(worker)
    res = subprocess.run([sys.executable, str(tmp_path / "main.py")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode != 0 and "kernel guard: np.exp" in res.stderr and "scratch.py:11" in res.stderr


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

