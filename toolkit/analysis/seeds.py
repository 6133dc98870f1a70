"""Seeds from content, never from time: the same run, analysis and user seed always give the
same random stream, whichever worker or machine computes it."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(fingerprint: str, analysis: str, seed: int, stream: str = "") -> np.random.Generator:
    material = f"{fingerprint}\x1f{analysis}\x1f{seed}\x1f{stream}".encode()
    entropy = int.from_bytes(hashlib.sha256(material).digest(), "big")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
