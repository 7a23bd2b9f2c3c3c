"""Who is caught, free, trapped or absent, as the story tells it. Pure functions.

Read blind, the model forgot what the opening said: a villain "already in custody" robbed
the bank, a no-show villain walked in. `track` reads a story sentence by sentence, in
order, and keeps each character's status: free (the default), caught (arrested, jailed,
"taken away by the police", "behind bars"), trapped (tied, strapped or suspended in a
deathtrap; a hero or guest "captured" by a villain) or absent (the story says he is away:
"out of town", "on vacation", "has left for"). Later sentences change it: an escape or a
release frees, an arrival or return brings back. `slips` says where a model sentence goes
against it: a caught character acting freely (the subject of stealing, ordering,
laughing, driving...) in a sentence that neither tells an escape nor puts him in his
cell ("the Joker, now in jail, plots" is the show's own), a trapped one driving off
without an escape, an absent one in the scene without a reason (an arrival, a return, a
phone call). The bible's "status" rule (batplots.story.bible) builds the statuses once a
passage. Regular expressions, not a parser: each rule errs toward letting a sentence
pass, since a resample costs more than a fan's shrug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from batplots.story import names as nameslib
from batplots.story.caseread import Memo
from batplots.story.lore import IDENTITIES, name_pattern
from batplots.story import storyread
from batplots.story.storyread import AliasIndex

FREE, CAUGHT, TRAPPED, ABSENT = "free", "caught", "trapped", "absent"
# The crime-fighters and their secret identities (by their lore names): the story follows
# them, so their trip moves the scene ("Batman and Robin fly to London") instead of sending
# them away.
LEADS = frozenset(IDENTITIES) | frozenset(names[0] for names in IDENTITIES.values())
# Words between a character and the verb that makes him its subject ("the Joker, laughing
# madly, robs"); further off, the verb is likely another's.
MAX_SUBJECT_GAP = 5
# Words between a verb and the character it acts on ("arrests the grinning Joker").
MAX_OBJECT_GAP = 3
# Sentences that tell nothing as fact: questions, conditions.
UNTOLD = re.compile(r"\?\W*$|^\W*(?:if|unless|should|what if|perhaps)\b", re.IGNORECASE)
# A verb after these is a wish, a plan or a denial, not an event ("plans to escape").
NOT_DONE = frozenset("""to will would could can cannot can't couldn't might must should shall not never n't
won't about try tries tried trying""".split())
PASSIVE = frozenset("is are was were be been being get gets got getting".split())
_BE = r"(?:is|are|was|were|been|being|be|gets?|got|has\s+been|have\s+been|had\s+been|now|,)"
# Being somewhere, not getting there: "is away", not "get away" (an escape).
_BE_STATE = r"(?:is|are|was|were|been|being|,)"
_ADV = r"(?:(?:now|finally|safely|quickly|soon|promptly|swiftly|still|already|helplessly|securely|all)\s+)?"
# --- caught: by the police's words anyone; by "captured" a villain (a hero captured is trapped).
POLICE_SUBJECT = re.compile(
    rf"\b{_BE}\s+{_ADV}(?:arrested|jailed|imprisoned|locked\s+(?:up|away)|put\s+(?:away|behind\s+bars)|"
    r"sent\s+(?:back\s+)?to\s+(?:jail|prison|the\s+penitentiary)|under\s+arrest|in\s+handcuffs|handcuffed|"
    r"(?:taken|led|hauled|carted|dragged|marched)\s+(?:away|off|to\s+(?:jail|prison)|into\s+custody)|"
    r"taken\s+into\s+custody|(?:back\s+)?(?:behind\s+bars|in\s+(?:jail|prison|custody|police\s+custody|a\s+cell|"
    r"(?:his|her|their)\s+cells?|the\s+penitentiary|the\s+state\s+pen\w*)))"
    r"|\b(?:go|goes|went|going|back|sent|returned)\s+(?:back\s+)?to\s+(?:jail|prison|the\s+penitentiary)\b",
    re.IGNORECASE)
