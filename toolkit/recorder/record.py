"""The recording loop: plan, skip what the store holds, send the rest, flush in batches.

The published sampling protocol (arXiv 2605.12850, Appendix A), per slot: ask for a short
answer (max_tokens 2) and accept it when it parses to a valid rating; otherwise ask again,
counting failures, up to ``max_attempts`` times; then one longer generation and take the
first standalone integer in range; else store rating -1. Every failed attempt's raw text is
kept. A slot whose request fails at the transport level (after the backend's retries) is
not stored at all: the next invocation sends it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..errors import ToolkitError
from ..protocol.instrument import Instrument
from ..store import RunManifest, Store
from ..store.manifest import check_run_fields, new_run
from ..store.rows import row_problem
from .backends.base import DEFAULT_BREAKER, Backend, BackendError, FatalBackendError, Usage
from .plan import Plan, Slot
from .progress import Progress
from .writer import RunWriter, existing_keys


@dataclass
class RecordSummary:
    run_id: str
    planned: int
    cached: int
    to_send: int
    sent: int = 0  # slots answered by the backend
    stored: int = 0  # rows durably written by this invocation
    failed: int = 0  # slots tried and not stored: request failed, row unstorable, or the store unwritable
    not_sent: int = 0  # slots never tried because the recording stopped first (the next `record` sends them)
    duplicates: int = 0
    invalid: int = 0  # stored with rating -1
    seconds: float = 0.0
    errors: tuple[str, ...] = ()
    stopped: str | None = None  # why the recording stopped before the end (fatal error, breaker)
    served: list[str] = field(default_factory=list)  # model names the server reported, other than --model
    no_digit: int = 0  # logprob slots stored whose top-k list held no digit of the scale

    def line(self) -> str:
        unsent = f", not sent {self.not_sent}" if self.not_sent else ""
        return (f"run {self.run_id}: planned {self.planned}, cached {self.cached}, sent {self.sent}, "
                f"stored {self.stored}, failed {self.failed}{unsent}, rating -1 {self.invalid}, "
                f"duplicates dropped {self.duplicates}, {self.seconds:.1f} s")


def _with_count(text: str, times: int) -> str:
    """An error line, with how many more slots failed the same way."""
    return f"{text} (and {times - 1} more slot(s) with the same error)" if times > 1 else text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def run_slot(backend: Backend, instrument: Instrument, plan: Plan, slot: Slot, run_id: str) -> dict[str, Any]:
    """Carry out one slot of the protocol and return its row."""
    proto = plan.protocol
    row: dict[str, Any] = {
        "run_id": run_id, "instrument": instrument.digest, "persona_id": slot.persona_id, "item_id": slot.item_id,
        "repetition": slot.repetition, "request_key": slot.key, "request": slot.request,
        "provenance": f"recorder:{backend.name}:{backend.endpoint}:toolkit-{__version__}", "source_line": None,
        "attempts": None, "digit_logprobs": None, "top_logprobs": None,
    }
    if proto.mode == "logprob":
        d = backend.digit_logprobs(slot.messages, list(instrument.scale), seed=slot.seed)
        problem = row_problem("logprob", d.top_text, d.logprobs)  # the importers' rule: nothing stored in vain
        if problem is not None:
            raise BackendError(f"the reply cannot be analysed: {problem}")
        row.update(response=d.top_text, rating=instrument.extract_rating(d.top_text), failures=0,
                   digit_logprobs=d.logprobs, top_logprobs=d.top_logprobs_json, finish_reason=d.finish_reason,
                   latency_s=d.latency_s, collected_at=_now(), **d.usage.columns())
        return _served_as(row, d.served_model)
    failed: list[str] = []
    latency = 0.0
    usage = Usage(0, 0, 0)  # summed over the slot's attempts: every one was paid for
    for attempt in range(proto.max_attempts):
        g = backend.generate(slot.messages, temperature=proto.temperature, max_tokens=proto.max_tokens,
                             seed=slot.seed + attempt)
        latency += g.latency_s
        usage += g.usage
        rating = instrument.extract_rating(g.text)
        if rating != -1:
            row.update(response=g.text, rating=rating, failures=attempt, attempts=failed or None,
                       finish_reason=g.finish_reason, latency_s=latency, collected_at=_now(), **usage.columns())
            return _served_as(row, g.served_model)
        failed.append(g.text)
    g = backend.generate(slot.messages, temperature=proto.temperature, max_tokens=proto.long_max_tokens,
                         seed=slot.seed + proto.max_attempts)
    row.update(response=g.text, rating=instrument.extract_rating(g.text), failures=proto.max_attempts,
               attempts=failed, finish_reason=g.finish_reason, latency_s=latency + g.latency_s, collected_at=_now(),
               **(usage + g.usage).columns())
    return _served_as(row, g.served_model)


def _served_as(row: dict[str, Any], served: str | None) -> dict[str, Any]:
    """Keep the model name the server reported in the row's provenance (not in the fingerprint)."""
    if served:
        row["provenance"] += f":served={served}"
        row["_served"] = served
    return row


