"""A story's case file: its villains, henchmen, guests, target or loot, hideout and deathtrap.

Pure functions over a dict {field: [short strings], "edited": [field names]}. `autofill`
fills every field the writer has not edited from the story's text, from scratch each
time (so an undone passage takes its entries with it), using the lore's villains and
henchmen and rules of thumb over the writer's own names (below). A field the writer
edited by hand is theirs: autofill never touches it. `case_names` gives the Writer the
case's names, which count as the story's names.
"""

from __future__ import annotations

import functools
import re

from batplots.story import lore as lorelib
from batplots.story import names as nameslib
from batplots.story.rules import Invalid, check_characters
from batplots.text import normalize_whitespace, split_sentences

FIELDS = ("villains", "henchmen", "guests", "target", "hideout", "deathtrap")
FIELD_LABELS = {"villains": "Villains", "henchmen": "Henchmen", "guests": "Guests", "target": "Target or loot",
                "hideout": "Hideout", "deathtrap": "Deathtrap"}
# Named limits, quoted by the API's errors.
MAX_ENTRIES = 8  # entries in one field
MAX_ENTRY_CHARS = 80  # characters in one entry
PHRASE_WORDS = 6  # words of a target, hideout or deathtrap phrase autofill keeps

# Never a villain, henchman or guest: the heroes and their kit (the lore's stock cast
# counts too, when there is a lore). Words starting with "Bat" are the show's coinages.
HEROES = frozenset("""Batman Robin Batgirl Alfred Gordon O'Hara Bruce Wayne Dick Grayson Harriet Cooper Barbara
Gotham City Manor Batcave Batmobile Batphone Batcopter Batboat Batcomputer Batpoles Police""".split())
TITLES = ("Mr", "Mrs", "Ms", "Miss", "Dr", "Doctor", "Professor", "Madame", "Lady", "Lord", "Sir", "King", "Queen",
          "Captain", "Colonel", "General", "Count", "Countess", "Baron", "Duke", "Princess", "Prince", "Senator",
          "Judge", "Mayor", "Uncle", "Aunt", "Chief", "Inspector", "Master")
# A name phrase ending in one of these is a place or a thing, not a person.
THING_NOUNS = frozenset("""Museum Bank Tower Building Hall Park Street Avenue Gallery Library Mill Factory Plant
Hotel Club Theater Theatre Zoo Station Harbor Harbour Island Pier Square Palace Castle Observatory Planetarium
Warehouse Company Corporation Institute University College School Hospital Prison Penitentiary Exhibition
Exposition Stadium Arena Store Shop Studio Estate Mansion Headquarters Diamond Ruby Emerald Sapphire Pearl Jewels
Crown Vault Mint Gardens Garden Center Centre Laboratory Lab Lighthouse Opera Airport Docks Cathedral Church""".split())
_CAP = r"[A-Z][A-Za-z]*(?:[-'’][A-Za-z]+)*(?:['’]s?)?"
_PHRASE = re.compile(rf"(?:\b(?:{'|'.join(TITLES)})\.?\s+)?{_CAP}(?:[ \t]+{_CAP})*")
# A sentence that says someone is up to no good.
VILLAIN_CUE = re.compile(r"\b(?:villain\w*|criminal\w*|crook\w*|mastermind|fiend\w*|evil|sinister|diabolical|"
                         r"dastardly|arch-?\w+|steal\w*|stole\w*|rob|robs|robbed|robber\w*|heist|kidnap\w*|"
                         r"plot\w*|scheme\w*|hench\w+|gang\w*|moll|lair|hide-?out|hides?\s+out|holed\s+up|loot\w*|"
                         r"ransom\w*|crime\w*|trap\w*|"
                         # the show's villains' own deeds: poisoners, forgers, storm-makers, pirates
                         r"poison\w*|forg(?:e|es|ed|er|ery|ing)|rigs?|rigged|vanish\w*|disappear\w*|"
                         r"takes?\s+over|took\s+over|bur(?:y|ies|ied)|sabotag\w*|swindl\w*|blackmail\w*|"
                         r"extort\w*|counterfeit\w*|smuggl\w*|raid\w*|menac\w*|terroriz\w*|threat\w*|"
                         r"pirate\w*|army|armies|hypnoti\w*|controls?\s+people|empties|empty\s+the|slumber|to\s+sleep)\b",
                         re.IGNORECASE)