POLICE_OBJECT = re.compile(r"\b(?:arrests?|arrested|arresting|jails?|jailed|imprisons?|imprisoned|handcuffs?|"
                           r"handcuffed|collars?|collared)\b", re.IGNORECASE)
CAPTURE_SUBJECT = re.compile(rf"\b{_BE}\s+{_ADV}(?:captured|caught|apprehended|nabbed|seized|subdued|"
                             r"overpowered|rounded\s+up)(?!\s+(?:in|up|between|on|off|unawares|napping|red))\b",
                             re.IGNORECASE)
CAPTURE_OBJECT = re.compile(r"\b(?:captures?|captured|capturing|catch(?:es)?|caught|apprehends?|apprehended|"
                            r"nabs?|nabbed|seizes?|seized|subdues?|subdued|overpowers?|overpowered|rounds?\s+up|"
                            r"rounded\s+up)\b", re.IGNORECASE)
TAKEN_AWAY = re.compile(r"\b(?:takes?|took|leads?|led|hauls?|hauled|carts?|carted|drags?|dragged|marches|marched)"
                        r"\s+(?P<obj>[^.;:!?]{2,60}?)\s+(?:away|off|to\s+(?:jail|prison|the\s+penitentiary))\b",
                        re.IGNORECASE)
# Who did a capture: the police or the heroes make it an arrest.
LAW = re.compile(r"\bby\s+(?:the\s+)?(?:police|cops|officers|O['’]Hara|Gordon|Batman|Robin|Batgirl|Dynamic\s+Duo|"
                 r"Caped\s+Crusader|Boy\s+Wonder|heroes|law)\b")
# --- trapped: a deathtrap's words.
_TRAP_PARTICIPLE = (r"(?:tied|strapped|chained|bound|shackled|glued|lashed|manacled)\s+(?:up\s+)?"
                    r"(?:to|in|inside|on|onto|over|above|beneath|under|atop)|"
                    r"(?:suspended|dangling|hanging|dangled|lowered)\s+(?:over|above|into|from)|"
                    r"trapped\s+(?:in|inside|on|under|beneath|by|within)|"
                    r"(?:locked|sealed)\s+(?:up\s+)?(?:in|inside)\s+(?:a|an|the)\s+(?!cell|jail|prison)")
TRAP_SUBJECT = re.compile(rf"\b{_BE}\s+{_ADV}(?:{_TRAP_PARTICIPLE})|\bfinds?\s+(?:himself|herself|themselves)\s+"
                          rf"(?:{_TRAP_PARTICIPLE})|\b(?:lies|lie|lay|hangs?|dangles?)\s+(?:{_TRAP_PARTICIPLE})",
                          re.IGNORECASE)
TRAP_OBJECT = re.compile(r"\b(?:ties|tie|tied|straps?|strapped|chains?|chained|binds?|bound|shackles?|shackled|"
                         r"suspends?|suspended|dangles?|dangled|lowers?|lowered|traps?|trapped|locks?|locked|"
                         r"seals?|sealed|lashes|lashed|kidnaps?|kidnapped|abducts?|abducted)\s+"
                         r"(?P<obj>[^.;:!?]{2,60}?)\s*(?:\s(?:up\s+)?(?:to|in|inside|into|over|above|on|onto|"
                         r"beneath|under|atop)\b|[,.;!]|$)", re.IGNORECASE)
# --- free again: an escape, a release, a rescue; for a trap, the ropes or the machine undone.
ESCAPE_SUBJECT = re.compile(
    r"\b(?:escapes?|escaped|escaping|breaks?\s+(?:out|free|loose)|broke\s+(?:out|free|loose)|"
    r"(?:frees?|freed|freeing)\s+(?:himself|herself|themselves)|wriggles?\s+(?:free|loose|out)|"
    r"slips?\s+(?:free|loose|out\s+of)|busts?\s+out|flees?\s+(?:from\s+)?(?:jail|prison|the\s+penitentiary|custody)|"
    rf"{_BE}\s+{_ADV}(?:released|freed|paroled|pardoned|rescued|untied|saved|let\s+(?:out|go)|"
    r"out\s+(?:of\s+(?:jail|prison)|on\s+(?:parole|bail)))|(?:on\s+the\s+loose|at\s+large|free\s+again))\b",
    re.IGNORECASE)
