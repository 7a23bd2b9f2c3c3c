"""The show's beats: which part of the 1966 two-parter formula a sentence plays.

The formula (docs/lore.md): a crime with a clue at a Gotham venue; police
headquarters, where Gordon and O'Hara name the villain and reach for the red
Batphone; Wayne Manor (Alfred, the Shakespeare bust, the Batpoles); the
Batmobile; the Batcave, where the Bat-computer decodes the clue; a fight
(POW! BIFF!); the deathtrap cliffhanger ("same Bat-time, same Bat-channel");
the escape, by gadget or deduction; the final fight and capture.

`label` is a handful of keyword rules tried in PRECEDENCE order (the first
that matches wins; the rules and their measured precision are in docs/lore.md).
Pure functions over text.
"""

from __future__ import annotations

import functools
import random
import re

from batplots.story.rules import MAX_TURNS
from batplots.text import sentence_spans

BEATS = ("crime", "batphone", "manor", "batmobile", "batcave", "fight", "deathtrap", "escape", "capture")
BEAT_LABELS = {
    "crime": "Crime!", "batphone": "Batphone!", "manor": "To Wayne Manor!", "batmobile": "To the Batmobile!",
    "batcave": "To the Batcave!", "fight": "Fight!", "deathtrap": "Deathtrap!", "escape": "Escape!",
    "capture": "Capture!",
}
# Words the labeller (RULES below) takes as the beat's marks, alone or with the words
# that usually follow them ("suspended" over a vat, "police" headquarters), and that carry
# the beat for a reader too (not "sink" or "examine": "sinks his toy", "examines a watch"
# are labelled but play no deathtrap or Batcave): the Writer
# pushes them until the sentence plays the beat (batplots.story.steer). A cue of one token gets
# the push; of a longer one (" Batcave" is " Bat" "c" "ave") only the rest, once the model
# has written its start: a push on " Bat" filled passages with "Batbolt" and "Batcarriage".
BEAT_CUES: dict[str, tuple[str, ...]] = {
    "crime": ("steal", "steals", "robbery", "crime", "loot", "heist"),
    "batphone": ("Batphone", "Commissioner", "Gordon", "headquarters", "police", "phone", "phones", "calls",
                 "informs"),
    "manor": ("Wayne", "Manor", "Alfred", "Batpoles", "Aunt"),
    "batmobile": ("Batmobile", "race", "speed"),
    "batcave": ("Batcave", "Batcomputer", "analyzes", "analyses", "analyze", "analysis"),
    "fight": ("fight", "fights", "POW", "battle", "attack", "attacks", "confront", "defeat", "struggle"),
    "deathtrap": ("deathtrap", "suspended", "conveyor", "plummet", "furnace", "acid", "death", "deadly", "doom"),
    "escape": ("escape", "escapes", "free", "manage", "manages", "save", "evade", "emerges", "just"),
    "capture": ("captured", "arrested", "jail", "prison", "caught"),
}
# The beats the page offers as buttons (and `write` as /beat NAME); every beat in
# BEATS is accepted by the API.
BUTTON_BEATS = ("batphone", "batcave", "fight", "deathtrap", "escape")


# Which rule wins when a sentence has the marks of several beats: the rarer, more telling
# beat first (an escape from a trap names the trap; a capture ends a fight; a clue
# decoded in the Batcave is about a crime; a robbery at Wayne Manor is a crime).
PRECEDENCE = ("escape", "deathtrap", "capture", "fight", "batcave", "batphone", "crime", "manor", "batmobile")

_HERO = (r"(?:Batman|Robin|Batgirl|Bruce(?: Wayne)?|Dick|(?:Dynamic|Darknight) Duo|Duo|heroes|Caped Crusaders?"
         r"|Boy Wonder|Peerless Pair|crime ?fighters|they|he|she)")
_I = re.IGNORECASE


def _rx(*parts: str, flags: int = _I) -> re.Pattern:
    return re.compile("|".join(parts), flags)


