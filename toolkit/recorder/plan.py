"""Planning: every request of the protocol with its request key, before anything is sent.

A slot is one (persona, item, repetition) of a persona run, one (item, repetition) of a self
run, or one (persona, item) cell of a logprob run. Its request is everything that determines
what the model is asked: endpoint, model, messages, sampling parameters, repetition. The
request key is the SHA-256 of its canonical JSON, the same function the importer uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ToolkitError
from ..hashing import request_key
from ..protocol.instrument import Instrument
from ..protocol.personas import PersonaSet
from ..protocol.requests import Protocol
from ..store.manifest import check_run_fields


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


def next_generation(have: set[str], build: Callable[[int], Plan]) -> int:
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
