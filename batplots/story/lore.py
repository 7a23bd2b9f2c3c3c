"""Lore: what the corpus knows about the show, as names and counts (no corpus text).

`write_lore` builds lore.json for an adapter from its corpus: every name with its
count (what the Writer reads: `Lore.counts`, `.vocabulary`, `.cast`), and the
show's recurring cast, villains (with henchmen and signature objects), places and
gadgets, each with its mention count and the episodes it occurs in, plus how many
corpus sentences play each beat (batplots.story.beats). Episodes are numbered by their
1-based position in the corpus (read_corpus order), which works for a scraped
corpus and a plain-text one alike.

The seed lists below say which names are villains, cast, places and gadgets and
which spellings mean the same one; every count, episode, henchman and object comes
from the corpus. A scraped corpus's infobox villains (Episode.villains) are villains
too, and credit their episodes even where the plot does not name them.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from batplots.story import names as nameslib

# A name the corpus uses at least this often is the show's stock cast (Batman, Gordon):
# kept in the Writer's ranking, but not biased.
CAST_MIN_COUNT = 5
LORE_FILE = "lore.json"

# Canonical name -> spellings that mean it (matched case-sensitively, whole words).
VILLAINS: dict[str, tuple[str, ...]] = {
    "Riddler": ("Riddler", "Prince of Puzzles", "Prince Of Puzzles", "Prince of Puzzlers", "Prince Of Puzzlers",
                "Count of Conundrums", "Count Of Conundrums"),
    "Joker": ("Joker", "Clown Prince of Crime", "Clown Prince"),
    "Penguin": ("Penguin", "Cobblepot", "Oswald Cobblepot", "Felonious Fowl"),
    "Catwoman": ("Catwoman", "Feline-ious Felon"),
    "Mr. Freeze": ("Mr. Freeze", "Mr Freeze", "Freeze", "Dr. Schivel", "Dr. Schimmel", "Frozen Fiend"),
    "Mad Hatter": ("Mad Hatter", "Hatter", "Jervis Tetch", "Tetch"),
    "King Tut": ("King Tut", "Tut", "Nabob of the Nile"),
    "Egghead": ("Egghead",),
    "Bookworm": ("Bookworm",),
    "False Face": ("False Face", "False-Face"),
    "Zelda": ("Zelda", "Zelda the Great"),
    "Ma Parker": ("Ma Parker", "Ma"),
    "Chandell": ("Chandell", "Fingers"),
    "Sandman": ("Sandman", "Dr. Somnambula"),
    "Siren": ("Siren", "Loreli Circe"),
    "Louie the Lilac": ("Louie the Lilac", "Louie The Lilac", "Louie"),
    "Shame": ("Shame",), "Archer": ("Archer",), "Black Widow": ("Black Widow",), "Minstrel": ("Minstrel",),
    "Puzzler": ("Puzzler",), "Clock King": ("Clock King",), "Marsha": ("Marsha",), "Olga": ("Olga",),
    "Lord Ffogg": ("Lord Ffogg", "Lord Marmaduke Ffogg"), "Nora Clavicle": ("Nora Clavicle",),
    "Mr. Zodiac": ("Mr. Zodiac",), "Dr. Cassandra": ("Dr. Cassandra",), "Minerva": ("Minerva",),
    "Lola Lasagne": ("Lola Lasagne",), "Colonel Gumm": ("Colonel Gumm",),
}
CAST: dict[str, tuple[str, ...]] = {
    "Batman": ("Batman", "Caped Crusader"), "Robin": ("Robin", "Boy Wonder"),
    "Bruce Wayne": ("Bruce Wayne", "Bruce"), "Dick Grayson": ("Dick Grayson", "Dick"),
    "Alfred": ("Alfred Pennyworth", "Alfred"), "Commissioner Gordon": ("Commissioner Gordon", "Gordon"),
    "Chief O'Hara": ("Chief O'Hara", "O'Hara"), "Aunt Harriet": ("Aunt Harriet", "Harriet"),
    "Batgirl": ("Batgirl",), "Barbara Gordon": ("Barbara Gordon", "Barbara"), "Warden Crichton": ("Crichton",),
    "Mayor Linseed": ("Linseed",),
}
# Hero -> the names of his (or her) secret identity, the full name first. The show's
# premise, which its plot summaries take for granted rather than state, so no corpus count
# can find it (the bible's identity rule; the status rule's crime-fighters).
IDENTITIES: dict[str, tuple[str, ...]] = {
    "Batman": ("Bruce Wayne", "Bruce"),
    "Robin": ("Dick Grayson", "Dick"),
    "Batgirl": ("Barbara Gordon", "Barbara"),
}
PLACES: dict[str, tuple[str, ...]] = {
    "Batcave": ("Batcave",), "Wayne Manor": ("Wayne Manor",),
    "Police Headquarters": ("Police Headquarters", "Police Headquarter", "Police HQ", "police headquarters",
                            "Gotham City Police Department", "Gordon's office", "commissioners office"),
    "Gotham City": ("Gotham City", "Gotham"), "City Hall": ("City Hall",),
}
# Names ending in one of these are Gotham venues ("the Gotham City National Bank").
VENUE_WORDS = ("Bank", "Museum", "Library", "Hall", "Hotel", "Factory", "Company", "Building", "Bridge", "Stadium",
               "Garden", "Pavilion", "Club", "Bookstore", "Studios", "Exchange", "Arena", "Park", "Penitentiary",
               "Pen", "Mint", "Hospital", "Opera Company", "Ranch", "Lumberyard", "Fair", "Harbor", "Plaza Hotel")
GADGETS: dict[str, tuple[str, ...]] = {
    "Batmobile": ("Batmobile",), "Batphone": ("Batphone", "Bat-phone", "red phone"),
    "Batpoles": ("Batpoles", "Batpole"), "Bat-computer": ("Bat-computer", "batcomputer", "Batcomputer"),
    "utility belt": ("utility belt", "utility belts"), "Batarang": ("Batarang", "baterrang"),
    "Batcycle": ("Batcycle",), "Batcopter": ("Batcopter",), "Batgirlcycle": ("Batgirlcycle",),
    "Batgas": ("Batgas", "Bat-gas"), "Batshield": ("Batshield",), "Batzooka": ("Batzooka",),
}
# Bat- words that are people, places, beats or jokes, not gadgets.
NOT_GADGETS = frozenset({"battle", "batter", "battery", "batterie", "batting", "bath", "bathe", "batman", "batgirl", "batcave", "batusi", "batfight", "batbreath", "batmusic", "batsinging",
                         "battime", "batchannel", "batbrella"})
BAT_WORD = re.compile(r"\b[Bb]at-?[a-z][A-Za-z]+\b")
HENCH_WORDS = re.compile(r"\b(?:henchm[ae]n|henchwoman|moll|accomplice|gang|cronies|minions|assistant|flunkies|"
                         r"mob|goons|cohorts|crew)\b")
_NAME = r"[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*"
HENCH_LIST = re.compile(rf",?\s+(?:named\s+|the\s+)?({_NAME}(?:(?:,\s*(?:and\s+)?|\s+and\s+){_NAME})*)")
HENCH_IS = re.compile(rf"({_NAME})\s+(?:is|was|(?:it\s+)?turns?\s+out\s+to\s+be)\s+(?:a\s+|the\s+)?[^,;]{{0,25}}['’]s\s+(?:\w+\s+)?$")
NAME_RUN = re.compile(r"[A-Z][\w'’.-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’-]*)*")
# A signature object is a noun: a word the corpus puts after a determiner somewhere ("his umbrella").
NOUN = re.compile(r"\b(?i:a|an|the|his|her|their|its|this|another)\s+([a-z][a-z-]{3,})\b")
WORD = re.compile(r"\b[a-z][a-z-]{3,}\b")
# Common words that are no signature object (the rest of the objects' scoring is IDF over villains).
STOP = frozenset("""
about after again against also along another anyone around arrive arrives away back batman become before begin
begins being believe believing between both bound brings called calls cannot catch caught clue clues comes
could crime crimes criminal decides demands deadly discover discovers does doing done down during each enter
escape escapes even every everyone finally find finds first free from further gets give gives going gotham
great hands have having head heads help henchman henchmen henchwoman here hide hideout himself hold holds into
itself just kidnap kidnaps knock knows later leads leave leaves left life like makes making manages meanwhile
more most much must named never next night only other over part plan plans plot police pretending priceless
real release returns reveal reveals rush same scheme sends sets show shows soon steal steals still such take
takes taking tells than that their them then there these they thinks this those through tries trying turns
under unaware until upon used uses using very villain wait want wants well were what when where which while
will with without work would your gang moll cronies minions accomplice assistant trap scene time plans
attempt attempts agrees arrives arrived escaped knocked last many named new next planning steal stolen stops
three utility fight quick asleep disguised whereabouts appearance idea
""".split())


@dataclass(frozen=True)
class Lore:
    """The corpus's names with counts (shipped beside the adapter as lore.json), and the
    show's cast, villains, places and gadgets: name -> {"count", "episodes", ...}."""

    counts: dict[str, int] = field(default_factory=dict)
    characters: dict[str, dict] = field(default_factory=dict)
    villains: dict[str, dict] = field(default_factory=dict)
    places: dict[str, dict] = field(default_factory=dict)
    gadgets: dict[str, dict] = field(default_factory=dict)
    beats: dict[str, int] = field(default_factory=dict)

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.counts)

    @property
    def cast(self) -> frozenset[str]:
        return frozenset(n for n, c in self.counts.items() if c >= CAST_MIN_COUNT)


