"""Model backends by name: the built-in ones and any a package registers.

A backend is described by a ``BackendSpec``: how it names its endpoint (the identity that
goes into every request key) and which model name it records, both computed *without*
connecting or loading weights, so that `record --plan`, `--replay-only` and a fully cached
run need neither credentials nor a model; and how to build it when something must be sent.

Third-party packages add backends through the ``toolkit.backends`` entry-point group: each
entry point names a ``BackendSpec`` (or a function returning one). Both functions receive
``RecordOptions``: the common recorder options plus the ``-o KEY=VALUE`` pairs given for
the backend (``options.extra``), checked against the names the spec declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ToolkitError
from ...hashing import parse_json
from ...protocol.requests import Protocol
from .base import DEFAULT_BREAKER, Backend

ENTRY_POINT_GROUP = "toolkit.backends"


@dataclass(frozen=True)
class RecordOptions:
    """What the command line says about the backend (every field optional for a given one)."""

    model: str | None = None
    model_path: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    endpoint_label: str | None = None
    rpm: float | None = None
    timeout: float = 60.0
    max_retries: int = 6
    breaker: int = DEFAULT_BREAKER
    protocol: Protocol | None = None  # what is sent (top_logprobs, seed, extra fields) comes from here
    extra: dict[str, str] = field(default_factory=dict)  # -o KEY=VALUE, for the backend's own options


@dataclass(frozen=True)
class BackendSpec:
    name: str
    summary: str
    endpoint: Callable[[RecordOptions], tuple[str, str]]  # -> (endpoint identity, model name); cheap
    make: Callable[[RecordOptions], Backend]
    options: dict[str, str] = field(default_factory=dict)  # -o names the backend takes -> help


def _openai_endpoint(o: RecordOptions) -> tuple[str, str]:
    from .openai import endpoint_for

    if not o.base_url or not o.model:
        raise ToolkitError("--backend openai needs --base-url and --model")
    return endpoint_for(o.base_url, o.endpoint_label), o.model


def _openai_make(o: RecordOptions) -> Backend:
    from .openai import OpenAIBackend

    assert o.base_url and o.model
    p = o.protocol or Protocol("persona")
    return OpenAIBackend(o.base_url, o.model, api_key_env=o.api_key_env, rpm=o.rpm, timeout=o.timeout,
                         max_retries=o.max_retries, endpoint_label=o.endpoint_label, breaker=o.breaker,
                         top_logprobs=p.top_logprobs, send_seed=p.send_seed, extra_body=p.extra_fields)


def local_model_path(path: str | None) -> str:
    if not path:
        raise ToolkitError("--backend local needs --model-path (a model folder or a .gguf file)")
    if path == "smollm2":
        from ..models import fetch_model

        return str(fetch_model("smollm2"))
    return path


def _local_endpoint(o: RecordOptions) -> tuple[str, str]:
    from ..models import MODELS
    from .local import model_digest

    shipped = MODELS.get(o.model_path or o.model or "")
    if shipped is not None:  # its digest is pinned: planning needs no download (the weights load at make)
        return f"local-transformers:sha256:{shipped.sha256}", o.model or Path(shipped.filename).stem
    path = Path(local_model_path(o.model_path or o.model))
    if not path.exists():
        raise ToolkitError("no such model file or folder", path=str(path))
    return f"local-transformers:sha256:{model_digest(path)}", o.model or path.stem


def _local_make(o: RecordOptions) -> Backend:
    from .local import LocalBackend

    top = (o.protocol or Protocol("logprob")).top_logprobs
    return LocalBackend(local_model_path(o.model_path or o.model), top_logprobs=top)


def _instant_endpoint(o: RecordOptions) -> tuple[str, str]:
    from .instant import ENDPOINT

    return ENDPOINT, o.model or "instant"


def _instant_make(o: RecordOptions) -> Backend:
    from .instant import InstantBackend

    return InstantBackend(o.model or "instant")


BUILTIN = {
    "openai": BackendSpec("openai", "any OpenAI-compatible chat-completions server", _openai_endpoint, _openai_make),
    "local": BackendSpec("local", "a local transformers model, in-process ([local] extra)", _local_endpoint,
                         _local_make),
    "instant": BackendSpec("instant", "hash answers, no model (tests, dry runs)", _instant_endpoint, _instant_make),
}


def backends() -> dict[str, BackendSpec]:
    """Every backend by name: the built-in ones, then those of installed packages."""
    from importlib.metadata import entry_points

    out = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in out:
            continue  # a package cannot replace a built-in backend
        try:
            spec = ep.load()
            spec = spec() if callable(spec) and not isinstance(spec, BackendSpec) else spec
        except Exception as exc:  # a broken plugin must not break the built-in backends
            raise ToolkitError(f"backend plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from None
        if not isinstance(spec, BackendSpec):
            raise ToolkitError(f"backend plugin {ep.name!r} ({ep.value}) is not a BackendSpec")
        out[ep.name] = spec
    return out


def get_backend(name: str) -> BackendSpec:
    found = backends()
    if name not in found:
        raise ToolkitError(f"unknown backend {name!r} (available: {', '.join(found)})")
    return found[name]


def check_extra(spec: BackendSpec, extra: dict[str, str]) -> None:
    unknown = sorted(set(extra) - set(spec.options))
    if unknown:
        takes = ", ".join(spec.options) or "none"
        raise ToolkitError(f"backend {spec.name} has no option {', '.join(unknown)} (it takes: {takes})")


def parse_extra_body(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        body = parse_json(text)
    except ValueError as exc:
        raise ToolkitError(f"--extra-body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ToolkitError("--extra-body must be a JSON object of extra request fields")
    return body
