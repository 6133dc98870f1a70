"""Run manifests: the small mutable layer naming a run's immutable segments.

Like git refs over git objects, a manifest is the only thing that changes when a run grows
(the recorder appends segments) and the only place run metadata lives. JSON, format
``toolkit-run/1``, documented in docs/store-format.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

MANIFEST_FORMAT = "toolkit-run/1"
MODES = ("persona", "self", "logprob")


def make_run_id(model: str, variant: str, temperature: float, mode: str, instrument: str) -> str:
    """Human-readable run identity: ``instrument/variant/model/T<temperature>/mode``."""
    return f"{instrument}/{variant}/{model}/T{format_temperature(temperature)}/{mode}"


def format_temperature(t: float) -> str:
    return repr(float(t))


def manifest_filename(run_id: str) -> str:
    return quote(run_id, safe="") + ".json"


@dataclass
class SegmentRef:
    object: str  # SHA-256 of the Parquet file's bytes
    rows: int
    bytes: int


@dataclass
class RunManifest:
    run_id: str
    model: str
    variant: str
    temperature: float
    mode: str
    instrument: dict[str, str]  # {"name", "digest"}
    protocol: dict[str, Any]
    toolkit_version: str
    segments: list[SegmentRef] = field(default_factory=list)
    rows: int = 0
    fingerprint: str = ""
    fingerprint_version: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    format: str = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunManifest:
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"manifest format is {raw.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        data = dict(raw)
        data["segments"] = [SegmentRef(**s) for s in raw["segments"]]
        return cls(**data)
