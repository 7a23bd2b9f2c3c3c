"""The show's bible, checked: rules a model sentence must not break. Pure functions.

Read blind, every passage of the product contradicted the opening or the show: the
wrong villain walked in, Bruce Wayne stood beside Batman, an invented "Batwing" or
"Batplasma" took over, a sentence ended on "have been .". A Bible is built once per
passage from the story (what the writer set up), the case file's villains and the
lore (what the corpus knows), and `breaks(sentence)` names each rule the sentence
breaks. The Writer resamples such a sentence like a mangled name, and its ranking
counts what is left (batplots.story.writer, batplots.story.ranking); `batplots eval`
counts breaks per 100 passages (batplots.measure.storyeval).

- identity: a hero and his own secret identity as two people in one sentence
  ("Batman, Robin and Bruce Wayne"), unless the sentence says how one is the other
  ("as", "becomes", "disguised"...); or one of the lore's characters twice, a word or
  two apart ("Freeze tells Mr. Freeze", "the Joker and the Clown Prince"). The pairs are the show's premise (IDENTITIES):
  the corpus never states them, it only uses them.
- walk-in: a villain of the lore (the show's recurring villains, found in the corpus)
  whom neither the story nor its case file has named.
- bat-word: a "Bat" coinage the lore does not know and the story did not use
  ("Batbrain", "Batplasma"): the show's gadgets are a closed set.
- pronoun: he for she or she for he, for a character the lore knows (each villain's
  and regular's pronoun is counted from the corpus: batplots.story.lore.pronoun_of) or
  one of the writer's own (from the writer's pronouns), in a sentence naming only them.
- status: a character acting against what the story says of him (batplots.story.status):
  a caught villain robbing or laughing at the heroes with no escape told ("the Joker, now
  in jail, plots" is fine), a trapped hero driving off, a character the story sent away
  in the scene without an arrival or a reason. Read blind, "a fact of the opening
  reversed" was the commonest contradiction (9 of 30).
- invented-lead: a name the model brought into an earlier passage, used again, when the
  writer has not taken it up (used it in a turn of his own or the case file's fields he
  edited) and the lore does not know it: "Batwing" was in 8 of 12 model passages and
  ended up leading the henchmen. Only with writer_names (who wrote what) and a lore that
  knows the show's villains (without one, the Joker would read as the model's invention);
  off without.
- death, gear: what the show never has (batplots.story.onshow): a death told as fact
  ("They're crushed to death", "commits another murder"), the heroes' gear in a villain's
  hands ("Mad Hatter's Batmobile", "the Batmobile Gang", a villain held in the Batcave).
- dangling: a sentence that ends on a word that cannot end one ("have been .", "of the.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from batplots.story import names as nameslib
from batplots.story import onshow
from batplots.story import status as statuslib
from batplots.story import storyread
from batplots.story.caseread import Memo
from batplots.story.lore import (IDENTITIES, PRONOUN_RATIO, VENUE_WORDS, Lore, name_pattern, pronoun_in,
                                 villains_in)

RULES = ("identity", "walk-in", "bat-word", "pronoun", "status", "invented-lead", "death", "gear", "dangling")
# What a sentence says of its one named character: subject, possessive and reflexive
# pronouns ("her" is left out: as an object it is as often someone else).
SAID_HE = re.compile(r"\b(?:he|his|himself)\b", re.IGNORECASE)
SAID_SHE = re.compile(r"\b(?:she|herself)\b", re.IGNORECASE)
# Between a hero and his identity, these say how one is the other: no slip.
SAME_PERSON = re.compile(
    r"\b(?:as|alias|aka|becomes?|became|becoming|is|was|are|were|secret\w*|identit\w*|disguis\w*|chang\w*|"
    r"turn\w*|transform\w*|dress\w*|suit\w*|costum\w*|Batpoles?|slid\w*|alter\s+ego|really|himself|herself)\b|[()]",
    re.IGNORECASE)
# A sentence cannot end on these: articles, "of", conjunctions, "been", determiners
# ("...and Batgirl have been ."). Not "her", "in", "over", "where": "toward her", "closing
# in", "but where?" end sentences of the show's own.
DANGLING_WORDS = frozenset("""a an the of to and or but nor been their its my our your whose than very with by""".split())
_LAST_WORD = re.compile(r"([A-Za-z'’]+)\W*$")
_SPACE_BEFORE_END = re.compile(r"\s[.!?…]+[\"”’)]*\s*$")
# Two names of one character at most this many words apart read as two people.
DOUBLE_GAP_WORDS = 3
BAT_PREFIX = "bat"
# A run of capitalised words: one name ("Lillian Langley", "the Gotham City Zoo").
NAME_RUN = re.compile(r"(?<![\w-])[A-Z][\w'’-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’-]*)*")
# A name ending in one of these is a place, not a character (beside the lore's VENUE_WORDS).
PLACE_WORDS = frozenset(VENUE_WORDS) | frozenset("""Zoo School Street Avenue Square Island Gardens Theatre Theater
Church Cathedral Station Airport Tower Center Centre Gallery Institute University College Restaurant Docks Pier
Castle Palace Mansion Manor Tunnel Observatory Planetarium Aquarium Casino Shop Store Studio Academy Warehouse
City Town County Lake River Mountain Road Lane Boulevard Building Vault Reserve""".split())
# After a name, what makes it the sentence's actor: (an aside in commas,) (an adverb,) a verb
# ("Batwing, a masked stranger, quietly leads", "Batwing is", "Batwing laughed").
ACTS_AFTER = (r"(?:\s*,[^,.;:!?]{1,60},)?\s+(?:[a-z]+ly\s+)?(?:(?:is|was|has|had|will|can|could|would|must|may|"
              r"might|does|did)\b|(?!(?:this|his|its|towards|afterwards|always|perhaps|whereas|besides|"
              r"upwards|downwards|bus|yes)\b)[a-z]{2,}(?<!ss)(?<!us)(?:s|ed)\b)")
# Words that are titles or their misspellings, not names of their own ("Madam Mirage").
TITLE_WORDS = frozenset("Madam Mister Missus Jr Junior Sr Senior Saint Sister Brother Father Mother".split())
MIN_BAT_WORD = 5  # "Bats", "Bat" are no coinages
# Per sentence, read once per process (storyread): the lore's villains it names, and the
# pronoun votes of the writer's own names (for the pronoun table).
_VILLAINS = Memo()
_VOTES = Memo()
PRONOUN_AT_LEAST = 1  # one clear sentence gives the writer's own name its pronoun


@dataclass(frozen=True)
class Break:
    """One rule a sentence breaks, and what broke it (a name, a pair, a word)."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} ({self.detail})"


