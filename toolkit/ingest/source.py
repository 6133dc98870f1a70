"""Reading a source file into a table of text cells, and the checks every format shares.

A source is parsed from one copy of its bytes (the same bytes whose SHA-256 the manifest
records). CSV cells stay text until a format converts them, so "3.0" or "" never become
numbers by accident; Parquet and JSON Lines cells are cast to text the same way, so one
set of checks serves every container. Every error names the file and the line (CSV: the
line the record starts on, quoted newlines counted; JSON Lines: the line; Parquet: the row).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import ToolkitError
from ..hashing import parse_json
from ..protocol.instrument import Instrument

if TYPE_CHECKING:
    import numpy as np

INT32_MAX = 2**31 - 1
INT16_MAX = 2**15 - 1
CONTAINERS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


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


class Lines:
    """Maps data-row indices to what an error message should point at."""

    def __init__(self, start: np.ndarray, unit: str = "line") -> None:
        self.start = start  # numpy int64: the number of each row
        self.unit = unit

    @classmethod
    def of_csv(cls, table: pa.Table, data: bytes) -> Lines:
        """1-based line where each record starts, quoted newlines included."""
        n = table.num_rows
        base = pl.int_range(0, n, dtype=pl.Int64, eager=True) + 2
        if data.count(b"\n") - data.endswith(b"\n") == n:  # no newline inside any field
            return cls(base.to_numpy())
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        extra = pl.sum_horizontal([pl.col(c).str.count_matches("\n") for c in df.columns])
        newlines = df.select(extra.alias("n"))["n"].cast(pl.Int64)
        return cls((base + newlines.cum_sum() - newlines).to_numpy())

    def __call__(self, row: int) -> int:
        return int(self.start[row])


@dataclass
class Source:
    """One file as text cells, with everything an error message or a manifest needs."""

    path: Path
    data: bytes
    table: pl.DataFrame  # every column as text (null = absent cell)
    lines: Lines
    instrument: Instrument
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return self.table.columns

    def error(self, message: str, row: int | None = None) -> ToolkitError:
        if row is None:
            return ToolkitError(message, path=str(self.path))
        if self.lines.unit == "line":
            return ToolkitError(message, path=str(self.path), line=self.lines(row))
        return ToolkitError(f"row {self.lines(row)}: {message}", path=str(self.path))

    def int_column(self, col: str, *, lo: int | None = 0, hi: int | None = INT32_MAX) -> pl.Series:
        """An integer column, every value within [lo, hi] (the store's integer types)."""
        raw = self.table[col].str.strip_chars()
        values = raw.cast(pl.Int64, strict=False)
        if (i := first_bad(values.is_null())) is not None:
            raise self.error(f"column {col!r}: {self.table[col][i]!r} is not an integer", i)
        out = (values < lo) if lo is not None else pl.repeat(False, len(values), eager=True)
        if hi is not None:
            out = out | (values > hi)
        if (i := first_bad(out)) is not None:
            raise self.error(f"column {col!r}: {values[i]} is outside {lo}..{hi}", i)
        return pl.Series(values)

    def optional(self, col: str, read: Callable[[], pl.Series], default: pl.Series, why: str) -> pl.Series:
        """``read()`` when ``col`` is present; else ``default``, with a note in the import summary."""
        if col in self.columns:
            return read()
        self.notes.append(f"no {col!r} column: {why}")
        return default

    def ignore_extra(self, known: set[str]) -> None:
        extra = [c for c in self.columns if c not in known]
        if extra:
            self.notes.append(f"ignored column(s): {', '.join(extra)}")


def first_bad(mask: pl.Series) -> int | None:
    return int(mask.arg_true()[0]) if mask.any() else None


def nulls(n: int, dtype: pl.DataType | type[pl.DataType]) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True)


def open_source(path: Path, data: bytes, instrument: Instrument, rename: dict[str, str] | None = None) -> Source:
    """Parse a file's bytes into text cells by its container (CSV, Parquet, JSON Lines);
    ``rename`` maps the file's column names to the names a format expects."""
    kind = CONTAINERS.get(path.suffix.lower(), "csv")
    if kind == "csv":
        text = normalise_text(data)
        table = _read_csv(path, text)
        lines = Lines.of_csv(table, text)
        df = pl.from_arrow(table)
    else:
        df = _read_parquet(path, data) if kind == "parquet" else _read_jsonl(path, data)
        lines = Lines(pl.int_range(1, len(df) + 1, dtype=pl.Int64, eager=True).to_numpy(),
                      "line" if kind == "jsonl" else "row")
    assert isinstance(df, pl.DataFrame)
    if rename:
        missing = [src for src in rename if src not in df.columns]
        if missing:
            raise ToolkitError(f"--columns names column(s) {', '.join(missing)} that the file does not have "
                               f"(it has {', '.join(df.columns)})", path=str(path), line=1 if kind == "csv" else None)
        names = [rename.get(c, c) for c in df.columns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ToolkitError(f"--columns would give two columns the name(s) {', '.join(twice)}", path=str(path))
        df = df.rename(rename)
    return Source(path, data, df, lines, instrument)


def _as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Every column as text: numbers in their plain decimal form, lists and structs as JSON."""
    out = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            out.append(col)
        elif dtype.is_float():
            # 3.0 is the integer 3 written as a float: keep it readable as one, other floats as is
            whole = col.is_finite() & (col == col.round(0))
            out.append(pl.when(whole).then(col.cast(pl.Int64, strict=False).cast(pl.String))
                       .otherwise(col.cast(pl.String)).alias(name))
        elif dtype.is_nested():
            out.append(col.map_elements(_json_text, return_dtype=pl.String).alias(name))
        else:
            out.append(col.cast(pl.String).alias(name))
    return df.select(out)


def _json_text(v: Any) -> str:
    import json

    return json.dumps(v.to_list() if isinstance(v, pl.Series) else v, ensure_ascii=False)


def _read_parquet(path: Path, data: bytes) -> pl.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise ToolkitError(f"not a readable Parquet file: {exc}", path=str(path)) from None
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return _as_text(df)


def _read_jsonl(path: Path, data: bytes) -> pl.DataFrame:
    import json

    text = _utf8(path, normalise_text(data))
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = parse_json(line)
        except ValueError as exc:
            raise ToolkitError(f"not valid JSON: {getattr(exc, 'msg', exc)}", path=str(path), line=i) from None
        if not isinstance(obj, dict):
            raise ToolkitError("a JSON Lines row must be an object", path=str(path), line=i)
        rows.append({k: v if isinstance(v, str) or v is None else json.dumps(v) for k, v in obj.items()})
    if not rows:
        raise ToolkitError("file is empty", path=str(path))
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pl.DataFrame({k: [r.get(k) for r in rows] for k in names}, schema=dict.fromkeys(names, pl.String))


def _utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise ToolkitError(f"not valid UTF-8 (byte {exc.start})", path=str(path), line=bad_line) from None


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
    """``data`` already normalised (normalise_text)."""
    if not data.strip():
        raise ToolkitError("file is empty", path=str(path))
    text = _utf8(path, data)
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
