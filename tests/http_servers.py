"""Real HTTP servers on 127.0.0.1 for recorder tests: a deterministic OpenAI-compatible one
and a deliberately misbehaving one (429 + Retry-After, 500, malformed JSON, slow, reset)."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer_for(body: dict) -> str:
    """Deterministic answer from the request: a digit, or (1 time in 4) an unparseable text."""
    h = int(hashlib.sha256(json.dumps([body["messages"], body.get("seed"), body.get("max_tokens")],
                                      sort_keys=True).encode()).hexdigest()[:8], 16)
    if body.get("max_tokens", 16) <= 2 and h % 4 == 0:
        return "Well"
    return f"{h % 6} because"


class Behaviour:
    """Per-request script: the n-th POST (counted from 0) gets ``plan[n % len(plan)]``, or with
    ``repeat=False`` ``plan[n]`` and "ok" once the plan is used up."""

    def __init__(self, plan=("ok",), delay: float = 0.0, repeat: bool = True, usage: bool = False):
        self.plan = list(plan)
        self.usage = usage  # report llama.cpp-style token usage, logged in ``sent_usage``
        self.sent_usage: list[tuple[int, int, int]] = []
        self.repeat = repeat
        self.delay = delay
        self.count = 0
        self.ok = 0
        self.auth: set[str] = set()
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            if self.repeat:
                action = self.plan[self.count % len(self.plan)]
            else:
                action = self.plan[self.count] if self.count < len(self.plan) else "ok"
            self.count += 1
            return action


class JsonReplies(BaseHTTPRequestHandler):
    """What every test server's handler shares: HTTP/1.1, silence, and JSON replies."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args):
        pass

    def _json(self, code, obj=None, extra=None, raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def make_handler(behaviour: Behaviour):
    class Handler(JsonReplies):

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            behaviour.auth.add(self.headers.get("Authorization", ""))
            action = behaviour.next()
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if action == "429":
                return self._json(429, {"error": "slow down"}, {"Retry-After": "0.05"})
            if action == "500":
                return self._json(500, {"error": "boom"})
            if action == "malformed":
                return self._json(200, None, raw=b'{"choices": [ this is not json')
            if action == "slow":
                time.sleep(1.5)  # longer than the client's timeout in the tests
                return self._json(200, {"choices": [{"message": {"content": "5"}, "finish_reason": "stop"}]})
            if action == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # RST instead of a response
                return None
            if action == "400":
                return self._json(400, {"error": "bad request"})
            hostile = self._hostile(action, body)
            if hostile is not False:
                return hostile
            with behaviour.lock:
                behaviour.ok += 1
            if body.get("logprobs"):
                h = int(hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:8], 16)
                weights = [1 + (h >> (3 * k)) % 7 for k in range(6)]
                tot = sum(weights) + 3
                top = [{"token": str(k), "logprob": math.log(w / tot)} for k, w in enumerate(weights) if k != h % 6]
                top.append({"token": " maybe", "logprob": math.log(3 / tot)})
                choice = {"message": {"content": top[0]["token"]}, "finish_reason": "length",
                          "logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                                    "top_logprobs": top}]}}
            else:
                choice = {"message": {"role": "assistant", "content": answer_for(body)}, "finish_reason": "stop"}
            reply = {"id": "x", "object": "chat.completion", "choices": [choice]}
            if behaviour.usage:
                prompt = len(json.dumps(body["messages"])) // 4 + 1
                completion = len(str(choice["message"]["content"]).split()) + 1
                cached = prompt // 2 if body.get("seed", 0) % 2 else 0
                with behaviour.lock:
                    behaviour.sent_usage.append((prompt, completion, cached))
                reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                  "total_tokens": prompt + completion,
                                  "prompt_tokens_details": {"cached_tokens": cached}}
            return self._json(200, reply)

        def _hostile(self, action, body):
            """Replies an attacker or a broken server might send (see tests/test_integrity.py)."""
            good = {"choices": [{"message": {"content": "3"}, "finish_reason": "stop"}]}
            if action == "finish_int":
                return self._json(200, {"choices": [{"message": {"content": "3"}, "finish_reason": 5}]})
            if action == "redirect":
                return self._json(302, good, {"Location": "http://127.0.0.1:9/elsewhere"})
            if action == "error200":
                return self._json(200, {"error": {"message": "quota exceeded"}})
            if action == "words":  # an answer with no rating in it, however often it is asked
                return self._json(200, {"choices": [{"message": {"content": "I would rather not say."},
                                                     "finish_reason": "stop"}]})
            if action == "content_list":
                return self._json(200, {"choices": [{"message": {"content": ["3"]}, "finish_reason": "stop"}]})
            if action == "not_utf8":  # a chat completion whose text holds a byte that is not UTF-8
                raw = b'{"choices": [{"message": {"content": "3 \xff"}, "finish_reason": "stop"}]}'
                return self._json(200, None, raw=raw)
            if action == "huge":
                text = "3 " + "x" * (10 << 20)
                return self._json(200, {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]})
            if action in ("endless", "drip"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.time() + 20  # bounded: the test server stops by itself
                piece = b"x" * (65536 if action == "endless" else 1)
                try:
                    while time.time() < deadline:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                        if action == "drip":
                            time.sleep(0.5)
                except OSError:
                    pass
                self.close_connection = True
                return None
            if action == "echo401":
                return self._json(401, {"error": f"invalid key: {self.headers.get('Authorization')}"})
            if action == "lp_sampled":  # the server sampled "2" although "4" is the most likely token
                top = [{"token": "4", "logprob": math.log(0.6)}, {"token": "2", "logprob": math.log(0.3)}]
                choice = {"message": {"content": "2"}, "finish_reason": "stop",
                          "logprobs": {"content": [{"token": "2", "logprob": top[1]["logprob"], "top_logprobs": top}]}}
                return self._json(200, {"model": "served-name", "choices": [choice]})
            if action == "no_logprobs":  # a server that ignores logprobs and just answers
                return self._json(200, {"choices": [{"message": {"content": "3"}, "finish_reason": "stop"}]})
            if action.startswith("lp_"):
                top = {"lp_inf": [{"token": "3", "logprob": float("inf")}],
                       "lp_pos": [{"token": "3", "logprob": 0.5}, {"token": "2", "logprob": -1.0}],
                       "lp_bool": [{"token": "3", "logprob": True}],
                       "lp_dup": [{"token": "3", "logprob": -0.1}, {"token": "3", "logprob": -0.2}],
                       "lp_tiny": [{"token": str(d), "logprob": -1e308} for d in range(6)],
                       "lp_none": None}[action]
                choice = {"message": {"content": "3"}, "finish_reason": "length"}
                if top is not None:
                    choice["logprobs"] = {"content": [{"token": "3", "logprob": -0.1, "top_logprobs": top}]}
                return self._json(200, None, raw=json.dumps({"choices": [choice]}).encode())  # inf -> Infinity
            return False

    return Handler


def start(behaviour: Behaviour):
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(behaviour))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/v1"


