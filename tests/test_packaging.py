"""The package as a user installs it: a wheel (not an editable checkout) carries the embedded
demo store, reads it from any folder, and never writes inside site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from conftest import ROOT, tree_bytes

pytestmark = pytest.mark.e2e  # a real wheel built and installed in a fresh venv


def test_the_package_list_covers_every_package_in_the_tree():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setup["package-dir"]  # packages installed under another name than their folder's
    folders = sorted(mapped.get(name, name.replace(".", "/")) for name in setup["packages"])
    found = sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "toolkit").rglob("__init__.py"))
    assert sorted(set(folders) - {"parquet"}) == found
    # Inspect's package convention: the task's package carries the distribution's name
    assert mapped["persona_moral_toolkit"] == "toolkit/integrations/inspect_package"


def test_wheel_install_reads_the_demo_store_and_never_writes_into_the_package(tmp_path):
    # built from a copy: setuptools leaves a build/ folder in the tree it builds, and a stale one
    # (from an older layout) would be packed into the next wheel of the checkout
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(next(wheels.glob("*.whl")))], check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    assert (site / "toolkit" / "demo_store" / "runs").is_dir()
    assert not (site / "cli.py").exists()  # the command line is toolkit.cli; nothing named cli is installed
    before = tree_bytes(site)
    work = tmp_path / "elsewhere"  # a folder with no parquet/
    work.mkdir()
    # the dependencies come from the test environment; the toolkit itself only from the wheel
    env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_STORE"}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]

    def toolkit(*args):
        return subprocess.run([str(venv / "bin" / "toolkit"), *args], capture_output=True, text=True, cwd=work,
                              env=env, timeout=300)

    where = subprocess.run([str(python), "-c", "import toolkit; print(toolkit.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env, check=True).stdout
    assert where.startswith(str(site))  # not the source checkout
    versions = subprocess.run([str(python), "-c", "import importlib.metadata as m, toolkit; "
                               "print(m.version('persona-moral-toolkit'), toolkit.__version__)"],
                              capture_output=True, text=True, cwd=work, env=env, check=True).stdout.split()
    assert versions[0] == versions[1]  # the metadata reads the one version string
    res = toolkit("analyze", "--format", "csv", "--bootstrap", "20", "--rerun-bootstrap", "5")
    assert res.returncode == 0, res.stderr
    assert "SmolLM2-135M-Instruct" in res.stdout  # the embedded demo store
    assert toolkit("verify").returncode == 0
    rec = toolkit("record", "--backend", "instant", "--limit-personas", "1", "--items", "1", "--repetitions", "1")
    assert rec.returncode == 2 and "writes to a store: give --store DIR" in rec.stderr
    missing = toolkit("runs", "--store", str(tmp_path / "no-such-dir"))
    assert missing.returncode == 2 and "no store at" in missing.stderr
    explicit = toolkit("compact", "--store", str(site / "toolkit" / "demo_store"))  # named on purpose: still refused
    assert explicit.returncode == 2 and "read-only" in explicit.stderr
    library = subprocess.run([str(python), "-c", "from toolkit.store import Store; Store().compact("
                              "Store().runs()[0].run_id)"], capture_output=True, text=True, cwd=work, env=env)
    assert library.returncode != 0 and "read-only" in library.stderr
    assert tree_bytes(site) == before and not (site / "parquet").exists()
    # with a parquet/ in the working folder, that is the store
    (work / "parquet").mkdir()
    rec = toolkit("record", "--backend", "instant", "--limit-personas", "1", "--items", "1", "--repetitions", "1",
                  "--quiet")
    assert rec.returncode == 0, rec.stderr
    assert (work / "parquet" / "runs").is_dir() and tree_bytes(site) == before
