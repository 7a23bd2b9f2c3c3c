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
from typing import Hashable, Iterable, NamedTuple

from batplots.story import names as nameslib
from batplots.story.caseread import Memo
from batplots.text import sentence_spans

# Recent stories whose splits a longer text may extend: a server writes a few at a time.
MAX_RECENT_SPLITS = 16
# An alias made of one such word is found only where the sentence has it as a candidate
# (candidates); any other (with a space or a dot: "Mr. Freeze") is looked for everywhere.
SIMPLE_ALIAS = re.compile(r"[A-Z][A-Za-z'’-]*")
# Where such an alias can start (not after a word character or a hyphen) and how far it can run.
_CANDIDATE_RUN = re.compile(r"(?<![\w-])(?=([A-Z][A-Za-z'’-]*))")  # every start, inside a run too ("O'Hara")
MAX_INTERNED = 256  # distinct alias sets kept as one object each (interned)


class Split(NamedTuple):
    """A story's sentences (split_sentences's), where each starts, and where its tail starts."""
    text: str
    sentences: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # the complete sentences'
    rest: int
    # candidate word -> at most the index of the first sentence that has it (never more:
    # a fold read again from there reads no less than it must)
    first_seen: dict[str, int]

    def shared(self, longer: "Split") -> int:
        """How many of these sentences the longer story (which starts with this one's text)
        has as they are: all but a last one whose break the end of this text decided."""
        if len(longer.text) == len(self.text):
            return len(self.sentences)
        keep = len(self.spans)
        if keep and not self.text[self.spans[-1][1]:].strip():
            keep -= 1
        return keep


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
        # A break the end of the text decided may go otherwise in the longer one.
        keep = base.shared(Split(story, (), (), 0, {}))
        resume = base.spans[keep][0] if keep < len(base.spans) else base.rest
    spans, rest = sentence_spans(story[resume:], final=True)
    spans = [*base.spans[:keep], *((a + resume, b + resume) for a, b in spans)] if base else spans
    rest += resume
    sentences = [*base.sentences[:keep]] if base else []
    sentences += [story[a:b] for a, b in spans[keep:]]
    tail = story[rest:].strip()
    if tail:
        sentences.append(tail)
    first_seen = dict(base.first_seen) if base is not None else {}
    for i in range(keep, len(sentences)):
        for c in candidates(sentences[i]):
            if first_seen.get(c, i) >= i:
                first_seen[c] = i
    out = Split(story, tuple(sentences), tuple(spans), rest, first_seen)
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
    def step(state: set, sentence: str) -> None:
        state |= sentence_names(sentence).names

    return fold(story, "names", None, set, step, frozenset, set)


def name_counts(story: str) -> dict[str, int]:
    """How often story uses each name word, in order of first use (nameslib.name_words)."""
    return dict(_STORY_COUNTS.get(story, story, lambda: _name_counts(story)))


def _name_counts(story: str) -> tuple[tuple[str, int], ...]:
    def step(state: dict, sentence: str) -> None:
        for word, n in sentence_names(sentence).counts:
            state[word] = state.get(word, 0) + n

    return fold(story, "name counts", None, dict, step, lambda state: tuple(state.items()), dict)


def candidates(sentence: str) -> frozenset[str]:
    """Every text a one-word alias (SIMPLE_ALIAS) could match in sentence as lore.name_pattern
    finds it ('’' read as "'"): a capital after no word character or hyphen, up to a point
    no letter follows. An alias not among them is found nowhere in the sentence."""
    return _CANDIDATES.get(sentence, sentence, lambda: _candidates(sentence))


def _candidates(sentence: str) -> frozenset[str]:
    out = set()
    for m in _CANDIDATE_RUN.finditer(sentence):
        run = m.group(1).replace("’", "'")
        out.add(run)
        # A match may also end before a ' or - inside the run ("O" of "O'Hara"), not before a letter.
        out.update(run[:q] for q in range(1, len(run)) if run[q] in "'-")
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
        self.items = frozenset(item for items in self.simple.values() for item in items)

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


# ------------------------------------------------------------------ folds: a reading carried sentence to sentence
CHECKPOINT_EVERY = 32  # sentences between kept states: a resumed fold reads at most this many again
MAX_FOLDS = 8  # recent folds kept per kind (a server writes a few stories at a time)
MAX_FOLD_KINDS = 32


class _Folded(NamedTuple):
    split: Split
    other: object  # the index's aliases always in a key (interned), None without an index
    simple: frozenset  # its one-word aliases' items
    checkpoints: tuple  # the state (snap) before sentence k * CHECKPOINT_EVERY
    final: object


_folds: dict[Hashable, list[_Folded]] = {}


def fold(story: str, kind: Hashable, index: AliasIndex | None, init, step, snap, thaw):
    """step(state, sentence) over story's sentences in order, from init(); returns the
    final state's snap. Resumed from a recent fold of the same kind over a story this
    one extends: from the last checkpoint before the first sentence that reads otherwise
    (a shared one whose aliases changed: one that has an alias only one index knows).
    step must depend on nothing but its state, the sentence and the index's key of it."""
    read = split(story)
    sentences = read.sentences if story.strip() else ()
    other = index.other if index is not None else None
    simple = index.items if index is not None else frozenset()
    with _recent_lock:
        base = max((f for f in _folds.get(kind, ()) if f.other is other and len(f.split.text) <= len(story)
                    and story.startswith(f.split.text)), key=lambda f: len(f.split.text), default=None)
    start, checkpoints = 0, []
    if base is not None:
        start = base.split.shared(read) if base.split.text.strip() else 0
        for item in base.simple ^ simple:
            start = min(start, read.first_seen.get(item[0].replace("’", "'"), start))
        if start == len(sentences) and len(base.split.text) == len(story):
            return base.final
        k = min(start // CHECKPOINT_EVERY, len(base.checkpoints) - 1)
        checkpoints = list(base.checkpoints[:k + 1])
        start = k * CHECKPOINT_EVERY
    state = thaw(checkpoints[-1]) if checkpoints else init()
    if not checkpoints:
        checkpoints.append(snap(state))
    for i in range(start, len(sentences)):
        if i and i % CHECKPOINT_EVERY == 0 and i // CHECKPOINT_EVERY == len(checkpoints):
            checkpoints.append(snap(state))
        step(state, sentences[i])
    final = snap(state)
    with _recent_lock:
        if kind not in _folds and len(_folds) >= MAX_FOLD_KINDS:
            _folds.clear()  # kinds per lore: tests make many; a server has a lore or two
        kept = _folds.setdefault(kind, [])
        kept.insert(0, _Folded(read, other, simple, tuple(checkpoints), final))
        del kept[MAX_FOLDS:]
    return final
