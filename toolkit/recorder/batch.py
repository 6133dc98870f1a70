"""Recording through a provider's batch API, by file: about half the price of live requests,
no rate limits, answers within a day (OpenAI's Batch API format; vLLM's offline ``run_batch``
reads and writes the same).

A batch request line is ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}``, where ``body`` is exactly what the live recorder would send for that attempt of that
slot (``OpenAIBackend.chat_payload`` / ``logprob_payload``) and ``custom_id`` is the SHA-256 of
the body's canonical JSON: content-addressed like everything else, so a result can only ever
answer the request it was asked for, whatever file it comes back in.

Collecting replays the live recorder (``record.run_slot``: the same retry rule, row checks and
token sums) with the backend's ``send`` answered from the result files. A slot whose every
attempt so far is answered is stored; a slot that needs an attempt no file holds (the first one,
or a retry of an unparseable answer) is not stored, and that attempt's request goes into the
next batch file. So `record --batch-file next.jsonl --batch-results out1.jsonl` stores what the
first batch answered and writes the retries as a follow-up batch, which holds exactly the slots
still unanswered; a slot is never asked twice for the same attempt. A slot is stored only once
all its attempts are answered, so each round is given every result file of the run so far
(`--batch-results out1.jsonl --batch-results out2.jsonl`): the earlier attempts of a retried
slot are in the earlier files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from ..hashing import canonical_json, parse_json, sha256_text
from ..protocol.instrument import Instrument
from ..store import Store
from ..store.atomic import atomic_write_bytes
from ..store.output import check_output_file
from .backends.base import BackendError
from .backends.openai import OpenAIBackend, chat_body_problem
from .plan import Plan
from .record import prepare, run_slot
from .writer import RunWriter

URL = "/v1/chat/completions"
MAX_BAD_LINES = 10  # listed in the error of a refused result file


class NeedRequest(BackendError):
    """An attempt no result file answers: it goes into the next batch file."""

    def __init__(self, payload: dict[str, Any]):
        super().__init__("not answered by the batch results")
        self.payload = payload


def custom_id(payload: dict[str, Any]) -> str:
    return sha256_text(canonical_json(payload))


@dataclass
class Results:
    """The answers of one or more batch output files, by custom_id, and the requests they
    report as failed (an error object or a status other than 200): asked again."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # custom_id -> "file:line", for messages
    failed: dict[str, str] = field(default_factory=dict)  # custom_id -> the reason the provider gave


def read_results(paths: list[str | Path]) -> Results:
    """Every line of the batch output files, checked: a line that is not JSON, has no
    custom_id of 64 hex digits, repeats a custom_id, or holds a body that is not a chat
    completion refuses the files, listing the lines (nothing is stored then)."""
    out = Results()
    bad: list[str] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ToolkitError(f"cannot read the batch results: {exc}", path=str(path)) from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            problem = _line_problem(line, out, where)
            if problem is not None:
                bad.append(f"{where}: {problem}")
    if bad:
        more = f" (and {len(bad) - MAX_BAD_LINES} more)" if len(bad) > MAX_BAD_LINES else ""
        raise ToolkitError("batch results refused, nothing stored:\n  " + "\n  ".join(bad[:MAX_BAD_LINES]) + more)
    return out


def _line_problem(line: str, out: Results, where: str) -> str | None:
    try:
        doc = parse_json(line)
    except ValueError:
        return "not a JSON object"
    if not isinstance(doc, dict):
        return "not a JSON object"
    cid = doc.get("custom_id")
    if not isinstance(cid, str) or len(cid) != 64 or any(c not in "0123456789abcdef" for c in cid):
        return "custom_id is not a request key (64 lowercase hex digits)"
    if cid in out.where or cid in out.failed:
        return f"custom_id {cid[:12]}… repeats line {out.where.get(cid, '?')}"
    response = doc.get("response")
    error = doc.get("error")
    status = response.get("status_code") if isinstance(response, dict) else None
    if error is not None or status != 200:
        reason = error.get("message") if isinstance(error, dict) else None
        out.failed[cid] = str(reason or error or f"HTTP {status}")[:200]
        out.where[cid] = where
        return None
    body = response.get("body") if isinstance(response, dict) else None
    if not isinstance(body, dict):
        return "response.body is not an object"
    problem = chat_body_problem(body, {"logprobs": True})  # the request's own kind is checked when it is matched
    if problem is not None:
        return problem
    out.bodies[cid] = body
    out.where[cid] = where
    return None