RULES: dict[str, re.Pattern] = {
    # The heroes get out of a trap: they free or save themselves, slip out, escape a peril.
    "escape": _rx(
        rf"\b{_HERO}\b[^.;!?]{{0,80}}?\b(?:free[sd]?|frees|save[sd]?|rescues?|evades?|escapes?|escaped|"
        r"manages? to (?:free|escape|evade|get out)|inch their way|emerges?|makes? (?:his|their) escape|"
        r"breaks? free|wriggles?|work (?:himself|themselves) loose)\b(?! the (?:King|Queen)\b| with\b)(?:[^.;!?]{0,40}?"
        r"\b(?:trap|themselves|himself|herself|chair|plaster|cabinet|magnet|net|book|furnace|tiger|train|"
        r"straps|epoxy|generator|machine|mask|sprinklers|gurney|deathtrap|pit|chimney|sacks?|Robin|time)\b)",
        r"\bfree (?:himself|themselves|herself)\b", r"\bsave themselves\b", r"\bjust in time\b",
        r"\bwho wisely held\b", r"\bfrees Batman and Robin\b", r"\bescape (?:from|the) (?:the )?(?:trap|terrible)",
        r"\bbulletproof|bullet-proof\b", r"\bsetting Batman free\b",
    ),
    # The cliffhanger: tied, strapped, suspended over a vat, a machine about to kill them.
    "deathtrap": _rx(
        r"\bdeath ?traps?\b", r"\bdoom trap\b", r"\bto (?:his|her|their) deaths?\b", r"\bto death\b",
        r"\bvat of\b", r"\bsuspended (?:over|above)\b", r"\bhangs? them above\b", r"\belectric chairs?\b",
        r"\belectrocuted\b", r"\bfurnace\b", r"\bconveyor belt\b", r"\bquicksand\b", r"\bbuzzsaw\b",
        r"\bgas chamber\b", r"\bacid\b", r"\bboiling oil\b", r"\bplummet", r"\bhurtles?\b", r"\bsink(?:s|ing)?\b",
        r"\bat the mercy of\b", r"\bglued to\b", r"\bstrapped\b", r"\bentomb", r"\bfrozen solid\b",
        r"\bBat-?time\b", r"\bBat-?channel\b", r"\btune in\b", r"\bcliffhanger\b", r"\bpit of\b",
        r"\bdeadly (?:minefield|challenge|distractions|trap|gas|man-eating)\b", r"\bto be (?:barbecued|executed)\b",
        r"\bwill be executed\b", r"\boblivion\b", r"\bpebble torture\b", r"\bbutton stitcher\b",
        r"\bthrows? them (?:in|into)\b", r"\btoss(?:es)? (?:him|them) (?:in|into)\b", r"\bsteampipe|scalding\b",
        r"\bchoose the right door\b", r"\bmake a move to unmask\b", r"\bpoisonous gas\b",
    ),
    # The villain caught: arrested, jailed, rounded up, taken away.
    "capture": _rx(
        r"\b(?:is|are|were|was|be|gets?) (?:finally )?(?:captured|apprehended|arrested|caught|imprisoned|"
        r"brought to justice|taken into custody|hauled off|rounded up)\b", r"\bbrought to justice\b",
        r"\b(?:off|back) to (?:jail|prison|the pokey)\b", r"\btaken? (?:into custody|to (?:jail|Police HQ))\b",
        r"\bbehind bars\b", r"\brecapture", r"\bround up\b", r"\bapprehend(?:s|ed)? (?:him|her|them|Harry|the)\b",
        r"\bcapture (?:the|all|False)\b", r"\bbag the\b", r"\bsurrenders\b", r"\bhauled off\b", r"\bin jail\b",
        r"\bcell\b", r"\bare immediately captured\b", r"\bbrought in\b", r"\bput away\b", r"\bon ice\b",
        r"\bpolice (?:finally )?arrive to (?:storm|collect|apprehend)\b",
    ),
    # A confrontation: POW! BIFF! fisticuffs, a battle, a knock-out, a chase that comes to blows.
    "fight": _rx(
        r"\b(?:POW|BIFF|BAM|ZAP|WHAM|KAPOW|SOCK|THWACK|CRASH|ZOWIE)\b!?", r"(?<!prize )\bfight(?:s|ing)?\b",
        r"\bbattle\b", r"\bfisticuffs\b", r"\bbrawl", r"\bstruggle\b", r"\boverpower(?:s|ed)?\b",
        r"\bknock(?:s|ed)? (?:him |her |them )?out\b", r"\bknocked (?:out|asunder|unconscious)\b", r"\bsubdue",
        r"\bthrash", r"\bjump(?:s|ed)? (?:on|Batman)\b", r"\bconfront", r"\bpounded\b", r"\bslug it out\b",
        r"\bmincemeat\b", r"\bdefeat", r"\bduel\b", r"\bclonks\b", r"\bbonked\b", r"\bBatfight\b",
        r"\battacks?\b", r"\bgive (?:battle|chase)\b", r"\bshootout\b", r"\bwork him over\b",
        r"\bgas(?:ses|sed)? (?:Batman|them|Dawn|her)\b", r"\bcatch (?:the Riddler|him) in the act\b",
        r"\bstop (?:him|the Penguin)\b",
    ),
    # In the Batcave, the Bat-computer and the analysers decode the clue.
    "batcave": _rx(
        r"\bBatcave\b", r"\bBat-?computer\b", r"\banaly[sz]", r"\bLie-?Detector\b", r"\bBatseismograph\b",
        r"\bdecod", r"\bsolv(?:e|es|ed|ing) (?:it|the|2|two)\b", r"\bexamin", r"\bdivine\b",
    ),
    # Police headquarters: Gordon and O'Hara, the red phone, the Batphone.
    "batphone": _rx(
        r"\bBat-?phone\b", r"\bred phone\b", r"\bhotline\b", r"\bPolice (?:Headquarters?|HQ|Department)\b",
        r"\bGCPD\b", r"\b(?:Gordon|commissioner)['’]?s office\b", r"\bcommissioners office\b",
        r"\b(?:Gordon|O['’]Hara|commissioner|Harah)\b[^.;!?]{0,60}\b(?:call(?:s|ed)?|phones?|telephones?|"
        r"suspects?|tip-off|tells|informs|question|hears)\b",
        r"\bcalls? (?:in )?(?:Batman|the one man)\b", r"\b(?:call|tip-off) from Commissioner\b",
        r"\bthreatening (?:phone )?call\b", r"\bon the phone with Gordon\b",
    ),
    # Wayne Manor: Alfred, Aunt Harriet, the Shakespeare bust, the Batpoles.
    "manor": _rx(
        r"\bWayne Manor\b", r"\bBat-?poles?\b", r"\bShakespeare\b",
        r"\bBruce(?:['’]s)? (?:study|library)\b", r"\breturn home\b",
        # Alfred at home: with the household (Bruce, Dick, Aunt Harriet), not on an errand alone.
        r"\bAlfred\b(?! Slye)(?=.*\b(?:Bruce|Dick|Harriet)\b)|\b(?:Bruce|Dick|Harriet)\b.*\bAlfred\b(?! Slye)",
        flags=0,
    ),
    # The Batmobile and the other Bat-vehicles on the road.
    "batmobile": _rx(
        r"\bBatmobile", r"\bBatcycle\b", r"\bBatcopter\b", r"\bBatgirlcycle\b", r"\batomic batteries\b",
        r"\bturbines to speed\b", r"\bBat-?boat\b", r"\bspeeds?\b", r"\brace to\b",
    ),
    # The caper: a theft, a robbery, a kidnapping, a clue or riddle left behind.
    "crime": _rx(
        r"\bsteal", r"\bstole", r"\brob(?:s|bed|bing|bery|beries)?\b", r"\bheist\b", r"\bkidnap", r"\bswipe",
        r"\bsnatch", r"\bloot\b", r"\bransom\b", r"\bhijack", r"\btheft\b", r"\bthie(?:f|ves)\b",
        r"\bbreaks? into\b", r"\bcrimes?\b", r"\bblackmail", r"\briddles?\b", r"\bclues?\b",
        r"\bcaper\b", r"\bscheme\b", r"\bplot\b", r"\bplans? to\b", r"\bexplodes?\b",
        r"\bmakes? off with\b", r"\bgetaway\b", r"\braid\b", r"\bdemands?\b", r"\bextort",
    ),
}
assert set(RULES) == set(BEATS) == set(PRECEDENCE)
# A rule's match does not count where its veto matches too (the heroes caught are no capture).
VETO: dict[str, re.Pattern] = {
    "capture": _rx(r"\b(?:Batman and Robin|Duo|heroes|they|Crusaders?)\b (?:are|were|is|was) (?:caught|captured)\b",
                   r"\bcaught red-handed by\b", r"\bprevent the \w+['’]s capture\b"),
}

