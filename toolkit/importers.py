"""Importers for the published CSV formats (persona runs, self runs, digit-logprob runs).

Files stream through: each is parsed, validated and written in turn, and the manifests are
saved together at the end, so a bad file in a batch changes no run (the segments the batch
wrote are removed again). Rows go through the store's one segment
writer and one request-key function, like recorded rows.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from . import __version__
from .errors import ToolkitError
from .hashing import sha256_bytes
from .instrument import Instrument, load_instrument
from .store import MODES, ROW_SCHEMA, RunManifest, Store, make_run_id
from .store.manifest import check_run_fields

ENDPOINT = "published-csv"
_TEMP_RE = re.compile(r"_temp(\d+)")
_SUFFIXES = ("_self", "_logprobs")
PERSONA_COLUMNS = ["persona_id", "question_id", "run_index", "rating", "failures", "response", "collected_at"]
SELF_COLUMNS = [c for c in PERSONA_COLUMNS if c != "persona_id"]
LOGPROB_BASE_COLUMNS = ["persona_id", "question_id"]


@dataclass
class ImportResult:
    path: str
    run_id: str
    rows: int
    status: str  # added | unchanged | replaced


@dataclass
class _Parsed:
    path: Path
    manifest: RunManifest
    table: pa.Table
    source: dict


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


def detect_mode(columns: Sequence[str], instrument: Instrument) -> str:
    if f"digit_{instrument.scale_min}_logprob" in columns:
        return "logprob"
    return "persona" if "persona_id" in columns else "self"


def _walk_csv(folder: Path) -> list[Path]:
    """Every .csv file under a folder; a link that loops or leads nowhere is an error, not a
    file silently left out of an import."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(dirnames + filenames):
            entry = Path(dirpath) / name
            if entry.is_symlink():
                try:
                    entry.resolve(strict=True)
                except (OSError, RuntimeError):
                    raise ToolkitError("symbolic link loops or leads nowhere", path=str(entry)) from None
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".csv") and (Path(dirpath) / f).is_file())
    return sorted(found)


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_symlink() and not p.exists():
            raise ToolkitError("symbolic link loops or leads nowhere", path=str(p))
        if p.is_dir():
            found = _walk_csv(p)
            if not found:
                raise ToolkitError("folder holds no .csv files", path=str(p))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise ToolkitError("no such file or folder", path=str(p))
    return files


class _Lines:
    """Maps data-row indices to 1-based file line numbers, quoted newlines included."""

    def __init__(self, table: pa.Table, data: bytes):
        n = table.num_rows
        base = pl.int_range(0, n, dtype=pl.Int64, eager=True) + 2
        if data.count(b"\n") - data.endswith(b"\n") == n:  # no newline inside any field
            self.start = base.to_numpy()
            return
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        extra = pl.sum_horizontal([pl.col(c).str.count_matches("\n") for c in df.columns])
        newlines = df.select(extra.alias("n"))["n"].cast(pl.Int64)
        self.start = (base + newlines.cum_sum() - newlines).to_numpy()

    def __call__(self, row: int) -> int:
        return int(self.start[row])


def read_source(path: Path) -> bytes:
    """A source file's bytes, read once (they are hashed and parsed from this one copy)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ToolkitError("file vanished before it could be read", path=str(path)) from None
    except IsADirectoryError:
        raise ToolkitError("is a folder, not a file", path=str(path)) from None
    except OSError as exc:
        raise ToolkitError(f"cannot be read: {exc.strerror or exc}", path=str(path)) from None


def normalise_text(data: bytes) -> bytes:
    """UTF-8 BOM dropped, old-Mac CR-only line ends made LF (CRLF is read as is)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\r" in data and b"\n" not in data:
        data = data.replace(b"\r", b"\n")
    return data


