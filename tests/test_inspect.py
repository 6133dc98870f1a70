"""The protocol as an Inspect task, and Inspect logs as an import format — run for real through
Inspect with its mockllm provider and scripted answers (digits, junk, top-logprobs), offline.

The script knows which slot it answers from the seed the task's solver sends (derived from
persona, item and epoch, like the recorder's), so every stored row can be checked against
what was scripted, whatever order Inspect runs the samples in.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, require_extra, run_cli

TASK_FILE = "toolkit/integrations/inspect_task.py"  # as `inspect eval` is given it, from the repository root
PERSONAS = ["A night-shift nurse who trusts protocols", "A street artist who distrusts institutions",
            "A retired judge who values tradition"]
EPOCHS = 2


@pytest.fixture(scope="module")
def inspect_ai():
    require_extra("inspect", "inspect_ai")
    import inspect_ai

    return inspect_ai


def _answer(pid: int, item: int, epoch: int) -> int:
    return (pid * 5 + item * 2 + epoch * epoch) % 6


JUNK_ONCE = {(1, 4, 2), (0, 17, 1)}  # first answer unparseable, the retry a digit
JUNK_ALWAYS = {(2, 9, 2)}  # never a digit: rating -1 after max_attempts + one long answer


def _output(content: str, logprobs=None):
    from inspect_ai.model import ModelOutput, ModelUsage

    out = ModelOutput.from_content(model="mockllm", content=content)
    out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # no tokenizer download offline
    if logprobs is not None:
        out.choices[0].logprobs = logprobs
    return out


def _sampled_script(inst):
    from toolkit.integrations.inspect_task import _seed

    slots = {}
    for pid in range(len(PERSONAS)):
        for item in inst.item_ids:
            for epoch in range(1, EPOCHS + 1):
                base = _seed(inst.digest, pid, item, epoch)
                for attempt in range(11):
                    slots[base + attempt] = (pid, item, epoch, attempt)

    def script(messages, tools, tool_choice, config):
        pid, item, epoch, attempt = slots[config.seed]
        if (pid, item, epoch) in JUNK_ALWAYS or ((pid, item, epoch) in JUNK_ONCE and attempt == 0):
            return _output(f"junk answer {'abcdefghijk'[attempt]}")  # no digit: nothing to read a rating from
        return _output(str(_answer(pid, item, epoch)))

    return script


def _logprobs(pid: int, item: int) -> dict[str, float]:
    """A digit distribution per cell (some mass left to other tokens); digit 5 is missing from
    persona 1's top-k lists, so the import must impute it."""
    weights = [1 + ((pid + 1) * (item + d)) % 7 for d in range(6)]
    total = sum(weights) * 1.25
    out = {str(d): math.log(w / total) for d, w in enumerate(weights)}
    if pid == 1:
        del out["5"]
    return out


def _logprob_script(inst):
    from inspect_ai.model import Logprob, Logprobs, TopLogprob

    prompts = {inst.prompt(item, text): (pid, item) for pid, text in enumerate(PERSONAS) for item in inst.item_ids}

    def script(messages, tools, tool_choice, config):
        assert config.logprobs and config.max_tokens == 1
        pid, item = prompts[messages[-1].text]
        lps = _logprobs(pid, item)
        tops = [TopLogprob(token=t, logprob=v) for t, v in lps.items()] + [TopLogprob(token="The", logprob=-3.5)]
        best = max(lps, key=lps.get)
        return _output(best, Logprobs(content=[Logprob(token=best, logprob=lps[best], top_logprobs=tops)]))

    return script


def _eval(inspect_ai, tmp: Path, script, **task_args) -> Path:
    from inspect_ai.model import get_model

    personas = tmp / "personas.json"
    personas.write_text(json.dumps(PERSONAS))
    logs = inspect_ai.eval(TASK_FILE, task_args={"personas": str(personas), **task_args},
                           model=get_model("mockllm/model", custom_outputs=script), log_dir=str(tmp / "logs"),
                           display="none")
    assert logs[0].status == "success", logs[0].error
    return tmp / "logs"


