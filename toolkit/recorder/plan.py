"""Planning: every request of the protocol with its request key, before anything is sent.

A slot is one (persona, item, repetition) of a persona run, one (item, repetition) of a self
run, or one (persona, item) cell of a logprob run. Its request is everything that determines
what the model is asked: endpoint, model, messages, sampling parameters, repetition. The
request key is the SHA-256 of its canonical JSON, the same function the importer uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ToolkitError
from ..hashing import canonical_json, request_key
from ..instrument import Instrument
from ..persona_sets import PersonaSet, load_personas  # noqa: F401  (the recorder's names for them)
from ..store.manifest import check_run_fields

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


@dataclass(frozen=True)
class Slot:
    persona_id: int | None
    item_id: int
    repetition: int
    messages: tuple[dict[str, str], ...]
    request: str  # canonical JSON
    key: str

    @property
    def seed(self) -> int:
        """Sampling seed sent with the request: derived from content, never from time."""
        return int(self.key[:8], 16)


@dataclass
class Plan:
    slots: list[Slot]
    endpoint: str
    model: str
    protocol: Protocol
    personas: PersonaSet | None
    cached: int = 0
    to_send: list[Slot] = field(default_factory=list)


def build_plan(
    instrument: Instrument,
    *,
    endpoint: str,
    model: str,
    protocol: Protocol,
    personas: PersonaSet | None,
    limit_personas: int | None = None,
    items: list[int] | None = None,
    refresh: int = 0,
) -> Plan:
    """Every slot of the protocol with its request key. ``refresh`` = g > 0 asks every slot again
    as generation g (``record --refresh``): the request says so, so its key, and the seed sent,
    differ from those of earlier answers, which stay stored; analysis reads the newest."""
    try:
        check_run_fields(model, None, protocol.temperature, protocol.mode)
    except ValueError as exc:
        raise ToolkitError(str(exc)) from None
    if protocol.mode in ("persona", "logprob") and personas is None:
        raise ToolkitError(f"mode {protocol.mode} needs a persona set")
    if protocol.repetitions < 1 or protocol.max_attempts < 1:
        raise ToolkitError("repetitions and attempts must be >= 1")
    if protocol.temperature < 0:
        raise ToolkitError("temperature must be >= 0")
    item_ids = instrument.item_ids if items is None else items
    unknown = sorted(set(item_ids) - set(instrument.item_ids))
    if unknown:
        raise ToolkitError(f"items {unknown} are not in instrument {instrument.name!r}")
    if protocol.mode == "self":
        persona_ids: list[int | None] = [None]
    else:
        assert personas is not None
        n = len(personas.personas) if limit_personas is None else min(limit_personas, len(personas.personas))
        persona_ids = list(range(n))
    reps = [1] if protocol.mode == "logprob" else list(range(1, protocol.repetitions + 1))
    sampling = protocol.sampling()
    slots = []
    for pid in persona_ids:
        persona = None if pid is None else personas.personas[pid]  # type: ignore[union-attr]
        for iid in item_ids:
            messages = ({"role": "user", "content": instrument.prompt(iid, persona)},)
            for rep in reps:
                request = {"endpoint": endpoint, "messages": list(messages), "mode": protocol.mode, "model": model,
                           "repetition": rep, "sampling": sampling}
                if refresh:
                    request["refresh"] = refresh
                key, text = request_key(request)
                slots.append(Slot(pid, iid, rep, messages, text, key))
    return Plan(slots, endpoint, model, protocol, personas)


def next_generation(have: set[str], build) -> int:
    """The first refresh generation none of whose keys is stored (``build(g)`` plans generation g)."""
    g = 1
    while any(s.key in have for s in build(g).slots):
        g += 1
    return g


def small_top_k(protocol: Protocol, instrument: Instrument) -> bool:
    """Whether a logprob protocol's top-k list is short enough to miss every digit of a cell
    often (fewer than twice the scale's points: a small model spreads its mass widely)."""
    return (protocol.mode == "logprob" and protocol.top_logprobs is not None
            and protocol.top_logprobs < 2 * instrument.n_points)