def run_template(plan: Plan, instrument: Instrument, backend_name: str, variant: str) -> RunManifest:
    proto = plan.protocol
    protocol: dict[str, Any] = {
        "origin": "recorder", "backend": backend_name, "endpoint": plan.endpoint,
        "sampling": proto.sampling(), "repetitions": 1 if proto.mode == "logprob" else proto.repetitions,
    }
    if plan.personas is not None and proto.mode != "self":
        protocol["personas"] = plan.personas.named()
    return new_run(model=plan.model, variant=variant, temperature=proto.temperature, mode=proto.mode,
                   instrument=instrument, protocol=protocol)


def _check_compatible(existing: RunManifest | None, template: RunManifest) -> None:
    if existing is None:
        return
    old, new = existing.protocol, template.protocol
    keys = ("origin", "endpoint", "sampling", "personas")
    if any(old.get(k) != new.get(k) for k in keys) or existing.instrument != template.instrument:
        raise ToolkitError(f"run {template.run_id} already exists with another protocol, endpoint, persona set or "
                           "instrument; record under another --variant label")


def prepare(store: Store, plan: Plan, instrument: Instrument, backend_name: str, variant: str,
            only: Collection[str] | None = None) -> RunManifest:
    """Fill ``plan.cached`` / ``plan.to_send`` against the store; nothing is sent, and no
    backend is needed (the plan carries the endpoint identity). ``only``: the request keys that
    may be sent at all (`record --retry-invalid`); the other slots count as cached."""
    try:
        check_run_fields(plan.model, variant, plan.protocol.temperature, plan.protocol.mode)
    except ValueError as exc:
        raise ToolkitError(str(exc)) from None
    template = run_template(plan, instrument, backend_name, variant)
    _check_compatible(store.get_run(template.run_id), template)
    have = existing_keys(store, template.run_id)
    plan.to_send = [s for s in plan.slots if s.key not in have and (only is None or s.key in only)]
    plan.cached = len(plan.slots) - len(plan.to_send)
    return template


