"""The story store on SQLite and on PostgreSQL, side by side.

    .venv/bin/python benchmarks/store_bench.py [--runs 3] [--json OUT.json]

Needs Debian's postgresql package (as `make test` does): a throwaway server is started
in a temporary directory with PostgreSQL's durable defaults (fsync on, as SQLite's
WAL commits are), on 127.0.0.1, and stopped at the end.

1. Store operations at CLIENTS concurrent clients (threads in one process, as the
   app's worker threads are): "add a passage" (each client to its own story) and
   "read a story of 50 passages" (Store.get): p50 / p95 / max in milliseconds, and
   operations per second. Twice: back to back (each client starts its next operation
   as soon as one ends: the store saturated, latency = clients / throughput), and
   paced (each client starts one every PACE_S seconds, the clients staggered: 50 busy
   users, not a flood). On a shared machine the tails move from run to run: --runs N
   repeats part 1 on fresh databases and the table shows the median run (p95's range
   across runs in brackets).
2. Two app instances (separate uvicorn processes, FakeEngine) x WRITERS writers over
   HTTP on one PostgreSQL database, racing on a few stories: every request must be
   answered (200 or a 409 for a stale version), and every acknowledged passage must be
   in its story exactly once, in version order.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from batplots.store.stories import Store  # noqa: E402
from tests.appinstance import AppInstance  # noqa: E402
from tests.pgserver import PgServer  # noqa: E402

CLIENTS = 50
OPS_PER_CLIENT = 40  # each, per operation and mode (adds stay under store.MAX_TURNS)
PACE_S = 0.1  # paced mode: each client starts an operation every PACE_S (500 per second offered)
READ_PASSAGES = 50
INSTANCES = 2
WRITERS = 16  # per instance
WRITER_ROUNDS = 20
RACE_STORIES = 8
DEADLINE_S = 300
MAX_RUNS = 10
PASSAGE = "Batman and Robin slide down the Batpoles while Alfred keeps the Batcave lit for the long night."


def ms(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"n": len(s), "p50": round(1000 * statistics.median(s), 2),
            "p95": round(1000 * s[min(len(s) - 1, int(0.95 * len(s)))], 2), "max": round(1000 * s[-1], 2)}


def median_run(runs: list[dict]) -> dict:
    """The run with the median p95, and the range of p95 over all runs."""
    chosen = sorted(runs, key=lambda r: r["p95"])[len(runs) // 2]
    low, high = min(r["p95"] for r in runs), max(r["p95"] for r in runs)
    return {**chosen, "p95_range": f"{chosen['p95']} [{low}-{high}]"}


def run_clients(op, pace: float) -> dict:
    """op(client) once per call; CLIENTS threads started together, OPS_PER_CLIENT calls
    each, one every `pace` seconds (0: back to back). Latency percentiles and ops/s."""
    samples, lock = [], threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(n):
        barrier.wait()
        mine, start = [], time.perf_counter() + n * pace / CLIENTS  # staggered: an even rate, not bursts
        for i in range(OPS_PER_CLIENT):
            wait = start + i * pace - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t = time.perf_counter()
            op(n)
            mine.append(time.perf_counter() - t)
        with lock:
            samples.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    if any(t.is_alive() for t in threads):
        raise RuntimeError(f"clients still running after {DEADLINE_S} s")
    return {**ms(samples), "ops_per_s": round(len(samples) / (time.perf_counter() - started))}


def store_ops(store: Store) -> dict:
    out = {}
    long = store.create("Fifty passages")
    for _ in range(READ_PASSAGES):
        long = store.add_turn(long["id"], long["version"], "user", PASSAGE)
    for mode, pace in (("back to back", 0.0), ("paced", PACE_S)):
        stories = [store.create(f"Bench {n}") for n in range(CLIENTS)]

        def add(n):
            stories[n] = store.add_turn(stories[n]["id"], stories[n]["version"], "user", PASSAGE)

        def read(n):
            assert len(store.get(long["id"])["turns"]) == READ_PASSAGES

        out[f"add a passage, {mode}"] = run_clients(add, pace)
        out[f"read a story of {READ_PASSAGES} passages, {mode}"] = run_clients(read, pace)
    return out


def two_instances(url: str) -> dict:
    instances = [AppInstance(url) for _ in range(INSTANCES)]
    try:
        for instance in instances:
            instance.wait_up()
        with httpx.Client(base_url=instances[0].url, timeout=30) as c:
            ids = [c.post("/api/stories", json={"title": f"Race {i}"}).json()["id"] for i in range(RACE_STORIES)]
        outcomes, latencies, lock = [], [], threading.Lock()
        deadline = time.monotonic() + DEADLINE_S

        def writer(n):
            with httpx.Client(base_url=instances[n % INSTANCES].url, timeout=30) as client:
                for r in range(WRITER_ROUNDS):
                    if time.monotonic() > deadline:
                        return
                    sid = ids[(n + r) % RACE_STORIES]
                    version = client.get(f"/api/stories/{sid}").json()["version"]
                    text = f"Writer {n} round {r}."
                    t = time.perf_counter()
                    try:
                        status = client.post(f"/api/stories/{sid}/turns", json={"text": text, "version": version})
                        status = status.status_code
                    except httpx.HTTPError as exc:
                        status = f"no answer: {exc.__class__.__name__}"
                    with lock:
                        latencies.append(time.perf_counter() - t)
                        outcomes.append((sid, text, version, status))

        started = time.perf_counter()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(INSTANCES * WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE_S)
        elapsed = time.perf_counter() - started
    finally:
        for instance in instances:
            instance.stop()
    store = Store(url)
    try:
        lost = doubled = out_of_order = 0
        for sid in ids:
            texts = [t["text"] for t in store.get(sid)["turns"]]
            won = sorted((o for o in outcomes if o[0] == sid and o[3] == 200), key=lambda o: o[2])
            lost += sum(1 for o in won if o[1] not in texts)
            doubled += len(texts) - len(set(texts)) + sum(1 for t in texts if t not in {o[1] for o in won})
            out_of_order += [o[1] for o in won] != texts or [o[2] for o in won] != list(range(1, len(won) + 1))
    finally:
        store.close()
    statuses = {}
    for o in outcomes:
        statuses[str(o[3])] = statuses.get(str(o[3]), 0) + 1
    sent = INSTANCES * WRITERS * WRITER_ROUNDS
    return {"instances": INSTANCES, "writers": INSTANCES * WRITERS, "requests": sent, "answered": len(outcomes),
            "statuses": statuses, "lost": lost, "duplicated_or_unacknowledged": doubled,
            "stories_out_of_version_order": out_of_order, "seconds": round(elapsed, 2),
            "add_passage_over_http_ms": ms(latencies),
            "all_answered_nothing_lost": (len(outcomes) == sent and set(statuses) <= {"200", "409"}
                                          and lost == doubled == out_of_order == 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, choices=range(1, MAX_RUNS + 1), metavar=f"1..{MAX_RUNS}",
                        help="repeat the store operations this many times (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "sqlite": sqlite3.sqlite_version,
                           "load_average_at_start": os.getloadavg()},  # a shared machine: how busy it was
               "clients": CLIENTS, "ops_per_client": OPS_PER_CLIENT, "pace_s": PACE_S}
    with tempfile.TemporaryDirectory() as tmp, PgServer(fast=False) as pg:
        import psycopg

        with psycopg.connect(pg.url()) as conn:
            results["machine"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        results["runs"] = []
        for run in range(args.runs):
            one = {"sqlite": store_ops(Store(Path(tmp) / f"bench{run}.sqlite3"))}
            pg_store = Store(pg.create_database("bench"))
            try:
                one["postgresql"] = store_ops(pg_store)
            finally:
                pg_store.close()
            results["runs"].append(one)
        for engine in ("sqlite", "postgresql"):
            results[engine] = {op: median_run([r[engine][op] for r in results["runs"]])
                               for op in results["runs"][0][engine]}
        results["two_instances_postgresql"] = two_instances(pg.create_database("race"))

    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min) at start {results['machine']['load_average_at_start']}, "
          f"at end {results['machine']['load_average_at_end']}")
    print(f"store operations, {CLIENTS} concurrent clients, {OPS_PER_CLIENT} each, median of {args.runs} run(s) (ms; "
          f"{results['machine']['cpus']} CPUs, SQLite {results['machine']['sqlite']}, "
          f"PostgreSQL {results['machine']['postgresql']})")
    print(f"{'operation':<44}{'SQLite p50':>11}  {'p95 [range]':<24}{'ops/s':>6}"
          f"{'PostgreSQL p50':>16}  {'p95 [range]':<24}{'ops/s':>6}")
    for op in results["sqlite"]:
        a, b = results["sqlite"][op], results["postgresql"][op]
        print(f"{op:<44}{a['p50']:>11}  {a['p95_range']:<24}{a['ops_per_s']:>6}"
              f"{b['p50']:>16}  {b['p95_range']:<24}{b['ops_per_s']:>6}")
    race = results["two_instances_postgresql"]
    print(f"\n{race['instances']} instances x {WRITERS} writers on one PostgreSQL: {race['answered']}/{race['requests']} "
          f"answered {race['statuses']} in {race['seconds']} s; lost {race['lost']}, duplicated "
          f"{race['duplicated_or_unacknowledged']}, out of order {race['stories_out_of_version_order']}; "
          f"add over HTTP p50 {race['add_passage_over_http_ms']['p50']} ms, p95 "
          f"{race['add_passage_over_http_ms']['p95']} ms -> "
          f"{'OK' if race['all_answered_nothing_lost'] else 'FAILED'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