# X is surely the villain: "X's henchmen", "villainous X", "X steals".
_STRONG = r"(?:hench\w+|gang|moll|lair|hide-?out|scheme|plot|loot)"
HENCH_CUE = re.compile(r"\b(?:hench(?:man|men|woman|women|person|people)|molls?|goons?|thugs?|accomplices?|"
                       r"gang(?:sters?)?)\b", re.IGNORECASE)
PERSON_VERB = re.compile(r"^\s+(?:says|said|asks|asked|tells|told|arrives|arrived|visits|visited|is|was|has|had|"
                         r"meets|met|calls|called|agrees|refuses|wants|insists|explains|invites|hosts|hires|warns|"
                         r"reveals|decides|returns|gives|takes|thanks|screams|faints|falls|helps|owns|runs)\b")
_END = r"(?=[,.;:!?…\"”)]|\s+(?:from|at|in|on|into|onto|for|to|with|while|and|but|so|before|after|when|as|by|"
_END += r"which|who|that|where|until|because|then|is|are|was|were|has|have|will|would|can)\b|$)"
_NP = r"((?:(?:the|a|an|his|her|their|its)\s+)?[\w'’-]+(?:\s+[\w'’-]+){0,5}?)" + _END
LOOT_NOUN = (r"(?:diamonds?|jewels?|jewelry|jewellery|gems?|emeralds?|rubies|ruby|sapphires?|pearls?|crown|tiara|"
             r"treasure|gold|bullion|necklace|painting|statue|idol|vase|fortune|payroll|money|cash|stamps?|"
             r"formula|scroll|egg|mummy|artifact|artefact|collection|ransom)")
TARGET_RULES = (re.compile(r"\b(?:steal|steals|stealing|stole|stolen|swipe[sd]?|swiping|snatch(?:es|ed|ing)?|"
                           r"rob|robs|robbed|robbing|loot|loots|looted|looting|pilfer\w*|heist of|"
                           r"kidnap(?:s|ped|ping)?|ransom(?:s|ed|ing)?)\s+" + _NP, re.IGNORECASE),
                re.compile(r"\b((?:the|a|an)\s+(?:(?!(?:the|a|an)\b)[\w'’-]+\s+){0,3}?" + LOOT_NOUN
                           + r"(?:\s+" + LOOT_NOUN + r")?)\b", re.IGNORECASE))
HIDEOUT_RULES = (re.compile(r"\b(?:hide-?outs?|lairs?|headquarters|hq|den|hideaway|hiding place|base)\s+"
                            r"(?:is\s+|was\s+)?(?:at|in|inside|beneath|under|underneath|below|on|atop)\s+" + _NP,
                            re.IGNORECASE),
                 re.compile(r"\b(?:hides?\s+out|hid\s+out|holed\s+up|holes\s+up|hiding\s+out)\s+"
                            r"(?:at|in|inside|beneath|under|on)\s+" + _NP, re.IGNORECASE))
