"""The dataset catalogue (toolkit/data/datasets.json): per dataset, every file's public URL at
a pinned commit, its SHA-256 and size, and the run it maps to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from ..errors import ToolkitError


@dataclass(frozen=True)
class FileVersion:
    """Another published version of a file (an earlier collection of the same model, say): an
    audit that fails a claim looks for it and says when it reproduces the printed number."""
    label: str
    repository: str
    commit: str
    path: str
    url: str
    sha256: str
    bytes: int | None = None

    def describe(self) -> str:
        return f"{self.path} @ {self.commit[:7]} of {self.repository} ({self.label})"


@dataclass(frozen=True)
class DatasetFile:
    path: str  # path inside the source repository
    url: str
    sha256: str
    bytes: int | None
    model: str
    variant: str
    temperature: float
    mode: str
    versions: tuple[FileVersion, ...] = ()

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    paper: str
    repository: str
    commit: str
    claims: str
    files: tuple[DatasetFile, ...]

    def runs(self) -> set[tuple[str, str, str]]:
        return {(f.model, f.variant, f.mode) for f in self.files}


def load_catalogue() -> dict[str, Dataset]:
    raw = json.loads((resources.files("toolkit") / "data" / "datasets.json").read_text(encoding="utf-8"))
    out = {}
    for name, d in raw["datasets"].items():
        files = tuple(DatasetFile(**{**f, "versions": tuple(FileVersion(**v) for v in f.get("versions", ()))})
                      for f in d["files"])
        out[name] = Dataset(name, d["title"], d["paper"], d["repository"], d["commit"], d["claims"], files)
    return out


def get_dataset(name: str) -> Dataset:
    catalogue = load_catalogue()
    if name not in catalogue:
        raise ToolkitError(f"unknown dataset {name!r} (known: {', '.join(sorted(catalogue))})")
    return catalogue[name]
