"""Training speed of LoRA recipes on the embedded base, side by side in one run.

    .venv/bin/python benchmarks/train_speed.py [--rounds 5] [--compile] [--only NAME,...] [--base NAME]

With --base (e.g. qwen2.5-coder-1.5b-instruct) the recipes run one after another,
each freeing its model before the next loads (a 1.5B base is 6 GB in fp32), so
their ratios are still from one run but not interleaved.

Each recipe runs real optimizer steps on windows of the shared corpus with the
trainer's own code (batplots.train.finetune.prepare_model, batplots.train.layercache) and
prints training tokens/s and the ratio to the issue's baseline (LoRA r=16 on
all 30 layers, sequence length 256, batch 4). A cached recipe also pays once
for the frozen layers' forward over the whole training split ("cache s",
folded into "1st ep"). Steps are taken round-robin and the median kept, and the
CPU is shared with other work: compare ratios from one run, not absolute numbers
across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from batplots.corpus.split import split_corpus  # noqa: E402
from batplots.train import dataset  # noqa: E402
from batplots.train.layercache import FrozenBottom  # noqa: E402
from batplots.model.weights import load_base  # noqa: E402
from batplots.train.finetune import prepare_model  # noqa: E402
from batplots.train.config import TrainConfig, parse_layers  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "batman66.txt"
# name: (layers, seq_len, batch, cached, threads)
RECIPES = {
    "baseline all30 seq256": ("all", 256, 4, False, 2),
    "all30 seq256 1 thread": ("all", 256, 4, False, 1),
    "all30 seq128 bs8": ("all", 128, 8, False, 2),
    "all30 seq512 bs2": ("all", 512, 2, False, 2),
    "top10 seq256": ("top:10", 256, 4, False, 2),
    "top10 seq256 cached": ("top:10", 256, 4, True, 2),
    "top10 seq256 cached 1 thread": ("top:10", 256, 4, True, 1),
    "top6 seq256 cached": ("top:6", 256, 4, True, 2),
    # Recipes for a 28-layer base such as Qwen2.5-1.5B.
    "top8 seq256 cached": ("top:8", 256, 4, True, 2),
    "top14 seq256 cached": ("top:14", 256, 4, True, 2),
}


class Recipe:
    """One recipe's model, optimizer and (when cached) frozen-layer outputs, ready to step."""

    def __init__(self, name, layers_spec, seq, batch, cached, threads, compile_model, base=None):
        self.name, self.seq, self.batch, self.threads = name, seq, batch, threads
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model, tok, _ = load_base(base)
        packed = dataset.pack(split_corpus(CORPUS, 0.1), tok, seq)
        cfg = TrainConfig(corpus=str(CORPUS), layers=layers_spec, seq_len=seq, batch_size=batch)
        layers = parse_layers(layers_spec, model.config.num_hidden_layers)
        self.model = prepare_model(model, cfg, layers).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-4)
        self.grid = packed.grid()
        self.bottom, self.cache_s, self.hidden = None, 0.0, None
        self.rows = len(self.grid) // batch
        if cached:
            self.bottom = FrozenBottom(self.model, layers[0])
            tick = time.perf_counter()
            self.hidden = torch.cat([self.bottom.hidden(self.model, self.grid[i:i + batch])
                                     for i in range(0, len(self.grid), batch)])
            self.cache_s = time.perf_counter() - tick
        self.fwd = torch.compile(self.model) if compile_model else self.model
        self.i = 0
        tick = time.perf_counter()
        self.step()  # warm-up (and compilation)
        self.warmup_s = time.perf_counter() - tick
        self.times: list[float] = []

    def step(self) -> float:
        torch.set_num_threads(self.threads)
        rows = slice((self.i % self.rows) * self.batch, (self.i % self.rows + 1) * self.batch)
        self.i += 1
        x = self.grid[rows]
        tick = time.perf_counter()
        if self.bottom:
            out = self.bottom.forward(self.fwd, self.hidden[rows], labels=x)
        else:
            out = self.fwd(input_ids=x, labels=x, use_cache=False)
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - tick

    def row(self) -> dict:
        tps = self.batch * self.seq / statistics.median(self.times)
        epoch_tokens = self.grid.numel()
        return {"name": self.name, "tok_s": tps, "warmup_s": self.warmup_s, "cache_s": self.cache_s,
                "epoch_s": epoch_tokens / tps, "first_epoch_s": epoch_tokens / tps + self.cache_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per recipe, taken round-robin")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the cached top-10 recipe")
    parser.add_argument("--only", default="", help="comma-separated recipe names to run")
    parser.add_argument("--base", default=None, help="base model (default: the embedded SmolLM2-135M); "
                                                      "recipes then run one after another")
    args = parser.parse_args()
    names = [n for n in RECIPES if not args.only or n in args.only.split(",")]
    if args.base:
        rows = []
        for n in names:  # one model in memory at a time
            recipe = Recipe(n, *RECIPES[n], False, base=args.base)
            recipe.times = [recipe.step() for _ in range(args.rounds)]
            rows.append(recipe.row())
            del recipe
        report(rows, args.rounds)
        return
    recipes = [Recipe(n, *RECIPES[n], False) for n in names]
    if args.compile:
        recipes.append(Recipe("top10 seq256 cached compiled", *RECIPES["top10 seq256 cached"], True))
    # Round-robin, one step each per round, and the median per recipe: other work on
    # the shared CPU then slows every recipe alike instead of whichever ran during it.
    for _ in range(args.rounds):
        for recipe in recipes:
            recipe.times.append(recipe.step())
    report([r.row() for r in recipes], args.rounds)


def report(rows: list[dict], rounds: int) -> None:
    base = next((r["tok_s"] for r in rows if r["name"].startswith("baseline")), rows[0]["tok_s"])
    print(f"\n{'recipe':30s} {'tok/s':>7s} {'x base':>7s} {'s/epoch':>8s} {'1st ep':>8s} {'cache s':>8s} {'warm s':>7s}")
    for r in rows:
        print(f"{r['name']:30s} {r['tok_s']:7.1f} {r['tok_s'] / base:7.2f} {r['epoch_s']:8.0f} {r['first_epoch_s']:8.0f}"
              f" {r['cache_s']:8.0f} {r['warmup_s']:7.1f}")
    print(f"(median of {rounds} round-robin steps; load average at the end: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; 2 CPUs shared with other work)")


if __name__ == "__main__":
    main()
