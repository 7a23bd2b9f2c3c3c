"""What PMI ranking costs a turn, with its "with the story" half recorded while the takes
are sampled (today) against both halves scored (before), on the same openings and seeds.

    nice -n 19 python benchmarks/pmi_cost.py --base fast --limit 30 --out DIR

Each opening is written twice by the served Writer (pmi weighed ranking.WEIGHT_PMI, or
PMI_TRIAL_WEIGHT if that is 0), the cache reset before each: once with the recorded
half (Writer.pmi_from_sampling) and once scoring both halves. Per turn it records the
seconds scoring took, how many takes' half came free, each take's pmi both ways, and
whether the two runs picked the same take (the takes are the same text: same seed).
The noise floor: the full computation scored again in another batch shape (each pair on
its own), and whether that alone changes its winner.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.blind_bases import MAX_OPENINGS, OPENINGS, SEED, read_openings, timed_take  # noqa: E402


def _side(writer, opening: str, seed: int, from_sampling: bool) -> dict:
    writer.pmi_from_sampling = from_sampling
    writer.engine.reset_cache()
    take, _, whole = timed_take(writer, opening, seed)
    takes = sorted(take.result.candidates, key=lambda c: c["take"])
    return {"turn_s": round(whole, 2), "pmi_s": round(take.pmi_seconds, 3), "recorded": take.pmi_recorded,
            "winner": take.result.candidates[0]["take"], "texts": [c["text"] for c in takes],
            "takes": [c["take"] for c in takes], "pmi": [c["pmi"] for c in takes],
            "rest": [round(c["score"] - c["pmi_points"], 3) for c in takes], "take": take}


def _alone(writer, opening: str, side: dict) -> int | None:
    """The winner with each take's pmi scored pair by pair (another batch shape than the
    turn's one batch): how far the full computation's own float noise moves the choice."""
    from dataclasses import replace

    from batplots import text as textlib
    from batplots.model.engine import Settings
    from batplots.story import pmi as pmilib

    take = side.pop("take")
    if None in side["pmi"]:
        return None
    with_story, without = pmilib.prompts(writer.engine, opening, replace(Settings(), sentences=1),
                                         take.brief.framer())
    lead = textlib.join_continuation(opening, "x")[:-1]
    pmis = []
    for text in side["texts"]:
        (a,) = writer.engine.continuation_logprobs([(with_story, lead + text)])
        (b,) = writer.engine.continuation_logprobs([(without, lead + text)])
        pmis.append(pmilib.pmi(a, b))
    side["pmi_alone"] = [round(p, 4) for p in pmis]
    scores = [r + writer.pmi_weight * p for r, p in zip(side["rest"], pmis)]
    return min(zip(scores, side["takes"]), key=lambda st: (-st[0], st[1]))[1]


def run(base: str, out: Path, openings_path: Path, limit: int) -> int:
    from batplots.model.engine import EngineSpec
    from batplots.story.ranking import PMI_TRIAL_WEIGHT, WEIGHT_PMI
    from batplots.story.writer import open_writer

    writer = open_writer(EngineSpec(base=base))
    writer.pmi_weight = WEIGHT_PMI or PMI_TRIAL_WEIGHT
    rows = []
    for n, opening in enumerate(read_openings(openings_path)[:limit], 1):
        after = _side(writer, opening, SEED + n, True)
        before = _side(writer, opening, SEED + n, False)
        after.pop("take")
        alone = _alone(writer, opening, before)
        same_takes = after["texts"] == before["texts"]
        gaps = [abs(a - b) for a, b in zip(after["pmi"], before["pmi"]) if a is not None and b is not None]
        rows.append({"n": n, "after": after, "before": before, "same_takes": same_takes,
                     "same_winner": after["winner"] == before["winner"], "alone_winner": alone,
                     "pmi_gap_max": round(max(gaps), 4) if gaps else None})
        print(f"{n:2d} pmi {before['pmi_s']:.2f}s -> {after['pmi_s']:.2f}s  free {after['recorded']}/"
              f"{len(after['texts'])}  turn {before['turn_s']:.1f}s -> {after['turn_s']:.1f}s  "
              f"winner {before['winner']}/{after['winner']} (alone {alone})  gap {rows[-1]['pmi_gap_max']}", flush=True)
    med = lambda side, key: round(statistics.median(r[side][key] for r in rows), 3)  # noqa: E731
    summary = {"base": base, "takes": writer.takes, "pmi_weight": writer.pmi_weight, "openings": len(rows),
               "pmi_s_median_before": med("before", "pmi_s"), "pmi_s_median_after": med("after", "pmi_s"),
               "turn_s_median_before": med("before", "turn_s"), "turn_s_median_after": med("after", "turn_s"),
               "takes_free": sum(r["after"]["recorded"] for r in rows),
               "takes_scored": sum(len(r["after"]["texts"]) for r in rows if r["after"]["pmi_s"] > 0),
               "same_takes": sum(r["same_takes"] for r in rows),
               "different_winner": [r["n"] for r in rows if r["same_takes"] and not r["same_winner"]],
               "full_vs_itself_other_batch": [r["n"] for r in rows
                                              if r["alone_winner"] is not None and r["alone_winner"] != r["before"]["winner"]],
               "pmi_gap_max": max((r["pmi_gap_max"] for r in rows if r["pmi_gap_max"] is not None), default=None),
               "note": "shared 2-CPU box, nice 19, other engineers' jobs running"}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cost-{base}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--openings", type=Path, default=OPENINGS)
    parser.add_argument("--limit", type=int, default=MAX_OPENINGS)
    args = parser.parse_args(argv)
    return run(args.base, args.out, args.openings, args.limit)


if __name__ == "__main__":
    sys.exit(main())
