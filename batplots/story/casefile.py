"""A story's case file: its villains, henchmen, guests, target or loot, hideout and deathtrap.

Pure functions over a dict {field: [short strings], "edited": [field names]}. `autofill`
fills every field the writer has not edited from the story's text, from scratch each
time (so an undone passage takes its entries with it), using the lore's villains and
henchmen and rules of thumb over the writer's own names (below; the words and patterns
are batplots.story.caserules'). A field the writer edited by hand is theirs: autofill
never touches it. `case_names` gives the Writer the case's names, which count as the
story's names.

Each sentence is read once per process (batplots.story.caseread) and `extract` merges
the readings in time linear in the story, so filling the case file in after every change
costs about the new passage (issue 23).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Sequence

from batplots.story import caseread
from batplots.story import lore as lorelib
from batplots.story import names as nameslib
from batplots.story.caserules import HEROES, HIDEOUT_WORDS, NP, PHRASE_WORDS, PLACE_NOUNS, TITLES, clip  # noqa: F401
from batplots.story.rules import Invalid, check_characters
from batplots.text import normalize_whitespace

FIELDS = ("villains", "henchmen", "guests", "target", "hideout", "deathtrap")
FIELD_LABELS = {"villains": "Villains", "henchmen": "Henchmen", "guests": "Guests", "target": "Target or loot",
                "hideout": "Hideout", "deathtrap": "Deathtrap"}
# Named limits, quoted by the API's errors.
MAX_ENTRIES = 8  # entries in one field
MAX_ENTRY_CHARS = 80  # characters in one entry
# The writer's own name words a story's villains are looked for among (the first ones
# named; the lore's always count): a story of thousands of made-up names gets no longer
# lists to sort than an honest one.
MAX_CASE_NAMES = 64


def empty() -> dict:
    return {**{f: [] for f in FIELDS}, "edited": []}


def validate(case: dict) -> dict:
    """The case as stored: every field a list of at most MAX_ENTRIES distinct short strings
    (whitespace collapsed, blanks dropped), "edited" a list of field names. Raises Invalid
    naming the field and what is allowed."""
    if not isinstance(case, dict):
        raise Invalid("the case file must be an object with the fields " + ", ".join(FIELDS))
    unknown = sorted(set(case) - set(FIELDS) - {"edited"})
    if unknown:
        raise Invalid(f"the case file has no field {unknown[0]!r}; its fields are: {', '.join(FIELDS)} (and edited)")
    out = empty()
    for field in FIELDS:
        out[field] = _entries(field, case.get(field, []))
    edited = case.get("edited", [])
    if not isinstance(edited, list) or any(e not in FIELDS for e in edited):
        raise Invalid(f"edited must be a list of field names from: {', '.join(FIELDS)}; got {edited!r}")
    out["edited"] = [f for f in FIELDS if f in edited]
    return out


def _entries(field: str, values) -> list[str]:
    if not isinstance(values, list):
        raise Invalid(f"{field} must be a list of short strings (at most {MAX_ENTRIES} entries)")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise Invalid(f"{field}: every entry must be a string, got {value!r}")
        check_characters(value, field)
        entry = normalize_whitespace(value)
        if len(entry) > MAX_ENTRY_CHARS:
            raise Invalid(f"{field}: the entry {entry[:20]!r}... is {len(entry)} characters long; "
                          f"an entry may have at most {MAX_ENTRY_CHARS}")
        if entry and entry.casefold() not in {e.casefold() for e in out}:
            out.append(entry)
    if len(out) > MAX_ENTRIES:
        raise Invalid(f"{field} has {len(out)} entries; a field may have at most {MAX_ENTRIES}")
    return out


def load(raw: str | dict | None) -> dict:
    """A stored case file (JSON text or dict, '{}' for a story from before case files)
    with every field present; anything unreadable reads as empty."""
    import json

    try:
        data = json.loads(raw) if isinstance(raw, str) else (raw or {})
        return validate(data)
    except (ValueError, Invalid):
        return empty()


def updated(case: dict, changes: dict, auto=()) -> dict:
    """The case after the writer's changes ({field: entries}, only the fields given): a
    field whose entries changed joins "edited"; a field in auto goes back to autofill
    (run autofill next to fill it)."""
    case = validate(case)
    unknown = sorted(set(changes) - set(FIELDS)) + sorted(set(auto) - set(FIELDS))
    if unknown:
        raise Invalid(f"the case file has no field {unknown[0]!r}; its fields are: {', '.join(FIELDS)}")
    edited = set(case["edited"])
    for field, values in changes.items():
        entries = _entries(field, values)
        if entries != case[field]:
            case[field] = entries
            edited.add(field)
    edited -= set(auto)
    case["edited"] = [f for f in FIELDS if f in edited]
    return case


def autofill(case: dict, story: str | Sequence[str], lore=None) -> dict:
    """The case with every field the writer has not edited filled from the story (its
    text, or its passages: read once each, see extract) from scratch: an entry whose
    passage is gone goes too. lore: a batplots.story.lore.Lore, or None (then only the
    rules over the text and the writer's own names apply)."""
    case = load(case)
    found = extract(story, lore)
    for field in FIELDS:
        if field not in case["edited"]:
            case[field] = found[field]
    return case


def case_names(case: dict | None) -> set[str]:
    """The capitalised names in a case file (for the Writer: they count as the story's)."""
    out: set[str] = set()
    for field in FIELDS:
        for entry in (case or {}).get(field, ()):
            out |= nameslib.names(entry)
    return out

def extract(story: str | Sequence[str], lore=None) -> dict:
    """What the story (its text, or its passages in order) says for each field (the
    rules in this module's doc and below)."""
    passages = [story] if isinstance(story, str) else list(story)
    readings = [caseread.read_passage(p, lore) for p in passages]
    sentences = caseread.story_sentences([r.text for r in readings])
    facts = [caseread.facts(s) for s in sentences]
    lore_villains = _lore_villains(readings) if lore is not None and lore.villains else []
    alias_words = _villain_alias_words(lore_villains, lore)
    known = HEROES | _lore_words(lore) | alias_words
    skip = _initial_only(facts, known | _SEED_NAMES)
    phrases = [p for f in facts for p in f.phrases_for(skip)]
    not_people = known | {w for p in phrases if p.thing for w in p.words}
    targets = [t for f in facts for t in f.targets]
    deathtraps = [d for f in facts for d in f.deathtraps]
    henchmen = _henchmen(sentences, facts, lore, lore_villains, not_people, skip)
    hench_words = _words_of(henchmen)
    roles = {w for p in phrases if p.role for w in p.words} - hench_words
    excluded = not_people | skip | hench_words
    own = [w for f in facts for w in f.name_words if w not in excluded and not w.lower().startswith("bat")]
    own = _first_names(own, MAX_CASE_NAMES)
    own_villains = _own_villains(own, sentences, facts, _words_of(targets), bool(deathtraps), alias_words)
    full = _full_names(set(own_villains), phrases)
    villains = _by_first_mention(lore_villains + [full.get(w, w) for w in own_villains], sentences, facts)
    villain_words = _words_of(villains) | _words_of(lore_villains)
    henchmen = [h for h in henchmen if not set(nameslib.name_words(h)) & villain_words]
    people = not_people | villain_words | _words_of(henchmen)
    guests = _guests(phrases, people, roles)
    return {
        "villains": _limit(villains), "henchmen": _limit(henchmen), "guests": _limit(guests),
        "target": _limit(targets),
        "hideout": _limit([h for f in facts for h in f.hideouts]
                          + _villain_places(sentences, facts, _limit(villains))),
        "deathtrap": _limit(deathtraps),
    }


def _initial_only(facts, known: set[str]) -> set[str]:
    """Capitalised words the story has only at the start of a sentence ("Late at night",
    "Rich old Mrs. Gold", "Frost settles"): no name, unless the story also capitalises
    them mid-sentence or known (the heroes, the lore's cast, places, gadgets and the
    story's villains) has them."""
    first = {f.first_word for f in facts if f.first_word is not None}
    middle: set[str] = set()
    for f in facts:
        middle |= f.middle_words
    return first - middle - known - set(TITLES)


# The names the lore's seed lists know (villains and cast by every spelling), even where the
# shipped lore.json has no count for them ("Marsha, Queen of Diamonds, ...").
_SEED_NAMES = frozenset(w for section in (lorelib.VILLAINS, lorelib.CAST) for spellings in section.values()
                        for a in spellings for w in nameslib.names(a))


def _first_names(words: list[str], cap: int) -> list[str]:
    """words, only those among the first cap distinct ones (repeats kept)."""
    keep: set[str] = set()
    for w in words:
        if len(keep) == cap:
            break
        keep.add(w)
    return words if len(keep) < cap else [w for w in words if w in keep]


def _villain_alias_words(lore_villains: list[str], lore) -> set[str]:
    """The name words of every spelling of the story's lore villains ("Nabob" of King Tut)."""
    villains = getattr(lore, "villains", None) or {}
    aliases = [a for v in lore_villains for a in (villains.get(v) or {}).get("aliases", ())]
    return _words_of(lore_villains) | _words_of(aliases)


def _where(word: str, sentences: list[str], facts) -> tuple[int, int] | None:
    """(sentence, offset) of the story's first `word` as a whole word, or None."""
    for i, f in enumerate(facts):
        if word in f.tokens:
            found = next(caseread.occurrences(sentences[i], word), None)
            if found is not None:
                return i, found
    return None


def _names(sentence: str, word: str) -> bool:
    """Whether the sentence has word as a whole word."""
    return next(caseread.occurrences(sentence, word), None) is not None


def _by_first_mention(names: list[str], sentences: list[str], facts) -> list[str]:
    """names, the one the story names first first: the villain the story opens with leads.
    Not the most mentioned: a villain the model made up and repeated in every sentence
    ("Darth Vex ... Darth Vex") took the lead from the writer's own in 3 of 12 scripted
    stories (and the Writer then pushed the model's name)."""
    def first(name: str) -> tuple[int, int]:
        words = [w for w in nameslib.name_words(name) if w not in TITLES] or [name]
        return _where(words[-1], sentences, facts) or (len(sentences), 0)

    return sorted(names, key=first)


def _lore_words(lore) -> set[str]:
    """The name words of the lore's stock cast, recurring characters, places and gadgets."""
    if lore is None:
        return set()
    return set(lore.cast) | _words_of(set(lore.characters) | set(lore.places) | set(lore.gadgets))


def _lore_villains(readings) -> list[str]:
    """The lore's villains the passages name, the most mentioned first (ties: the first named)."""
    counts: Counter = Counter()
    first: dict[str, tuple[int, int]] = {}
    for i, reading in enumerate(readings):
        for name, n, offset in reading.villains:
            counts[name] += n
            first.setdefault(name, (i, offset))
    return sorted(counts, key=lambda n: (-counts[n], first[n]))


def _words_of(names) -> set[str]:
    return {w for name in names for w in nameslib.names(name)}


def _full_names(words: set[str], phrases) -> dict[str, str]:
    """For each word, the phrase the story calls it by most often ("Professor Nobody" for
    "Nobody"; ties: the longer)."""
    counts: dict[str, Counter] = {}
    for p in phrases:
        if not words.isdisjoint(p.words):
            for w in words.intersection(p.words):
                counts.setdefault(w, Counter())[p.text] += 1
    return {w: max(c, key=lambda t: (c[t], len(t))) for w, c in counts.items()}


def _own_villains(own: list[str], sentences: list[str], facts, not_villains: set[str], peril: bool,
                  lore_villain_words: set[str] = frozenset()) -> list[str]:
    """The writer's own names the story uses as villains: any called one outright
    ("villainous X", "X's henchmen", "X and his henchman", "the jewel thief X", "X, a
    crooked astronomer", "stolen by X", "X steals"); and the lead: in the first sentence
    up to no good (or where a hero is in a deathtrap) that has one of the writer's names,
    the one the story uses most, unless that sentence already names a villain (the lore's,
    lore_villain_words, or one called so). Not the most used name of the whole story: a
    name a later passage repeats ("Shard ... Shard", "Zorg steals") does not push the
    writer's villain aside. Never a name in not_villains (the story's loot) unless called a
    villain outright. With no villain at all and a hero in a deathtrap, the most used name."""
    if not own:
        return []
    counts = Counter(own)
    order = {w: i for i, w in enumerate(counts)}
    strong: set[str] = set()
    for f in facts:
        strong |= f.strong
    found = [w for w in counts if w in strong]
    candidates = {w for w in counts if w not in not_villains}
    for i, f in enumerate(facts):
        if not (f.villain_cue or (peril and f.peril_cue)):
            continue
        here = sorted((w for w in f.tokens.intersection(candidates) if _names(sentences[i], w)),
                      key=order.__getitem__)
        if here:
            if not set(f.name_words) & (set(found) | lore_villain_words):
                lead = max(here, key=lambda w: counts[w])
                return found if lead in found else [lead, *found]
            break
    if not found and not lore_villain_words and peril and candidates:  # a hero in a deathtrap: a villain
        return [max(sorted(candidates, key=order.__getitem__), key=lambda w: counts[w])]
    return found


def _henchmen(sentences: list[str], facts, lore, lore_villains: list[str], excluded: set[str],
              skip: set[str] = frozenset()) -> list[str]:
    """The lore's henchmen of the story's villains that the text names, then names right
    after "henchman", "moll", "gang", "assistant"... ("his henchmen Blot and Smudge",
    "Nobody's moll, Kitty Glitter") or just before one ("Shard, the Glassblower's
    henchman"), that are nobody else. Not a name before "and his henchman" (the boss)."""
    found = []
    villains = getattr(lore, "villains", None) or {}
    for villain in lore_villains:
        for man in (villains.get(villain) or {}).get("henchmen", ()):
            if any(_names(s, man) for s in sentences if man in s):
                found.append(man)
    for f in facts:
        if not f.hench_cue:
            continue
        accepted = False  # the phrase before was taken: "Blot and Smudge" lists one more
        for p in f.phrases_for(skip):
            if p.possessive or p.thing or excluded.intersection(p.words):
                accepted = False
                continue
            accepted = p.after_cue or (accepted and p.joined) or p.before_cue
            if accepted:
                found.append(p.text)
    return found


def _guests(phrases, people: set[str], roles: set[str] = frozenset()) -> list[str]:
    """The writer's own people who are no one else: a name with a title ("Mayor
    Linseed"), one with a guest's role (the curator, the heiress), or one who says,
    visits, arrives..."""
    found = []
    for p in phrases:
        if p.thing or people.intersection(p.words) or any(w.lower().startswith("bat") for w in p.words):
            continue
        if p.titled_or_verb or roles.intersection(p.words):
            found.append(p.guest)
    return found


def _villain_places(sentences: list[str], facts, villains: list[str]) -> list[str]:
    """"in the Glassblower's furnace room", "to the Shutterbug's darkroom": a place of a
    villain of the case file (a phrase ending in a PLACE_NOUNS word) is its hideout."""
    hits = []
    for villain in villains:
        words = nameslib.name_words(villain)
        word = words[-1] if words else villain
        for i, f in enumerate(facts):
            if word in f.tokens:
                hits += [(i, villains.index(villain), phrase) for phrase in _places_of(word, sentences[i])]
    return [phrase for _, _, phrase in sorted(hits, key=lambda h: (h[0], h[1]))]


@functools.lru_cache(maxsize=caseread.MEMO_CHARS // 100)
def _places_of(word: str, sentence: str) -> tuple[str, ...]:
    """The places of word's in the sentence ("in the Glassblower's furnace room")."""
    out = []
    for m in _place_pattern(word).finditer(sentence):
        phrase = clip(m.group(1))
        if phrase and phrase.lower() not in HIDEOUT_WORDS and _PLACE_END.search(phrase):
            out.append(phrase)
    return tuple(out)


_PLACE_END = re.compile(rf"(?:\b|-){PLACE_NOUNS}$", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _place_pattern(word: str) -> re.Pattern:
    return re.compile(rf"\b(?:in|at|inside|beneath|under|to|into)\s+(?:the\s+)?(?:[A-Z][\w.]*\s+)?"
                      rf"{re.escape(word)}['’]s?\s+" + NP)


def _limit(entries: list[str]) -> list[str]:
    """Distinct entries (one contained in another counts once), each clipped to
    MAX_ENTRY_CHARS at a word, at most MAX_ENTRIES."""
    out: list[str] = []
    for entry in entries:
        entry = normalize_whitespace(entry)
        if len(entry) > MAX_ENTRY_CHARS:
            entry = entry[:MAX_ENTRY_CHARS].rsplit(" ", 1)[0]
        low = entry.casefold()
        if not entry or any(low in e.casefold() for e in out):
            continue
        shorter = [i for i, e in enumerate(out) if e.casefold() in low]
        if shorter:  # "crown" found first, "crown jewels" next: keep the longer
            out[shorter[0]] = entry
            continue
        out.append(entry)
        if len(out) == MAX_ENTRIES:
            break
    return out


def outline(story: str | Sequence[str]) -> list[dict]:
    """The beats the story (its text, or its passages) has had, in order: [{beat, label}]
    (batplots.story.beats)."""
    from batplots.story import beats

    passages = [story] if isinstance(story, str) else list(story)
    sentences = caseread.story_sentences(passages)
    return [{"beat": b, "label": beats.BEAT_LABELS[b]} for b in beats.outline_of(sentences)]
