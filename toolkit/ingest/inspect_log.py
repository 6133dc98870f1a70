"""Inspect logs (``.eval``, or ``.json``) of the ``persona_moral`` task as runs.

One log is one run: the model from the log (without its provider prefix), variant and
temperature from the import options, else the task's arguments and generate config. Each
sample's epoch is the repetition, its metadata names the persona and item; the raw completion
is kept, the rating re-derived with the instrument's rule, failed attempts (kept by the task's
solver) counted and stored. A logprob log becomes a logprob run: the scale digits'
log-probabilities from the first generated token's top-k list. Samples that ended in an error
are not imported (as the recorder stores no row for a failed request), and a note says so.

The log is parsed from the very bytes that were hashed for the manifest (a private copy), and
every request key records that the row came from Inspect: the eval id, the sample id and the
epoch. Re-importing the same log is therefore ``unchanged``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..errors import ToolkitError
from ..hashing import canonical_json, sha256_bytes
from ..protocol.instrument import Instrument
from ..store.manifest import new_run
from ..store.rows import first_problem
from .base import ROW_COLUMNS
from .source import INT32_MAX

if TYPE_CHECKING:
    from .pipeline import ParsedFile

ENDPOINT = "inspect"
SUFFIXES = (".eval",)  # and .json files whose content is an Inspect log


def is_inspect_log(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return True
    if suffix != ".json":
        return False
    with open(path, "rb") as fh:  # an Inspect JSON log opens with its version, status and eval spec
        head = fh.read(2048)
    return b'"eval"' in head and b'"version"' in head


def _whole(value: object) -> bool:
    """A whole number the store's int32 columns hold (1.0 and True are not ids)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT32_MAX


def _read_log(path: Path, data: bytes) -> Any:
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise ToolkitError("reading Inspect logs needs the [inspect] extra: pip install -e '.[inspect]'",
                           path=str(path)) from None
    with tempfile.TemporaryDirectory(prefix="toolkit-inspect-") as tmp:
        copy = Path(tmp) / f"log{path.suffix.lower()}"
        copy.write_bytes(data)  # parse exactly the bytes whose hash the manifest records
        try:
            return read_eval_log(str(copy))
        except Exception as exc:  # a zip, JSON or schema error: all mean "not a log we can read"
            raise ToolkitError(f"not a readable Inspect log: {_first_problem(exc)}", path=str(path)) from None


def _first_problem(exc: Exception) -> str:
    """One line for a reader's error: a schema error's first field and message (pydantic lists
    every field over many lines)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return f"field {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        except Exception:  # not pydantic's shape after all
            pass
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def top_k_digits(output: Any, inst: Instrument) -> tuple[list[float | None], str | None]:
    """The scale digits' log-probabilities in the first generated token's top-k list of a model
    output (None for a digit not listed), and that list as JSON (None without log-probabilities).
    The task's scorer and this importer read them the same way."""
    choices = output.choices if output else []
    lp = choices[0].logprobs if choices else None
    if lp is None or not lp.content:
        return [None] * inst.n_points, None
    tops = lp.content[0].top_logprobs or []
    found: dict[str, float] = {}
    for t in tops:
        key = t.token.strip()
        found[key] = max(found.get(key, -math.inf), float(t.logprob))
    listed = json.dumps([{"token": t.token, "logprob": t.logprob} for t in tops], ensure_ascii=False)
    return [found.get(str(v)) for v in range(inst.scale_min, inst.scale_max + 1)], listed


