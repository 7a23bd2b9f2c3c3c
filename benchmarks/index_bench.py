"""Measure the corpus index (suffix array) against hashed word n-gram indexes.

    .venv/bin/python benchmarks/index_bench.py [CORPUS]   (default ../shared/data/batman66.txt)

Prints build time, query time per sentence and memory for:
  suffix array     exact longest span of any length (what batplots.corpus.index uses)
  bigram postings  dict word-bigram -> positions, extend each hit greedily (also exact, spans >= 2)
  8-gram set       hashes of word 8-grams: only answers "copies 8+ words?", no span, no passage
Queries: every corpus sentence (copied text) and as many shuffled-word sentences (original text).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batplots.corpus.episodes import read_corpus  # noqa: E402
from batplots.corpus.index import CorpusIndex, words  # noqa: E402
from batplots.text import split_sentences  # noqa: E402

N = 8


class BigramIndex:
    def __init__(self, episodes):
        self.ids: list[str | None] = []
        self.post: dict[tuple[str, str], list[int]] = {}
        for ep in episodes:
            if self.ids:
                self.ids.append(None)  # episode separator
            self.ids.extend(words(ep.plot))
        for p in range(len(self.ids) - 1):
            a, b = self.ids[p], self.ids[p + 1]
            if a is not None and b is not None:
                self.post.setdefault((a, b), []).append(p)

    def longest(self, q: list[str]) -> int:
        best = 0
        for i in range(len(q) - 1):
            for p in self.post.get((q[i], q[i + 1]), ()):
                n = 2
                while i + n < len(q) and p + n < len(self.ids) and self.ids[p + n] == q[i + n]:
                    n += 1
                best = max(best, n)
        return best


class NgramSet:
    def __init__(self, episodes):
        self.hashes = set()
        for ep in episodes:
            w = words(ep.plot)
            self.hashes.update(hash(tuple(w[i:i + N])) for i in range(len(w) - N + 1))

    def copies(self, q: list[str]) -> bool:
        return any(hash(tuple(q[i:i + N])) in self.hashes for i in range(len(q) - N + 1))


def measure(build):
    """(index, build seconds, peak bytes); timed without tracemalloc, which slows it."""
    t = time.perf_counter()
    obj = build()
    seconds = time.perf_counter() - t
    tracemalloc.start()
    build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return obj, seconds, peak


def per_query(fn, queries, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for q in queries:
            fn(q)
        best = min(best, time.perf_counter() - t)
    return best / len(queries)


def main():
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "batman66.txt"
    episodes = read_corpus(corpus)
    sentences = [s for ep in episodes for s in split_sentences(ep.plot)]
    copied = [words(s) for s in sentences]
    rng = random.Random(0)
    original = [rng.sample(q, len(q)) for q in copied]
    queries = copied + original
    sa, sa_build, sa_mem = measure(lambda: CorpusIndex(episodes))
    bg, bg_build, bg_mem = measure(lambda: BigramIndex(episodes))
    ng, ng_build, ng_mem = measure(lambda: NgramSet(episodes))
    # The two exact indexes must agree before their speed means anything.
    for q in queries[:400] + queries[-400:]:
        a, b = sa.longest(q).length, bg.longest(q)
        assert a == b or (a < 2 and b == 0), (q, a, b)
    sa_q = per_query(lambda q: sa.longest(q), queries)
    bg_q = per_query(bg.longest, queries)
    ng_q = per_query(ng.copies, queries)
    # Worst case for postings: a sentence made of the corpus's commonest bigram.
    common = max(bg.post, key=lambda k: len(bg.post[k]))
    worst = [list(common) * 12]
    sa_w, bg_w, ng_w = (per_query(f, worst) for f in (lambda q: sa.longest(q), bg.longest, ng.copies))
    print(f"corpus: {corpus} ({sa.n_words} words, {len(episodes)} episodes); "
          f"{len(queries)} queries, median {statistics.median(map(len, queries))} words")
    print(f"worst case: {' '.join(common)!r} x 12 ({len(bg.post[common])} corpus occurrences)")
    print(f"{'index':<16}{'build ms':>10}{'query ms':>10}{'vs SA':>7}{'worst ms':>10}{'vs SA':>7}"
          f"{'memory MB':>11}  answers")
    rows = [("suffix array", sa_build, sa_q, sa_w, sa_mem, "longest span, position, any length"),
            ("bigram postings", bg_build, bg_q, bg_w, bg_mem, "longest span >= 2, position"),
            (f"{N}-gram set", ng_build, ng_q, ng_w, ng_mem, f"copies {N}+ words? (yes/no)")]
    for name, build, query, worst_q, mem, answers in rows:
        print(f"{name:<16}{build * 1e3:>10.1f}{query * 1e3:>10.3f}{query / sa_q:>6.2f}x{worst_q * 1e3:>10.3f}"
              f"{worst_q / sa_w:>6.2f}x{mem / 2**20:>11.1f}  {answers}")


if __name__ == "__main__":
    main()
