"""Biases that stop once they have done their work (Guidance.step_bias).

A static logit bias pushes for the whole sentence: once the sentence has the writer's
villain, it pushes the name again ("Riddler makes Riddler's escape from Riddler's
Batcave"), and a beat's cue words go on piling up after the beat is played. A Steer
is asked before each token, with the text the sentence has so far, and drops
- a name's bias once the sentence has that name; the lead name's (the case file's
  villain) grows by LEAD_SLOPE a word until then;
- the beat's cue bias once the labeller (batplots.story.beats.label) finds the beat; until
  then the cue bias grows by CUE_SLOPE a word (up to CUE_MAX_BIAS), so a sentence that
  has not found its beat by its middle is pushed harder, and one that has is left alone;
  a cue of several tokens gets a push on its rest once the model has begun it.
Pure: the same text gives the same biases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from batplots.story import beats as beatslib
from batplots.story import names as nameslib

# The cue bias grows by this much per word of a sentence that has not played the beat yet,
# from the Writer's BEAT_BIAS, and stops growing here: a push, never a wall (the
# sentence-end nudge tops out at 6 too).
CUE_SLOPE = 0.15
CUE_MAX_BIAS = 5.0
# Likewise the lead name (the case file's villain) in a sentence that has not named him.
LEAD_SLOPE = 0.15
LEAD_MAX_BIAS = 5.0
_WORD = re.compile(r"[\w'’-]+")


@dataclass(frozen=True)
class Steer:
    """The step biases of one take: names until used, beat cues until played."""

    # name word -> (its first tokens, bias): dropped once the sentence has the name
    names: dict[str, tuple[tuple[int, ...], float]] = field(default_factory=dict)
    # the one name among them whose bias grows (LEAD_SLOPE) while the sentence lacks it
    lead: str | None = None
    beat: str | None = None
    # (cue word, its token): pushed until the sentence plays the beat, a cue the sentence
    # already has no more ("Commissioner Gordon and Commissioner ..." otherwise)
    cues: tuple[tuple[str, int], ...] = ()
    cue_bias: float = 0.0
    # (text, token): once the sentence ends with the text (the start of a longer cue:
    # " Bat"), its next token ("c" of " Batcave") gets cue_bias, not growing
    follow: tuple[tuple[str, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names) or bool(self.beat and (self.cues or self.follow) and self.cue_bias)

    def __call__(self, text: str) -> dict[int, float]:
        out: dict[int, float] = {}
        if self.beat and (self.cues or self.follow) and self.cue_bias and beatslib.label(text) != self.beat:
            push = self.cue_for(nameslib.words(text))
            written = {w.lower() for w in _WORD.findall(text)}
            for word, t in self.cues:
                if word.lower() not in written:
                    out[t] = push
            for start, t in self.follow:
                if text.endswith(start):
                    out[t] = max(out.get(t, 0.0), self.cue_bias)
        if self.names:
            used = nameslib.names(text)
            for name, (tokens, bias) in self.names.items():
                if name in used:
                    continue
                if name == self.lead:
                    bias = min(LEAD_MAX_BIAS, bias + LEAD_SLOPE * nameslib.words(text))
                for t in tokens:
                    out[t] = max(out.get(t, 0.0), bias)
        return out

    def cue_for(self, words: int) -> float:
        """The cue bias after `words` words of a sentence that has not played the beat."""
        return min(CUE_MAX_BIAS, self.cue_bias + CUE_SLOPE * words)
