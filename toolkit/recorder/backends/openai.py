"""OpenAI-compatible Chat Completions over HTTP (OpenAI, OpenRouter, vLLM, llama.cpp server,
Ollama, transformers serve, `toolkit serve`, ...).

Retries with exponential backoff and full jitter on 429 (honouring Retry-After), 5xx,
timeouts, connection errors and malformed bodies; other 4xx and redirects fail at once. An
optional requests-per-minute limit is shared by all threads. The API key is read from an
environment variable named by the user and lives only in this client's headers: it is never
part of a request description, so it can never reach the store, and it is blanked out of any
server text we print. Credentials in the base URL are refused.

A server is not trusted: every reply must be a 2xx JSON chat completion whose content is a
string, finish reason a string or null, and log-probabilities finite, <= 0 and summing to at
most 1; a reply larger than ``max_reply_bytes`` or slower than ``timeout`` seconds in total
(connect, send and every byte of the body) is a failed attempt.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from ...errors import ToolkitError
from ...hashing import parse_json
from ...protocol.requests import PROTOCOL_DEFAULTS
from ...store.rows import LOGPROB_SLACK, MAX_RESPONSE_BYTES
from .base import (
    DEFAULT_BREAKER,
    BackendError,
    DigitLogprobs,
    FatalBackendError,
    Generation,
    Usage,
    digits_from_top,
)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
DEFAULT_MAX_REPLY_BYTES = MAX_RESPONSE_BYTES  # one limit for every reply; a chat completion of 64 tokens is a few kB
_SECRET_PARAM = re.compile(r"key|token|secret|auth|passw|signature|sig$", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


class _Retryable(Exception):
    """One failed attempt that may succeed if sent again."""


def check_base_url(url: str) -> str:
    """Refuse a base URL that carries credentials: keys come from --api-key-env only, and a
    URL is written into request keys, manifests and provenance."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolkitError(f"--base-url must be an http(s) URL with a host, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ToolkitError("--base-url carries credentials (user:password@host); pass the key with --api-key-env")
    secret = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAM.search(k)]
    if secret:
        raise ToolkitError(f"--base-url carries a credential-like query parameter ({secret[0]}); pass the key "
                           "with --api-key-env")
    return url


def check_top_logprobs(top: list[tuple[str, float]]) -> None:
    """Log-probabilities a model could have produced: finite, <= 0, total probability <= 1."""
    total = 0.0
    for _, lp in top:
        if not math.isfinite(lp) or lp > LOGPROB_SLACK:
            raise ValueError(f"impossible log-probability {lp!r}")
        total += math.exp(min(lp, 0.0))
    if total > 1.0 + LOGPROB_SLACK:
        raise ValueError(f"top log-probabilities sum to probability {total:.6g} > 1")


def endpoint_for(base_url: str, endpoint_label: str | None = None) -> str:
    """The endpoint identity written into request keys: the label, else the checked base URL."""
    return endpoint_label or f"openai-chat:{check_base_url(base_url).rstrip('/')}"


