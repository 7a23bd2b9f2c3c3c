"""A story's case file: its villains, henchmen, guests, target or loot, hideout and deathtrap.

Pure functions over a dict {field: [short strings], "edited": [field names]}. `autofill`
fills every field the writer has not edited from the story's text, from scratch each
time (so an undone passage takes its entries with it), using the lore's villains and
henchmen and rules of thumb over the writer's own names (below). A field the writer
edited by hand is theirs: autofill never touches it. `case_names` gives the Writer the
case's names, which count as the story's names.
"""

from __future__ import annotations

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
Crown Vault Mint Gardens Garden Center Centre Laboratory Lab Lighthouse Opera Airport Docks Cathedral Church
Ball Fair Show Festival Gala Carnival Circus Parade Exchange Reserve Market Dinner Banquet Reservoir Bridge Dam
Ballroom Auditorium Fountain Casino""".split())
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
                       r"gang(?:sters?)?|assistants?|sidekicks?|cronies|minions?|lackeys?|stooges?)\b",
                       re.IGNORECASE)
PERSON_VERB = re.compile(r"^\s+(?:says|said|asks|asked|tells|told|arrives|arrived|visits|visited|is|was|has|had|"
                         r"meets|met|calls|called|agrees|refuses|wants|insists|explains|invites|hosts|hires|warns|"
                         r"reveals|decides|returns|gives|takes|thanks|screams|faints|falls|helps|owns|runs)\b")
_END = r"(?=[,.;:!?…\"”)]|\s+(?:from|at|in|on|into|onto|for|to|with|while|and|but|so|before|after|when|as|by|"
_END += r"which|who|that|where|until|because|then|is|are|was|were|has|have|will|would|can|without|through|"
_END += r"across|toward|towards|during|behind|beneath|above|over|under|near|past|around|along|unless|whenever|"
_END += r"heading|headed|leading|filling|slowly)\b|$)"
_NP = r"((?:(?:the|a|an|his|her|their|its)\s+)?[\w'’-]+(?:\s+[\w'’-]+){0,5}?)" + _END
LOOT_NOUN = (r"(?:diamonds?|jewels?|jewelry|jewellery|gems?|emeralds?|rubies|ruby|sapphires?|pearls?|crown|tiara|"
             r"dollars|bonds|treasure|gold|bullion|necklace|painting|statue|idol|vase|fortune|payroll|money|cash|"
             r"stamps?|"
             r"formula|scroll|egg|mummy|artifact|artefact|collection|ransom)")
_STEAL = (r"steal|steals|stealing|stole|stolen|swipe[sd]?|swiping|snatch(?:es|ed|ing)?|rob|robs|robbed|robbing|"
          r"loot|loots|looted|looting|pilfer\w*|rustl(?:e|es|ed|ing)|heist of|kidnap(?:s|ped|ping)?|"
          r"abduct(?:s|ed|ing)?")
_LOOT_DET = r"(?:the|a|an|one|two|three|five|ten|\$?\d[\d,.]*)"
TARGET_RULES = (re.compile(r"\b(?:" + _STEAL + r"|ransom(?:s|ed|ing)?(?!\s+(?:notes?|demands?|money)\b))\s+"
                           r"(?!(?:by|from|to|with|in|at|on|into|for)\b)" + _NP, re.IGNORECASE),
                # "the Flamingo Diamond", "one million dollars"; not "the jewel thief", "a ransom note"
                re.compile(r"\b(" + _LOOT_DET + r"\s+(?:(?!(?:the|a|an)\b)[\w'’-]+\s+){0,3}?" + LOOT_NOUN
                           + r"(?:\s+" + LOOT_NOUN + r")?)\b(?!\s+(?:thie(?:f|ves)|robber\w*|notes?|demands?|shop|"
                           r"store|case|box)\b)", re.IGNORECASE),
                # "her prize bicycle was stolen", "demanding a million dollars"
                re.compile(r"\b((?:the|a|an|his|her|their|its)\s+(?:[\w'’-]+\s+){0,3}?[\w'’-]+)\s+"
                           r"(?:was|were|is|are|"
                           r"has\s+been|have\s+been|had\s+been|gets|got)\s+(?:" + _STEAL + ")", re.IGNORECASE),
                re.compile(r"\b(?:demand\w*|ransom\s+of)\s+" + _NP, re.IGNORECASE))
HIDEOUT_RULES = (re.compile(r"\b(?:hide-?outs?|lairs?|headquarters|hq|den|hideaway|hiding place|base)\s+"
                            r"(?:is\s+|was\s+)?(?:at|in|inside|beneath|under|underneath|below|on|atop)\s+" + _NP,
                            re.IGNORECASE),
                 re.compile(r"\b(?:hides?\s+out|hid\s+out|hole[sd]?\s+up|holing\s+up|hiding\s+out)\s+"
                            r"(?:at|in|inside|beneath|under|on)\s+" + _NP, re.IGNORECASE),
                 # "the Gotham Observatory, where Professor Nebula ... hide out"
                 re.compile(r"\b((?:the|an?)\s+(?:[\w'’-]+\s+){0,3}?[\w'’-]+),\s+where\b[^.;!?]*?\b(?:hides?\s+out|"
                            r"hide\s+out|hole[sd]?\s+up|lairs?|hideouts?)\b", re.IGNORECASE))
DEATHTRAP_RULE = re.compile(r"\b((?:tied|strapped|chained|bound|glued|shackled)\s+(?:up\s+)?to|"
                            r"(?:trapped|sealed|locked|imprisoned)\s+(?:in|inside)|"
                            r"(?:dangl\w+|suspended|hung|hanging|hangs|lowered|lowering|lowers|lower)\s+(?:\w+ly\s+)?"
                            r"(?:over|above|into|toward|towards)|"
                            r"(?:lowered|dropped|thrown|tossed)\s+(?:\w+ly\s+)?into|"
                            r"(?:traps|seals|locks)\s+(?:the\s+)?(?:Dynamic\s+Duo|Batman\s+and\s+Robin|Batman|Robin|"
                            r"Batgirl|heroes)\s+(?:in|inside))\s+" + _NP, re.IGNORECASE)
# "a giant vat of molten glass", "a tank of hungry piranhas": the trap itself, where a hero is.
TRAP_NOUN_RULE = re.compile(r"\b(?:a|an|the)\s+((?:[\w-]+\s+){0,2}?(?:vat|tank|pit|pool|cauldron|tub|bath)\s+of\s+"
                            r"(?:[\w-]+\s+){0,2}?[\w-]+)" + _END, re.IGNORECASE)
DEATHTRAP_RULES = (DEATHTRAP_RULE, TRAP_NOUN_RULE)
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an|his|her|their|its)\s+", re.IGNORECASE)
_OPENERS = " \t\n\"'“‘([-—"
_FIRST_WORD = re.compile(r"[\s\"'“‘(\[—-]*([A-Z])")
# Words that say a name is a villain's: "the jewel thief Magpie", "Nebula, a crooked
# astronomer", "the Weatherman, a meteorologist gone wrong".
CRIME_WORDS = (r"(?:villain\w*|crook\w*|thie(?:f|ves)|criminal\w*|felon\w*|fiend\w*|mastermind|pirate\w*|"
               r"forger\w*|swindler\w*|outlaw\w*|bandit\w*|burglar\w*|kidnapper\w*|gangster\w*|mad(?:man|woman)|"
               r"menace|mad\s+scientist|gone\s+(?:wrong|bad)|turned\s+(?:thief|crook|criminal|villain|bad)|"
               r"wicked|sinister|evil|dastardly|diabolical|nefarious)")
# People of a story who are neither villain nor henchman: "the museum curator, Dr. Ames",
# "the sculptor Felicity Thorne", "Penny Farthing, a cyclist".
GUEST_ROLES = (r"(?:curators?|heir(?:ess)?|millionaire|billionaire|socialite|tycoon|magnate|philanthropist|"
               r"professor|scientist|inventor|sculptor|painter|artist|toymaker|florist|jewell?er|banker|collector|"
               r"cyclist|singer|soprano|tenor|actress|actor|star|dancer|ballerina|author|writer|poet|owner|"
               r"director|manager|guard|watchman|reporter|newscaster|editor|publisher|senator|ambassador|"
               r"diplomat|egyptologist|archaeologist|explorer|astronomer|friend|niece|nephew|cousin|victim|"
               r"hostage|guest|visitor|teacher|librarian|doctor|nurse|chef|butler|secretary|judge|champion|"
               r"ward|widow|bride|groom|prince|princess|duchess|duke|countess|count|maharajah|"
               r"sheikh|emir|shah|sultan|tourist|entertainer|showman|magician|scholar|expert|designer|"
               r"museum\s+curator|head|president|chairman|chairwoman)")
_DET = r"(?:the|a|an|his|her|their|its|my|our|gotham's|the\s+city's|the\s+show's|the\s+museum's)"


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
    lore_villains = _lore_villains(text, lore)
    known = HEROES | _lore_words(lore) | _villain_alias_words(lore_villains, lore)
    skip = _initial_only(sentences, known | _SEED_NAMES)
    phrases = [p for s in sentences for p in _phrases(s, skip)]
    not_people = known | {w for p in phrases if p["thing"] for w in p["words"]}
    targets = _matches(TARGET_RULES, sentences)
    deathtraps = _deathtraps(sentences)
    henchmen = _henchmen(text, sentences, lore, lore_villains, not_people, skip)
    hench_words = _words_of(henchmen)
    roles = _guest_roles(phrases) - hench_words
    own = [w for w in nameslib.name_words(text)
           if w not in not_people | skip | hench_words and not w.lower().startswith("bat")]
    own_villains = _own_villains(own, sentences, text, _words_of(targets), bool(deathtraps),
                                 _villain_alias_words(lore_villains, lore))
    villains = _by_first_mention(lore_villains + [_full_name(w, phrases) for w in own_villains], text)
    villain_words = _words_of(villains) | _words_of(lore_villains)
    henchmen = [h for h in henchmen if not set(nameslib.name_words(h)) & villain_words]
    people = not_people | villain_words | _words_of(henchmen)
    guests = _guests(phrases, people, roles)
    return {
        "villains": _limit(villains), "henchmen": _limit(henchmen), "guests": _limit(guests),
        "target": _limit(targets),
        "hideout": _limit(_matches(HIDEOUT_RULES, sentences) + _villain_places(sentences, villains)),
        "deathtrap": _limit(deathtraps),
    }


def _initial_only(sentences: list[str], known: set[str]) -> set[str]:
    """Capitalised words the story has only at the start of a sentence ("Late at night",
    "Rich old Mrs. Gold", "Frost settles"): no name, unless the story also capitalises
    them mid-sentence or known (the heroes, the lore's cast, places, gadgets and the
    story's villains) has them."""
    first, middle = set(), set()
    for sentence in sentences:
        opening = _FIRST_WORD.match(sentence)
        for m in nameslib.WORD.finditer(sentence):
            word = nameslib.POSSESSIVE.sub("", m.group(0))
            (first if opening and m.start() == opening.start(1) else middle).add(word)
    return first - middle - known - set(TITLES)


# The names the lore's seed lists know (villains and cast by every spelling), even where the
# shipped lore.json has no count for them ("Marsha, Queen of Diamonds, ...").
_SEED_NAMES = frozenset(w for section in (lorelib.VILLAINS, lorelib.CAST) for spellings in section.values()
                        for a in spellings for w in nameslib.names(a))


def _villain_alias_words(lore_villains: list[str], lore) -> set[str]:
    """The name words of every spelling of the story's lore villains ("Nabob" of King Tut)."""
    villains = getattr(lore, "villains", None) or {}
    aliases = [a for v in lore_villains for a in (villains.get(v) or {}).get("aliases", ())]
    return _words_of(lore_villains) | _words_of(aliases)


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


def _phrases(sentence: str, skip: set[str] = frozenset()) -> list[dict]:
    """The name phrases of a sentence ("Professor Nobody", "the Gotham Museum"):
    {text, words, possessive, thing, start, end}. Words in skip (sentence starts that are
    no names) are dropped from a phrase's front."""
    out = []
    for m in _PHRASE.finditer(sentence):
        tokens = m.group(0).split()
        if tokens and not sentence[:m.start()].strip(_OPENERS) and nameslib.POSSESSIVE.sub("", tokens[0]) in skip:
            tokens.pop(0)  # "Late" (at night), "Rich" (old Mrs. Gold)
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


def _own_villains(own: list[str], sentences: list[str], text: str, not_villains: set[str], peril: bool,
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
    counts: dict[str, int] = {}
    for w in own:
        counts[w] = counts.get(w, 0) + 1
    found = []
    for w in counts:
        name = re.escape(w)
        lead_in = rf"(?:(?:the|a|an)\s+)?(?:(?:{'|'.join(TITLES)})\.?\s+)?(?:[A-Z][\w'’-]*\s+)?"
        strong = re.search(
            rf"\b{name}['’]s?\s+(?:\w+\s+)?{_STRONG}\b|\bvillain\w*\s+(?:[\w-]+\s+){{0,3}}{name}\b|"
            rf"\b{name},?\s+(?:a|an|the)\s+(?:[\w'’-]+\s+){{0,4}}?{CRIME_WORDS}\b|"
            rf"\b{CRIME_WORDS}\s+(?:[a-z][\w-]*\s+){{0,2}}{lead_in}{name}\b|"
            rf"\b{name}\s+(?:and|&)\s+(?:his|her|their)\s+(?:\w+\s+)?{HENCH_CUE.pattern}|"
            rf"\b(?:stolen|kidnapped|abducted|robbed|snatched|swiped|captured|poisoned|hypnoti[sz]ed|framed|"
            rf"taken\s+(?:prisoner|hostage)|(?:note|message|riddle|clue|letter|threat|warning)\s+(?:from|left\s+by|"
            rf"sent\s+by))\s+(?:by\s+)?{lead_in}{name}\b|"
            rf"\b{name}\s+(?:steals|stole|kidnaps|kidnapped|robs|robbed|plots|schemes)\b", text)
        if strong:
            found.append(w)
    candidates = [w for w in counts if w not in not_villains]
    cued = [s for s in sentences if VILLAIN_CUE.search(s) or (peril and _HERO_NEAR.search(s) and
                                                                 DEATHTRAP_RULES[0].search(s))]
    for sentence in cued:
        here = [w for w in candidates if re.search(rf"\b{re.escape(w)}\b", sentence)]
        if here:
            if not nameslib.names(sentence) & (set(found) | lore_villain_words):
                lead = max(here, key=lambda w: counts[w])
                return found if lead in found else [lead, *found]
            break
    if not found and not lore_villain_words and peril and candidates:  # a hero in a deathtrap: a villain
        return [max(candidates, key=lambda w: counts[w])]
    return found


def _henchmen(text: str, sentences: list[str], lore, lore_villains: list[str], excluded: set[str],
              skip: set[str] = frozenset()) -> list[str]:
    """The lore's henchmen of the story's villains that the text names, then names right
    after "henchman", "moll", "gang", "assistant"... ("his henchmen Blot and Smudge",
    "Nobody's moll, Kitty Glitter") or just before one ("Shard, the Glassblower's
    henchman"), that are nobody else. Not a name before "and his henchman" (the boss)."""
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
        last_end = None
        for p in _phrases(sentence, skip):
            if p["possessive"] or p["thing"] or set(p["words"]) & excluded:
                last_end = None
                continue
            after = any(c.end() <= p["start"] and _AFTER_CUE.fullmatch(sentence[c.end():p["start"]]) for c in cues)
            listed = last_end is not None and _LIST_JOIN.fullmatch(sentence[last_end:p["start"]])
            before = any(p["end"] <= c.start() and _BEFORE_CUE.fullmatch(sentence[p["end"]:c.start()]) for c in cues)
            if after or listed or before:
                found.append(p["text"])
                last_end = p["end"]
            else:
                last_end = None
    return found


_AFTER_CUE = re.compile(r"\s*[,:]?\s*(?:(?:named|called)\s+)?(?:(?:the|a)\s+)?")
_LIST_JOIN = re.compile(r"\s*(?:,|,?\s+(?:and|&))\s*")
_BEFORE_CUE = re.compile(r"\s*,\s*(?:(?:the|a|an|his|her|their)\s+)?(?:[\w'’-]+\s+){0,2}")


def _guest_roles(phrases: list[dict]) -> set[str]:
    """The name words of people the story gives a guest's role ("the museum curator, Dr.
    Ames", "the sculptor Felicity Thorne", "Penny Farthing, a cyclist"), not a crooked one."""
    out: set[str] = set()
    for p in phrases:
        if p["thing"]:
            continue
        before = p["sentence"][:p["start"]]
        after = p["sentence"][p["end"]:]
        role_before = re.search(rf"\b{_DET}\s+((?:[\w'’-]+\s+){{0,3}}?){GUEST_ROLES},?\s*$", before, re.IGNORECASE)
        role_after = re.match(rf"\s*,\s*(?:the|a|an|his|her|their)\s+((?:[\w'’-]+\s+){{0,3}}?){GUEST_ROLES}\b",
                              after, re.IGNORECASE)
        for m in (role_before, role_after):
            if m and not re.search(rf"\b{CRIME_WORDS}\b", m.group(0), re.IGNORECASE):
                out |= set(p["words"])
    return out


def _guests(phrases: list[dict], people: set[str], roles: set[str] = frozenset()) -> list[str]:
    """The writer's own people who are no one else: a name with a title ("Mayor
    Linseed"), one with a guest's role (the curator, the heiress), or one who says,
    visits, arrives..."""
    found = []
    for p in phrases:
        if p["thing"] or set(p["words"]) & people or any(w.lower().startswith("bat") for w in p["words"]):
            continue
        tokens = p["text"].split()
        titled = [i for i, t in enumerate(tokens[:-1]) if t.rstrip(".") in TITLES]
        if titled and titled[0] and re.fullmatch(GUEST_ROLES, " ".join(tokens[:titled[0]]), re.IGNORECASE):
            tokens = tokens[titled[0]:]  # "Egyptologist Professor Osgood Ames"
        if titled or set(p["words"]) & roles or PERSON_VERB.match(p["sentence"][p["end"]:]):
            found.append(" ".join(tokens))
    return found


def _villain_places(sentences: list[str], villains: list[str]) -> list[str]:
    """"in the Glassblower's furnace room", "to the Shutterbug's darkroom": a place of the
    story's villain (a phrase ending in a PLACE_NOUNS word) is its hideout."""
    out = []
    for sentence in sentences:
        for villain in villains:
            words = nameslib.name_words(villain)
            word = re.escape(words[-1] if words else villain)
            for m in re.finditer(rf"\b(?:in|at|inside|beneath|under|to|into)\s+(?:the\s+)?(?:[A-Z][\w.]*\s+)?"
                                 rf"{word}['’]s?\s+" + _NP, sentence):
                phrase = _clip(m.group(1))
                if phrase and phrase.lower() not in _HIDEOUT_WORDS and re.search(
                        rf"(?:\b|-){PLACE_NOUNS}$", phrase, re.IGNORECASE):
                    out.append(phrase)
    return out


_HIDEOUT_WORDS = {"hideout", "hide-out", "lair", "den", "headquarters", "hq", "base"}
PLACE_NOUNS = (r"(?:\w*room|hideout|lair|den|headquarters|hq|base|nest|factory|warehouse|workshop|studio|kitchen|"
               r"cave|cavern|tower|mansion|castle|ship|boat|submarine|shop|store|office|laboratory|lab|garage|"
               r"basement|cellar|attic|penthouse|theater|theatre|hall|mill|plant|yard|barn|farm|house|palace|"
               r"pyramid|tomb|temple|museum|gallery|bakery|island|hotel|club|arena|rink|aviary|observatory|"
               r"greenhouse|hangar|dock|docks|pier|wharf|bunker|crypt|hideaway|headquarters|cabin|lighthouse)")


def _clip(phrase: str, article: bool = True) -> str:
    """A short noun phrase: at most PHRASE_WORDS words, its article dropped (unless not
    article); "" for a phrase that is no noun phrase (starts with a preposition, runs
    over a clause: "from the museum; glass without damaging anything else")."""
    phrase = normalize_whitespace(phrase).strip(" ,.;:!?\"'”’")
    if article:
        phrase = _LEADING_ARTICLE.sub("", phrase)
    if re.search(r"[;:!?\"“”()]", phrase) or re.match(_NOT_NP_START, phrase, re.IGNORECASE):
        return ""
    return " ".join(phrase.split()[:PHRASE_WORDS])


_NOT_NP_START = r"(?:from|by|to|with|without|in|at|on|into|for|of|and|but|so|while|when|as|that|which|who)\b"


def _matches(rules, sentences: list[str]) -> list[str]:
    """The phrases the rules find, in the order the story has them."""
    hits = []
    for i, sentence in enumerate(sentences):
        for rule in rules:
            for m in rule.finditer(sentence):
                phrase = _clip(m.group(1))
                if phrase:
                    hits.append(((i, m.start(1)), phrase))
    return [phrase for _, phrase in sorted(hits)]


_HEROES_IN_PERIL = re.compile(r"\b(?:Batman|Robin|Batgirl|Duo|Crusader|Wonder|heroes|hero)\b")
_HERO_NEAR = re.compile(r"\b(?:Batman|Robin|Batgirl|Alfred|Gordon|O'Hara|Duo|Crusader|Wonder|heroes|hero)\b")


def _deathtraps(sentences: list[str]) -> list[str]:
    """"tied to a giant candle", "dangling over a vat of acid", "a giant vat of molten glass":
    only where a hero is in peril."""
    out = []
    for sentence in sentences:
        if not _HERO_NEAR.search(sentence):
            continue
        hits = []
        for m in DEATHTRAP_RULE.finditer(sentence):
            verb = normalize_whitespace(m.group(1)).lower()
            verb = re.sub(r"^(trap|seal|lock)s\b.*?\b(in|inside)$",  # "traps the Duo inside"
                          lambda v: {"trap": "trapped"}.get(v[1], v[1] + "ed") + " " + v[2], verb)
            trap = _clip(m.group(2), article=False)
            if trap:
                hits.append((m.start(), f"{verb} {trap}".strip(" ,.;:!?")))
        for m in TRAP_NOUN_RULE.finditer(sentence) if _HEROES_IN_PERIL.search(sentence) else ():
            hits.append((m.start(1), _clip(m.group(1))))
        out += [h for _, h in sorted(hits) if h]
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

    return [{"beat": b, "label": beats.BEAT_LABELS[b]} for b in beats.outline(text)]
