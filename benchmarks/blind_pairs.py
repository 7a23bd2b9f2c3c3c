"""Blind pairs for a reading check: two runs' passages for the same prompts, shuffled.

    # 1. write the pairs (labels hidden) and the key (read it only after judging)
    python benchmarks/blind_pairs.py make RUN_A.json RUN_B.json --out DIR
    # 2. a reader fills DIR/judgments.json: [{"pair": 1, "better": "A"|"B"|"=", "sense_A": 1-5, "sense_B": 1-5}]
    # 3. reveal
    python benchmarks/blind_pairs.py score DIR

RUN_*.json are `storyeval` passage lists (the "passages" of a `batplots eval --json`
report's "story" part, one run each). A pair is made for every prompt both runs
continued from the same text: the openings and each scripted story's first turn.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SHUFFLE_SEED = 1966


def prompts_of(passages: list[dict], openings: list[str], stories: list[dict]) -> dict[tuple, tuple[str, str]]:
    """(kind, item) -> (prompt, passage) for the passages whose prompt both runs share."""
    out = {}
    for p in passages:
        if p["kind"] == "opening":
            out[("opening", p["item"])] = (openings[p["item"]], p["text"])
        elif p["turn"] == 0:
            out[("story", p["item"])] = (stories[p["item"]]["turns"][0], p["text"])
    return out


def make(run_a: Path, run_b: Path, out: Path) -> int:
    from batplots.measure import evaluate
    from batplots.measure import storyeval

    openings, stories = evaluate.load_prompts(), storyeval.load_stories()
    a = prompts_of(json.loads(run_a.read_text()), openings, stories)
    b = prompts_of(json.loads(run_b.read_text()), openings, stories)
    keys = sorted(set(a) & set(b))
    rng = random.Random(SHUFFLE_SEED)
    rng.shuffle(keys)
    out.mkdir(parents=True, exist_ok=True)
    lines, key = ["# Blind pairs: which passage follows the story better? (labels hidden)", ""], []
    for n, k in enumerate(keys, 1):
        swap = rng.random() < 0.5
        first, second = (b[k][1], a[k][1]) if swap else (a[k][1], b[k][1])
        lines += [f"## Pair {n}", "", f"**Story so far:** {a[k][0]}", "", f"**A:** {first}", "", f"**B:** {second}", ""]
        key.append({"pair": n, "A": run_b.stem if swap else run_a.stem, "B": run_a.stem if swap else run_b.stem})
    (out / "pairs.md").write_text("\n".join(lines))
    (out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"{len(keys)} pairs in {out / 'pairs.md'}; the key is in {out / 'key.json'} (read it after judging)")
    return 0


def score(folder: Path) -> int:
    key = {k["pair"]: k for k in json.loads((folder / "key.json").read_text())}
    judged = json.loads((folder / "judgments.json").read_text())
    wins: dict[str, int] = {}
    sense: dict[str, list[int]] = {}
    for j in judged:
        k = key[j["pair"]]
        if j["better"] in ("A", "B"):
            wins[k[j["better"]]] = wins.get(k[j["better"]], 0) + 1
        else:
            wins["tie"] = wins.get("tie", 0) + 1
        for side in ("A", "B"):
            sense.setdefault(k[side], []).append(j[f"sense_{side}"])
    print(f"{len(judged)} pairs judged blind")
    for run, marks in sorted(sense.items()):
        print(f"  {run}: preferred {wins.get(run, 0)} times, makes sense {sum(marks) / len(marks):.1f} of 5")
    print(f"  ties: {wins.get('tie', 0)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("run_a", type=Path)
    m.add_argument("run_b", type=Path)
    m.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    return make(args.run_a, args.run_b, args.out) if args.cmd == "make" else score(args.folder)


if __name__ == "__main__":
    sys.exit(main())
