"""Persona files: a JSON list, or ``{"name": ..., "personas": [...]}``; persona id = position.

Shared by the recorder (descriptions to ask with), the analysis (which personas a profile
covers), reports and bundles (the texts to show and to carry), so that all read a file the
same way and agree on its label and digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from ..hashing import canonical_json, parse_json, sha256_text


def read_persona_json(path: str | Path) -> tuple[str, Any]:
    """The file's label (its "name", else its stem) and its list, unchecked."""
    path = Path(path)
    try:
        raw = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolkitError(f"cannot read persona file: {exc}", path=str(path)) from None
    label = path.stem
    if isinstance(raw, dict):
        label, raw = str(raw.get("name", label)), raw.get("personas")
    return label, raw


@dataclass(frozen=True)
class PersonaSet:
    name: str
    personas: tuple[str, ...]

    @property
    def digest(self) -> str:
        return sha256_text(canonical_json(list(self.personas)))

    def named(self) -> dict[str, Any]:
        """What a run's manifest records of the persona set that answered it (``protocol.personas``):
        recorded runs, and imported runs told their persona file; pairing compares the digests."""
        return {"name": self.name, "digest": self.digest, "count": len(self.personas)}


def load_personas(source: str | Path | None = None) -> PersonaSet:
    """A JSON list of persona descriptions, or ``{"name": …, "personas": [...]}``; persona
    id = position in the list. Without a source, the shipped ``demo20`` set."""
    if source is None or (isinstance(source, str) and not source.endswith(".json") and not Path(source).exists()):
        name = source or "demo20"
        res = resources.files("toolkit") / "personas" / f"{name}.json"
        if not res.is_file():
            raise ToolkitError(f"unknown persona set {name!r}")
        raw, label = parse_json(res.read_text(encoding="utf-8")), name
    else:
        label, raw = read_persona_json(source)
    if isinstance(raw, dict):
        label = str(raw.get("name", label))
        raw = raw.get("personas")
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) and p.strip() for p in raw):
        raise ToolkitError("a persona file holds a non-empty JSON list of persona descriptions", path=str(source))
    return PersonaSet(label, tuple(raw))


def named_set(protocol: Any) -> dict[str, Any] | None:
    """The persona set a run's manifest names ({"name", "digest", "count"}; recorded runs name
    one, imported runs none)."""
    named = protocol.get("personas") if isinstance(protocol, dict) else None
    return named if isinstance(named, dict) else None


def shipped_named(protocol: Any) -> PersonaSet | None:
    """The shipped persona set a run's manifest names, when its digest is the one recorded."""
    named = named_set(protocol)
    if named is None:
        return None
    try:
        pset = load_personas(str(named.get("name")))
    except ToolkitError:  # not a shipped set: its file must come from the user
        return None
    return pset if pset.digest == named.get("digest") else None