class BatchProvider:
    """OpenAI's Files and Batches endpoints on 127.0.0.1, answering every batch from the
    scripted model (``answer_for``): a batch finishes after ``polls`` status requests; request
    lines whose index is in ``fail`` come back in the error file as expired; ``break_create``
    makes the next batch creations fail with a 500 (a crash between upload and create)."""

    def __init__(self, polls: int = 1, fail: set[int] = frozenset(), break_create: int = 0):
        self.polls, self.fail, self.break_create = polls, set(fail), break_create
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = 0
        self.created = 0
        self.lock = threading.Lock()

    def _finish(self, batch: dict) -> None:
        out, err = [], []
        for i, line in enumerate(self.files[batch["input_file_id"]].decode().splitlines()):
            req = json.loads(line)
            if i in self.fail:
                err.append({"id": f"e{i}", "custom_id": req["custom_id"], "response": None,
                            "error": {"code": "batch_expired", "message": "This request could not be executed"}})
                continue
            body = {"id": f"c{i}", "object": "chat.completion", "model": req["body"]["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_for(req["body"])},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
            out.append({"id": f"o{i}", "custom_id": req["custom_id"], "response": {"status_code": 200, "body": body},
                        "error": None})
        for key, lines in (("output_file_id", out), ("error_file_id", err)):
            if lines:
                fid = f"file-{key[0]}{len(self.files)}"
                self.files[fid] = ("\n".join(json.dumps(x) for x in reversed(lines)) + "\n").encode()
                batch[key] = fid
        batch["status"] = "completed"

    def handler(self):
        provider = self

        class Handler(JsonReplies):

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with provider.lock:
                    if self.path.endswith("/files"):
                        boundary = self.headers["Content-Type"].split("boundary=")[1].encode()
                        part = next(p for p in data.split(b"--" + boundary) if b'name="file"' in p)
                        content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
                        fid = f"file-in{len(provider.files)}"
                        provider.files[fid] = content
                        provider.uploads += 1
                        return self._json(200, {"id": fid, "object": "file", "purpose": "batch"})
                    if self.path.endswith("/batches"):
                        if provider.break_create:
                            provider.break_create -= 1
                            return self._json(500, {"error": "try later"})
                        req = json.loads(data)
                        if req["input_file_id"] not in provider.files or req["endpoint"] != "/v1/chat/completions":
                            return self._json(400, {"error": "bad batch"})
                        bid = f"batch_{len(provider.batches)}"
                        provider.batches[bid] = {"id": bid, "status": "validating", "polls": 0,
                                                 "input_file_id": req["input_file_id"]}
                        provider.created += 1
                        return self._json(200, {k: v for k, v in provider.batches[bid].items() if k != "polls"})
                return self._json(404, {"error": "no such endpoint"})

            def do_GET(self):
                with provider.lock:
                    parts = self.path.split("/")
                    if "batches" in parts:
                        batch = provider.batches.get(parts[-1])
                        if batch is None:
                            return self._json(404, {"error": "no such batch"})
                        batch["polls"] += 1
                        if batch["status"] != "completed":
                            if batch["polls"] >= provider.polls:
                                provider._finish(batch)
                            else:
                                batch["status"] = "in_progress"
                        return self._json(200, {k: v for k, v in batch.items() if k != "polls"})
                    if parts[-1] == "content" and parts[-2] in provider.files:
                        return self._json(200, raw=provider.files[parts[-2]])
                return self._json(404, {"error": "no such file"})

        return Handler


def start_provider(provider: BatchProvider):
    server = ThreadingHTTPServer(("127.0.0.1", 0), provider.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
