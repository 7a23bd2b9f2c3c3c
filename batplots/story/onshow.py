"""What the 1966 show never has: a death told as fact, the heroes' gear in a villain's hands.
Pure functions; the bible's "death" and "gear" rules (batplots.story.bible).

Read blind, passages lost readers with "They're crushed to death", "a murder" done by
Egghead, "Batman is rendered a paraplegic", "Mad Hatter's Batmobile", "the
Batmobile Gang", a henchman driving off in the Batmobile and King Tut "held captive in the
Batcave". The show's deathtraps only threaten: the corpus's plot summaries tell no death
as done (their one killing is "the gangsters kill each other", which no rule here needs to
catch); the rest are threats ("threatens to spin them to death"), beliefs ("believing his
foes to be dead") and plans (Zelda is "reticent to commit murder"). Its villains never
drive the Batmobile nor find the Batcave. Regular expressions, not a parser: each errs
toward letting a sentence pass (a plan, a threat, a belief, a theft).
"""

from __future__ import annotations

import re

from batplots.story import status as statuslib

# A death told as fact: passive or adjectival ("is killed", "are crushed to death", "lies
# dead"), intransitive ("dies"), a life lost, a murder done, a lasting injury.
DEATH = re.compile(
    r"\b(?:(?:is|are|was|were|'re|'s|be|been|being|gets?|got|lies|lay|left|found)\s+(?:\w+\s+)?"
    r"(?:killed|murdered|slain|assassinated|shot\s+dead|crushed\s+to\s+death|burned\s+to\s+death|"
    r"drowned|electrocuted|dead(?!\s+(?:set|end|silence|center|centre|heat|ringer|giveaway|serious|tired|wrong)))"
    r"|(?:dies|died)(?!\s+(?:out|down|away))"
    r"|(?:loses?|lost)\s+(?:his|her|their)\s+lives?"
    r"|(?:kills?|killed|murders?|murdered|assassinates?|assassinated)\s+(?:him|her|them|the|his|their|Batman|"
    r"Robin|Batgirl|[A-Z]\w+)"
    r"|commits?\s+(?:another\s+|a\s+)?murders?"
    r"|(?:rendered|left|made)\s+(?:a\s+)?(?:paraplegic|crippled|paralyzed|paralysed))\b")
# What makes it no event: a threat, a plan, a belief, a question, a near miss.
NOT_TOLD = re.compile(
    r"\b(?:threat\w*|vows?|vowed|plans?|planned|planning|plots?|plotting|scheme\w*|intends?|means\s+to|wants?|"
    r"believ\w*|thinks?|thought|convinced|presumed|pretend\w*|fak(?:e|es|ed|ing)|feign\w*|seem\w*|apparent\w*|"
    r"supposed\w*|if|unless|or\s+else|almost|nearly|would|will|could|might|must|can|cannot|about\s+to|"
    r"tries|tried|try|trying|attempt\w*|sure\s+to|certain|doomed|face|facing|never|not|no\s+one|nobody|"
    r"leav\w+\s+(?:them|him|her)\s+(?:to|for)|escape\w*|sav(?:e|es|ed|ing)|rescu\w*|"
    # said, not told: "Rime informs Frost that he is dead"
    r"tells?|told|says?|said|informs?|informed|announc\w*|claims?|claimed|warns?|warned|reports?|reported)\b|\?\W*$",
    re.IGNORECASE)
