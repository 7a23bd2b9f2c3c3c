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
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from batplots.measure.benchstats import BENCH_SENTENCES, _round, percentile, summary  # noqa: F401  (bench.percentile)
from batplots.story import passage as passagelib
from batplots.model.engine.base import Engine, Settings

LONG_STORY_TOKENS = 600
RAW_DECODE_TOKENS = 64
FORMAT_TEXT_TOKENS = 400  # perplexity of each adapter format over this much of the openings
FORMAT_SPEED_RUNS = 3  # best of
DEFAULT_ENGINES = ("llama", "transformers")
DEFAULT_WRITERS = (1, 4, 16)
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
    formats: bool = False  # also compare the adapter's GGUF forms (gguf_lora.FORMATS)


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


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


# --- one engine ------------------------------------------------------------------------
def measure_engine(engine: Engine, prompts: list[str], seed: int = 1) -> dict:
    """Short and long-story continuations, time to first piece and raw tokens/s."""
    settings = Settings(sentences=BENCH_SENTENCES, seed=seed)
    short, first, tokens = [], [], []
    for i, prompt in enumerate(prompts):
        result = passagelib.run(engine, prompt, replace(settings, seed=seed + i))
        short.append(result.seconds)
        first.append(result.first_piece_seconds or result.seconds)
        tokens.append(result.tokens)
    story = " ".join(long_story(engine.count_tokens, openings()))
    cold = passagelib.run(engine, story, settings)  # nothing of it cached yet
    long, long_prompt, long_tokens = [], [], []
    for i, prompt in enumerate(prompts):
        result = passagelib.run(engine, f"{story} {prompt}", replace(settings, seed=seed + i))
        long.append(result.seconds)
        long_prompt.append(result.prompt_tokens)
        long_tokens.append(result.tokens)
    return {
        "short": summary(short), "short_first_piece": summary(first),
        "short_tokens_mean": _round(statistics.fmean(tokens), 1), "short_tokens_each": tokens,
        "long": summary(long), "long_prompt_tokens_min": min(long_prompt), "long_tokens_each": long_tokens,
        "long_cold_seconds": _round(cold.seconds), "long_cold_prompt_tokens": cold.prompt_tokens,
        "tokens_per_second": _round(decode_speed(engine, prompts[0], seed), 1),
    }


class PlainGenerate:
    """The baseline of issue 6's targets: plain transformers generation (`model.generate`,
    fp32, nothing kept between calls) of the same base and adapter, timed for a given
    number of new tokens, on the llama engine's thread count."""

    def __init__(self, base: str | None, adapter: str | None):
        import torch

        from batplots.model import weights as modellib
        from batplots.model.engine.llama_engine import default_threads

        torch.set_num_threads(default_threads())
        self.model, self.tokenizer, _ = modellib.load_base(base)
        adapter_dir = modellib.resolve_adapter(adapter, base)
        if adapter_dir is not None:
            self.model = modellib.apply_adapter(self.model, adapter_dir)

    def seconds(self, text: str, new_tokens: int, seed: int) -> float:
        import torch

        settings = Settings()
        ids = torch.tensor([self.tokenizer(text, add_special_tokens=False)["input_ids"]])
        torch.manual_seed(seed)
        started = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                                repetition_penalty=settings.repetition_penalty, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, pad_token_id=self.tokenizer.eos_token_id)
        return time.perf_counter() - started


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
    """Load one engine, as the Writer every face uses (batplots.story.writer.open_writer), and
    measure its engine (run in a subprocess of its own)."""
    from batplots.model.engine import EngineSpec
    from batplots.model.engine.llama_engine import default_threads
    from batplots.story.writer import open_writer

    threads = default_threads()
    if spec["engine"] == "transformers":
        # Like for like: torch gets the llama engine's thread count. (With 2 threads on a
        # shared 2-core box, torch's spinning threads measured 20x slower still.)
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    engine = open_writer(EngineSpec(engine=spec["engine"], base=spec.get("base"), adapter=spec.get("adapter"))).engine
    load_seconds = time.perf_counter() - started
    result = measure_engine(engine, openings()[:spec["prompts"]], spec.get("seed", 1))
    return {"engine": spec["engine"], "model": engine.describe(), "threads": threads,
            "load_seconds": _round(load_seconds, 2), **result, "peak_rss_mb": peak_rss_mb()}


def perplexity(logits, ids: list[int]) -> float:
    """exp of the mean next-token cross-entropy of ids under logits (len(ids), vocab)."""
    import numpy as np

    logits = np.asarray(logits[:-1], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.exp(np.mean(log_norm - logits[np.arange(len(ids) - 1), ids[1:]])))


