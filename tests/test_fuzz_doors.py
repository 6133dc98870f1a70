"""Random hostile inputs at three doors: claims files, bundles and Inspect logs, each mutated
hundreds of times (JSON structure and raw bytes) and fed to its command. Every run must end in
exit 0, 1 or 2 with at most one line on stderr: never an internal error (exit 3), never a
traceback, and never a PASS that a hand check of the claim says is wrong.

The commands run in-process through click's runner (the same code as the CLI, without a
Python start per run); the mutations are drawn from a fixed seed, so a failure reproduces.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import require_extra, run_cli

POOL = [None, True, False, 0, -1, 1.0, 0.5, 1e308, 10**20, -1e-300, "", "x", "nan", "inf", "1e999", "0.5",
        [], {}, [1, "a"], {"k": None}, "\u0000", "é" * 50]


def mutate_json(doc, rng: random.Random):
    """One structural change somewhere in ``doc`` (a copy): a value replaced by one of another
    kind, a key deleted or added, a list emptied or duplicated, or a deep nest."""
    doc = json.loads(json.dumps(doc))
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node[:20]):
                walk(v, path + [i])

    walk(doc, [])
    path = rng.choice(paths[1:] or paths)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1] if path else None
    kind = rng.randrange(5)
    if key is None:
        return rng.choice(POOL)
    if kind == 0 and isinstance(parent, dict):
        del parent[key]
    elif kind == 1 and isinstance(parent, dict):
        parent[f"extra{rng.randrange(9)}"] = rng.choice(POOL)
    elif kind == 2:
        parent[key] = "DEEP"
    else:
        parent[key] = rng.choice(POOL)
    return doc


def dump(doc) -> bytes:
    text = json.dumps(doc, allow_nan=True)
    return text.replace('"DEEP"', "[" * 3000 + "]" * 3000).encode()


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.randrange(3)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 1:
        del out[rng.randrange(len(out)):]
    else:
        at = rng.randrange(len(out))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(out)


def invoke(*args: str):
    from cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) <= 1 + ("check:" in result.stderr), (args, result.stderr)
    return result


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    store = tmp_path_factory.mktemp("fuzz") / "store"
    assert run_cli("simulate", "--runs", "2", "--persona-count", "5", "--repetitions", "2", "--store", str(store)) \
        .returncode == 0
    truth = json.loads(run_cli("analyze", "--by", "group", "--format", "json", "--store", str(store)).stdout)
    return store, {(r["model"], r["variant"], r["group"]): r for r in truth}


def _hand_checked_pass(claim: dict, truth: dict) -> bool:
    """Whether a claim printed as PASS deserves it: |printed - true| within the tolerance its
    fields give (half a unit of the last printed digit, or ``tolerance``, plus ``rel_tolerance``)."""
    row = truth.get((claim.get("model"), claim.get("variant"), claim.get("group", "all")))
    value = row.get(claim.get("metric")) if row and claim.get("metric") in ("S", "R", "sigma_bar") else None
    if value is None:
        return True  # not a number this check recomputes by hand
    printed = claim["printed"]
    tol = claim.get("tolerance")
    if tol is None:
        tol = 10.0 ** Decimal(printed.lstrip("+")).as_tuple().exponent / 2
    tol += (claim.get("rel_tolerance") or 0) * abs(float(printed))
    return abs(float(printed) - value) <= tol * (1 + 1e-12)


def test_mutated_claims_files(small, tmp_path):
    store, truth = small
    base = tmp_path / "claims.json"
    assert run_cli("claims", "draft", "--out", str(base), "--store", str(store), "--by", "group").returncode == 0
    doc = json.loads(base.read_text())
    rng = random.Random(20261204)
    target = tmp_path / "mutated.json"
    passes_checked = 0
    for n in range(220):
        if n % 4 == 3:
            target.write_bytes(mutate_bytes(base.read_bytes(), rng))
            mutated = None
        else:
            mutated = mutate_json(doc, rng)
            if n % 2:  # also move a printed number, so that some claims must fail
                claim = rng.choice(doc["claims"])
                for c in mutated.get("claims", []) if isinstance(mutated, dict) else []:
                    if isinstance(c, dict) and c.get("id") == claim["id"] and isinstance(c.get("printed"), str):
                        c["printed"] = f"{rng.uniform(0, 5):.2f}"
            target.write_bytes(dump(mutated))
        # (few bootstrap draws: the claims are point values, which no draw count changes)
        res = invoke("check", "--claims", str(target), "--store", str(store), "--bootstrap", "50",
                     "--rerun-bootstrap", "20")
        if res.exit_code in (0, 1) and isinstance(mutated, dict):
            not_pass = {line.split(" ", 2)[1].rstrip(":") for line in res.stdout.splitlines() if line}
            for c in mutated["claims"]:
                if c["id"] not in not_pass:
                    assert _hand_checked_pass(c, truth), (n, c)
                    passes_checked += 1
    assert passes_checked > 500  # the hand check really ran


def test_mutated_bundles(small, tmp_path):
    store, _ = small
    bundle = tmp_path / "b.zip"
    assert run_cli("bundle", "--out", str(bundle), "--store", str(store)).returncode == 0
    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    rng = random.Random(7)
    target = tmp_path / "m.zip"
    outcomes = set()
    for n in range(200):
        if n % 2:
            target.write_bytes(mutate_bytes(bundle.read_bytes(), rng))
        else:
            files = dict(members)
            name = rng.choice(sorted(files))
            if name.endswith(".json"):
                files[name] = dump(mutate_json(json.loads(files[name]), rng))
            else:
                files[name] = mutate_bytes(files[name], rng)
            with zipfile.ZipFile(target, "w") as zf:
                for k, v in files.items():
                    zf.writestr(k, v)
        res = invoke("verify", str(target))
        outcomes.add(res.exit_code)
        if res.exit_code == 0:  # a change verify accepts must not change what the store holds
            assert "digest" in res.stdout
    assert {1, 2} & outcomes


def test_mutated_inspect_logs(small, tmp_path):
    require_extra("inspect", "inspect_ai")
    import inspect_ai

    from toolkit.integrations.inspect_package._registry import persona_moral

    logs = inspect_ai.eval(persona_moral(personas="demo20", repetitions=1), model="toolkit-instant/fuzz", limit=40,
                           log_dir=str(tmp_path / "logs"), log_format="json", display="none")
    original = Path(logs[0].location)
    doc = json.loads(original.read_text())
    rng = random.Random(11)
    for n in range(100):
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        log = work / "log.json"
        log.write_bytes(mutate_bytes(original.read_bytes(), rng) if n % 3 == 2 else dump(mutate_json(doc, rng)))
        invoke("import", str(log), "--store", str(work / "s"))
        shutil.rmtree(work)