# Where the clause of a death starts: what undoes it is told in the same clause ("His plan
# succeeds: the prince loses his life" is a death; "believing his foes to be dead" is not).
CLAUSE_START = re.compile(r"[,;:(\u2013\u2014]|\s-\s|\b(?:and|but|then|while|after|before|so)\b", re.IGNORECASE)
# The heroes' own: the show's villains never drive, ride or live in them.
GEAR = r"(?:Batmobile|Batcave|Bat-?copter|Bat-?cycle|Bat-?boat|Bat-?phone|Bat-?computer|[Uu]tility\s+[Bb]elt)"
GEAR_WORD = re.compile(GEAR)
GEAR_GANG = re.compile(rf"\b{GEAR}\s+(?:Gang|Mob|Crew|Army)\b")
POSSESSED = re.compile(rf"\s*'s\s+(?:\w+\s+)?{GEAR}\b")
# A villain moving into, driving or held in the heroes' gear ("Omelet goes off in his
# Batmobile", "the Puzzler returns to the Batcave", "Tut is held captive in the Batcave").
IN_GEAR = re.compile(
    rf"\b(?:drives?|drove|driving|rides?|rode|riding|(?:goes|go|went|going|returns?|returned|heads?|headed|"
    r"comes?|came|hides?|hid|hiding|lives?|lived|moves?|moved|is|are|was|were)\s+(?:back\s+|off\s+|away\s+|safely\s+)?"
    r"(?:to|into|in|inside|at|from)|(?:is|are|was|were)\s+(?:being\s+)?(?:held|kept|hidden|locked)\s+"
    r"(?:captive\s+|prisoner\s+|up\s+)?in|invites?\s+[^.;:!?]{0,40}?\s+(?:back\s+)?into)\s+"
    rf"(?:(?i:the|his|her|their|a)\s+)?{GEAR}\b")
# How a villain gets there in the show's way: a theft, a break-in, a disguise.
THEFT = re.compile(r"\b(?:steals?|stole|stolen|stealing|hijack\w*|commandeer\w*|sneak\w*|snuck|break\w*\s+into|"
                   r"broke\s+into|infiltrat\w*|disguis\w*|impersonat\w*|pos(?:e|es|ed|ing)\s+as|stowaway|stows?\s+away|"
                   r"tow\w*|tamper\w*|bug\w*|plant\w*|wir(?:e|es|ed|ing)|booby|copy|copies|replica|fake|imitation)\b",
                   re.IGNORECASE)


def deaths(sentence: str) -> list[str]:
    """The deaths sentence tells as done (the words that tell each), none for a threat,
    a plan, a belief or a rescue."""
    if statuslib.UNTOLD.search(sentence.strip()):
        return []  # a question, a condition
    out = []
    for m in DEATH.finditer(sentence):
        starts = list(CLAUSE_START.finditer(sentence, 0, m.start()))
        if starts and starts[-1].group(0).casefold() == "before":
            continue  # "a way out before he dies": not yet
        # The match itself may hold what undoes it: "are apparently killed", "is presumed dead".
        clause = sentence[starts[-1].end() if starts else 0:m.end()]
        if not NOT_TOLD.search(clause) and statuslib.done_at(sentence, m.start()):
            out.append(m.group(0))
    return out


def gear_slips(sentence: str, cast: statuslib.Cast) -> list[str]:
    """Where sentence puts the heroes' gear in a villain's hands: "<villain>'s Batmobile",
    "the Batmobile Gang", a villain (the lore's, or the case file's villains and
    henchmen) driving, riding or held in it; none where that clause tells a theft, a
    sneaking in or a disguise."""
    if not GEAR_WORD.search(sentence):
        return []  # most sentences: no name search needed
    out = [m.group(0) for m in GEAR_GANG.finditer(sentence)]
    found = statuslib.found_in(sentence, cast)
    for f in found:
        owned = POSSESSED.match(sentence, f.end)
        if f.name in cast.villains and owned and not _theft_around(sentence, f.start, owned.end()):
            out.append(f"{f.name}'s {owned.group(0).split()[-1]}")
    for m in IN_GEAR.finditer(sentence):
        group = statuslib.group_before(found, sentence, m.start())
        subjects = [f for f in found if f.end <= m.start() and f.name in cast.villains and f.name in group]
        if (subjects and statuslib.done_at(sentence, m.start())
                and not _theft_around(sentence, subjects[0].start, m.end())):
            out.append(f"{subjects[0].name} {m.group(0)}")
    return list(dict.fromkeys(out))


def _theft_around(sentence: str, start: int, end: int) -> bool:
    """Whether the clause holding sentence[start:end] tells a theft, a break-in or a disguise."""
    starts = [c.end() for c in CLAUSE_START.finditer(sentence, 0, start)]
    after = CLAUSE_START.search(sentence, end)
    return bool(THEFT.search(sentence, starts[-1] if starts else 0, after.start() if after else len(sentence)))
