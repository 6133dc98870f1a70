"""One file -> validated store rows and a sealed run manifest, whatever its format.

Order of work: read the bytes once (hashed for the manifest's sources), open them as text
cells, detect the format, parse, then the checks every format shares: the run's identity,
item ids of the instrument, and duplicate slots (identical copies collapse, conflicting ones
are an error naming the second line). Nothing here touches the store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from ..errors import ToolkitError
from ..hashing import request_keys, sha256_bytes
from ..protocol.instrument import Instrument
from ..store import ROW_SCHEMA, RunManifest
from ..store.manifest import new_run
from ..store.rows import first_problem
from ..store.schema import TOKEN_COLUMNS
from . import SOURCE_FORMATS, long_format
from .base import SourceFormat
from .source import Source, first_bad, open_source, read_source

ENDPOINT = "published-csv"  # the request "endpoint" of every imported row (part of its key)
_TEMP_RE = re.compile(r"_temp(\d+)")
_SUFFIXES = ("_self", "_logprobs")


@dataclass
class ParsedFile:
    path: Path
    manifest: RunManifest
    table: pa.Table
    notes: list[str]


def temperature_from_name(stem: str) -> float | None:
    """``_temp01`` -> 0.1, ``_temp10`` -> 1.0, ``_temp125`` -> 1.25 (first digit is the units)."""
    m = _TEMP_RE.search(stem)
    if not m:
        return None
    digits = m.group(1)
    return float(f"{digits[0]}.{digits[1:] or '0'}")


def model_from_name(stem: str) -> str:
    name = _TEMP_RE.sub("", stem)
    changed = True
    while changed:
        changed = False
        for suf in _SUFFIXES:
            if name.endswith(suf):
                name, changed = name[: -len(suf)], True
    return name


def detect(src: Source, mode: str | None) -> SourceFormat:
    """The first format whose columns match (and whose mode is ``mode``, when given)."""
    cols, inst = src.columns, src.instrument
    for fmt in SOURCE_FORMATS:
        if fmt.matches(cols, inst) and (mode is None or fmt.mode in (None, mode)):
            return fmt
    if mode is not None:
        for fmt in SOURCE_FORMATS:
            if fmt.mode == mode:
                missing = [c for c in fmt.required(inst) if c not in cols]
                raise src.error(f"missing column(s) {', '.join(missing)} for mode {mode}")
    names = ", ".join(f"{f.name} ({f.summary})" for f in SOURCE_FORMATS)
    raise ToolkitError(f"columns {', '.join(cols)} match no import format; known formats: {names}. "
                       "Name other columns with --columns", path=str(src.path), line=1)


def parse_file(path: Path, instrument: Instrument, *, model: str | None = None, variant: str | None = None,
               temperature: float | None = None, mode: str | None = None, columns: dict[str, str] | None = None,
               expect_sha256: str | None = None, personas: dict[str, Any] | None = None) -> ParsedFile:
    data = read_source(path)
    source_sha = sha256_bytes(data)
    if expect_sha256 is not None and source_sha != expect_sha256:  # the very bytes parsed below
        raise ToolkitError(f"SHA-256 mismatch: expected {expect_sha256}, read {source_sha}", path=str(path))
    unknown = sorted(set((columns or {}).values()) - set(long_format.FIELDS))
    if unknown:  # a misspelt field would otherwise be ignored as an extra column
        raise ToolkitError(f"--columns names unknown field(s) {', '.join(unknown)} (the long format's fields: "
                           f"{', '.join(long_format.FIELDS)})", path=str(path))
    src = open_source(path, data, instrument, columns)
    fmt = detect(src, mode)
    missing = [c for c in fmt.required(instrument) if c not in src.columns]
    if missing:
        raise ToolkitError(f"missing column(s) {', '.join(missing)} for format {fmt.name}", path=str(path), line=1)
    if src.table.height == 0:
        raise ToolkitError("file has a header but no rows", path=str(path), line=2)
    got = fmt.parse(src)
    if mode is not None and got.mode != mode:
        raise ToolkitError(f"--mode {mode} does not fit this file (format {fmt.name} gives {got.mode} rows)",
                           path=str(path))

    stem = path.stem
    model = model or got.model or model_from_name(stem)
    variant = variant or got.variant or path.resolve().parent.name
    if temperature is None:
        temperature = temperature_from_name(stem)
    if temperature is None:
        temperature = got.temperature
    if temperature is None:
        raise ToolkitError("no _tempNN in the file name: give the temperature with --temperature", path=str(path))
    protocol: dict[str, Any] = {"origin": "import", "endpoint": ENDPOINT,
                                "format": f"{got.mode}-csv" if fmt.mode else fmt.name}
    if personas is not None:  # the persona file the user says answered it (PersonaSet.named)
        if got.mode == "self":
            raise ToolkitError("--personas names the persona file of persona and logprob runs; a self run has none",
                               path=str(path))
        if (i := first_bad(got.rows["persona_id"] >= personas["count"])) is not None:
            raise src.error(f"persona {got.rows['persona_id'][i]} is beyond the {personas['count']} personas of "
                            f"{personas['name']!r}", i)
        protocol["personas"] = personas
    try:
        manifest = new_run(model=model, variant=variant, temperature=float(temperature), mode=got.mode,
                           instrument=instrument, protocol=protocol)
    except ValueError as exc:
        raise ToolkitError(str(exc), path=str(path)) from None

    rows = got.rows.with_columns(pl.Series("source_line", src.lines.start, dtype=pl.Int64))
    if (i := first_bad(~rows["item_id"].is_in(instrument.item_ids))) is not None:
        raise src.error(f"question_id {rows['item_id'][i]} is not an item of instrument {instrument.name!r}", i)
    if (bad := first_problem(rows, got.mode)) is not None:  # the one row rule (recorder, importers, Inspect)
        raise src.error(bad[1], bad[0])
    rows = _collapse_duplicates(rows, src)
    table = store_rows(rows, manifest, provenance=f"{ENDPOINT}:{path.name}@sha256:{source_sha}")
    manifest.sources = [{"file": path.name, "sha256": source_sha, "bytes": len(data)}]
    return ParsedFile(path, manifest, table, src.notes)


def _collapse_duplicates(rows: pl.DataFrame, src: Source) -> pl.DataFrame:
    """Identical copies of a slot collapse to the first; conflicting ones are an error."""
    slot = ["persona_id", "item_id", "repetition"]
    rows = rows.with_row_index("_row")
    dup = rows.filter(pl.len().over(slot) > 1)
    if len(dup):
        content = ["rating", "failures", "response", "digit_logprobs", "top_logprobs"]
        distinct = dup.unique(slot + content, keep="first", maintain_order=True)
        conflict = distinct.filter(pl.len().over(slot) > 1).sort("_row")
        if len(conflict):
            r = conflict.row(1, named=True) if len(conflict) > 1 else conflict.row(0, named=True)
            raise src.error(f"slot persona={r['persona_id']} item={r['item_id']} repetition={r['repetition']} "
                            "appears more than once with different values", int(r["_row"]))
        rows = rows.unique(slot, keep="first", maintain_order=True)
    return rows.drop("_row")


def imported_requests(rows: pl.DataFrame, manifest: RunManifest) -> pl.Series:
    """The canonical request of every imported row, built column-wise: exactly
    ``canonical_json({"endpoint", "instrument", "item_id", "mode", "model", "persona_id",
    "repetition", "temperature"})`` (keys in sorted order; a test holds the equality)."""
    persona_json = pl.col("persona_id").cast(pl.String).fill_null("null")
    text = pl.concat_str([
        pl.lit('{"endpoint":' + json.dumps(ENDPOINT) + ',"instrument":' + json.dumps(manifest.instrument["digest"])
               + ',"item_id":'),
        pl.col("item_id").cast(pl.String),
        pl.lit(',"mode":' + json.dumps(manifest.mode, ensure_ascii=False)
               + ',"model":' + json.dumps(manifest.model, ensure_ascii=False) + ',"persona_id":'),
        persona_json,
        pl.lit(',"repetition":'),
        pl.col("repetition").cast(pl.String),
        pl.lit(',"temperature":' + json.dumps(float(manifest.temperature)) + "}"),
    ])
    return rows.select(text.alias("request"))["request"]


def store_rows(rows: pl.DataFrame, manifest: RunManifest, *, provenance: str,
               requests: pl.Series | None = None) -> pa.Table:
    """Parsed rows -> store rows: identity columns, the canonical request (``requests``, else
    the published-file request of each row) and its key. Failed attempts' texts are kept when
    the source has them."""
    requests = (imported_requests(rows, manifest) if requests is None else requests).alias("request")
    out = rows.with_columns(
        requests,
        request_keys(requests).alias("request_key"),
        pl.lit(manifest.run_id).alias("run_id"),
        pl.lit(manifest.instrument["digest"]).alias("instrument"),
        pl.lit(provenance).alias("provenance"),
        pl.lit(None, dtype=pl.String).alias("finish_reason"),
        pl.lit(None, dtype=pl.Float64).alias("latency_s"),
        *(pl.lit(None, dtype=pl.Int64).alias(name) for name in TOKEN_COLUMNS if name not in rows.columns),
    )
    if "attempts" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias("attempts"))
    return out.select(ROW_SCHEMA.names).to_arrow().cast(ROW_SCHEMA)