@pytest.fixture(scope="module")
def sampled_logs(inspect_ai, tmp_path_factory):
    from toolkit.protocol.instrument import load_instrument

    here = os.getcwd()
    os.chdir(ROOT)  # the task file is named as `inspect eval` is given it, from the repository root
    try:
        return _eval(inspect_ai, tmp_path_factory.mktemp("sampled"), _sampled_script(load_instrument()),
                     repetitions=EPOCHS)
    finally:
        os.chdir(here)


def test_inspect_logs_import_with_every_scripted_answer(sampled_logs, tmp_path):
    store = ["--store", str(tmp_path / "store")]
    first = run_cli("import", str(sampled_logs), *store, "--variant", "scripted")
    assert first.returncode == 0, first.stderr
    assert "mfq30/scripted/model/T0.1/persona" in first.stdout and "added" in first.stdout
    again = run_cli("import", str(sampled_logs), *store, "--variant", "scripted")
    assert again.returncode == 0 and "unchanged" in again.stdout  # the same log is the same run
    rows = json.loads(run_cli("show", *store, "--limit", "100000", "--format", "json").stdout)
    assert len(rows) == len(PERSONAS) * 30 * EPOCHS
    for r in rows:
        slot = (r["persona_id"], r["item_id"], r["repetition"])
        if slot in JUNK_ALWAYS:
            assert (r["rating"], r["failures"]) == (-1, 10) and r["response"] == "junk answer k"
        else:
            assert r["rating"] == _answer(*slot), slot
            assert r["failures"] == (1 if slot in JUNK_ONCE else 0)
        request = json.loads(r["request"])
        assert request["endpoint"] == "inspect" and request["epoch"] == r["repetition"] and request["eval_id"]
        assert request["sample_id"] == f"p{r['persona_id']}-i{r['item_id']}"
    shown = run_cli("show", *store, "--persona", "1", "--item", "4", "--repetition", "2").stdout
    assert "failed attempt 1:\n  junk answer a" in shown  # the failed text is kept, as the recorder keeps it


