"""The case file's rules: the words and patterns that say who is a villain, a henchman or a
guest, and what is the target, the hideout or the deathtrap, and the rules that read one
sentence (a phrase clipped to a short noun phrase, the targets, hideouts and deathtraps a
sentence names). Pure data and pure functions of one sentence; batplots.story.caseread reads
each sentence once with them, and batplots.story.casefile merges the readings of a story.
"""

from __future__ import annotations

import re

from batplots.text import normalize_whitespace

PHRASE_WORDS = 6  # words of a target, hideout or deathtrap phrase autofill keeps

# Never a villain, henchman or guest: the heroes and their kit (the lore's stock cast
# counts too, when there is a lore). Words starting with "Bat" are the show's coinages.
HEROES = frozenset("""Batman Robin Batgirl Alfred Gordon O'Hara Bruce Wayne Dick Grayson Harriet Cooper Barbara
Gotham City Manor Batcave Batmobile Batphone Batcopter Batboat Batcomputer Batpoles Police""".split())
TITLES = ("Mr", "Mrs", "Ms", "Miss", "Dr", "Doctor", "Professor", "Madame", "Lady", "Lord", "Sir", "King", "Queen",
          "Captain", "Colonel", "General", "Count", "Countess", "Baron", "Duke", "Princess", "Prince", "Senator",
          "Judge", "Mayor", "Uncle", "Aunt", "Chief", "Inspector", "Master")
# A name phrase ending in one of these is a place or a thing, not a person.
THING_NOUNS = frozenset("""Museum Bank Tower Building Hall Park Street Avenue Gallery Library Mill Factory Plant
Hotel Club Theater Theatre Zoo Station Harbor Harbour Island Pier Square Palace Castle Observatory Planetarium
Warehouse Company Corporation Institute University College School Hospital Prison Penitentiary Exhibition
Exposition Stadium Arena Store Shop Studio Estate Mansion Headquarters Diamond Ruby Emerald Sapphire Pearl Jewels
Crown Vault Mint Gardens Garden Center Centre Laboratory Lab Lighthouse Opera Airport Docks Cathedral Church
Ball Fair Show Festival Gala Carnival Circus Parade Exchange Reserve Market Dinner Banquet Reservoir Bridge Dam
Ballroom Auditorium Fountain Casino""".split())
_CAP = r"[A-Z][A-Za-z]*(?:[-'’][A-Za-z]+)*(?:['’]s?)?"
PHRASE = re.compile(rf"(?:\b(?:{'|'.join(TITLES)})\.?\s+)?{_CAP}(?:[ \t]+{_CAP})*")
# A sentence that says someone is up to no good.
VILLAIN_CUE = re.compile(r"\b(?:villain\w*|criminal\w*|crook\w*|mastermind|fiend\w*|evil|sinister|diabolical|"
                         r"dastardly|arch-?\w+|steal\w*|stole\w*|rob|robs|robbed|robber\w*|heist|kidnap\w*|"
                         r"plot\w*|scheme\w*|hench\w+|gang\w*|moll|lair|hide-?out|hides?\s+out|holed\s+up|loot\w*|"
                         r"ransom\w*|crime\w*|trap\w*|"
                         # the show's villains' own deeds: poisoners, forgers, storm-makers, pirates
                         r"poison\w*|forg(?:e|es|ed|er|ery|ing)|rigs?|rigged|vanish\w*|disappear\w*|"
                         r"takes?\s+over|took\s+over|bur(?:y|ies|ied)|sabotag\w*|swindl\w*|blackmail\w*|"
                         r"extort\w*|counterfeit\w*|smuggl\w*|raid\w*|menac\w*|terroriz\w*|threat\w*|"
                         r"pirate\w*|army|armies|hypnoti\w*|controls?\s+people|empties|empty\s+the|slumber|to\s+sleep)\b",
                         re.IGNORECASE)