def record(store: Store, plan: Plan, instrument: Instrument, backend: Backend, *, variant: str,
           concurrency: int = 4, flush_rows: int = 1000, flush_seconds: float = 5.0,
           progress: bool = True, breaker: int = DEFAULT_BREAKER,
           only: Collection[str] | None = None) -> RecordSummary:
    """Send the slots the store lacks and store each answer. The recording stops early, keeping
    every row already answered, on a fatal backend error (refused credentials, unreachable
    endpoint) or after ``breaker`` slots in a row failed with the same error (e.g. a server
    that does not return log-probabilities): sending the rest would fail the same way."""
    t0 = time.monotonic()
    template = prepare(store, plan, instrument, backend.name, variant, only)
    summary = RecordSummary(template.run_id, len(plan.slots), plan.cached, len(plan.to_send))
    if not plan.to_send:
        summary.seconds = time.monotonic() - t0
        return summary
    store.check_writable()  # before the first paid request: a store that cannot keep answers wastes them
    writer = RunWriter(store, template, instrument, flush_rows=flush_rows, flush_seconds=flush_seconds)
    bar = Progress(len(plan.to_send), plan.cached, enabled=progress)
    errors: list[tuple[str, str]] = []  # (what makes it distinct, the line shown)
    lock = threading.Lock()

    def one(slot: Slot) -> dict[str, Any]:
        return run_slot(backend, instrument, plan, slot, template.run_id)

    seen: dict[str, int] = {}  # each distinct error once (its first line), with how many slots it hit

    def note(text: str, error: str | None = None) -> None:
        """Keep ``text``, unless the same ``error`` (default: the text itself) was kept already."""
        with lock:
            key = text if error is None else error
            if key in seen:
                seen[key] += 1
            elif len(errors) < 5:
                seen[key] = 1
                errors.append((key, text))

    last_error, streak = "", 0  # the last slot error, and how many slots in a row failed with it
    queue = iter(plan.to_send)
    window = 2 * max(1, concurrency)  # slots handed to the pool ahead of the results read
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures: dict[Future[Any], Slot] = {}

            def top_up() -> None:
                """Hand the pool slots only a little ahead of the results read, so that a stop
                sends at most ``window`` more requests, however far the workers ran ahead."""
                while summary.stopped is None and len(futures) < window:
                    slot = next(queue, None)
                    if slot is None:
                        return
                    futures[pool.submit(one, slot)] = slot

            top_up()
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    s = futures.pop(fut)
                    if fut.cancelled():
                        continue
                    try:
                        row = fut.result()
                    except BackendError as exc:
                        summary.failed += 1
                        note(f"persona {s.persona_id} item {s.item_id} rep {s.repetition}: {exc}", str(exc))
                        bar.update(ok=False)
                        streak = streak + 1 if str(exc) == last_error else 1
                        last_error = str(exc)
                        if summary.stopped is None and (isinstance(exc, FatalBackendError) or streak >= breaker):
                            summary.stopped = (str(exc) if isinstance(exc, FatalBackendError) else
                                               f"{streak} slots in a row failed with the same error: {exc}")
                            for other in futures:
                                other.cancel()
                        continue
                    last_error, streak = "", 0
                    summary.sent += 1
                    served = row.pop("_served", None)
                    if served and served != plan.model and served not in summary.served:
                        summary.served.append(served)
                    writer.add(row)
                    if plan.protocol.mode == "logprob" and all(v is None for v in row.get("digit_logprobs") or [None]):
                        summary.no_digit += 1
                    bar.update(ok=True)
                top_up()
    finally:
        try:
            writer.close()
        except (OSError, ToolkitError) as exc:  # the store, not our code: anything else is a bug and is raised
            note(f"could not write to the store: {type(exc).__name__}: {exc}")
        bar.close()
    if summary.stopped:  # slots handed out but cancelled, and those never handed out
        summary.not_sent = summary.to_send - summary.sent - summary.failed
    lost = writer.unflushed
    for u in writer.unstorable:
        note(f"persona {u.persona_id} item {u.item_id} rep {u.repetition}: {u.error}", str(u.error))
    for e in writer.flush_errors:
        note(f"a timed flush failed (rows kept for the next one): {e}")
    summary.stored = writer.written
    summary.failed += len(writer.unstorable) + lost
    summary.duplicates = writer.duplicates
    summary.invalid = writer.invalid_written
    summary.errors = tuple(_with_count(text, seen[key]) for key, text in errors)
    summary.seconds = time.monotonic() - t0
    return summary
