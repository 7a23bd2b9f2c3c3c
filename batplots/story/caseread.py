"""What each sentence of a story says for its case file, read once per process.

The case file is filled in again from the whole story after every change
(batplots.story.casefile). Reading every sentence again cost an edit at 200 passages
about a second of CPU, which slowed every other request of the process (issue 23). So a
story is split into sentences once per passage, and everything the rules find inside one
sentence (its name phrases, targets, hideouts, deathtraps and cues) is read once per
distinct sentence; both are kept in bounded memos, and casefile.extract merges the
readings in time linear in the story. A memo hit gives exactly what reading again would.

A passage's rules read at most MAX_PASSAGE_NAMES distinct made-up name words (past them a
new one reads as a plain word, its first letter lower case): the red team's story of
thousands of made-up names costs what an honest one of its length does. The cap is per
passage so that an edit never changes how the other passages read (their memo entries
hold), and casefile.extract caps the story's made-up names at MAX_CASE_NAMES.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from batplots.story import caserules as R
from batplots.story import lore as lorelib
from batplots.story import names as nameslib
from batplots.text import join_continuation, sentence_spans

MEMO_CHARS = 4_000_000  # characters of text each memo keeps the readings of (least recently used go)
MAX_PASSAGE_NAMES = 32  # distinct made-up name words of one passage the rules read
MAX_CARRY_CHARS = 1000  # an unfinished sentence longer than this ends with its passage (story_sentences)


class Memo:
    """A thread-safe map from a text (or a key holding one) to what make() reads from it,
    bounded by the characters of the texts kept (MEMO_CHARS): two generations, the young
    one taking new and used entries, the old one dropped when the young one is full (a
    least-recently-used order, roughly, for the price of a dict lookup on a hit)."""

    def __init__(self, chars: int = MEMO_CHARS):
        self.half = chars // 2
        self._young: dict = {}
        self._old: dict = {}
        self._young_chars = 0
        self._lock = threading.Lock()

    def get(self, key, text: str, make: Callable):
        value = self._young.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = self._old.get(key, _MISSING)
        if value is _MISSING:
            value = make()  # outside the lock: readers of other keys do not wait
        with self._lock:
            if key not in self._young:
                self._young[key] = value
                self._young_chars += len(text)
                if self._young_chars > self.half:
                    self._old, self._young, self._young_chars = self._young, {}, 0
        return value

    def __len__(self) -> int:
        return len(self._young.keys() | self._old.keys())


_MISSING = object()


class Phrase(NamedTuple):
    """A name phrase of a sentence ("Professor Nobody", "the Gotham Museum") and what the
    words around it say."""
    text: str
    words: tuple[str, ...]
    possessive: bool
    thing: bool  # ends in a place or thing noun (THING_NOUNS)
    start: int
    end: int
    guest: str  # the phrase as a guest's name ("Professor Osgood Ames" of "Egyptologist Professor ...")
    titled_or_verb: bool  # has a title, or says, visits, arrives... right after
    role: bool  # given a guest's role ("the museum curator, Dr. Ames"), not a crooked one
    after_cue: bool  # right after "henchman", "moll", "gang"... ("his henchmen Blot")
    before_cue: bool  # right before one ("Shard, the Glassblower's henchman")
    joined: bool  # joined to the phrase before it by "," or "and" ("Blot and Smudge")


@dataclass(frozen=True)
class Facts:
    """What one sentence says, for the case file's rules."""
    first_word: str | None  # the name-like word it opens with ("Late", "Meanwhile", "Egghead")
    middle_words: frozenset[str]  # the other capitalised words
    name_words: tuple[str, ...]  # nameslib.name_words, in order
    tokens: frozenset[str]  # every capitalised word and its parts: a name pattern can only match these
    lead_token: str | None  # the first word of a name phrase it opens with
    phrases: tuple[Phrase, ...]
    phrases_skipped: tuple[Phrase, ...]  # the same, lead_token dropped (when it is no name)
    targets: tuple[str, ...]
    hideouts: tuple[str, ...]
    deathtraps: tuple[str, ...]
    strong: frozenset[str]  # the names it calls a villain outright (caserules.STRONG_AFTER, STRONG_BEFORE)
    villain_cue: bool  # says someone is up to no good (VILLAIN_CUE)
    peril_cue: bool  # a hero near a deathtrap's words
    hench_cue: bool

    def phrases_for(self, skip: set[str]) -> tuple[Phrase, ...]:
        return self.phrases_skipped if self.lead_token is not None and self.lead_token in skip else self.phrases


_SENTENCES = Memo()
_FACTS = Memo()
_PASSAGES = Memo()


