"""OpenAI-compatible Chat Completions over HTTP (OpenAI, OpenRouter, vLLM, llama.cpp server,
Ollama, transformers serve, `toolkit serve`, ...).

Retries with exponential backoff and full jitter on 429 (honouring Retry-After), 5xx,
timeouts, connection errors and malformed bodies; other 4xx fail at once. An optional
requests-per-minute limit is shared by all threads. The API key is read from an environment
variable named by the user and lives only in this client's headers: it is never part of a
request description, so it can never reach the store.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from ...errors import ToolkitError
from .base import BackendError, DigitLogprobs, Generation, digits_from_top

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


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
        top_logprobs: int = 20,
        endpoint_label: str | None = None,
        send_seed: bool = True,
    ):
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ToolkitError(f"environment variable {api_key_env} (named by --api-key-env) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint_label or f"openai-chat:{self.base_url}"
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout))
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.limiter = RateLimiter(rpm)
        self.top_logprobs = top_logprobs
        self.send_seed = send_seed
        self.retries = 0  # total retries performed (reported in the summary)
        self._lock = threading.Lock()

    def _sleep_before_retry(self, attempt: int, retry_after: float | None) -> None:
        with self._lock:
            self.retries += 1
        if retry_after is not None:
            delay = min(retry_after, self.backoff_max)
        else:
            delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))  # full jitter
        time.sleep(delay)

    def _post(self, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            t0 = time.perf_counter()
            try:
                resp = self.client.post("/chat/completions", json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt < self.max_retries:
                    self._sleep_before_retry(attempt, None)
                continue
            latency = time.perf_counter() - t0
            if resp.status_code in RETRY_STATUS or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                if attempt < self.max_retries:
                    self._sleep_before_retry(attempt, _retry_after(resp.headers.get("Retry-After")))
                continue
            if resp.status_code >= 400:
                raise BackendError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            try:
                body = resp.json()
                body["choices"][0]["message"]
            except (ValueError, KeyError, IndexError, TypeError):
                last = "malformed response body"
                if attempt < self.max_retries:
                    self._sleep_before_retry(attempt, None)
                continue
            return body, latency
        raise BackendError(f"gave up after {self.max_retries + 1} attempts: {last}")

    def generate(self, messages: Sequence[dict], *, temperature: float, max_tokens: int, seed: int) -> Generation:
        payload: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature,
                                   "max_tokens": max_tokens}
        if self.send_seed:
            payload["seed"] = seed
        body, latency = self._post(payload)
        choice = body["choices"][0]
        content = choice["message"].get("content")
        return Generation(content if isinstance(content, str) else "", choice.get("finish_reason"), latency)

    def digit_logprobs(self, messages: Sequence[dict], scale: Sequence[int], *, seed: int) -> DigitLogprobs:
        payload: dict[str, Any] = {"model": self.model, "messages": list(messages), "max_tokens": 1,
                                   "temperature": 1.0, "logprobs": True, "top_logprobs": self.top_logprobs}
        if self.send_seed:
            payload["seed"] = seed
        body, latency = self._post(payload)
        choice = body["choices"][0]
        try:
            first = choice["logprobs"]["content"][0]
            top = [(str(e["token"]), float(e["logprob"])) for e in first["top_logprobs"]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise BackendError("the server returned no top_logprobs (it may not support logprobs)") from None
        text = choice["message"].get("content") or str(first.get("token", ""))
        return DigitLogprobs(digits_from_top(top, scale), text,
                             json.dumps([{"token": t, "logprob": lp} for t, lp in top], ensure_ascii=False), latency)

    def close(self) -> None:
        self.client.close()