# X is surely the villain: "X's henchmen", "villainous X", "X steals".
STRONG = r"(?:hench\w+|gang|moll|lair|hide-?out|scheme|plot|loot)"
HENCH_CUE = re.compile(r"\b(?:hench(?:man|men|woman|women|person|people)|molls?|goons?|thugs?|accomplices?|"
                       r"gang(?:sters?)?|assistants?|sidekicks?|cronies|minions?|lackeys?|stooges?)\b",
                       re.IGNORECASE)
PERSON_VERB = re.compile(r"^\s+(?:says|said|asks|asked|tells|told|arrives|arrived|visits|visited|is|was|has|had|"
                         r"meets|met|calls|called|agrees|refuses|wants|insists|explains|invites|hosts|hires|warns|"
                         r"reveals|decides|returns|gives|takes|thanks|screams|faints|falls|helps|owns|runs)\b")
END = r"(?=[,.;:!?…\"”)]|\s+(?:from|at|in|on|into|onto|for|to|with|while|and|but|so|before|after|when|as|by|"
END += r"which|who|that|where|until|because|then|is|are|was|were|has|have|will|would|can|without|through|"
END += r"across|toward|towards|during|behind|beneath|above|over|under|near|past|around|along|unless|whenever|"
END += r"heading|headed|leading|filling|slowly)\b|$)"
NP = r"((?:(?:the|a|an|his|her|their|its)\s+)?[\w'’-]+(?:\s+[\w'’-]+){0,5}?)" + END
LOOT_NOUN = (r"(?:diamonds?|jewels?|jewelry|jewellery|gems?|emeralds?|rubies|ruby|sapphires?|pearls?|crown|tiara|"
             r"dollars|bonds|treasure|gold|bullion|necklace|painting|statue|idol|vase|fortune|payroll|money|cash|"
             r"stamps?|"
             r"formula|scroll|egg|mummy|artifact|artefact|collection|ransom)")
_STEAL = (r"steal|steals|stealing|stole|stolen|swipe[sd]?|swiping|snatch(?:es|ed|ing)?|rob|robs|robbed|robbing|"
          r"loot|loots|looted|looting|pilfer\w*|rustl(?:e|es|ed|ing)|heist of|kidnap(?:s|ped|ping)?|"
          r"abduct(?:s|ed|ing)?")
_LOOT_DET = r"(?:the|a|an|one|two|three|five|ten|\$?\d[\d,.]*)"
TARGET_RULES = (re.compile(r"\b(?:" + _STEAL + r"|ransom(?:s|ed|ing)?(?!\s+(?:notes?|demands?|money)\b))\s+"
                           r"(?!(?:by|from|to|with|in|at|on|into|for)\b)" + NP, re.IGNORECASE),
                # "the Flamingo Diamond", "one million dollars"; not "the jewel thief", "a ransom note"
                re.compile(r"\b(" + _LOOT_DET + r"\s+(?:(?!(?:the|a|an)\b)[\w'’-]+\s+){0,3}?" + LOOT_NOUN
                           + r"(?:\s+" + LOOT_NOUN + r")?)\b(?!\s+(?:thie(?:f|ves)|robber\w*|notes?|demands?|shop|"
                           r"store|case|box)\b)", re.IGNORECASE),
                # "her prize bicycle was stolen", "demanding a million dollars"
                re.compile(r"\b((?:the|a|an|his|her|their|its)\s+(?:[\w'’-]+\s+){0,3}?[\w'’-]+)\s+"
                           r"(?:was|were|is|are|"
                           r"has\s+been|have\s+been|had\s+been|gets|got)\s+(?:" + _STEAL + ")", re.IGNORECASE),
                re.compile(r"\b(?:demand\w*|ransom\s+of)\s+" + NP, re.IGNORECASE))