def story_sentences(passages: Sequence[str]) -> list[str]:
    """The sentences of the passages joined as a story is (rules.story_text), an
    unfinished tail last, split once per passage: what split_sentences gives for the
    joined text, except that a passage starting in lower case after a finished one
    starts a sentence of its own, and an unfinished sentence longer than MAX_CARRY_CHARS
    ends with its passage (else one passage without a full stop would make every later
    passage read again: the red team's story has none)."""
    out: list[str] = []
    carry = ""
    for passage in passages:
        if len(carry) > MAX_CARRY_CHARS:
            out.append(carry.strip())
            carry = ""
        chunk = carry + join_continuation(carry, passage) if carry else passage.strip()
        if not chunk:
            continue
        complete, rest = _SENTENCES.get(chunk, chunk, lambda c=chunk: _split(c))
        out += complete
        carry = rest
    if carry.strip():
        out.append(carry.strip())
    return out


def _split(chunk: str) -> tuple[list[str], str]:
    spans, rest = sentence_spans(chunk, final=True)
    return [chunk[a:b] for a, b in spans], chunk[rest:]


def facts(sentence: str) -> Facts:
    """What the sentence says (read once per process while it stays in the memo)."""
    return _FACTS.get(sentence, sentence, lambda: _read(sentence))


def _read(sentence: str) -> Facts:
    opening = R.FIRST_WORD.match(sentence)
    first, middle, tokens = None, set(), set()
    for m in nameslib.WORD.finditer(sentence):
        word = nameslib.POSSESSIVE.sub("", m.group(0))
        if opening and m.start() == opening.start(1):
            first = word
        else:
            middle.add(word)
        tokens.add(word)
        tokens.update(part for part in word.replace("’", "'").replace("'", "-").split("-") if part)
    lead = R.PHRASE.search(sentence)
    lead_token = (nameslib.POSSESSIVE.sub("", lead.group(0).split()[0])
                  if lead and not sentence[:lead.start()].strip(R.OPENERS) else None)
    cues = list(R.HENCH_CUE.finditer(sentence))
    phrases = _phrases(sentence, False, cues)
    return Facts(
        first_word=first, middle_words=frozenset(middle), name_words=tuple(nameslib.name_words(sentence)),
        tokens=frozenset(tokens), lead_token=lead_token, phrases=phrases,
        phrases_skipped=_phrases(sentence, True, cues) if lead_token is not None else phrases,
        targets=tuple(R.matches(R.TARGET_RULES, sentence)), hideouts=tuple(R.matches(R.HIDEOUT_RULES, sentence)),
        deathtraps=tuple(R.deathtraps(sentence)), strong=_strong_names(sentence, tokens), villain_cue=bool(R.VILLAIN_CUE.search(sentence)),
        peril_cue=bool(R.HERO_NEAR.search(sentence) and R.DEATHTRAP_RULE.search(sentence)), hench_cue=bool(cues))


def occurrences(text: str, word: str):
    """The offsets of word in text as a whole word (where \\bword\\b matches), without
    building a pattern for it."""
    i = text.find(word)
    while i != -1:
        j = i + len(word)
        if (i == 0 or not _word_char(text[i - 1])) and (j == len(text) or not _word_char(text[j])):
            yield i
        i = text.find(word, i + 1)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _strong_names(sentence: str, tokens: set[str]) -> frozenset[str]:
    out = set()
    for word in tokens:
        for start in occurrences(sentence, word):
            if R.STRONG_AFTER.match(sentence, start + len(word)) or R.STRONG_BEFORE.search(
                    R.tail_words(sentence[:start], R.STRONG_BEFORE_TOKENS)):
                out.add(word)
                break
    return frozenset(out)


def _phrases(sentence: str, drop_lead: bool, cues: list) -> tuple[Phrase, ...]:
    """The name phrases of a sentence; drop_lead: its opening word is no name ("Late" at
    night, "Rich" old Mrs. Gold): dropped from the front of the phrase it opens."""
    out: list[Phrase] = []
    cue_ends = [c.end() for c in cues]
    cue_starts = [c.start() for c in cues]
    for m in R.PHRASE.finditer(sentence):
        tokens = m.group(0).split()
        if drop_lead and tokens and not sentence[:m.start()].strip(R.OPENERS):
            tokens.pop(0)
        while tokens and tokens[0].rstrip(".") in nameslib.NOT_NAMES and tokens[0].rstrip(".") not in R.TITLES:
            tokens.pop(0)  # "Meanwhile Batman", "The Riddler"
        if not tokens:
            continue
        possessive = bool(R.POSSESSIVE_END.search(tokens[-1]))
        tokens[-1] = R.POSSESSIVE_END.sub("", tokens[-1])
        words = tuple(nameslib.name_words(" ".join(tokens)))
        if not words:
            continue
        start, end, thing = m.start(), m.end(), tokens[-1] in R.THING_NOUNS
        # Only the nearest cue before can be followed by a name: the words between two
        # cues are no "named"/"the" (AFTER_CUE); the nearest after, as a rule, precedes it.
        i = bisect.bisect_right(cue_ends, start) - 1
        after = i >= 0 and bool(R.AFTER_CUE.fullmatch(sentence[cue_ends[i]:start]))
        j = bisect.bisect_left(cue_starts, end)
        before = j < len(cues) and bool(R.BEFORE_CUE.fullmatch(sentence[end:cue_starts[j]]))
        joined = bool(out) and bool(R.LIST_JOIN.fullmatch(sentence[out[-1].end:start]))
        guest, titled_or_verb = _as_guest(tokens, sentence, end)
        out.append(Phrase(" ".join(tokens), words, possessive, thing, start, end, guest, titled_or_verb,
                          not thing and R.has_guest_role(sentence, start, end), after, before, joined))
    return tuple(out)


