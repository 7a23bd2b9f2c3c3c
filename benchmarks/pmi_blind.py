"""PMI ranking against the current ranking, for a blind reading: the same takes, two choices.

    # 1. every opening's passage, ranked as now and with how much the story explains each
    #    take (batplots.story.pmi) weighed in; the takes are the same (same seed, cache reset)
    python benchmarks/pmi_blind.py write --base best --out docs/measurements/pmi-2026-12-02
    # 2. shuffled pairs of the openings whose passages differ; the key stays apart
    python benchmarks/blind_bases.py make DIR/current.json DIR/pmi.json --out DIR --differing
    # 3. the reader writes DIR/judgments.json; then reveal
    python benchmarks/blind_bases.py score DIR

`write` runs the Writer as served with the pmi scored but weighed 0 (the current choice),
records each take's pmi and which take PMI ranking would pick; only where that differs
does it write the passage again with the weight on (the first-sentence takes come out
the same; checked), so the rest is written on from the other winner. The seconds the
scoring took are recorded per turn: the cost PMI adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.blind_bases import SEED, read_openings, timed_take, write_arguments  # noqa: E402


def pmi_choice(candidates: list[dict], weight: float) -> int:
    """The take PMI ranking picks from candidates scored with the pmi weighed 0."""
    return min(candidates, key=lambda c: (-(c["score"] + weight * (c["pmi"] or 0.0)), c["take"]))["take"]


def _row(n: int, opening: str, take, first: float, whole: float) -> dict:
    result = take.result
    return {"n": n, "opening": opening, "text": result.text.strip(), "first_piece_s": round(first, 2),
            "turn_s": round(whole, 2), "pmi_s": round(take.pmi_seconds, 3), "tokens": result.tokens,
            "winner_take": result.candidates[0]["take"], "why": result.why,
            "takes": [{k: c[k] for k in ("take", "text", "score", "pmi", "pmi_points", "mean_logprob")}
                      for c in result.candidates]}


def write(base: str, out: Path, openings_path: Path, limit: int, weight: float, note: str) -> int:
    from batplots.model.engine import EngineSpec
    from batplots.story.writer import open_writer

    started = time.perf_counter()
    writer = open_writer(EngineSpec(base=base))
    load_s = time.perf_counter() - started
    current, ranked, mismatched = [], [], []
    for n, opening in enumerate(read_openings(openings_path)[:limit], 1):
        writer.pmi_weight = 0.0  # scored and recorded, not counted: today's choice
        writer.engine.reset_cache()
        row = _row(n, opening, *timed_take(writer, opening, SEED + n))
        current.append(row)
        pick = pmi_choice(row["takes"], weight)
        if pick == row["winner_take"]:
            ranked.append({**row, "same_as_current": True})
        else:
            writer.pmi_weight = weight
            writer.engine.reset_cache()
            other = _row(n, opening, *timed_take(writer, opening, SEED + n))
            same_takes = ({t["take"]: t["text"] for t in other["takes"]}
                          == {t["take"]: t["text"] for t in row["takes"]})
            if not same_takes or other["winner_take"] != pick:
                mismatched.append(n)
            ranked.append({**other, "same_as_current": False, "same_takes": same_takes})
        print(f"{n:2d} {row['turn_s']:5.1f}s pmi {row['pmi_s']:.2f}s take {row['winner_take']}->{pick}  "
              f"{row['text'][:70]}", flush=True)
    changed = [r["n"] for r in ranked if not r["same_as_current"]]
    summary = {"base": base, "takes": writer.takes, "pmi_weight": weight, "engine": writer.engine.describe(),
               "load_s": round(load_s, 1), "openings": len(current), "changed": changed,
               "changed_count": len(changed), "takes_differ_between_runs": mismatched,
               "pmi_s_median": round(statistics.median(r["pmi_s"] for r in current), 3),
               "pmi_s_mean": round(statistics.mean(r["pmi_s"] for r in current), 3),
               "turn_s_median": round(statistics.median(r["turn_s"] for r in current), 2),
               "note": note}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("current", current), ("pmi", ranked)):
        (out / f"{name}.json").write_text(json.dumps({"base": name, "model": base, "passages": rows}, indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "engine"}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from batplots.story.ranking import PMI_TRIAL_WEIGHT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = write_arguments(sub.add_parser("write"))
    w.add_argument("--weight", type=float, default=PMI_TRIAL_WEIGHT, help="the pmi weight on trial")
    w.add_argument("--note", default="", help="how the timings were taken (the box, its load)")
    args = parser.parse_args(argv)
    return write(args.base, args.out, args.openings, args.limit, args.weight, args.note)


if __name__ == "__main__":
    sys.exit(main())
