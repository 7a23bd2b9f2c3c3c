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
  ("as", "becomes", "disguised"...). The pairs are the show's premise (IDENTITIES):
  the corpus never states them, it only uses them.
- walk-in: a villain of the lore (the show's recurring villains, found in the corpus)
  whom neither the story nor its case file has named.
- bat-word: a "Bat" coinage the lore does not know and the story did not use
  ("Batbrain", "Batplasma"): the show's gadgets are a closed set.
- dangling: a sentence that ends on a word that cannot end one ("have been .", "of the.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from batplots.story import names as nameslib
from batplots.story.lore import Lore, villains_in

RULES = ("identity", "walk-in", "bat-word", "dangling")
# Hero -> the names of his (or her) secret identity. The show's premise, which its plot
# summaries take for granted rather than state, so no corpus count can find it.
IDENTITIES: dict[str, tuple[str, ...]] = {
    "Batman": ("Bruce Wayne", "Bruce"),
    "Robin": ("Dick Grayson", "Dick"),
    "Batgirl": ("Barbara Gordon", "Barbara"),
}
# Between a hero and his identity, these say how one is the other: no slip.
SAME_PERSON = re.compile(
    r"\b(?:as|alias|aka|becomes?|became|becoming|is|was|are|were|secret\w*|identit\w*|disguis\w*|chang\w*|"
    r"turn\w*|transform\w*|dress\w*|suit\w*|costum\w*|Batpoles?|slid\w*|alter\s+ego|really|himself|herself)\b|[()]",
    re.IGNORECASE)
# A sentence cannot end on these (auxiliaries, articles, prepositions, conjunctions).
DANGLING_WORDS = frozenset("""a an the of to and or but nor with without have has had having is was were are be been
being by for from in into on onto at their his her its our your my that which who whom whose as than very so
if because while when where whereas although though until unto upon about above below over under between
among through during before after against toward towards can could will would shall should may might must do
does did not""".split())
_LAST_WORD = re.compile(r"([A-Za-z'’]+)\W*$")
_SPACE_BEFORE_END = re.compile(r"\s[.!?…]+[\"”’)]*\s*$")
BAT_PREFIX = "bat"
MIN_BAT_WORD = 5  # "Bats", "Bat" are no coinages


@dataclass(frozen=True)
class Break:
    """One rule a sentence breaks, and what broke it (a name, a pair, a word)."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} ({self.detail})"


class Bible:
    """The rules for one passage: what the story and its case file have set up."""

    def __init__(self, story: str, lore: Lore, case_villains: Iterable[str] = (), case_names: Iterable[str] = ()):
        self.lore = lore
        set_up = story + " " + " ".join(case_villains)
        # The lore's villains the story or its case file has named (by any alias).
        self.villains = set(villains_in(set_up, lore)) if lore.villains else set()
        own = nameslib.names(story) | set(case_names) | nameslib.names(" ".join(case_villains))
        gadgets = {g.casefold() for g in lore.gadgets}
        self.known_words = {w.casefold() for w in (lore.vocabulary | own)} | gadgets

    def breaks(self, sentence: str) -> list[Break]:
        """Each rule sentence breaks, in RULES order."""
        return [*identity_slips(sentence), *self.walk_ins(sentence), *self.bat_words(sentence),
                *dangling(sentence)]

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
            if any(low.startswith(k.replace("-", "")) for k in self.known_words if k.startswith(BAT_PREFIX)
                   and len(k) >= MIN_BAT_WORD - 1):
                continue
            out.append(Break("bat-word", word))
        return out


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