def formats_worker(spec: dict) -> dict:
    """Each form the adapter can take for llama.cpp (gguf_lora.FORMATS) and the bare
    base: file size, conversion time, decoding speed, and perplexity on the shipped
    openings (text no model trained on) next to the transformers engine's."""
    import torch

    from batplots.model import weights as modellib
    from batplots.model.engine import gguf_lora, llama_engine
    from batplots.model.engine.llama_engine import LlamaEngine

    adapter = modellib.resolve_adapter(spec.get("adapter"), spec.get("base"))
    base = llama_engine.resolve_base(spec.get("base"))
    if adapter is None or base is None:
        return {"error": "comparing adapter formats needs an adapter (the shipped one, or --adapter DIR) "
                         "and a GGUF base"}
    # The same base as Hugging Face weights: the embedded one converts itself; tests
    # give a tiny GGUF and its Hugging Face directory side by side.
    model, tokenizer, _ = modellib.load_base(spec.get("reference_base", spec.get("base")))
    model = modellib.apply_adapter(model, adapter)
    ids = tokenizer(" ".join(openings()), add_special_tokens=False)["input_ids"][:FORMAT_TEXT_TOKENS]
    with torch.inference_mode():
        reference = perplexity(model(torch.tensor([ids])).logits[0].float().numpy(), ids)
    rows = [{"format": "transformers (fp32, adapter merged)", "perplexity": round(reference, 3)}]
    for fmt in ("bare base",) + gguf_lora.FORMATS:
        started = time.perf_counter()
        path = None if fmt == "bare base" else gguf_lora.ensure_format(adapter, base[0], fmt)
        convert = time.perf_counter() - started
        engine = (LlamaEngine(base[0], path, n_slots=1) if fmt == "lora"
                  else LlamaEngine(path or base[0], n_slots=1))
        try:
            ppl = perplexity(engine.logits(ids), ids)
            speed = max(decode_speed(engine, openings()[0], 1) for _ in range(FORMAT_SPEED_RUNS))
        finally:
            engine.close()
        size = base[0].stat().st_size if fmt in ("bare base", "lora") else 0
        size += path.stat().st_size if path else 0
        rows.append({"format": fmt if fmt in ("bare base", "lora") else f"merged {fmt}",
                     "perplexity": round(ppl, 3), "gap": f"{100 * (ppl - reference) / reference:+.2f}%",
                     "tokens_per_second": round(speed, 1), "file_mb": round(size / 1e6, 1),
                     "convert_seconds": round(convert, 2)})
    return {"adapter": adapter.name, "tokens": len(ids), "rows": rows}


