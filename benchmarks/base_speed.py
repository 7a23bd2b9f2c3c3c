"""The two bases side by side, as `serve` runs them: decode speed against the memory-read
limit, time to the first piece, and a ranked turn, in one run.

    .venv/bin/python benchmarks/base_speed.py [--bases fast,best] [--prompts 8] [--formats]

- read limit: decoding one token reads every weight once, so tokens/s cannot beat
  (memory read bandwidth) / (bytes of the GGUF the engine runs); the bandwidth is
  measured here with torch summing a 1 GiB tensor on the engine's threads.
- decode: tokens/s of a plain greedy decode of DECODE_TOKENS tokens after a short prompt
  (best of DECODE_RUNS), and its share of the read limit.
- turn: the Writer's ranked turn (4 takes, 2 sentences, case file from the opening) on the
  first --prompts blind-reading openings: median seconds to the first piece and to the
  whole passage.
- --formats: for the 1.5B, the adapter merged (Q8_0 where it changed) against a runtime
  LoRA on the untouched Q4_K_M file: size and tokens/s.

Run it on an otherwise idle machine: everything here is timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.blind_bases import OPENINGS, read_openings, timed_turn  # noqa: E402

DECODE_TOKENS = 64
DECODE_RUNS = 3
BANDWIDTH_BYTES = 1 << 30
BANDWIDTH_RUNS = 5
PROMPT = "Batman and Robin race to the Gotham City Museum, where the Riddler has left a clue."


def read_bandwidth(threads: int) -> float:
    """Bytes per second torch reads summing a 1 GiB tensor (best of BANDWIDTH_RUNS)."""
    import torch

    torch.set_num_threads(threads)
    data = torch.ones(BANDWIDTH_BYTES // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(BANDWIDTH_RUNS):
        tick = time.perf_counter()
        float(data.sum())
        best = min(best, time.perf_counter() - tick)
    return BANDWIDTH_BYTES / best


def decode_speed(engine) -> float:
    from batplots.model.engine import Settings

    best = 0.0
    for run in range(DECODE_RUNS):
        tick = time.perf_counter()
        n = sum(1 for _ in engine.pieces(PROMPT, Settings(temperature=0.0, max_new_tokens=DECODE_TOKENS),
                                         seed=run, cancel=None))
        best = max(best, n / (time.perf_counter() - tick))
    return best


def engine_bytes(engine) -> int:
    info = engine.describe()
    total = 0
    for key in ("gguf_path", "lora_path"):
        path = getattr(engine, key, None)
        if path:
            total += Path(path).stat().st_size
    return total or int(info.get("bytes", 0))


def turns(writer, prompts: list[str]) -> dict:
    first, whole = [], []
    for n, opening in enumerate(prompts, 1):
        _, to_first, to_whole = timed_turn(writer, opening, 7000 + n)
        first.append(to_first)
        whole.append(to_whole)
    return {"first_piece_median_s": round(statistics.median(first), 2),
            "turn_median_s": round(statistics.median(whole), 2), "turn_max_s": round(max(whole), 2)}


def measure(base: str, prompts: list[str], bandwidth: float, takes: int | None = None) -> dict:
    from batplots.model.engine import EngineSpec
    from batplots.story.writer import open_writer

    tick = time.perf_counter()
    writer = open_writer(EngineSpec(base=base), takes)
    load_s = time.perf_counter() - tick
    engine = writer.engine
    try:
        size = engine_bytes(engine)
        tps = decode_speed(engine)
        limit = bandwidth / size if size else None
        row = {"base": base, "takes": writer.takes, "engine": engine.describe(), "load_s": round(load_s, 1), "bytes": size,
               "tokens_per_s": round(tps, 1), "read_limit_tokens_per_s": round(limit, 1) if limit else None,
               "share_of_limit": round(tps / limit, 3) if limit else None}
        row.update(turns(writer, prompts))
    finally:
        engine.close()
    return row


def formats(bandwidth: float) -> list[dict]:
    from batplots.model import bases
    from batplots.model import weights as modellib
    from batplots.model.engine import gguf_lora
    from batplots.model.engine.llama_engine import LlamaEngine

    base = bases.gguf(bases.QWEN15)
    adapter = modellib.default_adapter("best")
    rows = []
    for fmt in ("q8_0", "lora"):
        path = gguf_lora.ensure_format(adapter, base, fmt)
        engine = LlamaEngine(base, path, n_slots=1) if fmt == "lora" else LlamaEngine(path, n_slots=1)
        try:
            size = path.stat().st_size + (base.stat().st_size if fmt == "lora" else 0)
            tps = decode_speed(engine)
        finally:
            engine.close()
        rows.append({"format": fmt, "bytes": size, "tokens_per_s": round(tps, 1),
                     "share_of_limit": round(tps / (bandwidth / size), 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from batplots.model.engine.llama_engine import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="fast,best")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--formats", action="store_true")
    parser.add_argument("--takes", type=int, default=None, help="takes a turn ranks (default: the Writer's, 4)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    bandwidth = read_bandwidth(default_threads())
    prompts = read_openings(OPENINGS)[:args.prompts]
    rows = [measure(b.strip(), prompts, bandwidth, args.takes) for b in args.bases.split(",")]
    report = {"read_bandwidth_gb_s": round(bandwidth / 1e9, 2), "threads": default_threads(), "bases": rows}
    if args.formats:
        report["formats_1_5b"] = formats(bandwidth)
    print(f"memory read bandwidth: {report['read_bandwidth_gb_s']} GB/s on {report['threads']} threads")
    print(f"{'base':30s} {'MB':>6s} {'tok/s':>6s} {'limit':>6s} {'share':>6s} {'1st piece s':>11s} {'turn s':>7s}")
    for r in rows:
        print(f"{r['base']:30s} {r['bytes'] / 1e6:6.0f} {r['tokens_per_s']:6.1f} {r['read_limit_tokens_per_s']:6.1f}"
              f" {r['share_of_limit']:6.2f} {r['first_piece_median_s']:11.2f} {r['turn_median_s']:7.2f}")
    if len(rows) == 2:
        a, b = rows
        print(f"ratio {b['base']} / {a['base']}: decode {b['tokens_per_s'] / a['tokens_per_s']:.2f}x, first piece "
              f"{b['first_piece_median_s'] / a['first_piece_median_s']:.2f}x, turn "
              f"{b['turn_median_s'] / a['turn_median_s']:.2f}x")
    for f in report.get("formats_1_5b", []):
        print(f"1.5B adapter as {f['format']:5s}: {f['bytes'] / 1e6:6.0f} MB, {f['tokens_per_s']:5.1f} tok/s, "
              f"{f['share_of_limit']:.2f} of the read limit")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
