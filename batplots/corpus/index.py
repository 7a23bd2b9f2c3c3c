"""The corpus index: which words of a sentence occur verbatim in the training corpus.

Matching is on normalised words: NFKC, case-folded, every apostrophe form made
"'", and punctuation, quotes and whitespace ignored, so `"Holy haberdashery,
Batman!"` and `holy haberdashery batman` are the same three words.

The index is a suffix array over the corpus's word ids (sorted start positions
of every suffix). For each start word of a query, a binary search finds where
the query's remainder would sort; the longest match is with one of the two
neighbouring suffixes. That gives the exact longest shared span of any length
(provenance wants short spans too, not only the guard's 8+). Measured by
`benchmarks/index_bench.py` on the show (14.7k words): built in ~40 ms, ~0.1 ms
per 23-word sentence. Bigram postings were 2.3x faster on typical sentences
but 2.6x slower on common words (their cost grows with a bigram's frequency;
the suffix array's with log n); a set of hashed 8-grams is 30x faster but only
says yes or no, with no span or episode for provenance. All are far below the
seconds a sentence takes to generate, so exactness and a bounded worst case won.

Episodes are separated by sentinel ids that match nothing, so no span runs from
one episode into the next. The index is rebuilt from the corpus file (cheap) and
cached per process by the file's sha256.
"""

from __future__ import annotations

import bisect
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

# A word: letters/digits, with inner apostrophes of any form ("O'Hara", "don’t").
WORD_RE = re.compile(r"[^\W_]+(?:['’‘ʼ`][^\W_]+)*")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})
# Provenance below this many shared words says nothing ("the", "of the").
MIN_PASSAGE_WORDS = 2
# Corpus words shown on each side of a matched span in a provenance passage.
CONTEXT_WORDS = 6
# Id given to query words that the corpus never uses: it matches nothing.
UNKNOWN = -1
# The n of the copy measures (eval, story eval, memorisation): a copied word 8-gram
# is what the guard refuses at its default limit (engine.base.DEFAULT_COPY_LIMIT).
NGRAM = 8