@dataclass
class Collected:
    stored: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)  # requests for the next batch file
    failed: dict[str, str] = field(default_factory=dict)  # slot errors (a reply that cannot be analysed)
    provider_failed: int = 0  # requests the results report failed or expired (asked again)
    unused: list[str] = field(default_factory=list)  # result lines that answer no request of the plan


def collect(store: Store, plan: Plan, instrument: Instrument, backend: OpenAIBackend, results: Results, *,
            variant: str) -> Collected:
    """Store every slot the results answer completely; the attempts they do not answer become
    the next batch's requests. Results that answer no request of this plan refuse the whole
    collection (another run's batch?), before anything is stored."""
    template = prepare(store, plan, instrument, backend.name, variant)
    used: set[str] = set()

    def answer(payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        cid = custom_id(payload)
        used.add(cid)
        body = results.bodies.get(cid)
        if body is None:
            raise NeedRequest(payload)
        problem = chat_body_problem(body, payload)
        if problem is not None:
            raise BackendError(f"{results.where[cid]}: {problem}")
        return body, 0.0  # a batch's latency is not a request's

    backend.send = answer
    out = Collected()
    rows = []
    for slot in plan.to_send:
        try:
            rows.append(run_slot(backend, instrument, plan, slot, template.run_id))
        except NeedRequest as need:
            out.pending.append(need.payload)
            if custom_id(need.payload) in results.failed:
                out.provider_failed += 1
        except BackendError as exc:
            out.failed[slot.key] = str(exc)
    unused = set(results.bodies) - used
    if unused:  # answers of slots stored in an earlier round are expected; answers of no slot are not
        unused -= _possible_ids(plan, backend)
    out.unused = sorted(results.where[c] for c in unused)
    if out.unused:
        raise ToolkitError(f"{len(out.unused)} batch result line(s) answer no request of this plan (another run's "
                           "batch, other record options, or a follow-up batch without the earlier result files it "
                           f"follows?), nothing stored: {', '.join(out.unused[:5])}")
    if rows:
        store.check_writable()
        writer = RunWriter(store, template, instrument)
        try:
            for row in rows:
                row.pop("_served", None)
                writer.add(row)
        finally:
            writer.close()
        out.stored = writer.written
    return out


def _possible_ids(plan: Plan, backend: OpenAIBackend) -> set[str]:
    """The custom_id of every request the plan's slots could ever make (every attempt of the
    retry rule): what a result file may answer."""
    proto = plan.protocol
    ids = set()
    for slot in plan.slots:
        if proto.mode == "logprob":
            ids.add(custom_id(backend.logprob_payload(slot.messages, seed=slot.seed)))
            continue
        for attempt in range(proto.max_attempts + 1):
            tokens = proto.max_tokens if attempt < proto.max_attempts else proto.long_max_tokens
            ids.add(custom_id(backend.chat_payload(slot.messages, temperature=proto.temperature, max_tokens=tokens,
                                                   seed=slot.seed + attempt)))
    return ids


def request_lines(payloads: list[dict[str, Any]]) -> bytes:
    """A batch input file's bytes: one request line per payload, in plan order."""
    lines = [json.dumps({"custom_id": custom_id(p), "method": "POST", "url": URL, "body": p},
                        ensure_ascii=False, sort_keys=True) for p in payloads]
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


def is_request_file(path: Path) -> bool:
    """A batch input file this command wrote (empty, or every line a request line): the only
    file ``--batch-file`` replaces."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        docs = [parse_json(line) for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return all(isinstance(d, dict) and set(d) == {"custom_id", "method", "url", "body"} for d in docs)


def batch_file_target(path: str | Path, store: Store | None = None) -> Path:
    """Where ``--batch-file`` may write: outside any store (``store`` too, even before its first
    run makes it look like one), new or a batch input file of ours (checked before anything is
    collected, so a refused path costs nothing)."""
    return check_output_file(path, ours=is_request_file, writing=None if store is None else store.root)


def write_requests(path: str | Path, payloads: list[dict[str, Any]]) -> int:
    """The batch input file (atomic)."""
    atomic_write_bytes(batch_file_target(path), request_lines(payloads))
    return len(payloads)