def _csv_error_line(text: str, width: int) -> int | None:
    """The first line of the first row the Python csv module finds of the wrong width, or
    where a broken quote (one never closed swallows the rest of the file) begins."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for row in reader:
            if len(row) != width:
                return start
            start = reader.line_num + 1
    except csv.Error:
        return start
    return None


def _read_csv(path: Path, data: bytes) -> pa.Table:
    data = normalise_text(data)
    if not data.strip():
        raise ToolkitError("file is empty", path=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise ToolkitError(f"not valid UTF-8 (byte {exc.start})", path=str(path), line=bad_line) from None
    try:
        header = next(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ToolkitError(f"malformed CSV header: {exc}", path=str(path), line=1) from None
    if len(set(header)) != len(header):
        raise ToolkitError("duplicate column names in header", path=str(path), line=1)
    try:
        # One thread: files are already parsed in parallel, and Arrow's own CSV threads were
        # seen to outlive an error and abort the interpreter at exit.
        return pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                                 strings_can_be_null=False),
            read_options=pacsv.ReadOptions(block_size=1 << 26, use_threads=False),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        line: int | None = _csv_error_line(text, len(header))
        if line is None:
            m = re.search(r"row (\d+)", msg)
            line = int(m.group(1)) + 1 if m else None
        raise ToolkitError(f"malformed CSV: {msg}", path=str(path), line=line) from None


INT32_MAX = 2**31 - 1
INT16_MAX = 2**15 - 1


def _int_column(df: pl.DataFrame, col: str, path: Path, lines: _Lines, *, lo: int | None = 0,
                hi: int | None = INT32_MAX) -> pl.Series:
    """An integer column, every value within [lo, hi] (the store's integer types)."""
    raw = df[col].str.strip_chars()
    values = raw.cast(pl.Int64, strict=False)
    bad = values.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise ToolkitError(f"column {col!r}: {df[col][i]!r} is not an integer", path=str(path), line=lines(i))
    out = (values < lo) if lo is not None else pl.repeat(False, len(values), eager=True)
    if hi is not None:
        out = out | (values > hi)
    if out.any():
        i = int(out.arg_true()[0])
        raise ToolkitError(f"column {col!r}: {values[i]} is outside {lo}..{hi}", path=str(path), line=lines(i))
    return values


def _nulls(n: int, dtype: pl.DataType | type[pl.DataType]) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True)


def _first_bad(mask: pl.Series) -> int | None:
    return int(mask.arg_true()[0]) if mask.any() else None