ESCAPE_OBJECT = re.compile(r"\b(?:frees?|freed|releases?|released|springs?|sprang|sprung|rescues?|rescued|unties?|"
                           r"untied|saves?|saved|paroles?|paroled|pardons?|pardoned)\s+(?P<obj>[^.;:!?]{2,60}?)"
                           r"(?:[,.;!]|\s+(?:from|out|and|with|just|in\s+time)\b|$)"
                           r"|\b(?:breaks?|broke|busts?)\s+(?P<out>[^.;:!?]{2,60}?)\s+out\b", re.IGNORECASE)
# A deathtrap undone without a word on who ("Batman's Batarang cuts the ropes"): frees
# everyone trapped (the show traps its heroes together).
TRAP_UNDONE = re.compile(r"\b(?:cuts?|cutting|snaps?|burns?|dissolves?|loosens?|unties?|severs?|breaks?|broke)\s+"
                         r"(?:through\s+)?(?:the|his|her|their)\s+(?:\w+\s+)?(?:ropes?|bonds|chains?|straps?|"
                         r"shackles|cords?|manacles)\b|\b(?:jams?|jammed|stops?|stopped|shuts?\s+(?:off|down)|"
                         r"short-circuits?|disables?|escapes?|escaped)\s+(?:\w+\s+){0,3}?(?:trap|machine|device|"
                         r"gears?|mechanism|contraption)\b|\bout\s+of\s+the\s+(?:\w+\s+)?trap\b", re.IGNORECASE)
# --- absent: the story says he is away; an arrival or return brings him back.
ABSENT_SUBJECT = re.compile(
    rf"\b{_BE_STATE}\s+{_ADV}(?:away(?!\s+(?:from|with))|abroad|out\s+of\s+(?:town|the\s+country|Gotham(?:\s+City)?)|"
    r"(?:on|off\s+on)\s+(?:a\s+|an\s+|her\s+|his\s+|their\s+)?(?:\w+\s+)?(?:vacation|holiday|trip|cruise|"
    r"tour|safari|honeymoon|journey|sabbatical))\b"
    r"|\b(?:has|have|had)\s+(?:already\s+|just\s+)?(?:left|gone)\s+(?:for|to|on|away|abroad)\b"
    r"|\b(?:left|leaves|leave|has\s+left)\s+(?:town|Gotham|the\s+country)\b|\b(?:went|goes|go)\s+(?:away|abroad)\b"
    # A trip begun: "sails for England", "flies off to Paris", "departs on a cruise" (not
    # "flies to the rescue", "sets off for the museum": a place in town is no trip).
    r"|\b(?:sails?|sailed|fly|flies|flew|departs?|departed|sets?\s+(?:sail|off|out)|leaves?|left|heads?|headed|travel(?:s|ed|led)?|go|goes|went)\s+"
    r"(?:off\s+|away\s+|abroad\s+)?(?:for|to|on)\s+(?:a\s+|an\s+|her\s+|his\s+|their\s+)?"
    r"(?:England|London|Europe|Paris|Rome|Africa|Asia|India|China|Japan|Australia|Mexico|Canada|South\s+America|"
    r"Scotland|Ireland|France|Italy|Spain|Germany|Switzerland|the\s+(?:Orient|Continent|country|islands?)|"
    r"overseas|abroad|(?:\w+\s+)?(?:vacation|holiday|trip|cruise|tour|safari|honeymoon|journey|sabbatical))\b",
    re.IGNORECASE)
