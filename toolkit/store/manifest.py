"""Run manifests: the small mutable layer naming a run's immutable segments.

Like git refs over git objects, a manifest is the only thing that changes when a run grows
(the recorder appends segments) and the only place run metadata lives. JSON, format
``toolkit-run/2`` (``toolkit-run/1`` still read), documented in docs/store-format.md.
Parsing is strict: a manifest is trusted data, so anything unexpected in it is an error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import quote

from ..hashing import canonical_json, sha256_text

MANIFEST_FORMAT = "toolkit-run/3"
READABLE_FORMATS = ("toolkit-run/1", "toolkit-run/2", "toolkit-run/3")
FINGERPRINT_FOR_FORMAT = {"toolkit-run/1": "fp1", "toolkit-run/2": "fp2", "toolkit-run/3": "fp2"}
SEALED_FORMATS = ("toolkit-run/3",)  # manifests whose every field is covered by their ``seal``
MODES = ("persona", "self", "logprob")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_BYTES = 200  # a run id is a file name once quoted: keep it well inside 255 bytes


class ManifestError(ValueError):
    """A manifest that does not parse or does not hold together."""


def make_run_id(model: str, variant: str, temperature: float, mode: str, instrument: str) -> str:
    """Human-readable run identity: ``instrument/variant/model/T<temperature>/mode``."""
    return f"{instrument}/{variant}/{model}/T{format_temperature(temperature)}/{mode}"


def mode_of(run_id: str) -> str:
    """The mode a run id names (its last part, ``make_run_id``'s layout)."""
    return run_id.rsplit("/", 1)[-1]


def format_temperature(t: float) -> str:
    return repr(float(t))


def manifest_filename(run_id: str) -> str:
    return quote(run_id, safe="") + ".json"


def check_name(what: str, name: object) -> None:
    """The one rule for a user-chosen name that becomes part of a store path (model, variant,
    instrument; the run id and its manifest's file name are made of them). A leading dot is
    refused: the store's temporary files (``.tmp-``), locks and hidden files start with one, and
    a run named like them would be skipped by every reader and collected by ``compact``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} name must be a non-empty string")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"{what} name is {len(name.encode('utf-8'))} bytes long; at most {MAX_NAME_BYTES}")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        raise ValueError(f"{what} name contains a control character")
    if name.startswith("."):
        raise ValueError(f"{what} name {name!r} starts with '.', which the store reserves for its temporary "
                         "and hidden files")


def check_run_fields(model: str, variant: str | None, temperature: float, mode: str,
                     instrument: str | None = None) -> None:
    """Refuse names and values that cannot make a sound run id (raised as ValueError); a
    variant of None is not checked (a plan has none yet)."""
    for what, name in (("model", model), ("variant", variant), ("instrument", instrument)):
        if name is None and what != "model":
            continue
        check_name(what, name)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, not {temperature!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


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
    seal: str = ""  # toolkit-run/3: SHA-256 over every other field (provenance included), see ``seal_of``

    def fresh(self) -> RunManifest:
        """The same run with no rows yet: identity and protocol copied, segments and seal empty."""
        return RunManifest(run_id=self.run_id, model=self.model, variant=self.variant, temperature=self.temperature,
                           mode=self.mode, instrument=dict(self.instrument), protocol=dict(self.protocol),
                           toolkit_version=self.toolkit_version)

    def seal_of(self) -> str:
        """The digest that covers every field but itself: the run id, identity, protocol and
        endpoint, sources, segments, row count and the rows' fingerprint. An edit to any of them
        (provenance a report shows as fact included) no longer matches."""
        fields_ = {k: v for k, v in asdict(self).items() if k != "seal"}
        return sha256_text("toolkit-run-seal\n" + canonical_json(fields_))

    def to_json(self) -> str:
        data = asdict(self)
        if self.format not in SEALED_FORMATS:
            data.pop("seal")  # an older format is written as it was
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, raw: Any) -> RunManifest:
        """Parse and check a manifest; every problem is a ManifestError naming the field."""
        if not isinstance(raw, dict):
            raise ManifestError("a manifest is a JSON object")
        if raw.get("format") not in READABLE_FORMATS:
            raise ManifestError(f"manifest format is {raw.get('format')!r}, this release reads "
                                f"{', '.join(READABLE_FORMATS)}")
        names = {f.name for f in fields(cls)}
        extra = sorted(set(raw) - names)
        if extra:
            raise ManifestError(f"unknown field(s) {', '.join(extra)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in raw and f.name not in (
            "segments", "rows", "fingerprint", "fingerprint_version", "sources", "format", "seal"))
        if raw["format"] in SEALED_FORMATS and not isinstance(raw.get("seal"), str):
            raise ManifestError(f"a {raw['format']} manifest has a seal (a string)")
        if raw["format"] not in SEALED_FORMATS and "seal" in raw:
            raise ManifestError(f"a {raw['format']} manifest has no seal")
        if missing:
            raise ManifestError(f"missing field(s) {', '.join(missing)}")
        data = dict(raw)
        segs = raw.get("segments", [])
        if not isinstance(segs, list):
            raise ManifestError("segments must be a list")
        refs = []
        for s in segs:
            if not isinstance(s, dict) or set(s) != {"object", "rows", "bytes"}:
                raise ManifestError("each segment is {object, rows, bytes}")
            if not isinstance(s["object"], str) or not DIGEST_RE.match(s["object"]):
                raise ManifestError(f"segment object {s['object']!r} is not a SHA-256 digest")
            if not all(isinstance(s[k], int) and not isinstance(s[k], bool) and s[k] >= 0 for k in ("rows", "bytes")):
                raise ManifestError("segment rows and bytes must be non-negative integers")
            refs.append(SegmentRef(**s))
        data["segments"] = refs
        for key in ("run_id", "model", "variant", "mode", "toolkit_version", "fingerprint", "fingerprint_version"):
            if key in data and not isinstance(data[key], str):
                raise ManifestError(f"{key} must be a string")
        if not isinstance(data.get("instrument"), dict) or not isinstance(data["instrument"].get("name"), str) \
                or not DIGEST_RE.match(str(data["instrument"].get("digest"))):
            raise ManifestError("instrument must be {name, digest}")
        if not isinstance(data.get("protocol"), dict) or not isinstance(data.get("sources", []), list):
            raise ManifestError("protocol must be an object and sources a list")
        rows = data.get("rows", 0)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise ManifestError("rows must be a non-negative integer")
        try:
            check_run_fields(data["model"], data["variant"], data["temperature"], data["mode"],
                             data["instrument"]["name"])
        except ValueError as exc:
            raise ManifestError(str(exc)) from None
        m = cls(**data)
        expected = make_run_id(m.model, m.variant, m.temperature, m.mode, m.instrument["name"])
        if m.run_id != expected:
            raise ManifestError(f"run_id {m.run_id!r} does not match its fields (expected {expected!r})")
        if m.fingerprint_version and m.fingerprint_version != FINGERPRINT_FOR_FORMAT[m.format]:
            raise ManifestError(f"fingerprint version {m.fingerprint_version!r} does not belong to {m.format}")
        return m


def new_run(*, model: str, variant: str, temperature: float, mode: str, instrument: Any,
            protocol: dict[str, Any]) -> RunManifest:
    """The one way a run manifest is made (recorder, importers, simulator): the fields are
    checked (ValueError), the run id derived from them, the instrument named by name and digest."""
    from .. import __version__

    check_run_fields(model, variant, temperature, mode, instrument.name)
    return RunManifest(run_id=make_run_id(model, variant, temperature, mode, instrument.name), model=model,
                       variant=variant, temperature=float(temperature), mode=mode,
                       instrument={"name": instrument.name, "digest": instrument.digest}, protocol=protocol,
                       toolkit_version=__version__)
