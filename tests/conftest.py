"""Shared fixtures. Tests that need ../shared skip when it is absent, and fail instead when
REQUIRE_SHARED=1 (CI sets it) so a missing dataset can never pass silently."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from syrupy.extensions.amber import AmberSnapshotExtension

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared" / "datasets").resolve()
EM = SHARED / "costa2026-em"
LOGIT_CSV = SHARED / "costa2025-logit" / "gemma-2-9b-it-local_logprobs.csv"


def need_shared() -> Path:
    if not EM.is_dir():
        msg = f"shared datasets not found at {SHARED}"
        if os.environ.get("REQUIRE_SHARED") == "1":
            pytest.fail(msg + " (REQUIRE_SHARED=1)")
        pytest.skip(msg)
    return SHARED


SHARED_FIXTURES = {"em_store", "logit_store"}  # a test using one of these (directly or not) needs ../shared


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if SHARED_FIXTURES & used:
            item.add_marker("shared")
        if "browser" in used:
            item.add_marker("e2e")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared``: skipped without ../shared (a failure under REQUIRE_SHARED=1)."""
    if item.get_closest_marker("shared"):
        need_shared()


class TopLevelSnapshots(AmberSnapshotExtension):
    """Keep snapshots in the repository's top-level snapshots/ folder (the design's layout)."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(ROOT / "snapshots")


@pytest.fixture
def snapshot(snapshot):
    return snapshot.use_extension(TopLevelSnapshots)


@pytest.fixture(scope="session")
def em_store(tmp_path_factory):
    """The 12 persona + 12 self runs of arXiv 2605.12850 imported once (treat as read-only)."""
    need_shared()
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    store = Store(tmp_path_factory.mktemp("em") / "store")
    import_paths(store, [EM / "runs", EM / "self"], temperature=0.1)
    return store


@pytest.fixture(scope="session")
def logit_store(tmp_path_factory):
    """The gemma-2-9b-it digit-logprob run of the logit method imported once (read-only)."""
    need_shared()
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    store = Store(tmp_path_factory.mktemp("logit") / "store")
    import_paths(store, [LOGIT_CSV])
    return store


def require_extra(extra: str, *modules: str) -> None:
    """Skip (fail under REQUIRE_SHARED=1, as in CI) when an optional extra is not installed."""
    import importlib

    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("REQUIRE_SHARED") == "1":
            pytest.fail(f"the [{extra}] extra is required in CI: {exc}")
        pytest.skip(f"needs the [{extra}] extra: {exc}")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/browser.py); skipped without one, a failure under REQUIRE_BROWSER=1."""
    from browser import Browser, find_chromium

    exe = find_chromium()
    if exe is None:
        msg = "no Chromium found (Debian: apt-get install chromium); .ci/run installs it"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " (REQUIRE_BROWSER=1)")
        pytest.skip(msg)
    with Browser(exe) as b:
        yield b


@dataclass
class Completed:
    """What a command printed and returned, as subprocess.CompletedProcess names them."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, process: bool = False) -> Completed:
    """Run the real CLI: in this process through click's runner (the same parsing, commands and
    exit codes, without the ~0.5 s of a fresh interpreter importing polars and pyarrow), or in a
    subprocess when the test changes the environment or the folder, or asks for a real process
    (``process``: exit handling, signals, what a fresh interpreter imports)."""
    if env or cwd or process:
        full_env = dict(os.environ)
        full_env.pop("TOOLKIT_STORE", None)
        full_env.update(env or {})
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                              env=full_env, cwd=cwd or ROOT, timeout=600)
        return Completed(list(done.args), done.returncode, done.stdout, done.stderr)
    from click.testing import CliRunner

    from toolkit.cli import main

    before = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(main, list(args), env={"TOOLKIT_STORE": None}, prog_name="cli.py")
    finally:
        os.chdir(before)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug escaped the command's own error handling: show it as such
    return Completed(list(args), result.exit_code, result.stdout, result.stderr)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes: 'store unchanged' compares two of these."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def server():
    """A deterministic OpenAI-compatible server on 127.0.0.1 (tests/http_servers.py): its
    Behaviour (request counter) and base URL."""
    from http_servers import Behaviour, start

    behaviour = Behaviour()
    srv, url = start(behaviour)
    yield behaviour, url
    srv.shutdown()
