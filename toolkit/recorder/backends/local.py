"""Local transformers backend (optional ``[local]`` extra: torch CPU, transformers, gguf).

Loads a model folder or a GGUF file, applies the model's chat template, samples for
persona/self runs, and reads the exact next-token distribution for logprob runs: the
probability of rating r is the total probability of every vocabulary token that reads as r
once whitespace is stripped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ...errors import ToolkitError
from ...hashing import sha256_file
from ...protocol.requests import PROTOCOL_DEFAULTS
from .base import DigitLogprobs, Generation, Usage


def model_digest(path: Path) -> str:
    """Identity of the weights: SHA-256 of the GGUF file, or of a folder's files (name + digest)."""
    if path.is_file():
        return sha256_file(path)
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


class LocalBackend:
    name = "local"

    def __init__(self, model_path: str | Path, *, threads: int | None = None,
                 top_logprobs: int = PROTOCOL_DEFAULTS["top_logprobs"]):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from disk, never from a hub
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ToolkitError("the local backend needs the [local] extra: pip install -e '.[local]'") from None
        path = Path(model_path)
        if not path.exists():
            raise ToolkitError("no such model file or folder", path=str(path))
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        kwargs = {"gguf_file": path.name} if path.is_file() else {}
        folder = path.parent if path.is_file() else path
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
        cast(Any, self.model).eval()
        self.model_name = path.stem
        self.endpoint = f"local-transformers:sha256:{model_digest(path)}"
        self._lock = threading.Lock()  # one forward pass at a time; torch uses the cores
        self._digit_ids: dict[int, list[int]] | None = None
        self.top_logprobs = top_logprobs  # length of the stored top-k list (the digits are exact anyway)

    def _inputs(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        enc: Any = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                                      return_tensors="pt", return_dict=True)  # a BatchEncoding
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def generate(self, messages: Sequence[dict[str, Any]], *, temperature: float, max_tokens: int,
                 seed: int) -> Generation:
        torch = self.torch
        with self._lock, torch.no_grad():
            t0 = time.perf_counter()
            inputs = self._inputs(messages)
            gen = torch.Generator().manual_seed(seed)
            ids = inputs["input_ids"]
            out_ids = []
            past = None
            attn = inputs["attention_mask"]
            finish = "length"
            eos = self.tokenizer.eos_token_id
            for _ in range(max_tokens):
                out = self.model(input_ids=ids, attention_mask=attn, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1].double()
                if temperature <= 0:
                    nxt = int(torch.argmax(logits))
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = int(torch.multinomial(probs, 1, generator=gen))
                if nxt == eos:
                    finish = "stop"
                    break
                out_ids.append(nxt)
                ids = torch.tensor([[nxt]])
                attn = torch.cat([attn, torch.ones((1, 1), dtype=attn.dtype)], dim=1)
            text = str(self.tokenizer.decode(out_ids, skip_special_tokens=True))
            used = Usage(int(inputs["input_ids"].shape[1]), len(out_ids) + (finish == "stop"), 0)
            return Generation(text, finish, time.perf_counter() - t0, usage=used)

    def _digits(self, scale: Sequence[int]) -> dict[int, list[int]]:
        if self._digit_ids is None:
            wanted = {str(r): r for r in scale}
            ids: dict[int, list[int]] = {r: [] for r in scale}
            for tid in range(len(self.tokenizer)):
                text = str(self.tokenizer.decode([tid])).strip()
                if text in wanted:
                    ids[wanted[text]].append(tid)
            self._digit_ids = ids
        return self._digit_ids

    def digit_logprobs(self, messages: Sequence[dict[str, Any]], scale: Sequence[int], *,
                       seed: int) -> DigitLogprobs:
        torch = self.torch
        digit_ids = self._digits(scale)
        with self._lock, torch.no_grad():
            t0 = time.perf_counter()
            inputs = self._inputs(messages)
            out = self.model(**inputs)
            logp = torch.log_softmax(out.logits[0, -1].double(), dim=-1)
            values = [float(torch.logsumexp(logp[digit_ids[r]], dim=0)) if digit_ids[r] else None for r in scale]
            top = torch.topk(logp, self.top_logprobs)
            listed = [{"token": self.tokenizer.decode([int(i)]), "logprob": float(v)}
                      for v, i in zip(top.values, top.indices)]
            return DigitLogprobs(values, str(listed[0]["token"]), json.dumps(listed, ensure_ascii=False),
                                 time.perf_counter() - t0, usage=Usage(int(inputs["input_ids"].shape[1]), 1, 0))

    def close(self) -> None:
        pass
