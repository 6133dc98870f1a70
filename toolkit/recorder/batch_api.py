"""`record --batch`: the batch files of ``batch.py`` sent through a provider's Files and Batches
endpoints (OpenAI's API; the same paths under any compatible base URL), resumable.

Each call does what the state allows, and returns:

1. every batch submitted earlier and not yet collected is polled; a finished one (completed,
   expired, cancelled, failed) has its output and error files downloaded into the store's
   ``batches/`` folder (atomic writes) and is marked collected;
2. every downloaded result file is collected (``batch.collect``): the slots answered are
   stored, through the live recorder's own slot logic;
3. the requests still needed that no batch in flight holds are uploaded as a new batch file
   and a batch is created for it.

The state (``batches/<run>.json``) is written after every step that costs money or takes the
provider's time: after an upload (so a crash before the batch is created resumes from the
uploaded file, never uploading twice), after a batch is created, after its files are saved. A
request in a batch in flight is never submitted again, so no slot is paid for twice.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ToolkitError
from ..hashing import parse_json
from ..protocol.instrument import Instrument
from ..store import Store
from ..store.atomic import atomic_write_bytes
from .backends.base import BackendError
from .backends.openai import OpenAIBackend
from .batch import URL, Collected, collect, custom_id, read_results, request_lines
from .plan import Plan

STATE_FORMAT = "toolkit-batches/1"
FINISHED = ("completed", "expired", "cancelled", "failed")
MAX_FILE_BYTES = 1 << 31  # a batch output larger than this is not one this recorder asked for


class BatchClient:
    """The provider's /files and /batches endpoints, through the backend's HTTP client (its
    base URL, credentials and timeout)."""

    def __init__(self, backend: OpenAIBackend):
        self.backend = backend
        self.client = backend.client

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"{method} {path}: {type(exc).__name__}: {self.backend.redact(str(exc))}") from None
        if not 200 <= resp.status_code < 300:
            raise BackendError(f"{method} {path}: HTTP {resp.status_code}: {self.backend.redact(resp.text[:200])}")
        try:
            doc = parse_json(resp.text)
        except ValueError:
            raise BackendError(f"{method} {path}: the reply is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise BackendError(f"{method} {path}: the reply has no id")
        return doc

    def upload(self, data: bytes, name: str) -> str:
        boundary = secrets.token_hex(16)
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        doc = self._json("POST", "/files", content=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return str(doc["id"])

    def create(self, input_file_id: str) -> dict[str, Any]:
        return self._json("POST", "/batches", json={"input_file_id": input_file_id, "endpoint": URL,
                                                    "completion_window": "24h"})

    def get(self, batch_id: str) -> dict[str, Any]:
        return self._json("GET", f"/batches/{quote(batch_id, safe='')}")

    def content(self, file_id: str) -> bytes:
        path = f"/files/{quote(file_id, safe='')}/content"
        try:
            resp = self.client.get(path)
        except httpx.HTTPError as exc:
            raise BackendError(f"GET {path}: {type(exc).__name__}: {self.backend.redact(str(exc))}") from None
        if resp.status_code != 200:
            raise BackendError(f"GET {path}: HTTP {resp.status_code}")
        if len(resp.content) > MAX_FILE_BYTES:
            raise BackendError(f"GET {path}: larger than {MAX_FILE_BYTES} bytes")
        return resp.content


@dataclass
class Online:
    collected: Collected
    submitted: str | None = None  # the batch created by this call
    submitted_requests: int = 0
    in_flight: list[tuple[str, str]] = field(default_factory=list)  # (batch id, status) still running


def _state_path(store: Store, run_id: str) -> Path:
    return store.root / "batches" / (quote(run_id, safe="") + ".json")


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"format": STATE_FORMAT, "batches": []}
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ToolkitError(f"the batch state cannot be read: {exc}", path=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or not isinstance(doc.get("batches"), list):
        raise ToolkitError(f"not a batch state file ({STATE_FORMAT})", path=str(path))
    for i, entry in enumerate(doc["batches"]):
        problem = _entry_problem(entry)
        if problem is not None:
            raise ToolkitError(f"batch state entry #{i}: {problem}", path=str(path))
    return doc


def _entry_problem(entry: object) -> str | None:
    """The schema of one submitted batch in the state file (None: it holds)."""
    if not isinstance(entry, dict):
        return "not an object"
    if not isinstance(entry.get("input_file_id"), str) or not entry["input_file_id"]:
        return "input_file_id is not a file id"
    if entry.get("batch_id") is not None and not isinstance(entry["batch_id"], str):
        return "batch_id is neither null nor a batch id"
    ids = entry.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(c, str) and len(c) == 64 for c in ids):
        return "ids is not a list of request keys"
    results = entry.get("results", [])
    if not isinstance(results, list) or not all(isinstance(r, str) and r == Path(r).name and r.endswith(".jsonl")
                                                and not r.startswith(".") for r in results):
        return "results is not a list of file names in the batch folder"
    if not isinstance(entry.get("collected", False), bool):
        return "collected is not true or false"
    return None


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def run_online(store: Store, plan: Plan, instrument: Instrument, backend: OpenAIBackend, run_id: str, *,
               variant: str) -> Online:
    """One step of a batch recording (see the module's docstring)."""
    api = BatchClient(backend)
    path = _state_path(store, run_id)
    state = _load(path)
    folder = path.with_suffix("")
    in_flight: list[tuple[str, str]] = []
    for entry in state["batches"]:
        if entry.get("collected"):
            continue
        if entry.get("batch_id") is None:  # uploaded, but the batch was never created: create it now
            entry["batch_id"] = api.create(entry["input_file_id"])["id"]
            _save(path, state)
        info = api.get(entry["batch_id"])
        entry["status"] = str(info.get("status"))
        if entry["status"] not in FINISHED:
            in_flight.append((entry["batch_id"], entry["status"]))
            continue
        for key in ("output_file_id", "error_file_id"):
            file_id = info.get(key)
            if isinstance(file_id, str) and file_id:
                local = folder / f"{quote(entry['batch_id'], safe='')}.{key.split('_')[0]}.jsonl"
                local.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(local, api.content(file_id))
                entry.setdefault("results", []).append(local.name)
        entry["collected"] = True
        _save(path, state)
    results = [folder / name for entry in state["batches"] for name in entry.get("results", [])]
    got = collect(store, plan, instrument, backend, read_results(list(results)), variant=variant)
    waiting = {cid for entry in state["batches"] if not entry.get("collected") for cid in entry.get("ids", [])}
    fresh = [p for p in got.pending if custom_id(p) not in waiting]
    out = Online(got, in_flight=in_flight)
    if fresh:
        entry = {"input_file_id": api.upload(request_lines(fresh), f"{quote(run_id, safe='')}.jsonl"), "batch_id": None,
                 "ids": [custom_id(p) for p in fresh], "status": "uploaded"}
        state["batches"].append(entry)
        _save(path, state)  # before the batch is created: a crash now resumes without a second upload
        created = api.create(entry["input_file_id"])
        entry["batch_id"], entry["status"] = created["id"], str(created.get("status"))
        _save(path, state)
        out.submitted, out.submitted_requests = entry["batch_id"], len(fresh)
        out.in_flight.append((entry["batch_id"], entry["status"]))
    return out