def run_worker(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "batplots.measure.bench", "worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=None)
    if proc.returncode != 0:
        return {"engine": spec.get("engine"), "error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the whole run ---------------------------------------------------------------------
def prepare(config: BenchConfig) -> dict:
    """One-time conversions, timed and done before anything is measured, so that load
    times are those of every later start."""
    from batplots.model import bases
    from batplots.model import weights as modellib

    out = {}
    adapter_dir = modellib.resolve_adapter(config.adapter, config.base)
    if "transformers" in config.engines:
        started = time.perf_counter()
        modellib.resolve_base(config.base)  # converts the embedded GGUF to safetensors once
        out["convert_base_seconds"] = _round(time.perf_counter() - started, 2)
    if adapter_dir is not None and ("llama" in config.engines or "auto" in config.engines):
        from batplots.model.engine import gguf_lora, llama_engine

        gguf = llama_engine.resolve_base(config.base)
        if gguf is not None:
            started = time.perf_counter()
            gguf_lora.ensure_format(adapter_dir, gguf[0], bases.adapter_format(config.base) or gguf_lora.DEFAULT_FORMAT)
            out["convert_adapter_seconds"] = _round(time.perf_counter() - started, 2)
    out["adapter"] = adapter_dir.name if adapter_dir else None
    named = bases.find(config.base)
    out["base"] = named.name if named is not None else config.base
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
    if config.formats:
        progress("comparing the adapter's GGUF forms")
        report["formats"] = run_worker({"kind": "formats", "base": config.base, "adapter": config.adapter})
    if config.writers:
        progress("measuring the app (batplots serve) with " + ", ".join(map(str, config.writers)) + " writers")
        from batplots.model.engine.openai_engine import _local_tokenizer

        tokenizer = _local_tokenizer()
        count = (lambda t: len(tokenizer.tokenize(t.encode(), False, False))) if tokenizer else (lambda t: len(t) // 4)
        try:
            from batplots.measure.bench_app import serve_and_measure

            # Each app continuation is followed at once by plain `generate` of as many
            # tokens: the two see the same load, whatever else the machine is doing.
            baseline = PlainGenerate(config.base, config.adapter) if "transformers" in config.engines else None
            report["app"] = serve_and_measure(config, prompts, long_story(count, openings()), workdir, baseline)
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
    app = report.get("app", {})
    rows = []

    def row(name, value, target, better):
        met = None if value is None else (value >= target if better == "higher" else value < target)
        rows.append({"target": name, "value": value, "goal": f"{'>=' if better == 'higher' else '<'} {target}",
                     "met": met})

    # Per request: plain `generate` seconds for the app's tokens / the app's seconds.
    row("app vs plain transformers, short prompt (x faster, p50)", (app.get("short_speedup") or {}).get("p50"),
        TARGET_SHORT_SPEEDUP, "higher")
    row("app vs plain transformers, long story (x faster, p50)", (app.get("long_speedup") or {}).get("p50"),
        TARGET_LONG_SPEEDUP, "higher")
    row("app time to first piece, short prompt (s, p50)", (app.get("short_first_piece") or {}).get("p50"),
        TARGET_TTFT_S, "lower")
    writers = app.get("writers") or {}
    single, sixteen = writers.get("1") or {}, writers.get("16") or {}
    if sixteen:
        row("16 writers: requests answered", f"{sixteen.get('answered')}/{sixteen.get('requests')}",
            f"{sixteen.get('requests')}/{sixteen.get('requests')}", "equal")
        rows[-1]["met"] = sixteen.get("answered") == sixteen.get("requests")
        rows[-1]["goal"] = "all"
        # Like for like: continuation lengths vary (40-170 tokens), so a lone writer's own
        # p95 is ~4x its p50; p95 is compared with p95, and p50 with p50.
        row("16 writers: p95 / single-writer p95", _ratio(sixteen.get("p95"), single.get("p95")),
            TARGET_P95_RATIO_16, "lower")
        row("16 writers: p50 / single-writer p50", _ratio(sixteen.get("p50"), single.get("p50")),
            TARGET_P95_RATIO_16, "lower")
    row("server peak RSS, fast engine (MB)", app.get("server_peak_rss_mb"), TARGET_SERVER_RSS_MB, "lower")
    return rows


def format_report(report: dict) -> str:
    """The side-by-side table, the app under load, and the targets, as text."""
    engines = report.get("engines", {})
    names = list(engines)
    lines = [f"batplots bench: {report['config']['prompts']} openings, {BENCH_SENTENCES}-sentence continuations, "
             f"base {report.get('prepare', {}).get('base')}, adapter {report.get('prepare', {}).get('adapter')}; {report['machine']['cpus']} CPUs, "
             f"load average {report['machine']['load_before']} -> {report['machine'].get('load_after')}", ""]

    def cell(name, path):
        value = engines[name]
        for key in path:
            value = (value or {}).get(key) if isinstance(value, dict) else None
        return "-" if value is None else str(value)

    rows = [("threads", ("threads",)), ("load (s)", ("load_seconds",)),
            ("short p50 (s)", ("short", "p50")), ("short p95 (s)", ("short", "p95")),
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
            for name in ("short", "long"):
                if app.get(f"{name}_plain"):
                    lines.append(f"{name}: plain transformers `generate` of the same tokens p50 "
                                 f"{app[name + '_plain']['p50']} s; per request it took {app[name + '_speedup']['p50']}x "
                                 f"(p50; p95 {app[name + '_speedup']['p95']}x) the app's time")
                if app.get(f"{name}_errors"):
                    lines.append(f"{len(app[name + '_errors'])} {name} request(s) failed, e.g. {app[name + '_errors'][0]}")
            lines.append("| writers | requests | answered | continuations/s | p50 (s) | p95 (s) |")
            lines.append("|---|---|---|---|---|---|")
            for n, w in app["writers"].items():
                lines.append(f"| {n} | {w['requests']} | {w['answered']} | {w['continuations_per_second']} | "
                             f"{w['p50']} | {w['p95']} |")
    formats = report.get("formats")
    if formats:
        lines += ["", f"Adapter forms for llama.cpp ({formats.get('adapter')}, perplexity over "
                      f"{formats.get('tokens')} tokens of the openings):"]
        if formats.get("error"):
            lines.append(f"failed: {formats['error']}")
        else:
            lines += ["| form | perplexity | vs transformers | tokens/s | file (MB) | convert (s) |",
                      "|---|---|---|---|---|---|"]
            for r in formats["rows"]:
                lines.append(f"| {r['format']} | {r['perplexity']} | {r.get('gap', '-')} | "
                             f"{r.get('tokens_per_second', '-')} | {r.get('file_mb', '-')} | "
                             f"{r.get('convert_seconds', '-')} |")
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in report.get("targets", []):
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | "
                     f"{'-' if t['met'] is None else ('yes' if t['met'] else 'NO')} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m batplots.measure.bench worker '{"engine": ...}'
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        job = json.loads(sys.argv[2])
        print(json.dumps(formats_worker(job) if job.get("kind") == "formats" else engine_worker(job)))
    else:
        sys.exit("usage: python -m batplots.measure.bench worker JSON (use `batplots bench` instead)")
