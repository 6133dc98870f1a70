"""Questionnaires as data.

Nothing downstream may assume 30 items, five foundations or a 0-5 scale: every count, group
name and scale bound is read from an instrument file (JSON, format ``toolkit-instrument/1``,
documented in docs/instrument-format.md). MFQ-30 ships as the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ToolkitError
from ..hashing import canonical_json, parse_json, sha256_text

FORMAT = "toolkit-instrument/1"
DEFAULT_INSTRUMENT = "mfq30"
_STANDALONE_INT = re.compile(r"\b(\d+)\b")


@dataclass(frozen=True)
class Item:
    id: int
    group: str
    text: str
    prompt: str
    reverse: bool = False
    type: str | None = None


@dataclass(frozen=True)
class Instrument:
    name: str
    scale_min: int
    scale_max: int
    items: tuple[Item, ...]
    templates: dict[str, str]
    defaults: dict[str, Any]
    raw: dict[str, Any]

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the whole file: any wording change is a new digest."""
        return sha256_text(canonical_json(self.raw))

    @property
    def scale(self) -> np.ndarray:
        return np.arange(self.scale_min, self.scale_max + 1)

    @property
    def n_points(self) -> int:
        return self.scale_max - self.scale_min + 1

    @property
    def item_ids(self) -> list[int]:
        return [it.id for it in self.items]

    @cached_property
    def groups(self) -> list[str]:
        """Group names in order of first appearance in the item list."""
        seen: dict[str, None] = {}
        for it in self.items:
            seen.setdefault(it.group, None)
        return list(seen)

    def group_masks(self) -> list[tuple[str, np.ndarray]]:
        """"all", then each group, with a boolean mask over the items: the rows of every
        group-wise table."""
        return [(name, np.array([name == "all" or it.group == name for it in self.items]))
                for name in ["all"] + self.groups]

    def group_of(self) -> dict[int, str]:
        return {it.id: it.group for it in self.items}

    def item(self, item_id: int) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise ToolkitError(f"item {item_id} is not in instrument {self.name!r}")

    def extract_rating(self, text: str | None) -> int:
        """First standalone integer inside the scale bounds, else -1.

        For a one-digit scale this is exactly the published ``\\b[0-5]\\b`` rule.
        """
        if not text:
            return -1
        for m in _STANDALONE_INT.finditer(text.strip()):
            value = int(m.group(1))
            if self.scale_min <= value <= self.scale_max:
                return value
        return -1

    def prompt(self, item_id: int, persona: str | None) -> str:
        question = self.item(item_id).prompt
        if persona is None:
            return self.templates["self"].format(question=question)
        return self.templates["persona"].format(persona=persona, question=question)


def _fail(path: str, msg: str) -> ToolkitError:
    return ToolkitError(f"invalid instrument file: {msg}", path=path)


def parse_instrument(raw: dict[str, Any], path: str = "<instrument>") -> Instrument:
    if raw.get("format") != FORMAT:
        raise _fail(path, f"'format' must be {FORMAT!r}")
    try:
        scale = raw["scale"]
        smin, smax = int(scale["min"]), int(scale["max"])
        templates = dict(raw["templates"])
        items_raw = raw["items"]
        name = str(raw["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"missing or malformed field {exc}") from None
    from ..store.manifest import check_name

    try:
        check_name("instrument", name)
    except ValueError as exc:
        raise _fail(path, f"'name': {exc}") from None
    if smax <= smin:
        raise _fail(path, "scale max must exceed scale min")
    for key in ("persona", "self"):
        if key not in templates:
            raise _fail(path, f"templates.{key} is missing")
    items = []
    for i, it in enumerate(items_raw):
        try:
            items.append(
                Item(
                    id=int(it["id"]),
                    group=str(it["group"]),
                    text=str(it.get("text", "")),
                    prompt=str(it["prompt"]),
                    reverse=bool(it.get("reverse", False)),
                    type=it.get("type"),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(path, f"item #{i}: missing or malformed field {exc}") from None
    if not items:
        raise _fail(path, "no items")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise _fail(path, "duplicate item ids")
    return Instrument(
        name=name,
        scale_min=smin,
        scale_max=smax,
        items=tuple(items),
        templates=templates,
        defaults=dict(raw.get("defaults", {})),
        raw=raw,
    )


def load_instrument(name_or_path: str | Path | None = None) -> Instrument:
    """Load a shipped instrument by name (``mfq30``) or any instrument file by path."""
    target = name_or_path or DEFAULT_INSTRUMENT
    path = Path(target)
    if path.suffix == ".json" or path.exists():
        try:
            raw = parse_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ToolkitError(f"cannot read instrument: {exc}", path=str(path)) from None
        return parse_instrument(raw, str(path))
    res = resources.files("toolkit") / "instruments" / f"{target}.json"
    if not res.is_file():
        raise ToolkitError(f"unknown instrument {str(target)!r} (give a name shipped with the toolkit or a path)")
    return parse_instrument(parse_json(res.read_text(encoding="utf-8")), f"instruments/{target}.json")
