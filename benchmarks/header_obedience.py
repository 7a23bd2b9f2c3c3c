"""Is the conditioning header obeyed? (issue #14 part 3)

On held-out material (story openings cut from the validation tail's episodes, which
training never saw, plus the shipped original openings), each adapter continues
every prompt with the llama engine under several conditions, built with
batplots.story.conditioning exactly as the Writer builds them:

- villain: condition(story, [V], cast) for V = the episode's villain (an opening: a
  villain assigned in turn), vs condition(story, [W], cast) for another villain W, vs
  no header: the share of continuations (2 sentences) that name V (lore aliases).
- beats: condition(story, villains, cast, beat=B) for each button beat B vs no beat
  (the header alone): the share whose first sentence beats.label()s as B, beside the
  share of unrequested first sentences that play B anyway (the base rate).

    BATPLOTS_THREADS=1 .venv/bin/python benchmarks/header_obedience.py \
        --adapter batplots/adapters/batman66 --adapter /tmp/adapter-header --seeds 1

(On a busy 2-core box, BATPLOTS_THREADS=1: llama.cpp's threads wait at a barrier after
every operation, and with other work running that made the run ~10x slower.)

Prints one table, the adapters side by side; --json writes the figures too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batplots.story import conditioning  # noqa: E402
from batplots.corpus.split import split_corpus
from batplots.story import passage
from batplots.story.beats import label  # noqa: E402
from batplots.corpus.episodes import read_corpus  # noqa: E402
from batplots.model.engine.base import Settings  # noqa: E402
from batplots.story.lore import _pattern, build_lore, characters_in, villains_in  # noqa: E402
from batplots.text import split_sentences  # noqa: E402

BUTTONS = ("batphone", "batcave", "fight", "deathtrap", "escape")
STOCK_VILLAINS = ("Joker", "Penguin", "Riddler", "Catwoman", "Egghead", "Mad Hatter", "King Tut", "Mr. Freeze")
OPENINGS = Path(__file__).resolve().parent.parent / "batplots" / "data" / "openings.txt"


def prompts(corpus: str, n_val: int, n_open: int, lore) -> list[dict]:
    """Stories cut from the held-out episodes at a few sentence counts, then openings."""
    split = split_corpus(corpus, 0.1)
    val = split.val[0]
    out = []
    episodes = [val[a:b] for a, b in split.val_spans[0]]
    cuts = (2, 5, 8, 11)
    for cut in cuts:
        for ep in episodes:
            sentences = split_sentences(ep)
            villains = villains_in(ep, lore)
            if villains and len(sentences) > cut + 1:
                out.append({"story": " ".join(sentences[:cut]), "villain": villains[0], "source": "held-out"})
    out = out[:n_val]
    lines = [s.strip() for s in OPENINGS.read_text(encoding="utf-8").splitlines() if s.strip() and s[0] != "#"]
    for i, line in enumerate(lines[:n_open]):
        out.append({"story": line, "villain": STOCK_VILLAINS[i % len(STOCK_VILLAINS)], "source": "opening"})
    return out


def other_villain(v: str, story: str, lore, i: int) -> str:
    named = set(villains_in(story, lore))
    pool = [w for w in STOCK_VILLAINS if w != v and w not in named]
    return pool[i % len(pool)]


def names(text: str, villain: str, lore) -> bool:
    entry = lore.villains.get(villain) or {}
    return bool(_pattern(entry.get("aliases") or (villain,)).search(text))


def run_adapter(adapter: str, items: list[dict], seeds: list[int], lore) -> dict:
    from batplots.model.engine import EngineSpec, load_engine

    engine = load_engine(EngineSpec(adapter=adapter))
    started = time.perf_counter()

    def go(story: str, villains, cast, beat, seed: int, sentences: int) -> list[str]:
        frame = lambda s: conditioning.condition(s, villains, cast, beat)  # noqa: E731
        if villains is None:
            frame = None
        take = passage.Passage(engine, story, Settings(seed=seed, sentences=sentences), frame=frame)
        return passage.consume(take)[1].sentences

    v = {"asked": 0, "other": 0, "none": 0, "n": 0}
    b = {beat: {"asked": 0, "base": 0} for beat in BUTTONS}
    b_n = 0
    for i, item in enumerate(items):
        story, villain = item["story"], item["villain"]
        cast = characters_in(story, lore)
        other = other_villain(villain, story, lore, i)
        print(f"  {i + 1}/{len(items)} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        for seed in seeds:
            v["n"] += 1
            v["asked"] += names(" ".join(go(story, [villain], cast, None, seed, 2)), villain, lore)
            v["other"] += names(" ".join(go(story, [other], cast, None, seed, 2)), villain, lore)
            v["none"] += names(" ".join(go(story, None, None, None, seed, 2)), villain, lore)
            b_n += 1
            first = go(story, [villain], cast, None, seed, 1)
            base = label(first[0]) if first else None
            for beat in BUTTONS:
                b[beat]["base"] += base == beat
                got = go(story, [villain], cast, beat, seed, 1)
                b[beat]["asked"] += bool(got) and label(got[0]) == beat
    engine.close() if hasattr(engine, "close") else None
    return {"villain": v, "beats": b, "beat_trials": b_n, "seconds": round(time.perf_counter() - started, 1)}


def table(results: dict[str, dict]) -> str:
    heads = list(results)
    rows = [["", *heads]]
    first = next(iter(results.values()))
    n = first["villain"]["n"]
    pct = lambda k, d: f"{d[k] / max(1, d['n']):.0%} ({d[k]}/{d['n']})"  # noqa: E731
    rows.append([f"names V, header names V ({n} takes)", *(pct("asked", r["villain"]) for r in results.values())])
    rows.append(["names V, header names another villain", *(pct("other", r["villain"]) for r in results.values())])
    rows.append(["names V, no header", *(pct("none", r["villain"]) for r in results.values())])
    for beat in BUTTONS:
        cells = []
        for r in results.values():
            d, m = r["beats"][beat], r["beat_trials"]
            cells.append(f"{d['asked'] / m:.0%} vs {d['base'] / m:.0%}")
        rows.append([f"1st sentence is {beat}: [Next: {beat}] vs unasked", *cells])
    rows.append(["seconds", *(str(r["seconds"]) for r in results.values())])
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, width)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in width) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", action="append", required=True, help="adapter directory (repeat to compare)")
    ap.add_argument("--label", action="append", help="column names, one per --adapter")
    ap.add_argument("--corpus", default="../shared/data/batman66.txt")
    ap.add_argument("--val-prompts", type=int, default=12)
    ap.add_argument("--openings", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    lore = build_lore(read_corpus(args.corpus))
    items = prompts(args.corpus, args.val_prompts, args.openings, lore)
    seeds = [1000 + s for s in range(args.seeds)]
    print(f"{len(items)} prompts ({sum(i['source'] == 'held-out' for i in items)} held-out), seeds {seeds}",
          file=sys.stderr)
    labels = args.label or args.adapter
    results = {}
    for name, adapter in zip(labels, args.adapter):
        results[name] = run_adapter(adapter, items, seeds, lore)
        print(f"{name}: {results[name]['seconds']} s", file=sys.stderr)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
