"""Reading a persona file: a JSON list, or ``{"name": ..., "personas": [...]}``.

Shared by the recorder (descriptions to ask with) and the analysis (which personas a profile
covers), so that both read a file the same way and agree on its label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ToolkitError


def read_persona_json(path: str | Path) -> tuple[str, Any]:
    """The file's label (its "name", else its stem) and its list, unchecked."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToolkitError(f"cannot read persona file: {exc}", path=str(path)) from None
    label = path.stem
    if isinstance(raw, dict):
        label, raw = str(raw.get("name", label)), raw.get("personas")
    return label, raw
