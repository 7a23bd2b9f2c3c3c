"""Login floods, before and after issue 23's fix, side by side (SQLite, real HTTP on 127.0.0.1).

    .venv/bin/python benchmarks/login_flood.py [--before REV] [--json OUT.json]

Each side runs in its own process on one revision's code (REV extracted with `git archive`,
the working tree for "after"), a server with accounts served by uvicorn in a thread.
uvicorn trusts X-Forwarded-For from 127.0.0.1, which stands in for other addresses.

1. 40 wrong passwords for one name sent at once from one address: how many were checked
   (401), refused (429) or let in.
   Then the owner's correct password from an address with no failures (303: let in).
2. 80 wrong passwords at once, each from its own address for its own name (each is checked), while a signed-in user lists
   their stories (GET /api/stories) PROBES times, one after another: that user's p50 / p95
   / max, and the logins' answers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import revisions  # benchmarks/ is on the path

ROOT = Path(__file__).resolve().parents[1]
PROBES = 20


def pct(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)


def run_side(tmp: str) -> dict:
    import httpx
    import uvicorn

    from batplots.store import accounts
    from batplots.web import WebConfig, create_app
    from batplots.web.security import SESSION_COOKIE, SecurityConfig
    from tests.fakegen import FakeEngine, fake_writer

    app = create_app(WebConfig(db_path=Path(tmp) / "s.sqlite3", writer=fake_writer(FakeEngine()),
                               security=SecurityConfig(allowed_hosts=None, accounts=True, api_key=None,
                                                       v1_open=False)))
    accounts.add_user(app.state.store, "alice", "alice-secret-1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    def login(password, address=None, name="alice"):
        headers = {"X-Forwarded-For": address} if address else {}
        with httpx.Client(base_url=url, timeout=120) as c:
            return c.post("/login", data={"name": name, "password": password}, headers=headers).status_code

    out = {}
    with httpx.Client(base_url=url, timeout=120) as c:  # the owner's session, from before the flood
        r = c.post("/login", data={"name": "alice", "password": "alice-secret-1"},
                   headers={"X-Forwarded-For": "192.0.2.200"})
        cookie = r.cookies[SESSION_COOKIE]
    start = threading.Barrier(40)

    def guess(i):
        start.wait()
        return login(f"wrong-{i}", "198.51.100.1")

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))
    out["40_guesses_one_address"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    out["owner_then_from_a_clean_address"] = login("alice-secret-1", "192.0.2.201")

    with httpx.Client(base_url=url, timeout=120, cookies={SESSION_COOKIE: cookie}) as alice:
        alice.get("/api/stories")
        quiet = []
        for _ in range(PROBES):
            t = time.perf_counter()
            alice.get("/api/stories")
            quiet.append((time.perf_counter() - t) * 1000)
        with ThreadPoolExecutor(80) as pool:
            futures = [pool.submit(login, "nope-nope", f"203.0.113.{i}", f"user{i}") for i in range(80)]
            time.sleep(0.2)  # the flood is in
            during = []
            for _ in range(PROBES):
                t = time.perf_counter()
                status = alice.get("/api/stories").status_code
                during.append((time.perf_counter() - t) * 1000)
                assert status == 200, status
            flood = [f.result() for f in futures]
    out["page_quiet_ms"] = {"p50": pct(quiet, 0.5), "p95": pct(quiet, 0.95), "max": round(max(quiet), 1)}
    out["page_during_80_logins_ms"] = {"p50": pct(during, 0.5), "p95": pct(during, 0.95), "max": round(max(during), 1)}
    out["80_logins"] = {str(s): flood.count(s) for s in sorted(set(flood))}
    server.should_exit = True
    thread.join(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="HEAD")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side)))
        return
    results = {"before": args.before, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        old = revisions.extract(args.before, Path(tmp) / "before", ("batplots", "tests"))
        for name, code in (("before", old), ("after", ROOT)):
            work = Path(tmp) / f"db-{name}"
            work.mkdir()
            results[name] = revisions.run_side(__file__, code, ["--side", str(work)], timeout=900)
    print(f"login flood, before = {args.before}, after = working tree ({results['cpus']} CPUs)")
    for key in results["after"]:
        print(f"{key:<28}{json.dumps(results['before'][key]):>40}  {json.dumps(results['after'][key])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
