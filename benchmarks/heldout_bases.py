"""Held-out perplexity and bits per character of each base, bare and with its adapter,
side by side, on the split both adapters held out; plus copying in passages they wrote.

    .venv/bin/python benchmarks/heldout_bases.py [--bases fast,best] [--passages DIR/fast.json,DIR/best.json]

Perplexity is per token, and the two bases cut text into different tokens, so only
bits per character compares them. --passages counts, in `blind_bases.py write` output
(the served Writer, copy guard on), the word 8-grams found verbatim in the corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def scores(base: str) -> dict:
    from batplots.corpus import guard as guardlib
    from batplots.measure import evaluate
    from batplots.model import weights as modellib

    adapter = modellib.resolve_adapter(None, base)
    info = guardlib.read_training_info(adapter) or {}
    guard = guardlib.guard_for_adapter(adapter)
    texts, split = evaluate.heldout_texts(Path(guard.corpus), info)
    seq_len = int(evaluate.split_setting(info, "seq_len", evaluate.DEFAULT_SEQ_LEN))
    model, tokenizer, label = modellib.load_base(base)
    bare = evaluate.heldout_scores(model, tokenizer, texts, seq_len)
    tuned = evaluate.heldout_scores(modellib.apply_adapter(model, adapter), tokenizer, texts, seq_len)
    return {"base": label, "adapter": adapter.name, "val_chars": split["val_chars"],
            "ppl_bare": round(bare["ppl"], 2), "ppl_adapter": round(tuned["ppl"], 2),
            "bpc_bare": round(bare["bits_per_char"], 4), "bpc_adapter": round(tuned["bits_per_char"], 4),
            "adapter_bytes": sum(p.stat().st_size for p in adapter.iterdir() if p.name.startswith("adapter_model"))}


def copying(path: Path) -> dict:
    from batplots.corpus.index import NGRAM, load_index

    run = json.loads(path.read_text())
    index = load_index(ROOT.parent / "shared" / "data" / "batman66.txt")
    copied = total = 0
    for passage in run["passages"]:
        found, n = index.copied_in(passage["text"], NGRAM)
        copied, total = copied + found, total + n
    return {"base": run["base"], "passages": len(run["passages"]), "ngrams": total, "copied": copied}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="fast,best")
    parser.add_argument("--passages", default="")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = [scores(b.strip()) for b in args.bases.split(",") if b.strip()]
    print(f"{'base':30s} {'ppl bare':>9s} {'ppl adapter':>11s} {'bpc bare':>9s} {'bpc adapter':>11s} {'adapter MB':>10s}")
    for r in rows:
        print(f"{r['base']:30s} {r['ppl_bare']:9.2f} {r['ppl_adapter']:11.2f} {r['bpc_bare']:9.4f} "
              f"{r['bpc_adapter']:11.4f} {r['adapter_bytes'] / 1e6:10.1f}")
    if len(rows) == 2:
        a, b = rows
        print(f"bits/char {b['base']} / {a['base']}: bare {b['bpc_bare'] / a['bpc_bare']:.3f}x, "
              f"adapter {b['bpc_adapter'] / a['bpc_adapter']:.3f}x")
    copies = [copying(Path(p)) for p in args.passages.split(",") if p]
    for c in copies:
        print(f"{c['base']}: {c['copied']} of {c['ngrams']} word 8-grams of {c['passages']} served passages are in the corpus")
    if args.out:
        args.out.write_text(json.dumps({"heldout": rows, "copying": copies}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
