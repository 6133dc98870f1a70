"""Runs back out of the store: the published CSV tree, or one long-format file per run.

``csv`` writes ``<variant>/<model>_tempNN[_self|_logprobs].csv`` with the published column
names, so that ``toolkit import DIR`` restores the same runs: same rows, same request keys,
same fingerprints (a test holds this for every shared dataset). A column every row of a run
leaves empty (say, responses never imported) is left out, so that it comes back empty rather
than as empty text. ``parquet`` and ``jsonl`` write every stored column of every row, under
the long format's names where one exists (persona, item, repetition, ...), so the files
read back with ``toolkit import`` (persona and self runs) and keep everything else for
other tools. Files are written atomically; an existing file is never overwritten.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import ToolkitError
from ..ingest.pipeline import model_from_name, temperature_from_name
from ..store import RunManifest, Store
from ..store.atomic import atomic_write_bytes
from ..store.output import refuse_inside_store

EXPORT_FORMATS = ("csv", "parquet", "jsonl")
LONG_NAMES = {"persona_id": "persona", "item_id": "item"}


@dataclass
class Exported:
    run_id: str
    rows: int
    path: str


def temperature_tag(t: float) -> str:
    """The published ``_tempNN`` tag: units digit then decimals (0.1 -> 01, 1.25 -> 125)."""
    if not 0 <= t < 10:
        raise ValueError(t)
    units, _, decimals = f"{t:.6f}".rstrip("0").partition(".")
    return units + (decimals or "0")


def _not_a_file_name(m: RunManifest) -> bool:
    """A model or variant that would name another folder (or none) once used in a path."""
    return any(sep in m.model or sep in m.variant for sep in ("/", "\\")) or m.variant in ("", ".", "..")


def csv_name(m: RunManifest) -> str:
    """The published file name of a run; refused when importing it would not give the run back."""
    suffix = {"persona": "", "self": "_self", "logprob": "_logprobs"}[m.mode]
    try:
        name = f"{m.model}_temp{temperature_tag(m.temperature)}{suffix}"
    except ValueError:
        name = ""
    round_trips = bool(name) and model_from_name(name) == m.model and temperature_from_name(name) == m.temperature
    if _not_a_file_name(m) or not round_trips:
        raise ToolkitError(f"run {m.run_id} has no published CSV file name that imports back as the same run "
                           "(model, variant or temperature); export it as parquet or jsonl")
    return f"{m.variant}/{name}.csv"


def _published(m: RunManifest, rows: pl.DataFrame, scale: range) -> pl.DataFrame:
    """A run's rows under the published CSV columns."""
    cols: list[pl.Expr] = []
    if m.mode != "self":
        cols.append(pl.col("persona_id"))
    cols += [pl.col("item_id").alias("question_id"), pl.col("repetition").alias("run_index")]
    if m.mode == "logprob":
        lp = pl.col("digit_logprobs")
        cols += [pl.col("response").alias("first_token")]
        cols += [lp.list.get(i, null_on_oob=True).map_elements(repr, return_dtype=pl.String)
                 .alias(f"digit_{k}_logprob") for i, k in enumerate(scale)]
        cols += [pl.col("top_logprobs").alias("raw_top_logprobs_json"), pl.lit(m.temperature).alias("temperature")]
    else:
        cols += [pl.col("rating"), pl.col("failures"), pl.col("response")]
    cols.append(pl.col("collected_at"))
    out = rows.select(cols)
    optional = {"response", "first_token", "raw_top_logprobs_json", "collected_at"}
    return out.drop([c for c in out.columns if c in optional and out[c].null_count() == len(out)])


def _long(m: RunManifest, rows: pl.DataFrame) -> pl.DataFrame:
    """Every stored column, identity columns added, long-format names where they exist."""
    identity = {"model": m.model, "variant": m.variant, "temperature": m.temperature, "mode": m.mode}
    return rows.rename(LONG_NAMES).with_columns(pl.lit(v).alias(k) for k, v in identity.items())


def _encode(df: pl.DataFrame, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "csv":
        df.write_csv(buf)
    elif fmt == "parquet":
        df.write_parquet(buf, compression="zstd")
    else:
        for row in df.iter_rows(named=True):
            buf.write((json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))
    return buf.getvalue()


def export_runs(store: Store, runs: list[RunManifest], out: str | Path, fmt: str = "csv") -> list[Exported]:
    """Write each run to ``out`` in ``fmt``; every name is checked before anything is written."""
    if fmt not in EXPORT_FORMATS:
        raise ToolkitError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    root = refuse_inside_store(out)
    names = {m.run_id: csv_name(m) if fmt == "csv" else
             f"{m.variant}/{m.model}_{m.mode}_T{m.temperature!r}.{fmt}" for m in runs}
    for m in runs:
        if fmt != "csv" and _not_a_file_name(m):
            raise ToolkitError(f"run {m.run_id}: its model or variant name cannot be a file name")
    clash = len(set(names.values())) != len(names)
    existing = [n for n in names.values() if (root / n).exists()]
    if clash or existing:
        raise ToolkitError(f"export would overwrite {existing[0] if existing else 'its own files'} in {root}; "
                           "choose an empty --out folder")
    done = []
    for m in runs:
        rows = pl.from_arrow(store.read_run(m))
        assert isinstance(rows, pl.DataFrame)
        if rows["source_line"].null_count() == 0:  # an imported run: rows in their file's order
            rows = rows.sort("source_line")
        if fmt == "csv" and rows.height != rows.select("persona_id", "item_id", "repetition").n_unique():
            raise ToolkitError(f"run {m.run_id} holds several answers for some slots (record --refresh); the "
                               "published CSV layout has one per slot: export it with --format parquet or jsonl")
        inst = store.instrument(m.instrument["digest"])
        frame = (_published(m, rows, range(inst.scale_min, inst.scale_max + 1)) if fmt == "csv"
                 else _long(m, rows))
        if fmt == "jsonl" and "digit_logprobs" in frame.columns:  # JSON has no -inf: keep the exact repr as text
            frame = frame.with_columns(pl.col("digit_logprobs").list.eval(
                pl.element().map_elements(repr, return_dtype=pl.String)))
        target = root / names[m.run_id]
        atomic_write_bytes(target, _encode(frame, fmt), exclusive=True)
        done.append(Exported(m.run_id, len(frame), str(target)))
    return done
