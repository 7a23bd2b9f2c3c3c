"""Control codes (CTRL style): the header and beat markers the adapter is trained with.

Training (batplots.train.dataset) and generation (the Writer) build them here, so the two
can never drift apart:

    [Villain: Riddler | Cast: Batman, Robin, Commissioner Gordon]
    The Riddler robs the Gotham City Museum. ... The Dynamic Duo race off. [Next: batcave] The

- `header(villains, cast)`: one line before the story (ends in a newline), naming the
  episode's villains and recurring cast as the lore spells them (lore.villains_in,
  lore.characters_in); "" when both are empty.
- `beat_marker(beat)`: " [Next: batcave]", placed right before the sentence that plays
  that beat (batplots.story.beats.label), so at generation time the marker at the end of the
  prompt says which beat the next sentence plays.
- `condition(story, villains, cast, beat)`: header + story (+ the marker at its end).

The brackets and the bar never occur in the corpus (checked in tests and by the
trainer's window builder), and the model is never trained to write them: their tokens
are masked out of the loss. Pure functions over text; no tokenizer.
"""

from __future__ import annotations

from typing import Iterable

from batplots.story.beats import BEATS

# Named limits. A header keeps at most this many villains and cast names, each cut to
# MAX_NAME_CHARS, and at most MAX_HEADER_CHARS characters in all (names dropped from the
# end until it fits); with the SmolLM2 tokenizer that is at most HEADER_TOKENS tokens,
# the budget a caller keeps free in the 1024-token context (a marker adds MARKER_TOKENS).
MAX_VILLAINS = 2
MAX_CAST = 4
MAX_NAME_CHARS = 30
MAX_HEADER_CHARS = 120
HEADER_TOKENS = 48
MARKER_TOKENS = 8
# Characters that only the control codes use: a corpus that has them is refused for
# conditioned training (the model could not tell a code from the text).
RESERVED = ("[", "]", "|")


class ConditioningError(ValueError):
    """A beat that is not one of beats.BEATS."""


def _names(values: Iterable[str] | None, limit: int) -> list[str]:
    out: list[str] = []
    for value in values or ():
        name = str(value)
        for ch in RESERVED:
            name = name.replace(ch, " ")
        name = " ".join(name.split()).strip(" ,")[:MAX_NAME_CHARS].strip()
        if name and name not in out:
            out.append(name)
        if len(out) == limit:
            break
    return out


def _line(villains: list[str], cast: list[str]) -> str:
    parts = []
    if villains:
        parts.append("Villain: " + ", ".join(villains))
    if cast:
        parts.append("Cast: " + ", ".join(cast))
    return f"[{' | '.join(parts)}]\n" if parts else ""


def header(villains: Iterable[str] | None, cast: Iterable[str] | None) -> str:
    """The header line for these villains and cast (most important first), or "" when
    there are none. Ends in a newline; the story follows it directly."""
    v, c = _names(villains, MAX_VILLAINS), _names(cast, MAX_CAST)
    while len(_line(v, c)) > MAX_HEADER_CHARS and (v or c):
        if c:
            c.pop()
        else:
            v.pop()
    return _line(v, c)


def beat_marker(beat: str) -> str:
    """" [Next: <beat>]": the next sentence plays this beat (one of beats.BEATS)."""
    if beat not in BEATS:
        raise ConditioningError(f"unknown beat {beat!r}: use one of {', '.join(BEATS)}")
    return f" [Next: {beat}]"


def condition(story: str, villains: Iterable[str] | None = None, cast: Iterable[str] | None = None,
              beat: str | None = None) -> str:
    """The model's prompt: header + story, and with a beat the marker at its end (the story's
    trailing whitespace dropped, so the marker sits exactly where the next sentence starts)."""
    text = header(villains, cast) + story
    if beat:
        text = text.rstrip() + beat_marker(beat)
    return text