def _published_persona_csv(path: Path) -> Path:
    lines = ["persona_id,question_id,run_index,rating,failures,response"]
    for pid in range(len(PERSONAS)):
        for item in range(1, 31):
            for epoch in range(1, EPOCHS + 1):
                slot = (pid, item, epoch)
                rating = -1 if slot in JUNK_ALWAYS else _answer(*slot)
                failures = 10 if slot in JUNK_ALWAYS else int(slot in JUNK_ONCE)
                lines.append(f"{pid},{item},{epoch},{rating},{failures},{rating}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_same_answers_through_the_published_csv_give_identical_metrics(sampled_logs, tmp_path):
    a, b = ["--store", str(tmp_path / "a")], ["--store", str(tmp_path / "b")]
    assert run_cli("import", str(sampled_logs), *a, "--model", "m", "--variant", "v").returncode == 0
    csv = _published_persona_csv(tmp_path / "m_temp01.csv")
    assert run_cli("import", str(csv), *b, "--model", "m", "--variant", "v").returncode == 0
    fast = ("--by", "group", "--format", "csv", "--bootstrap", "200", "--rerun-bootstrap", "50")
    from_log, from_csv = run_cli("analyze", *a, *fast), run_cli("analyze", *b, *fast)
    # persona 2 lacks a valid rating on item 9 in one repetition only: it is still complete
    assert from_log.returncode == 0, from_log.stderr
    assert from_log.stdout == from_csv.stdout  # same counts, same seeds, same bytes
    assert pl.read_csv(io.StringIO(from_log.stdout))["personas"].to_list() == [len(PERSONAS)] * 6


def test_logprob_logs_become_logprob_runs(inspect_ai, tmp_path, monkeypatch):
    from toolkit.protocol.instrument import load_instrument

    monkeypatch.chdir(ROOT)
    logs = _eval(inspect_ai, tmp_path, _logprob_script(load_instrument()), mode="logprob", variant="ft")
    from inspect_ai.log import read_eval_log

    for sample in read_eval_log(str(next(logs.glob("*.eval")))).samples:  # the scorer: the most likely digit
        lps = _logprobs(sample.metadata["persona_id"], sample.metadata["item_id"])
        assert sample.scores["rating"].value == int(max(lps, key=lps.get))
    store = ["--store", str(tmp_path / "store")]
    res = run_cli("import", str(logs), *store, "--model", "m", "--temperature", "1.0")
    assert res.returncode == 0, res.stderr
    assert "mfq30/ft/m/T1.0/logprob" in res.stdout  # the variant from the task's arguments
    from toolkit.store import Store

    st = Store(tmp_path / "store")
    table = pl.from_arrow(st.read_run(st.runs()[0], ["persona_id", "item_id", "digit_logprobs", "top_logprobs"]))
    assert table.height == len(PERSONAS) * 30
    for r in table.iter_rows(named=True):
        want = _logprobs(r["persona_id"], r["item_id"])
        got = r["digit_logprobs"]
        for d in range(6):
            assert got[d] == pytest.approx(want[str(d)], abs=1e-12) if str(d) in want else got[d] is None
        assert {t["token"] for t in json.loads(r["top_logprobs"])} == set(want) | {"The"}
    # the same distributions through the published logprob CSV give the same logit metrics
    lines = ["persona_id,question_id,run_index," + ",".join(f"digit_{d}_logprob" for d in range(6))
             + ",raw_top_logprobs_json"]
    for pid in range(len(PERSONAS)):
        for item in range(1, 31):
            lps = _logprobs(pid, item)
            tops = json.dumps([{"token": t, "logprob": v} for t, v in lps.items()]
                              + [{"token": "The", "logprob": -3.5}]).replace('"', '""')
            lines.append(f"{pid},{item},1," + ",".join(repr(lps[str(d)]) if str(d) in lps else "" for d in range(6))
                         + f',"{tops}"')
    (tmp_path / "m_logprobs_temp10.csv").write_text("\n".join(lines) + "\n")
    other = ["--store", str(tmp_path / "csv")]
    assert run_cli("import", str(tmp_path / "m_logprobs_temp10.csv"), *other, "--variant", "ft").returncode == 0
    fast = ("--format", "csv", "--bootstrap", "200", "--points", "5")
    from_log, from_csv = run_cli("curves", *store, *fast), run_cli("curves", *other, *fast)
    assert from_log.returncode == 0, from_log.stderr
    assert from_log.stdout == from_csv.stdout


def test_a_log_of_another_task_is_refused_in_one_line(inspect_ai, tmp_path):
    from inspect_ai import Task
    from inspect_ai.dataset import Sample
    from inspect_ai.model import get_model

    other = Task(dataset=[Sample(input="What is 2+2?", target="4")], name="arithmetic")
    inspect_ai.eval(other, model=get_model("mockllm/model", custom_outputs=[_output("4")]),
                    log_dir=str(tmp_path / "logs"), display="none")
    log = next((tmp_path / "logs").glob("*.eval"))
    res = run_cli("import", str(log), "--store", str(tmp_path / "store"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "not a log of the persona_moral task" in res.stderr and log.name in res.stderr
    assert not (tmp_path / "store").exists()


def test_without_the_extra_an_inspect_log_is_refused_with_the_install_line(tmp_path):
    log = tmp_path / "x.eval"
    log.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: the extra is checked before its content
    blocker = tmp_path / "block" / "inspect_ai"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('inspect_ai hidden for this test')\n")
    res = run_cli("import", str(log), "--store", str(tmp_path / "s"), env={"PYTHONPATH": str(tmp_path / "block")})
    assert res.returncode == 2 and "needs the [inspect] extra: pip install -e '.[inspect]'" in res.stderr


def test_self_mode_asks_without_a_persona_and_imports_as_a_self_run(inspect_ai, tmp_path, monkeypatch):
    from inspect_ai.model import get_model

    from toolkit.integrations.inspect_task import _seed
    from toolkit.protocol.instrument import load_instrument

    inst = load_instrument()
    slots = {_seed(inst.digest, None, item, epoch): (item, epoch) for item in inst.item_ids for epoch in (1, 2)}
    asked = []

    def script(messages, tools, tool_choice, config):
        asked.append(messages[-1].text)
        item, epoch = slots[config.seed]
        return _output(str((item + epoch) % 6))

    monkeypatch.chdir(ROOT)
    inspect_ai.eval(TASK_FILE, task_args={"mode": "self", "repetitions": 2},
                    model=get_model("mockllm/model", custom_outputs=script), log_dir=str(tmp_path / "logs"),
                    display="none")
    assert len(asked) == 60 and all("persona" not in text.lower() for text in asked)
    store = ["--store", str(tmp_path / "store")]
    res = run_cli("import", str(tmp_path / "logs"), *store, "--model", "m")
    assert res.returncode == 0 and "mfq30/base/m/T0.1/self" in res.stdout, res.stderr
    prof = pl.read_csv(io.StringIO(run_cli("profiles", *store, "--format", "csv").stdout))
    harm = [i.id for i in inst.items if i.group == "Harm/Care"]
    want = sum((i + 1) % 6 + (i + 2) % 6 for i in harm) / (2 * len(harm))  # mean over items of the item means
    assert prof.filter(pl.col("group") == "Harm/Care")["mean"][0] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("samples", "message"), [
    ([{"persona_id": 0, "item_id": 999}], "item 999 is not a slot of instrument 'mfq30'"),
    ([{"persona_id": 0, "item_id": 1}, {"persona_id": 0, "item_id": 1}], "persona 0 item 1 epoch 1 appears in more"),
])
def test_a_hostile_log_with_our_metadata_is_refused(inspect_ai, tmp_path, samples, message):
    from inspect_ai import Task
    from inspect_ai.dataset import Sample
    from inspect_ai.model import get_model

    from toolkit.protocol.instrument import load_instrument

    inst = load_instrument()
    forged = [Sample(id=f"s{i}", input="rate", metadata={"instrument": "mfq30", "instrument_digest": inst.digest,
                                                         "mode": "persona", **meta})
              for i, meta in enumerate(samples)]
    model = get_model("mockllm/model", custom_outputs=lambda *args: _output("3"))
    inspect_ai.eval(Task(dataset=forged, name="forged"), model=model, log_dir=str(tmp_path / "logs"), display="none")
    res = run_cli("import", str(tmp_path / "logs"), "--store", str(tmp_path / "store"), "--temperature", "0.1")
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "store").exists()


def test_the_readme_inspect_commands_run_offline_as_written(inspect_ai, tmp_path):
    """The README's offline Inspect lines, run exactly as written from an empty folder (no key,
    no network): the registered task name resolves, the stand-in model answers, and the log
    imports and analyzes."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Run it in Inspect", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    offline = [line for line in lines if "toolkit-instant" in line or "toolkit analyze" in line]
    assert len(offline) == 2, lines
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    for line in offline:
        res = subprocess.run(line.replace("/tmp/mine", str(tmp_path / "mine")), shell=True, cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, (line, res.stdout[-2000:], res.stderr[-2000:])
    assert "demo" in res.stdout and "20×30" in res.stdout


def test_the_task_takes_a_persona_and_item_subset(inspect_ai, tmp_path):
    """-T limit_personas=N -T items=1,2,3: the first N personas of the set and those items, as
    the recorder's --limit-personas and --items choose them; an item the instrument lacks is
    refused by name."""
    from toolkit.integrations.inspect_package._registry import persona_moral

    logs = inspect_ai.eval(persona_moral(personas="demo20", repetitions=2, limit_personas=3, items="1,2,30"),
                           model="toolkit-instant/subset", log_dir=str(tmp_path / "logs"), display="none")
    samples = logs[0].samples
    assert len(samples) == 3 * 3 * 2
    assert {(s.metadata["persona_id"], s.metadata["item_id"]) for s in samples} == \
        {(p, i) for p in range(3) for i in (1, 2, 30)}
    with pytest.raises(ValueError, match=r"items \[31\] are not items"):
        persona_moral(personas="demo20", items=[1, 31])
