"""How much of a model's writing is copied from its training corpus.

The issue's measure: for continuations of prompts that are *not* in the corpus,
(1) the share of the generated word 8-grams that occur verbatim in the corpus and
(2) the longest run of generated words that occurs verbatim in the corpus.
Words are compared as batplots.corpus.index normalises them (case-folded, punctuation
ignored), so a copy that differs only in a comma or a capital still counts as a
copy (the strict side); no span runs across an episode boundary.
Only the generated words are scored, never the prompt.

`python -m batplots.measure.memorisation --corpus PATH [--adapter DIR]` prints the figures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from batplots.corpus.index import NGRAM, CorpusIndex, load_index
# The limits for the default adapter (before any generation-time guard).
MAX_COPIED_SHARE = 0.05
MAX_COPIED_SPAN = 15
SAMPLES = 20
SENTENCES_PER_SAMPLE = 4

# Twenty original story openings that are not in the corpus (the lead's
# batplots/data/openings.txt, shared with the bench; the tests check that none
# shares an 8-gram with the shared corpus).
OPENINGS_FILE = Path(__file__).parents[1] / "data" / "openings.txt"


def load_prompts(path: Path = OPENINGS_FILE) -> list[str]:
    """The openings, one a line, without comments and blank lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Report:
    """The memorisation figures over a set of continuations."""

    samples: int = 0
    generated_words: int = 0
    ngrams: int = 0
    copied_ngrams: int = 0
    longest_span: int = 0
    longest_span_text: str = ""
    per_sample_share: list[float] = field(default_factory=list)

    @property
    def copied_share(self) -> float:
        return self.copied_ngrams / self.ngrams if self.ngrams else 0.0

    def passes(self) -> bool:
        return self.copied_share < MAX_COPIED_SHARE and self.longest_span < MAX_COPIED_SPAN

    def to_dict(self) -> dict:
        return {
            "samples": self.samples, "ngram": NGRAM, "generated_words": self.generated_words,
            "ngrams": self.ngrams, "copied_ngrams": self.copied_ngrams,
            "copied_share": round(self.copied_share, 4),
            "median_sample_share": round(statistics.median(self.per_sample_share), 4) if self.per_sample_share else 0.0,
            "longest_span_words": self.longest_span, "longest_span_text": self.longest_span_text,
            "limits": {"copied_share_below": MAX_COPIED_SHARE, "longest_span_below": MAX_COPIED_SPAN},
            "passes": self.passes(),
        }


def score(index: CorpusIndex, continuations: list[str]) -> Report:
    """Score continuations (generated text only) against the corpus index."""
    report = Report()
    for text in continuations:
        copied, total = index.copied_in(text, NGRAM)
        match, spans = index.longest_in_text(text)
        span, span_text = match.length, " ".join(w for w, _, _ in spans[match.start:match.start + match.length])
        report.samples += 1
        report.generated_words += len(spans)
        report.copied_ngrams += copied
        report.ngrams += total
        report.per_sample_share.append(copied / total if total else 0.0)
        if span > report.longest_span:
            report.longest_span, report.longest_span_text = span, span_text
    return report


def measure(engine, index: CorpusIndex, samples: int = SAMPLES, seed: int = 0,
            sentences: int = SENTENCES_PER_SAMPLE) -> tuple[Report, list[dict]]:
    """Generate one seeded continuation per prompt with engine's default sampling and score them."""
    from batplots.story import passage as passagelib
    from batplots.model.engine.base import Settings

    prompts = load_prompts()
    outputs = []
    for i in range(samples):
        prompt = prompts[i % len(prompts)]
        # copy_limit=0: no generation-time guard, the raw model is what is measured.
        settings = Settings(sentences=sentences, seed=seed + i, copy_limit=0).validate()
        result = passagelib.run(engine, prompt, settings)
        outputs.append({"prompt": prompt, "continuation": result.text.strip(), "seed": seed + i})
    return score(index, [o["continuation"] for o in outputs]), outputs


def _cli() -> None:
    import argparse
    import json

    from batplots.model.engine import EngineSpec, load_engine

    parser = argparse.ArgumentParser(description="Measure verbatim copying from the corpus.")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--adapter", default=None, help="adapter dir; default the shipped one; 'none' = bare base")
    parser.add_argument("--base", default=None)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", action="store_true", help="print every continuation")
    args = parser.parse_args()
    index = load_index(args.corpus)
    engine = load_engine(EngineSpec(base=args.base, adapter=args.adapter))
    report, outputs = measure(engine, index, samples=args.samples, seed=args.seed)
    if args.show:
        for o in outputs:
            print(f"- {o['prompt']} >> {o['continuation']}\n")
    print(json.dumps({"model": engine.describe(), **report.to_dict()}, indent=2))


if __name__ == "__main__":
    _cli()
