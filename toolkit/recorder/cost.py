"""What a recording will cost before it is sent (`record --plan`), from the tokens stored runs
report (schema version 3) and a price table.

The estimate per slot is the mean of the stored slots' token counts, which already include the
failed attempts each slot was asked again for: the recorder sums a slot's usage over every
attempt. It is taken from the run being planned when it has counted slots, else from another
run of the same instrument and mode; with none, the prompt is estimated at 4 characters a
token and the answer at the protocol's ``max_tokens`` (an upper bound), and the output says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import pyarrow.compute as pc

from ..errors import ToolkitError
from ..hashing import parse_json
from ..store import Store
from ..store.schema import TOKEN_COLUMNS
from .plan import Plan

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text with BPE tokenizers


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens: prompt (input), completion (output) and cached prompt
    tokens (default: the input price)."""

    input: float
    output: float
    cached_input: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("input", self.input), ("output", self.output), ("cached_input", self.cached_input)):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ToolkitError(f"the {name} price must be a finite number >= 0 (dollars per million tokens)")

    @classmethod
    def from_file(cls, path: str | Path) -> Prices:
        """A JSON file {"input_per_million": 2.5, "output_per_million": 10, "cached_input_per_million": 1.25}."""
        try:
            raw = parse_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ToolkitError(f"cannot read the price table: {exc}", path=str(path)) from None
        keys = ("input_per_million", "output_per_million", "cached_input_per_million")
        if not isinstance(raw, dict) or set(raw) - set(keys):
            raise ToolkitError("a price table is an object with input_per_million, output_per_million and optionally "
                               "cached_input_per_million", path=str(path))
        given, out, cached = (raw.get(k) for k in keys)
        if _is_number(given) and _is_number(out) and (cached is None or _is_number(cached)):
            return cls(float(given), float(out), None if cached is None else float(cached))
        raise ToolkitError("prices must be numbers (input_per_million and output_per_million required)",
                           path=str(path))


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Estimate:
    """Tokens the slots to send are expected to cost, and where the per-slot rate comes from."""

    slots: int
    prompt_tokens: float
    completion_tokens: float
    cached_tokens: float
    basis: str

    def cost(self, prices: Prices) -> float:
        cached_price = prices.input if prices.cached_input is None else prices.cached_input
        paid_prompt = self.prompt_tokens - self.cached_tokens
        return (paid_prompt * prices.input + self.cached_tokens * cached_price
                + self.completion_tokens * prices.output) / 1e6

    def lines(self, prices: Prices | None) -> list[str]:
        out = [f"tokens_in ~{self.prompt_tokens:.0f}", f"tokens_out ~{self.completion_tokens:.0f}",
               f"tokens_basis {self.basis}"]
        if prices is not None:
            out.append(f"cost ~${self.cost(prices):.2f} (at ${prices.input:g} in, ${prices.output:g} out per million "
                       "tokens)")
        return out


def _stored_rate(store: Store, run_ids: list[str]) -> tuple[float, float, float, str] | None:
    """Mean tokens per slot over the first of ``run_ids`` whose rows report them."""
    for run_id in run_ids:
        m = store.get_run(run_id)
        if m is None or not m.rows:
            continue
        t = store.read_run(m, ["prompt_tokens", "completion_tokens", "cached_tokens"], generations="all")
        counted = pc.and_(pc.is_valid(t["prompt_tokens"]), pc.is_valid(t["completion_tokens"]))
        n = pc.sum(counted).as_py() or 0
        if not n:
            continue
        sums = [pc.sum(pc.filter(t[c], counted)).as_py() or 0 for c in TOKEN_COLUMNS]
        # the rate per *slot*: every stored row is one slot of one generation
        return sums[0] / n, sums[1] / n, sums[2] / n, f"the mean of {n} counted slot(s) of run {run_id}"
    return None


def estimate(store: Store, plan: Plan, run_id: str, instrument_digest: str, mode: str) -> Estimate:
    """Tokens the plan's slots to send will cost (see the module's docstring)."""
    others = sorted(m.run_id for m in store.runs()
                    if m.instrument["digest"] == instrument_digest and m.mode == mode and m.run_id != run_id)
    rate = _stored_rate(store, [run_id, *others])
    k = len(plan.to_send)
    if rate is not None:
        prompt, completion, cached, basis = rate
        return Estimate(k, prompt * k, completion * k, cached * k, basis)
    chars = sum(len(msg.get("content", "")) for slot in plan.to_send for msg in slot.messages)
    answer = 1 if mode == "logprob" else plan.protocol.max_tokens
    return Estimate(k, chars / CHARS_PER_TOKEN, float(answer * k), 0.0,
                    f"no stored run reports tokens: prompts at ~{CHARS_PER_TOKEN} characters a token, answers at "
                    f"max_tokens {answer} (retries not counted)")