HIDEOUT_RULES = (re.compile(r"\b(?:hide-?outs?|lairs?|headquarters|hq|den|hideaway|hiding place|base)\s+"
                            r"(?:is\s+|was\s+)?(?:at|in|inside|beneath|under|underneath|below|on|atop)\s+" + NP,
                            re.IGNORECASE),
                 re.compile(r"\b(?:hides?\s+out|hid\s+out|hole[sd]?\s+up|holing\s+up|hiding\s+out)\s+"
                            r"(?:at|in|inside|beneath|under|on)\s+" + NP, re.IGNORECASE),
                 # "the Gotham Observatory, where Professor Nebula ... hide out"
                 re.compile(r"\b((?:the|an?)\s+(?:[\w'’-]+\s+){0,3}?[\w'’-]+),\s+where\b[^.;!?]*?\b(?:hides?\s+out|"
                            r"hide\s+out|hole[sd]?\s+up|lairs?|hideouts?)\b", re.IGNORECASE))
DEATHTRAP_RULE = re.compile(r"\b((?:tied|strapped|chained|bound|glued|shackled)\s+(?:up\s+)?to|"
                            r"(?:trapped|sealed|locked|imprisoned)\s+(?:in|inside)|"
                            r"(?:dangl\w+|suspended|hung|hanging|hangs|lowered|lowering|lowers|lower)\s+(?:\w+ly\s+)?"
                            r"(?:over|above|into|toward|towards)|"
                            r"(?:lowered|dropped|thrown|tossed)\s+(?:\w+ly\s+)?into|"
                            r"(?:traps|seals|locks)\s+(?:the\s+)?(?:Dynamic\s+Duo|Batman\s+and\s+Robin|Batman|Robin|"
                            r"Batgirl|heroes)\s+(?:in|inside))\s+" + NP, re.IGNORECASE)
# "a giant vat of molten glass", "a tank of hungry piranhas": the trap itself, where a hero is.
TRAP_NOUN_RULE = re.compile(r"\b(?:a|an|the)\s+((?:[\w-]+\s+){0,2}?(?:vat|tank|pit|pool|cauldron|tub|bath)\s+of\s+"
                            r"(?:[\w-]+\s+){0,2}?[\w-]+)" + END, re.IGNORECASE)
DEATHTRAP_RULES = (DEATHTRAP_RULE, TRAP_NOUN_RULE)
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an|his|her|their|its)\s+", re.IGNORECASE)
OPENERS = " \t\n\"'“‘([-—"
FIRST_WORD = re.compile(r"[\s\"'“‘(\[—-]*([A-Z])")
# Words that say a name is a villain's: "the jewel thief Magpie", "Nebula, a crooked
# astronomer", "the Weatherman, a meteorologist gone wrong".
CRIME_WORDS = (r"(?:villain\w*|crook\w*|thie(?:f|ves)|criminal\w*|felon\w*|fiend\w*|mastermind|pirate\w*|"
               r"forger\w*|swindler\w*|outlaw\w*|bandit\w*|burglar\w*|kidnapper\w*|gangster\w*|mad(?:man|woman)|"
               r"menace|mad\s+scientist|gone\s+(?:wrong|bad)|turned\s+(?:thief|crook|criminal|villain|bad)|"
               r"wicked|sinister|evil|dastardly|diabolical|nefarious)")
# People of a story who are neither villain nor henchman: "the museum curator, Dr. Ames",
# "the sculptor Felicity Thorne", "Penny Farthing, a cyclist".
GUEST_ROLES = (r"(?:curators?|heir(?:ess)?|millionaire|billionaire|socialite|tycoon|magnate|philanthropist|"
               r"professor|scientist|inventor|sculptor|painter|artist|toymaker|florist|jewell?er|banker|collector|"
               r"cyclist|singer|soprano|tenor|actress|actor|star|dancer|ballerina|author|writer|poet|owner|"
               r"director|manager|guard|watchman|reporter|newscaster|editor|publisher|senator|ambassador|"
               r"diplomat|egyptologist|archaeologist|explorer|astronomer|friend|niece|nephew|cousin|victim|"
               r"hostage|guest|visitor|teacher|librarian|doctor|nurse|chef|butler|secretary|judge|champion|"
               r"ward|widow|bride|groom|prince|princess|duchess|duke|countess|count|maharajah|"
               r"sheikh|emir|shah|sultan|tourist|entertainer|showman|magician|scholar|expert|designer|"
               r"museum\s+curator|head|president|chairman|chairwoman)")