class Bible:
    """The rules for one passage: what the story and its case file have set up."""

    def __init__(self, story: str, lore: Lore, case_villains: Iterable[str] = (), case_names: Iterable[str] = (),
                 case_henchmen: Iterable[str] = (), writer_names: Iterable[str] | None = None,
                 earlier: str | None = None):
        """writer_names: the names the writer used himself (brief.Brief.writer_names), None
        when who wrote what is unknown (no invented-lead rule then). earlier: the story
        before this passage (default: story), where a model's name must have been to be
        a repeat; a name the passage's first sentence brought in is not one yet."""
        self.lore = lore
        case_villains = list(case_villains)
        # The lore's villains the story or its case file has named (by any alias).
        self.villains = _villains_named(story, storyread.split(story), case_villains, lore) if lore.villains else set()
        own = storyread.story_names(story) | set(case_names) | nameslib.names(" ".join(case_villains))
        known = {w.casefold() for w in (lore.vocabulary | own)} | {g.casefold() for g in lore.gadgets}
        # The show's Bat-words and the story's, hyphens dropped ("Bat-computer").
        self.bat_words_known = tuple(k.replace("-", "") for k in known
                                     if k.startswith(BAT_PREFIX) and len(k) >= MIN_BAT_WORD - 1)
        self.pronouns, self.people = _pronouns(story, lore, own)
        self.cast = statuslib.cast_of(lore, case_villains, case_henchmen, own)
        self.statuses = statuslib.track_story(story, self.cast)
        self.invented = _invented(story if earlier is None else earlier, lore, writer_names)

    def breaks(self, sentence: str) -> list[Break]:
        """Each rule sentence breaks, in RULES order."""
        return [*identity_slips(sentence), *self.doubles(sentence), *self.walk_ins(sentence), *self.bat_words(sentence),
                *self.pronoun_slips(sentence), *self.status_slips(sentence), *self.invented_leads(sentence),
                *[Break("death", d) for d in onshow.deaths(sentence)],
                *[Break("gear", g) for g in onshow.gear_slips(sentence, self.cast)], *dangling(sentence)]

    def status_slips(self, sentence: str) -> list[Break]:
        """A caught, trapped or absent character acting as if free (batplots.story.status)."""
        return [Break("status", f"{name} {what}") for name, what in statuslib.slips(sentence, self.cast, self.statuses)]

    def invented_leads(self, sentence: str) -> list[Break]:
        """A name the model invented in an earlier passage, back again as the one who acts
        (followed by its verb: "Batwing leads"; not "in London", "Late at night")."""
        if not self.invented:
            return []
        out = []
        for run in NAME_RUN.finditer(sentence):
            words = nameslib.name_words(run.group(0))
            if (not words or words[-1] in PLACE_WORDS or nameslib.POSSESSIVE.search(run.group(0))
                    or not re.match(ACTS_AFTER, sentence[run.end():])):
                continue  # a place ("the Gotham City Zoo is"), an owner ("Art's books"), or not the one who acts
            out += [Break("invented-lead", w) for w in words if w in self.invented]
        return list({str(b): b for b in out}.values())

    def pronoun_slips(self, sentence: str) -> list[Break]:
        if self.people is None:
            return []
        named = {m.group(0) for m in self.people.finditer(sentence)}
        for name, (pattern, pronoun) in self.pronouns.items():
            m = pattern.search(sentence)
            if not m or named - {m.group(0)}:
                continue  # nobody, or more than one character: the pronoun may be another's
            he, she = SAID_HE.search(sentence, m.end()), SAID_SHE.search(sentence, m.end())
            said = "he" if he and (not she or he.start() < she.start()) else "she" if she else None
            if said and said != pronoun:
                return [Break("pronoun", f"{said} for {name}")]
        return []

    def doubles(self, sentence: str) -> list[Break]:
        """One of the show's characters as two people: two of his names a word or two
        apart ("Freeze tells Mr. Freeze", "the Joker and the Clown Prince")."""
        for name, entry in {**self.lore.villains, **self.lore.characters}.items():
            found = list(name_pattern(entry.get("aliases") or (name,)).finditer(sentence))
            for first, second in zip(found, found[1:]):
                between = sentence[first.end():second.start()]
                if len(between.split()) <= DOUBLE_GAP_WORDS and not SAME_PERSON.search(between):
                    return [Break("identity", f"{second.group(0)} beside {first.group(0)}")]
        return []

    def walk_ins(self, sentence: str) -> list[Break]:
        if not self.lore.villains:
            return []
        return [Break("walk-in", v) for v in villains_in(sentence, self.lore) if v not in self.villains]

    def bat_words(self, sentence: str) -> list[Break]:
        if not self.lore.gadgets:
            return []  # no lore of the show's gadgets: nothing to tell a coinage by
        out = []
        for word in dict.fromkeys(nameslib.name_words(sentence)):
            low = word.casefold().replace("-", "")
            if not low.startswith(BAT_PREFIX) or len(low) < MIN_BAT_WORD:
                continue
            # A known word with an ending ("Batarangs", "Batmobile's") is known.
            if low.startswith(self.bat_words_known):
                continue
            out.append(Break("bat-word", word))
        return out