def parse_inspect_log(path: Path, instrument: Instrument, *, model: str | None = None, variant: str | None = None,
                      temperature: float | None = None, mode: str | None = None,
                      expect_sha256: str | None = None) -> ParsedFile:
    """One log -> a ``ParsedFile`` (manifest and store rows), or one clear error."""
    from .pipeline import ParsedFile, store_rows

    data = path.read_bytes()
    sha = sha256_bytes(data)
    if expect_sha256 is not None and sha != expect_sha256:
        raise ToolkitError(f"SHA-256 mismatch: expected {expect_sha256}, read {sha}", path=str(path))
    log = _read_log(path, data)
    spec = log.eval
    samples = log.samples or []
    notes: list[str] = []
    if not samples:
        raise ToolkitError(f"the log holds no samples (status {log.status})", path=str(path))
    first = samples[0].metadata or {}
    for s in samples:
        meta = s.metadata or {}
        if "item_id" not in meta or "instrument_digest" not in meta or "mode" not in meta:
            raise ToolkitError(f"not a log of the persona_moral task: sample {s.id!r} has no persona/item metadata "
                               "(run toolkit/integrations/inspect_task.py to make one)", path=str(path))
        if meta["instrument_digest"] != instrument.digest:
            raise ToolkitError(f"sample {s.id!r} was asked with instrument {meta.get('instrument')!r} (digest "
                               f"{meta['instrument_digest'][:12]}…), not {instrument.name!r} "
                               f"({instrument.digest[:12]}…): give that instrument with --instrument", path=str(path))
        if meta["mode"] != first["mode"]:
            raise ToolkitError(f"samples of modes {first['mode']} and {meta['mode']} in one log", path=str(path))
        pid, item = meta.get("persona_id"), meta["item_id"]
        if not (_whole(item) and item in instrument.item_ids and (pid is None or _whole(pid))
                and _whole(s.epoch) and s.epoch >= 1):
            raise ToolkitError(f"sample {s.id!r} epoch {s.epoch}: persona {pid!r}, item {meta['item_id']!r} is not a "
                               f"slot of instrument {instrument.name!r}", path=str(path))
    run_mode = first["mode"]
    if mode is not None and mode != run_mode:
        raise ToolkitError(f"--mode {mode} does not fit this log (its samples are {run_mode})", path=str(path))
    if log.status != "success":
        notes.append(f"the log's status is {log.status}: importing the samples it holds")
    kept = [s for s in samples if s.error is None]
    if len(kept) < len(samples):
        notes.append(f"{len(samples) - len(kept)} sample(s) ended in an error and are not imported (run the eval "
                     "again for them)")
    if not kept:
        raise ToolkitError("every sample of the log ended in an error: nothing to import", path=str(path))

    name = model or spec.model.split("/", 1)[-1]
    label = variant or str(spec.task_args.get("variant") or "base")
    temp = temperature
    for candidate in (spec.model_generate_config.temperature, log.plan.config.temperature if log.plan else None,
                      (spec.metadata or {}).get("temperature")):
        if temp is None and candidate is not None:
            temp = float(candidate)
    if temp is None:
        raise ToolkitError("the log records no temperature: give it with --temperature", path=str(path))
    protocol: dict[str, Any] = {"origin": "import", "endpoint": ENDPOINT, "format": "inspect-log",
                                "inspect": {"eval_id": spec.eval_id, "run_id": spec.run_id, "task": spec.task,
                                            "task_version": spec.task_version, "model": spec.model,
                                            "created": spec.created}}
    if first.get("persona_set_digest"):
        protocol["personas"] = {"name": first.get("persona_set"), "digest": first["persona_set_digest"],
                                "count": first.get("persona_count")}
    try:
        manifest = new_run(model=name, variant=label, temperature=temp, mode=run_mode, instrument=instrument,
                           protocol=protocol)
    except ValueError as exc:
        raise ToolkitError(f"{exc} (the log's model is {spec.model!r}; --model names the run)",
                           path=str(path)) from None

    rows: dict[str, list[Any]] = {c: [] for c in [*ROW_COLUMNS, "attempts", "request"]}
    for s in kept:
        meta = s.metadata
        text = s.output.completion if s.output else ""
        failed = list((s.store or {}).get("failed_attempts") or [])
        digits, tops = top_k_digits(s.output, instrument) if run_mode == "logprob" else (None, None)
        request = {"endpoint": ENDPOINT, "epoch": s.epoch, "eval_id": spec.eval_id,
                   "instrument": instrument.digest, "item_id": meta["item_id"], "mode": run_mode, "model": name,
                   "persona_id": meta.get("persona_id"), "repetition": s.epoch, "sample_id": s.id,
                   "temperature": float(temp)}
        for col, value in (("persona_id", meta.get("persona_id")), ("item_id", meta["item_id"]),
                           ("repetition", s.epoch), ("rating", instrument.extract_rating(text)),
                           ("failures", len(failed)), ("response", text), ("digit_logprobs", digits),
                           ("top_logprobs", tops), ("collected_at", s.completed_at or s.started_at),
                           ("attempts", failed or None), ("request", canonical_json(request))):
            rows[col].append(value)
    frame = pl.DataFrame(rows, schema={
        "persona_id": pl.Int64, "item_id": pl.Int64, "repetition": pl.Int64, "rating": pl.Int64,
        "failures": pl.Int64, "response": pl.String, "digit_logprobs": pl.List(pl.Float64),
        "top_logprobs": pl.String, "collected_at": pl.String, "attempts": pl.List(pl.String),
        "request": pl.String}).with_columns(pl.lit(None, dtype=pl.Int64).alias("source_line"))
    frame = frame.sort(["persona_id", "item_id", "repetition"], nulls_last=True)
    twice = frame.filter(frame.select("persona_id", "item_id", "repetition").is_duplicated())
    if len(twice):
        r = twice.row(0, named=True)
        raise ToolkitError(f"persona {r['persona_id']} item {r['item_id']} epoch {r['repetition']} appears in more "
                           "than one sample", path=str(path))
    if (bad := first_problem(frame, run_mode)) is not None:  # the one row rule (recorder, importers)
        r = frame.row(bad[0], named=True)
        raise ToolkitError(f"sample of persona {r['persona_id']} item {r['item_id']} epoch {r['repetition']}: "
                           f"{bad[1]}", path=str(path))
    table = store_rows(frame.drop("request"), manifest, provenance=f"{ENDPOINT}:{path.name}@sha256:{sha}",
                       requests=frame["request"])
    manifest.sources = [{"file": path.name, "sha256": sha, "bytes": len(data)}]
    return ParsedFile(path, manifest, table, notes)
