"""One `record` invocation from start to end: the protocol built from the instrument and the
user's settings, the plan, the record mode, and the backend loaded only when something is to
be sent. The command line parses its options into a ``Session`` and prints the ``Outcome``.

Record modes follow vcrpy's: ``PLAN`` and ``REPLAY_ONLY`` never send, ``NEW`` sends what the
store lacks (cached replay), ``REFRESH`` asks every slot again as a new generation (the earlier
answers stay; analysis reads the newest), and ``RETRY_INVALID`` asks again, as a new generation,
only the slots whose newest answer gave no rating.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..errors import ToolkitError
from ..protocol.instrument import load_instrument
from ..protocol.personas import load_personas
from ..protocol.requests import Protocol
from ..store import Store
from .backends.base import BackendError
from .backends.registry import RecordOptions, check_extra, get_backend, parse_extra_body
from .batch import Collected, batch_file_target, collect, read_results, write_requests
from .batch_api import Online, run_online
from .cost import Estimate, estimate
from .plan import Plan, Slot, build_plan, next_generation, small_top_k
from .record import RecordSummary, prepare, record
from .writer import existing_keys

MISSING_SHOWN = 20  # --replay-only names this many missing slots, then counts the rest


class BatchUnavailable(ToolkitError):
    """The provider's batch endpoints failed a step; the state so far is saved (exit 1)."""

    exit_code = 1


class RecordMode(enum.Enum):
    PLAN = "plan"  # send nothing: how many slots are stored and how many would be sent
    REPLAY_ONLY = "replay-only"  # send nothing: every slot must be stored (the check for a shipped store)
    NEW = "new"  # send every slot the store lacks
    REFRESH = "refresh"  # ask every slot again, as a new generation
    RETRY_INVALID = "retry-invalid"  # ask again only the slots whose newest answer gave no rating
    BATCH = "batch"  # send nothing: store what batch results answer, write the rest as a batch file


@dataclass(frozen=True)
class Session:
    """What to record: the backend and its settings, the protocol's overrides (None: the
    instrument's, else the protocol default), the run's labels and the writer's pace."""

    backend: str
    backend_options: RecordOptions = field(default_factory=RecordOptions)
    mode: str = "persona"
    instrument: str | None = None
    personas: str | None = None
    limit_personas: int | None = None
    items: list[int] | None = None
    protocol: dict[str, Any] = field(default_factory=dict)  # Protocol.from_instrument overrides
    variant: str = "base"
    concurrency: int = 4
    flush_rows: int = 1000
    flush_seconds: float = 5.0
    progress: bool = True
    batch_file: str | None = None  # BATCH: where the next batch's requests go
    batch_results: tuple[str, ...] = ()  # BATCH: a provider's batch output files
    batch_online: bool = False  # BATCH: through the provider's Files and Batches endpoints (batch_api.py)


@dataclass
class Outcome:
    run_id: str
    mode: RecordMode
    planned: int
    cached: int
    to_send: int
    summary: RecordSummary | None = None  # when something was sent
    missing: list[str] = field(default_factory=list)  # REPLAY_ONLY: the first missing slots, described
    warnings: list[str] = field(default_factory=list)
    estimate: Estimate | None = None  # PLAN: the tokens the slots to send will cost (cost.py)
    batch: Collected | None = None  # BATCH: what the results stored, and the requests still to send
    online: Online | None = None  # BATCH online: the batches in flight and the one submitted now

    @property
    def ok(self) -> bool:
        """Exit 0 or 1: every slot stored (REPLAY_ONLY), no slot failed (a recording)."""
        if self.mode is RecordMode.REPLAY_ONLY:
            return self.to_send == 0
        if self.mode is RecordMode.BATCH:
            return self.batch is not None and not self.batch.failed
        return self.summary is None or not (self.summary.failed or self.summary.stopped)