def _villains_named(story: str, read: storyread.Split, case_villains: list[str], lore: Lore) -> set[str]:
    """set(villains_in(story + " " + the case's villains, lore)): the villains of the story's
    sentences but its last (each sentence read once: storyread.fold), and of the text from its
    last sentence on with the case's villains after it (a name may run across the join)."""
    key = storyread.intern(tuple((name, tuple(e.get("aliases") or (name,))) for name, e in lore.villains.items()))
    last = 0
    if read.sentences and story.strip():
        last = read.rest if len(read.sentences) > len(read.spans) else read.spans[-1][0]

    def step(state: set, sentence: str) -> None:
        state |= _VILLAINS.get((key, sentence), sentence, lambda: frozenset(villains_in(sentence, lore)))

    before = storyread.fold(story[:last], ("villains", key), None, set, step, frozenset, set)
    return set(before) | set(villains_in(story[last:] + " " + " ".join(case_villains), lore))


def _pronouns(story: str, lore: Lore,
              own: set[str]) -> tuple[dict[str, tuple[re.Pattern, str]], re.Pattern | None]:
    """({character: (pattern, "he"/"she")}, the pattern of every character's names): the
    lore's characters with the corpus's pronoun, and the writer's own names with the
    pronoun the writer used for them."""
    entries = {**lore.characters, **lore.villains}
    aliases = [a for e in entries.values() for a in (e.get("aliases") or ())] + sorted(own)
    if not aliases:
        return {}, None
    people = name_pattern(aliases)
    out = {name: (name_pattern(e.get("aliases") or (name,)), e["pronoun"]) for name, e in entries.items()
           if e.get("pronoun") in ("he", "she")}
    known = {a for e in entries.values() for a in (e.get("aliases") or ())}
    todo = own - known - {w for a in known for w in a.split()}
    # Each own name's he/she votes (lore.pronoun_of's), read once a sentence for the
    # aliases it has and summed over the story from where a shorter story's sum stopped.
    index = storyread.AliasIndex((a, a in todo) for a in aliases)

    def step(votes: dict, sentence: str) -> None:
        key = index.key(sentence)
        for name, pronoun in _VOTES.get((key, sentence), sentence, lambda: _votes(sentence, people, key)):
            he, she = votes.get(name, (0, 0))
            votes[name] = (he + 1, she) if pronoun == "he" else (he, she + 1)

    votes = dict(storyread.fold(story, "pronouns", index, dict, step, lambda v: tuple(v.items()), dict))
    for name in sorted(todo):
        pronoun = _decide(*votes.get(name, (0, 0)))
        if pronoun:
            out[name] = (name_pattern([name]), pronoun)
    return out, people


