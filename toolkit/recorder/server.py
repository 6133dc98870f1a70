"""A minimal OpenAI-compatible Chat Completions server over any in-process backend.

It lets the HTTP backend be exercised end to end against a real model on 127.0.0.1
(``toolkit serve --model-path SmolLM2.gguf``), and it returns ``top_logprobs``, which
``transformers serve`` does not. Honours ``temperature``, ``max_tokens``, ``seed``,
``logprobs`` and ``top_logprobs``. Standard library only; one request at a time per model.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..hashing import parse_json
from ..protocol.requests import PROTOCOL_DEFAULTS
from .backends.base import Backend, Usage


def _handler(backend: Backend, model_name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            try:
                req = parse_json(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages = req["messages"]
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": {"message": "malformed request"}})
                return
            seed = int(req.get("seed") or 0)
            choice: dict[str, Any] = {"index": 0}
            used: Usage
            if req.get("logprobs"):
                d = backend.digit_logprobs(messages, list(range(10)), seed=seed)
                asked = int(req.get("top_logprobs") or PROTOCOL_DEFAULTS["top_logprobs"])
                top = parse_json(d.top_logprobs_json)[:asked]
                choice.update(message={"role": "assistant", "content": d.top_text}, finish_reason="length",
                              logprobs={"content": [{"token": d.top_text, "logprob": top[0]["logprob"],
                                                     "top_logprobs": top}]})
                used = d.usage
            else:
                g = backend.generate(messages, temperature=float(req.get("temperature", 1.0)),
                                     max_tokens=int(req.get("max_tokens") or 16), seed=seed)
                choice.update(message={"role": "assistant", "content": g.text}, finish_reason=g.finish_reason)
                used = g.usage
            reply: dict[str, Any] = {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion",
                                     "created": int(time.time()), "model": model_name, "choices": [choice]}
            if used.prompt is not None and used.completion is not None:  # as llama.cpp and vLLM report it
                reply["usage"] = {"prompt_tokens": used.prompt, "completion_tokens": used.completion,
                                  "total_tokens": used.prompt + used.completion}
            self._send(200, reply)

    return Handler


def make_server(backend: Backend, model_name: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(backend, model_name))
    server.daemon_threads = True
    return server


def serve_in_thread(backend: Backend, model_name: str, host: str = "127.0.0.1",
                    port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = make_server(backend, model_name, host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
