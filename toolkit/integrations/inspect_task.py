"""The protocol as an Inspect task (``[inspect]`` extra):

    inspect eval toolkit/integrations/inspect_task.py -T personas=personas.json --model openai/gpt-4o

One sample per persona × item (per item in ``self`` mode), the instrument's template as the
prompt, ``epochs`` = repetitions, the instrument's sampling defaults as the generate config.
The solver follows the recorder's protocol: a short answer, asked again while it does not
parse to a rating (up to ``max_attempts``), then one longer answer; every failed text is
kept in the sample's store. In ``logprob`` mode it asks once for one token with its top-k
log-probabilities. The scorer applies the instrument's rating rule. ``toolkit import
logs/`` turns the logs into runs (``toolkit.ingest.inspect_log``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver

from toolkit.ingest.inspect_log import top_k_digits
from toolkit.protocol.instrument import Instrument, load_instrument
from toolkit.protocol.personas import PersonaSet, load_personas
from toolkit.protocol.requests import Protocol
from toolkit.store.manifest import MODES

TASK_NAME = "persona_moral"  # the importer recognises the task's logs by their sample metadata, not this


def _seed(digest: str, persona_id: int | None, item_id: int, epoch: int) -> int:
    """A per-slot seed from content (never time), like the recorder's."""
    text = f"{digest}:{persona_id}:{item_id}:{epoch}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def samples(inst: Instrument, personas: PersonaSet | None, mode: str, *, limit_personas: int | None = None,
            items: list[int] | None = None) -> list[Sample]:
    """One sample per persona x item: the first ``limit_personas`` personas of the set and the
    ``items`` ids (default all), as the recorder's --limit-personas and --items choose them."""
    meta: dict[str, Any] = {"instrument": inst.name, "instrument_digest": inst.digest, "mode": mode}
    if personas is not None:
        meta |= {"persona_set": personas.name, "persona_set_digest": personas.digest,
                 "persona_count": len(personas.personas)}
    out = []
    people: Sequence[tuple[int | None, str | None]] = [(None, None)]
    if personas is not None:
        people = [(int(pid), str(text)) for pid, text in enumerate(personas.personas)][:limit_personas]
    chosen = [it for it in inst.items if items is None or it.id in items]
    for pid, text in people:
        for item in chosen:
            sid = f"i{item.id}" if pid is None else f"p{pid}-i{item.id}"
            out.append(Sample(id=sid, input=inst.prompt(item.id, text),
                              metadata={**meta, "persona_id": pid, "item_id": item.id}))
    return out


@solver
def rate(instrument: str = "mfq30", max_attempts: int = 10, max_tokens: int = 2, long_max_tokens: int = 64,
         send_seed: bool = True) -> Solver:
    """The recorder's answer protocol inside Inspect (see the module docstring)."""
    inst = load_instrument(instrument)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        prompt = list(state.messages)
        meta = state.metadata
        base = _seed(inst.digest, meta.get("persona_id"), meta["item_id"], state.epoch)
        failed: list[str] = []
        for attempt in range(max_attempts + 1):
            state.messages = list(prompt)
            final = attempt == max_attempts
            args: dict[str, Any] = {"max_tokens": long_max_tokens if final else max_tokens}
            if send_seed:
                args["seed"] = base + attempt
            state = await generate(state, **args)
            text = state.output.completion
            if final or inst.extract_rating(text) != -1:
                break
            failed.append(text)
        state.store.set("failed_attempts", failed)
        return state

    return solve


@solver
def digit_logprobs(top_logprobs: int = 20) -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        return await generate(state, max_tokens=1, logprobs=True, top_logprobs=top_logprobs)

    return solve


@metric
def valid_share() -> Metric:
    def compute(scores: list[SampleScore]) -> float:
        values = [s.score.as_float() for s in scores]
        return sum(v >= 0 for v in values) / len(values) if values else math.nan

    return compute


@metric
def mean_rating() -> Metric:
    def compute(scores: list[SampleScore]) -> float:
        values = [v for v in (s.score.as_float() for s in scores) if v >= 0]
        return sum(values) / len(values) if values else math.nan

    return compute


