"""What could make the llama engine decode faster without changing its text? Two
measurements side by side, on the embedded base plus the shipped adapter:

    .venv/bin/python benchmarks/decode_limits.py [--quick]

1. Weight formats. The adapter merged into the base as F16, then quantised by
   llama.cpp to each type in QUANTS: file size, perplexity next to the F16 merge's
   (issue 6 allows 2% off the transformers engine, which the F16 merge matches), and
   decoding speed (best of SPEED_RUNS).
2. Speculative decoding by prompt lookup: draft the next k tokens by finding the
   story's last n tokens earlier in the story (and in earlier generations), verify
   the drafts in one batch, keep the ones the sampler would have drawn anyway. With
   one draw per kept token, the text is exactly what plain decoding gives, so the
   tokens each step would keep can be counted on recorded generations; the cost of a
   step of 1 + k tokens is measured on the real context. Speedup = plain time / time
   with drafts.

Run it on an otherwise idle machine: everything here is timing.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batplots.measure import bench  # noqa: E402
from batplots.model import weights as modellib  # noqa: E402
from batplots.model.engine import Settings, gguf_lora, llama_engine  # noqa: E402
from batplots.model.engine.llama_batch import Request  # noqa: E402
from batplots.model.engine.llama_engine import REPETITION_WINDOW, LlamaEngine  # noqa: E402

QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "IQ4_NL", "Q4_0")
SPEED_RUNS = 5
SPEED_TOKENS = 100
PPL_TOKENS = 1024
SEEDS = 3  # generations recorded per opening
GEN_TOKENS = 100
MAX_DRAFT = 4
COST_REPEATS = 30
DRAFTERS = [(3, 1), (3, 2), (2, 1), (1, 1)]  # (longest n-gram looked up, shortest)


def quantise(f16: Path, qtype: str, out: Path) -> Path:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    if llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp could not quantise to {qtype}")
    return out


def formats(f16: Path, workdir: Path, quick: bool) -> None:
    print(f"{'format':8} {'MB':>6} {'perplexity':>10} {'vs F16':>8} {'tokens/s':>9}")
    text = " ".join(bench.openings())
    names = ("F16",) + (QUANTS[:2] if quick else QUANTS)
    paths = {q: f16 if q == "F16" else quantise(f16, q, workdir / f"{q}.gguf") for q in names}
    ppl = {q: 0.0 for q in names}
    speed = {q: 0.0 for q in names}
    # Round robin, fastest of SPEED_RUNS, so that the host's bursts of stolen time hit
    # every format alike. One engine at a time: each has a scheduler thread with its own
    # OpenMP team, and two live teams on 2 cores slow both (see LlamaEngine.logits).
    for run in range(SPEED_RUNS):
        for q in names:
            engine = LlamaEngine(paths[q], n_slots=1)
            try:
                if not run:
                    ids = engine.encode(text)[:PPL_TOKENS]
                    ppl[q] = bench.perplexity(engine.logits(ids), ids)
                speed[q] = max(speed[q], bench.decode_speed(engine, bench.openings()[run], 1, SPEED_TOKENS))
            finally:
                engine.close()
    for q in names:
        print(f"{q:8} {paths[q].stat().st_size / 1e6:6.1f} {ppl[q]:10.3f} {100 * (ppl[q] / ppl['F16'] - 1):+7.2f}% "
              f"{speed[q]:9.1f}", flush=True)


def record(engine: LlamaEngine, seeds: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, sampled ids) per opening and seed, with the engine's own sampler."""
    runs = []
    for seed in range(seeds):
        for opening in bench.openings():
            ids = engine.encode(opening)
            sampler = engine._sampler(Settings(), seed)
            for token in ids[-REPETITION_WINDOW:]:
                sampler.accept(token)
            req = Request(ids=ids, max_new=GEN_TOKENS, sampler=sampler)
            engine.scheduler.submit(req)
            try:
                runs.append((ids, list(engine._tokens(req, None))))
            finally:
                engine.scheduler.release(req)
    return runs


