"""The one small interface every model backend implements.

A backend turns chat messages into text (``generate``) or into the log-probabilities of the
scale's digits as the next token (``digit_logprobs``). Retries, rate limits and transport
details stay inside the backend; the recorder only sees results or a ``BackendError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class BackendError(Exception):
    """A request that could not be completed (after the backend's own retries)."""


class FatalBackendError(BackendError):
    """No request can succeed: the credentials are refused, or the endpoint is unreachable
    (the connection circuit breaker tripped). The recording stops at once."""


DEFAULT_BREAKER = 5  # consecutive connection failures (or identical slot errors) that stop a recording


@dataclass
class Usage:
    """Tokens the server says a request cost (None: it did not say, or said nonsense)."""

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None

    def __add__(self, other: Usage) -> Usage:
        """Summed over a slot's attempts: a count is known only when every attempt reported it."""
        def both(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a + b
        return Usage(both(self.prompt, other.prompt), both(self.completion, other.completion),
                     both(self.cached, other.cached))

    def columns(self) -> dict[str, int | None]:
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion, "cached_tokens": self.cached}


@dataclass
class Generation:
    text: str
    finish_reason: str | None
    latency_s: float
    served_model: str | None = None  # the model name the server says answered, when it says
    usage: Usage = field(default_factory=Usage)


@dataclass
class DigitLogprobs:
    logprobs: Sequence[float | None]  # one per scale point; None = not in the returned top-k list
    top_text: str  # the most likely next token (never a sampled one: the stored rating must not depend on a draw)
    top_logprobs_json: str  # the raw top-k list, JSON
    latency_s: float
    finish_reason: str | None = "length"
    served_model: str | None = None
    usage: Usage = field(default_factory=Usage)


class Backend(Protocol):
    name: str
    endpoint: str  # identity of where requests go; part of every request key

    def generate(self, messages: Sequence[dict[str, Any]], *, temperature: float, max_tokens: int,
                 seed: int) -> Generation: ...

    def digit_logprobs(self, messages: Sequence[dict[str, Any]], scale: Sequence[int], *,
                       seed: int) -> DigitLogprobs: ...

    def close(self) -> None: ...


def digits_from_top(top: Sequence[tuple[str, float]], scale: Sequence[int]) -> list[float | None]:
    """Total probability of every listed token that reads as each digit once whitespace is
    stripped (" 3", "3", "3\\n" all count for 3), as a log-probability; None when absent."""
    from ...numerics import log_sum_exp

    found: dict[int, list[float]] = {}
    for token, logprob in top:
        text = token.strip()
        if text.isdigit() and int(text) in scale and str(int(text)) == text:
            found.setdefault(int(text), []).append(float(logprob))
    # one token: its log-probability as sent, however small (the row rule, store/rows.py, judges
    # it); several: their total, correctly rounded (libm's exp and log differ by C library and CPU)
    return [log_sum_exp(found[r]) if r in found else None for r in scale]
