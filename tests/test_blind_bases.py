"""benchmarks/blind_bases.py: pairs hide which base wrote which passage; scores reveal it."""

from __future__ import annotations

import json

from benchmarks import blind_bases


def _run(path, base, texts):
    rows = [{"n": n, "opening": f"Opening {n}.", "text": t} for n, t in enumerate(texts, 1)]
    path.write_text(json.dumps({"base": base, "passages": rows}))
    return path


def test_pairs_hide_the_base_and_scores_follow_the_key(tmp_path):
    fast = _run(tmp_path / "fast.json", "fast", [f"fast text {n}" for n in range(1, 11)])
    best = _run(tmp_path / "best.json", "best", [f"best text {n}" for n in range(1, 11)])
    assert blind_bases.make(fast, best, tmp_path / "blind") == 0
    pairs = (tmp_path / "blind" / "pairs.md").read_text()
    assert "fast" not in pairs.replace("fast text", "") and "best" not in pairs.replace("best text", "")
    key = json.loads((tmp_path / "blind" / "key.json").read_text())
    assert {k["A"] for k in key} == {"fast", "best"}  # the order is shuffled, not always fast first
    # A reader who always prefers and praises the "best" text, wherever it stands.
    judged = []
    for k in key:
        good = "A" if k["A"] == "best" else "B"
        bad = "B" if good == "A" else "A"
        judged.append({"n": k["n"], good: {"sense": 4, "on_story": "yes", "contradiction": False, "what": ""},
                       bad: {"sense": 2, "on_story": "no", "contradiction": True, "what": "x"}, "prefer": good})
    (tmp_path / "blind" / "judgments.json").write_text(json.dumps(judged))
    assert blind_bases.score(tmp_path / "blind") == 0
    scores = json.loads((tmp_path / "blind" / "scores.json").read_text())
    assert scores["best"] == {"sense": 4, "on_story_yes": 10, "on_story_partly": 0, "on_story_no": 0,
                              "contradiction_free": 10, "preferred": 10, "pairs": 10}
    assert scores["fast"]["sense"] == 2 and scores["fast"]["preferred"] == 0
