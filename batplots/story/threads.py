"""An event the writer set up gets an answer. Pure functions.

When the story's last sentence asks a question, makes a threat or springs a trap, the
next passage should take it up, not wander off: `open_thread(story)` finds such a
setup, and `answers(thread, sentence)` says whether a passage's first sentence takes
it up: it names what the setup named (a person, the thing threatened, the trap), or,
for a trap, plays the escape or the trap itself. The Writer's ranking rewards takes
that answer (batplots.story.ranking).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batplots.story import beats as beatslib
from batplots.story import storyread

KINDS = ("question", "threat", "trap")
THREAT = re.compile(r"\b(?:threat\w*|unless|or else|ransom\w*|deadline|countdown|ultimatum|warns?|warned|vows?|"
                    r"vowed|swears?|bomb\w*|will\s+(?:destroy|blow|steal|flood|freeze|poison|kidnap)\w*|"
                    r"by\s+(?:midnight|dawn|noon|tomorrow))\b", re.IGNORECASE)
TRAP = re.compile(r"\b(?:trap\w*|ties|tied|straps|strapped|chains|chained|bound|shackled|dangl\w+|suspended|"
                  r"lowered|sealed|"
                  r"locked\s+in|sinking|flooding|fills?\s+with|closing\s+in|ticking)\b", re.IGNORECASE)
# Words too common in this show to show that a sentence takes anything up.
COMMON = frozenset("""batman robin dynamic duo caped crusader boy wonder gotham city they them their there then
that this with from have will would into what when where which while about after before under over only also
just very much more most some such than them these those being been were your says said tells asks""".split())
CONTENT = re.compile(r"[A-Za-z][A-Za-z'’-]{3,}")
# A trap is answered by these beats too (the heroes escape it, or the trap closes in).
TRAP_BEATS = ("escape", "deathtrap")


@dataclass(frozen=True)
class Thread:
    """A setup the next passage should answer: its kind, sentence and telling words."""

    kind: str
    sentence: str
    words: frozenset[str]


def content_words(text: str) -> frozenset[str]:
    """The telling words of text: 4+ letters, not the show's everyday ones."""
    words = {re.sub(r"['’]s?$", "", w).casefold() for w in CONTENT.findall(text)}
    return frozenset(w for w in words if w not in COMMON)


def open_thread(story: str) -> Thread | None:
    """The question, threat or trap the story's last sentence sets up, or None."""
    sentences = storyread.sentences(story)  # split once a story (a longer one resumes it)
    if not sentences:
        return None
    last = sentences[-1].strip()
    kind = ("question" if last.rstrip("\"”’)").endswith("?") else "trap" if TRAP.search(last)
            else "threat" if THREAT.search(last) else None)
    return Thread(kind, last, content_words(last)) if kind else None


def answers(thread: Thread, sentence: str) -> bool:
    """Whether sentence (a passage's first) takes the thread up."""
    if thread.kind == "trap" and beatslib.label(sentence) in TRAP_BEATS:
        return True
    return bool(thread.words & content_words(sentence))
