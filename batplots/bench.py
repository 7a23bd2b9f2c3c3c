"""`batplots bench`: the engines side by side and the running app under load, in one run.

Each engine is measured in a subprocess of its own (so its load time and peak RSS
are its own), on the same model (the embedded base plus the same adapter) and the
same prompts: the 20 openings shipped in batplots/data/openings.txt.

- short: a 2-sentence continuation of each opening (time, time to first piece);
- long: a story of at least LONG_STORY_TOKENS tokens (the openings, one after
  another) followed by each opening in turn: the turn of a long story, whose
  unchanged beginning the engines keep in their KV caches; the first such call
  (nothing cached) is reported on its own;
- tokens/s: raw decoding speed after the prompt.

Then the app (`batplots serve` on 127.0.0.1, fast engine) is measured through its
HTTP API: single-writer continuations (streamed, so time to first piece is what a
writer sees), and 1, 4 and 16 concurrent writers, each on a story of its own.
Ratios against the targets of issue 6 close the report. Timing is wall-clock on
whatever else the machine is doing: the report says how loaded it was.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from batplots.engine.base import Engine, Settings

LONG_STORY_TOKENS = 600
BENCH_SENTENCES = 2
RAW_DECODE_TOKENS = 64
DEFAULT_ENGINES = ("llama", "transformers")
DEFAULT_WRITERS = (1, 4, 16)
# Requests sent at every concurrency level, split among its writers.
REQUESTS_PER_LEVEL = 16
SERVER_START_S = 300  # the server loads the model (and converts the adapter once)
REQUEST_TIMEOUT_S = 600
# Targets (issue 6).
TARGET_SHORT_SPEEDUP, TARGET_LONG_SPEEDUP = 5.0, 10.0
TARGET_TTFT_S = 0.3
TARGET_P95_RATIO_16 = 8.0
TARGET_SERVER_RSS_MB = 700.0


@dataclass(frozen=True)
class BenchConfig:
    engines: tuple[str, ...] = DEFAULT_ENGINES
    base: str | None = None
    adapter: str | None = None
    prompts: int = 20
    writers: tuple[int, ...] = DEFAULT_WRITERS
    seed: int = 1


def openings() -> list[str]:
    """The 20 shipped story openings (original text, not from any corpus)."""
    text = resources.files("batplots").joinpath("data/openings.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def long_story(count_tokens, prompts: list[str], min_tokens: int = LONG_STORY_TOKENS) -> list[str]:
    """Openings one after another (repeating) until they reach min_tokens: the passages
    of a long story."""
    passages: list[str] = []
    i = 0
    while count_tokens(" ".join(passages)) < min_tokens:
        passages.append(prompts[i % len(prompts)])
        i += 1
    return passages


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95)),
            "mean": _round(statistics.fmean(values)) if values else None}


def _round(x, digits=3):
    return None if x is None else round(x, digits)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


# --- one engine ------------------------------------------------------------------------
def measure_engine(engine: Engine, prompts: list[str], seed: int = 1) -> dict:
    """Short and long-story continuations, time to first piece and raw tokens/s."""
    settings = Settings(sentences=BENCH_SENTENCES, seed=seed)
    short, first, tokens = [], [], []
    for i, prompt in enumerate(prompts):
        result = engine.run(prompt, replace(settings, seed=seed + i))
        short.append(result.seconds)
        first.append(result.first_piece_seconds or result.seconds)
        tokens.append(result.tokens)
    story = " ".join(long_story(engine.count_tokens, openings()))
    cold = engine.run(story, settings)  # nothing of it cached yet
    long, long_tokens = [], []
    for i, prompt in enumerate(prompts):
        result = engine.run(f"{story} {prompt}", replace(settings, seed=seed + i))
        long.append(result.seconds)
        long_tokens.append(result.prompt_tokens)
    return {
        "short": summary(short), "short_first_piece": summary(first),
        "short_tokens_mean": _round(statistics.fmean(tokens), 1),
        "long": summary(long), "long_prompt_tokens_min": min(long_tokens),
        "long_cold_seconds": _round(cold.seconds), "long_cold_prompt_tokens": cold.prompt_tokens,
        "tokens_per_second": _round(decode_speed(engine, prompts[0], seed), 1),
    }


def decode_speed(engine: Engine, prompt: str, seed: int, n: int = RAW_DECODE_TOKENS) -> float:
    """Tokens per second after the first one (so the prompt's evaluation is left out)."""
    settings = Settings(max_new_tokens=n, seed=seed)
    with engine.lock:
        gen = engine.pieces(prompt, settings, seed, None)
        next(gen)
        started, count = time.perf_counter(), 0
        for _ in gen:
            count += 1
        return count / (time.perf_counter() - started)


def engine_worker(spec: dict) -> dict:
    """Load one engine and measure it (run in a subprocess of its own)."""
    from batplots.engine import EngineSpec, load_engine

    started = time.perf_counter()
    engine = load_engine(EngineSpec(engine=spec["engine"], base=spec.get("base"), adapter=spec.get("adapter")))
    load_seconds = time.perf_counter() - started
    result = measure_engine(engine, openings()[:spec["prompts"]], spec.get("seed", 1))
    return {"engine": spec["engine"], "model": engine.describe(), "load_seconds": _round(load_seconds, 2),
            **result, "peak_rss_mb": peak_rss_mb()}


def run_worker(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "batplots.bench", "worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=None)
    if proc.returncode != 0:
        return {"engine": spec["engine"], "error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the app over HTTP ---------------------------------------------------------------------
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
                seed: int = 1) -> dict:
    """Single-writer short and long continuations, then concurrent writers."""
    import httpx

    out: dict = {}
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for name, passages_of in (("short", lambda p: [p]), ("long", lambda p: long_passages + [p])):
            times, firsts = [], []
            for i, prompt in enumerate(prompts):
                seconds, first, _ = continue_story(client, new_story(client, passages_of(prompt)), seed + i)
                times.append(seconds)
                firsts.append(first if first is not None else seconds)
            out[name], out[f"{name}_first_piece"] = summary(times), summary(firsts)
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


def serve_and_measure(config: BenchConfig, prompts: list[str], long_passages: list[str], workdir: Path) -> dict:
    """Start `batplots serve` (the default fast engine) on 127.0.0.1, measure it, stop it."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "batplots.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
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
        result = measure_app(url, prompts, long_passages, config.writers, config.seed)
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


# --- the whole run ---------------------------------------------------------------------
def prepare(config: BenchConfig) -> dict:
    """One-time conversions, timed and done before anything is measured, so that load
    times are those of every later start."""
    from batplots import model as modellib

    out = {}
    adapter_dir = modellib.resolve_adapter(config.adapter)
    if "transformers" in config.engines:
        started = time.perf_counter()
        modellib.resolve_base(config.base)  # converts the embedded GGUF to safetensors once
        out["convert_base_seconds"] = _round(time.perf_counter() - started, 2)
    if adapter_dir is not None and ("llama" in config.engines or "auto" in config.engines):
        from batplots.engine import gguf_lora, llama_engine

        gguf = llama_engine.resolve_base(config.base)
        if gguf is not None:
            started = time.perf_counter()
            gguf_lora.ensure_gguf_lora(adapter_dir, gguf[0])
            out["convert_lora_seconds"] = _round(time.perf_counter() - started, 2)
    out["adapter"] = adapter_dir.name if adapter_dir else None
    return out


def run_bench(config: BenchConfig, workdir: Path, progress=lambda message: None) -> dict:
    prompts = openings()[:config.prompts]
    report: dict = {"config": {"engines": list(config.engines), "base": config.base, "adapter": config.adapter,
                               "prompts": len(prompts), "writers": list(config.writers),
                               "sentences": BENCH_SENTENCES, "long_story_tokens": LONG_STORY_TOKENS},
                    "machine": machine()}
    progress("preparing (one-time conversions)")
    report["prepare"] = prepare(config)
    report["engines"] = {}
    for name in config.engines:
        progress(f"measuring the {name} engine")
        report["engines"][name] = run_worker({"engine": name, "base": config.base, "adapter": config.adapter,
                                              "prompts": len(prompts), "seed": config.seed})
    if config.writers:
        progress("measuring the app (batplots serve) with " + ", ".join(map(str, config.writers)) + " writers")
        from batplots.engine.openai_engine import _local_tokenizer

        tokenizer = _local_tokenizer()
        count = (lambda t: len(tokenizer.tokenize(t.encode(), False, False))) if tokenizer else (lambda t: len(t) // 4)
        try:
            report["app"] = serve_and_measure(config, prompts, long_story(count, openings()), workdir)
        except Exception as exc:  # the engines' figures still stand
            report["app"] = {"error": str(exc)}
    report["machine"]["load_after"] = _loadavg()
    report["targets"] = targets(report)
    return report


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_before": _loadavg(), "threads_env": os.environ.get("BATPLOTS_THREADS")}


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def targets(report: dict) -> list[dict]:
    """Each target of issue 6: the measured value, the target, and whether it is met."""
    slow = report.get("engines", {}).get("transformers", {})
    app = report.get("app", {})
    rows = []

    def row(name, value, target, better):
        met = None if value is None else (value >= target if better == "higher" else value < target)
        rows.append({"target": name, "value": value, "goal": f"{'>=' if better == 'higher' else '<'} {target}",
                     "met": met})

    row("app vs transformers, short prompt (x faster, p50)",
        _ratio((slow.get("short") or {}).get("p50"), (app.get("short") or {}).get("p50")), TARGET_SHORT_SPEEDUP, "higher")
    row("app vs transformers, long story (x faster, p50)",
        _ratio((slow.get("long") or {}).get("p50"), (app.get("long") or {}).get("p50")), TARGET_LONG_SPEEDUP, "higher")
    row("app time to first piece, short prompt (s, p50)", (app.get("short_first_piece") or {}).get("p50"),
        TARGET_TTFT_S, "lower")
    writers = app.get("writers") or {}
    single, sixteen = writers.get("1") or {}, writers.get("16") or {}
    if sixteen:
        row("16 writers: requests answered", f"{sixteen.get('answered')}/{sixteen.get('requests')}",
            f"{sixteen.get('requests')}/{sixteen.get('requests')}", "equal")
        rows[-1]["met"] = sixteen.get("answered") == sixteen.get("requests")
        rows[-1]["goal"] = "all"
        row("16 writers: p95 / single-writer p50", _ratio(sixteen.get("p95"), single.get("p50")),
            TARGET_P95_RATIO_16, "lower")
    row("server peak RSS, fast engine (MB)", app.get("server_peak_rss_mb"), TARGET_SERVER_RSS_MB, "lower")
    return rows


def format_report(report: dict) -> str:
    """The side-by-side table, the app under load, and the targets, as text."""
    engines = report.get("engines", {})
    names = list(engines)
    lines = [f"batplots bench: {report['config']['prompts']} openings, {BENCH_SENTENCES}-sentence continuations, "
             f"model adapter {report.get('prepare', {}).get('adapter')}; {report['machine']['cpus']} CPUs, "
             f"load average {report['machine']['load_before']} -> {report['machine'].get('load_after')}", ""]

    def cell(name, path):
        value = engines[name]
        for key in path:
            value = (value or {}).get(key) if isinstance(value, dict) else None
        return "-" if value is None else str(value)

    rows = [("load (s)", ("load_seconds",)), ("short p50 (s)", ("short", "p50")), ("short p95 (s)", ("short", "p95")),
            ("first piece p50 (s)", ("short_first_piece", "p50")), ("long p50 (s)", ("long", "p50")),
            ("long p95 (s)", ("long", "p95")), ("long, cold cache (s)", ("long_cold_seconds",)),
            ("long prompt (tokens)", ("long_prompt_tokens_min",)), ("tokens/s", ("tokens_per_second",)),
            ("peak RSS (MB)", ("peak_rss_mb",))]
    if names:
        lines.append("| engine | " + " | ".join(names) + (f" | {names[1]} / {names[0]} |" if len(names) == 2 else " |"))
        lines.append("|---" * (len(names) + 1 + (len(names) == 2)) + "|")
        for label, path in rows:
            values = [cell(n, path) for n in names]
            ratio = ""
            if len(names) == 2:
                try:
                    ratio = f" {float(values[1]) / float(values[0]):.1f}x |"
                except (ValueError, ZeroDivisionError):
                    ratio = " - |"
            lines.append(f"| {label} | " + " | ".join(values) + " |" + ratio)
        for name in names:
            if engines[name].get("error"):
                lines.append(f"{name} failed: {engines[name]['error']}")
    app = report.get("app")
    if app:
        lines += ["", "The app (batplots serve, streamed continuations over HTTP):"]
        if app.get("error"):
            lines.append(f"failed: {app['error']}")
        else:
            lines.append(f"ready in {app.get('ready_seconds')} s; short p50/p95 {app['short']['p50']}/{app['short']['p95']} s, "
                         f"first piece p50 {app['short_first_piece']['p50']} s; long p50/p95 {app['long']['p50']}/"
                         f"{app['long']['p95']} s; server RSS peak {app.get('server_peak_rss_mb')} MB")
            lines.append("| writers | requests | answered | continuations/s | p50 (s) | p95 (s) |")
            lines.append("|---|---|---|---|---|---|")
            for n, w in app["writers"].items():
                lines.append(f"| {n} | {w['requests']} | {w['answered']} | {w['continuations_per_second']} | "
                             f"{w['p50']} | {w['p95']} |")
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in report.get("targets", []):
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | "
                     f"{'-' if t['met'] is None else ('yes' if t['met'] else 'NO')} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m batplots.bench worker '{"engine": ...}'
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        print(json.dumps(engine_worker(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m batplots.bench worker JSON (use `batplots bench` instead)")