# ---------------------------------------------------------------- finding names in text

def _pattern(aliases) -> re.Pattern:
    spelled = sorted({a for a in aliases if a}, key=len, reverse=True)
    body = "|".join(re.escape(a).replace("'", "['’]") for a in spelled)
    # Not inside a longer word or hyphenation ("Tut-lings"), not "Alfred Slye" for "Alfred".
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w]|-\w)(?!\s+(?:Slye|Manor|Foundation|Grason)\b)")


def name_pattern(aliases) -> re.Pattern:
    """The pattern that finds any of aliases as a name in text."""
    return _pattern(aliases)


def mentions(text: str, section: dict[str, dict]) -> Counter:
    """How often text names each entry of a lore section (its "aliases", else its name)."""
    out: Counter = Counter()
    for name, entry in section.items():
        n = len(_pattern(entry.get("aliases") or (name,)).findall(text))
        if n:
            out[name] = n
    return out


def _ordered(text: str, section: dict[str, dict]) -> list[str]:
    found = mentions(text, section)
    first = {name: _pattern(section[name].get("aliases") or (name,)).search(text).start() for name in found}
    return sorted(found, key=lambda n: (-found[n], first[n]))


def villains_in(text: str, lore: Lore) -> list[str]:
    """The lore's villains that text names, the most mentioned first (ties: the first named)."""
    return _ordered(text, lore.villains)


