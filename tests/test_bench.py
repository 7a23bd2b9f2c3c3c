"""`batplots bench` smoke tests on tiny models (not timed: the figures are only
checked for being there and consistent), and its pure helpers."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from batplots.measure import bench
from batplots.measure import bench_app
from batplots.measure import benchstats
from batplots.model.engine.llama_engine import LlamaEngine
from tests import tiny
from tests.tiny_gguf import write_gguf
from tests.webserver import make_server  # noqa: F401  (fixture)

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("bench") / "tiny.gguf")


@pytest.fixture
def exact_figures(monkeypatch):
    """Figures unrounded: a fast machine's sub-millisecond times would round to 0, and
    rounding error grows with speed in the arithmetic checked on them."""
    def exact(x, digits=3):
        return x

    for module in (benchstats, bench, bench_app):
        monkeypatch.setattr(module, "_round", exact)


def test_openings_are_twenty_original_passages(shared_corpus):
    openings = bench.openings()
    assert len(openings) == 20 and len(set(openings)) == 20
    corpus = " ".join(shared_corpus.read_text().lower().split())
    for opening in openings:
        words = opening.lower().split()
        assert len(words) >= 12
        spans = [" ".join(words[i:i + 6]) for i in range(len(words) - 5)]
        assert not [s for s in spans if s in corpus], opening  # written for batplots, not copied


def test_percentiles_and_long_story():
    assert bench.percentile([3, 1, 2, 4], 50) == 2.5 and bench.percentile([5], 95) == 5
    assert bench.percentile([], 50) is None
    assert bench.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    passages = bench.long_story(lambda text: len(text.split()), ["one two", "three four five"], min_tokens=9)
    assert passages == ["one two", "three four five", "one two", "three four five"]


def test_measure_engine_on_a_tiny_model(tiny_gguf, exact_figures):
    engine = LlamaEngine(tiny_gguf, n_ctx=2048, n_slots=2)
    try:
        result = bench.measure_engine(engine, bench.openings()[:2])
    finally:
        engine.close()
    assert result["short"]["n"] == 2 and result["long"]["n"] == 2
    assert 0 < result["short_first_piece"]["p50"] <= result["short"]["p50"]
    assert result["long_prompt_tokens_min"] >= bench.LONG_STORY_TOKENS
    assert result["long_cold_prompt_tokens"] >= bench.LONG_STORY_TOKENS
    assert result["tokens_per_second"] > 0 and result["short_tokens_mean"] > 2


class CountingBaseline:
    """Stands in for bench.PlainGenerate (which loads the real model): records its calls."""

    def __init__(self):
        self.calls = []

    def seconds(self, text, new_tokens, seed):
        self.calls.append((text, new_tokens))
        return 2.0


def test_measure_app_with_concurrent_writers(make_server, tiny_gguf, exact_figures):  # noqa: F811
    engine = LlamaEngine(tiny_gguf, n_ctx=4096, n_slots=4)
    srv = make_server(engine=engine)
    baseline = CountingBaseline()
    try:
        result = bench_app.measure_app(srv.url, bench.openings()[:2], bench.openings()[:3], writers=(1, 3),
                                       baseline=baseline)
    finally:
        engine.close()
    assert result["short"]["n"] == 2 and result["long"]["n"] == 2
    # The baseline wrote as many tokens as each app continuation, for the same story text.
    assert [text for text, _ in baseline.calls[:2]] == bench.openings()[:2]
    assert baseline.calls[2][0] == " ".join(bench.openings()[:3] + bench.openings()[:1])
    assert all(n >= 2 for _, n in baseline.calls) and len(baseline.calls) == 4
    # Each request's speed-up is baseline / app seconds; the p50 of two ratios is their mean. The
    # two app times come back from the summary (p50 = mean, p95 = a + 0.95 (b - a)).
    short = result["short"]
    slow = short["mean"] + (short["p95"] - short["mean"]) / 0.9
    fast = 2 * short["mean"] - slow
    assert result["short_speedup"]["p50"] == pytest.approx((2.0 / fast + 2.0 / slow) / 2, rel=1e-6)
    assert result["short_first_piece"]["p50"] <= result["short"]["p50"]
    for n in ("1", "3"):
        level = result["writers"][n]
        # Every request is answered: a turn, or (the tiny model sometimes rambles past the
        # token cap, on some seeds and CPUs) the 503 that says no sentence was finished.
        assert not [e for e in level["errors"] if "no complete sentence" not in e], level["errors"]
        assert level["answered"] >= level["requests"] // 2
        assert level["continuations_per_second"] > 0 and level["p95"] >= level["p50"] > 0
    # Every writer's story got its continuations, saved.
    assert len(srv.client.get("/api/stories").json()) == 2 + 2 + 1 + 3


def test_bench_command_end_to_end_on_a_tiny_gguf(tiny_gguf, tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "batplots.cli.main", "bench", "--engines", "llama", "--base", str(tiny_gguf),
                           "--adapter", "none", "--prompts", "2", "--writers", "1,2", "--json", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report == json.loads(out.read_text())
    llama = report["engines"]["llama"]
    assert "error" not in llama, llama
    assert llama["model"]["engine"] == "llama" and llama["load_seconds"] > 0 and llama["peak_rss_mb"] > 0
    app = report["app"]
    assert "error" not in app, app
    assert app["model"]["engine"] == "llama" and app["server_peak_rss_mb"] > 0
    for level in app["writers"].values():  # REQUESTS_PER_LEVEL requests, split among the writers
        assert level["answered"] == level["requests"] == bench_app.REQUESTS_PER_LEVEL
    text = bench.format_report(report)
    assert "| engine | llama |" in text and "| writers |" in text
    assert re.search(r"\| server peak RSS, fast engine \(MB\) \| [\d.]+ \| < 700.0 \| (yes|NO) \|", text)


def test_adapter_formats_are_compared_with_the_transformers_engine(tmp_path):
    from tests.test_llama_engine import make_adapter

    adapter = make_adapter(tmp_path / "adapter", scale=0.5)
    hf_dir = tmp_path / "tiny-hf"
    tiny.llama(seed=0).save_pretrained(hf_dir)
    tiny.tokenizer().save_pretrained(hf_dir)
    gguf = write_gguf(tiny.llama(seed=0), tmp_path / "tiny-base.gguf")
    result = bench.formats_worker({"base": str(gguf), "reference_base": str(hf_dir), "adapter": str(adapter)})
    rows = {r["format"]: r for r in result["rows"]}
    assert set(rows) == {"transformers (fp32, adapter merged)", "bare base", "merged q8_0", "merged q4_1",
                         "merged f16", "lora"}
    gap = {name: abs(float(r["gap"].rstrip("%"))) for name, r in rows.items() if "gap" in r}
    assert gap["lora"] < 0.5 and gap["merged f16"] < 0.5 and gap["merged q8_0"] < 2
    assert gap["bare base"] > max(gap["lora"], gap["merged f16"])  # the adapter changes the model
    assert all(r["tokens_per_second"] > 0 and r["file_mb"] > 0 for name, r in rows.items() if name in gap)
    assert "Adapter forms" in bench.format_report({"config": {"prompts": 0}, "machine": {"cpus": 2, "load_before": None},
                                                   "formats": result})


def test_bench_refuses_bad_options():
    from click.testing import CliRunner

    from batplots.cli.main import main

    result = CliRunner().invoke(main, ["bench", "--engines", "vllm"])
    assert result.exit_code == 2 and "unknown engine 'vllm'" in result.output
    result = CliRunner().invoke(main, ["bench", "--writers", "1,x"])
    assert result.exit_code == 2 and "whole numbers from 1 to 64" in result.output


def test_targets_compare_the_figures():
    report = {"engines": {},
              "app": {"short_speedup": {"p50": 6.0}, "long_speedup": {"p50": 6.0}, "short_first_piece": {"p50": 0.2},
                      "server_peak_rss_mb": 650.0,
                      "writers": {"1": {"p50": 1.0, "p95": 3.0},
                                  "16": {"answered": 16, "requests": 16, "p50": 7.5, "p95": 27.0}}}}
    rows = {r["target"]: r for r in bench.targets(report)}
    assert rows["app vs plain transformers, short prompt (x faster, p50)"]["value"] == 6.0
    assert rows["app vs plain transformers, short prompt (x faster, p50)"]["met"] is True
    assert rows["app vs plain transformers, long story (x faster, p50)"]["met"] is False  # 6x < 10x
    assert rows["app time to first piece, short prompt (s, p50)"]["met"] is True
    assert rows["16 writers: requests answered"]["met"] is True
    assert rows["16 writers: p95 / single-writer p95"]["value"] == 9.0
    assert rows["16 writers: p95 / single-writer p95"]["met"] is False
    assert rows["16 writers: p50 / single-writer p50"]["value"] == 7.5
    assert rows["16 writers: p50 / single-writer p50"]["met"] is True
    assert rows["server peak RSS, fast engine (MB)"]["met"] is True
