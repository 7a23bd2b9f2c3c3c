"""Blind reading of two bases through the served Writer, and the turn times it took.

    # 1. each base writes the next passage of every opening (the Writer as `serve` runs it:
    #    its shipped adapter, 4 ranked takes, the case file filled in from the opening)
    python benchmarks/blind_bases.py write --base fast --out DIR/fast.json
    python benchmarks/blind_bases.py write --base best --out DIR/best.json
    # 2. shuffled pairs for a reader who sees only DIR/pairs.md; the key stays apart
    python benchmarks/blind_bases.py make DIR/fast.json DIR/best.json --out DIR
    # 3. the reader writes DIR/judgments.json (see pairs.md's header); then reveal
    python benchmarks/blind_bases.py score DIR

The openings default to docs/measurements/blind-2026-12-02/openings.txt: 30 written for
reading, none sharing an 8-gram with the corpus. `write` also records, per passage, the
seconds to the first piece and to the whole ranked turn, so the speed of a turn is
measured on the same passages that are read.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPENINGS = ROOT / "docs" / "measurements" / "blind-2026-12-02" / "openings.txt"
SEED = 5000  # passage n uses SEED + n, the same for both bases
SHUFFLE_SEED = 1966
MAX_OPENINGS = 100
HEADER = """# Blind reading: openings of new 1966 Batman episodes, each followed by two candidate next passages (A and B).
# For EACH passage give: sense (1-5: does it make sense as the next part of this episode?),
# on-story (yes / partly / no: does it continue THIS opening's situation?),
# contradiction (yes/no, and what: does it contradict the opening or the 1966 show, e.g. the wrong villain appears,
# Bruce Wayne and Batman as two people, a villain's he/she wrong, an invented gadget, a fact of the opening reversed),
# then which passage you prefer (A, B or same).
# Answer as JSON, one object per opening:
# {"n": 1, "A": {"sense": 1-5, "on_story": "yes|partly|no", "contradiction": true|false, "what": "..."},
#  "B": {...}, "prefer": "A|B|same"}
"""


def read_openings(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")][:MAX_OPENINGS]


def timed_turn(writer, opening: str, seed: int, temperature: float | None = None):
    """The served Writer's passage after opening (case file filled in from it) as serve
    writes it: (Continuation, seconds to the first piece, seconds to the whole passage).
    temperature: None, the served default."""
    take, first, whole = timed_take(writer, opening, seed, temperature)
    return take.result, first, whole


def timed_take(writer, opening: str, seed: int, temperature: float | None = None):
    """timed_turn, with the Writer's Take itself (its result, and what its parts cost)."""
    from batplots.model.engine import Settings
    from batplots.story import casefile

    case = casefile.autofill(casefile.empty(), opening, writer.lore)
    tick = time.perf_counter()
    settings = Settings(seed=seed) if temperature is None else Settings(seed=seed, temperature=temperature)
    take = writer.stream(opening, settings, case=case)
    first = None
    for piece in take:
        if first is None and isinstance(piece, str) and piece.strip():
            first = time.perf_counter() - tick
    whole = time.perf_counter() - tick
    return take, (first if first is not None else whole), whole


def write(base: str, out: Path, openings_path: Path, limit: int, takes: int | None = None,
          temperature: float | None = None) -> int:
    from batplots.model.engine import EngineSpec
    from batplots.story.writer import open_writer

    started = time.perf_counter()
    writer = open_writer(EngineSpec(base=base), takes)
    load_s = time.perf_counter() - started
    rows = []
    for n, opening in enumerate(read_openings(openings_path)[:limit], 1):
        result, first, whole = timed_turn(writer, opening, SEED + n, temperature)
        rows.append({"n": n, "opening": opening, "text": result.text.strip(), "first_piece_s": round(first, 2),
                     "turn_s": round(whole, 2), "tokens": result.tokens})
        print(f"{n:2d} {rows[-1]['turn_s']:6.1f}s  {rows[-1]['text'][:90]}", flush=True)
    describe = writer.engine.describe()
    report = {"base": base, "takes": writer.takes, "temperature": temperature, "engine": describe, "load_s": round(load_s, 1), "passages": rows,
              "turn_s_median": round(statistics.median(r["turn_s"] for r in rows), 2),
              "first_piece_s_median": round(statistics.median(r["first_piece_s"] for r in rows), 2)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"{base}: median turn {report['turn_s_median']} s, first piece {report['first_piece_s_median']} s")
    return 0