# The narrator's cliffhanger, in the show's manner ({villain} filled in, or a stock foe).
CLIFFHANGER = (
    "Is this the end of the Dynamic Duo? Can even Batman outwit {villain}? Tune in tomorrow: same Bat-time, "
    "same Bat-channel!",
    "Will our heroes escape {villain}'s fiendish trap, or is this curtains for the Caped Crusader? Find out "
    "tomorrow night, same Bat-time, same Bat-channel!",
    "Trapped! Helpless! And {villain} laughing all the way to the getaway car! Don't miss tomorrow's thrilling "
    "conclusion: same Bat-time, same Bat-channel!",
    "Has {villain} finally done in the Boy Wonder and his mentor? Is there no escape? Tune in tomorrow, same "
    "Bat-time, same Bat-channel!",
    "Can the Dynamic Duo survive {villain}'s diabolical device? The answer, tomorrow: same Bat-time, same "
    "Bat-channel!",
)
STOCK_FOE = "the arch-criminal"


def label(sentence: str) -> str | None:
    """The beat this sentence plays (the first rule of PRECEDENCE that matches), or None."""
    for beat in PRECEDENCE:
        if RULES[beat].search(sentence) and not (beat in VETO and VETO[beat].search(sentence)):
            return beat
    return None


# label is a pure function of one sentence: remembered for the sentences of the stories
# in use, so the outline of a story after a change labels only its new sentences.
_label = functools.lru_cache(maxsize=MAX_TURNS * 64)(label)