def run_session(store: Store, session: Session, record_mode: RecordMode = RecordMode.NEW) -> Outcome:
    """Plan, then send what ``record_mode`` asks for. Planning, REPLAY_ONLY and a fully cached
    run need no credentials and load no model."""
    spec = get_backend(session.backend)
    opts = session.backend_options
    check_extra(spec, opts.extra)
    inst = load_instrument(session.instrument)
    overrides = dict(session.protocol)
    if "extra_body" in overrides:
        overrides["extra_body"] = parse_extra_body(overrides["extra_body"])
    proto = Protocol.from_instrument(inst, session.mode, **overrides)
    opts = RecordOptions(**{**opts.__dict__, "protocol": proto})
    endpoint, model_name = spec.endpoint(opts)  # no connection, no weights, no key
    persona_set = None if session.mode == "self" else load_personas(session.personas)

    def plan_for(generation: int) -> Plan:
        return build_plan(inst, endpoint=endpoint, model=model_name, protocol=proto, personas=persona_set,
                          limit_personas=session.limit_personas, items=session.items, refresh=generation)

    plan = plan_for(0)
    template = prepare(store, plan, inst, spec.name, session.variant)
    only: set[str] | None = None  # RETRY_INVALID: the slots that may be sent
    if record_mode in (RecordMode.REFRESH, RecordMode.RETRY_INVALID):  # a new generation, none of it stored
        retry = record_mode is RecordMode.RETRY_INVALID
        if retry and session.mode == "logprob":
            raise ToolkitError("--retry-invalid re-asks answers that gave no rating; a logprob run has no "
                               "ratings (its cells without a digit need a larger --top-logprobs)")
        invalid = _invalid_slots(store, template.run_id) if retry else None
        plan = plan_for(next_generation(existing_keys(store, template.run_id), plan_for))
        if invalid is not None:
            only = {s.key for s in plan.slots
                    if (-1 if s.persona_id is None else s.persona_id, s.item_id, s.repetition) in invalid}
        prepare(store, plan, inst, spec.name, session.variant, only)
    out = Outcome(template.run_id, record_mode, len(plan.slots), plan.cached, len(plan.to_send))
    if small_top_k(proto, inst) and record_mode is RecordMode.PLAN:
        out.warnings.append(f"--top-logprobs {proto.top_logprobs} lists at most {proto.top_logprobs} tokens: a cell "
                            "whose digits all fall outside it has no digit, and the logit method cannot use it (20 "
                            "is the usual choice)")
    if record_mode is RecordMode.REPLAY_ONLY:
        out.missing = [_describe(s) for s in plan.to_send[:MISSING_SHOWN]]
        return out
    if record_mode is RecordMode.PLAN:
        out.estimate = estimate(store, plan, template.run_id, inst.digest, session.mode)
        return out
    if record_mode is RecordMode.BATCH:
        _batch(store, session, spec.make(opts), plan, inst, template.run_id, out)
        return out
    if not plan.to_send:  # cached replay: nothing to connect to or load
        return out
    backend = spec.make(opts)
    try:
        summary = record(store, plan, inst, backend, variant=session.variant, concurrency=session.concurrency,
                         flush_rows=session.flush_rows, flush_seconds=session.flush_seconds,
                         progress=session.progress, breaker=opts.breaker, only=only)
    finally:
        backend.close()
    out.summary = summary
    out.warnings += [f"the server reports model {name!r}, not {model_name!r} as recorded" for name in summary.served]
    if summary.no_digit:
        out.warnings.append(f"{summary.no_digit} of {summary.stored} stored cells have no digit of the scale in their "
                            f"top-k list (--top-logprobs {proto.top_logprobs}); the logit method cannot use them: "
                            "record with a larger --top-logprobs under another --variant")
    return out


def _batch(store: Store, session: Session, backend: Any, plan: Plan, inst: Any, run_id: str, out: Outcome) -> None:
    """Store what batch results answer and write (or, online, submit) the requests still needed."""
    from .backends.openai import OpenAIBackend

    if not isinstance(backend, OpenAIBackend):
        backend.close()
        raise ToolkitError("batch recording needs an OpenAI-compatible backend (--backend openai): the batch "
                           "file format is OpenAI's")
    if session.batch_file is not None:
        try:
            batch_file_target(session.batch_file, store)
        except ToolkitError:
            backend.close()
            raise
    try:
        if session.batch_online:
            try:
                out.online = run_online(store, plan, inst, backend, run_id, variant=session.variant)
            except BackendError as exc:
                raise BatchUnavailable(f"batch API: {exc}; every step so far is kept (batches/ in the store): "
                                       "run the same command again") from None
            out.batch = out.online.collected
            return
        out.batch = collect(store, plan, inst, backend, read_results(list(session.batch_results)),
                            variant=session.variant)
    finally:
        backend.close()
    if session.batch_file is not None:
        write_requests(session.batch_file, out.batch.pending)


def _invalid_slots(store: Store, run_id: str) -> set[tuple[int, int, int]]:
    """(persona, item, repetition) of the slots whose newest stored answer has no rating (a self
    run's persona is -1); none for a run not yet in the store."""
    if store.get_run(run_id) is None:
        return set()
    table = store.read_run(run_id, ["persona_id", "item_id", "repetition", "rating"], generations="newest")
    rows = zip(*(table[c].to_pylist() for c in ("persona_id", "item_id", "repetition", "rating")))
    return {(-1 if p is None else p, q, r) for p, q, r, rating in rows if rating is not None and rating < 0}


def _describe(s: Slot) -> str:
    who = "self" if s.persona_id is None else f"persona {s.persona_id}"
    return f"{who} item {s.item_id} repetition {s.repetition}"