def _parse_file(
    path: Path,
    instrument: Instrument,
    *,
    model: str | None,
    variant: str | None,
    temperature: float | None,
    mode: str | None,
    expect_sha256: str | None = None,
) -> _Parsed:
    data = read_source(path)
    if expect_sha256 is not None and sha256_bytes(data) != expect_sha256:  # the very bytes parsed below
        raise ToolkitError(f"SHA-256 mismatch: expected {expect_sha256}, read {sha256_bytes(data)}", path=str(path))
    table = _read_csv(path, data)
    columns = table.column_names
    mode = mode or detect_mode(columns, instrument)
    if mode not in MODES:
        raise ToolkitError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
    scale = list(range(instrument.scale_min, instrument.scale_max + 1))
    if mode == "persona":
        required = PERSONA_COLUMNS
    elif mode == "self":
        required = SELF_COLUMNS
    else:
        required = LOGPROB_BASE_COLUMNS + [f"digit_{k}_logprob" for k in scale]
    missing = [c for c in required if c not in columns]
    if missing:
        raise ToolkitError(f"missing column(s) {', '.join(missing)} for mode {mode}", path=str(path), line=1)
    if table.num_rows == 0:
        raise ToolkitError("file has a header but no rows", path=str(path), line=2)

    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    lines = _Lines(table, data)
    n = len(df)

    stem = path.stem
    model = model or model_from_name(stem)
    variant = variant or path.resolve().parent.name
    if temperature is None:
        temperature = temperature_from_name(stem)
    if temperature is None and mode == "logprob" and "temperature" in columns:
        temps = df["temperature"].cast(pl.Float64, strict=False).unique()
        if len(temps) == 1 and temps[0] is not None:
            temperature = float(temps[0])
    if temperature is None:
        raise ToolkitError("no _tempNN in the file name: give the temperature with --temperature", path=str(path))
    temperature = float(temperature)
    try:
        check_run_fields(model, variant, temperature, mode)
    except ValueError as exc:
        raise ToolkitError(str(exc), path=str(path)) from None

    item = _int_column(df, "question_id", path, lines)
    if (i := _first_bad(~item.is_in(instrument.item_ids))) is not None:
        raise ToolkitError(
            f"question_id {item[i]} is not an item of instrument {instrument.name!r}", path=str(path), line=lines(i)
        )
    persona = _int_column(df, "persona_id", path, lines) if mode != "self" else _nulls(n, pl.Int64)

    if mode == "logprob":
        rep = (_int_column(df, "run_index", path, lines, lo=1) if "run_index" in columns
               else pl.repeat(1, n, dtype=pl.Int64, eager=True))
        digit_cols = []
        for k in scale:
            raw = df[f"digit_{k}_logprob"].str.strip_chars()
            val = raw.cast(pl.Float64, strict=False)
            bad = (val.is_null() & (raw != "")) | val.is_nan() | (val > 0) | (val == float("inf"))
            if (i := _first_bad(bad)) is not None:
                raise ToolkitError(
                    f"column 'digit_{k}_logprob': {raw[i]!r} is not a log-probability", path=str(path), line=lines(i)
                )
            digit_cols.append(val.alias(f"d{k}"))
        digits = pl.DataFrame(digit_cols)
        # A digit absent from the top-k list is empty (imputed later); one given as -inf claims
        # probability 0, which finite logits cannot produce for every digit at once.
        finite = digits.select(pl.sum_horizontal([pl.col(c).is_finite().fill_null(False) for c in digits.columns]))
        given = digits.select(pl.sum_horizontal([pl.col(c).is_not_null() for c in digits.columns]))
        if (i := _first_bad((finite.to_series() == 0) & (given.to_series() > 0))) is not None:
            raise ToolkitError("every digit log-probability is -inf (probability 0 for the whole scale)",
                               path=str(path), line=lines(i))
        mass = digits.select(pl.sum_horizontal([pl.col(c).exp().fill_null(0.0) for c in digits.columns]))
        if (i := _first_bad(mass.to_series() > 1.0 + 1e-6)) is not None:
            raise ToolkitError(f"digit probabilities sum to {mass.to_series()[i]:.6g} > 1", path=str(path),
                               line=lines(i))
        logprobs = digits.select(pl.concat_list(pl.all()).alias("lp"))["lp"]
        first = (df["first_token"].str.strip_chars() if "first_token" in columns
                 else pl.repeat("", n, dtype=pl.String, eager=True))
        first_int = first.cast(pl.Int64, strict=False)
        in_scale = first_int.is_between(instrument.scale_min, instrument.scale_max)
        rating = pl.select(pl.when(in_scale).then(first_int).otherwise(-1).alias("r"))["r"]
        failures = pl.repeat(0, n, dtype=pl.Int64, eager=True)
        response = first
        top = df["raw_top_logprobs_json"] if "raw_top_logprobs_json" in columns else _nulls(n, pl.String)
    else:
        rep = _int_column(df, "run_index", path, lines, lo=1)
        rating = _int_column(df, "rating", path, lines, lo=None, hi=None)
        ok = rating.is_between(instrument.scale_min, instrument.scale_max) | (rating == -1)
        if (i := _first_bad(~ok)) is not None:
            raise ToolkitError(
                f"rating {rating[i]} is outside the scale {instrument.scale_min}-{instrument.scale_max} (or -1)",
                path=str(path),
                line=lines(i),
            )
        failures = _int_column(df, "failures", path, lines, hi=INT16_MAX)
        logprobs = _nulls(n, pl.List(pl.Float64))
        response = df["response"]
        top = _nulls(n, pl.String)

    rows = pl.DataFrame(
        {
            "persona_id": persona,
            "item_id": item,
            "repetition": rep,
            "rating": rating,
            "failures": failures,
            "response": response,
            "digit_logprobs": logprobs,
            "top_logprobs": top,
            "collected_at": df["collected_at"] if "collected_at" in columns else _nulls(n, pl.String),
            "source_line": pl.Series(lines.start, dtype=pl.Int64),
        }
    ).with_row_index("_row")

    # Duplicate slots: identical copies collapse, conflicting ones are an error.
    slot = ["persona_id", "item_id", "repetition"]
    dup = rows.filter(pl.len().over(slot) > 1)
    if len(dup):
        content = ["rating", "failures", "response", "digit_logprobs", "top_logprobs"]
        distinct = dup.unique(slot + content, keep="first", maintain_order=True)
        conflict = distinct.filter(pl.len().over(slot) > 1).sort("_row")
        if len(conflict):
            r = conflict.row(1, named=True) if len(conflict) > 1 else conflict.row(0, named=True)
            raise ToolkitError(
                f"slot persona={r['persona_id']} item={r['item_id']} repetition={r['repetition']} "
                "appears more than once with different values",
                path=str(path),
                line=int(r["source_line"]),
            )
        rows = rows.unique(slot, keep="first", maintain_order=True)
    rows = rows.drop("_row")

    digest = instrument.digest
    run_id = make_run_id(model, variant, temperature, mode, instrument.name)
    source_sha = sha256_bytes(data)
    table_out = _to_arrow(rows, run_id=run_id, digest=digest, model=model, mode=mode, temperature=temperature,
                          provenance=f"{ENDPOINT}:{path.name}@sha256:{source_sha}")
    manifest = RunManifest(
        run_id=run_id,
        model=model,
        variant=variant,
        temperature=temperature,
        mode=mode,
        instrument={"name": instrument.name, "digest": digest},
        protocol={"origin": "import", "endpoint": ENDPOINT, "format": f"{mode}-csv"},
        toolkit_version=__version__,
    )
    return _Parsed(path, manifest, table_out, {"file": path.name, "sha256": source_sha, "bytes": len(data)})