def characters_in(text: str, lore: Lore) -> list[str]:
    """The recurring cast that text names, the most mentioned first."""
    return _ordered(text, lore.characters)


# ---------------------------------------------------------------- building lore from a corpus

def _entry(aliases, plots: list[str], extra_episodes=()) -> dict:
    pattern = _pattern(aliases)
    per = [len(pattern.findall(p)) for p in plots]
    episodes = sorted({i + 1 for i, n in enumerate(per) if n} | set(extra_episodes))
    return {"count": sum(per), "episodes": episodes, "aliases": sorted(set(aliases), key=lambda a: (-len(a), a))}


def _gadget_key(word: str) -> str:
    return word.lower().replace("-", "").removesuffix("s")


def _discovered_gadgets(plots: list[str]) -> dict[str, tuple[str, ...]]:
    """Bat- coinages of the corpus ("Batzooka", "Bat-o-stat"), spellings grouped."""
    seeded = {_gadget_key(a) for aliases in GADGETS.values() for a in aliases}
    spellings: dict[str, Counter] = {}
    for plot in plots:
        for word in BAT_WORD.findall(plot):
            key = _gadget_key(word)
            if key not in NOT_GADGETS and key not in seeded and not key.startswith("batman"):
                spellings.setdefault(key, Counter())[word] += 1
    return {c.most_common(1)[0][0]: tuple(c) for c in spellings.values()}


def _discovered_places(plots: list[str]) -> dict[str, tuple[str, ...]]:
    seeded = {a for aliases in PLACES.values() for a in aliases}
    found: dict[str, tuple[str, ...]] = {}
    venue = re.compile(rf"\b(?:{'|'.join(VENUE_WORDS)})$")
    for plot in plots:
        for run in NAME_RUN.findall(plot):
            words = run.split()
            while words and (words[0] in nameslib.NOT_NAMES or words[0].islower()):
                words = words[1:]  # "The Gotham City Bank" -> "Gotham City Bank"
            name = " ".join(words).replace("’", "'")
            if len(words) >= 2 and venue.search(name) and name not in seeded:
                found[name] = (name,)
    return found