DEATHTRAP_RULE = re.compile(r"\b((?:tied|strapped|chained|bound|glued|shackled)\s+(?:up\s+)?to|"
                            r"(?:trapped|sealed|locked|imprisoned)\s+(?:in|inside)|"
                            r"(?:dangl\w+|suspended|hung|hanging|hangs|lowered)\s+(?:over|above|into)|"
                            r"(?:lowered|dropped|thrown|tossed)\s+into)\s+" + _NP, re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


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


def autofill(case: dict, story_text: str, lore=None) -> dict:
    """The case with every field the writer has not edited filled from story_text (from
    scratch: an entry whose passage is gone goes too). lore: a batplots.story.lore.Lore, or
    None (then only the rules over the text and the writer's own names apply)."""
    case = load(case)
    found = extract(story_text, lore)
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


def extract(text: str, lore=None) -> dict:
    """What the text says for each field (the rules in this module's doc and below)."""
    sentences = split_sentences(text) if text.strip() else []
    phrases = [p for s in sentences for p in _phrases(s)]
    lore_villains = _lore_villains(text, lore)
    not_people = (HEROES | _lore_words(lore) | _words_of(lore_villains)
                  | {w for p in phrases if p["thing"] for w in p["words"]})
    own = [w for w in nameslib.name_words(text) if w not in not_people and not w.lower().startswith("bat")]
    villains = _by_first_mention(
        lore_villains + [_full_name(w, phrases) for w in _own_villains(own, sentences, text)], text)
    villain_words = _words_of(villains) | _words_of(lore_villains)
    henchmen = _henchmen(text, sentences, lore, lore_villains, not_people | villain_words)
    people = not_people | villain_words | _words_of(henchmen)
    guests = _guests(phrases, people)
    return {
        "villains": _limit(villains), "henchmen": _limit(henchmen), "guests": _limit(guests),
        "target": _limit(_matches(TARGET_RULES, sentences)),
        "hideout": _limit(_matches(HIDEOUT_RULES, sentences)),
        "deathtrap": _limit(_deathtraps(sentences)),
    }


def _by_first_mention(names: list[str], text: str) -> list[str]:
    """names, the one the text names first first: the villain the story opens with leads.
    Not the most mentioned: a villain the model made up and repeated in every sentence
    ("Darth Vex ... Darth Vex") took the lead from the writer's own in 3 of 12 scripted
    stories (and the Writer then pushed the model's name)."""
    def first(name: str) -> int:
        words = [w for w in nameslib.name_words(name) if w not in TITLES] or [name]
        found = re.search(rf"\b{re.escape(words[-1])}\b", text)
        return found.start() if found else len(text)

    return sorted(names, key=first)


def _lore_words(lore) -> set[str]:
    """The name words of the lore's stock cast, recurring characters, places and gadgets."""
    if lore is None:
        return set()
    return set(lore.cast) | _words_of(set(lore.characters) | set(lore.places) | set(lore.gadgets))


def _lore_villains(text: str, lore) -> list[str]:
    return lorelib.villains_in(text, lore) if lore is not None and lore.villains else []


def _words_of(names) -> set[str]:
    return {w for name in names for w in nameslib.names(name)}


def _phrases(sentence: str) -> list[dict]:
    """The name phrases of a sentence ("Professor Nobody", "the Gotham Museum"):
    {text, words, possessive, thing, start, end}."""
    out = []
    for m in _PHRASE.finditer(sentence):
        tokens = m.group(0).split()
        while tokens and tokens[0].rstrip(".") in nameslib.NOT_NAMES and tokens[0].rstrip(".") not in TITLES:
            tokens.pop(0)  # "Meanwhile Batman", "The Riddler"
        if not tokens:
            continue
        possessive = bool(re.search(r"['’]s?$", tokens[-1]))
        tokens[-1] = re.sub(r"['’]s?$", "", tokens[-1])
        words = nameslib.name_words(" ".join(tokens))
        if words:
            out.append({"text": " ".join(tokens), "words": words, "possessive": possessive,
                        "thing": tokens[-1] in THING_NOUNS, "start": m.start(), "end": m.end(), "sentence": sentence})
    return out


def _full_name(word: str, phrases: list[dict]) -> str:
    """The phrase the story calls a name by most often ("Professor Nobody" for "Nobody")."""
    counts: dict[str, int] = {}
    for p in phrases:
        if word in p["words"]:
            counts[p["text"]] = counts.get(p["text"], 0) + 1
    return max(counts, key=lambda t: (counts[t], len(t))) if counts else word


def _own_villains(own: list[str], sentences: list[str], text: str) -> list[str]:
    """The writer's own names the story uses as villains: the one it uses most, when a
    sentence naming it is up to no good, and any called one outright ("villainous X",
    "X's henchmen", "X steals")."""
    if not own:
        return []
    counts: dict[str, int] = {}
    for w in own:
        counts[w] = counts.get(w, 0) + 1
    lead = max(counts, key=lambda w: counts[w])
    cued_names = {n for s in sentences if VILLAIN_CUE.search(s) for n in nameslib.names(s)}
    found = []
    for w in counts:
        name = re.escape(w)
        strong = re.search(rf"\b{name}['’]s?\s+(?:\w+\s+)?{_STRONG}\b|\bvillain\w*\s+(?:\w+\s+)?{name}\b|"
                           rf"\b{name},?\s+(?:a|an|the)\s+(?:\w+\s+){{0,3}}villain|"
                           rf"\b{name}\s+(?:steals|stole|kidnaps|kidnapped|robs|robbed|plots|schemes)\b", text)
        cued = w in cued_names
        if strong or (w == lead and cued):
            found.append(w)
    return found


def _henchmen(text: str, sentences: list[str], lore, lore_villains: list[str], excluded: set[str]) -> list[str]:
    """The lore's henchmen of the story's villains that the text names, then names close
    to "henchman", "moll", "gang"... that are nobody else."""
    found = []
    villains = getattr(lore, "villains", None) or {}
    for villain in lore_villains:
        for man in (villains.get(villain) or {}).get("henchmen", ()):
            if re.search(rf"\b{re.escape(man)}\b", text):
                found.append(man)
    for sentence in sentences:
        cues = list(HENCH_CUE.finditer(sentence))
        if not cues:
            continue
        for p in _phrases(sentence):
            if p["possessive"] or p["thing"] or set(p["words"]) & excluded:
                continue
            near = any(len(sentence[min(p["end"], c.end()):max(p["start"], c.start())].split()) <= 4 for c in cues)
            if near:
                found.append(p["text"])
    return found


def _guests(phrases: list[dict], people: set[str]) -> list[str]:
    """The writer's own people who are no one else: a name with a title ("Mayor
    Linseed"), or one who says, visits, arrives..."""
    found = []
    for p in phrases:
        if p["thing"] or set(p["words"]) & people or any(w.lower().startswith("bat") for w in p["words"]):
            continue
        titled = p["text"].split()[0].rstrip(".") in TITLES
        if titled or PERSON_VERB.match(p["sentence"][p["end"]:]):
            found.append(p["text"])
    return found


def _clip(phrase: str) -> str:
    phrase = _LEADING_ARTICLE.sub("", normalize_whitespace(phrase).strip(" ,.;:!?\"'”’"))
    return " ".join(phrase.split()[:PHRASE_WORDS])


def _matches(rules, sentences: list[str]) -> list[str]:
    """The phrases the rules find, in the order the story has them."""
    hits = []
    for i, sentence in enumerate(sentences):
        for rule in rules:
            for m in rule.finditer(sentence):
                hits.append(((i, m.start(1)), _clip(m.group(1))))
    return [phrase for _, phrase in sorted(hits)]


_HERO_NEAR = re.compile(r"\b(?:Batman|Robin|Batgirl|Alfred|Gordon|O'Hara|Duo|Crusader|Wonder|heroes|hero)\b")


def _deathtraps(sentences: list[str]) -> list[str]:
    """"tied to a giant candle", "dangling over a vat of acid": only where a hero is in peril."""
    out = []
    for sentence in sentences:
        if not _HERO_NEAR.search(sentence):
            continue
        for m in DEATHTRAP_RULE.finditer(sentence):
            verb = normalize_whitespace(m.group(1)).lower()
            out.append(f"{verb} {' '.join(normalize_whitespace(m.group(2)).split()[:PHRASE_WORDS])}".strip(" ,.;:!?"))
    return out


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


def outline(text: str) -> list[dict]:
    """The beats the story has had, in order: [{beat, label}] (batplots.story.beats)."""
    from batplots.story import beats

    return [{"beat": b, "label": beats.BEAT_LABELS[b]} for b in _beats(text)]


@functools.lru_cache(maxsize=64)  # a story is read again right after each change
def _beats(text: str) -> tuple[str, ...]:
    from batplots.story import beats

    return tuple(beats.outline(text)) if text.strip() else ()