DET = r"(?:the|a|an|his|her|their|its|my|our|gotham's|the\s+city's|the\s+show's|the\s+museum's)"

GUEST_ROLE_WORDS = re.compile(GUEST_ROLES, re.IGNORECASE)
POSSESSIVE_END = re.compile(r"['’]s?$")
_ROLE_BEFORE = re.compile(rf"\b{DET}\s+((?:[\w'’-]+\s+){{0,3}}?){GUEST_ROLES},?\s*$", re.IGNORECASE)
_ROLE_AFTER = re.compile(rf"\s*,\s*(?:the|a|an|his|her|their)\s+((?:[\w'’-]+\s+){{0,3}}?){GUEST_ROLES}\b",
                         re.IGNORECASE)
ROLE_BEFORE_TOKENS = 10  # words "the museum curator," and its like span, at most
_CRIME = re.compile(rf"\b{CRIME_WORDS}\b", re.IGNORECASE)


def has_guest_role(sentence: str, start: int, end: int) -> bool:
    """Whether the sentence gives the name at [start, end) a guest's role ("the museum
    curator, Dr. Ames", "the sculptor Felicity Thorne", "Penny Farthing, a cyclist"), not
    a crooked one."""
    before = tail_words(sentence[:start], ROLE_BEFORE_TOKENS)
    for m in (_ROLE_BEFORE.search(before), _ROLE_AFTER.match(sentence, end)):
        if m and not _CRIME.search(m.group(0)):
            return True
    return False


# A name the sentence calls a villain outright: "X's henchmen", "villainous X", "X, a
# crooked astronomer", "the jewel thief X", "X and his henchman", "stolen by X", "X steals".
# Split into what may follow the name (STRONG_AFTER, matched right after it) and what may
# precede it (STRONG_BEFORE, ending right before it, tried on at most STRONG_BEFORE_TOKENS
# words before it: as many as the longest of them spans), so no pattern is built per name.
_LEAD_IN = rf"(?:(?:the|a|an)\s+)?(?:(?:{'|'.join(TITLES)})\.?\s+)?(?:[A-Z][\w'’-]*\s+)?"
STRONG_AFTER = re.compile(
    rf"['’]s?\s+(?:\w+\s+)?{STRONG}\b|,?\s+(?:a|an|the)\s+(?:[\w'’-]+\s+){{0,4}}?{CRIME_WORDS}\b|"
    rf"\s+(?:and|&)\s+(?:his|her|their)\s+(?:\w+\s+)?{HENCH_CUE.pattern}|"
    r"\s+(?:steals|stole|kidnaps|kidnapped|robs|robbed|plots|schemes)\b")
STRONG_BEFORE = re.compile(
    rf"(?:\bvillain\w*\s+(?:[\w-]+\s+){{0,3}}|\b{CRIME_WORDS}\s+(?:[a-z][\w-]*\s+){{0,2}}{_LEAD_IN}|"
    r"\b(?:stolen|kidnapped|abducted|robbed|snatched|swiped|captured|poisoned|hypnoti[sz]ed|framed|"
    r"taken\s+(?:prisoner|hostage)|(?:note|message|riddle|clue|letter|threat|warning)\s+(?:from|left\s+by|"
    rf"sent\s+by))\s+(?:by\s+)?{_LEAD_IN})$")
STRONG_BEFORE_TOKENS = 10


def tail_words(text: str, n: int) -> str:
    """The end of text from the start of its n-th last whitespace-separated word (its
    trailing whitespace kept): all that a pattern ending at the text's end and spanning
    at most n words can match, found without trying every start of a long text."""
    i = len(text)
    while i > 0 and text[i - 1].isspace():
        i -= 1
    for k in range(n):
        while i > 0 and not text[i - 1].isspace():
            i -= 1  # a word
        if k < n - 1:
            while i > 0 and text[i - 1].isspace():
                i -= 1  # the space before it
    return text[i:]


