"""A ranked turn of k takes against a single sample, side by side, on the real model.

For each opening (and each scripted story's opening turn), a single sample
(the engine with the copy guard, as before the Writer) and a Writer turn of k
takes run back to back with the same seed, in alternating order, so both see
the same machine load. Prints the ratio of total wall time and the median of the
per-pair ratios.

    .venv/bin/python benchmarks/writer_speed.py [--base best] [--takes N] [--prompts 20] [--no-pmi]

--takes defaults to the base's own (as `serve` ranks: bases.Base.takes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from batplots.measure import evaluate
from batplots.measure import storyeval
from batplots.story import passage as passagelib
from batplots.model.engine import EngineSpec, Settings
from batplots.story.writer import open_writer, takes_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="a base name (default: the default base)")
    parser.add_argument("--takes", type=int, default=None, help="takes a turn ranks (default: the base's)")
    parser.add_argument("--no-pmi", action="store_true", help="rank without PMI (what it costs a turn)")
    parser.add_argument("--prompts", type=int, default=20)
    args = parser.parse_args(argv)
    spec = EngineSpec(base=args.base)
    args.takes = args.takes or takes_for(spec)
    writer = open_writer(spec, takes=args.takes)  # the Writer `serve` runs
    if args.no_pmi:
        writer.pmi_weight = None
    engine = writer.engine
    check = writer.guard.sentence_check(Settings().copy_limit)  # the single sample: the guard only
    prompts = (evaluate.load_prompts() + [s["turns"][0] for s in storyeval.load_stories()])[:args.prompts]
    passagelib.run(engine, prompts[0], Settings(seed=0, sentences=1))  # warm-up
    single, ranked, ratios = [], [], []
    for i, prompt in enumerate(prompts):
        settings = Settings(seed=1000 + i)
        times = {}
        order = ("single", "ranked") if i % 2 == 0 else ("ranked", "single")
        for kind in order:
            engine.reset_cache()
            t = time.perf_counter()
            if kind == "single":
                passagelib.run(engine, prompt, settings, check=check)
            else:
                writer.run(prompt, settings)
            times[kind] = time.perf_counter() - t
        single.append(times["single"])
        ranked.append(times["ranked"])
        ratios.append(times["ranked"] / times["single"])
        print(f"{i:2d} single {times['single']:.2f} s  ranked({args.takes}) {times['ranked']:.2f} s  "
              f"ratio {ratios[-1]:.2f}", flush=True)
    print(f"\n{len(prompts)} turns, {args.takes} takes: single {sum(single):.1f} s, ranked {sum(ranked):.1f} s; "
          f"total ratio {sum(ranked) / sum(single):.2f}x, median per-turn ratio {statistics.median(ratios):.2f}x, "
          f"median single {statistics.median(single):.2f} s, median ranked {statistics.median(ranked):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
