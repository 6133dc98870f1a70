"""Seeds from content, never from time: the same data, analysis and user seed always give the
same random stream, whichever worker or machine computes it.

The content is the analysis input itself (``input_digest``: the rating-count tensor or the
digit log-probabilities, with the persona ids and the instrument), read from segments whose
hashes were checked. So no edit to a manifest can move a bootstrap, and a run re-imported or
compacted keeps its numbers."""

from __future__ import annotations

import hashlib

import numpy as np


def input_digest(instrument_digest: str, *arrays: np.ndarray) -> str:
    """SHA-256 of analysis inputs: shapes, dtypes and little-endian bytes, in order."""
    h = hashlib.sha256(instrument_digest.encode("utf-8"))
    for a in arrays:
        a = np.ascontiguousarray(a)
        little = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"|{little.dtype.str}|{a.shape}|".encode())
        h.update(little.tobytes())
    return h.hexdigest()


def rng_for(content: str, analysis: str, seed: int, stream: str = "") -> np.random.Generator:
    material = f"{content}\x1f{analysis}\x1f{seed}\x1f{stream}".encode()
    entropy = int.from_bytes(hashlib.sha256(material).digest(), "big")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