def _to_arrow(rows: pl.DataFrame, *, run_id: str, digest: str, model: str, mode: str, temperature: float,
              provenance: str) -> pa.Table:
    """Attach identity columns and the canonical request / request key of every row.

    The request JSON is assembled column-wise; its keys are written in sorted order so the
    string is exactly ``canonical_json`` of the same dict (a unit test holds this).
    """
    persona_json = pl.col("persona_id").cast(pl.String).fill_null("null")
    req = pl.concat_str(
        [
            pl.lit('{"endpoint":' + json.dumps(ENDPOINT) + ',"instrument":' + json.dumps(digest) + ',"item_id":'),
            pl.col("item_id").cast(pl.String),
            pl.lit(',"mode":' + json.dumps(mode, ensure_ascii=False)
                   + ',"model":' + json.dumps(model, ensure_ascii=False)
                   + ',"persona_id":'),
            persona_json,
            pl.lit(',"repetition":'),
            pl.col("repetition").cast(pl.String),
            pl.lit(',"temperature":' + json.dumps(float(temperature)) + "}"),
        ]
    )
    out = rows.with_columns(req.alias("request"))
    sha = hashlib.sha256
    keys = [sha(r.encode("utf-8")).hexdigest() for r in out["request"].to_list()]
    out = out.with_columns(
        pl.Series("request_key", keys, dtype=pl.String),
        pl.lit(run_id).alias("run_id"),
        pl.lit(digest).alias("instrument"),
        pl.lit(provenance).alias("provenance"),
        pl.lit(None, dtype=pl.List(pl.String)).alias("attempts"),
        pl.lit(None, dtype=pl.String).alias("finish_reason"),
        pl.lit(None, dtype=pl.Float64).alias("latency_s"),
    )
    return out.select(ROW_SCHEMA.names).to_arrow().cast(ROW_SCHEMA)


def import_paths(
    store: Store,
    paths: Sequence[str | Path],
    *,
    model: str | None = None,
    variant: str | None = None,
    temperature: float | None = None,
    mode: str | None = None,
    instrument: Instrument | str | None = None,
    replace: bool = False,
    jobs: int = 2,
) -> list[ImportResult]:
    """Import published CSV files or whole published trees (``<variant>/<model>_tempNN.csv``)."""
    files = _expand(paths)
    if model is not None and len(files) > 1:
        raise ToolkitError("--model names one run: give one file, or let model names come from file names")
    given = {"model": model, "variant": variant, "temperature": temperature, "mode": mode}
    return import_files(store, [(f, given) for f in files], instrument=instrument, replace=replace, jobs=jobs)


