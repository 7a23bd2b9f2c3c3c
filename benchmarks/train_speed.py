"""Training speed of LoRA recipes on the embedded base, side by side in one run.

    .venv/bin/python benchmarks/train_speed.py [--steps 3] [--compile] [--only NAME,...]

Each recipe runs real optimizer steps on windows of the shared corpus with the
trainer's own code (batplots.train.prepare_model, batplots.layercache) and
prints training tokens/s and the ratio to the issue's baseline (LoRA r=16 on
all 30 layers, sequence length 256, batch 4). A cached recipe also pays once
for the frozen layers' forward over the whole corpus: that cost is printed as
seconds per run and folded into "s/epoch (1st)". The CPU is shared with other
work, so compare ratios from one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from batplots import dataset  # noqa: E402
from batplots.layercache import FrozenBottom  # noqa: E402
from batplots.model import load_base  # noqa: E402
from batplots.train import prepare_model  # noqa: E402
from batplots.trainconfig import TrainConfig, parse_layers  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "batman66.txt"
# name: (layers, seq_len, batch, cached, threads)
RECIPES = {
    "baseline all30 seq256": ("all", 256, 4, False, 2),
    "all30 seq256 1 thread": ("all", 256, 4, False, 1),
    "all30 seq128 bs8": ("all", 128, 8, False, 2),
    "all30 seq512 bs2": ("all", 512, 2, False, 2),
    "top12 seq256": ("top:12", 256, 4, False, 2),
    "top12 seq256 cached": ("top:12", 256, 4, True, 2),
    "top6 seq256 cached": ("top:6", 256, 4, True, 2),
}


def measure(name, layers_spec, seq, batch, cached, threads, steps, compile_model):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, tok, _ = load_base(None)
    packed = dataset.pack(dataset.split_corpus(CORPUS, 0.1), tok, seq)
    cfg = TrainConfig(corpus=str(CORPUS), layers=layers_spec, seq_len=seq, batch_size=batch)
    layers = parse_layers(layers_spec, model.config.num_hidden_layers)
    model = prepare_model(model, cfg, layers).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    grid = packed.grid()
    cache_s = 0.0
    bottom = None
    if cached:
        bottom = FrozenBottom(model, layers[0])
        tick = time.perf_counter()
        # Only the windows the steps use are cached; the per-token cost scales to the corpus.
        hidden = torch.cat([bottom.hidden(model, grid[i:i + batch]) for i in range(0, (steps + 1) * batch, batch)])
        cache_s = (time.perf_counter() - tick) / ((steps + 1) * batch * seq) * grid.numel()
    fwd = torch.compile(model) if compile_model else model

    def step(i):
        rows = slice(i * batch, (i + 1) * batch)
        x = grid[rows]
        out = bottom.forward(fwd, hidden[rows], labels=x) if bottom else fwd(input_ids=x, labels=x, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    tick = time.perf_counter()
    step(0)  # warm-up (and compilation)
    warm = time.perf_counter() - tick
    tick = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    seconds = time.perf_counter() - tick
    tps = steps * batch * seq / seconds
    epoch_tokens = grid.numel()
    return {"name": name + (" compiled" if compile_model else ""), "tok_s": tps, "warmup_s": warm,
            "cache_s": cache_s, "epoch_s": epoch_tokens / tps, "first_epoch_s": epoch_tokens / tps + cache_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per recipe (after one warm-up step)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the cached top-12 recipe")
    parser.add_argument("--only", default="", help="comma-separated recipe names to run")
    args = parser.parse_args()
    chosen = [n for n in RECIPES if not args.only or n in args.only.split(",")]
    rows = [measure(n, *RECIPES[n], args.steps, False) for n in chosen]
    if args.compile:
        rows.append(measure("top12 seq256 cached", *RECIPES["top12 seq256 cached"], args.steps, True))
    base = next((r["tok_s"] for r in rows if r["name"].startswith("baseline")), rows[0]["tok_s"])
    print(f"\n{'recipe':28s} {'tok/s':>7s} {'x base':>7s} {'s/epoch':>8s} {'1st ep':>8s} {'cache s':>8s} {'warm s':>7s}")
    for r in rows:
        print(f"{r['name']:28s} {r['tok_s']:7.1f} {r['tok_s'] / base:7.2f} {r['epoch_s']:8.0f} {r['first_epoch_s']:8.0f}"
              f" {r['cache_s']:8.0f} {r['warmup_s']:7.1f}")
    print(f"(load average during the run: {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}; "
          f"2 CPUs shared with other work)")


if __name__ == "__main__":
    main()
