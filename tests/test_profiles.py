"""Persona profiles (paper Appendix C): per persona, and over a set of personas, against a
plain-Python recomputation from the stored rows."""

from __future__ import annotations

import io
import json
import statistics
from collections import defaultdict

import polars as pl
import pytest

from conftest import run_cli
from toolkit.analysis.foundations import persona_filter, persona_profiles, persona_set_profiles
from toolkit.ingest.simulate import Spec, simulate
from toolkit.protocol.instrument import load_instrument
from toolkit.store import Store


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("prof") / "s")
    simulate(store, load_instrument(), runs=1, spec=Spec(personas=12, repetitions=2, invalid_share=0.15), seed=4)
    return store


def _by_hand(store: Store):
    """persona -> group -> list of (item mean, item sample sd) from the raw rows."""
    inst = load_instrument()
    group_of = {it.id: it.group for it in inst.items}
    m = store.runs()[0]
    cells = defaultdict(list)
    for row in store.read_run(m, ["persona_id", "item_id", "rating"]).to_pylist():
        if row["rating"] >= 0:
            cells[(row["persona_id"], row["item_id"])].append(row["rating"])
    out: dict = defaultdict(lambda: defaultdict(list))
    for (p, q), xs in cells.items():
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        for g in ("all", group_of[q]):
            out[p][g].append((statistics.fmean(xs), sd))
    complete = {p for p in out if len(out[p]["all"]) == len(inst.items)}
    return out, complete


def test_per_persona_profiles_match_plain_python(sim):
    hand, _ = _by_hand(sim)
    df = persona_profiles(sim).frame
    assert df.height == 12 * 6
    for row in df.iter_rows(named=True):
        cells = hand[row["persona_id"]][row["group"]]
        assert row["items"] == len(cells)
        assert row["mean"] == pytest.approx(statistics.fmean(c[0] for c in cells), rel=1e-12)
        assert row["std"] == pytest.approx(statistics.fmean(c[1] for c in cells), rel=1e-12)


def test_set_profile_is_mean_and_std_of_per_persona_scores(sim):
    hand, complete = _by_hand(sim)
    assert 2 < len(complete) < 12  # the invalid answers left some personas incomplete
    chosen = sorted(complete)[:6]
    filt = persona_filter(ids=chosen + [999], exclude=[chosen[0]])
    df = persona_set_profiles(sim, personas=filt).frame
    members = chosen[1:]
    for row in df.iter_rows(named=True):
        scores = [statistics.fmean(c[0] for c in hand[p][row["group"]]) for p in members]
        assert row["personas"] == len(members)
        assert row["mean"] == pytest.approx(statistics.fmean(scores), rel=1e-12)
        assert row["std"] == pytest.approx(statistics.stdev(scores), rel=1e-12)
    # the default set: every retained persona
    every = persona_set_profiles(sim).frame.filter(pl.col("group") == "all")
    assert every["personas"][0] == len(complete)


def test_persona_file_selects_the_runs_recorded_with_it_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    toxic = tmp_path / "toxic.json"
    toxic.write_text(json.dumps(["A cruel critic who mocks everyone.", "A tyrant who prizes obedience.",
                                 "A cheat who thinks rules are for fools."]))
    store = ["--store", str(tmp_path / "s")]
    for extra in (["--personas", str(toxic)], ["--limit-personas", "3", "--variant", "other"], ["--mode", "self"]):
        res = run_cli("record", "--backend", "instant", "--model", "m", "--repetitions", "3", "--quiet", *extra, *store)
        assert res.returncode == 0, res.stderr
    res = run_cli("profiles", "--personas", str(toxic), "--exclude-persona-ids", "2", "--format", "csv",
                  "--plot", str(tmp_path / "radar.png"), *store)
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert set(df["persona_set"]) == {"toxic without 2"} and set(df["personas"]) == {2}
    assert df.height == 6  # one run (the toxic one), all + 5 foundations
    assert (tmp_path / "radar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(["Somebody else entirely."]))
    res = run_cli("profiles", "--personas", str(other), *store)
    assert res.returncode == 2 and "was recorded with the persona set 'other'" in res.stderr
    res = run_cli("profiles", "--persona-ids", "0,x", *store)
    assert res.returncode == 2 and "--persona-ids" in res.stderr