def _votes(sentence: str, people: re.Pattern, key: tuple) -> tuple[tuple[str, str], ...]:
    """(own name, its pronoun) for each own name of key (AliasIndex items (alias, own)) that
    sentence names alone, with a pronoun after it (lore.pronoun_of's vote)."""
    mine = sorted(alias for alias, own in key[0] | key[1] if own)
    if not mine:
        return ()
    named = {m.group(0) for m in people.finditer(sentence)}
    out = []
    for alias in mine:
        m = name_pattern([alias]).search(sentence)
        if m and not named - {m.group(0)}:
            pronoun = pronoun_in(sentence, m.end())
            if pronoun:
                out.append((alias, pronoun))
    return tuple(out)


def _decide(he: int, she: int) -> str | None:
    """lore.pronoun_of's verdict on these votes (at_least=1): the commoner, when clear."""
    top, n = ("he", he) if he >= she else ("she", she)
    return top if n >= PRONOUN_AT_LEAST and n >= PRONOUN_RATIO * (he + she - n) else None


def _invented(earlier: str, lore: Lore, writer_names: Iterable[str] | None) -> frozenset[str]:
    """The names of earlier that neither the writer (writer_names) nor the lore has: the
    model's own inventions so far. None writer_names: nobody knows, so none; nor with a
    lore that knows no villains (then the show's own would count as inventions)."""
    if writer_names is None or not lore.villains:
        return frozenset()
    mine = {w for n in writer_names for w in (n, *nameslib.name_words(n))}
    known = lore.vocabulary | lore.cast | {w for section in (lore.characters, lore.villains, lore.places, lore.gadgets)
                                           for name, e in section.items()
                                           for a in (e.get("aliases") or (name,)) for w in nameslib.name_words(a)}
    return frozenset(n for n in storyread.story_names(earlier) if n not in mine and n not in known and n not in TITLE_WORDS)


def identity_slips(sentence: str) -> list[Break]:
    """A hero and his secret identity side by side as two people."""
    out = []
    for hero, identity in IDENTITIES.items():
        heroes = [m.span() for m in re.finditer(rf"\b{hero}\b", sentence)]
        if not heroes:
            continue
        for m in re.finditer(rf"\b(?:{'|'.join(map(re.escape, identity))})\b", sentence):  # the full name first
            if any(not SAME_PERSON.search(sentence[min(end, m.end()):max(start, m.start())]) for start, end in heroes):
                out.append(Break("identity", f"{m.group(0)} beside {hero}"))
                break
    return out


def dangling(sentence: str) -> list[Break]:
    """A sentence ending on a word no sentence ends on, or with a space before its stop."""
    text = sentence.rstrip()
    if _SPACE_BEFORE_END.search(text):
        return [Break("dangling", "space before the full stop")]
    m = _LAST_WORD.search(text)
    if m and m.group(1).casefold() in DANGLING_WORDS:
        return [Break("dangling", f"ends on {m.group(1)!r}")]
    return []