def _as_guest(tokens: list[str], sentence: str, end: int) -> tuple[str, bool]:
    titled = [i for i, t in enumerate(tokens[:-1]) if t.rstrip(".") in R.TITLES]
    if titled and titled[0] and R.GUEST_ROLE_WORDS.fullmatch(" ".join(tokens[:titled[0]])):
        tokens = tokens[titled[0]:]  # "Egyptologist Professor Osgood Ames"
    return " ".join(tokens), bool(titled) or bool(R.PERSON_VERB.match(sentence[end:]))


# ------------------------------------------------------------------ a passage as the rules read it
class PassageReading(NamedTuple):
    text: str  # the passage as the rules read it (case_text)
    villains: tuple[tuple[str, int, int], ...]  # (lore villain, mentions, first offset)


def read_passage(passage: str, lore) -> PassageReading:
    """A passage as the case file's rules read it, and the lore's villains it names."""
    key = (_lore_entry(lore)[0], passage)
    return _PASSAGES.get(key, passage, lambda: _read_passage(passage, lore))


def _read_passage(passage: str, lore) -> PassageReading:
    text = case_text(passage, lore)
    villains = getattr(lore, "villains", None) or {}
    found = []
    for name, entry in villains.items():
        pattern = lorelib.name_pattern(entry.get("aliases") or (name,))
        hits = [m.start() for m in pattern.finditer(text)]
        if hits:
            found.append((name, len(hits), hits[0]))
    return PassageReading(text, tuple(found))


def case_text(passage: str, lore=None) -> str:
    """The passage as the case file's rules read it: past its first MAX_PASSAGE_NAMES
    distinct name words of the writer's own, a new name word reads as a plain word (its
    first letter lower case), so the rules' cost stays linear in the text. The show's
    heroes and the lore's cast, characters, places, gadgets and villains always count.
    Same length, same offsets."""
    keep = lore_name_words(lore)
    seen: set[str] = set()
    chars = None
    for match in nameslib.WORD.finditer(passage):
        word = nameslib.POSSESSIVE.sub("", match.group(0))
        if len(word) < 2 or word in nameslib.NOT_NAMES or word.isupper() or word in keep or word in seen:
            continue
        if len(seen) < MAX_PASSAGE_NAMES:
            seen.add(word)
            continue
        if chars is None:
            chars = list(passage)
        chars[match.start()] = chars[match.start()].lower()
    return passage if chars is None else "".join(chars)


_LORES: dict[int, tuple[object, int, frozenset[str]]] = {}  # id(lore) -> (lore, its memo key, its name words)
_LORE_KEYS = iter(range(1, 1 << 62))  # a new key for every lore seen: a dead lore's id may be reused
MAX_LORES = 8  # a server has a lore or two; tests make a few


def lore_name_words(lore) -> frozenset[str]:
    """The heroes' and the lore's name words (its cast, characters, places, gadgets, villains)."""
    return _lore_entry(lore)[1]


def _lore_entry(lore) -> tuple[int, frozenset[str]]:
    if lore is None:
        return 0, frozenset(R.HEROES)
    with _LORES_LOCK:
        cached = _LORES.get(id(lore))
        if cached is not None and cached[0] is lore:
            return cached[1], cached[2]
    named = set(lore.characters) | set(lore.places) | set(lore.gadgets) | set(lore.villains)
    for entry in lore.villains.values():
        named |= set(entry.get("aliases") or ()) if isinstance(entry, dict) else set()
    words = frozenset(R.HEROES | set(lore.cast) | {w for name in named for w in nameslib.names(str(name))})
    with _LORES_LOCK:
        if len(_LORES) >= MAX_LORES:
            _LORES.clear()
        key = next(_LORE_KEYS)
        _LORES[id(lore)] = (lore, key, words)
    return key, words


_LORES_LOCK = threading.Lock()