def step_costs(engine: LlamaEngine, context: list[int]) -> dict[int, float]:
    """Seconds (fastest of COST_REPEATS) of one decode step of n tokens (logits at each) after context."""
    import llama_cpp

    ctx, mem = engine._ctx.ctx, engine._ctx.memory
    llama_cpp.llama_memory_clear(mem, True)
    batch = llama_cpp.llama_batch_init(len(context) + MAX_DRAFT + 1, 0, 1)

    def decode(tokens, start, all_logits):
        for k, token in enumerate(tokens):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, start + k, 1
            batch.seq_id[k][0] = 0
            batch.logits[k] = 1 if all_logits or k == len(tokens) - 1 else 0
        batch.n_tokens = len(tokens)
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("decode failed")

    try:
        decode(context, 0, False)
        times = {n: [] for n in range(1, MAX_DRAFT + 2)}
        # Round robin over n and the fastest of each: on a VM whose host takes CPU time
        # in bursts, that is the closest to each step's own cost.
        for _ in range(COST_REPEATS):
            for n in times:
                started = time.perf_counter()
                decode(context[:n], len(context), True)
                times[n].append(time.perf_counter() - started)
                llama_cpp.llama_memory_seq_rm(mem, 0, len(context), -1)
        costs = {n: min(t) for n, t in times.items()}
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_memory_clear(mem, True)
    return costs


def draft(history: list[int], longest: int, shortest: int, k: int, seen: dict) -> list[int]:
    """The k tokens that followed the latest earlier occurrence of history's last n tokens
    (n from longest down to shortest), else what followed them in an earlier generation."""
    for n in range(longest, shortest - 1, -1):
        if len(history) <= n:
            continue
        tail = history[-n:]
        for i in range(len(history) - n - 1, -1, -1):
            if history[i:i + n] == tail:
                return history[i + n:i + n + k]
        if tuple(tail) in seen:
            return seen[tuple(tail)][:k]
    return []


def speculation(runs, costs, longest: int, shortest: int, k: int, cross: bool) -> tuple[float, float, float]:
    """(tokens kept per step, share of drafted tokens kept, speedup over plain decoding)."""
    steps = kept = drafted = accepted = 0
    seconds = 0.0
    seen: dict = {}
    for prompt, generated in runs:
        history, i = list(prompt), 0
        while i < len(generated):
            guess = draft(history, longest, shortest, k, seen if cross else {})
            a = 0
            while a < len(guess) and i + a < len(generated) and guess[a] == generated[i + a]:
                a += 1
            emit = min(a + 1, len(generated) - i)
            steps, drafted, accepted = steps + 1, drafted + len(guess), accepted + a
            seconds += costs[len(guess) + 1]
            history += generated[i:i + emit]
            i += emit
            kept += emit
        full = prompt + generated
        for n in range(shortest, longest + 1):
            for j in range(len(full) - n):
                seen[tuple(full[j:j + n])] = full[j + n:j + n + k]
    return kept / steps, accepted / max(drafted, 1), kept * costs[1] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two formats, one seed")
    args = parser.parse_args()
    adapter = modellib.resolve_adapter(None)
    base = llama_engine.resolve_base(None)[0]
    f16 = gguf_lora.ensure_format(adapter, base, "f16")
    with tempfile.TemporaryDirectory() as tmp:
        print("== weight formats (perplexity on the shipped openings; speed: 2-sentence-length decode)")
        formats(f16, Path(tmp), args.quick)
    engine = llama_engine.load(base, adapter, modellib.EMBEDDED_NAME)
    try:
        runs = record(engine, 1 if args.quick else SEEDS)
    finally:
        engine.close()  # ends its scheduler thread (and that thread's OpenMP team)
    context = [t for prompt, gen in runs[:3] for t in prompt + gen][:300]
    engine = llama_engine.load(base, adapter, modellib.EMBEDDED_NAME)
    try:
        costs = step_costs(engine, context)
    finally:
        engine.close()
    n_tokens = sum(len(g) for _, g in runs)
    print(f"\n== speculative decoding by prompt lookup ({len(runs)} generations, {n_tokens} tokens, default settings)")
    print("step of n tokens (ms): " + ", ".join(f"{n}: {1000 * c:.1f} ({c / costs[1]:.2f}x)" for n, c in costs.items()))
    print(f"{'n-grams':8} {'drafts':>6} {'from':>14} {'kept/step':>9} {'drafts kept':>11} {'speedup':>8}")
    for longest, shortest in DRAFTERS:
        for k in range(1, MAX_DRAFT + 1):
            for cross in (False, True):
                per_step, share, speedup = speculation(runs, costs, longest, shortest, k, cross)
                source = "story+earlier" if cross else "story"
                print(f"{shortest}-{longest:<6} {k:6} {source:>14} {per_step:9.3f} {100 * share:10.1f}% {speedup:7.2f}x")


if __name__ == "__main__":
    main()