def _henchmen(plots: list[str], villain_pattern: re.Pattern, episodes: list[int], known: set[str],
              any_villain: re.Pattern, lead: set[int] = frozenset()) -> list[str]:
    """Names a sentence of the villain's episodes calls his/her henchmen, moll, accomplice or gang:
    sentences that name the villain, or name no villain in an episode the villain leads."""
    from batplots.text import split_sentences

    found: Counter = Counter()
    for ep in episodes:
        for sentence in split_sentences(plots[ep - 1]):
            if not villain_pattern.search(sentence) and (ep not in lead or any_villain.search(sentence)):
                continue
            for match in HENCH_WORDS.finditer(sentence):
                parts = []
                listed = HENCH_LIST.match(sentence, match.end())  # "henchmen, Chill, Nippy and Mo"
                if listed:
                    parts += re.split(r",\s*(?:and\s+)?|\s+and\s+", listed.group(1))
                before = sentence[max(0, match.start() - 60):match.start()]
                gang = re.search(r"['’]s\s+((?:[A-Z][\w-]*\s+)+)$", before)  # "the Joker's Bad Pennies gang"
                if gang:
                    parts.append(gang.group(1))
                named = HENCH_IS.search(before)  # "Glacia Glaze is Mr. Freeze's accomplice"
                if named:
                    parts.append(named.group(1))
                for part in parts:
                    words = part.split()
                    while words and (words[0] in nameslib.NOT_NAMES or words[0].islower()):
                        words = words[1:]
                    name = " ".join(words).strip(",.").removesuffix("'s").removesuffix("’s")
                    if len(name) > 1 and name not in known and not villain_pattern.search(name):
                        found[name] += 1
    return [n for n, _ in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))]


def _objects(villain_text: dict[str, str], nouns: set[str], top: int = 5) -> dict[str, list[str]]:
    """Each villain's signature words: lower-case words frequent in the sentences naming the
    villain and rare in other villains' sentences (tf x idf over villains)."""
    bags = {}
    for name, text in villain_text.items():
        words = Counter(w for w in WORD.findall(text) if w in nouns and w not in STOP and not w.endswith("ly"))
        for w in list(words):  # "umbrellas" -> "umbrella" where both occur
            if w.endswith("s") and w[:-1] in words:
                words[w[:-1]] += words.pop(w)
        bags[name] = words
    df = Counter(w for words in bags.values() for w in words)
    n = len(bags)
    out = {}
    for name, words in bags.items():
        scored = [(c * math.log((n + 1) / df[w]), w) for w, c in words.items() if c >= 2]
        out[name] = [w for _, w in sorted(scored, key=lambda sw: (-sw[0], sw[1]))[:top]]
    return out


def build_lore(episodes) -> Lore:
    """Lore from a corpus's episodes (corpus.Episode: .plot, and .villains when scraped)."""
    from batplots.story import beats as beatslib
    from batplots.text import split_sentences

    plots = [ep.plot for ep in episodes]
    text = "\n\n".join(plots)
    counts = lore_from_text(text).counts
    infobox: dict[str, set[int]] = {}
    for i, ep in enumerate(episodes):
        for v in getattr(ep, "villains", None) or []:
            infobox.setdefault(_canonical_villain(v), set()).add(i + 1)
    seeds = dict(VILLAINS)
    for v in infobox:
        seeds.setdefault(v, (v,))
    villains = {}
    for name, aliases in seeds.items():
        entry = _entry(aliases, plots, infobox.get(name, ()))
        if entry["count"] or entry["episodes"]:
            villains[name] = entry
    characters = {n: e for n, a in CAST.items() if (e := _entry(a, plots))["count"]}
    places = {n: e for n, a in {**PLACES, **_discovered_places(plots)}.items() if (e := _entry(a, plots))["count"]}
    gadgets = {n: e for n, a in {**GADGETS, **_discovered_gadgets(plots)}.items() if (e := _entry(a, plots))["count"]}
    known = {a for section in (villains, characters, places, gadgets) for e in section.values() for a in e["aliases"]}
    known |= {w for section in (characters, places, gadgets) for n in section for w in n.split()}
    any_villain = _pattern([a for e in villains.values() for a in e["aliases"]])
    any_person = _pattern([a for section in (villains, characters) for e in section.values() for a in e["aliases"]])
    leads: dict[str, set[int]] = {}
    for i, plot in enumerate(plots):
        found = mentions(plot, villains)
        if found:
            leads.setdefault(found.most_common(1)[0][0], set()).add(i + 1)
    villain_text = {}
    for name, entry in villains.items():
        pattern = _pattern(entry["aliases"])
        entry["henchmen"] = _henchmen(plots, pattern, entry["episodes"], known, any_villain, leads.get(name, set()))
        villain_text[name] = " ".join(s for ep in entry["episodes"] for s in split_sentences(plots[ep - 1])
                                      if pattern.search(s))
    nouns = {w for w in NOUN.findall(text)} | {w + "s" for w in NOUN.findall(text)}
    for name, objects in _objects(villain_text, nouns).items():
        villains[name]["objects"] = objects
    sentences = [s for plot in plots for s in split_sentences(plot)]
    for section in (villains, characters):  # he or she, as the corpus's own pronouns say
        for entry in section.values():
            pronoun = pronoun_of(_pattern(entry["aliases"]), sentences, any_person)
            if pronoun:
                entry["pronoun"] = pronoun
    by_count = lambda section: dict(sorted(section.items(), key=lambda kv: (-kv[1]["count"], kv[0])))  # noqa: E731
    beats = beatslib.beat_counts(plots)
    return Lore(counts, by_count(characters), by_count(villains), by_count(places), by_count(gadgets), beats)