def normalize_word(word: str) -> str:
    """The matching form of one word: NFKC, case-folded, straight apostrophes."""
    return unicodedata.normalize("NFKC", word).translate(_APOSTROPHES).casefold()


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) for each word of text, offsets into text."""
    return [(normalize_word(m.group()), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def words(text: str) -> list[str]:
    """The normalised words of text."""
    return [w for w, _, _ in word_spans(text)]


@dataclass(frozen=True)
class Match:
    """The longest run of query words found verbatim in the corpus."""

    start: int  # index of the first matching query word
    length: int  # number of matching words (0: no word of the query is in the corpus)
    corpus_pos: int  # position of the first matching corpus word (-1 when length is 0)


@dataclass(frozen=True)
class Passage:
    """Where a sentence comes closest to the corpus: its longest shared span."""

    words: int  # length of the shared span in words
    span: str  # the shared words as the sentence writes them
    passage: str  # the same words in the corpus, with a little context
    episode: str  # the episode's title
    url: str | None  # the episode's source page, when the corpus is scraped JSONL

    def to_dict(self) -> dict:
        return {"words": self.words, "span": self.span, "passage": self.passage,
                "episode": self.episode, "url": self.url}


def suffix_array(ids: np.ndarray) -> np.ndarray:
    """Start positions of ids's suffixes in lexicographic order (prefix doubling,
    O(n log^2 n) in numpy). A suffix that is a prefix of another sorts first."""
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, rank = np.unique(ids, return_inverse=True)
    rank = rank.astype(np.int64).reshape(-1)
    order = np.argsort(rank, kind="stable")
    k = 1
    while k < n:
        second = np.full(n, -1, dtype=np.int64)  # -1: past the end, sorts first
        second[:n - k] = rank[k:]
        order = np.lexsort((second, rank))
        r, s = rank[order], second[order]
        changed = np.empty(n, dtype=np.int64)
        changed[0] = 0
        changed[1:] = (r[1:] != r[:-1]) | (s[1:] != s[:-1])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.cumsum(changed)
        if rank[order[-1]] == n - 1:  # every suffix has its own rank: sorted
            break
        k *= 2
    return order


class CorpusIndex:
    """Longest verbatim spans of text in a corpus of episodes (see the module doc)."""

    def __init__(self, episodes: Sequence, sha256: str | None = None, source: str | None = None):
        """episodes: objects with .title, .plot and .url (batplots.corpus.episodes.Episode)."""
        self.sha256 = sha256
        self.source = source
        self.titles: list[str] = []
        self.urls: list[str | None] = []
        self._plots: list[str] = []
        vocab: dict[str, int] = {}
        ids: list[int] = []
        # Per corpus position: episode number and character offsets in its plot.
        self._episode: list[int] = []
        self._start: list[int] = []
        self._end: list[int] = []
        sentinel = UNKNOWN
        sentinels = 0
        for number, episode in enumerate(episodes):
            if ids:
                sentinel -= 1  # a fresh negative id between episodes: equal to nothing
                sentinels += 1
                ids.append(sentinel)
                self._episode.append(number - 1)
                self._start.append(0)
                self._end.append(0)
            self.titles.append(episode.title)
            self.urls.append(getattr(episode, "url", None))
            self._plots.append(episode.plot)
            for word, start, end in word_spans(episode.plot):
                ids.append(vocab.setdefault(word, len(vocab)))
                self._episode.append(number)
                self._start.append(start)
                self._end.append(end)
        self._vocab = vocab
        self._ids = ids
        self._sa = suffix_array(np.asarray(ids, dtype=np.int64)).tolist()
        self.n_words = len(ids) - sentinels

    # ------------------------------------------------------------------ matching
    def encode(self, query_words: Iterable[str]) -> list[int]:
        return [self._vocab.get(w, UNKNOWN) for w in query_words]

    def _longest_at(self, q: list[int]) -> tuple[int, int]:
        """(length, corpus position) of the longest corpus prefix match of q."""
        if not q or q[0] == UNKNOWN or not self._sa:
            return 0, -1
        ids, width = self._ids, len(q)
        pos = bisect.bisect_left(self._sa, q, key=lambda p: ids[p:p + width])
        best, where = 0, -1
        for i in (pos - 1, pos):
            if 0 <= i < len(self._sa):
                p = self._sa[i]
                n = 0
                limit = min(width, len(ids) - p)
                while n < limit and ids[p + n] == q[n]:
                    n += 1
                if n > best:
                    best, where = n, p
        return best, where

    def matching_lengths(self, query_words: Sequence[str]) -> list[tuple[int, int]]:
        """For each start i: (length, corpus position) of the longest corpus span
        equal to query_words[i:i+length] (length 0 and position -1 when none)."""
        q = self.encode(query_words)
        out = []
        for i in range(len(q)):
            out.append(self._longest_at(q[i:]))
        return out

    def longest(self, query_words: Sequence[str]) -> Match:
        """The longest span of query_words found verbatim in the corpus (earliest on ties)."""
        best = Match(0, 0, -1)
        for i, (length, pos) in enumerate(self.matching_lengths(query_words)):
            if length > best.length:
                best = Match(i, length, pos)
        return best

    def longest_in_text(self, text: str) -> tuple[Match, list[tuple[str, int, int]]]:
        spans = word_spans(text)
        return self.longest([w for w, _, _ in spans]), spans

    def copied_in(self, text: str, n: int = NGRAM) -> tuple[int, int]:
        """(word n-grams of text found verbatim in the corpus, all word n-grams of text).

        Every copy count goes through here, with text rather than words, so that text is
        split and normalised exactly as the corpus was: any other split ("Batman!" for
        "batman") silently matches nothing."""
        lengths = [length for length, _ in self.matching_lengths(words(text))]
        total = max(0, len(lengths) - n + 1)
        return sum(1 for length in lengths[:total] if length >= n), total

    # ---------------------------------------------------------------- provenance
    def episode_at(self, corpus_pos: int) -> int:
        return self._episode[corpus_pos]

    def corpus_text(self, corpus_pos: int, length: int, context: int = 0) -> str:
        """The corpus's own text of `length` words from corpus_pos, widened by up to
        `context` words each side within the episode, with ellipses where cut."""
        episode = self._episode[corpus_pos]
        first, last = corpus_pos, corpus_pos + length - 1
        for _ in range(context):  # sentinels (negative ids) end an episode
            if first > 0 and self._ids[first - 1] >= 0:
                first -= 1
            if last + 1 < len(self._ids) and self._ids[last + 1] >= 0:
                last += 1
        plot = self._plots[episode]
        starts_episode = first == 0 or self._ids[first - 1] < 0
        ends_episode = last + 1 == len(self._ids) or self._ids[last + 1] < 0
        # At an episode's edge, show its edge too (the closing stop, an opening quote).
        text = plot[0 if starts_episode else self._start[first]:len(plot) if ends_episode else self._end[last]]
        return ("" if starts_episode else "…") + text.strip() + ("" if ends_episode else "…")

    def closest(self, text: str) -> Passage | None:
        """The corpus passage that shares the longest span with text, or None when
        they share fewer than MIN_PASSAGE_WORDS consecutive words."""
        match, spans = self.longest_in_text(text)
        if match.length < MIN_PASSAGE_WORDS:
            return None
        first, last = spans[match.start], spans[match.start + match.length - 1]
        episode = self._episode[match.corpus_pos]
        return Passage(words=match.length, span=text[first[1]:last[2]],
                       passage=self.corpus_text(match.corpus_pos, match.length, CONTEXT_WORDS),
                       episode=self.titles[episode], url=self.urls[episode])


# --------------------------------------------------------------------- loading
_CACHE: dict[str, CorpusIndex] = {}
_CACHE_LOCK = threading.Lock()


def load_index(path: str | Path) -> CorpusIndex:
    """The index of a corpus file (JSONL or plain text, as batplots.corpus.episodes reads it),
    built once per process per file content (keyed by sha256). Plots are cleaned as
    training cleans them (clean_plot), so the index holds the text the model saw.
    Raises CorpusError."""
    from dataclasses import replace

    from batplots.corpus.episodes import clean_plot, corpus_sha256, read_corpus

    path = Path(path)
    if not path.is_file():
        from batplots.corpus.episodes import CorpusError

        raise CorpusError(f"{path} does not exist or is not a file")
    sha = corpus_sha256(path)
    with _CACHE_LOCK:
        index = _CACHE.get(sha)
        if index is None:
            episodes = [replace(ep, plot=clean_plot(ep.plot)) for ep in read_corpus(path)]
            index = CorpusIndex(episodes, sha256=sha, source=str(path))
            _CACHE[sha] = index
    return index