class RateLimiter:
    """At most ``rpm`` request starts per minute, evenly spaced, across threads."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self.next_time = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_time)
            self.next_time = start + self.interval
        if start > now:
            time.sleep(start - now)


class _RetryAfter(Exception):
    """Carries a server's Retry-After (seconds) along with a retryable failure."""

    def __init__(self, seconds: float | None):
        super().__init__(seconds)
        self.seconds = seconds


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _served(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) and model else None


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rpm: float | None = None,
        top_logprobs: int = PROTOCOL_DEFAULTS["top_logprobs"],
        endpoint_label: str | None = None,
        send_seed: bool = True,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        breaker: int = DEFAULT_BREAKER,
        extra_body: dict[str, Any] | None = None,
    ):
        headers = {"Content-Type": "application/json"}
        self._secret: str | None = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ToolkitError(f"environment variable {api_key_env} (named by --api-key-env) is not set")
            headers["Authorization"] = f"Bearer {key}"
            self._secret = key
        self.model = model
        self.base_url = check_base_url(base_url).rstrip("/")
        self.endpoint = endpoint_for(base_url, endpoint_label)
        self.extra_body = dict(extra_body or {})  # server-specific fields, sent with every request
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout),
                                   follow_redirects=False)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.limiter = RateLimiter(rpm)
        self.top_logprobs = top_logprobs
        self.send_seed = send_seed
        self.retries = 0  # total retries performed (reported in the summary)
        self._lock = threading.Lock()
        self.breaker = breaker  # consecutive connection failures, over all threads, that mean "down"
        self._down = 0
        self._tripped: str | None = None
        # where a request's body goes: the server, or (record --batch-results) a lookup in a
        # provider's batch output that raises for a request it does not hold (recorder/batch.py)
        self.send: Callable[[dict[str, Any]], tuple[dict[str, Any], float]] = self._post

    def _sleep_before_retry(self, attempt: int, retry_after: float | None) -> None:
        with self._lock:
            self.retries += 1
        if retry_after is not None:
            delay = min(retry_after, self.backoff_max)
        else:
            delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))  # full jitter
        time.sleep(delay)

    def redact(self, text: str) -> str:
        """Server text as we may print it: never the key, nor any bearer token."""
        if self._secret:
            text = text.replace(self._secret, "***")
        return _BEARER.sub(r"\1***", text)

    def _attempt(self, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """One request under a wall-clock deadline and a size cap; the parsed, checked body."""
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        with self.client.stream("POST", "/chat/completions", json=payload) as resp:
            status = resp.status_code
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise _Retryable(f"reply larger than {self.max_reply_bytes} bytes")
                if time.monotonic() > deadline:
                    raise _Retryable(f"reply took longer than {self.timeout:g} s")
                chunks.append(chunk)
            retry_after = _retry_after(resp.headers.get("Retry-After"))
        latency = time.monotonic() - t0
        raw = b"".join(chunks)
        text = raw.decode("utf-8", errors="replace")  # for messages; a stored reply is decoded strictly below
        self._reachable()
        if status in (401, 403):  # no request can succeed: none is sent after this one
            self._tripped = (f"HTTP {status} from {self.base_url}: the server refuses the credentials "
                             f"({self.redact(text[:200])}); check --api-key-env")
            raise FatalBackendError(self._tripped)
        if status in RETRY_STATUS or status >= 500:
            raise _Retryable(f"HTTP {status}") from _RetryAfter(retry_after)
        if 300 <= status < 400:
            raise BackendError(f"HTTP {status}: the server redirects; give the final URL as --base-url")
        if status >= 400:
            raise BackendError(f"HTTP {status}: {self.redact(text[:200])}")
        if not 200 <= status < 300:
            raise _Retryable(f"unexpected HTTP status {status}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:  # never stored with replacement characters
            raise _Retryable(f"the reply is not valid UTF-8 (byte {exc.start})") from None
        try:
            body = parse_json(text)
        except ValueError:
            raise _Retryable("malformed response body (not a chat completion)") from None
        problem = chat_body_problem(body, payload)
        if problem is not None:
            raise _Retryable(problem)
        return body, latency

    def _reachable(self) -> None:
        with self._lock:
            self._down = 0

    def _unreachable(self, why: str) -> None:
        """Count a connection-level failure; trip the breaker after ``breaker`` in a row."""
        with self._lock:
            self._down += 1
            if self._down >= self.breaker and self._tripped is None:
                self._tripped = (f"{self._down} connection failures in a row to {self.base_url} (last: {why}); "
                                 "is the server running?")

    def _check_breaker(self) -> None:
        if self._tripped is not None:
            raise FatalBackendError(self._tripped)

    def _post(self, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self._check_breaker()
            self.limiter.wait()
            retry_after = None
            try:
                return self._attempt(payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nobody answers at that address
                last = f"{type(exc).__name__}: {exc}"
                self._unreachable(self.redact(last))
                self._check_breaker()
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:  # anything else httpx raises (e.g. a bad header)
                last = f"{type(exc).__name__}: {exc}"
            except _Retryable as exc:
                last = str(exc)
                if isinstance(exc.__cause__, _RetryAfter):
                    retry_after = exc.__cause__.seconds
            if attempt < self.max_retries:
                self._sleep_before_retry(attempt, retry_after)
        raise BackendError(f"gave up after {self.max_retries + 1} attempts: {self.redact(last)}")

    def chat_payload(self, messages: Sequence[dict[str, Any]], *, temperature: float, max_tokens: int,
                     seed: int) -> dict[str, Any]:
        """The body of one chat request: what is sent live, and what a batch file holds."""
        payload: dict[str, Any] = {**self.extra_body, "model": self.model, "messages": list(messages),
                                   "temperature": temperature, "max_tokens": max_tokens}
        if self.send_seed:
            payload["seed"] = seed
        return payload

    def logprob_payload(self, messages: Sequence[dict[str, Any]], *, seed: int) -> dict[str, Any]:
        """The body of one next-token log-probability request (live and batch)."""
        payload: dict[str, Any] = {**self.extra_body, "model": self.model, "messages": list(messages),
                                   "max_tokens": 1, "temperature": 1.0, "logprobs": True,
                                   "top_logprobs": self.top_logprobs}
        if self.send_seed:
            payload["seed"] = seed
        return payload

    def generate(self, messages: Sequence[dict[str, Any]], *, temperature: float, max_tokens: int,
                 seed: int) -> Generation:
        payload = self.chat_payload(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
        body, latency = self.send(payload)
        choice = body["choices"][0]
        return Generation(choice["message"]["content"], choice.get("finish_reason"), latency, _served(body),
                          usage_of(body))

    def digit_logprobs(self, messages: Sequence[dict[str, Any]], scale: Sequence[int], *, seed: int) -> DigitLogprobs:
        payload = self.logprob_payload(messages, seed=seed)
        body, latency = self.send(payload)
        choice = body["choices"][0]
        try:
            first = choice["logprobs"]["content"][0]
            entries = first["top_logprobs"]
            if not isinstance(entries, list) or not entries:
                raise TypeError
            top = []
            for e in entries:
                token, lp = e["token"], e["logprob"]
                if not isinstance(token, str) or isinstance(lp, bool) or not isinstance(lp, (int, float)):
                    raise TypeError
                top.append((token, float(lp)))
        except (KeyError, IndexError, TypeError, ValueError):
            raise BackendError("the server returned no usable top_logprobs (it may not support logprobs)") from None
        try:
            check_top_logprobs(top)
        except ValueError as exc:
            raise BackendError(f"the server returned {exc}") from None
        best = max(top, key=lambda e: e[1])[0]  # the most likely token, not the one the server sampled
        return DigitLogprobs(digits_from_top(top, scale), best,
                             json.dumps([{"token": t, "logprob": lp} for t, lp in top], ensure_ascii=False), latency,
                             choice.get("finish_reason"), _served(body), usage_of(body))

    def close(self) -> None:
        self.client.close()


def chat_body_problem(body: object, payload: dict[str, Any]) -> str | None:
    """What is wrong with a chat-completion body for ``payload`` (None: nothing): the one check
    of a live reply and of a batch output line."""
    try:
        choice = body["choices"][0]  # type: ignore[index]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return "malformed response body (not a chat completion)"
    if not isinstance(content, str) and not (content is None and payload.get("logprobs")):
        return "malformed response body (message content is not text)"
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    if finish is not None and not isinstance(finish, str):
        return "malformed response body (finish_reason is not text)"
    return None


MAX_TOKENS_REPORTED = 1 << 40  # a count beyond this is not a count


def usage_of(body: dict[str, Any]) -> Usage:
    """The ``usage`` object of an OpenAI-style reply (llama.cpp and vLLM send the same):
    prompt_tokens, completion_tokens and prompt_tokens_details.cached_tokens. A missing or
    malformed count is unknown (None), never a failed request: the answer was paid for and is
    kept; only the accounting is incomplete."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return Usage()

    def count(value: object) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_TOKENS_REPORTED:
            return None
        return value

    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")), cached)