# A character's pronoun needs this many sentences saying it, and this many times more
# than the other: Catwoman is "she" in the corpus, the Joker "he".
PRONOUN_MIN = 2
PRONOUN_RATIO = 3
HE = re.compile(r"\b(?:he|him|his|himself)\b", re.IGNORECASE)
SHE = re.compile(r"\b(?:she|her|hers|herself)\b", re.IGNORECASE)


def pronoun_in(sentence: str, start: int) -> str | None:
    """"he" or "she": the first personal pronoun after position start in sentence."""
    he, she = HE.search(sentence, start), SHE.search(sentence, start)
    if he and (not she or he.start() < she.start()):
        return "he"
    return "she" if she else None


def pronoun_of(pattern: re.Pattern, sentences, others: re.Pattern | None = None,
               at_least: int = PRONOUN_MIN) -> str | None:
    """"he" or "she" for the character pattern names, by the first pronoun after the name
    in each of the sentences that names no one else (others: every character's pattern);
    None when the sentences do not say clearly."""
    votes = Counter()
    for sentence in sentences:
        m = pattern.search(sentence)
        if not m or (others is not None and {x.group(0) for x in others.finditer(sentence)} - {m.group(0)}):
            continue
        pronoun = pronoun_in(sentence, m.end())
        if pronoun:
            votes[pronoun] += 1
    (top, n), rest = (votes.most_common(1) or [(None, 0)])[0], sum(votes.values())
    if top and n >= at_least and n >= PRONOUN_RATIO * (rest - n):
        return top
    return None


def _canonical_villain(name: str) -> str:
    clean = re.sub(r"^(?:The|the)\s+", "", name.strip())
    for canonical, aliases in VILLAINS.items():
        if clean == canonical or clean in aliases:
            return canonical
    return clean


# ---------------------------------------------------------------- lore.json

def load_lore(adapter_dir: Path | None) -> Lore:
    """The adapter's lore.json, or an empty Lore (no adapter, or none shipped). Reads the
    old format too ({"corpus_sha256", "names"}), and skips a section that is malformed."""
    if adapter_dir is None:
        return Lore()
    try:
        data = json.loads((Path(adapter_dir) / LORE_FILE).read_text(encoding="utf-8"))
        counts = {str(k): int(v) for k, v in data["names"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Lore()

    def section(key: str) -> dict[str, dict]:
        value = data.get(key)
        if not isinstance(value, dict):
            return {}
        return {str(k): v for k, v in value.items() if isinstance(v, dict)}

    beats = data.get("beats") if isinstance(data.get("beats"), dict) else {}
    try:
        beats = {str(k): int(v) for k, v in beats.items()}
    except (TypeError, ValueError):
        beats = {}
    return Lore(counts, section("cast"), section("villains"), section("places"), section("gadgets"), beats)


def lore_from_text(text: str) -> Lore:
    """A Lore of text's names and their counts (no sections)."""
    counts: dict[str, int] = {}
    for word in nameslib.name_words(text):
        counts[word] = counts.get(word, 0) + 1
    return Lore(counts)


def lore_to_json(lore: Lore, corpus_sha256: str) -> dict:
    ordered = dict(sorted(lore.counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"corpus_sha256": corpus_sha256, "names": ordered, "cast": lore.characters, "villains": lore.villains,
            "places": lore.places, "gadgets": lore.gadgets, "beats": lore.beats}


def write_lore(corpus_path: Path, out_dir: Path) -> Path:
    """lore.json for an adapter trained on corpus_path: names, counts and episode numbers, no text."""
    from batplots.corpus.episodes import corpus_sha256, read_corpus
    from batplots.files import atomic_write_text

    lore = build_lore(read_corpus(corpus_path))
    path = Path(out_dir) / LORE_FILE
    atomic_write_text(path, json.dumps(lore_to_json(lore, corpus_sha256(corpus_path)), indent=1,
                                       ensure_ascii=False) + "\n")
    return path