RETURN = re.compile(r"\b(?:returns?|returned|returning|arrives?|arrived|arriving|comes?\s+(?:back|home)|"
                    r"came\s+(?:back|home)|back\s+(?:from|home|in\s+(?:town|Gotham))|home\s+from|"
                    r"(?:is|are|was|were)\s+back|gets?\s+back|got\s+back|flies?\s+(?:back|in|home)|flew\s+(?:back|in|home)|"
                    r"cuts?\s+short|early\s+from|unexpectedly)\b", re.IGNORECASE)
# An absent character named from afar: a call, a letter, someone missing him.
REMOTE = re.compile(r"\b(?:phones?|phoned|calls?|called|telephones?|telephoned|cables?|cabled|wires?|wired|"
                    r"writes?|wrote|letter|postcard|telegram|message|note|away|abroad|trip|vacation|holiday|cruise|"
                    r"absence|absent|gone|miss(?:es|ed)?|wish(?:es|ed)?|thinks?\s+(?:of|about)|thought\s+of|"
                    r"remembers?|worr(?:y|ies|ied)|souvenir|out\s+of\s+town)\b", re.IGNORECASE)
# --- what a caught (or trapped) character cannot do: act freely.
FREE_ACTS = re.compile(
    r"\b(?:steals?|stole|stealing|robs?|robbed|robbing|loots?|looted|raids?|raided|snatch(?:es|ed)?|swipes?|swiped|"
    r"kidnaps?|kidnapped|grabs?|grabbed|breaks?\s+into|broke\s+into|sneaks?|sneaked|snuck|creeps?|crept|"
    r"orders?|ordered|commands?|commanded|instructs?|instructed|sends?\s+(?:his|her|their)|sent\s+(?:his|her|their)|"
    r"laughs?|laughed|cackles?|cackled|gloats?|gloated|taunts?|taunted|strikes?|struck|attacks?|attacked|"
    r"fights?|fought|punches|punched|ties|traps|plants?|planted|flees|fled|drives?|drove|races?|raced|"
    r"speeds?|sped|heads?\s+(?:for|to|back|off)|headed|rushes|rushed|hurries|hurried|walks?\s+(?:in|into|out)|"
    r"walked|enters?|entered|arrives?|arrived|returns?\s+to|returned\s+to|appears?\s+at|bursts?\s+into|"
    r"threatens?|threatened|holds?\s+up|held\s+up|unveils?|unveiled|disguises?|disguised|escapes?\s+to)\b",
    re.IGNORECASE)
# A sentence that keeps the caught character in custody: acting from his cell is the show's own.
CUSTODY = re.compile(r"\b(?:jail|prison|cell|cells|bars|custody|penitentiary|warden|parole|trial|court|courtroom|"
                     r"judge|sentenced|guards?|handcuffs|handcuffed|visiting|inmates?|convicts?|police\s+car|"
                     r"paddy\s+wagon|dreams?|dreamed|imagines?|remembers?|recalls?)\b", re.IGNORECASE)
# Where the trapped cannot go without getting out first.
TRAVEL = re.compile(r"\b(?:drives?|drove|races?\s+(?:to|off|back|away|out)|raced\s+(?:to|off|back|away|out)|"
                    r"speeds?\s+(?:to|off|away)|sped|heads?\s+(?:for|to|back|off)|headed|rushes\s+(?:to|off)|"
                    r"rushed\s+(?:to|off)|walks?\s+(?:in|into|out|to)|walked|arrives?|arrived|returns?\s+to|"
                    r"returned\s+to|slides?\s+down|slid\s+down)\b", re.IGNORECASE)
WORD = re.compile(r"[\w'’-]+")
POSSESSIVE = re.compile(r"['’]s?\b")
# Said of a character, not done by him in the scene: "Batman tells Robin that the Joker robbed banks".
REPORTED = re.compile(r"\b(?:that|how|whether|says|said|tells|told|explains|explained|recalls|recalled|believes|"
                      r"thinks|knows|fears|suspects|learns|learned|reports|reported|reads|warns|hears|heard|"
                      r"news|rumou?rs?|once|ago|last\s+(?:year|week|month))\b", re.IGNORECASE)
