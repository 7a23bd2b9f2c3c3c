"""llama.cpp decode speed with weight repacking on and off, side by side, on this CPU.

Each run is a self-check probe child (batplots.model.engine.selfcheck), so a
configuration that crashes here is reported as crashed instead of ending the
benchmark. Rounds alternate the configurations, so a busy machine slows both
alike; the best round of each is printed.

    .venv/bin/python benchmarks/repack_speed.py [--tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys

from batplots.model import weights as modellib
from batplots.model.engine import cpu, llama_engine, selfcheck

# Beyond the probe's first load, long enough that decoding dominates.
DEFAULT_TOKENS = 128
DEFAULT_ROUNDS = 3


def formats() -> list[tuple[str, tuple]]:
    base = modellib.embedded_gguf()
    adapter = modellib.default_adapter()
    out = [("embedded base (Q4_1)", (base, None))]
    if adapter is not None:
        out.append(("base + batman66 merged (Q4_1 + Q8_0, shipped)", llama_engine.model_files(base, adapter)))
        out.append(("base + batman66 as LoRA (F32)", llama_engine.model_files(base, adapter, "lora")))
    return out


def measure(tokens: int, rounds: int) -> list[dict]:
    rows = []
    for label, files in formats():
        best: dict[bool, selfcheck.Attempt | None] = {True: None, False: None}
        for _ in range(rounds):
            for repack in (False, True):
                if best[repack] is not None and best[repack].outcome != "ok":
                    continue  # crashed or failed once: do not crash it again
                attempt = selfcheck.run_probe(selfcheck.probe_command(*files, repack, tokens),
                                              selfcheck.config_name(repack))
                if (best[repack] is None or attempt.outcome != "ok"
                        or (attempt.tokens_per_s or 0) > (best[repack].tokens_per_s or 0)):
                    best[repack] = attempt
        rows.append({"format": label, "off": best[False].__dict__, "on": best[True].__dict__})
    return rows


def cell(attempt: dict) -> str:
    if attempt["outcome"] == "ok":
        return f"{attempt['tokens_per_s']:.1f}"
    return f"{attempt['outcome']} ({attempt['detail']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    info = cpu.cpu_info()
    rows = measure(args.tokens, args.rounds)
    if args.json:
        print(json.dumps({"cpu": info, "llama_cpp": cpu.llama_system_info(), "tokens": args.tokens, "rows": rows}))
        return 0
    print(f"CPU: {info['model']} ({' '.join(info['flags'])})")
    print(f"llama.cpp: {cpu.llama_system_info()}")
    print(f"greedy decode of {args.tokens} tokens, best of {args.rounds}, {llama_engine.default_threads()} threads")
    print("| format | repacking off, tokens/s | repacking on, tokens/s | on / off |")
    print("|---|---|---|---|")
    for row in rows:
        on, off = row["on"], row["off"]
        ratio = (f"{on['tokens_per_s'] / off['tokens_per_s']:.2f}x"
                 if on["outcome"] == off["outcome"] == "ok" else "-")
        print(f"| {row['format']} | {cell(off)} | {cell(on)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
