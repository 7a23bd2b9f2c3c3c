"""The app half of `batplots bench`: `batplots serve` on 127.0.0.1 measured through
its HTTP API, as writers use it (streamed continuations, a story each)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from batplots.measure.benchstats import BENCH_SENTENCES, _round, summary

# Requests sent at every concurrency level, split among its writers.
REQUESTS_PER_LEVEL = 16
SERVER_START_S = 300  # the server loads the model (and converts the adapter once)
REQUEST_TIMEOUT_S = 600


def continue_story(client, story: dict, seed: int) -> tuple[float, float | None, dict]:
    """One streamed continuation: (seconds, seconds to the first piece, the saved story)."""
    started = time.perf_counter()
    first = None
    event = None
    with client.stream("POST", f"/api/stories/{story['id']}/continue", headers={"Accept": "text/event-stream"},
                       json={"version": story["version"], "sentences": BENCH_SENTENCES, "seed": seed}) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"continue answered {response.status_code}: {response.text[:300]}")
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "piece" and first is None:
                    first = time.perf_counter() - started
                elif event == "done":
                    return time.perf_counter() - started, first, json.loads(line[6:])["story"]
                elif event == "error":
                    raise RuntimeError(f"continue failed: {line[6:300]}")
    raise RuntimeError("the stream ended without a done event")


def new_story(client, passages: list[str]) -> dict:
    story = client.post("/api/stories", json={}).json()
    for text in passages:
        response = client.post(f"/api/stories/{story['id']}/turns", json={"text": text, "version": story["version"]})
        response.raise_for_status()
        story = response.json()
    return story


def measure_app(url: str, prompts: list[str], long_passages: list[str], writers: tuple[int, ...],
                seed: int = 1, baseline=None) -> dict:
    """Single-writer short and long continuations, then concurrent writers. With a
    baseline (bench.PlainGenerate), each continuation is followed by the baseline
    writing as many tokens for the same story, and their ratio is kept."""
    from batplots.store.stories import story_text

    import httpx

    out: dict = {}
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for name, passages_of in (("short", lambda p: [p]), ("long", lambda p: long_passages + [p])):
            times, firsts, errors, plain, speedup = [], [], [], [], []
            for i, prompt in enumerate(prompts):
                try:
                    seconds, first, saved = continue_story(client, new_story(client, passages_of(prompt)), seed + i)
                except RuntimeError as exc:  # counted, not fatal: e.g. no complete sentence within the cap
                    errors.append(str(exc)[:200])
                    continue
                times.append(seconds)
                firsts.append(first if first is not None else seconds)
                if baseline is not None:
                    tokens = saved["turns"][-1]["meta"]["tokens"]
                    plain.append(baseline.seconds(story_text(saved["turns"][:-1]), tokens, seed + i))
                    speedup.append(plain[-1] / seconds)
            out[name], out[f"{name}_first_piece"] = summary(times), summary(firsts)
            out[f"{name}_errors"] = errors
            if baseline is not None:
                out[f"{name}_plain"], out[f"{name}_speedup"] = summary(plain), summary(speedup)
        out["writers"] = {str(n): concurrent_writers(client, prompts, n, seed) for n in writers}
    return out


def concurrent_writers(client, prompts: list[str], n: int, seed: int) -> dict:
    """n writers at once, each continuing a story of its own, REQUESTS_PER_LEVEL requests in all."""
    rounds = max(1, REQUESTS_PER_LEVEL // n)
    stories = [new_story(client, [prompts[i % len(prompts)]]) for i in range(n)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def writer(k: int):
        story = stories[k]
        for r in range(rounds):
            try:
                seconds, _, story = continue_story(client, story, seed + 100 * k + r)
                with lock:
                    latencies.append(seconds)
            except Exception as exc:  # counted: every request must be answered
                with lock:
                    errors.append(str(exc)[:200])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"writers": n, "requests": n * rounds, "answered": len(latencies), "errors": errors[:3],
            "continuations_per_second": _round(len(latencies) / wall), **{k: v for k, v in summary(latencies).items()
                                                                           if k != "n"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_and_measure(config, prompts: list[str], long_passages: list[str], workdir: Path, baseline=None) -> dict:
    """Start `batplots serve` (the default fast engine) on 127.0.0.1, measure it, stop it."""
    port = free_port()
    cmd = [sys.executable, "-m", "batplots.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--db", str(workdir / "bench.sqlite3")]
    cmd += ["--base", config.base] if config.base else []
    cmd += ["--adapter", config.adapter] if config.adapter else []
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        health = wait_ready(url, proc, started)
        ready = time.perf_counter() - started
        result = measure_app(url, prompts, long_passages, config.writers, config.seed, baseline)
        memory = proc_memory_mb(proc.pid)
        return {"ready_seconds": _round(ready, 2), "model": health.get("model"), **result, **memory}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_ready(url: str, proc, started: float) -> dict:
    import httpx

    while time.perf_counter() - started < SERVER_START_S:
        if proc.poll() is not None:
            raise RuntimeError(f"batplots serve exited with code {proc.returncode}")
        try:
            health = httpx.get(f"{url}/healthz", timeout=2).json()
            if health.get("status") == "ready":
                return health
            if health.get("status") == "error":
                raise RuntimeError(f"the server's model failed to load: {health.get('error')}")
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"batplots serve was not ready after {SERVER_START_S} s")


def proc_memory_mb(pid: int) -> dict:
    """Peak and current resident memory of a process (Linux /proc; empty elsewhere)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    except OSError:
        return {}
    kib = lambda key: round(int(fields[key].split()[0]) / 1024, 1) if key in fields else None  # noqa: E731
    return {"server_peak_rss_mb": kib("VmHWM"), "server_rss_mb": kib("VmRSS")}
