"""What shapes every request besides the model: the protocol's sampling settings and their
defaults, resolved in one place (recorded in each run's manifest and in each request key)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..hashing import canonical_json
from .instrument import Instrument

# The protocol's defaults, in one place. An instrument's JSON "defaults" override them (the
# MFQ-30 file gives the published values), and the user's options override both.
PROTOCOL_DEFAULTS: dict[str, Any] = {"temperature": 0.1, "repetitions": 10, "max_tokens": 2, "long_max_tokens": 64,
                                     "max_attempts": 10, "top_logprobs": 20, "send_seed": True, "extra_body": ""}
_INSTRUMENT_KEYS = {"max_attempts_per_slot": "max_attempts"}  # the instrument format's older spelling


@dataclass(frozen=True)
class Protocol:
    """Everything besides the model that shapes the requests (recorded in the run manifest).

    Build it with ``Protocol.from_instrument``: the one place defaults are resolved. Backends
    take what they send (top_logprobs, seed, extra fields) from it, so the request key and
    the request sent cannot drift apart."""

    mode: str
    temperature: float = PROTOCOL_DEFAULTS["temperature"]
    repetitions: int = PROTOCOL_DEFAULTS["repetitions"]
    max_tokens: int = PROTOCOL_DEFAULTS["max_tokens"]
    long_max_tokens: int = PROTOCOL_DEFAULTS["long_max_tokens"]
    max_attempts: int = PROTOCOL_DEFAULTS["max_attempts"]
    top_logprobs: int = PROTOCOL_DEFAULTS["top_logprobs"]
    send_seed: bool = PROTOCOL_DEFAULTS["send_seed"]
    extra_body: str = PROTOCOL_DEFAULTS["extra_body"]  # canonical JSON of extra request fields, "" for none

    @classmethod
    def from_instrument(cls, instrument: Instrument, mode: str, **overrides: Any) -> Protocol:
        """Defaults, then the instrument's, then ``overrides`` (None = not given)."""
        values = dict(PROTOCOL_DEFAULTS)
        for key, value in instrument.defaults.items():
            key = _INSTRUMENT_KEYS.get(key, key)
            if key in values:
                values[key] = type(PROTOCOL_DEFAULTS[key])(value)
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise TypeError(f"unknown protocol fields {unknown}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values["extra_body"], dict):
            values["extra_body"] = canonical_json(values["extra_body"]) if values["extra_body"] else ""
        return cls(mode=mode, **values)

    @property
    def extra_fields(self) -> dict[str, Any]:
        return json.loads(self.extra_body) if self.extra_body else {}

    def sampling(self) -> dict[str, Any]:
        """What the request key records about sampling. The seed switch and extra fields appear
        only when set, so that runs recorded without them keep their keys."""
        if self.mode == "logprob":
            out: dict[str, Any] = {"logprobs": True, "max_tokens": 1, "top_logprobs": self.top_logprobs}
        else:
            out = {"long_max_tokens": self.long_max_tokens, "max_attempts": self.max_attempts,
                   "max_tokens": self.max_tokens, "temperature": self.temperature}
        if not self.send_seed:
            out["seed"] = False
        if self.extra_body:
            out["extra_body"] = self.extra_fields
        return out