PROCESS_MIN_FILES = 16  # from this many files on, workers are processes (measured: see bench_scale)


@dataclass
class _Prepared:
    """One file parsed, validated, sealed and encoded: all a store write needs, and picklable."""

    path: Path
    manifest: RunManifest
    segment: bytes | None  # the encoded Parquet segment (None for a file with no rows)
    rows: int


def _prepare(item: tuple[Path, dict], instrument: Instrument) -> _Prepared:
    """The CPU work of one file, with no store access: it runs on threads or processes alike."""
    path = Path(item[0])
    p = _parse_file(path, instrument, **{k: item[1].get(k) for k in ("model", "variant", "temperature", "mode",
                                                                      "expect_sha256")})
    p.manifest.sources = [p.source]
    Store.seal(p.manifest, p.table)
    segment = Store.encode_segment(p.table) if p.table.num_rows else None
    return _Prepared(path, p.manifest, segment, p.table.num_rows)


def import_files(
    store: Store,
    files: Sequence[tuple[Path, dict]],
    *,
    instrument: Instrument | str | None = None,
    replace: bool = False,
    jobs: int = 2,
    backend: str | None = None,
) -> list[ImportResult]:
    """Import files, each with its own ``model/variant/temperature/mode`` overrides (None =
    from the file). On any error no run changes.

    Streaming: workers parse, validate and encode one file at a time; this process writes
    each segment as it arrives, so memory is bounded by a few files, not their number. Workers
    are threads for a few files and processes from PROCESS_MIN_FILES on (``backend`` forces
    one): the per-row request hashing holds the GIL. All-or-nothing holds for the manifests:
    they are saved together at the end, and on any error the segments this import created
    are removed again.
    """
    from joblib import Parallel, delayed

    from .workers import worker_environment

    inst = instrument if isinstance(instrument, Instrument) else load_instrument(instrument)
    workers = max(1, min(jobs, len(files)))
    if backend is None:
        backend = "loky" if workers > 1 and len(files) >= PROCESS_MIN_FILES else "threading"
    created: set[str] = set()
    seen: dict[str, Path] = {}
    held = contextlib.ExitStack()
    locked: list[bool] = []
    staged: list[tuple[RunManifest, str, ImportResult]] = []

    def before_first_write() -> None:
        """Take the writer lock and store the instrument only once something is to be written:
        a refused import of bad files leaves no trace in the store at all."""
        if not locked:
            held.enter_context(store.writing())
            store.put_instrument(inst)
            locked.append(True)

    def commit(p: _Prepared) -> None:
        rid = p.manifest.run_id
        if rid in seen:
            raise ToolkitError(f"run {rid} would come from two files: {seen[rid]} and {p.path}", path=str(p.path))
        seen[rid] = p.path
        existing = store.get_run(rid)
        if existing is None:
            status = "added"
        elif [s.get("sha256") for s in existing.sources] == [p.manifest.sources[0]["sha256"]]:
            status = "unchanged"
        elif replace:
            status = "replaced"
        else:
            raise ToolkitError(
                f"run {rid} already holds different data "
                f"({existing.sources[0]['file'] if existing.sources else 'recorded'});"
                " use --replace to overwrite it",
                path=str(p.path),
            )
        if status != "unchanged" and p.segment is not None:
            before_first_write()
            p.manifest.segments = [store.write_encoded(p.segment, p.rows, created)]
        staged.append((p.manifest, status, ImportResult(str(p.path), rid, p.rows, status)))

    try:
        with held, worker_environment():
            parallel = Parallel(n_jobs=workers, backend=backend, return_as="generator", pre_dispatch="2*n_jobs")
            for prepared in parallel(delayed(_prepare)(item, inst) for item in files):
                commit(prepared)
            for manifest, status, _ in staged:
                if status != "unchanged":
                    before_first_write()
                    with store.run_lock(manifest.run_id):
                        store.save_manifest(manifest)
    except BaseException:
        if created:
            store.discard(created)
        raise
    return [result for _, _, result in staged]
