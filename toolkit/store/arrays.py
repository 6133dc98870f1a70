"""Arrow columns read into numpy, and checked, without ``pyarrow.compute``.

Why: importing ``pyarrow.compute`` builds a wrapper for each of Arrow's several hundred compute
functions, ~40 ms of every cold analysis (and of the fork server's start), for the two things
the read path needs: integer ids with nulls filled, and "every row holds this value".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def int64_filled(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    """An integer column as int64, nulls replaced by ``fill`` (exact for any integer type:
    read from the value and validity buffers, never through float)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not pa.types.is_integer(column.type):
        raise TypeError(f"not an integer column: {column.type}")
    parts = []
    for chunk in chunks:
        n, at = len(chunk), chunk.offset
        validity, data = chunk.buffers()[:2]
        values = np.frombuffer(data, dtype=chunk.type.to_pandas_dtype())[at : at + n] if n else np.empty(0)
        out = values.astype(np.int64)
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[at : at + n]
            out[bits == 0] = fill
        parts.append(out)
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def only(column: pa.ChunkedArray, value: str) -> bool:
    """Whether every row holds ``value`` and none is null. A dictionary-encoded column (a
    segment's run id and instrument, read as written) is checked by its dictionary and the
    codes its rows use, without decoding a row; another goes through Arrow's compute."""
    if column.null_count or not len(column):
        return False
    if not all(pa.types.is_dictionary(chunk.type) for chunk in column.chunks):
        import pyarrow.compute as pc  # a plain column: rare on the read path

        return bool(pc.unique(column).to_pylist() == [value])
    for chunk in column.chunks:
        words = chunk.dictionary.to_pylist()
        if words == [value]:
            continue
        codes = np.unique(np.asarray(chunk.indices.to_numpy(zero_copy_only=False)))
        if any(words[int(c)] != value for c in codes):
            return False
    return True
