"""An instant in-process backend: answers from a hash of the request, no model at all.

For measuring the recorder's own overhead and for dry runs of a protocol; its answers
are deterministic and obviously synthetic (they say so in ``endpoint``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from ...numerics import log_ratio
from .base import DigitLogprobs, Generation

ENDPOINT = "instant:sha256-hash-answers"


class InstantBackend:
    name = "instant"

    def __init__(self, model: str = "instant", fail_every: int = 0):
        self.model = model
        self.endpoint = ENDPOINT
        self.fail_every = fail_every  # every n-th short answer is unparseable (exercises the retry path)

    def _h(self, messages: Sequence[dict[str, Any]], seed: int) -> int:
        payload = json.dumps([list(messages), seed], sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big")

    def generate(self, messages: Sequence[dict[str, Any]], *, temperature: float, max_tokens: int,
                 seed: int) -> Generation:
        h = self._h(messages, seed)
        if self.fail_every and h % self.fail_every == 0 and max_tokens <= 2:
            return Generation("I think", "length", 0.0)
        return Generation(f"{h % 6}", "stop", 0.0)

    def digit_logprobs(self, messages: Sequence[dict[str, Any]], scale: Sequence[int], *,
                       seed: int) -> DigitLogprobs:
        h = self._h(messages, seed)
        weights = [1.0 + ((h >> (8 * i)) & 0xFF) for i in range(len(scale))]
        total = sum(weights)
        lps = [log_ratio(w, total) for w in weights]
        best = max(range(len(scale)), key=lambda i: lps[i])
        top = [{"token": str(r), "logprob": lp} for r, lp in zip(scale, lps)]
        return DigitLogprobs(lps, str(scale[best]), json.dumps(top), 0.0)

    def close(self) -> None:
        pass