JOIN = re.compile(r"\s*(?:,|,?\s*and|&)\s*(?:the\s+)?", re.IGNORECASE)
# Between a subject and its verb: a clause ends here, the verb is another's.
CLAUSE_BREAK = re.compile(r"[;:\"“”]|\b(?:but|while|when|as|after|before|because|until|whereupon|then|so|"
                          r"that|which|whom|where)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Cast:
    """The story's characters: each spelling's character, one pattern for them all (one
    search a sentence, however many names a long story has), and which are villains or
    heroes."""

    aliases: dict[str, str]
    villains: frozenset[str] = frozenset()
    heroes: frozenset[str] = frozenset()
    pattern: re.Pattern | None = None


@dataclass(frozen=True)
class Found:
    name: str
    start: int
    end: int


def cast_of(lore, villains: Iterable[str] = (), henchmen: Iterable[str] = (), own: Iterable[str] = ()) -> Cast:
    """The characters whose status is kept: the lore's characters (heroes) and villains,
    by any alias, and the writer's own names (own: name words; the case file's villains'
    and henchmen's words are villains). Own words that are part of a lore alias, or the
    show's stock words (lore.cast: "Gotham"), are the lore's."""
    aliases: dict[str, str] = {}
    for section in (lore.characters, lore.villains):
        for name, entry in section.items():
            aliases.update({a: name for a in (entry.get("aliases") or (name,))})
    bad = set(lore.cast) | {w for a in aliases for w in a.split()}
    own_villains = {w for v in (*villains, *henchmen) for w in nameslib.names(v)} - bad
    aliases.update({w: w for w in (set(own) | own_villains) - bad})
    return Cast(aliases, frozenset(lore.villains) | frozenset(own_villains), frozenset(lore.characters),
                name_pattern(aliases) if aliases else None)


def found_in(sentence: str, cast: Cast) -> list[Found]:
    """Each character named in sentence, in order (the longest spelling first: name_pattern)."""
    if cast.pattern is None:
        return []
    return [Found(cast.aliases.get(m.group(0).replace("’", "'"), m.group(0)), m.start(), m.end())
            for m in cast.pattern.finditer(sentence)]


def _gap_ok(text: str, most: int) -> bool:
    return len(WORD.findall(text)) <= most and not CLAUSE_BREAK.search(text)


def group_before(found: list[Found], sentence: str, pos: int, most: int = MAX_SUBJECT_GAP) -> list[str]:
    """The characters that are the subject of what starts at pos: the last named before it
    (within most words, in the same clause) and those joined to him by "and" or commas."""
    before = [f for f in found if f.end <= pos]
    if not before or not _gap_ok(sentence[before[-1].end:pos], most) or POSSESSIVE.match(sentence, before[-1].end):
        return []  # nobody, or the verb is another's: "the Joker's henchmen rob"
    group = [before[-1]]
    for prev in reversed(before[:-1]):
        if not JOIN.fullmatch(sentence[prev.end:group[0].start]):
            break
        group.insert(0, prev)
    return [f.name for f in group]


def group_after(found: list[Found], sentence: str, pos: int, end: int | None = None) -> list[str]:
    """The characters a verb ending at pos acts on: the first named after it (within
    MAX_OBJECT_GAP words, before end) and those joined to him."""
    after = [f for f in found if f.start >= pos and (end is None or f.end <= end)]
    if not after or not _gap_ok(sentence[pos:after[0].start], MAX_OBJECT_GAP):
        return []
    group = [after[0]]
    for nxt in after[1:]:
        if not JOIN.fullmatch(sentence[group[-1].end:nxt.start]):
            break
        group.append(nxt)
    return [f.name for f in group]


def done_at(sentence: str, start: int) -> bool:
    """Whether the verb at start is told as an event (not after "to", "will", "not"...)."""
    before = WORD.findall(sentence[:start])
    return not before or before[-1].casefold() not in NOT_DONE


def _active(sentence: str, start: int) -> bool:
    """Whether the verb at start is told as an event and active ("arrests", not "is arrested")."""
    before = WORD.findall(sentence[:start])
    return done_at(sentence, start) and (not before or before[-1].casefold() not in PASSIVE)


class Reading(NamedTuple):
    """What a sentence tells whatever the statuses before it: the statuses it sets, whether
    it undoes a trap (frees everyone trapped) and who returns (each RETURN's subjects,
    freed if absent)."""
    told: tuple[tuple[str, str], ...]
    trap_undone: bool
    returns: tuple[tuple[str, ...], ...]
    scene_moved: bool = False  # a hero went away: the story goes with him


_NOTHING = Reading((), False, ())
_READINGS = Memo()


def told(sentence: str, cast: Cast, statuses: dict[str, str] | None = None) -> dict[str, str]:
    """The statuses sentence tells, {name: status}, in the order it tells them."""
    return _apply(_reading(sentence, cast, found_in(sentence, cast)), statuses or {})


def _apply(reading: Reading, statuses: dict[str, str]) -> dict[str, str]:
    out = dict(reading.told)
    if reading.scene_moved:  # "Batman and Robin fly to London": whoever was away may be there
        for name, status in statuses.items():
            if status == ABSENT:
                out.setdefault(name, FREE)
    if reading.trap_undone:  # the trapped are trapped together: all get out
        for name, status in statuses.items():
            if status == TRAPPED:
                out[name] = FREE
    for group in reading.returns:
        for name in group:
            if statuses.get(name) == ABSENT and out.get(name) in (None, ABSENT):
                out[name] = FREE
    return out


def _reading(sentence: str, cast: Cast, found: list[Found]) -> Reading:
    if UNTOLD.search(sentence.strip()):
        return _NOTHING
    if not found and not TRAP_UNDONE.search(sentence):
        return _NOTHING
    out: dict[str, str] = {}

    def mark(names: Iterable[str], status: str) -> None:
        for name in names:
            out[name] = status

    def captured(names: list[str], by_law: bool) -> None:
        for name in names:
            hero = name in cast.heroes
            out[name] = CAUGHT if (by_law and not hero) or name in cast.villains else TRAPPED if hero else (
                CAUGHT if by_law else TRAPPED)

    for m in POLICE_SUBJECT.finditer(sentence):
        mark(group_before(found, sentence, m.start()), CAUGHT)
    for m in CAPTURE_SUBJECT.finditer(sentence):
        captured(group_before(found, sentence, m.start()), bool(LAW.match(sentence[m.end():].lstrip())))
    for rx, by_police in ((POLICE_OBJECT, True), (CAPTURE_OBJECT, False)):
        for m in rx.finditer(sentence):
            if not _active(sentence, m.start()) or re.match(r"\s+by\b", sentence[m.end():]):
                continue
            agents = group_before(found, sentence, m.start())
            by_law = by_police or any(a in cast.heroes for a in agents)
            if agents and not by_law and all(a in cast.villains for a in agents):
                mark(group_after(found, sentence, m.end()), TRAPPED)
            else:
                captured(group_after(found, sentence, m.end()), by_law)
    for m in TAKEN_AWAY.finditer(sentence):
        if _active(sentence, m.start()):
            mark(group_after(found, sentence, m.start("obj"), m.end("obj")), CAUGHT)
    for m in TRAP_SUBJECT.finditer(sentence):
        mark([n for n in group_before(found, sentence, m.start()) if out.get(n) != CAUGHT], TRAPPED)
    for m in TRAP_OBJECT.finditer(sentence):
        if _active(sentence, m.start()):
            mark(group_after(found, sentence, m.start("obj"), m.end("obj")), TRAPPED)
    scene_moved = False
    for m in ABSENT_SUBJECT.finditer(sentence):
        group = group_before(found, sentence, m.start())
        scene_moved = scene_moved or any(n in LEADS for n in group)
        mark([n for n in group if n not in LEADS], ABSENT)
    # Freed last: "captured, the Joker escapes" ends free.
    for m in ESCAPE_SUBJECT.finditer(sentence):
        if done_at(sentence, m.start()):
            mark(group_before(found, sentence, m.start()), FREE)
    for m in ESCAPE_OBJECT.finditer(sentence):
        group = "obj" if m.group("obj") is not None else "out"
        if _active(sentence, m.start()):
            mark(group_after(found, sentence, m.start(group), m.end(group)), FREE)
    returns = tuple(tuple(group_before(found, sentence, m.start())) for m in RETURN.finditer(sentence)
                    if done_at(sentence, m.start()))
    return Reading(tuple(out.items()), bool(TRAP_UNDONE.search(sentence)), returns, scene_moved)


def track(sentences: Iterable[str], cast: Cast) -> dict[str, str]:
    """Each character's status after the sentences, in order: {name: status}, the free left out.
    A sentence is read once per process for the cast's aliases it has (storyread.AliasIndex:
    a long story's new names do not make its old sentences read again)."""
    statuses: dict[str, str] = {}
    step = _stepper(cast, _index(cast))
    for sentence in sentences:
        step(statuses, sentence)
    return statuses


def track_story(story: str, cast: Cast) -> dict[str, str]:
    """track(split_sentences(story), cast), resumed from the statuses of a story this one
    extends (storyread.fold): a turn reads its new sentences, not the story."""
    index = _index(cast)
    return dict(storyread.fold(story, "status", index, dict, _stepper(cast, index), lambda s: tuple(s.items()), dict))


def _index(cast: Cast) -> AliasIndex:
    return AliasIndex((alias, name, name in cast.villains, name in cast.heroes) for alias, name in cast.aliases.items())


def _stepper(cast: Cast, index: AliasIndex):
    def step(statuses: dict[str, str], sentence: str) -> None:
        reading = _READINGS.get((index.key(sentence), sentence), sentence,
                                lambda: _reading(sentence, cast, found_in(sentence, cast)))
        for name, status in _apply(reading, statuses).items():
            if status == FREE:
                statuses.pop(name, None)
            else:
                statuses[name] = status

    return step


def slips(sentence: str, cast: Cast, statuses: dict[str, str]) -> list[tuple[str, str]]:
    """(character, what he does against his status) for sentence, a model's: a caught
    character acting freely, a trapped one travelling, an absent one in the scene, none
    of it with the sentence's own escape, release, arrival or reason."""
    if not statuses:
        return []
    found = found_in(sentence, cast)
    named = [f for f in found if f.name in statuses]
    if not named:
        return []
    changed = told(sentence, cast, statuses)
    out: list[tuple[str, str]] = []
    for f in dict((f.name, f) for f in named).values():
        status = statuses[f.name]
        if f.name in changed:
            continue  # the sentence tells how his status changes: an escape, a return, a capture
        if REPORTED.search(sentence, 0, f.start) or POSSESSIVE.match(sentence, f.end):
            continue  # told of, not in the scene: "Bruce reads that the Joker...", "Harriet's cookies"
        if status == ABSENT:
            if not REMOTE.search(sentence):
                out.append((f.name, "away, yet here"))
            continue
        acts = FREE_ACTS if status == CAUGHT else TRAVEL
        if status == CAUGHT and CUSTODY.search(sentence):
            continue
        if status == TRAPPED and (TRAP_UNDONE.search(sentence) or ESCAPE_SUBJECT.search(sentence)):
            continue
        for m in acts.finditer(sentence):
            if m.start() >= f.end and done_at(sentence, m.start()) and f.name in group_before(found, sentence, m.start()):
                out.append((f.name, f"{status}, yet {m.group(0).lower()}"))
                break
    return out
