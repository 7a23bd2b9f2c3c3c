"""Story writes at 200 passages, and another user's writes while a crafted story is written,
before and after issue 23's fix, side by side, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/write_fairness.py [--before REV] [--runs 20] [--json OUT.json]

The store reads case files with the shipped lore, as `serve`'s does. Each side runs in
its own process on the code of one revision: "before" is REV
(default HEAD, extracted with `git archive` into a temporary directory), "after" is the
working tree. Store calls in threads of one process, as the app's worker threads are
(no HTTP: the figures are the store's). Needs Debian's postgresql package for the
PostgreSQL rows (a throwaway server, tests/pgserver.py); --sqlite-only skips them.

1. An honest story of 200 passages (1,000-1,900 characters each, the eval's scripted
   stories cycled): edit a passage in the middle, and add a 200th passage (then undo it,
   untimed): p50 / p95 of the whole call, and of the time the call held the write
   transaction (the lock every other writer waits on).
2. The red team's crafted story (24 passages of `Zaaab robs Zaaac robs ...`, 4,272
   distinct made-up names): one thread edits it ATTACK_WRITES times while another user
   adds and undoes passages of a 5-passage story: that user's write p50 / p95 / max, and
   how many of its writes failed (database is locked / busy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import revisions  # benchmarks/ is on the path

ROOT = Path(__file__).resolve().parents[1]
HONEST_PASSAGES = 200
CRAFTED_PASSAGES = 24
ATTACK_WRITES = 40  # the crafted story's edits: long enough for the other user's p95 to mean something
MAX_VICTIM_WRITES = 400  # bounds the victim's loop; it stops when the attacker is done


def crafted_passage(start: int, chars: int = 1990) -> str:
    words, k = [], start
    while len(" ".join(words)) < chars - 20:
        words += ["Z" + "".join(chr(97 + (k // 26 ** i) % 26) for i in range(4)), "robs"]
        k += 1
    return " ".join(words)[:chars]


def honest_passages(n: int) -> list[str]:
    turns = [t for s in json.loads((ROOT / "batplots/data/stories.json").read_text())["stories"] for t in s["turns"]]
    out, i = [], 0
    while len(out) < n:
        p = ""
        while len(p) < 1000:
            p += turns[i % len(turns)] + " "
            i += 1
        out.append(p.strip()[:1900])
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(pct(ms, 0.5), 1), "p95_ms": round(pct(ms, 0.95), 1),
            "max_ms": round(max(ms), 1) if ms else None}


def run_side(target: str, runs: int) -> dict:
    """In this process: the measurements on the batplots importable here."""
    from batplots.model import weights
    from batplots.story import casefile
    from batplots.story import lore as lorelib
    from batplots.store.stories import Store

    store = Store(target)
    store.lore = lorelib.load_lore(weights.default_adapter("fast"))  # as serve's store has it
    held: list[float] = []
    local = threading.local()
    transaction = store.transaction

    @contextmanager
    def timed_transaction():
        start = time.perf_counter()
        try:
            with transaction() as conn:
                yield conn
        finally:
            if getattr(local, "record", False):
                held.append((time.perf_counter() - start) * 1000)

    store.transaction = timed_transaction

    def build(title: str, passages: list[str]) -> dict:
        autofill = casefile.autofill
        casefile.autofill = lambda case, text, lore=None: casefile.load(case)  # setup only: no case file yet
        try:
            story = store.create(title)
            for p in passages:
                story = store.add_turn(story["id"], story["version"], "user", p)
        finally:
            casefile.autofill = autofill
        return story

    out = {}
    # 1. an honest story of 200 passages
    passages = honest_passages(HONEST_PASSAGES)
    story = build("honest", passages[:-1])
    middle = story["turns"][len(story["turns"]) // 2]
    edit_ms, edit_held, add_ms, add_held = [], [], [], []
    local.record = True
    for i in range(runs):
        held.clear()
        t = time.perf_counter()
        story = store.edit_turn(story["id"], story["version"], middle["id"], passages[(i * 7) % 150] + f" ({i})")
        edit_ms.append((time.perf_counter() - t) * 1000)
        edit_held.append(sum(held))
        held.clear()
        t = time.perf_counter()
        story = store.add_turn(story["id"], story["version"], "user", passages[-1] + f" ({i})")
        add_ms.append((time.perf_counter() - t) * 1000)
        add_held.append(sum(held))
        local.record = False
        story = store.undo(story["id"], story["version"])
        local.record = True
    local.record = False
    out["honest_edit"] = {**summary(edit_ms), "lock_p95_ms": round(pct(edit_held, 0.95), 1)}
    out["honest_add"] = {**summary(add_ms), "lock_p95_ms": round(pct(add_held, 0.95), 1)}

    # 2. another user's writes while a crafted story is written
    crafted = build("crafted", [crafted_passage(i * 200) for i in range(CRAFTED_PASSAGES)])
    victim = build("victim", honest_passages(5))
    attack_ms, victim_ms, failures = [], [], []
    done = threading.Event()

    def attacker():
        s = crafted
        last = s["turns"][-1]
        try:
            for i in range(ATTACK_WRITES):
                t = time.perf_counter()
                s = store.edit_turn(s["id"], s["version"], last["id"], crafted_passage(90_000 + i * 200))
                attack_ms.append((time.perf_counter() - t) * 1000)
        finally:
            done.set()

    def victim_writer():
        s = victim
        for i in range(MAX_VICTIM_WRITES):
            if done.is_set():
                return
            t = time.perf_counter()
            try:
                s = (store.add_turn(s["id"], s["version"], "user", f"Robin gasps, {i} times.") if i % 2 == 0
                     else store.undo(s["id"], s["version"]))
            except Exception as exc:  # noqa: BLE001  (counted: locked, busy)
                failures.append(f"{type(exc).__name__}: {exc}"[:120])
                s = store.get(s["id"])
            victim_ms.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=attacker), threading.Thread(target=victim_writer)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["crafted_attacker_write"] = summary(attack_ms)
    out["other_user_write_during_attack"] = {**summary(victim_ms), "failed": len(failures),
                                              "failures": sorted(set(failures))[:3]}
    store.close()
    return out


def side(code: Path, target: str, runs: int) -> dict:
    return revisions.run_side(__file__, code, ["--side", target, "--runs", str(runs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="HEAD", help="the revision to compare with (default HEAD)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sqlite-only", action="store_true")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.runs)))
        return
    results: dict = {"before": args.before, "runs": args.runs, "cpus": os.cpu_count(), "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        old = revisions.extract(args.before, Path(tmp) / "before")
        (old / "benchmarks").mkdir()
        engines = {"sqlite": lambda name: str(Path(tmp) / f"{name}.sqlite3")}
        server = None
        if not args.sqlite_only:
            sys.path.insert(0, str(ROOT))
            from tests.pgserver import PgServer

            server = PgServer(fast=False).start()
            engines["postgresql"] = lambda name: server.create_database(name)
        try:
            for engine, make in engines.items():
                results["engines"][engine] = {
                    "before": side(old, make("before"), args.runs),
                    "after": side(ROOT, make("after"), args.runs)}
        finally:
            if server is not None:
                server.stop()
    print(f"write fairness, {args.runs} runs per figure, before = {args.before}, after = working tree "
          f"({results['cpus']} CPUs)")
    print(f"{'engine':<11}{'figure':<34}{'before':>28}{'after':>28}")
    for engine, pair in results["engines"].items():
        for key in pair["after"]:
            def fmt(d):
                text = f"p50 {d['p50_ms']} p95 {d['p95_ms']} ms"
                if "lock_p95_ms" in d:
                    text += f" (lock {d['lock_p95_ms']})"
                if d.get("failed"):
                    text += f" {d['failed']} failed"
                return text
            print(f"{engine:<11}{key:<34}{fmt(pair['before'][key]):>28}{fmt(pair['after'][key]):>28}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
