"""A passage's brief: what the writer asked of it beyond the story's own text.

The case file (batplots.story.casefile) names the villain, henchmen and guests, and the
writer may ask for the next beat of the show's formula (batplots.story.beats). The Writer
reads the brief to steer (a logit bias on the villain's name and on the beat's cue
words), to check (the case file's names count as the story's, so a near miss of one
is resampled; its henchmen keep a status in the show's bible) and to rank (the villain
named, the beat played). The story reaches the Writer as one text, so who wrote what
comes here too: the names the writer used in his own turns (and in the case file's
fields he edited), without which the bible cannot tell a name the model invented
("Batwing") from one of the writer's. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from batplots.story import beats as beatslib
from batplots.story import casefile
from batplots.story import names as nameslib
from batplots.story import storyread

class BriefError(ValueError):
    """A beat that is not one of beats.BEATS."""


@dataclass(frozen=True)
class Brief:
    """What a passage must follow besides the story text."""

    # Names in the case file: they count as the story's (kept, never near-missed).
    names: frozenset[str] = frozenset()
    # Name words of the case's lead villain: biased even when stock cast (the Riddler).
    # Only the lead's: a stock villain the model brought in must not be pushed further.
    villain_names: frozenset[str] = frozenset()
    # The first villain's telling name word: ranked as the story's lead name.
    lead: str | None = None
    villains: tuple[str, ...] = ()
    henchmen: tuple[str, ...] = ()
    # Name words the writer used himself (his turns, the case fields he edited); None when
    # who wrote what is unknown (then no name counts as the model's invention).
    writer_names: frozenset[str] | None = None
    # The beat asked for (beats.BEATS), or None.
    beat: str | None = None
    # Builds the model's prompt from the (fitted) story and a beat: the trained
    # conditioning header (batplots.story.conditioning), or None to show the story alone.
    frame: Callable[[str, str | None], str] | None = None

    def framer(self, with_beat: bool = True) -> Callable[[str], str] | None:
        """The prompt builder for one Passage: with the beat for the passage's first
        sentence, without it for sentences written on after it."""
        if self.frame is None:
            return None
        frame, beat = self.frame, self.beat if with_beat else None
        return lambda story: frame(story, beat)


def check_beat(beat: str | None) -> str | None:
    """beat, or BriefError saying which beats there are."""
    if beat is None or beat in beatslib.BEATS:
        return beat
    raise BriefError(f"unknown beat {beat!r}; choose one of: {', '.join(beatslib.BEATS)}")


def brief_for(case: dict | None, beat: str | None = None,
              frame: Callable[[str, str | None], str] | None = None, writer_text: str | None = None) -> Brief:
    """The brief of a case file (None: none) and a requested beat. writer_text: the
    writer's own turns (None: unknown), whose names and those of the case fields the
    writer edited are his (Brief.writer_names)."""
    beat = check_beat(beat)
    villains = tuple((case or {}).get("villains") or ())
    villain_names: set[str] = set()
    lead = None
    for villain in villains:
        # The telling word is the last that is no title: "Madame Mirage" -> Mirage,
        # "Doctor Domino" -> Domino, "The Gilded Gourmet" -> Gourmet.
        words = [w for w in nameslib.name_words(villain) if w not in casefile.TITLES]
        if words:
            lead, villain_names = words[-1], nameslib.names(villain)
            break
    writer_names = None
    if writer_text is not None:
        edited = {f: (case or {}).get(f, ()) for f in (case or {}).get("edited", ())}
        writer_names = frozenset(storyread.story_names(writer_text) | casefile.case_names(edited))
    return Brief(names=frozenset(casefile.case_names(case)), villain_names=frozenset(villain_names), lead=lead,
                 villains=villains, henchmen=tuple((case or {}).get("henchmen") or ()), writer_names=writer_names,
                 beat=beat, frame=frame)