AFTER_CUE = re.compile(r"\s*[,:]?\s*(?:(?:named|called)\s+)?(?:(?:the|a)\s+)?")
LIST_JOIN = re.compile(r"\s*(?:,|,?\s+(?:and|&))\s*")
BEFORE_CUE = re.compile(r"\s*,\s*(?:(?:the|a|an|his|her|their)\s+)?(?:[\w'’-]+\s+){0,2}")

HIDEOUT_WORDS = {"hideout", "hide-out", "lair", "den", "headquarters", "hq", "base"}
PLACE_NOUNS = (r"(?:\w*room|hideout|lair|den|headquarters|hq|base|nest|factory|warehouse|workshop|studio|kitchen|"
               r"cave|cavern|tower|mansion|castle|ship|boat|submarine|shop|store|office|laboratory|lab|garage|"
               r"basement|cellar|attic|penthouse|theater|theatre|hall|mill|plant|yard|barn|farm|house|palace|"
               r"pyramid|tomb|temple|museum|gallery|bakery|island|hotel|club|arena|rink|aviary|observatory|"
               r"greenhouse|hangar|dock|docks|pier|wharf|bunker|crypt|hideaway|headquarters|cabin|lighthouse)")


def clip(phrase: str, article: bool = True) -> str:
    """A short noun phrase: at most PHRASE_WORDS words, its article dropped (unless not
    article); "" for a phrase that is no noun phrase (starts with a preposition, runs
    over a clause: "from the museum; glass without damaging anything else")."""
    phrase = normalize_whitespace(phrase).strip(" ,.;:!?\"'”’")
    if article:
        phrase = _LEADING_ARTICLE.sub("", phrase)
    if re.search(r"[;:!?\"“”()]", phrase) or re.match(_NOT_NP_START, phrase, re.IGNORECASE):
        return ""
    return " ".join(phrase.split()[:PHRASE_WORDS])


_NOT_NP_START = r"(?:from|by|to|with|without|in|at|on|into|for|of|and|but|so|while|when|as|that|which|who)\b"


def matches(rules, sentence: str) -> list[str]:
    """The phrases the rules find in a sentence, in the order it has them."""
    hits = []
    for rule in rules:
        for m in rule.finditer(sentence):
            phrase = clip(m.group(1))
            if phrase:
                hits.append((m.start(1), phrase))
    return [phrase for _, phrase in sorted(hits)]


_HEROES_IN_PERIL = re.compile(r"\b(?:Batman|Robin|Batgirl|Duo|Crusader|Wonder|heroes|hero)\b")
HERO_NEAR = re.compile(r"\b(?:Batman|Robin|Batgirl|Alfred|Gordon|O'Hara|Duo|Crusader|Wonder|heroes|hero)\b")


def deathtraps(sentence: str) -> list[str]:
    """"tied to a giant candle", "dangling over a vat of acid", "a giant vat of molten glass":
    only where a hero is in peril."""
    if not HERO_NEAR.search(sentence):
        return []
    hits = []
    for m in DEATHTRAP_RULE.finditer(sentence):
        verb = normalize_whitespace(m.group(1)).lower()
        verb = re.sub(r"^(trap|seal|lock)s\b.*?\b(in|inside)$",  # "traps the Duo inside"
                      lambda v: {"trap": "trapped"}.get(v[1], v[1] + "ed") + " " + v[2], verb)
        trap = clip(m.group(2), article=False)
        if trap:
            hits.append((m.start(), f"{verb} {trap}".strip(" ,.;:!?")))
    for m in TRAP_NOUN_RULE.finditer(sentence) if _HEROES_IN_PERIL.search(sentence) else ():
        hits.append((m.start(1), clip(m.group(1))))
    return [h for _, h in sorted(hits) if h]