def label_text(text: str) -> list[tuple[str, str | None]]:
    """Each sentence of text (an unfinished tail too) with its beat."""
    spans, rest = sentence_spans(text, final=True)
    sentences = [text[a:b] for a, b in spans]
    tail = text[rest:].strip()
    if tail:
        sentences.append(tail)
    return [(s, _label(s)) for s in sentences]


def outline(text: str) -> list[str]:
    """The beats the story has had, in order, a beat repeated back to back counted once."""
    return outline_of([s for s, _ in label_text(text)])


def outline_of(sentences) -> list[str]:
    """outline, for a story already split into sentences."""
    out: list[str] = []
    for sentence in sentences:
        beat = _label(sentence)
        if beat is not None and (not out or out[-1] != beat):
            out.append(beat)
    return out


def beat_counts(texts) -> dict[str, int]:
    """How many sentences of the texts play each beat (every beat listed, in BEATS order)."""
    counts = dict.fromkeys(BEATS, 0)
    for text in texts:
        for _, beat in label_text(text):
            if beat is not None:
                counts[beat] += 1
    return counts


def cliffhanger(villain: str | None = None, seed: int | None = None) -> str:
    """A narrator's cliffhanger naming villain (or a stock foe); the same seed gives the same line."""
    line = random.Random(seed).choice(CLIFFHANGER)
    name = (villain or "").strip() or STOCK_FOE
    return line.format(villain=name)