def make(run_a: Path, run_b: Path, out: Path, differing: bool = False) -> int:
    """differing: only the openings whose two passages differ (the same text twice tells
    a reader nothing; score counts them as ties apart)."""
    a, b = (json.loads(p.read_text()) for p in (run_a, run_b))
    by_n = {r["n"]: r for r in b["passages"]}
    rng = random.Random(SHUFFLE_SEED)
    lines, key = [HEADER], []
    pairs = [(r, by_n[r["n"]]) for r in a["passages"]
             if r["n"] in by_n and not (differing and r["text"] == by_n[r["n"]]["text"])]
    for r, s in pairs:
        assert r["opening"] == s["opening"], f"opening {r['n']} differs between the runs"
        swap = rng.random() < 0.5
        first, second = (s, r) if swap else (r, s)
        lines += [f"## {r['n']}", f"Opening: {r['opening']}", f"A: {first['text']}", f"B: {second['text']}", ""]
        key.append({"n": r["n"], "A": (b if swap else a)["base"], "B": (a if swap else b)["base"]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "pairs.md").write_text("\n".join(lines))
    (out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"{len(pairs)} pairs in {out / 'pairs.md'}; the key is in {out / 'key.json'}")
    return 0


def score(folder: Path) -> int:
    key = {k["n"]: k for k in json.loads((folder / "key.json").read_text())}
    judged = json.loads((folder / "judgments.json").read_text())
    runs: dict[str, dict] = {}
    for j in judged:
        k = key[j["n"]]
        for side in ("A", "B"):
            run = runs.setdefault(k[side], {"sense": [], "yes": 0, "partly": 0, "no": 0, "clean": 0, "preferred": 0})
            mark = j[side]
            run["sense"].append(mark["sense"])
            run[mark["on_story"]] += 1
            run["clean"] += not mark["contradiction"]
        if j["prefer"] in ("A", "B"):
            runs[k[j["prefer"]]]["preferred"] += 1
    n = len(judged)
    table = {name: {"sense": round(statistics.mean(r["sense"]), 2), "on_story_yes": r["yes"],
                    "on_story_partly": r["partly"], "on_story_no": r["no"], "contradiction_free": r["clean"],
                    "preferred": r["preferred"], "pairs": n} for name, r in runs.items()}
    print(f"{n} pairs judged blind")
    print(f"{'base':30s} {'sense':>6s} {'yes/partly/no':>14s} {'no contradiction':>17s} {'preferred':>10s}")
    for name, r in table.items():
        print(f"{name:30s} {r['sense']:6.2f} {r['on_story_yes']:4d}/{r['on_story_partly']}/{r['on_story_no']:<5d}"
              f" {r['contradiction_free']:10d} of {n} {r['preferred']:9d}")
    (folder / "scores.json").write_text(json.dumps(table, indent=1))
    return 0


def write_arguments(w: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of a `write` run: which base, where to, which openings, how many."""
    w.add_argument("--base", required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--openings", type=Path, default=OPENINGS)
    w.add_argument("--limit", type=int, default=MAX_OPENINGS)
    return w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = write_arguments(sub.add_parser("write"))
    w.add_argument("--takes", type=int, default=None, help="takes a turn ranks (default: the Writer's)")
    w.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the served one)")
    m = sub.add_parser("make")
    m.add_argument("run_a", type=Path)
    m.add_argument("run_b", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--differing", action="store_true", help="only openings whose passages differ")
    s = sub.add_parser("score")
    s.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "write":
        return write(args.base, args.out, args.openings, args.limit, args.takes, args.temperature)
    return make(args.run_a, args.run_b, args.out, args.differing) if args.cmd == "make" else score(args.folder)


if __name__ == "__main__":
    sys.exit(main())
