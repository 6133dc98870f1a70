"""What the model actually said: stored completions of a selection, for a person to read.

``completions`` returns the rows (from verified segments) as a frame; ``render`` prints each
as a block: where it came from and when, the request (its messages when it was recorded),
every failed attempt's raw text, the response and the rating extracted from it.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from ..hashing import parse_json
from ..store import RunManifest, Store

SHOW_COLUMNS = ["run_id", "persona_id", "item_id", "repetition", "rating", "failures", "response", "attempts",
                "request", "finish_reason", "latency_s", "collected_at", "provenance", "request_key",
                "digit_logprobs", "top_logprobs"]
TOP_SHOWN = 5  # tokens of a logprob row's top-k list that `show` prints


def digit_probabilities(L: np.ndarray) -> np.ndarray:
    """Each row's digit log-probabilities renormalised to probabilities over the digits (a digit
    missing from the top-k list gets 0; a row with none gets NaN)."""
    from ..numerics import exp

    finite = np.where(np.isnan(L), -np.inf, L)
    top = finite.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        w = exp(finite - top)  # <= 0, or NaN for a row without any digit
        return np.asarray(w / w.sum(axis=1, keepdims=True))


def completions(store: Store, runs: list[RunManifest], *, persona: list[int] | None = None,
                item: list[int] | None = None, repetition: list[int] | None = None,
                limit: int | None = None) -> pl.DataFrame:
    """The stored rows of ``runs`` matching the filters, ordered by run, persona, item, repetition."""
    frames = []
    for m in runs:
        df = pl.from_arrow(store.read_run(m, SHOW_COLUMNS))
        assert isinstance(df, pl.DataFrame)
        scale_min = store.instrument(m.instrument["digest"]).scale_min  # the rating the first digit stands for
        df = df.with_columns(pl.lit(m.mode).alias("mode"), pl.lit(scale_min).alias("scale_min"))  # render reads them
        for col, wanted in (("persona_id", persona), ("item_id", item), ("repetition", repetition)):
            if wanted is not None:
                df = df.filter(pl.col(col).is_in(wanted))
        frames.append(df.sort(["persona_id", "item_id", "repetition"], nulls_last=True))
        if limit is not None and sum(len(f) for f in frames) >= limit:
            break
    out = pl.concat(frames) if frames else pl.DataFrame(schema=dict.fromkeys(SHOW_COLUMNS, pl.String))
    return out.head(limit) if limit is not None else out


def _request_text(request: str) -> list[str]:
    """The request's messages as ``role: content`` lines when it has them, else its JSON."""
    try:
        obj = parse_json(request)
    except (TypeError, ValueError):
        return [f"  {request}"]
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if isinstance(messages, list) and messages:
        lines = []
        for msg in messages:
            role = msg.get("role", "?") if isinstance(msg, dict) else "?"
            content = msg.get("content", "") if isinstance(msg, dict) else msg
            lines += [f"  [{role}]"] + [f"    {line}" for line in str(content).splitlines() or [""]]
        rest = {k: v for k, v in obj.items() if k != "messages"}
        return lines + [f"  {json.dumps(rest, ensure_ascii=False, sort_keys=True)}"]
    return [f"  {json.dumps(obj, ensure_ascii=False, sort_keys=True)}"]


def _block(text: str | None) -> list[str]:
    if text is None:
        return ["  (none)"]
    return [f"  {line}" for line in text.splitlines()] or ['  ""']


def _logprob_lines(digits: list[float | None] | None, top: str | None, scale_min: int) -> list[str]:
    """A logprob row for a person: the digits' probabilities (renormalised over the digits, as
    the logit method uses them) and the first tokens of the server's top-k list (a list that
    is not readable JSON is said to be so, as a request is shown raw: the row rule does not
    check it)."""
    out = []
    if digits:
        L = np.array([np.nan if v is None else v for v in digits], dtype=np.float64)[None, :]
        probs = digit_probabilities(L)[0]
        out.append("digit probabilities: " + ", ".join(
            f"{scale_min + k}: {'not in top-k' if np.isnan(L[0, k]) else f'{p:.3f}'}" for k, p in enumerate(probs)))
    try:
        listed = parse_json(top) if top else None
    except (TypeError, ValueError):
        return out + ["top tokens: (the stored list is not readable JSON)"]
    if isinstance(listed, list) and listed:
        from ..numerics import exp

        shown = [e for e in listed if isinstance(e, dict) and isinstance(e.get("logprob"), (int, float))][:TOP_SHOWN]
        probs = exp(np.minimum(np.array([float(e["logprob"]) for e in shown], dtype=np.float64), 0.0))
        parts = [f"{json.dumps(e.get('token'), ensure_ascii=False)} {p:.3f}" for e, p in zip(shown, probs.tolist())]
        more = f" (+{len(listed) - len(shown)} more)" if len(listed) > len(shown) else ""
        out.append(f"top tokens: {', '.join(parts)}{more}")
    return out


def render(df: pl.DataFrame) -> str:
    """One readable block per completion."""
    out = []
    for r in df.iter_rows(named=True):
        persona = "no persona" if r["persona_id"] is None else f"persona {r['persona_id']}"
        out.append(f"== {r['run_id']} | {persona} | item {r['item_id']} | repetition {r['repetition']}")
        when = r["collected_at"] or "unknown time"
        extra = f", {r['latency_s']:.2f} s" if r["latency_s"] is not None else ""
        out.append(f"from {r['provenance']} at {when}{extra}")
        finish = f", finish reason {r['finish_reason']}" if r["finish_reason"] else ""
        if r.get("mode") == "logprob":  # no sampled rating: the digits' probabilities are the answer
            out.append(f"logprob cell: scored from the stored digit log-probabilities, not from a rating{finish}")
            out += _logprob_lines(r["digit_logprobs"], r["top_logprobs"], r["scale_min"])
        else:
            rating = "no valid rating" if r["rating"] == -1 else str(r["rating"])
            out.append(f"rating {rating} (after {r['failures']} failed attempt(s){finish})")
        out.append("request:")
        out += _request_text(r["request"])
        for i, attempt in enumerate(r["attempts"] or [], start=1):
            out.append(f"failed attempt {i}:")
            out += _block(attempt)
        out.append("response:")
        out += _block(r["response"])
        out.append("")
    return "\n".join(out) + ("\n" if out else "")
