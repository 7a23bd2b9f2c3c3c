"""A story as the Writer reads it, once per sentence.

The Writer builds a Bible and reads names, the lead and the open thread from the whole
story for every passage; at 200 passages that was seconds of CPU a turn, which slowed
every other user of the process (issues 23, 25). As batplots.story.caseread does for the
case file, a story is split once (a longer text reuses the split of the story it extends)
and what each sentence says is read once per distinct sentence into a bounded memo
(caseread.Memo); the story-wide answers merge those readings in order. Every answer is
the one the whole-text reading gives (tests/test_writer_overhead.py checks it on the
corpus).

Why a per-sentence reading is the whole text's: between sentences there is only
whitespace, and a sentence ends on a stop (or a closing quote or bracket), so no name
and no alias (which end on a letter and never hold a sentence break) runs across two.
"""

from __future__ import annotations

import re
import threading
from typing import Iterable, NamedTuple

from batplots.story import names as nameslib
from batplots.story.caseread import Memo
from batplots.text import sentence_spans

# Recent stories whose splits a longer text may extend: a server writes a few at a time.
MAX_RECENT_SPLITS = 16
# An alias made of one such word is found only where the sentence has it as a candidate
# (candidates); any other (with a space or a dot: "Mr. Freeze") is looked for everywhere.
SIMPLE_ALIAS = re.compile(r"[A-Z][A-Za-z'’-]*")
_RUN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'’-")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
MAX_INTERNED = 256  # distinct alias sets kept as one object each (interned)


class Split(NamedTuple):
    """A story's sentences (split_sentences's), where each starts, and where its tail starts."""
    text: str
    sentences: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # the complete sentences'
    rest: int


_recent: list[Split] = []
_recent_lock = threading.Lock()


def split(story: str) -> Split:
    """split_sentences(story) (its sentences, with offsets), resumed from the split of a
    story it extends. The splitter's state is empty at every sentence start, and a break
    is decided by the text up to the next non-space character, so only the last sentence
    of the shorter story (whose break the end of the text decided) is read again."""
    with _recent_lock:
        base = max((s for s in _recent if len(s.text) <= len(story) and story.startswith(s.text)),
                   key=lambda s: len(s.text), default=None)
    if base is not None and len(base.text) == len(story):
        return base
    keep, resume = 0, 0
    if base is not None:
        keep, resume = len(base.spans), base.rest
        if keep and not base.text[base.spans[-1][1]:].strip():
            keep -= 1  # decided by the end of the text: the longer one may decide otherwise
            resume = base.spans[-1][0]
    spans, rest = sentence_spans(story[resume:], final=True)
    spans = [*base.spans[:keep], *((a + resume, b + resume) for a, b in spans)] if base else spans
    rest += resume
    sentences = [*base.sentences[:keep]] if base else []
    sentences += [story[a:b] for a, b in spans[keep:]]
    tail = story[rest:].strip()
    if tail:
        sentences.append(tail)
    out = Split(story, tuple(sentences), tuple(spans), rest)
    with _recent_lock:
        _recent.insert(0, out)  # the shorter story stays: a passage's takes and the next turn both extend it
        del _recent[MAX_RECENT_SPLITS:]
    return out


def sentences(story: str) -> list[str]:
    """split_sentences(story) for a non-blank story, else []."""
    return list(split(story).sentences) if story.strip() else []


# ------------------------------------------------------------------ names
class SentenceNames(NamedTuple):
    names: frozenset[str]
    counts: tuple[tuple[str, int], ...]  # each name word's count, in order of first use


_NAMES = Memo()
_CANDIDATES = Memo()
# Whole stories' merged readings: a few stories' worth (their texts count toward the bound).
_STORY_NAMES = Memo()
_STORY_COUNTS = Memo()


def sentence_names(sentence: str) -> SentenceNames:
    return _NAMES.get(sentence, sentence, lambda: _names(sentence))


def _names(sentence: str) -> SentenceNames:
    counts: dict[str, int] = {}
    for word in nameslib.name_words(sentence):
        counts[word] = counts.get(word, 0) + 1
    return SentenceNames(frozenset(counts), tuple(counts.items()))


def story_names(story: str) -> frozenset[str]:
    """nameslib.names(story), merged from its sentences' (a name never spans two); kept
    per story, which a passage's takes, checks and ranking all ask for."""
    return _STORY_NAMES.get(story, story, lambda: _story_names(story))


def _story_names(story: str) -> frozenset[str]:
    out: set[str] = set()
    for sentence in sentences(story):
        out |= sentence_names(sentence).names
    return frozenset(out)


def name_counts(story: str) -> dict[str, int]:
    """How often story uses each name word, in order of first use (nameslib.name_words)."""
    return dict(_STORY_COUNTS.get(story, story, lambda: _name_counts(story)))


def _name_counts(story: str) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for sentence in sentences(story):
        for word, n in sentence_names(sentence).counts:
            out[word] = out.get(word, 0) + n
    return tuple(out.items())


def candidates(sentence: str) -> frozenset[str]:
    """Every text a one-word alias (SIMPLE_ALIAS) could match in sentence as lore.name_pattern
    finds it ('’' read as "'"): a capital after no word character or hyphen, up to a point
    no letter follows. An alias not among them is found nowhere in the sentence."""
    return _CANDIDATES.get(sentence, sentence, lambda: _candidates(sentence))


def _candidates(sentence: str) -> frozenset[str]:
    out = set()
    n = len(sentence)
    for p, ch in enumerate(sentence):
        if ch not in _UPPER or (p and (sentence[p - 1].isalnum() or sentence[p - 1] in "_-")):
            continue
        q = p + 1
        while q <= n:
            if q == n or sentence[q] not in _RUN_CHARS:
                out.add(sentence[p:q].replace("’", "'"))
                break
            if not sentence[q].isalpha():  # ' ’ - may end a match; a letter may not
                out.add(sentence[p:q].replace("’", "'"))
            q += 1
    return frozenset(out)


class AliasIndex:
    """A name_pattern's aliases split for per-sentence keys: those found only where a
    sentence has them as a candidate, by candidate, and the rest (always in the key)."""

    def __init__(self, items: Iterable[tuple]):
        """items: (alias, whatever else the reading depends on), alias first."""
        self.simple: dict[str, list[tuple]] = {}
        other = []
        for item in items:
            if SIMPLE_ALIAS.fullmatch(item[0]):
                self.simple.setdefault(item[0].replace("’", "'"), []).append(item)
            else:
                other.append(item)
        self.other = intern(frozenset(other))

    def key(self, sentence: str) -> tuple:
        """What a reading of sentence by the pattern can depend on: its aliases there."""
        found = [item for c in candidates(sentence) if c in self.simple for item in self.simple[c]]
        return self.other, frozenset(found)


_interned: dict = {}


def intern(value):
    """One object for equal values: a memo key compares by identity first."""
    with _recent_lock:
        if len(_interned) >= MAX_INTERNED:
            _interned.clear()
        return _interned.setdefault(value, value)
