import json

import numpy as np
import pytest

from toolkit.analysis.options import AnalysisOptions
from toolkit.errors import ToolkitError
from toolkit.protocol.instrument import load_instrument, parse_instrument


def test_mfq30_shipped_as_data():
    inst = load_instrument()
    assert inst.name == "mfq30"
    assert len(inst.items) == 30
    assert inst.groups == ["Harm/Care", "Fairness/Reciprocity", "In-group/Loyalty", "Authority/Respect",
                           "Purity/Sanctity"]
    assert all(sum(it.group == g for it in inst.items) == 6 for g in inst.groups)
    assert list(inst.scale) == [0, 1, 2, 3, 4, 5]
    assert "{persona}" in inst.templates["persona"]
    assert len(inst.digest) == 64


@pytest.mark.parametrize(
    "text,expected",
    [("3", 3), (" 4\n", 4), ("5 - because", 5), ("I'd say 2.", 2), ("10", -1), ("7 or 3", 3), ("", -1),
     ("none", -1), ("**4**", 4), ("-3", 3), ("12 then 0", 0)],
)
def test_rating_extraction_matches_published_rule(text, expected):
    import re

    inst = load_instrument()
    published = re.search(r"\b[0-5]\b", text.strip())
    assert inst.extract_rating(text) == expected == (int(published.group()) if published else -1)


def make_instrument(n_items=44, groups=5, lo=1, hi=5):
    return {
        "format": "toolkit-instrument/1", "name": f"test{n_items}", "scale": {"min": lo, "max": hi},
        "templates": {"persona": "Be {persona}. {question}", "self": "{question}"},
        "items": [{"id": i + 1, "group": f"G{i % groups}", "text": f"item {i}", "prompt": f"Rate item {i}"}
                  for i in range(n_items)],
    }


def test_other_questionnaire_by_adding_a_file(tmp_path):
    """A 44-item, 1-5 questionnaire with 5 groups works end to end: import, analyze."""
    from toolkit.analysis import analyze
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    spec = tmp_path / "q44.json"
    spec.write_text(json.dumps(make_instrument()))
    rng = np.random.default_rng(7)
    lines = ["persona_id,question_id,run_index,rating,failures,response,collected_at"]
    ratings = {}
    for p in range(6):
        for q in range(1, 45):
            for r in range(1, 4):
                v = int(rng.integers(1, 6))
                ratings[(p, q, r)] = v
                lines.append(f"{p},{q},{r},{v},0,{v},2026-01-01T00:00:00")
    src = tmp_path / "demo" / "m_temp07.csv"
    src.parent.mkdir()
    src.write_text("\n".join(lines) + "\n")
    store = Store(tmp_path / "store")
    import_paths(store, [src], instrument=str(spec))
    df = analyze(store, by_group=True, options=AnalysisOptions(bootstrap=50, rerun_bootstrap=20)).frame
    assert df["items"].to_list() == [44, 9, 9, 9, 9, 8]
    assert df["group"].to_list() == ["all", "G0", "G1", "G2", "G3", "G4"]
    # independent S: std over personas (ddof=1) of each item's persona means, averaged
    mu = np.array([[np.mean([ratings[(p, q, r)] for r in range(1, 4)]) for q in range(1, 45)] for p in range(6)])
    assert df["S"][0] == pytest.approx(np.std(mu, axis=0, ddof=1).mean(), rel=1e-12)
    assert df["temperature"][0] == 0.7


def test_out_of_scale_rating_uses_instrument_bounds(tmp_path):
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    spec = tmp_path / "q.json"
    spec.write_text(json.dumps(make_instrument(n_items=2, groups=1)))
    src = tmp_path / "x_temp01.csv"
    src.write_text("persona_id,question_id,run_index,rating,failures,response,collected_at\n0,1,1,0,0,0,t\n")
    with pytest.raises(ToolkitError, match=r"x_temp01.csv:2: rating 0 is outside the scale 1-5"):
        import_paths(Store(tmp_path / "s"), [src], instrument=str(spec))


def test_malformed_instrument_is_rejected():
    with pytest.raises(ToolkitError, match="format"):
        parse_instrument({"name": "x"})
    bad = make_instrument(n_items=2)
    bad["items"][1]["id"] = 1
    with pytest.raises(ToolkitError, match="duplicate item ids"):
        parse_instrument(bad)
