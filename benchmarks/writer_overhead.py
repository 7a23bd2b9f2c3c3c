"""The Writer's non-model work per passage on long stories, before and after, side by side.

    nice -n 19 .venv/bin/python benchmarks/writer_overhead.py [--before REV] [--runs 5] [--json OUT.json]

Each side runs in its own process on the code of one revision: "before" is REV (default
HEAD, extracted with `git archive` into a temporary directory), "after" is the working
tree. Stories of 20 and 200 passages are built as benchmarks/write_fairness.py builds its
honest one (the eval's scripted stories cycled), read with the shipped lore
(`load_lore(default_adapter("fast"))`). Timed, p50 of --runs:

- bible: `Bible(story, lore, writer_names=set())`, the first in the process, and one passage
  later (a passage the process has not read, with a new name);
- first: one whole `Writer.stream` passage (4 takes, staged, as writer_for's) on a
  FakeEngine, which decodes in no time, so the figure is the turn's non-model work;
- next: the same after one passage is added (the story mostly the same): the figure
  that matters for a long story, and what a turn costs every other user of the process
  (also as CPU time of all the process's threads, which a busy box disturbs less).

The 20-passage story runs first, so the 200-passage one's "first" has read its first 20
passages' sentences already (its opening is the same); the 200 runs are otherwise cold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import revisions  # benchmarks/ is on the path
from write_fairness import honest_passages  # the same honest story

ROOT = Path(__file__).resolve().parents[1]
SIZES = (20, 200)
TAKES = 4
SEED = 7


def p50(values: list[float]) -> float:
    values = sorted(values)
    return round(values[len(values) // 2] * 1000, 1)


def run_side(runs: int) -> dict:
    """In this process: the measurements on the batplots importable here."""
    sys.path.append(str(ROOT))  # tests.fakegen (the same fake engine on both sides), after the side's batplots
    from batplots.model.engine.base import Settings
    from batplots.model.weights import default_adapter
    from batplots.story.bible import Bible
    from batplots.story.lore import load_lore
    from batplots.story.rules import story_text
    from batplots.story.writer import Writer
    from tests.fakegen import FakeEngine

    import batplots

    lore = load_lore(default_adapter("fast"))
    writer = Writer(FakeEngine(), lore=lore, takes=TAKES)
    out: dict = {"code": str(Path(batplots.__file__).parent.parent)}
    extra = honest_passages(max(SIZES) + 2 * runs + 1)
    for size in SIZES:
        passages = honest_passages(size)
        story = story_text([{"text": p} for p in passages])
        t = time.perf_counter()
        Bible(story, lore, writer_names=set())
        bible_first = time.perf_counter() - t
        bible = []
        for i in range(runs):
            # one passage more, which the process has not read (a new name in it too)
            grown = story_text([{"text": p} for p in passages] + [{"text": extra[size + i] + f" Zorbo{i} waits."}])
            t = time.perf_counter()
            Bible(grown, lore, writer_names=set())
            bible.append(time.perf_counter() - t)

        def turn(text: str) -> tuple[float, float]:
            t, cpu = time.perf_counter(), time.process_time()
            take = writer.stream(text, Settings(seed=SEED), writer_text=text)
            for _ in take:
                pass
            return time.perf_counter() - t, time.process_time() - cpu

        first, _ = turn(story)
        following, following_cpu = [], []
        for i in range(runs):
            # a passage the process has not read: the next turn of a growing story
            grown = story_text([{"text": p} for p in passages] + [{"text": extra[size + runs + i] + f" ({i})"}])
            wall, cpu = turn(grown)
            following.append(wall)
            following_cpu.append(cpu)
        out[str(size)] = {"chars": len(story), "bible_first_ms": round(bible_first * 1000, 1),
                          "bible_next_ms": p50(bible), "first_ms": round(first * 1000, 1),
                          "next_ms": p50(following), "next_cpu_ms": p50(following_cpu)}
    return out


def side(code: Path, runs: int) -> dict:
    return revisions.run_side(ROOT / "benchmarks/writer_overhead.py", code, ["--side", "--runs", str(runs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="HEAD", help="the revision to compare with (default HEAD)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_side(args.runs)))
        return
    results: dict = {"before": args.before, "runs": args.runs, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        old = revisions.extract(args.before, Path(tmp) / "before")
        results["sides"] = {"before": side(old, args.runs), "after": side(ROOT, args.runs)}
    print(f"writer overhead, p50 of {args.runs} runs, before = {args.before}, after = working tree "
          f"({results['cpus']} CPUs; a shared box: compare the columns, not other runs)")
    print(f"{'passages':<10}{'figure':<34}{'before ms':>12}{'after ms':>12}")
    labels = {"bible_first_ms": "Bible(story, lore), first", "bible_next_ms": "Bible, one passage later",
              "first_ms": f"Writer.stream, first ({TAKES} takes)", "next_ms": "Writer.stream, one passage later",
              "next_cpu_ms": "  the same, CPU (all threads)"}
    for name, side_out in results["sides"].items():
        print(f"  {name}: batplots from {side_out['code']}")
    for size in map(str, SIZES):
        for key, label in labels.items():
            print(f"{size:<10}{label:<34}{results['sides']['before'][size][key]:>12}"
                  f"{results['sides']['after'][size][key]:>12}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