@scorer(metrics=[valid_share(), mean_rating()])
def rating(instrument: str = "mfq30") -> Scorer:
    """The instrument's rating rule on the final answer (-1: no valid rating); in logprob mode,
    the digit with the highest probability among the top-k list."""
    inst = load_instrument(instrument)

    async def score(state: TaskState, target: Target) -> Score:
        if state.metadata.get("mode") == "logprob":
            lps = top_k_digits(state.output, inst)[0]
            known = [(lp, v) for v, lp in zip(range(inst.scale_min, inst.scale_max + 1), lps) if lp is not None]
            value = max(known)[1] if known else -1
            return Score(value=value, answer=state.output.completion, explanation="most likely digit")
        value = inst.extract_rating(state.output.completion)
        return Score(value=value, answer=state.output.completion,
                     explanation=f"after {len(state.store.get('failed_attempts', []))} failed attempt(s)")

    return score


def _from_caller(path: str | None) -> str | None:
    """Inspect loads a task from inside the task file's folder; a relative file name the user
    typed is relative to the shell's folder ($PWD), so look there when it is not found here."""
    if path is None or os.path.isabs(path) or os.path.exists(path) or not os.environ.get("PWD"):
        return path
    candidate = os.path.join(os.environ["PWD"], path)
    return candidate if os.path.exists(candidate) else path


def _item_ids(items: str | int | list[int] | None) -> list[int] | None:
    """``-T items=1,2,3`` arrives as text (or one number), a task argument as a list."""
    if items is None:
        return None
    parts = items.split(",") if isinstance(items, str) else [items] if isinstance(items, int) else list(items)
    try:
        return [int(str(p).strip()) for p in parts if str(p).strip()]
    except ValueError:
        raise ValueError(f"items must be item ids such as 1,2,3, not {items!r}") from None


@task
def persona_moral(personas: str | None = None, instrument: str = "mfq30", repetitions: int | None = None,
                  mode: str = "persona", variant: str = "base", top_logprobs: int | None = None,
                  limit_personas: int | None = None, items: str | list[int] | None = None) -> Task:
    """MFQ-style persona protocol: ``personas`` is a JSON list of descriptions (or a shipped set
    name; required unless ``mode=self``), ``instrument`` a name or file, ``repetitions`` the
    epochs (default the instrument's; logprob mode asks once), ``variant`` the label `toolkit
    import` gives the run, ``limit_personas`` the first N personas of the set and ``items`` the
    item ids to ask (``1,2,3`` or a list; default all)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if limit_personas is not None and (isinstance(limit_personas, bool) or not isinstance(limit_personas, int)
                                       or limit_personas < 1):
        raise ValueError(f"limit_personas must be a whole number >= 1, not {limit_personas!r}")
    item_ids = _item_ids(items)
    personas, instrument = _from_caller(personas), _from_caller(instrument) or instrument
    inst = load_instrument(instrument)
    proto = Protocol.from_instrument(inst, mode, repetitions=repetitions, top_logprobs=top_logprobs)
    pset = None if mode == "self" else load_personas(personas) if personas else None
    if pset is None and mode != "self":
        raise ValueError("-T personas=FILE is required (a JSON list of persona descriptions) unless mode=self")
    if mode == "logprob":
        solver_ = digit_logprobs(proto.top_logprobs)
        config = GenerateConfig(temperature=proto.temperature, max_tokens=1, logprobs=True,
                                top_logprobs=proto.top_logprobs)
        epochs = 1
    else:
        solver_ = rate(instrument, proto.max_attempts, proto.max_tokens, proto.long_max_tokens, proto.send_seed)
        config = GenerateConfig(temperature=proto.temperature, max_tokens=proto.max_tokens)
        epochs = proto.repetitions
    unknown = sorted(set(item_ids or []) - set(inst.item_ids))
    if unknown:
        raise ValueError(f"items {unknown} are not items of instrument {inst.name!r}")
    dataset = samples(inst, pset, mode, limit_personas=limit_personas, items=item_ids)
    return Task(dataset=MemoryDataset(dataset, name=f"{inst.name}-{mode}"), solver=solver_,
                scorer=rating(instrument), config=config, epochs=epochs, name=TASK_NAME,
                metadata={"instrument": inst.name, "instrument_digest": inst.digest, "mode": mode,
                          "variant": variant, "temperature": proto.temperature})
